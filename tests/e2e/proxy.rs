//! Proxying to suppliers' own APIs end to end: the demo's housing fund service (a real HTTP
//! service the demo starts), and a supplier run by this test that can be slow, fail and come
//! back, bound to the household resource through the gateway's configuration, called over
//! TLS. (The housing fund happy path over mutual TLS is in `tls.rs`.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tongban_e2e::{Api, Demo, RawAnswer};

const POLICE_SYSTEM: &str = "广东省公安厅跨省户籍业务系统";
const HOUSEHOLD: &str = "A01-410000-0001";
const FUND_SYSTEM: &str = "广州公积金业务系统";
const HOUSING_FUND: &str = "C03-340000-0001";
const SUPPLIER_KEY: &str = "s3cret-supplier-key";

fn purpose(api: &Api, service_item: &str) -> Api {
    api.with_headers(&[
        ("x-tongban-service-item", service_item),
        ("x-tongban-case-number", "GD-2026-000731"),
        ("x-tongban-operator", "operator-0031"),
    ])
}

fn json_of(answer: &RawAnswer) -> Value {
    serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
}

/// A supplier of household records run by the test: it answers with whatever a careless
/// supplier might send, and can be made slow or taken down.
struct TestSupplier {
    address: SocketAddr,
    calls: Arc<AtomicU32>,
    /// The headers of the last call to `/api/echo`, as the supplier received them.
    seen: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl TestSupplier {
    async fn start(address: SocketAddr) -> anyhow::Result<TestSupplier> {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&calls);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen_by_echo = Arc::clone(&seen);
        let app = Router::new()
            .route(
                "/api/people/{key}",
                get(|axum::extract::Path(key): axum::extract::Path<String>| async move {
                    axum::Json(json!({
                        "code": 0,
                        "message": "ok",
                        "data": {
                            "id_number": key,
                            "name": "张三丰",
                            "division_code": "411502",
                            "status": "正常",
                            "ethnicity": "汉族",
                            "internal_note": "不应外传",
                        },
                    }))
                }),
            )
            .route(
                "/api/people",
                get(|| async {
                    axum::Json(json!({"code": 0, "data": [
                        {"id_number": "411502199001011234", "name": "李四", "division_code": "411502", "status": "正常"},
                        {"id_number": "440106198505050011", "name": "王五", "division_code": "440106", "status": "正常"},
                        {"id_number": "411503199202021235", "name": "赵六", "status": "正常"},
                    ]}))
                }),
            )
            .route(
                "/api/echo",
                get(move |headers: HeaderMap| async move {
                    let pairs: Vec<(String, String)> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                        .collect();
                    let echoed: Vec<Value> =
                        pairs.iter().map(|(k, v)| json!({"header": k, "value": v})).collect();
                    *seen_by_echo.lock().expect("lock") = pairs;
                    ([("set-cookie", "session=abc"), ("server", "supplier/1.0")], axum::Json(json!({"headers": echoed})))
                }),
            )
            .route(
                "/api/banner",
                get(|| async {
                    ([("set-cookie", "session=abc"), ("server", "supplier/1.0")], axum::Json(json!({"code": 0})))
                }),
            )
            .route(
                "/api/uploads",
                post(|body: axum::body::Bytes| async move { axum::Json(json!({"received": body.len()})) }),
            )
            .route(
                "/api/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    axum::Json(json!({"code": 0}))
                }),
            )
            .route("/api/certificate", get(|| async { ([("content-type", "application/pdf")], "%PDF-1.4 …") }))
            .layer(axum::middleware::from_fn(move |request, next: axum::middleware::Next| {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    next.run(request).await
                }
            }));
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let serving = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(TestSupplier { address, calls, seen, stop: Some(stop), serving: Some(serving) })
    }

    /// Takes the supplier down and returns once its listener is closed.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = serving.await;
        }
    }
}

fn binding(address: SocketAddr) -> String {
    format!(
        "[{{resource=\"{HOUSEHOLD}\", url=\"http://{address}/api\", envelope=[\"code\", \"message\", \"data\", \"headers\", \"header\", \"value\", \"received\"], \
         credential_header=\"x-supplier-key\", credential=\"{SUPPLIER_KEY}\", document_items=[\"id_number\"], methods=[\"GET\", \"POST\"], timeout_ms=400, \
         retries=1, breaker_failures=4, breaker_open_ms=1500, max_request_bytes=1000}}]"
    )
}

#[tokio::test]
async fn the_demo_supplier_is_reached_through_the_grant_filtered_masked_and_cached() -> anyhow::Result<()> {
    let demo = Demo::start().await?;
    let (_, system) = demo.system(FUND_SYSTEM)?;
    let fund = purpose(&system, "KSTB-JS-004");
    // An account from the supplier's own file.
    let id_number = demo.housing_fund_account()?;

    let path = format!("/proxy/{HOUSING_FUND}/deposits/{id_number}");
    let first = fund.send(reqwest::Method::GET, &path, None, None).await?;
    assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
    let body = json_of(&first);
    assert_eq!((body["code"].as_u64(), body["message"].as_str()), (Some(0), Some("成功")));
    let data = body["data"].as_object().context("data")?;
    // The narrowed grant: four items, identity number and name masked; nothing else.
    let mut items: Vec<&str> = data.keys().map(String::as_str).collect();
    items.sort_unstable();
    assert_eq!(items, ["account_status", "balance", "id_number", "name"]);
    let masked_id = data["id_number"].as_str().context("id")?;
    assert_eq!(masked_id.len(), 18);
    assert!(
        masked_id.starts_with(&id_number[..6]) && masked_id[6..14].chars().all(|c| c == '*'),
        "{masked_id}"
    );
    assert!(data["name"].as_str().context("name")?.ends_with('*'));
    assert_eq!(first.header("x-tongban-cache").as_deref(), Some("miss"));
    let exchange_id = first.header("x-tongban-exchange-id").context("exchange id")?;

    // The same call again comes from the cache (the supplier lets shared caches keep it).
    let second = fund.send(reqwest::Method::GET, &path, None, None).await?;
    assert_eq!((second.status, second.header("x-tongban-cache").as_deref()), (200, Some("hit")));
    assert_eq!(second.body, first.body);

    // The certificate is a document the gateway cannot mask: this grant masks the identity
    // number and does not cover the account number, so it is refused with both reasons.
    let certificate = fund
        .send(reqwest::Method::GET, &format!("/proxy/{HOUSING_FUND}/certificates/{id_number}"), None, None)
        .await?;
    assert_eq!(certificate.status, 403, "{}", String::from_utf8_lossy(&certificate.body));
    let codes: Vec<String> = json_of(&certificate)["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["code"].as_str().map(str::to_owned))
        .collect();
    assert!(
        codes.contains(&"items_not_granted".to_owned()) && codes.contains(&"document_unmaskable".to_owned()),
        "{codes:?}"
    );

    // A key the supplier does not know: its 404 passes through, filtered.
    let missing = fund
        .send(reqwest::Method::GET, &format!("/proxy/{HOUSING_FUND}/deposits/110105194912310025"), None, None)
        .await?;
    assert_eq!(missing.status, 404);
    assert_eq!(json_of(&missing)["code"], 404);

    // Without a grant for the resource, the supplier is never reached.
    let (_, police) = demo.system(POLICE_SYSTEM)?;
    let refused = purpose(&police, "KSTB-GA-001").send(reqwest::Method::GET, &path, None, None).await?;
    assert_eq!(refused.status, 403);
    // A resource not bound to any supplier API (the police system holds a grant on it).
    let police_household = purpose(&police, "KSTB-GA-001");
    let unbound =
        police_household.send(reqwest::Method::GET, &format!("/proxy/{HOUSEHOLD}/x"), None, None).await?;
    assert_eq!((unbound.status, json_of(&unbound)["code"].as_str()), (404, Some("proxy_not_bound")));
    // Paths that climb out of the supplier's base are refused before anything is sent.
    // (HTTP clients resolve `..` before sending; the gateway's unit tests cover encoded dots.)
    let climbing = fund
        .send(reqwest::Method::GET, &format!("/proxy/{HOUSING_FUND}/deposits//admin"), None, None)
        .await?;
    assert_eq!((climbing.status, json_of(&climbing)["code"].as_str()), (400, Some("invalid_proxy_path")));

    // The exchange record names the supplier's answer and holds no identity number.
    let record: Value = demo
        .exchange_records()?
        .into_iter()
        .find(|r| r["id"] == exchange_id.as_str())
        .context("the first call's record")?;
    assert_eq!(
        (record["operation"].as_str(), record["upstream_status"].as_u64()),
        (Some("proxy"), Some(200))
    );
    assert!(record["upstream_us"].as_u64().is_some());
    let log = serde_json::to_string(&demo.exchange_records()?)?;
    assert!(!log.contains(&id_number), "no identity number in the exchange log");
    Ok(())
}

#[tokio::test]
async fn a_careless_supplier_is_filtered_and_failures_are_contained_over_tls() -> anyhow::Result<()> {
    let mut supplier = TestSupplier::start("127.0.0.1:0".parse()?).await?;
    let address = supplier.address;
    // Over TLS, the police system calling with its API key (which must not reach the supplier).
    let demo = Demo::start_tls_with(2000, &[("TONGBAN_DATA__UPSTREAMS", &binding(address))]).await?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = purpose(&system, "KSTB-GA-001").with_headers(&[
        ("x-tongban-service-item", "KSTB-GA-001"),
        ("x-tongban-case-number", "GD-2026-000731"),
        ("x-tongban-operator", "operator-0031"),
        ("cookie", "caller-session=1"),
        ("connection", "x-caller-hop"),
        ("x-caller-hop", "1"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ]);
    let get = |path: String| {
        let police = police.clone();
        async move {
            // The grant allows 10 calls a second; the test stays under it.
            tokio::time::sleep(Duration::from_millis(120)).await;
            police.send(reqwest::Method::GET, &format!("/proxy/{HOUSEHOLD}/{path}"), None, None).await
        }
    };

    // One record: granted items masked, an item outside the grant and an unknown member gone.
    let one = get("people/411502199001011234".into()).await?;
    assert_eq!(one.status, 200, "{}", String::from_utf8_lossy(&one.body));
    assert_eq!(
        json_of(&one),
        json!({"code": 0, "message": "ok", "data": {
            "id_number": "411502********1234", "name": "张**", "division_code": "411502", "status": "正常"}})
    );
    // A list: the record out of the grant's rows and the one that does not show its division
    // are dropped.
    let list = get("people".into()).await?;
    assert_eq!(
        json_of(&list)["data"],
        json!([{"id_number": "411502********1234", "name": "李*", "division_code": "411502", "status": "正常"}])
    );

    // Header hygiene, as the supplier saw it. An answer that repeats the gateway's credential
    // for the supplier is refused whole.
    let echo = get("echo".into()).await?;
    assert_eq!((echo.status, json_of(&echo)["code"].as_str()), (502, Some("upstream_echoed_credential")));
    assert!(!String::from_utf8_lossy(&echo.body).contains(SUPPLIER_KEY));
    let banner = get("banner".into()).await?;
    assert_eq!(banner.status, 200);
    assert!(banner.header("set-cookie").is_none(), "supplier cookies stay behind");
    let seen = supplier.seen.lock().expect("lock").clone();
    let value_of = |name: &str| seen.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(value_of("x-supplier-key").as_deref(), Some(SUPPLIER_KEY));
    for hidden in ["authorization", "cookie", "x-caller-hop", "connection"] {
        assert!(value_of(hidden).is_none(), "{hidden} reached the supplier: {seen:?}");
    }
    assert_eq!(value_of("x-tongban-service-item").as_deref(), Some("KSTB-GA-001"));
    assert_eq!(value_of("x-tongban-case-number").as_deref(), Some("GD-2026-000731"));
    assert!(value_of("x-tongban-consumer-system").is_some() && value_of("x-tongban-exchange-id").is_some());
    assert_eq!(
        value_of("traceparent").as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        "the caller's trace continues"
    );

    // Request bodies: within the binding's limit they go through; beyond it, 413.
    tokio::time::sleep(Duration::from_millis(120)).await;
    let small = police
        .send(
            reqwest::Method::POST,
            &format!("/proxy/{HOUSEHOLD}/uploads"),
            Some(&json!({"blob": "x".repeat(500)})),
            None,
        )
        .await?;
    assert_eq!((small.status, json_of(&small)["received"].as_u64()), (200, Some(511)));
    tokio::time::sleep(Duration::from_millis(120)).await;
    let large = police
        .send(
            reqwest::Method::POST,
            &format!("/proxy/{HOUSEHOLD}/uploads"),
            Some(&json!({"blob": "x".repeat(5000)})),
            None,
        )
        .await?;
    assert_eq!((large.status, json_of(&large)["code"].as_str()), (413, Some("body_too_large")));

    // A document while the grant masks items: refused; the supplier answered, nothing passed.
    let document = get("certificate".into()).await?;
    assert_eq!(document.status, 403);

    // Slow: the binding allows 400 ms.
    let slow = get("slow".into()).await?;
    assert_eq!((slow.status, json_of(&slow)["code"].as_str()), (504, Some("upstream_timeout")));
    // One slow call (two attempts) is two failures of four; a good call closes the count.
    // (Each call below asks with its own query, so none is answered from the cache.)
    assert_eq!(get("people/411502199001011234?n=1".into()).await?.status, 200);

    // Down: connection refused, retried once, then 502. Two such calls open the circuit...
    supplier.stop().await;
    let down = get("people/411502199001011234?n=2".into()).await?;
    assert_eq!((down.status, json_of(&down)["code"].as_str()), (502, Some("upstream_unreachable")));
    assert_eq!(get("people/411502199001011234?n=3".into()).await?.status, 502);
    // ...and then calls are refused at once, with when to try again.
    let open = get("people/411502199001011234?n=4".into()).await?;
    assert_eq!((open.status, json_of(&open)["code"].as_str()), (503, Some("upstream_circuit_open")));
    let retry_after: u64 = open.header("retry-after").context("retry-after")?.parse()?;
    assert!((1..=2).contains(&retry_after), "{retry_after}");

    // The supplier comes back; after the open period one trial call closes the circuit.
    let supplier_back = TestSupplier::start(address).await?;
    assert_eq!(get("people/411502199001011234?n=5".into()).await?.status, 503, "still open");
    assert_eq!(supplier_back.calls.load(Ordering::SeqCst), 0, "an open circuit sends nothing");
    // The open period runs on the gateway's own clock, in another process; the breaker's
    // unit tests set that time, and this test waits it out.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let recovered = get("people/411502199001011234?n=6".into()).await?;
    assert_eq!(recovered.status, 200, "{}", String::from_utf8_lossy(&recovered.body));
    assert_eq!(get("people/411502199001011234?n=7".into()).await?.status, 200);
    assert_eq!(supplier_back.calls.load(Ordering::SeqCst), 2);

    // Every call left a record, the supplier's failures included.
    let codes: Vec<String> = demo
        .exchange_records()?
        .into_iter()
        .filter(|r| r["operation"] == "proxy")
        .filter_map(|r| r["code"].as_str().map(str::to_owned))
        .collect();
    for code in [
        "upstream_timeout",
        "upstream_unreachable",
        "upstream_circuit_open",
        "body_too_large",
        "access_denied",
    ] {
        assert!(codes.iter().any(|c| c == code), "{code} missing from {codes:?}");
    }
    let log = serde_json::to_string(&demo.exchange_records()?)?;
    assert!(!log.contains("张三丰") && !log.contains("不应外传"));
    Ok(())
}
