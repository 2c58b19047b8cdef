//! The HTTP server: the router, the operational endpoints (`/healthz`, `/readyz`,
//! `/metrics`), and the listener's lifecycle.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::config::LoadedConfig;
use crate::data::DataPlane;
use crate::datasets::{DatasetRegistry, Readiness};
use crate::error::ApiError;
use crate::state::AppState;
use tongban_exchange::ExchangeLog;
use tongban_platform::{Caller, Platform};

/// The gateway's routes.
pub fn app(state: AppState) -> Router {
    let data_routes =
        crate::data::routes(state.data().sql.max_body_bytes).with_state(state.data_state().clone());
    let (api_routes, mut document) =
        utoipa_axum::router::OpenApiRouter::with_openapi(crate::api::document_base())
            .nest(
                "/api/v1",
                crate::api::routes()
                    .layer(axum::middleware::from_fn_with_state(state.clone(), count_api_request))
                    .merge(data_routes),
            )
            .split_for_parts();
    crate::api::finish_document(&mut document);
    // The document is written once: it is the same for every caller.
    let document: Bytes = serde_json::to_vec(&document).expect("the OpenAPI document serializes").into();
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(move || async move {
                ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], document)
            }),
        )
        .merge(api_routes)
        .merge(crate::console::routes())
        .fallback(not_found);
    guard_panics(routes).with_state(state)
}

/// A handler that panics answers 500 `internal` as a problem document, instead of the
/// connection being dropped without an answer. The panic itself is reported by the process's
/// panic hook; a data call that panics releases no data, as its record was never written.
fn guard_panics<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes.layer(tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
        axum::response::IntoResponse::into_response(ApiError::internal(&"a request handler panicked"))
    }))
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
}

/// Liveness: the process answers. It says nothing about data sources.
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

#[derive(Debug, Serialize)]
struct DatasetStatus {
    name: String,
    key: String,
    rows: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Ready {
    status: &'static str,
    datasets: Vec<DatasetStatus>,
}

/// Readiness: every configured dataset is open and can answer.
async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    match state.readiness() {
        Readiness::Loading => Err(ApiError::not_ready("datasets are still loading")),
        Readiness::Failed(reason) => Err(ApiError::not_ready(format!("datasets failed to load: {reason}"))),
        Readiness::Ready(registry) => Ok(Json(Ready {
            status: "ready",
            datasets: registry
                .datasets
                .values()
                .map(|d| DatasetStatus { name: d.name.clone(), key: d.key_column.clone(), rows: d.rows })
                .collect(),
        })),
    }
}

/// `GET /metrics`: for Prometheus with the configured bearer token, or for a signed-in
/// operator or platform administrator.
async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Result<Caller, ApiError>,
) -> Result<Response, ApiError> {
    let scraper = state.metrics_token().is_some_and(|expected| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| {
                tongban_platform::auth::digest(token) == tongban_platform::auth::digest(expected)
            })
    });
    if !scraper {
        let caller = caller?;
        if !caller.oversees() {
            return Err(ApiError::forbidden("metrics are for operators and platform administrators"));
        }
    }
    // OpenMetrics for a scraper that asks for it (Prometheus does, first); the older text
    // format, which every Prometheus tool reads, otherwise.
    let open_metrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let metrics = &state.data().metrics;
    let standing = standing(&state).await;
    let (content_type, text) = if open_metrics {
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.encode_with(&standing))
    } else {
        ("text/plain; version=0.0.4; charset=utf-8", metrics.encode_text(&standing))
    };
    let text = text.map_err(|e| ApiError::internal(&e))?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], text).into_response())
}

/// How the gateway stands now, for the series `/metrics` reads at each scrape.
async fn standing(state: &AppState) -> crate::metrics::Standing {
    let (datasets_ready, dataset_rows) = match state.readiness() {
        Readiness::Ready(registry) => {
            (true, registry.datasets.values().filter_map(|d| Some((d.name.clone(), d.rows?))).collect())
        }
        Readiness::Loading | Readiness::Failed(_) => (false, Vec::new()),
    };
    crate::metrics::Standing {
        store_connections: state.platform().store.connections(),
        cache_entries: state.data().cache.entries(),
        datasets_ready,
        dataset_rows,
        peers: peer_standing(state).await,
    }
}

/// Each peer's health for `/metrics`: as the federation page shows it.
async fn peer_standing(state: &AppState) -> Vec<crate::metrics::PeerStanding> {
    let Some(peers) = state.peers() else { return Vec::new() };
    let now = state.platform().now();
    let mut depths = match state.platform().store.outbox_depths().await {
        Ok(depths) => depths,
        Err(e) => {
            tracing::warn!(error = %e, "the outbox cannot be read for the metrics");
            Default::default()
        }
    };
    let catalogs = peers.catalogs();
    peers
        .all()
        .map(|client| {
            let name = &client.config.name;
            let catalog = catalogs.get(name);
            let depth = depths.remove(name).unwrap_or_default();
            crate::metrics::PeerStanding {
                peer: name.clone(),
                reachable: catalog.is_some_and(|c| c.failure.is_none() && c.checked_at.is_some()),
                catalog_age_seconds: catalog.and_then(|c| c.age_seconds(now)),
                outbox_pending: depth.pending,
                outbox_oldest_pending_seconds: depth
                    .oldest_pending_at
                    .map(|at| (now - at).num_seconds().max(0)),
                outbox_refused: depth.refused,
            }
        })
        .collect()
}

/// Counts a management API request by method, route template and status.
async fn count_api_request(
    State(state): State<AppState>,
    route: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let labels = crate::metrics::ApiLabels {
        method,
        route: route.map_or_else(|| "unmatched".to_owned(), |r| r.as_str().to_owned()),
        status: response.status().as_u16(),
    };
    state.data().metrics.api_requests.get_or_create(&labels).inc();
    response
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

/// Work to do on the store before serving, such as the demo's seed.
pub type Seed = Box<dyn FnOnce(Platform) -> futures::future::BoxFuture<'static, anyhow::Result<()>> + Send>;

/// Binds the listener, announces the address, loads datasets in the background and serves
/// until a shutdown signal, then drains in-flight requests for the configured grace period.
#[allow(clippy::print_stdout)]
pub async fn serve(loaded: LoadedConfig, seed: Option<Seed>) -> anyhow::Result<()> {
    // The store is ready (and seeded) before the address is announced, so a caller that sees
    // it can use the API at once; datasets keep loading after.
    let platform = Platform::open(loaded.platform_options()).await?;
    if let Some(seed) = seed {
        seed(platform.clone()).await?;
    }
    platform.grants.reload(&platform.store).await?;
    // Resources the configuration does not let their supplier serve are refused on every call;
    // the operator hears of them once, here, rather than from callers.
    let snapshot = platform.grants.snapshot();
    for resource in tongban_platform::unowned_resources(snapshot.resources.values(), &platform.datasets) {
        tracing::error!(
            resource = %resource.code,
            dataset = %resource.dataset,
            supplier = %resource.supplier,
            "the resource's dataset is not configured as its supplier's own (datasets.supplier); \
             every call on it is refused"
        );
    }
    // The exchange log is recovered before anything is served: a crash may have left a
    // half-written line, which is cut off here.
    let mut log_config = loaded.config.exchange_log.clone();
    log_config.dir = loaded.base_dir.join(&log_config.dir);
    let evidence = &loaded.config.evidence;
    let evidence_name = evidence
        .name
        .clone()
        .or_else(|| loaded.config.federation.as_ref().map(|f| f.name.clone()))
        .unwrap_or_else(|| "tongban".to_owned());
    std::fs::create_dir_all(&log_config.dir)
        .map_err(|e| anyhow::anyhow!("exchange log {}: {e}", log_config.dir.display()))?;
    let signer = crate::evidence::open_signer(evidence, &loaded.base_dir, &evidence_name, &log_config.dir)?;
    let log = ExchangeLog::open_signed(&log_config, tongban_exchange::LogMetrics::new(), signer.clone())
        .await
        .map_err(|e| anyhow::anyhow!("exchange log {}: {e}", log_config.dir.display()))?;
    if let Some(signer) = &signer {
        crate::evidence::watch_rotation(Arc::clone(signer), evidence, &loaded.base_dir);
    }
    let server_config = &loaded.config.server;
    let acceptor = match (&server_config.tls, server_config.plaintext) {
        (Some(tls), _) => Some(crate::tls::acceptor(tls, &loaded.base_dir)?),
        (None, true) => None,
        (None, false) => anyhow::bail!(
            "no TLS configured: set [server.tls] (cert, key, client_ca), or server.plaintext = true to serve \
             plain HTTP deliberately"
        ),
    };
    let listener = TcpListener::bind(server_config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (server.listen): {e}", server_config.listen))?;
    let address = listener.local_addr()?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    // Printed on standard output so scripts and tests can find an ephemeral port.
    println!("tongban listening on {scheme}://{address}");
    tracing::info!(%address, scheme, "listening");

    let mut data = DataPlane::new(loaded.config.data.clone(), log, platform.store.clone())?;
    // The departments that supply a licence register issue its licences under their seals.
    let issuers: Vec<String> = loaded
        .config
        .datasets
        .iter()
        .filter(|d| tongban_policy::licence::LICENCE_TYPES.iter().any(|t| t.dataset() == d.name))
        .filter_map(|d| d.supplier.clone())
        .collect();
    data.seals = Arc::new(crate::seals::Seals::load(&loaded.config.data.seals, &loaded.base_dir, &issuers)?);
    let mut state = AppState::new(platform.clone(), data)
        .with_metrics_token(loaded.config.server.metrics_token.clone())
        .with_source_limits(&loaded.config.server.sources);
    let limits = crate::listener::ConnectionLimits {
        max_connections: loaded.config.server.max_connections,
        header_read_timeout: Duration::from_secs(loaded.config.server.header_read_timeout_secs.max(1)),
    };
    // The peer listener stops with the main one.
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let peer_listener = match &loaded.config.federation {
        Some(federation) => {
            let peers = Arc::new(crate::peers::Peers::new(federation, &loaded.base_dir)?);
            state = state.with_peers(Arc::clone(&peers));
            let mut stopping = stopping_rx.clone();
            let shutdown = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            Some(crate::federation::serve(state.clone(), peers, &loaded.base_dir, limits, shutdown).await?)
        }
        None => None,
    };
    // Peers countersign this gateway's newest signed head (or it is exported to a file or a
    // witness's URL).
    if state.data().log.signer().is_some() {
        let mut evidence = loaded.config.evidence.clone();
        evidence.export = evidence.export.map(|path| loaded.base_dir.join(path));
        let witness = crate::federation::evidence::Witness::from_config(&evidence, &loaded.base_dir)?;
        crate::federation::evidence::spawn_anchoring(state.clone(), evidence, witness);
    }
    // Grants and credentials changed by another instance on the same store reach this one
    // at once when the store announces changes (PostgreSQL), and within seconds by polling
    // otherwise or while the listener reconnects.
    tokio::spawn(listen_for_changes(platform.clone()));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(5));
        loop {
            ticks.tick().await;
            if let Err(e) = platform.grants.refresh_if_changed(&platform.store).await {
                tracing::warn!(error = %e, "grant refresh failed; serving the last grants loaded");
            }
        }
    });
    // Rate limiters forget keys that have been idle, and the store ended sessions and the
    // attempts to sign in and quota usage that no longer count, so that all stay bounded
    // however many keys, names, sign-ins and grants are used.
    let sweeping = state.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(60));
        loop {
            ticks.tick().await;
            let now = sweeping.platform().now();
            sweeping.data().limits.sweep(now);
            sweeping.sources().sweep();
            if let Err(e) = tongban_platform::auth::sweep_sign_ins(&sweeping.platform().store, now).await {
                tracing::warn!(error = %e, "sweeping old sign-in attempts failed; will retry");
            }
            if let Err(e) = sweeping.platform().store.sweep_sessions(now).await {
                tracing::warn!(error = %e, "sweeping ended sessions failed; will retry");
            }
            let yesterday = now.date() - chrono::Duration::days(1);
            if let Err(e) = sweeping.platform().store.sweep_quota_usage(yesterday).await {
                tracing::warn!(error = %e, "sweeping old quota usage failed; will retry");
            }
        }
    });
    // Calls refused without a credential past their source's allowance are recorded as one
    // summary per source, operation and ten seconds.
    let summarising = state.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(10));
        loop {
            ticks.tick().await;
            crate::data::record_suppressed(summarising.data_state()).await;
        }
    });
    let loading = state.clone();
    let datasets = loaded.config.datasets.clone();
    let base_dir = loaded.base_dir.clone();
    tokio::spawn(async move {
        match DatasetRegistry::open(&datasets, &base_dir).await {
            Ok(registry) => {
                tracing::info!(datasets = registry.datasets.len(), "ready");
                loading.set_readiness(Readiness::Ready(Arc::new(registry)));
            }
            Err(e) => {
                tracing::error!(error = %e, "datasets failed to load");
                loading.set_readiness(Readiness::Failed(e.to_string()));
            }
        }
    });
    #[cfg(unix)]
    tokio::spawn(reload_on_hangup(state.clone(), loaded.source.clone()));

    let grace = Duration::from_secs(loaded.config.server.shutdown_grace_secs);
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let signalled = async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received, draining");
        let _ = signalled_tx.send(());
        let _ = stopping_tx.send(true);
    };
    let stopping = state.clone();
    let refusals = state.data().metrics.malformed.clone();
    let refused = move |reason: &'static str| {
        refusals.get_or_create(&crate::metrics::OutcomeLabels { outcome: reason }).inc();
    };
    let server = crate::listener::serve(listener, acceptor, app(state), limits, refused, signalled);
    tokio::select! {
        result = server => result?,
        () = async {
            let _ = signalled_rx.await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("grace period over, closing remaining connections"),
    }
    if let Some(peer_listener) = peer_listener {
        // The peer listener drains within the same grace period.
        if let Ok(Ok(Err(e))) = tokio::time::timeout(grace, peer_listener).await {
            tracing::warn!(error = %e, "the peer listener ended with an error");
        }
    }
    drop(stopping_rx);
    crate::data::record_suppressed(stopping.data_state()).await;
    // The calls of daily quotas this gateway leased and did not use go back to the store, for
    // the other gateways or this one once restarted.
    if let Err(e) = stopping.data().limits.return_leases(stopping.platform().now()).await {
        tracing::warn!(error = %e, "unused quota leases could not be given back; they lapse at midnight");
    }
    Ok(())
}

/// Reloads what other instances on the store announce they changed, until the process ends.
/// A lost connection is opened again after a pause, and everything is reloaded then, since
/// what was announced meanwhile was not heard.
async fn listen_for_changes(platform: tongban_platform::Platform) {
    use tongban_platform::store::Change;
    if !platform.store.announces_changes() {
        return;
    }
    let reload_all = |platform: &tongban_platform::Platform| {
        let platform = platform.clone();
        async move {
            platform.identities.forget_all();
            if let Err(e) = platform.grants.refresh_if_changed(&platform.store).await {
                tracing::warn!(error = %e, "grant refresh failed; serving the last grants loaded");
            }
        }
    };
    loop {
        match platform.store.listen().await {
            Ok(Some(mut listener)) => {
                tracing::debug!("listening for changes made by other instances");
                reload_all(&platform).await;
                loop {
                    match listener.next().await {
                        Ok(Some(Change::Policy)) => {
                            if let Err(e) = platform.grants.refresh_if_changed(&platform.store).await {
                                tracing::warn!(error = %e, "grant refresh failed; serving the last grants loaded");
                            }
                        }
                        Ok(Some(Change::Identities)) => platform.identities.forget_all(),
                        Ok(None) => reload_all(&platform).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "the change listener failed; polling until it is back");
                            break;
                        }
                    }
                }
            }
            Ok(None) => return,
            Err(e) => tracing::warn!(error = %e, "cannot listen for changes; polling until it can"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// On SIGHUP, reads the configuration file again, reopens the datasets it names and reloads
/// grants and the catalog, without dropping a connection. The new datasets replace the old
/// only once all of them are open; if any fails, the gateway keeps serving the old ones.
/// Listener, store, limit and cache settings take effect at the next start.
#[cfg(unix)]
async fn reload_on_hangup(state: AppState, source: std::path::PathBuf) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload needs a restart");
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!(config = %source.display(), "SIGHUP: reloading datasets and grants");
        let loaded = match crate::config::Config::load(&source) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(error = %e, "reload refused: the configuration does not load");
                continue;
            }
        };
        match DatasetRegistry::open(&loaded.config.datasets, &loaded.base_dir).await {
            Ok(registry) => {
                tracing::info!(
                    datasets = registry.datasets.len(),
                    generation = registry.generation,
                    "datasets reloaded"
                );
                state.set_readiness(Readiness::Ready(Arc::new(registry)));
            }
            Err(e) => {
                tracing::error!(error = %e, "reload refused: datasets failed to open; serving the previous ones")
            }
        }
        if let Err(e) = state.platform().grants.reload(&state.platform().store).await {
            tracing::error!(error = %e, "grant reload failed; serving the last grants loaded");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn state() -> AppState {
        state_on(Platform::in_memory(Vec::new()).await.expect("platform")).await
    }

    async fn state_on(platform: Platform) -> AppState {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = ExchangeLog::open_in(&dir.keep().join("exchange")).await.expect("exchange log");
        let data = DataPlane::new(crate::config::DataConfig::default(), log, platform.store.clone())
            .expect("data plane");
        AppState::new(platform, data)
    }

    async fn call(state: AppState, uri: &str) -> (StatusCode, String, serde_json::Value) {
        let response = app(state)
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        (status, content_type, serde_json::from_slice(&body).expect("json body"))
    }

    #[tokio::test]
    async fn health_is_up_while_readiness_waits_for_datasets() {
        let state = state().await;
        let (status, _, body) = call(state.clone(), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");

        let (status, content_type, body) = call(state.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["code"], "not_ready");
        assert_eq!(body["type"], "urn:tongban:problem:not_ready");

        state.set_readiness(Readiness::Failed("household: file missing".into()));
        let (status, _, body) = call(state.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body["detail"].as_str().unwrap_or_default().contains("file missing"));

        let registry = DatasetRegistry::open(&[], std::path::Path::new(".")).await.expect("empty registry");
        state.set_readiness(Readiness::Ready(Arc::new(registry)));
        let (status, _, body) = call(state, "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ready");
    }

    async fn panics() -> &'static str {
        panic!("a handler that panics, on purpose")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_with_a_problem_document() {
        let routes = guard_panics(Router::new().route("/boom", get(panics)));
        let response = routes
            .oneshot(Request::get("/boom").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let body = response.into_body().collect().await.expect("body").to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json body");
        assert_eq!(body["code"], "internal");
    }

    #[tokio::test]
    async fn unknown_routes_get_a_problem_document() {
        let (status, content_type, body) = call(state().await, "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["code"], "not_found");
        assert_eq!(body["status"], 404);
    }

    /// Every operation the OpenAPI document lists is served: asked with its method on its
    /// path, it reaches a handler rather than the router's "no route" answer or a 405.
    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let state = state().await;
        let (status, _, document) = call(state.clone(), "/api/v1/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        let paths = document["paths"].as_object().expect("paths");
        let mut operations = 0;
        for (template, item) in paths {
            // Every path parameter is given a value that parses as most of them would.
            let path: String = template
                .split('/')
                .map(|segment| if segment.starts_with('{') { "1" } else { segment })
                .collect::<Vec<_>>()
                .join("/");
            for method in item.as_object().expect("path item").keys() {
                let Ok(method) = method.to_uppercase().parse::<axum::http::Method>() else { continue };
                if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                    continue;
                }
                operations += 1;
                let response = app(state.clone())
                    .oneshot(
                        Request::builder()
                            .method(method.clone())
                            .uri(&path)
                            .header("content-type", "application/json")
                            .body(Body::from("{}"))
                            .expect("request"),
                    )
                    .await
                    .expect("infallible");
                let status = response.status();
                let body = response.into_body().collect().await.expect("body").to_bytes();
                let detail = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["detail"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                assert_ne!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {template} is documented but not routed"
                );
                assert!(
                    !detail.starts_with("no route"),
                    "{method} {template} is documented but not routed: {detail}"
                );
            }
        }
        // The management API, the data plane and the proxy: a document that lost its
        // operations would pass the loop above trivially.
        assert!(operations >= 50, "only {operations} operations documented");
        assert!(paths.contains_key("/api/v1/data/sql"), "the data routes are documented");
        assert!(paths.contains_key("/api/v1/proxy/{resource}/{path}"), "the proxy route is documented");
        // What the routers add is merged into the document's base, which keeps its own parts.
        assert_eq!(document["info"]["title"], "Tongban API");
        assert!(
            document["components"]["securitySchemes"]["bearer"].is_object(),
            "the bearer scheme is declared"
        );
        assert!(document["components"]["schemas"]["Problem"].is_object(), "the problem schema is declared");
    }

    /// Routes are registered with `routes!`, which documents them; a route added with a bare
    /// `.route(` is either one of the few that are not part of the API, named here with the
    /// reason, or a route the document would miss.
    #[test]
    fn every_api_route_is_registered_with_its_documentation() {
        let undocumented_on_purpose = [
            // The console's pages and assets, and the redirect to them.
            "/",
            "/console",
            "/console/",
            "/console/{*path}",
            // Operational endpoints outside the versioned API.
            "/healthz",
            "/readyz",
            "/metrics",
            // The document itself.
            "/api/v1/openapi.json",
            // Documented beside the route, as `/proxy/{resource}/{path}`: a template cannot
            // say "the rest of the path".
            "/proxy/{resource}/{*path}",
            // The peer listener's routes, for peer gateways only, are described in
            // docs/federation.md; they are no part of the API department systems call.
            "/federation/v1/catalog",
            "/federation/v1/messages/{seq}",
            "/federation/v1/data/verify",
            "/federation/v1/data/sql",
            "/federation/v1/data/licences/check",
            "/federation/v1/data/licences/documents/check",
            "/federation/v1/proxy/{resource}/{*path}",
            "/federation/v1/data/{resource}/records/{key}",
            "/federation/v1/evidence",
            "/federation/v1/anchors",
            // The demo supplier's own API, a separate server.
            "/deposits/{id_number}",
            "/certificates/{id_number}",
        ];
        let mut pending = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
        let mut bare_routes = Vec::new();
        while let Some(path) = pending.pop() {
            if path.is_dir() {
                pending
                    .extend(std::fs::read_dir(&path).expect("source dir").map(|e| e.expect("entry").path()));
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("source file");
            // Tests build routers of their own; they are not the gateway's.
            let source = source.split("\n#[cfg(test)]").next().unwrap_or_default();
            for (at, _) in source.match_indices(".route(") {
                let rest = source[at + ".route(".len()..].trim_start();
                let literal =
                    rest.strip_prefix('"').and_then(|r| r.split_once('"')).map(|(p, _)| p.to_owned());
                bare_routes.push((path.display().to_string(), literal));
            }
        }
        assert!(bare_routes.len() >= 10, "the scan found the routes: {bare_routes:?}");
        for (file, literal) in bare_routes {
            let Some(route) = literal else {
                panic!("{file}: a route whose path is not a literal cannot be checked; use routes!");
            };
            assert!(
                undocumented_on_purpose.contains(&route.as_str()),
                "{file}: {route} is routed without its OpenAPI operation; register it with routes!"
            );
        }
    }

    /// A session lasts its configured hours on the platform's clock, which the test moves on
    /// instead of waiting.
    #[tokio::test]
    async fn a_session_ends_when_the_platform_clock_passes_its_hours() {
        let clock = tongban_platform::SetClock::now_standing();
        let platform = Platform::in_memory(Vec::new()).await.expect("platform").with_clock(clock.clone());
        let session_hours = platform.session_hours;
        let admin = crate::bootstrap::FirstAdmin {
            department_code: tongban_policy::credit_code::CreditCode::compose('1', '1', "410000", "00410003"),
            department_name: "河南省数据局".into(),
            region: "410000".into(),
            username: "admin".into(),
            display_name: "平台管理员".into(),
        };
        let password = crate::bootstrap::first_admin(&platform, &admin).await.expect("bootstrapped");
        let state = state_on(platform).await;
        let sign_in = serde_json::json!({"username": "admin", "password": password});
        let response = app(state.clone())
            .oneshot(
                Request::post("/api/v1/sessions")
                    .header("content-type", "application/json")
                    .body(Body::from(sign_in.to_string()))
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::CREATED);
        let body = response.into_body().collect().await.expect("body").to_bytes();
        let session: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let token = session["token"].as_str().expect("token").to_owned();
        let me = |state: AppState| {
            let token = token.clone();
            async move {
                app(state)
                    .oneshot(
                        Request::get("/api/v1/me")
                            .header("authorization", format!("Bearer {token}"))
                            .body(Body::empty())
                            .expect("request"),
                    )
                    .await
                    .expect("infallible")
                    .status()
            }
        };
        assert_eq!(me(state.clone()).await, StatusCode::OK);
        clock.advance(chrono::Duration::hours(i64::from(session_hours)) - chrono::Duration::minutes(1));
        assert_eq!(me(state.clone()).await, StatusCode::OK, "a minute before its end");
        clock.advance(chrono::Duration::minutes(2));
        assert_eq!(me(state).await, StatusCode::UNAUTHORIZED, "a minute after its end");
    }

    /// `/metrics` answers in the format asked for: OpenMetrics when the scraper asks for it,
    /// and otherwise the Prometheus text format, which `promtool check metrics` (from Debian's
    /// `prometheus`, installed by `tests/run.sh`) finds clean.
    #[tokio::test]
    async fn metrics_come_in_the_format_asked_for_and_pass_promtool() {
        let state = state().await.with_metrics_token(Some("scrape".into()));
        let verified = crate::metrics::CallLabels { operation: "verify", status: 200, code: None };
        state.data().metrics.calls.record(verified, 0.002);
        let scrape = |accept: &'static str| {
            let state = state.clone();
            async move {
                let response = app(state)
                    .oneshot(
                        Request::get("/metrics")
                            .header("authorization", "Bearer scrape")
                            .header("accept", accept)
                            .body(Body::empty())
                            .expect("request"),
                    )
                    .await
                    .expect("infallible");
                assert_eq!(response.status(), StatusCode::OK);
                let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
                let body = response.into_body().collect().await.expect("body").to_bytes();
                (content_type, String::from_utf8(body.to_vec()).expect("utf-8"))
            }
        };
        let (content_type, open_metrics) =
            scrape("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5").await;
        assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
        assert!(open_metrics.ends_with("# EOF\n"), "{open_metrics}");
        let (content_type, text) = scrape("text/plain;version=0.0.4").await;
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        assert!(text.contains("tongban_data_calls_total{operation=\"verify\""), "{text}");
        // Read at the scrape: the build, the process, the store's pool, the cache, the datasets;
        // and the management API's own requests, by route template (this scrape's comes after).
        for series in [
            "tongban_build_info{version=",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
            "tongban_store_connections{state=\"idle\"}",
            "tongban_cache_entries 0",
            "tongban_datasets_ready 0",
        ] {
            assert!(text.contains(series), "no {series} in\n{text}");
        }
        let resident: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes ")?.parse().ok())
            .expect("resident memory");
        assert!(resident > 1_000_000.0, "a test process holds more than a megabyte: {resident}");
        let response = app(state.clone())
            .oneshot(Request::get("/api/v1/grants/some-grant").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let (_, text) = scrape("text/plain").await;
        assert!(
            text.contains(
                "tongban_api_requests_total{method=\"GET\",route=\"/api/v1/grants/{id}\",status=\"401\"} 1"
            ),
            "{text}"
        );
        assert!(!text.contains("some-grant"), "paths never become labels");

        let Some(output) = crate::metrics::tests::promtool_check(&text) else { return };
        assert!(
            output.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
