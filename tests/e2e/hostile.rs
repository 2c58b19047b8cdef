//! A hostile supplier behind the proxy: a small real HTTP server that answers with values
//! nested under granted items, other regions' records, JSON under other labels, and an echo of
//! the request, and that is slow enough for callers to give up. Nothing ungranted may come
//! back, nothing but an allow-list of the caller's headers may reach it, and every call that
//! reached it is recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};
use tongban_e2e::Demo;

const POLICE_SYSTEM: &str = "广东省公安厅跨省户籍业务系统";
const HOUSEHOLD: &str = "A01-410000-0001";
const KEY: &str = "hostile-supplier-credential";
/// An identity number of Beijing, outside the grant's rows (4115), and an account number:
/// neither may ever reach the caller.
const OUTSIDER: &str = "110101199001011234";
const ACCOUNT: &str = "6222000011112222";

#[derive(Default)]
struct Seen {
    /// The headers of every call, as the supplier received them, with its exchange id.
    calls: Vec<HeaderMap>,
}

async fn start_supplier() -> (SocketAddr, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = Arc::clone(&seen);
    let json_as = |content_type: Option<&'static str>, body: String| {
        let mut response = Response::builder();
        if let Some(content_type) = content_type {
            response = response.header("content-type", content_type);
        }
        response.body(Body::from(body)).expect("response")
    };
    let person = json!({"data": {
        "id_number": "411502199001011234", "name": "张三丰", "division_code": "411502", "status": "正常",
        "ethnicity": "汉族", "internal_note": OUTSIDER}})
    .to_string();
    let app = Router::new()
        .route(
            "/api/nested",
            get(|| async {
                axum::Json(json!({"data": {
                    "id_number": "411502199001011234", "division_code": "411502",
                    "status": {"id_number": OUTSIDER, "account_number": ACCOUNT}}}))
            }),
        )
        .route(
            "/api/region",
            get(|| async {
                axum::Json(json!({"data": {
                    "id_number": "411502199001011234", "division_code": "411502",
                    "status": [{"id_number": OUTSIDER, "division_code": "440104"}]}}))
            }),
        )
        .route(
            "/api/text-json",
            get({
                let p = person.clone();
                move || async move { json_as(Some("text/json"), p) }
            }),
        )
        .route(
            "/api/x-json",
            get({
                let p = person.clone();
                move || async move { json_as(Some("application/x-json"), p) }
            }),
        )
        .route(
            "/api/unlabelled",
            get({
                let p = person.clone();
                move || async move { json_as(None, format!("\u{feff}  {p}")) }
            }),
        )
        .route(
            "/api/json-seq",
            get({
                let p = person.clone();
                move || async move { json_as(Some("application/json-seq"), format!("\u{1e}{p}\n")) }
            }),
        )
        .route(
            "/api/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1_200)).await;
                axum::Json(json!({"data": {"id_number": "411502199001011234", "division_code": "411502"}}))
            }),
        )
        .route(
            "/api/{*rest}",
            any(|headers: HeaderMap| async move {
                let echoed: Vec<Value> = headers
                    .iter()
                    .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
                    .collect();
                ([("content-type", "text/plain")], format!("{echoed:?}"))
            }),
        )
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let record = Arc::clone(&record);
                async move {
                    record.lock().expect("lock").calls.push(request.headers().clone());
                    next.run(request).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (address, seen)
}

fn binding(address: SocketAddr) -> String {
    format!(
        "[{{resource=\"{HOUSEHOLD}\", url=\"http://{address}/api\", envelope=[\"code\", \"data\"], \
         credential_header=\"authorization\", credential=\"Bearer {KEY}\", document_items=[\"id_number\"], \
         timeout_ms=3000, retries=0}}]"
    )
}

#[tokio::test]
async fn a_hostile_supplier_gets_nothing_past_the_grant() -> anyhow::Result<()> {
    let (address, seen) = start_supplier().await;
    let demo = Demo::start_with(2000, &[("TONGBAN_DATA__UPSTREAMS", &binding(address))]).await?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = system.with_headers(&[
        ("x-tongban-service-item", "KSTB-GA-001"),
        ("x-tongban-case-number", "GD-2026-000731"),
        ("x-tongban-operator", "0031"),
        ("x-http-method-override", "DELETE"),
        ("x-original-url", "/admin"),
        ("x-real-ip", "10.0.0.1"),
        ("x-forwarded-host", "evil.example"),
        ("tracestate", "vendor=secret"),
        ("range", "bytes=0-10"),
    ]);
    let call = |method: reqwest::Method, path: &str| {
        let police = police.clone();
        let path = format!("/proxy/{HOUSEHOLD}/{path}");
        async move {
            // The grant allows 10 calls a second.
            tokio::time::sleep(Duration::from_millis(120)).await;
            police.send(method, &path, None, None).await.expect("send")
        }
    };
    let leaks = |body: &[u8]| {
        let text = String::from_utf8_lossy(body);
        [OUTSIDER, ACCOUNT, KEY, "汉族"].into_iter().filter(|s| text.contains(s)).collect::<Vec<_>>()
    };

    // Values nested under granted items are filtered like the answer: the record inside
    // `status` shows no row of the grant's scope, so it goes.
    let nested = call(reqwest::Method::GET, "nested").await;
    assert_eq!(nested.status, 200, "{}", String::from_utf8_lossy(&nested.body));
    assert!(leaks(&nested.body).is_empty(), "{}", String::from_utf8_lossy(&nested.body));
    let region = call(reqwest::Method::GET, "region").await;
    assert_eq!(region.status, 200);
    assert!(leaks(&region.body).is_empty(), "{}", String::from_utf8_lossy(&region.body));
    let body: Value = serde_json::from_slice(&region.body)?;
    assert_eq!(body["data"]["status"], json!([]), "another region's record went");

    // JSON is JSON whatever its label: filtered and masked, or refused when it cannot be read.
    for path in ["text-json", "x-json", "unlabelled", "json-seq"] {
        let answer = call(reqwest::Method::GET, path).await;
        assert!(leaks(&answer.body).is_empty(), "{path}: {}", String::from_utf8_lossy(&answer.body));
        if answer.status == 200 {
            let body: Value = serde_json::from_slice(&answer.body)?;
            assert_eq!(body["data"]["id_number"], "411502********1234", "{path}");
        } else {
            let problem: Value = serde_json::from_slice(&answer.body)?;
            assert_eq!(
                (answer.status, problem["code"].as_str()),
                (502, Some("upstream_response_unreadable")),
                "{path}"
            );
        }
    }

    // Methods the binding does not declare never reach the supplier; TRACE least of all.
    let calls_before = seen.lock().expect("lock").calls.len();
    for method in [reqwest::Method::TRACE, reqwest::Method::POST, reqwest::Method::DELETE] {
        let answer = call(method.clone(), "echo").await;
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.header("allow").as_deref(), Some("GET, HEAD"));
        assert!(leaks(&answer.body).is_empty());
    }
    // Empty path segments are refused before the supplier too.
    for path in ["people/411502199001011234/", "people/%2F411502199001011234", "people//x"] {
        let answer = call(reqwest::Method::GET, path).await;
        let problem: Value = serde_json::from_slice(&answer.body)?;
        assert_eq!((answer.status, problem["code"].as_str()), (400, Some("invalid_proxy_path")), "{path}");
    }
    assert_eq!(seen.lock().expect("lock").calls.len(), calls_before, "none of these reached the supplier");

    // An echo of the request: the gateway's credential for the supplier never comes back, and
    // only the allow-listed caller headers went.
    let echo = call(reqwest::Method::GET, "echo").await;
    assert!(leaks(&echo.body).is_empty(), "{}", String::from_utf8_lossy(&echo.body));
    assert_eq!(echo.status, 502);
    let received = seen.lock().expect("lock").calls.last().cloned().expect("the echo reached the supplier");
    for hidden in
        ["x-http-method-override", "x-original-url", "x-real-ip", "x-forwarded-host", "tracestate", "range"]
    {
        assert!(!received.contains_key(hidden), "{hidden} reached the supplier");
    }
    assert_eq!(
        received.get("authorization").and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {KEY}").as_str())
    );

    // A caller that gives up while the supplier works: the call still ends and is recorded.
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build()?;
    let api_key = demo.credentials["systems"]
        .as_array()
        .and_then(|systems| systems.iter().find(|s| s["name"] == POLICE_SYSTEM))
        .and_then(|s| s["api_key"].as_str())
        .expect("key")
        .to_owned();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let abandoned = impatient
        .get(demo.gateway.url(&format!("/api/v1/proxy/{HOUSEHOLD}/slow")))
        .bearer_auth(&api_key)
        .header("x-tongban-service-item", "KSTB-GA-001")
        .header("x-tongban-case-number", "GD-2026-000732")
        .header("x-tongban-operator", "0031")
        .send()
        .await;
    assert!(abandoned.is_err(), "the caller gave up");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let exchange_id = seen
        .lock()
        .expect("lock")
        .calls
        .last()
        .and_then(|h| h.get("x-tongban-exchange-id").and_then(|v| v.to_str().ok()).map(str::to_owned))
        .expect("the slow call reached the supplier");
    let records = demo.exchange_records()?;
    let record =
        records.iter().find(|r| r["id"] == json!(exchange_id)).expect("the abandoned call is recorded");
    assert_eq!((record["status"].as_u64(), record["upstream_status"].as_u64()), (Some(200), Some(200)));
    Ok(())
}
