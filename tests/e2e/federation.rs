//! Three gateways on distinct loopback addresses, peered as provinces' gateways are: 河南
//! (127.0.0.2) peers with 广东 (127.0.0.3) and 安徽 (127.0.0.4); 广东 and 安徽 do not peer with
//! each other. Each is a demo gateway with its own data directory, store and log, whose
//! `[federation]` section this test writes, with certificates from `tongban certs --gateway`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tongban_e2e::{Api, Demo, act, terms};

/// A province's gateway before it starts: its name, province, addresses and certificates.
struct Province {
    name: &'static str,
    region: &'static str,
    host: &'static str,
    /// The peer listener's port, chosen free before the gateways start, since each peer's
    /// configuration names the others' URLs.
    peer_port: u16,
    data: tempfile::TempDir,
    /// SHA-256 of its gateway certificate, as `tongban certs` printed it.
    sha256: String,
}

/// A request signed as the gateway whose data directory is `data_dir` signs the calls it passes
/// on (`docs/evidence.md`): what a peer, hostile or not, can make with its own key. `headers`
/// are the call's purpose and assertion headers; `at_ms` its time.
fn sign_as(
    data_dir: &Path,
    from: &str,
    to: &str,
    headers: &[(&str, &str)],
    (method, target, body): (&str, &str, &[u8]),
    at_ms: u64,
) -> anyhow::Result<String> {
    use tongban_evidence::{SignedRequest, SigningIdentity, request_digest};
    let identity = SigningIdentity::from_pem(
        &std::fs::read_to_string(data_dir.join("federation/evidence-key.pem"))?,
        &std::fs::read_to_string(data_dir.join("federation/evidence-cert.pem"))?,
    )?;
    let hash = tongban_evidence::HashAlgorithm::for_signatures(identity.key.algorithm());
    let header = |name: &str| headers.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| *v);
    let nonce: [u8; 16] =
        std::array::from_fn(|i| (at_ms.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8);
    let request = SignedRequest {
        from: from.to_owned(),
        to: to.to_owned(),
        department: header("x-tongban-peer-department").to_owned(),
        system: header("x-tongban-peer-system").to_owned(),
        service_item: header("x-tongban-service-item").to_owned(),
        case_digest: SignedRequest::purpose_digest(hash, &nonce, header("x-tongban-case-number").as_bytes()),
        operator_digest: SignedRequest::purpose_digest(hash, &nonce, header("x-tongban-operator").as_bytes()),
        request_digest: hex_of(&request_digest(hash, &nonce, method, target, &hash.digest(&[body]))),
        streamed: false,
        at_ms,
        nonce: hex_of(&nonce),
        alg: String::new(),
        key: String::new(),
        signature: String::new(),
    };
    Ok(request.sign(&identity.key, &identity.fingerprint).encode())
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default()
}

impl Province {
    fn new(name: &'static str, region: &'static str, host: &'static str) -> anyhow::Result<Province> {
        let peer_port = std::net::TcpListener::bind((host, 0))?.local_addr()?.port();
        let data = tempfile::tempdir()?;
        let out = data.path().join("federation");
        let made = std::process::Command::new(tongban_e2e::tongban_bin())
            .args(["certs", "--out", out.to_str().context("utf-8")?, "--host", host, "--gateway", name])
            .args(["--evidence", name])
            .args(["--client", "not-a-gateway"])
            .output()?;
        anyhow::ensure!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        let printed = String::from_utf8(made.stdout)?;
        let line = printed.lines().find(|l| l.trim_end().ends_with(name)).context("the gateway's line")?;
        let sha256 =
            line.split("sha256=").nth(1).and_then(|r| r.split_whitespace().next()).context("sha256")?;
        Ok(Province { name, region, host, peer_port, data, sha256: sha256.to_owned() })
    }

    fn dir(&self) -> &Path {
        self.data.path()
    }

    fn peer_url(&self) -> String {
        format!("https://{}:{}", self.host, self.peer_port)
    }

    /// Writes the demo's configuration with a `[federation]` section naming `peers`, each
    /// with the certificates listed for it (its own unless `pins` says otherwise).
    fn configure(&self, peers: &[(&Province, Option<&str>)]) -> anyhow::Result<()> {
        self.configure_with(peers, "")
    }

    /// [`Province::configure`], with `extra` TOML (tables of its own) at the end.
    fn configure_with(&self, peers: &[(&Province, Option<&str>)], extra: &str) -> anyhow::Result<()> {
        let mut toml = String::from(
            "[server]\nplaintext = true\n\n[evidence]\nkey = \"federation/evidence-key.pem\"\n\
             certificate = \"federation/evidence-cert.pem\"\nanchor_secs = 1\n",
        );
        for (name, file) in [
            ("household", "household.parquet"),
            ("social_insurance", "social_insurance.parquet"),
            ("housing_fund", "housing_fund.parquet"),
        ] {
            toml.push_str(&format!(
                "\n[[datasets]]\nname = \"{name}\"\nkey = \"id_number\"\n[datasets.source]\nkind = \"parquet\"\n\
                 location = \"datasets/{file}\"\n"
            ));
        }
        toml.push_str(&format!(
            "\n[federation]\nname = \"{}\"\nregion = \"{}\"\nlisten = \"{}:{}\"\ncert = \"federation/gateway.pem\"\n\
             key = \"federation/gateway-key.pem\"\ncatalog_refresh_secs = 1\ntimeout_ms = 2000\n",
            self.name, self.region, self.host, self.peer_port
        ));
        for (peer, pin) in peers {
            let ca = peer.dir().join("federation/ca.pem");
            toml.push_str(&format!(
                "\n[[federation.peers]]\nname = \"{}\"\nregion = \"{}\"\nurl = \"{}\"\nca = \"{}\"\ncertificates = [\"{}\"]\n\
                 evidence = [\"{}\"]\n",
                peer.name,
                peer.region,
                peer.peer_url(),
                ca.display(),
                pin.unwrap_or(&peer.sha256),
                peer.dir().join("federation/evidence-cert.pem").display()
            ));
        }
        toml.push_str(extra);
        std::fs::write(self.dir().join("tongban.toml"), toml)?;
        Ok(())
    }
}

/// Polls `check` on `what` until it holds, for up to `timeout`.
async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<Value>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<Value>>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        anyhow::ensure!(started.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ids(listing: &Value) -> Vec<String> {
    listing["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect()
}

fn peer<'a>(federation: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    federation["peers"].as_array().into_iter().flatten().find(|p| p["name"] == name).context("the peer")
}

/// An HTTPS client trusting the CA of the gateway whose data directory is `dir`, presenting
/// `identity` (PEM files), if any.
fn client(dir: &Path, identity: Option<(PathBuf, PathBuf)>) -> anyhow::Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("federation/ca.pem"))?)?;
    let mut builder =
        reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false).add_root_certificate(ca);
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert)?;
        pem.extend(std::fs::read(key)?);
        builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
    }
    Ok(builder.build()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_exchange_catalogs_keep_stale_copies_and_refuse_unknown_certificates() -> anyhow::Result<()> {
    let henan = Province::new("henan", "410000", "127.0.0.2")?;
    let guangdong = Province::new("guangdong", "440000", "127.0.0.3")?;
    let anhui = Province::new("anhui", "340000", "127.0.0.4")?;
    henan.configure(&[(&guangdong, None), (&anhui, None)])?;
    // 广东 also lists a 海南 gateway that is really 安徽's listener with a certificate 广东 was
    // not told of: a changed or substituted certificate is refused.
    let mut hainan = Province::new("hainan", "460000", "127.0.0.4")?;
    hainan.peer_port = anhui.peer_port;
    std::fs::copy(anhui.dir().join("federation/ca.pem"), hainan.dir().join("federation/ca.pem"))?;
    guangdong.configure(&[(&henan, None), (&hainan, None)])?;
    anhui.configure(&[(&henan, None)])?;

    let (henan_dir, guangdong_dir) = (henan.dir().to_owned(), guangdong.dir().to_owned());
    let henan_peer_url = format!("{}/federation/v1/catalog", henan.peer_url());
    let (henan_data, guangdong_data, anhui_data) = (henan.data, guangdong.data, anhui.data);
    let (henan_demo, guangdong_demo, anhui_demo) = tokio::try_join!(
        Demo::start_in(henan_data, "127.0.0.2:0", 1000),
        Demo::start_in(guangdong_data, "127.0.0.3:0", 1000),
        Demo::start_in(anhui_data, "127.0.0.4:0", 1000),
    )?;
    let at_guangdong = guangdong_demo.sign_in("demander.guangdong-police").await?;
    let at_anhui = anhui_demo.sign_in("operator").await?;

    // Catalog exchange: 广东 lists 河南's resources beside its own, under ids that name the
    // province, with the copy's age. Each gateway publishes only its own province's resources
    // (the demo's catalog holds all three provinces'; the others are not accepted from it).
    let listing = eventually(Duration::from_secs(20), "河南's catalog at 广东", || async {
        let (status, listing) = at_guangdong.get("/catalog/remote-resources").await?;
        anyhow::ensure!(status == 200, "{listing}");
        Ok(ids(&listing).contains(&"410000:A01-410000-0001".to_owned()).then_some(listing))
    })
    .await?;
    assert_eq!(ids(&listing), ["410000:A01-410000-0001"], "only 河南's own resources: {listing}");
    let household = &listing["items"][0];
    assert_eq!(
        (household["peer"].as_str(), household["region_name"].as_str()),
        (Some("henan"), Some("河南省"))
    );
    assert_eq!(household["resource"]["code"], "A01-410000-0001");
    assert!(household["catalog"]["age_seconds"].as_i64().is_some_and(|age| age <= 5), "{household}");
    let (status, one) = at_guangdong.get("/catalog/remote-resources/410000:A01-410000-0001").await?;
    assert_eq!((status, one["resource"]["name"].as_str()), (200, household["resource"]["name"].as_str()));
    let (status, missing) = at_guangdong.get("/catalog/remote-resources/410000:B02-440000-0001").await?;
    assert_eq!((status, missing["code"].as_str()), (404, Some("not_found")), "{missing}");
    // Local resources are listed as before, without the remote ones.
    let (_, local) = at_guangdong.get("/catalog/resources").await?;
    assert!(
        local["items"]
            .as_array()
            .context("items")?
            .iter()
            .all(|r| !r["code"].as_str().unwrap_or(":").contains(':'))
    );

    // 安徽 peers with 河南 only: it sees 河南's resources and none of 广东's.
    let listing = eventually(Duration::from_secs(20), "河南's catalog at 安徽", || async {
        let (_, listing) = at_anhui.get("/catalog/remote-resources").await?;
        Ok((!ids(&listing).is_empty()).then_some(listing))
    })
    .await?;
    assert_eq!(ids(&listing), ["410000:A01-410000-0001"]);
    // 河南 holds both of its peers' catalogs.
    let at_henan = henan_demo.sign_in("operator").await?;
    let listing = eventually(Duration::from_secs(20), "both catalogs at 河南", || async {
        let (_, listing) = at_henan.get("/catalog/remote-resources").await?;
        Ok((ids(&listing).len() == 2).then_some(listing))
    })
    .await?;
    assert_eq!(ids(&listing), ["340000:C03-340000-0001", "440000:B02-440000-0001"]);

    // The peers' health: 河南 reachable with its catalog confirmed again and again (the copy
    // is asked for with its entity tag, so it is confirmed rather than fetched each time).
    let federation = eventually(Duration::from_secs(20), "河南 confirmed at 广东", || async {
        let (_, federation) = at_guangdong.get("/federation/peers").await?;
        let henan = peer(&federation, "henan")?;
        let confirmed_later =
            henan["catalog"]["checked_at"].as_str() > henan["catalog"]["fetched_at"].as_str();
        Ok(confirmed_later.then(|| federation.clone()))
    })
    .await?;
    assert_eq!(
        (federation["name"].as_str(), federation["region"].as_str()),
        (Some("guangdong"), Some("440000"))
    );
    let henan_status = peer(&federation, "henan")?;
    assert_eq!(
        (henan_status["reachable"].as_bool(), henan_status["resources"].as_u64()),
        (Some(true), Some(1))
    );
    // The substituted certificate: 海南's listed certificate is not the one presented.
    let hainan_status = peer(&federation, "hainan")?;
    assert_eq!(hainan_status["reachable"], false, "{hainan_status}");
    assert!(
        hainan_status["failure"].as_str().is_some_and(|f| f.contains("not one of those configured")),
        "{hainan_status}"
    );
    // Systems do not read the federation's health.
    let (_, police) = guangdong_demo.system("广东省公安厅跨省户籍业务系统")?;
    assert_eq!(police.get("/federation/peers").await?.0, 403);

    // The peer listener: a client without a certificate, or with one from another CA, cannot
    // complete the handshake; one from a peer's CA that is not listed for a peer is refused.
    assert!(client(&henan_dir, None)?.get(&henan_peer_url).send().await.is_err());
    let foreign = tempfile::tempdir()?;
    let made = std::process::Command::new(tongban_e2e::tongban_bin())
        .args(["certs", "--out", foreign.path().to_str().context("utf-8")?, "--client", "impostor"])
        .output()?;
    assert!(made.status.success());
    let impostor = client(
        &henan_dir,
        Some((foreign.path().join("client-0.pem"), foreign.path().join("client-0-key.pem"))),
    )?;
    assert!(impostor.get(&henan_peer_url).send().await.is_err(), "a foreign CA's certificate was accepted");
    // 广东's CA issued this certificate, but not as 广东's gateway certificate.
    let unlisted = client(
        &henan_dir,
        Some((
            guangdong_dir.join("federation/client-0.pem"),
            guangdong_dir.join("federation/client-0-key.pem"),
        )),
    )?;
    let refused = unlisted.get(&henan_peer_url).send().await?;
    assert_eq!(refused.status(), 403);
    let problem: Value = refused.json().await?;
    assert_eq!(problem["code"], "unknown_peer");
    // A data call from it is refused too, and recorded as a refused exchange.
    let data_url = henan_peer_url.replace("/catalog", "/data/verify");
    let refused = unlisted.post(&data_url).json(&serde_json::json!({})).send().await?;
    assert_eq!(refused.status(), 403);
    let records = henan_demo.exchange_records()?;
    let recorded = records.iter().find(|r| r["code"] == "unknown_peer").context("the refusal's record")?;
    assert_eq!((recorded["operation"].as_str(), recorded["status"].as_u64()), (Some("verify"), Some(403)));
    assert!(recorded["source"].as_str().is_some_and(|s| s.starts_with("127.0.0.")), "{recorded}");
    // 广东's own gateway certificate is answered, with the catalog and its entity tag.
    let genuine = client(
        &henan_dir,
        Some((
            guangdong_dir.join("federation/gateway.pem"),
            guangdong_dir.join("federation/gateway-key.pem"),
        )),
    )?;
    let answer = genuine.get(&henan_peer_url).send().await?;
    assert_eq!(answer.status(), 200);
    let etag = answer.headers()["etag"].to_str()?.to_owned();
    let document: Value = answer.json().await?;
    assert_eq!((document["gateway"].as_str(), document["region"].as_str()), (Some("henan"), Some("410000")));
    let again = genuine.get(&henan_peer_url).header("if-none-match", &etag).send().await?;
    assert_eq!(again.status(), 304);
    // The federation routes are not served on the main listener.
    let (status, _) = at_guangdong.get_root("/federation/v1/catalog").await?;
    assert_eq!(status, 404);

    // 河南 goes down: 广东 keeps the last good copy, listed with its growing age and the failure.
    henan_demo.gateway.stop().await?;
    let federation = eventually(Duration::from_secs(20), "河南 unreachable at 广东", || async {
        let (_, federation) = at_guangdong.get("/federation/peers").await?;
        Ok((peer(&federation, "henan")?["reachable"] == false).then_some(federation))
    })
    .await?;
    assert!(peer(&federation, "henan")?["failure"].as_str().is_some(), "{federation}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, listing) = at_guangdong.get("/catalog/remote-resources").await?;
    assert_eq!(ids(&listing), ["410000:A01-410000-0001"], "the stale copy stays listed");
    assert!(listing["items"][0]["catalog"]["age_seconds"].as_i64().is_some_and(|age| age >= 3), "{listing}");

    drop((guangdong_demo, anhui_demo));
    Ok(())
}

const HOUSEHOLD_AT_PEERS: &str = "410000:A01-410000-0001";

/// A demand for 河南's household resource filed by 广东's police, with `terms`.
fn remote_demand(service_item: &str, terms: Value) -> Value {
    json!({
        "resource_code": HOUSEHOLD_AT_PEERS,
        "service_item": service_item,
        "purpose": "办理跨省户口迁移时核验申请人户籍信息",
        "legal_basis": "《国务院办公厅关于加快推进政务服务“跨省通办”的指导意见》",
        "terms": terms,
    })
}

/// Polls demand `id` through `api` until it is in `state`.
async fn demand_in(api: &Api, id: &str, state: &str) -> anyhow::Result<Value> {
    eventually(Duration::from_secs(20), &format!("demand {id} in {state}"), || async {
        let (status, demand) = api.get(&format!("/demands/{id}")).await?;
        Ok((status == 200 && demand["state"] == state).then_some(demand))
    })
    .await
}

fn kinds(demand: &Value) -> Vec<String> {
    demand["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["kind"].as_str().map(str::to_owned))
        .collect()
}

/// The 广东 police's system at `demo`, naming `service_item` as its purpose.
fn police_of(demo: &Demo, service_item: &str) -> anyhow::Result<Api> {
    let (_, police) = demo.system("广东省公安厅跨省户籍业务系统")?;
    Ok(police.with_headers(&[
        ("x-tongban-service-item", service_item),
        ("x-tongban-case-number", "GD-2026-000731"),
        ("x-tongban-operator", "警员0031"),
    ]))
}

/// Signs in to both gateways anew (after a restart each listens on a new port).
async fn sign_in_both(henan: &Demo, guangdong: &Demo) -> anyhow::Result<[Api; 5]> {
    Ok([
        guangdong.sign_in("demander.guangdong-police").await?,
        guangdong.sign_in("reviewer.guangdong").await?,
        henan.sign_in("supplier.henan-police").await?,
        henan.sign_in("reviewer.henan").await?,
        guangdong.sign_in("operator").await?,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demand_crosses_gateways_both_ways_and_survives_killed_gateways() -> anyhow::Result<()> {
    let henan = Province::new("henan", "410000", "127.0.0.2")?;
    let guangdong = Province::new("guangdong", "440000", "127.0.0.3")?;
    // 河南's police also answer through an API of their own, bound to the household resource:
    // it answers with more than any grant gives.
    let api = tokio::net::TcpListener::bind("127.0.0.2:0").await?;
    let api_address = api.local_addr()?;
    let people = axum::Router::new().route(
        "/api/people/{key}",
        axum::routing::get(|axum::extract::Path(key): axum::extract::Path<String>| async move {
            axum::Json(json!({"code": 0, "message": "ok", "data": {
                "id_number": key, "name": "张三丰", "division_code": "410102", "status": "正常", "ethnicity": "汉族",
                "internal_note": "不应外传"}}))
        }),
    );
    tokio::spawn(async move { axum::serve(api, people).await });
    let binding = format!(
        "\n[[data.upstreams]]\nresource = \"A01-410000-0001\"\nurl = \"http://{api_address}/api\"\n\
         envelope = [\"code\", \"message\", \"data\"]\n"
    );
    // 安徽 peers with 河南 only.
    let anhui = Province::new("anhui", "340000", "127.0.0.4")?;
    henan.configure_with(&[(&guangdong, None), (&anhui, None)], &binding)?;
    guangdong.configure(&[(&henan, None)])?;
    anhui.configure(&[(&henan, None)])?;
    let (mut henan_demo, mut guangdong_demo, anhui_demo) = tokio::try_join!(
        Demo::start_in(henan.data, "127.0.0.2:0", 1000),
        Demo::start_in(guangdong.data, "127.0.0.3:0", 1000),
        Demo::start_in(anhui.data, "127.0.0.4:0", 1000),
    )?;
    let [applicant, gd_office, supplier, hn_office, _] = sign_in_both(&henan_demo, &guangdong_demo).await?;
    eventually(Duration::from_secs(20), "河南's catalog at 广东", || async {
        let (status, _) = applicant.get(&format!("/catalog/remote-resources/{HOUSEHOLD_AT_PEERS}")).await?;
        Ok((status == 200).then_some(Value::Null))
    })
    .await?;

    // 安徽 reaches 河南's resources and not 广东's, with which it does not peer: a demand on one
    // of 广东's is refused, and so is a call naming it.
    let hefei = anhui_demo.sign_in("demander.hefei-fund").await?;
    eventually(Duration::from_secs(20), "河南's catalog at 安徽", || async {
        let (status, _) = hefei.get(&format!("/catalog/remote-resources/{HOUSEHOLD_AT_PEERS}")).await?;
        Ok((status == 200).then_some(Value::Null))
    })
    .await?;
    let mut unreachable = remote_demand("KSTB-GA-003", terms(&["insurance_type"], "", 1, 10));
    unreachable["resource_code"] = json!("440000:B02-440000-0001");
    let (status, refused) = hefei.post("/demands", &unreachable).await?;
    assert_eq!((status, refused["code"].as_str()), (422, Some("unknown_resource")), "{refused}");
    let (_, fund) = anhui_demo.system("合肥公积金业务系统")?;
    let fund = fund.with_headers(&[
        ("x-tongban-service-item", "KSTB-JS-004"),
        ("x-tongban-case-number", "HF-2026-000017"),
        ("x-tongban-operator", "0017"),
    ]);
    let (status, refused) = fund.get("/data/440000:B02-440000-0001/records/440103199001011234").await?;
    assert_eq!((status, refused["code"].as_str()), (404, Some("unknown_resource")), "{refused}");

    // A call a peer passes on is never passed on a second time: 安徽, calling 河南 for one of
    // its systems, cannot reach 广东's resources through 河南, although 河南 knows them.
    let as_anhui = client(
        henan_demo.data_dir(),
        Some((
            anhui_demo.data_dir().join("federation/gateway.pem"),
            anhui_demo.data_dir().join("federation/gateway-key.pem"),
        )),
    )?;
    let onward = json!({"resource": "440000:B02-440000-0001", "key": "440103199001011234", "claims": {}});
    let onward = serde_json::to_vec(&onward)?;
    let onward_headers = [
        ("x-tongban-service-item", "KSTB-JS-004"),
        ("x-tongban-case-number", "HF-2026-000017"),
        ("x-tongban-operator", "0017"),
        ("x-tongban-peer-department", "113400000034000187"),
        ("x-tongban-peer-system", "hefei-fund-system"),
    ];
    let signature = sign_as(
        anhui_demo.data_dir(),
        "anhui",
        "henan",
        &onward_headers,
        ("POST", "/federation/v1/data/verify", &onward),
        now_ms(),
    )?;
    let mut request = as_anhui
        .post(format!("https://{}:{}/federation/v1/data/verify", henan.host, henan.peer_port))
        .header("content-type", "application/json")
        .header("x-tongban-request-signature", signature);
    for (name, value) in onward_headers {
        request = request.header(name, value);
    }
    let answer = request.body(onward).send().await?;
    let status = answer.status().as_u16();
    let refused: Value = answer.json().await?;
    assert_eq!((status, refused["code"].as_str()), (404, Some("unknown_resource")), "{refused}");

    // Filed at home on the remote resource: the supplier's answer is always needed.
    let asked = terms(&["id_number", "name", "address", "status"], "41", 20, 10_000);
    let (status, filed) = applicant.post("/demands", &remote_demand("KSTB-GA-003", asked.clone())).await?;
    assert_eq!(status, 201, "{filed}");
    assert_eq!(
        (filed["peer"].as_str(), filed["side"].as_str(), filed["supplier_review"].as_bool()),
        (Some("henan"), Some("home"), Some(true)),
        "{filed}"
    );
    let id = filed["id"].as_str().context("id")?.to_owned();
    let mut unknown_resource = remote_demand("KSTB-GA-003", asked.clone());
    unknown_resource["resource_code"] = json!("410000:A99-410000-0009");
    let (status, unknown) = applicant.post("/demands", &unknown_resource).await?;
    assert_eq!((status, unknown["code"].as_str()), (422, Some("unknown_resource")), "{unknown}");
    assert_eq!(act(&applicant, &applicant, &id, json!({"action": "submit"})).await.0, 200);
    // 河南 knows nothing of it before 广东's office lets it through.
    assert_eq!(supplier.get(&format!("/demands/{id}")).await?.0, 404);
    // The conformity review is the home office's: 河南's reviewer, though 广东's demo store
    // knows the account, has no part in it there.
    let at_guangdong_as_henan = guangdong_demo.sign_in("reviewer.henan").await?;
    let through = terms(&["id_number", "name", "address", "status"], "41", 10, 10_000);
    let pass = json!({"action": "pass_conformity", "terms": through});
    let (status, _) = act(&at_guangdong_as_henan, &applicant, &id, pass.clone()).await;
    assert_eq!(status, 403);
    let (status, passed) = act(&gd_office, &gd_office, &id, pass.clone()).await;
    assert_eq!((status, passed["state"].as_str()), (200, Some("supplier_review")), "{passed}");

    // The hand-off: 河南 holds the demand in its supplier's review, with its own clock, and
    // 广东's copy shows 河南's deadline.
    let at_henan = demand_in(&supplier, &id, "supplier_review").await?;
    assert_eq!((at_henan["peer"].as_str(), at_henan["side"].as_str()), (Some("guangdong"), Some("supplier")));
    assert_eq!(at_henan["applicant_department"], filed["applicant_department"]);
    assert_eq!(at_henan["resource_code"], "A01-410000-0001", "河南 names its own resource");
    assert!(
        at_henan["history"][1]["actor"].as_str().is_some_and(|a| a.starts_with("guangdong/")),
        "{at_henan}"
    );
    let henan_deadline = at_henan["clock"]["deadline"].clone();
    assert!(henan_deadline.is_string(), "{at_henan}");
    eventually(Duration::from_secs(10), "河南's deadline at 广东", || async {
        let (_, copy) = applicant.get(&format!("/demands/{id}")).await?;
        Ok((copy["clock"]["deadline"] == henan_deadline && copy["clock"]["stage"] == "supplier")
            .then_some(copy))
    })
    .await?;
    // The supplier's answer is 河南's: a 河南 account in 广东's store cannot give it there.
    let at_guangdong_as_supplier = guangdong_demo.sign_in("supplier.henan-police").await?;
    let approve = json!({"action": "supplier_approve", "terms": terms(&["id_number", "name", "status"], "41", 10, 5_000)});
    let (status, problem) = act(&at_guangdong_as_supplier, &applicant, &id, approve.clone()).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("step_at_peer")), "{problem}");

    // 补正 at the supplier, resubmitted at home, checked again by the home office.
    let correction = json!({"action": "request_correction", "reason": "请说明核验的业务场景"});
    assert_eq!(act(&supplier, &supplier, &id, correction).await.0, 200);
    demand_in(&applicant, &id, "supplier_correction").await?;
    let resubmit =
        json!({"action": "resubmit", "terms": terms(&["id_number", "name", "status"], "41", 10, 10_000)});
    assert_eq!(act(&applicant, &applicant, &id, resubmit).await.0, 200);
    demand_in(&supplier, &id, "submitted").await?;
    let pass = json!({"action": "pass_conformity", "terms": terms(&["id_number", "name", "status"], "41", 10, 10_000)});
    assert_eq!(act(&gd_office, &gd_office, &id, pass).await.0, 200);
    demand_in(&supplier, &id, "supplier_review").await?;

    // Refused at the supplier, disputed at home, decided by the supplier's province's office.
    let refuse = json!({"action": "supplier_refuse", "refusal": {"reason": "住址不属于必要信息", "basis": "《数据共享管理办法》第十条"}});
    assert_eq!(act(&supplier, &supplier, &id, refuse).await.0, 200);
    demand_in(&applicant, &id, "refused_by_supplier").await?;
    assert_eq!(
        act(&applicant, &applicant, &id, json!({"action": "dispute", "reason": "户籍核验确需姓名"})).await.0,
        200
    );
    demand_in(&hn_office, &id, "disputed").await?;
    let decide = json!({"action": "decide_approve", "terms": terms(&["id_number", "name", "status"], "4101", 5, 2_000)});
    let (status, problem) = act(&gd_office, &gd_office, &id, decide.clone()).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("step_at_peer")), "{problem}");
    let (status, approved) = act(&hn_office, &hn_office, &id, decide).await;
    assert_eq!((status, approved["state"].as_str()), (200, Some("approved")), "{approved}");
    let at_home = demand_in(&applicant, &id, "approved").await?;
    let expected = [
        "submit",
        "pass_conformity",
        "request_correction",
        "resubmit",
        "pass_conformity",
        "supplier_refuse",
        "dispute",
        "decide_approve",
    ];
    assert_eq!(kinds(&at_home), expected);
    assert_eq!(kinds(&approved), expected, "both sides hold the same history");

    // The grant is 河南's; 广东 mirrors it, and a revocation at 河南 reaches the mirror.
    let (_, grants) = supplier.get("/grants?limit=500").await?;
    let grant = grants["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["grant"]["demand_id"] == id.as_str())
        .with_context(|| format!("the grant at 河南: {grants}"))?
        .clone();
    let grant_id = grant["grant"]["id"].as_str().context("grant id")?.to_owned();
    let mirrored = eventually(Duration::from_secs(10), "the mirror at 广东", || async {
        let (status, mirrors) = applicant.get("/federation/grant-mirrors").await?;
        anyhow::ensure!(status == 200, "{mirrors}");
        Ok(mirrors.as_array().into_iter().flatten().find(|m| m["grant"]["id"] == grant_id.as_str()).cloned())
    })
    .await?;
    assert_eq!(
        (mirrored["peer"].as_str(), mirrored["resource_id"].as_str(), mirrored["grant"]["status"].as_str()),
        (Some("henan"), Some(HOUSEHOLD_AT_PEERS), Some("active"))
    );
    assert_eq!(mirrored["grant"]["division_prefix"], "4101");
    // Data calls from a 广东 system to its own gateway, answered from 河南's data under 河南's
    // grant, masked there; each side records the call and names the other's record.
    let (person, name) = henan_demo.household_person("4101")?;
    let police = police_of(&guangdong_demo, "KSTB-GA-003")?;
    let verify = json!({"resource": HOUSEHOLD_AT_PEERS, "key": person, "claims": {"name": name}});
    let (status, verified) = police.post("/data/verify", &verify).await?;
    assert_eq!((status, verified["results"]["name"].as_str()), (200, Some("match")), "{verified}");
    let (status, looked_up) = police.get(&format!("/data/{HOUSEHOLD_AT_PEERS}/records/{person}")).await?;
    assert_eq!(status, 200, "{looked_up}");
    let found = &looked_up["records"][0];
    assert!(found["name"].as_str().is_some_and(|n| n != name && n.contains('*')), "masked at 河南: {found}");
    assert!(found.get("address").is_none(), "only granted items: {found}");
    // A query naming the view 河南's grant gives runs at 河南, over that view: granted
    // columns, masked, rows of the granted prefecture only.
    let query = json!({"query": "SELECT id_number, name, status FROM household LIMIT 5"});
    let (status, queried) = police.post("/data/sql", &query).await?;
    assert_eq!(status, 200, "{queried}");
    let rows = queried["rows"].as_array().context("rows")?;
    assert!(!rows.is_empty() && rows.len() <= 5, "{queried}");
    for row in rows {
        // Identity numbers start with the division of registration; the grant gives 4101.
        assert!(row["id_number"].as_str().is_some_and(|d| d.starts_with("4101")), "{row}");
        assert!(row["name"].as_str().is_some_and(|n| n.contains('*')), "{row}");
    }
    let (status, ungranted) =
        police.post("/data/sql", &json!({"query": "SELECT address FROM household"})).await?;
    assert_eq!(status / 100, 4, "a column the grant does not give: {ungranted}");
    // A call to 河南's police API, through both gateways: 河南 passes it on under its grant,
    // and keeps only the granted items, masked.
    let (status, proxied) = police.get(&format!("/proxy/{HOUSEHOLD_AT_PEERS}/people/{person}")).await?;
    assert_eq!(status, 200, "{proxied}");
    let data = &proxied["data"];
    assert!(data["name"].as_str().is_some_and(|n| n.contains('*')), "masked at 河南: {proxied}");
    assert!(data.get("ethnicity").is_none() && data.get("internal_note").is_none(), "{proxied}");
    let home_records = guangdong_demo.exchange_records()?;
    assert!(
        home_records.iter().any(|r| r["operation"] == "proxy" && r["peer"] == "henan" && r["status"] == 200),
        "广东 records the proxied call"
    );
    assert!(
        home_records.iter().any(|r| r["operation"] == "sql" && r["peer"] == "henan" && r["status"] == 200),
        "广东 records the query it passed on"
    );
    let home = home_records
        .iter()
        .find(|r| r["operation"] == "verify" && r["peer"] == "henan" && r["status"] == 200)
        .with_context(|| format!("广东's record of the verification: {home_records:?}"))?;
    assert_eq!(home["resources"][0], HOUSEHOLD_AT_PEERS);
    assert_eq!(
        (home["region"].as_str(), home["supplier_regions"][0].as_str()),
        (Some("440000"), Some("410000"))
    );
    let peer_id = home["peer_exchange_id"].as_str().context("河南's record id")?;
    let supplier_records = henan_demo.exchange_records()?;
    let there =
        supplier_records.iter().find(|r| r["id"] == peer_id).context("河南's record of the verification")?;
    assert_eq!(
        (there["peer"].as_str(), there["peer_exchange_id"].as_str()),
        (Some("guangdong"), home["id"].as_str())
    );
    assert_eq!(
        (there["department"].as_str(), there["status"].as_u64()),
        (filed["applicant_department"].as_str(), Some(200))
    );
    assert_eq!(there["grants"][0], grant_id.as_str());
    // 河南 hangs: the call ends at the peers' deadline (2 s here) with 504. 河南 is down: 502 at
    // once. Both are recorded at home.
    henan_demo.gateway.signal("STOP")?;
    let started = Instant::now();
    let (status, late) = police.post("/data/verify", &verify).await?;
    assert_eq!((status, late["code"].as_str()), (504, Some("peer_timeout")), "{late}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    henan_demo.gateway.signal("CONT")?;
    henan_demo.gateway.signal("KILL")?;
    henan_demo.gateway.wait_exit(Duration::from_secs(10)).await?;
    let started = Instant::now();
    let (status, down) = police.post("/data/verify", &verify).await?;
    assert_eq!((status, down["code"].as_str()), (502, Some("peer_unavailable")), "{down}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let failures: Vec<_> = guangdong_demo
        .exchange_records()?
        .into_iter()
        .filter(|r| r["peer"] == "henan" && (r["status"] == 504 || r["status"] == 502))
        .collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    henan_demo.restart().await?;
    let supplier = henan_demo.sign_in("supplier.henan-police").await?;
    eventually(Duration::from_secs(10), "河南 answering again", || async {
        let (status, _) = police.post("/data/verify", &verify).await?;
        Ok((status == 200).then_some(Value::Null))
    })
    .await?;

    let from_guangdong = |records: &[Value]| records.iter().filter(|r| r["peer"] == "guangdong").count();
    let before = from_guangdong(&henan_demo.exchange_records()?);

    // A purpose the mirror holds no grant for is refused at home: 河南 never hears of it.
    let other_purpose = police_of(&guangdong_demo, "KSTB-GA-001")?;
    let (status, refused) = other_purpose.post("/data/verify", &verify).await?;
    assert_eq!((status, refused["code"].as_str()), (403, Some("access_denied")), "{refused}");
    assert_eq!(from_guangdong(&henan_demo.exchange_records()?), before, "the refused call reached 河南");

    // Revoked at 河南 while 广东 is down, and 广东 restarted on a peer port 河南 does not know,
    // so the revocation cannot reach its mirror: the mirror still shows the grant, and 河南
    // refuses the call under its own.
    guangdong_demo.gateway.signal("KILL")?;
    guangdong_demo.gateway.wait_exit(Duration::from_secs(10)).await?;
    let revoke = json!({"action": "revoke", "version": grant["version"], "reason": "停止共享"});
    let (status, revoked) = supplier.post(&format!("/grants/{grant_id}/changes"), &revoke).await?;
    assert_eq!(status, 200, "{revoked}");
    let config = guangdong_demo.data_dir().join("tongban.toml");
    let known = std::fs::read_to_string(&config)?;
    let listen = format!("listen = \"127.0.0.3:{}\"", guangdong.peer_port);
    let elsewhere = std::net::TcpListener::bind(("127.0.0.3", 0))?.local_addr()?.port();
    std::fs::write(&config, known.replace(&listen, &format!("listen = \"127.0.0.3:{elsewhere}\"")))?;
    guangdong_demo.restart().await?;
    let applicant = guangdong_demo.sign_in("demander.guangdong-police").await?;
    let (_, mirrors) = applicant.get("/federation/grant-mirrors").await?;
    assert!(
        mirrors
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["grant"]["id"] == grant_id.as_str() && m["grant"]["status"] == "active"),
        "the mirror is stale: {mirrors}"
    );
    let police = police_of(&guangdong_demo, "KSTB-GA-003")?;
    let (status, refused) = police.post("/data/verify", &verify).await?;
    assert_eq!((status, refused["code"].as_str()), (403, Some("access_denied")), "{refused}");
    assert!(refused.to_string().contains("grant_revoked"), "refused by 河南 for the revocation: {refused}");
    assert_eq!(from_guangdong(&henan_demo.exchange_records()?), before + 1, "河南 decided and recorded it");

    // Back on its own port, 广东 receives the revocation, and the mirror refuses at home.
    guangdong_demo.gateway.signal("KILL")?;
    guangdong_demo.gateway.wait_exit(Duration::from_secs(10)).await?;
    std::fs::write(&config, known)?;
    guangdong_demo.restart().await?;
    let [applicant, gd_office, _, _, gd_operator] = sign_in_both(&henan_demo, &guangdong_demo).await?;
    let started = Instant::now();
    eventually(Duration::from_secs(10), "the revocation at 广东", || async {
        let (_, mirrors) = applicant.get("/federation/grant-mirrors").await?;
        let mirror = mirrors.as_array().into_iter().flatten().find(|m| m["grant"]["id"] == grant_id.as_str());
        Ok(mirror.filter(|m| m["grant"]["status"] == "revoked").cloned())
    })
    .await?;
    eprintln!("the revocation reached the mirror {:?} after 广东 came back", started.elapsed());
    let police = police_of(&guangdong_demo, "KSTB-GA-003")?;
    let (status, _) = police.post("/data/verify", &verify).await?;
    assert_eq!(status, 403);
    assert_eq!(from_guangdong(&henan_demo.exchange_records()?), before + 1, "refused at home");

    // 河南 is killed. 广东 keeps taking steps; they wait in its outbox, in order.
    henan_demo.gateway.signal("KILL")?;
    henan_demo.gateway.wait_exit(Duration::from_secs(10)).await?;
    let mut waiting = Vec::new();
    for item in ["KSTB-GA-001", "KSTB-GA-003"] {
        let (status, filed) = applicant.post("/demands", &remote_demand(item, asked.clone())).await?;
        assert_eq!(status, 201, "{filed}");
        let id = filed["id"].as_str().context("id")?.to_owned();
        assert_eq!(act(&applicant, &applicant, &id, json!({"action": "submit"})).await.0, 200);
        assert_eq!(
            act(&gd_office, &gd_office, &id, json!({"action": "pass_conformity", "terms": asked})).await.0,
            200
        );
        waiting.push(id);
    }
    // The first is withdrawn at once: its withdrawal must reach 河南 after the hand-off.
    assert_eq!(
        act(&applicant, &applicant, &waiting[0], json!({"action": "withdraw", "reason": "已线下办结"}))
            .await
            .0,
        200
    );
    let federation = eventually(Duration::from_secs(10), "the outbox at 广东", || async {
        let (_, federation) = gd_operator.get("/federation/peers").await?;
        let henan = peer(&federation, "henan")?;
        let outbox = &henan["outbox"];
        let down = henan["reachable"] == false;
        Ok((outbox["pending"].as_i64() == Some(3) && outbox["last_error"].is_string() && down)
            .then(|| federation.clone()))
    })
    .await?;
    assert!(peer(&federation, "henan")?["outbox"]["oldest_pending_at"].is_string(), "{federation}");
    // Operators' scrapers see the same.
    let (_, metrics) = gd_operator.get_root("/metrics").await?;
    let metrics = metrics.as_str().context("metrics text")?;
    for line in ["tongban_peer_outbox_pending{peer=\"henan\"} 3", "tongban_peer_reachable{peer=\"henan\"} 0"]
    {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    // The console's federation page, in a real browser, at this moment.
    let screenshots = crate::console::screenshots("federation");
    crate::console::run_browser_tests("federation.test.mjs", &guangdong_demo, &screenshots, &[]).await;
    // 广东 is killed too, with the hand-offs still undelivered.
    guangdong_demo.gateway.signal("KILL")?;
    guangdong_demo.gateway.wait_exit(Duration::from_secs(10)).await?;
    guangdong_demo.restart().await?;
    henan_demo.restart().await?;
    let [applicant, _, supplier, _, gd_operator] = sign_in_both(&henan_demo, &guangdong_demo).await?;
    let withdrawn = demand_in(&supplier, &waiting[0], "withdrawn").await?;
    assert_eq!(kinds(&withdrawn), ["submit", "pass_conformity", "withdraw"], "delivered once, in order");
    let second = demand_in(&supplier, &waiting[1], "supplier_review").await?;
    assert_eq!(kinds(&second), ["submit", "pass_conformity"]);
    let federation = eventually(Duration::from_secs(10), "the outbox emptied", || async {
        let (_, federation) = gd_operator.get("/federation/peers").await?;
        Ok((peer(&federation, "henan")?["outbox"]["pending"] == 0).then(|| federation.clone()))
    })
    .await?;
    assert_eq!(peer(&federation, "henan")?["outbox"]["refused"], 0, "{federation}");
    // Each demand once at 河南, the first one's history unchanged by the restarts.
    let (_, listed) = supplier.get("/demands?limit=500").await?;
    for id in waiting.iter().chain([&id]) {
        let copies =
            listed["items"].as_array().into_iter().flatten().filter(|d| d["id"] == id.as_str()).count();
        assert_eq!(copies, 1, "demand {id}");
    }
    let (_, first) = supplier.get(&format!("/demands/{id}")).await?;
    assert_eq!(kinds(&first), expected);
    let (_, home) = applicant.get(&format!("/demands/{}", waiting[1])).await?;
    assert_eq!(home["state"], "supplier_review");
    Ok(())
}

/// A demand step as a peer sends it: `role` takes `action` on demand `id`, filed by
/// `applicant` (code and region) on 河南's household resource.
fn step(id: &str, applicant: (&str, &str), role: &str, action: Value) -> Value {
    let asked = terms(&["id_number", "name"], "41", 1, 10);
    json!({
        "kind": "demand_step",
        "demand_id": id,
        "applicant": {"code": applicant.0, "name": "某厅", "region": applicant.1},
        "applicant_system": null,
        "resource_code": "A01-410000-0001",
        "resource_version": 1,
        "supplier_department": "11410000004100017W",
        "service_item": "KSTB-GA-003",
        "purpose": "办理跨省户口迁移时核验申请人户籍信息",
        "legal_basis": "《国务院办公厅关于加快推进政务服务“跨省通办”的指导意见》",
        "actor": "user:reviewer.guangdong",
        "role": role,
        "action": action,
        "at": "2026-12-05T10:00:00+08:00",
        "workflow": {
            "state": "supplier_review", "supplier_review": true, "requested": asked,
            "approved": null, "refusal": null, "clock": null, "history": [],
        },
    })
}

/// A peer that sends what it may not: messages out of sequence, unreadable, for departments
/// of another province, steps that are not its side's, and mirrors for demands it does not
/// answer. Each is refused with its code, takes its place in the sequence, and changes nothing;
/// a message a repeat acknowledges without effect. 广东's gateway certificate is used by the
/// test itself, as a hostile 广东 gateway would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_may_send_only_its_own_steps_in_sequence() -> anyhow::Result<()> {
    let henan = Province::new("henan", "410000", "127.0.0.2")?;
    let guangdong = Province::new("guangdong", "440000", "127.0.0.3")?;
    henan.configure(&[(&guangdong, None)])?;
    let henan_url = henan.peer_url();
    let (henan_dir, guangdong_dir, messages) = (
        henan.dir().to_owned(),
        guangdong.dir().to_owned(),
        format!("{}/federation/v1/messages", henan.peer_url()),
    );
    let henan_demo = Demo::start_in(henan.data, "127.0.0.2:0", 1000).await?;
    let as_guangdong = client(
        &henan_dir,
        Some((
            guangdong_dir.join("federation/gateway.pem"),
            guangdong_dir.join("federation/gateway-key.pem"),
        )),
    )?;
    let send = |seq: i64, body: String| {
        let request =
            as_guangdong.post(format!("{messages}/{seq}")).header("content-type", "application/json");
        async move {
            let answer = request.body(body).send().await?;
            let status = answer.status().as_u16();
            anyhow::Ok((status, answer.json::<Value>().await?))
        }
    };
    let code = |answer: &(u16, Value)| (answer.0, answer.1["code"].as_str().map(str::to_owned));
    let id = "01900000-0000-7000-8000-0000000000a1";
    let pass = json!({"action": "pass_conformity", "terms": terms(&["id_number", "name"], "41", 1, 10)});
    let genuine = step(id, ("114400000044000285", "440000"), "data_office", pass.clone());

    // Ahead of the sequence: sent again later, nothing applied.
    let ahead = send(5, genuine.to_string()).await?;
    assert_eq!(code(&ahead), (409, Some("out_of_sequence".into())), "{}", ahead.1);
    // Unreadable: refused, and its place taken, so the next number is 2.
    let unreadable = send(1, "{\"kind\": \"demand_step\"".into()).await?;
    assert_eq!(code(&unreadable), (422, Some("unreadable_message".into())), "{}", unreadable.1);
    let repeat = send(1, genuine.to_string()).await?;
    assert_eq!((repeat.0, repeat.1["applied"].as_bool()), (200, Some(false)), "{}", repeat.1);
    // 广东 speaks for 广东's departments only.
    let anhui = step(id, ("113400000034000187", "340000"), "data_office", pass.clone());
    assert_eq!(code(&send(2, anhui.to_string()).await?), (403, Some("forbidden".into())));
    // A demand starts at the supplier with its home office's pass, nothing else.
    let approve = json!({"action": "supplier_approve", "terms": terms(&["id_number", "name"], "41", 1, 10)});
    let skipped = step(id, ("114400000044000285", "440000"), "supplier", approve.clone());
    assert_eq!(code(&send(3, skipped.to_string()).await?), (422, Some("unknown_demand".into())));
    let supplier = henan_demo.sign_in("supplier.henan-police").await?;
    assert_eq!(supplier.get(&format!("/demands/{id}")).await?.0, 404, "nothing was created");

    // The genuine hand-off is applied.
    let applied = send(4, genuine.to_string()).await?;
    assert_eq!((applied.0, applied.1["applied"].as_bool()), (200, Some(true)), "{}", applied.1);
    assert_eq!(applied.1["clock"]["stage"], "supplier", "河南's clock goes back: {}", applied.1);
    let (status, demand) = supplier.get(&format!("/demands/{id}")).await?;
    assert_eq!(
        (status, demand["state"].as_str(), demand["side"].as_str()),
        (200, Some("supplier_review"), Some("supplier"))
    );
    // The supplier's answer is 河南's to give, not 广东's.
    let forged = step(id, ("114400000044000285", "440000"), "supplier", approve);
    assert_eq!(code(&send(5, forged.to_string()).await?), (403, Some("forbidden".into())));
    // Nor does 广东 send 河南 grants: 河南 is this demand's supplier.
    let (_, grants) = supplier.get("/grants?limit=1").await?;
    let mut grant = grants["items"][0]["grant"].clone();
    grant["demand_id"] = json!(id);
    let mirror = json!({"kind": "grant_changed", "grant": grant});
    assert_eq!(code(&send(6, mirror.to_string()).await?), (403, Some("forbidden".into())));
    let (_, demand) = supplier.get(&format!("/demands/{id}")).await?;
    assert_eq!((demand["state"].as_str(), kinds(&demand).len()), (Some("supplier_review"), 0), "{demand}");
    let (_, grants) = supplier.get("/grants?limit=500").await?;
    assert!(grants["items"].as_array().into_iter().flatten().all(|g| g["grant"]["demand_id"] != id));
    // Every refused message took its place: 6 is a repeat now.
    let again = send(6, mirror.to_string()).await?;
    assert_eq!((again.0, again.1["applied"].as_bool()), (200, Some(false)), "{}", again.1);

    // Data calls: 广东 asserts only its own province's departments, and each refusal is
    // recorded at 河南, naming the peer.
    let verify =
        json!({"resource": "A01-410000-0001", "key": "410101199001011234", "claims": {"name": "张三"}});
    let verify = serde_json::to_vec(&verify)?;
    let data_call = |department: Option<&str>| {
        let mut headers = vec![
            ("x-tongban-service-item", "KSTB-GA-001"),
            ("x-tongban-case-number", "GD-2026-000731"),
            ("x-tongban-operator", "警员0031"),
            ("x-tongban-peer-system", "forged-system"),
        ];
        if let Some(department) = department {
            headers.push(("x-tongban-peer-department", department));
        }
        // 广东 signs what it asserts: its signature holds, the assertion does not.
        let signature = sign_as(
            &guangdong_dir,
            "guangdong",
            "henan",
            &headers,
            ("POST", "/federation/v1/data/verify", &verify),
            now_ms(),
        );
        let mut request = as_guangdong
            .post(format!("{}/federation/v1/data/verify", henan_url))
            .header("content-type", "application/json")
            .header("x-tongban-peer-exchange-id", "01900000-0000-7000-8000-0000000000ff")
            .header("x-tongban-request-signature", signature.expect("signed"))
            .body(verify.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move {
            let answer = request.send().await?;
            anyhow::Ok((answer.status().as_u16(), answer.json::<Value>().await?))
        }
    };
    for department in [Some("113400000034000187"), Some("not-a-credit-code"), None] {
        let (status, refused) = data_call(department).await?;
        assert_eq!((status, refused["code"].as_str()), (403, Some("forbidden")), "{department:?}: {refused}");
    }
    let records = henan_demo.exchange_records()?;
    let forged: Vec<_> = records.iter().filter(|r| r["peer"] == "guangdong" && r["status"] == 403).collect();
    assert_eq!(forged.len(), 3, "{records:?}");
    assert!(forged.iter().all(|r| r["peer_exchange_id"] == "01900000-0000-7000-8000-0000000000ff"));
    assert!(forged.iter().all(|r| r["request_signature"].is_string()), "the signatures are kept: {forged:?}");

    // Signed requests: unsigned, changed after signing, stale and replayed calls are refused,
    // and each refusal is recorded with what came.
    let headers = [
        ("x-tongban-service-item", "KSTB-GA-001"),
        ("x-tongban-case-number", "GD-2026-000731"),
        ("x-tongban-operator", "警员0031"),
        ("x-tongban-peer-department", "114400000044000285"),
        ("x-tongban-peer-system", "gd-police-system"),
    ];
    let target = ("POST", "/federation/v1/data/verify", verify.as_slice());
    let signed_call = |signature: Option<String>, body: Vec<u8>| {
        let mut request = as_guangdong
            .post(format!("{}/federation/v1/data/verify", henan_url))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(signature) = signature {
            request = request.header("x-tongban-request-signature", signature);
        }
        async move {
            let answer = request.send().await?;
            let id = answer
                .headers()
                .get("x-tongban-exchange-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            anyhow::Ok((answer.status().as_u16(), answer.json::<Value>().await?, id))
        }
    };
    let fresh = sign_as(&guangdong_dir, "guangdong", "henan", &headers, target, now_ms())?;
    let mut changed = verify.clone();
    changed.extend_from_slice(b" ");
    let stale = sign_as(&guangdong_dir, "guangdong", "henan", &headers, target, now_ms() - 10 * 60 * 1000)?;
    let for_another = sign_as(&guangdong_dir, "guangdong", "anhui", &headers, target, now_ms())?;
    let cases = [
        (None, verify.clone(), 403, "request_signature_missing"),
        (Some(fresh.clone()), changed, 403, "request_signature_invalid"),
        (Some(stale), verify.clone(), 403, "request_stale"),
        (Some(for_another), verify.clone(), 403, "request_signature_invalid"),
        (Some(fresh.clone()), verify.clone(), 200, ""),
        (Some(fresh), verify.clone(), 409, "request_replayed"),
    ];
    let mut refused_ids = Vec::new();
    for (signature, body, status, code) in cases {
        let (got, answer, id) = signed_call(signature, body).await?;
        if status == 200 {
            // The grant decides what a signed call may read; the signature only lets it be asked.
            assert_ne!(answer["code"].as_str(), Some("request_signature_invalid"), "{answer}");
            continue;
        }
        assert_eq!((got, answer["code"].as_str()), (status, Some(code)), "{answer}");
        refused_ids.push((id.context("a record id")?, code));
    }
    let records = henan_demo.exchange_records()?;
    for (id, code) in refused_ids {
        let record = records.iter().find(|r| r["id"] == json!(id)).context("the refusal is recorded")?;
        assert_eq!((record["code"].as_str(), record["peer"].as_str()), (Some(code), Some("guangdong")));
    }

    // Not a peer: 广东's CA issued this certificate, but not as its gateway's.
    let unlisted = client(
        &henan_dir,
        Some((
            guangdong_dir.join("federation/client-0.pem"),
            guangdong_dir.join("federation/client-0-key.pem"),
        )),
    )?;
    let answer = unlisted.post(format!("{messages}/7")).json(&genuine).send().await?;
    assert_eq!(answer.status(), 403);
    // The main listener serves no federation route, whatever the caller.
    let on_main = reqwest::Client::new()
        .post(format!("{}/federation/v1/messages/7", henan_demo.gateway.base_url))
        .json(&genuine)
        .send()
        .await?;
    assert_eq!(on_main.status(), 404);
    Ok(())
}

/// Cross-anchoring: 广东 countersigns 河南's newest signed head and keeps a copy. 河南's
/// operator then cuts the newest records off its log, the chain and seals still consistent:
/// its own audit passes, but not against 广东's countersignature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_cut_short_after_a_peer_countersigned_it_is_caught() -> anyhow::Result<()> {
    let henan = Province::new("henan", "410000", "127.0.0.2")?;
    let guangdong = Province::new("guangdong", "440000", "127.0.0.3")?;
    henan.configure(&[(&guangdong, None)])?;
    guangdong.configure(&[(&henan, None)])?;
    let guangdong_cert = guangdong.dir().join("federation/evidence-cert.pem");
    let (mut henan_demo, guangdong_demo) = tokio::try_join!(
        Demo::start_in(henan.data, "127.0.0.2:0", 1000),
        Demo::start_in(guangdong.data, "127.0.0.3:0", 1000),
    )?;
    // Three calls at 河南 (refused: the purpose is missing), each with its record and head.
    let (_, system) = henan_demo.system("广东省公安厅跨省户籍业务系统")?;
    let body = json!({"resource": "A01-410000-0001", "key": "410101199001011234", "claims": {}});
    for _ in 0..3 {
        let answer = system.send(reqwest::Method::POST, "/data/verify", Some(&body), None).await?;
        assert!(answer.header("x-tongban-receipt").is_some());
    }
    let copies = guangdong_demo.data_dir().join("exchange/peer-anchors/henan");
    let anchor =
        eventually(Duration::from_secs(20), "广东's countersignature of 河南's record 3", || {
            let copies = copies.clone();
            async move {
                let Ok(entries) = std::fs::read_dir(&copies) else { return Ok(None) };
                for entry in entries {
                    let value: Value = serde_json::from_slice(&std::fs::read(entry?.path())?)?;
                    let head = &value["countersignature"]["head"];
                    if head["first_seq"].as_u64().zip(head["size"].as_u64()).is_some_and(|(f, n)| f + n > 3) {
                        return Ok(Some(value));
                    }
                }
                Ok(None)
            }
        })
        .await?;
    let kept = henan_demo.data_dir().join("exchange/anchors");
    eventually(Duration::from_secs(10), "河南 keeps the countersignature", || {
        let kept = kept.clone();
        async move { Ok(std::fs::read_dir(&kept).is_ok_and(|mut e| e.next().is_some()).then_some(Value::Null)) }
    })
    .await?;
    let henan_dir = henan_demo.data_dir().to_owned();
    let audit = |extra: Vec<std::ffi::OsString>| {
        let mut command = std::process::Command::new(tongban_e2e::tongban_bin());
        command.args(["audit", "verify", "--json", "--data-dir"]).arg(&henan_dir).args(extra);
        command.output()
    };
    let report: Value = serde_json::from_slice(&audit(Vec::new())?.stdout)?;
    assert_eq!(report["anchored"]["by"], "guangdong", "the audit reports the last anchored point: {report}");

    // 河南's operator cuts the last record and its head off the log, and its own anchors.
    henan_demo.gateway.signal("KILL")?;
    henan_demo.gateway.wait_exit(Duration::from_secs(10)).await?;
    let log = henan_dir.join("exchange");
    let segment = std::fs::read_dir(&log)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max()
        .context("a segment")?;
    let text = std::fs::read_to_string(&segment)?;
    let lines: Vec<&str> = text.lines().collect();
    let last_record = lines.iter().rposition(|l| l.starts_with("{\"seq\":")).context("a record")?;
    std::fs::write(&segment, lines[..last_record].iter().map(|l| format!("{l}\n")).collect::<String>())?;
    std::fs::remove_dir_all(&kept)?;
    let alone = audit(Vec::new())?;
    assert!(
        alone.status.success(),
        "the shortened log is consistent on its own: {}",
        String::from_utf8_lossy(&alone.stderr)
    );

    // Against 广东's copy, the cut shows.
    let copy = henan_dir.join("guangdong-copy.json");
    std::fs::write(&copy, serde_json::to_vec(&anchor["countersignature"])?)?;
    let checked = audit(vec!["--anchor".into(), copy.into(), "--peer-cert".into(), guangdong_cert.into()])?;
    assert_eq!(checked.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(stderr.contains("as guangdong countersigned it"), "{stderr}");
    Ok(())
}

const HOUSEHOLD_REGISTERS_AT_PEERS: &str = "410000:E01-410000-0001";

/// A standing household register (居民户口簿) of 河南's register, read from the file without the
/// gateway: its number and holder.
fn standing_register(demo: &Demo) -> anyhow::Result<(String, String)> {
    use arrow::array::{Array, AsArray};
    let path = demo.data_dir().join("datasets/licence_household_register.parquet");
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?
            .build()?;
    for batch in reader {
        let batch = batch?;
        let text = |name: &str| -> anyhow::Result<_> {
            Ok(batch.column_by_name(name).context("column")?.as_string::<i32>().clone())
        };
        let (numbers, holders, statuses) = (text("licence_number")?, text("holder")?, text("status")?);
        if let Some(row) =
            (0..batch.num_rows()).find(|&r| statuses.is_valid(r) && statuses.value(r) == "issued")
        {
            return Ok((numbers.value(row).to_owned(), holders.value(row).to_owned()));
        }
    }
    anyhow::bail!("河南's register holds no standing household register")
}

/// A licence 河南 issued, checked from 广东: 广东's police call their own gateway naming 河南's
/// register, 广东 decides against the mirror of 河南's grant and 河南 answers from its register,
/// its revocations and its departments' seals. The answer carries both gateways' receipts,
/// each verifying with its own gateway's certificate, and each side records the call naming
/// the other's record. A revocation at 河南 is said at 广东 on the next check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_licence_issued_in_one_province_is_checked_from_another_with_both_receipts() -> anyhow::Result<()> {
    let henan = Province::new("henan", "410000", "127.0.0.6")?;
    let guangdong = Province::new("guangdong", "440000", "127.0.0.7")?;
    // 河南 serves its household registers' register, and seals with the demo's generated seals.
    let register = "\n[[datasets]]\nname = \"licence_household_register\"\nkey = \"licence_number\"\n\
                    [datasets.source]\nkind = \"parquet\"\nlocation = \"datasets/licence_household_register.parquet\"\n\
                    \n[data.seals]\ngenerate = true\n";
    henan.configure_with(&[(&guangdong, None)], register)?;
    guangdong.configure(&[(&henan, None)])?;
    let (henan_dir, guangdong_dir) = (henan.dir().to_owned(), guangdong.dir().to_owned());
    let (henan_demo, guangdong_demo) = tokio::try_join!(
        Demo::start_in(henan.data, "127.0.0.6:0", 1000),
        Demo::start_in(guangdong.data, "127.0.0.7:0", 1000),
    )?;
    let applicant = guangdong_demo.sign_in("demander.guangdong-police").await?;
    let office = guangdong_demo.sign_in("reviewer.guangdong").await?;
    let supplier = henan_demo.sign_in("supplier.henan-police").await?;
    eventually(Duration::from_secs(20), "河南's register at 广东", || async {
        let (status, _) =
            applicant.get(&format!("/catalog/remote-resources/{HOUSEHOLD_REGISTERS_AT_PEERS}")).await?;
        Ok((status == 200).then_some(Value::Null))
    })
    .await?;

    // The demand, filed and passed at 广东, approved by 河南's police at 河南.
    let items = ["licence_number", "holder", "status", "issued_on", "valid_until", "head_name", "members"];
    let asked = terms(&items, "", 20, 10_000);
    let mut demand = remote_demand("KSTB-GA-003", asked.clone());
    demand["resource_code"] = json!(HOUSEHOLD_REGISTERS_AT_PEERS);
    demand["purpose"] = json!("办理跨省户口迁移时核验申请人出示的居民户口簿");
    let (status, filed) = applicant.post("/demands", &demand).await?;
    assert_eq!(status, 201, "{filed}");
    let id = filed["id"].as_str().context("id")?.to_owned();
    assert_eq!(act(&applicant, &applicant, &id, json!({"action": "submit"})).await.0, 200);
    let (status, passed) =
        act(&office, &office, &id, json!({"action": "pass_conformity", "terms": asked.clone()})).await;
    assert_eq!(status, 200, "{passed}");
    demand_in(&supplier, &id, "supplier_review").await?;
    let (status, approved) =
        act(&supplier, &supplier, &id, json!({"action": "supplier_approve", "terms": asked})).await;
    assert_eq!((status, approved["state"].as_str()), (200, Some("approved")), "{approved}");

    // 河南's population system seals one of its registers as a document for its holder.
    let (number, holder) = standing_register(&henan_demo)?;
    let (_, issuer) = henan_demo.system("河南省公安厅人口管理系统")?;
    let (status, sealed) =
        issuer.post("/licences/seal", &json!({"resource": "E01-410000-0001", "number": number})).await?;
    assert_eq!(status, 200, "{sealed}");

    // 广东's police check the licence and the document at 广东, once the mirror allows it.
    let police = police_of(&guangdong_demo, "KSTB-GA-003")?;
    let check = json!({"resource": HOUSEHOLD_REGISTERS_AT_PEERS, "number": number, "holder": holder,
        "items": ["head_name", "members"]});
    let answer = eventually(Duration::from_secs(20), "the licence check answered at 广东", || async {
        let answer = police.send(reqwest::Method::POST, "/data/licences/check", Some(&check), None).await?;
        Ok((answer.status == 200).then(|| json!({"body": String::from_utf8_lossy(&answer.body), "receipt": answer.header("x-tongban-receipt"), "peer_receipt": answer.header("x-tongban-peer-receipt")})))
    })
    .await?;
    let body: Value = serde_json::from_str(answer["body"].as_str().context("body")?)?;
    assert_eq!((body["found"].as_bool(), body["status"].as_str()), (Some(true), Some("valid")), "{body}");
    assert_eq!(body["resource"], "E01-410000-0001", "河南 answers of its own register: {body}");
    let head_name = body["items"]["head_name"].as_str().context("head_name")?;
    assert!(head_name.contains('*'), "masked at 河南: {body}");
    // Both receipts, each verified offline with its own gateway's evidence certificate over the
    // answer's bytes; neither verifies with the other's.
    let work = tempfile::tempdir()?;
    let bytes = answer["body"].as_str().context("body")?.as_bytes().to_vec();
    let home_cert = guangdong_dir.join("federation/evidence-cert.pem");
    let supplier_cert = henan_dir.join("federation/evidence-cert.pem");
    for (receipt, cert, other) in [
        (&answer["receipt"], &home_cert, &supplier_cert),
        (&answer["peer_receipt"], &supplier_cert, &home_cert),
    ] {
        let receipt = receipt.as_str().context("both receipts are on the answer")?;
        let output = crate::evidence::verify_receipt(work.path(), receipt, &bytes, &[cert], None)?;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
        let output = crate::evidence::verify_receipt(work.path(), receipt, &bytes, &[other], None)?;
        assert!(!output.status.success(), "a receipt verifies with the other gateway's certificate");
    }

    // The sealed document, checked at 广东 against 河南's seals and register: genuine; with an
    // altered face, refused and the item named.
    let document_check = |sealed: Value| {
        let police = police.clone();
        async move {
            police
                .post(
                    "/data/licences/documents/check",
                    &json!({"resource": HOUSEHOLD_REGISTERS_AT_PEERS, "sealed": sealed}),
                )
                .await
        }
    };
    let (status, genuine) = document_check(sealed.clone()).await?;
    assert_eq!((status, genuine["genuine"].as_bool()), (200, Some(true)), "{genuine}");
    let mut altered = sealed.clone();
    altered["document"]["surface"]["members"] = json!("9");
    let (status, refused) = document_check(altered).await?;
    assert_eq!((status, refused["reason"].as_str()), (200, Some("surface_altered")), "{refused}");
    assert_eq!(refused["altered"], json!(["surface.members"]), "{refused}");

    // 河南's police revoke it at 河南; 广东's next checks say so.
    let revoke = json!({"resource": "E01-410000-0001", "number": number, "reason": "户口迁出，户口簿注销"});
    let (status, revoked) = supplier.post("/licences/revoke", &revoke).await?;
    assert_eq!(status, 200, "{revoked}");
    let (status, after) = police.post("/data/licences/check", &check).await?;
    assert_eq!((status, after["status"].as_str()), (200, Some("revoked")), "{after}");
    let (status, after) = document_check(sealed).await?;
    assert_eq!((status, after["reason"].as_str()), (200, Some("revoked")), "{after}");

    // Each side recorded each check as a licence check, naming the other's record; neither
    // record holds the licence's number.
    let at_henan = henan_demo.exchange_records()?;
    let at_guangdong = guangdong_demo.exchange_records()?;
    let checks = |records: &[Value]| -> Vec<Value> {
        records.iter().filter(|r| r["operation"] == "licence_check" && r["status"] == 200).cloned().collect()
    };
    let (henan_checks, guangdong_checks) = (checks(&at_henan), checks(&at_guangdong));
    assert_eq!(guangdong_checks.len(), 5, "{guangdong_checks:?}");
    for home in &guangdong_checks {
        assert_eq!(home["peer"], "henan", "{home}");
        let theirs = home["peer_exchange_id"].as_str().context("the supplier's record")?;
        let supplied = henan_checks.iter().find(|r| r["id"] == theirs).context("河南's record of it")?;
        assert_eq!(
            (supplied["peer"].as_str(), supplied["peer_exchange_id"].as_str()),
            (Some("guangdong"), home["id"].as_str())
        );
        assert!(supplied["request_signature"].is_string(), "{supplied}");
    }
    for record in at_henan.iter().chain(&at_guangdong) {
        assert!(!record.to_string().contains(&number), "a number in a record: {record}");
    }
    drop((henan_demo, guangdong_demo));
    Ok(())
}
