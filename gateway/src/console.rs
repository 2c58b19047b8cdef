//! The web console: a single page served from the binary itself under `/console/`.
//!
//! The page talks only to the management API under `/api/v1`, with the session token it got
//! from signing in, so the console can do nothing the API would not let the same person do.
//! Every asset is embedded in the release binary (debug builds read them from
//! `gateway/console/` so the page can be edited without rebuilding), and a strict content
//! security policy keeps the browser from loading anything from anywhere else.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use rust_embed::Embed;

use crate::error::{ApiError, ApiPath};

#[derive(Embed)]
#[folder = "console/"]
struct Assets;

/// Nothing but the gateway's own origin: no outside scripts, styles, fonts or beacons, no
/// framing, and no inline script an injected string could become.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The console's routes, to be merged at the root.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(|headers: HeaderMap| async move { asset("index.html", &headers) }))
        .route(
            "/console/{*path}",
            get(|ApiPath(path): ApiPath<String>, headers: HeaderMap| async move { asset(&path, &headers) }),
        )
        // Scripts and styles shrink to about a third, which matters on a provincial network.
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// One embedded file, answered with a validator so a browser revalidates cheaply rather
/// than keeping a stale page after an upgrade.
fn asset(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return ApiError::not_found(format!("the console has no file {path}")).into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let mut response = if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type(path))], file.data).into_response()
    };
    let h = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, etag);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_path(path: &str, etag: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        routes::<()>().oneshot(request.body(Body::empty()).expect("request")).await.expect("answer")
    }

    #[tokio::test]
    async fn serves_the_page_with_a_strict_policy_and_revalidates() {
        let root = get_path("/", None).await;
        assert_eq!(root.status(), StatusCode::SEE_OTHER);
        assert_eq!(root.headers()[header::LOCATION], "/console/");

        let page = get_path("/console/", None).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let policy = page.headers()[header::CONTENT_SECURITY_POLICY].to_str().expect("ascii");
        assert!(policy.contains("script-src 'self'") && policy.contains("default-src 'none'"));
        let etag = page.headers()[header::ETAG].to_str().expect("ascii").to_owned();

        let again = get_path("/console/", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

        let script = get_path("/console/app.js", None).await;
        assert_eq!(script.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");

        let request = Request::get("/console/vendor/uplot.js").header(header::ACCEPT_ENCODING, "gzip");
        let compressed =
            routes::<()>().oneshot(request.body(Body::empty()).expect("request")).await.expect("answer");
        assert_eq!(compressed.headers()[header::CONTENT_ENCODING], "gzip");
    }

    #[tokio::test]
    async fn unknown_files_and_escapes_are_not_found() {
        for path in ["/console/nope.js", "/console/../Cargo.toml", "/console/%2e%2e/Cargo.toml"] {
            let response = get_path(path, None).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    fn without_block_comments(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("/*") {
            out.push_str(&rest[..start]);
            rest = rest[start..].find("*/").map_or("", |end| &rest[start + end + 2..]);
        }
        out.push_str(rest);
        out
    }

    /// Every page must load from the gateway alone: no asset names an outside address.
    #[test]
    fn no_asset_loads_anything_from_outside() {
        // Licence texts name their authors' sites; only what the browser runs or renders counts.
        let loaded =
            Assets::iter().filter(|p| [".html", ".js", ".css", ".svg"].iter().any(|e| p.ends_with(e)));
        for path in loaded {
            let file = Assets::get(&path).expect("listed file");
            // XML namespace names are identifiers, and banner comments credit their authors:
            // neither is an address anything is loaded from.
            let text = without_block_comments(&String::from_utf8_lossy(&file.data))
                .replace("http://www.w3.org/", "");
            for needle in ["http://", "https://", "url(//", "src=\"//"] {
                assert!(!text.contains(needle), "{path} mentions {needle}");
            }
        }
    }

    /// Every problem code the gateway and the platform can answer with, and every refusal
    /// reason, has a label in both of the console's languages, so no page shows a raw code.
    #[test]
    fn every_problem_code_and_refusal_reason_has_a_label_in_both_languages() {
        // Problem codes are written as a code literal followed by its title, as in
        // `ApiError::new(status, "code", "Title", detail)`; metric names follow the same shape
        // and are left out with the file that registers them.
        fn codes_in(source: &str, codes: &mut std::collections::BTreeSet<String>) {
            let bytes = source.as_bytes();
            let mut at = 0;
            while let Some(open) = source[at..].find('"').map(|o| at + o) {
                let start = open + 1;
                let end = start
                    + bytes[start..].iter().take_while(|b| b.is_ascii_lowercase() || **b == b'_').count();
                at = start;
                if end == start || !source[end..].starts_with("\",") {
                    continue;
                }
                let rest = source[end + 2..].trim_start();
                if rest.starts_with('"') && rest[1..].chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                    codes.insert(source[start..end].to_owned());
                }
            }
        }
        let mut codes = std::collections::BTreeSet::new();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut pending = vec![root.join("src"), root.join("../platform/src")];
        while let Some(path) = pending.pop() {
            if path.is_dir() {
                pending.extend(std::fs::read_dir(&path).expect("dir").map(|e| e.expect("entry").path()));
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("metrics.rs") {
                let source = std::fs::read_to_string(&path).expect("source");
                codes_in(source.split("\n#[cfg(test)]").next().unwrap_or_default(), &mut codes);
            }
        }
        assert!(codes.len() > 50 && codes.contains("access_denied"), "the scan found the codes: {codes:?}");
        codes.extend(crate::quality::OUTSIDE_GRANT_REASONS.iter().map(|c| (*c).to_owned()));
        codes.extend(crate::quality::OUTSIDE_VALIDITY_REASONS.iter().map(|c| (*c).to_owned()));
        codes.extend(
            [
                "record_not_found",
                "client_closed",
                "unauthenticated_rate_limited",
                "purpose_missing",
                "purpose_invalid",
                "dataset_not_owned",
            ]
            .map(String::from),
        );
        let dictionaries = std::fs::read_to_string(root.join("console/i18n.js")).expect("i18n.js");
        let (zh, en) = dictionaries.split_once("const en = {").expect("two dictionaries");
        let missing: Vec<String> = codes
            .iter()
            .filter(|code| {
                let key = format!("'code.{code}':");
                !zh.contains(&key) || !en.contains(&key)
            })
            .cloned()
            .collect();
        assert!(missing.is_empty(), "codes without a label in both languages: {missing:?}");
    }
}
