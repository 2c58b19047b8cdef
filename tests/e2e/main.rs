//! The end-to-end tests, one module per part of the product, in one test binary. Each module
//! starts the real `tongban` binary (see `harness/`) on loopback; nextest runs the tests in
//! parallel processes as it would separate binaries.

mod api;
mod architecture;
mod attacks;
mod cluster;
mod console;
mod data;
mod demo;
mod deploy;
mod evidence;
mod federation;
mod hostile;
mod licences;
mod log;
mod offices;
mod proxy;
mod scale;
mod slow;
mod telemetry;
mod tls;
