//! Limits per source address, for what anyone can send without a credential: sign-ins, and
//! data calls refused before the caller is known.
//!
//! Credentials are what the gateway's other limits count by (systems, grants, names), so a
//! client without one could otherwise make the gateway hash passwords and write exchange
//! records as fast as it can send. Past its allowance a source is refused with 429 at once,
//! before any password is checked or any record is written; the data plane records those
//! refusals as one summary per source and interval instead of one record each.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tongban_policy::decision::Operation;

use crate::error::ApiError;

/// The allowances per source address (`[server.sources]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceLimitsConfig {
    /// Sign-ins a source address may start per second, and in a burst.
    pub sign_ins_per_second: u32,
    pub sign_in_burst: u32,
    /// Data calls without a valid credential a source address may make per second, and in a
    /// burst, each with its own exchange record.
    pub unauthenticated_per_second: u32,
    pub unauthenticated_burst: u32,
}

impl Default for SourceLimitsConfig {
    fn default() -> Self {
        SourceLimitsConfig {
            sign_ins_per_second: 5,
            sign_in_burst: 30,
            unauthenticated_per_second: 20,
            unauthenticated_burst: 100,
        }
    }
}

/// The per-address limiters and the refusals not yet summarised.
#[derive(Debug)]
pub struct SourceLimits {
    sign_ins: DefaultKeyedRateLimiter<IpAddr>,
    unauthenticated: DefaultKeyedRateLimiter<IpAddr>,
    suppressed: Mutex<HashMap<(IpAddr, Operation), u64>>,
}

impl Default for SourceLimits {
    fn default() -> Self {
        SourceLimits::new(&SourceLimitsConfig::default())
    }
}

impl SourceLimits {
    pub fn new(config: &SourceLimitsConfig) -> Self {
        let quota = |per_second: u32, burst: u32| {
            Quota::per_second(NonZeroU32::new(per_second.max(1)).expect("at least one"))
                .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least one"))
        };
        SourceLimits {
            sign_ins: RateLimiter::keyed(quota(config.sign_ins_per_second, config.sign_in_burst)),
            unauthenticated: RateLimiter::keyed(quota(
                config.unauthenticated_per_second,
                config.unauthenticated_burst,
            )),
            suppressed: Mutex::default(),
        }
    }
}

fn too_many(code: &'static str, detail: &str, wait: Duration) -> ApiError {
    let mut error =
        ApiError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, code, "Too many requests", detail);
    error.retry_after = Some(wait.as_secs().max(1));
    error
}

impl SourceLimits {
    /// Admits a sign-in from `peer` (always, when the peer is not known: a router driven
    /// in-process).
    pub fn sign_in(&self, peer: Option<SocketAddr>) -> Result<(), ApiError> {
        let Some(peer) = peer else { return Ok(()) };
        self.sign_ins.check_key(&peer.ip()).map_err(|not_until| {
            too_many(
                "sign_in_rate_limited",
                "too many sign-ins from this address; try again shortly",
                not_until.wait_time_from(DefaultClock::default().now()),
            )
        })
    }

    /// Whether a data call from `peer` refused for its credential gets a record of its own.
    /// Past the address's allowance it does not: it is counted toward the address's next
    /// summary ([`SourceLimits::take_suppressed`]) and answered with the returned refusal.
    pub fn unauthenticated(&self, peer: Option<SocketAddr>, operation: Operation) -> Result<(), ApiError> {
        let Some(peer) = peer else { return Ok(()) };
        self.unauthenticated.check_key(&peer.ip()).map_err(|not_until| {
            *self
                .suppressed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry((peer.ip(), operation))
                .or_default() += 1;
            too_many(
                "unauthenticated_rate_limited",
                "too many calls without a valid credential from this address; try again later",
                not_until.wait_time_from(DefaultClock::default().now()),
            )
        })
    }

    /// The refusals counted since the last call, by address and operation, for their summary
    /// records.
    pub fn take_suppressed(&self) -> Vec<((IpAddr, Operation), u64)> {
        std::mem::take(&mut *self.suppressed.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            .into_iter()
            .collect()
    }

    /// Forgets addresses that have been quiet, so the limiters stay bounded.
    pub fn sweep(&self) {
        self.sign_ins.retain_recent();
        self.unauthenticated.retain_recent();
        self.sign_ins.shrink_to_fit();
        self.unauthenticated.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_allowance() {
        let limits = SourceLimits::default();
        let a: SocketAddr = "192.0.2.1:1000".parse().expect("address");
        let b: SocketAddr = "192.0.2.2:1000".parse().expect("address");
        for _ in 0..SourceLimitsConfig::default().sign_in_burst {
            limits.sign_in(Some(a)).expect("within the burst");
        }
        let refused = limits.sign_in(Some(a)).expect_err("past the burst");
        assert_eq!((refused.status.as_u16(), refused.code), (429, "sign_in_rate_limited"));
        limits.sign_in(Some(b)).expect("another address is not limited by the first");
        limits.sign_in(None).expect("an unknown peer is not limited");

        for _ in 0..SourceLimitsConfig::default().unauthenticated_burst {
            limits.unauthenticated(Some(a), Operation::Verify).expect("within the burst");
        }
        for _ in 0..3 {
            limits.unauthenticated(Some(a), Operation::Verify).expect_err("past the burst");
        }
        assert_eq!(limits.take_suppressed(), [((a.ip(), Operation::Verify), 3)]);
        assert!(limits.take_suppressed().is_empty(), "taken once");
    }
}
