//! Tongban's gateway: the server, its HTTP API, configuration and commands.

pub mod api;
pub mod bootstrap;
pub(crate) mod breaker;
pub mod caller;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod data;
pub mod datasets;
pub mod demo;
pub mod error;
pub mod evidence;
pub mod federation;
pub mod listener;
pub mod metrics;
pub mod peers;
pub mod quality;
pub mod report;
pub mod seals;
pub mod server;
pub mod sources;
pub mod state;
pub mod telemetry;
pub mod tls;

pub use config::Config;
pub use error::ApiError;
pub use server::app;
pub use state::AppState;
