//! Bindings of catalog resources to suppliers' APIs: their configuration, checked once at
//! start, and a connection pool and a circuit breaker for each.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use super::problems::not_bound;
use crate::breaker::Breaker;
use crate::error::ApiError;

/// A supplier API bound to one catalog resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The catalog resource (资源代码) this API serves.
    pub resource: String,
    /// Base URL: `/api/v1/proxy/{resource}/a/b?c` goes to `{url}/a/b?c`.
    pub url: String,
    /// Header that carries the supplier's credential for the gateway, e.g. `authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_header: Option<String>,
    /// The credential itself. Prefer `credential_env` outside development.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// An environment variable holding the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_env: Option<String>,
    /// JSON members of the supplier's envelope (`code`, `message`, `data`…): kept as they are
    /// and searched for records. Every other member that is not a granted item is dropped.
    #[serde(default)]
    pub envelope: Vec<String>,
    /// Items a non-JSON answer (a certificate PDF, say) holds. Empty: documents are refused.
    #[serde(default)]
    pub document_items: Vec<String>,
    /// The methods the supplier's API takes through the gateway; any other is refused with
    /// 405 before anything reaches the supplier. `TRACE` and `CONNECT` are never allowed.
    #[serde(default = "defaults::methods")]
    pub methods: Vec<String>,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed for the whole answer, headers and a buffered body.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Further attempts for an idempotent call without a body.
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    #[serde(default = "defaults::max_request_bytes")]
    pub max_request_bytes: usize,
    #[serde(default = "defaults::max_response_bytes")]
    pub max_response_bytes: usize,
    /// Consecutive failures that open the circuit.
    #[serde(default = "defaults::breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before one trial call.
    #[serde(default = "defaults::breaker_open_ms")]
    pub breaker_open_ms: u64,
    #[serde(default = "defaults::max_idle_connections")]
    pub max_idle_connections: usize,
}

impl UpstreamConfig {
    /// A binding of `resource` to the API at `url`, with default limits and no credential.
    pub fn new(resource: impl Into<String>, url: impl Into<String>) -> Self {
        UpstreamConfig {
            resource: resource.into(),
            url: url.into(),
            credential_header: None,
            credential: None,
            credential_env: None,
            envelope: Vec::new(),
            document_items: Vec::new(),
            methods: defaults::methods(),
            connect_timeout_ms: defaults::connect_timeout_ms(),
            timeout_ms: defaults::timeout_ms(),
            retries: defaults::retries(),
            max_request_bytes: defaults::max_request_bytes(),
            max_response_bytes: defaults::max_response_bytes(),
            breaker_failures: defaults::breaker_failures(),
            breaker_open_ms: defaults::breaker_open_ms(),
            max_idle_connections: defaults::max_idle_connections(),
        }
    }
}

mod defaults {
    pub(super) fn methods() -> Vec<String> {
        vec!["GET".into(), "HEAD".into()]
    }
    pub(super) fn connect_timeout_ms() -> u64 {
        1_000
    }
    pub(super) fn timeout_ms() -> u64 {
        5_000
    }
    pub(super) fn retries() -> u32 {
        1
    }
    pub(super) fn max_request_bytes() -> usize {
        1024 * 1024
    }
    pub(super) fn max_response_bytes() -> usize {
        8 * 1024 * 1024
    }
    pub(super) fn breaker_failures() -> u32 {
        5
    }
    pub(super) fn breaker_open_ms() -> u64 {
        10_000
    }
    pub(super) fn max_idle_connections() -> usize {
        64
    }
}

/// Why an upstream binding cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream for {resource}: {reason}")]
    Invalid { resource: String, reason: String },
}

/// The bound supplier APIs, by resource.
#[derive(Debug, Default)]
pub struct Upstreams {
    pub(super) by_resource: HashMap<String, Upstream>,
}

#[derive(Debug)]
pub(super) struct Upstream {
    pub(super) config: UpstreamConfig,
    methods: Vec<Method>,
    pub(super) base: String,
    pub(super) credential: Option<(HeaderName, HeaderValue)>,
    pub(super) client: Client<HttpConnector, Body>,
    pub(super) breaker: Breaker,
}

impl Upstreams {
    /// Builds a pool and a breaker per binding. URLs must be `http://` (the supplier network
    /// link is expected to be protected below HTTP; see docs/data-plane.md).
    pub fn new(configs: &[UpstreamConfig]) -> Result<Self, UpstreamError> {
        let mut by_resource = HashMap::new();
        for config in configs {
            let invalid =
                |reason: String| UpstreamError::Invalid { resource: config.resource.clone(), reason };
            let uri: Uri = config.url.parse().map_err(|e| invalid(format!("url {}: {e}", config.url)))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err(invalid(format!("url {} is not an http:// URL with a host", config.url)));
            }
            if uri.query().is_some() {
                return Err(invalid("the base url may not have a query".into()));
            }
            let credential_value = match (&config.credential, &config.credential_env) {
                (Some(value), None) => Some(value.clone()),
                (None, Some(name)) => Some(
                    std::env::var(name)
                        .map_err(|_| invalid(format!("environment variable {name} is not set")))?,
                ),
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(invalid("give credential or credential_env, not both".into()));
                }
            };
            let credential = match (&config.credential_header, credential_value) {
                (Some(name), Some(value)) => Some((
                    HeaderName::try_from(name.as_str())
                        .map_err(|e| invalid(format!("credential_header: {e}")))?,
                    HeaderValue::try_from(value).map_err(|e| invalid(format!("credential: {e}")))?,
                )),
                (None, None) => None,
                _ => return Err(invalid("credential_header and a credential go together".into())),
            };
            let mut methods = Vec::new();
            for name in &config.methods {
                let method = Method::from_bytes(name.to_ascii_uppercase().as_bytes())
                    .map_err(|_| invalid(format!("methods: {name:?} is not an HTTP method")))?;
                // TRACE echoes the request, credential included; CONNECT opens a tunnel.
                if method == Method::TRACE || method == Method::CONNECT {
                    return Err(invalid(format!("methods: {method} is never passed on")));
                }
                methods.push(method);
            }
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
            connector.set_nodelay(true);
            connector.set_keepalive(Some(Duration::from_secs(60)));
            let client = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(config.max_idle_connections)
                .build(connector);
            let upstream = Upstream {
                methods,
                base: config.url.trim_end_matches('/').to_owned(),
                credential,
                client,
                breaker: Breaker::new(
                    format!("the supplier API of {}", config.resource),
                    config.breaker_failures,
                    Duration::from_millis(config.breaker_open_ms),
                ),
                config: config.clone(),
            };
            if by_resource.insert(config.resource.clone(), upstream).is_some() {
                return Err(invalid("the resource is bound twice".into()));
            }
        }
        Ok(Upstreams { by_resource })
    }

    pub fn is_bound(&self, resource: &str) -> bool {
        self.by_resource.contains_key(resource)
    }

    /// Refuses a method the resource's binding does not declare, with the ones it does.
    pub(crate) fn check_method(&self, resource: &str, method: &Method) -> Result<(), ApiError> {
        let Some(upstream) = self.by_resource.get(resource) else { return Err(not_bound(resource)) };
        if upstream.methods.contains(method) {
            return Ok(());
        }
        let allowed: Vec<&str> = upstream.methods.iter().map(Method::as_str).collect();
        Err(ApiError::method_not_allowed(
            format!("the supplier's API for {resource} takes {}, not {method}", allowed.join(", ")),
            &allowed,
        ))
    }
}
