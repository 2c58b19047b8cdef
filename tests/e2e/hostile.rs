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
const FUND: &str = "C03-340000-0001";
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
    // A housing fund account, as the mislabelled answers carry it.
    let person = json!({"data": {
        "id_number": "340102199001011234", "name": "王小明", "account_status": "正常",
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

fn binding(address: SocketAddr, resource: &str, document_items: &str) -> String {
    format!(
        "[{{resource=\"{resource}\", url=\"http://{address}/api\", envelope=[\"code\", \"data\"], \
         credential_header=\"authorization\", credential=\"Bearer {KEY}\", document_items=[\"{document_items}\"], \
         timeout_ms=3000, retries=0}}]"
    )
}

/// The demo gateway with the household resource bound to a hostile supplier, and the police
/// system's client, sending headers a supplier might trust along with its purpose.
struct Setup {
    demo: Demo,
    seen: Arc<Mutex<Seen>>,
    police: tongban_e2e::Api,
    resource: &'static str,
}

impl Setup {
    /// The household resource behind the hostile supplier, called by the police system under
    /// a grant that masks identity numbers and names and scopes rows to 4115.
    async fn start() -> anyhow::Result<Setup> {
        Setup::start_on(HOUSEHOLD, POLICE_SYSTEM, "KSTB-GA-001", "id_number").await
    }

    /// `resource` behind the hostile supplier, whose documents hold `document_items`, called
    /// by `system` for `service_item`.
    async fn start_on(
        resource: &'static str,
        system: &str,
        service_item: &str,
        document_items: &str,
    ) -> anyhow::Result<Setup> {
        let (address, seen) = start_supplier().await;
        let demo = Demo::start_with(
            2000,
            &[("TONGBAN_DATA__UPSTREAMS", &binding(address, resource, document_items))],
        )
        .await?;
        let (_, system) = demo.system(system)?;
        let police = system.with_headers(&[
            ("x-tongban-service-item", service_item),
            ("x-tongban-case-number", "GD-2026-000731"),
            ("x-tongban-operator", "0031"),
            ("x-http-method-override", "DELETE"),
            ("x-original-url", "/admin"),
            ("x-real-ip", "10.0.0.1"),
            ("x-forwarded-host", "evil.example"),
            ("tracestate", "vendor=secret"),
            ("range", "bytes=0-10"),
        ]);
        Ok(Setup { demo, seen, police, resource })
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> tongban_e2e::RawAnswer {
        // The grants allow 5 and 10 calls a second.
        tokio::time::sleep(Duration::from_millis(220)).await;
        self.police.send(method, &format!("/proxy/{}/{path}", self.resource), None, None).await.expect("send")
    }

    fn calls(&self) -> usize {
        self.seen.lock().expect("lock").calls.len()
    }
}

/// What of the values that must never come back an answer holds.
fn leaks(body: &[u8]) -> Vec<&'static str> {
    let text = String::from_utf8_lossy(body);
    [OUTSIDER, ACCOUNT, KEY, "汉族"].into_iter().filter(|s| text.contains(s)).collect()
}

#[tokio::test]
async fn values_nested_under_granted_items_are_filtered_like_the_answer() -> anyhow::Result<()> {
    let setup = Setup::start().await?;
    // Values nested under granted items are filtered like the answer: the record inside
    // `status` shows no row of the grant's scope, so it goes.
    let nested = setup.call(reqwest::Method::GET, "nested").await;
    assert_eq!(nested.status, 200, "{}", String::from_utf8_lossy(&nested.body));
    assert!(leaks(&nested.body).is_empty(), "{}", String::from_utf8_lossy(&nested.body));
    let region = setup.call(reqwest::Method::GET, "region").await;
    assert_eq!(region.status, 200);
    assert!(leaks(&region.body).is_empty(), "{}", String::from_utf8_lossy(&region.body));
    let body: Value = serde_json::from_slice(&region.body)?;
    assert_eq!(body["data"]["status"], json!([]), "another region's record went");

    Ok(())
}

#[tokio::test]
async fn json_is_recognised_by_its_bytes_whatever_its_label() -> anyhow::Result<()> {
    // The housing fund resource, whose grant shows its documents' item (the account status)
    // whole and limits no rows, so a document would pass: JSON under another label must not.
    let setup = Setup::start_on(FUND, "广州公积金业务系统", "KSTB-JS-004", "account_status").await?;
    // JSON is JSON whatever its label: filtered and masked, or refused when it cannot be read.
    for path in ["text-json", "x-json", "unlabelled", "json-seq"] {
        let answer = setup.call(reqwest::Method::GET, path).await;
        assert!(leaks(&answer.body).is_empty(), "{path}: {}", String::from_utf8_lossy(&answer.body));
        if answer.status == 200 {
            let body: Value = serde_json::from_slice(&answer.body)?;
            assert_eq!(body["data"]["id_number"], "340102********1234", "{path}");
        } else {
            let problem: Value = serde_json::from_slice(&answer.body)?;
            assert_eq!(
                (answer.status, problem["code"].as_str()),
                (502, Some("upstream_response_unreadable")),
                "{path}"
            );
        }
    }

    Ok(())
}

#[tokio::test]
async fn only_declared_methods_reach_the_supplier_and_its_credential_never_comes_back() -> anyhow::Result<()>
{
    let setup = Setup::start().await?;
    let calls_before = setup.calls();
    // Methods the binding does not declare never reach the supplier; TRACE least of all.
    for method in [reqwest::Method::TRACE, reqwest::Method::POST, reqwest::Method::DELETE] {
        let answer = setup.call(method.clone(), "echo").await;
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.header("allow").as_deref(), Some("GET, HEAD"));
        assert!(leaks(&answer.body).is_empty());
    }
    assert_eq!(setup.calls(), calls_before, "none of these reached the supplier");
    // An echo of the request: the gateway's credential for the supplier never comes back, and
    // only the allow-listed caller headers went.
    let echo = setup.call(reqwest::Method::GET, "echo").await;
    assert!(leaks(&echo.body).is_empty(), "{}", String::from_utf8_lossy(&echo.body));
    assert_eq!(echo.status, 502);
    let received =
        setup.seen.lock().expect("lock").calls.last().cloned().expect("the echo reached the supplier");
    for hidden in
        ["x-http-method-override", "x-original-url", "x-real-ip", "x-forwarded-host", "tracestate", "range"]
    {
        assert!(!received.contains_key(hidden), "{hidden} reached the supplier");
    }
    assert_eq!(
        received.get("authorization").and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {KEY}").as_str())
    );

    Ok(())
}

#[tokio::test]
async fn empty_path_segments_never_reach_the_supplier() -> anyhow::Result<()> {
    let setup = Setup::start().await?;
    let calls_before = setup.calls();
    // Empty path segments are refused before the supplier too.
    for path in ["people/411502199001011234/", "people/%2F411502199001011234", "people//x"] {
        let answer = setup.call(reqwest::Method::GET, path).await;
        let problem: Value = serde_json::from_slice(&answer.body)?;
        assert_eq!((answer.status, problem["code"].as_str()), (400, Some("invalid_proxy_path")), "{path}");
    }

    assert_eq!(setup.calls(), calls_before, "none of these reached the supplier");
    Ok(())
}

#[tokio::test]
async fn a_call_whose_caller_gives_up_is_still_recorded() -> anyhow::Result<()> {
    let setup = Setup::start().await?;
    // A caller that gives up while the supplier works: the call is recorded as closed by the
    // client, under the exchange id the supplier was given.
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build()?;
    let api_key = setup.demo.credentials["systems"]
        .as_array()
        .and_then(|systems| systems.iter().find(|s| s["name"] == POLICE_SYSTEM))
        .and_then(|s| s["api_key"].as_str())
        .expect("key")
        .to_owned();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let abandoned = impatient
        .get(setup.demo.gateway.url(&format!("/api/v1/proxy/{HOUSEHOLD}/slow")))
        .bearer_auth(&api_key)
        .header("x-tongban-service-item", "KSTB-GA-001")
        .header("x-tongban-case-number", "GD-2026-000732")
        .header("x-tongban-operator", "0031")
        .send()
        .await;
    assert!(abandoned.is_err(), "the caller gave up");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let exchange_id = setup
        .seen
        .lock()
        .expect("lock")
        .calls
        .last()
        .and_then(|h| h.get("x-tongban-exchange-id").and_then(|v| v.to_str().ok()).map(str::to_owned))
        .expect("the slow call reached the supplier");
    let records = setup.demo.exchange_records()?;
    let record =
        records.iter().find(|r| r["id"] == json!(exchange_id)).expect("the abandoned call is recorded");
    assert_eq!((record["status"].as_u64(), record["code"].as_str()), (Some(499), Some("client_closed")));
    assert_eq!(
        record["grants"].as_array().map(Vec::len),
        Some(1),
        "the record names what was decided: {record}"
    );
    Ok(())
}
