//! `tongban demo --federation`: two provinces' gateways, 河南 and 广东, peered on loopback in
//! one process. Each has its own data directory (`DATA_DIR/henan`, `DATA_DIR/guangdong`) with
//! its datasets, embedded store, exchange log and gateway certificate, and lists the other as
//! its peer by CA and certificate fingerprint. Once both are up, a demand of 广东's police on
//! 河南's household resource is taken through both gateways (filed and checked at 广东,
//! answered at 河南), so 广东's systems can call 河南's data at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tongban_platform::{DemandInput, Platform};
use tongban_policy::workflow::{Action, DemandState, Terms};

use super::seed;

/// One of the demo's two gateways.
struct Province {
    name: &'static str,
    region: &'static str,
    listen: SocketAddr,
    peer_listen: SocketAddr,
    dir: PathBuf,
}

/// The remote id, at 广东, of 河南's household resource.
pub const HOUSEHOLD_AT_GUANGDONG: &str = "410000:A01-410000-0001";
/// The service item of the demand the demo takes across the two gateways.
pub const SERVICE_ITEM: &str = "KSTB-GA-003";

/// Runs both gateways until a shutdown signal: 河南 on `listen`, 广东 on the next port, and
/// their peer listeners on the two after.
pub async fn run(listen: SocketAddr, data_dir: &Path, rows: u64, generator_seed: u64) -> anyhow::Result<()> {
    let at = |offset: u16| SocketAddr::new(listen.ip(), listen.port() + offset);
    let henan =
        Province { name: "henan", region: "410000", listen, peer_listen: at(2), dir: data_dir.join("henan") };
    let guangdong = Province {
        name: "guangdong",
        region: "440000",
        listen: at(1),
        peer_listen: at(3),
        dir: data_dir.join("guangdong"),
    };
    for province in [&henan, &guangdong] {
        // A taken address is told at once, not after the data is generated and seeded.
        for address in [province.listen, province.peer_listen] {
            drop(
                std::net::TcpListener::bind(address)
                    .with_context(|| format!("cannot listen on {address}"))?,
            );
        }
        let certificates = province.dir.join("federation");
        if !certificates.join(crate::certs::GATEWAY_CERT_FILE).is_file() {
            crate::certs::generate(&certificates, &[listen.ip().to_string()], &[], Some(province.name))?;
        }
    }
    let (henan_platform, henan_ready) = tokio::sync::oneshot::channel();
    let (guangdong_platform, guangdong_ready) = tokio::sync::oneshot::channel();
    let henan_gateway = gateway(&henan, &guangdong, rows, generator_seed, henan_platform).await?;
    let guangdong_gateway = gateway(&guangdong, &henan, rows, generator_seed, guangdong_platform).await?;
    tokio::spawn(async move {
        let (Ok(henan), Ok(guangdong)) = (henan_ready.await, guangdong_ready.await) else { return };
        match take_demand_across(&henan, &guangdong).await {
            Ok(()) => announce(listen),
            Err(e) => tracing::error!(error = %e, "the demo's demand across gateways could not be seeded"),
        }
    });
    tokio::try_join!(henan_gateway, guangdong_gateway)?;
    Ok(())
}

/// Prepares one gateway's directory and configuration, and returns it serving: the demo's
/// seed, then its platform handed over for the demand across gateways.
async fn gateway(
    province: &Province,
    peer: &Province,
    rows: u64,
    generator_seed: u64,
    ready: tokio::sync::oneshot::Sender<Platform>,
) -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>> + use<>> {
    let mut loaded = super::prepare(province.listen, &province.dir, rows, generator_seed, false).await?;
    if loaded.config.federation.is_none() {
        let peer_certificate =
            std::fs::read(peer.dir.join("federation").join(crate::certs::GATEWAY_CERT_FILE))?;
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(&peer_certificate)
            .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
            .map_err(|e| anyhow::anyhow!("{}'s gateway certificate: {e:?}", peer.name))?;
        let section = format!(
            "\n[federation]\nname = \"{}\"\nregion = \"{}\"\nlisten = \"{}\"\ncert = \"federation/{}\"\nkey = \"federation/{}\"\n\
             catalog_refresh_secs = 5\n\n[[federation.peers]]\nname = \"{}\"\nregion = \"{}\"\nurl = \"https://{}\"\n\
             ca = \"../{}/federation/{}\"\ncertificates = [\"{}\"]\n",
            province.name,
            province.region,
            province.peer_listen,
            crate::certs::GATEWAY_CERT_FILE,
            crate::certs::GATEWAY_KEY_FILE,
            peer.name,
            peer.region,
            peer.peer_listen,
            peer.name,
            crate::certs::CA_FILE,
            crate::certs::fingerprint(&der),
        );
        let path = province.dir.join(super::CONFIG_FILE);
        let mut text = std::fs::read_to_string(&path)?;
        text.push_str(&section);
        std::fs::write(&path, text)?;
        loaded = super::prepare(province.listen, &province.dir, rows, generator_seed, false).await?;
    }
    super::start_supplier(&mut loaded, &province.dir).await?;
    let dir = province.dir.clone();
    let seed: crate::server::Seed = Box::new(move |platform| {
        Box::pin(async move {
            seed::demo(&platform, &dir).await?;
            let _ = ready.send(platform);
            Ok(())
        })
    });
    Ok(crate::server::serve(loaded, Some(seed)))
}

/// 广东's police files a demand for 河南's household resource at 广东; 广东's office passes it;
/// 河南's police answers it at 河南, which compiles the grant and mirrors it to 广东. Taken once:
/// a later run finds it.
async fn take_demand_across(henan: &Platform, guangdong: &Platform) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    while guangdong.remote_resource(HOUSEHOLD_AT_GUANGDONG).await?.is_none() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "河南's catalog never reached 广东");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let filter = tongban_platform::store::DemandFilter {
        resource_code: Some(HOUSEHOLD_AT_GUANGDONG.to_owned()),
        ..Default::default()
    };
    let page = tongban_platform::store::PageRequest::first(1);
    if !guangdong.store.list_demands(&filter, &page).await?.items.is_empty() {
        return Ok(());
    }
    let applicant = seed::caller(guangdong, "demander.guangdong-police").await?;
    let office = seed::caller(guangdong, "reviewer.guangdong").await?;
    let terms = Terms {
        items: ["id_number", "name", "status"].map(String::from).to_vec(),
        division_prefix: "41".into(),
        rate_per_second: 20,
        daily_quota: 10_000,
        valid_until: guangdong.now().date() + chrono::Duration::days(365),
    };
    let input = DemandInput {
        resource_code: HOUSEHOLD_AT_GUANGDONG.into(),
        system_id: None,
        service_item: SERVICE_ITEM.into(),
        purpose: "跨省户口迁移时核验申请人在河南的户籍信息".into(),
        legal_basis: "《国务院办公厅关于加快推进政务服务“跨省通办”的指导意见》".into(),
        terms: terms.clone(),
    };
    let demand = guangdong.file_demand(&applicant, input).await?;
    let demand = guangdong.act_on_demand(&applicant, &demand.id, demand.version, Action::Submit).await?;
    let pass = Action::PassConformity { terms: terms.clone() };
    let demand = guangdong.act_on_demand(&office, &demand.id, demand.version, pass).await?;
    // The hand-off arrives at 河南 through 广东's outbox.
    let supplier = seed::caller(henan, "supplier.henan-police").await?;
    let at_henan = loop {
        if let Some(found) = henan.store.demand_if_any(&demand.id).await?
            && found.filing.workflow.state == DemandState::SupplierReview
        {
            break found;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "the demand never reached 河南");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    henan.act_on_demand(&supplier, &at_henan.id, at_henan.version, Action::SupplierApprove { terms }).await?;
    Ok(())
}

#[allow(clippy::print_stdout)]
fn announce(listen: SocketAddr) {
    let guangdong = SocketAddr::new(listen.ip(), listen.port() + 1);
    println!(
        "河南 serves http://{listen} and 广东 http://{guangdong}. A demand of 广东's police for 河南's household \
         data ({HOUSEHOLD_AT_GUANGDONG}, service item {SERVICE_ITEM}) was approved through both gateways: \
         广东's systems call it at 广东, and 河南 answers."
    );
}
