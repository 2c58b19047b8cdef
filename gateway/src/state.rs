//! The state every management handler shares: the data plane's state, the quality
//! measurements, and the credential Prometheus scrapes with.

use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tongban_platform::{Caller, Platform};

use crate::data::{DataPlane, DataState};
use crate::datasets::Readiness;
use crate::error::ApiError;
use crate::quality::QualityCache;
use crate::sources::{SourceLimits, SourceLimitsConfig};

/// State shared by every handler. Data routes are given its `DataState` alone.
#[derive(Debug, Clone)]
pub struct AppState {
    data: DataState,
    quality: QualityCache,
    metrics_token: Option<Arc<str>>,
}

impl AppState {
    pub fn new(platform: Platform, data: DataPlane) -> Self {
        AppState {
            data: DataState::new(
                Arc::new(platform),
                Arc::new(data),
                Arc::new(RwLock::new(Readiness::Loading)),
                Arc::default(),
            ),
            quality: QualityCache::default(),
            metrics_token: None,
        }
    }

    /// The limits per source address on what is sent without a credential.
    pub fn sources(&self) -> &SourceLimits {
        self.data.sources()
    }

    /// Limits per source address as configured.
    pub fn with_source_limits(mut self, config: &SourceLimitsConfig) -> Self {
        self.data = self.data.with_sources(Arc::new(SourceLimits::new(config)));
        self
    }

    /// Lets Prometheus read `/metrics` with `token` as its bearer credential.
    pub fn with_metrics_token(mut self, token: Option<String>) -> Self {
        self.metrics_token = token.filter(|t| !t.is_empty()).map(Arc::from);
        self
    }

    pub fn metrics_token(&self) -> Option<&str> {
        self.metrics_token.as_deref()
    }

    /// Federates the gateway with `peers`.
    pub fn with_peers(mut self, peers: Arc<crate::peers::Peers>) -> Self {
        self.data = self.data.with_peers(peers);
        self
    }

    /// The peer gateways, when this one is federated.
    pub fn peers(&self) -> Option<&Arc<crate::peers::Peers>> {
        self.data.peers()
    }

    /// What data calls are served from.
    pub fn data_state(&self) -> &DataState {
        &self.data
    }

    pub fn data(&self) -> &DataPlane {
        self.data.data()
    }

    pub fn platform(&self) -> &Platform {
        self.data.platform()
    }

    /// The quality measurements, kept per opened set of datasets and catalog version.
    pub fn quality(&self) -> &QualityCache {
        &self.quality
    }

    pub fn set_readiness(&self, readiness: Readiness) {
        self.data.set_readiness(readiness);
    }

    pub fn readiness(&self) -> Readiness {
        self.data.readiness()
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        crate::caller::caller(parts, state.platform()).await
    }
}
