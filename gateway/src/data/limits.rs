//! Rate limits: per calling system, per grant (the rate and daily quota its approval set) and
//! per resource (protecting the supplier). Limiters are keyed and bounded in memory: keys idle
//! for long are swept, so a flood of distinct callers cannot grow them without bound.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tongban_policy::grant::Grant;

/// Limits that are not set by approvals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Calls per second one system may make, over all its grants.
    pub system_per_second: u32,
    /// Calls per second one resource may receive, from all callers (protecting the supplier).
    pub resource_per_second: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { system_per_second: 500, resource_per_second: 2000 }
    }
}

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    System,
    Grant,
    DailyQuota,
    Resource,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::System => "system",
            Limit::Grant => "grant",
            Limit::DailyQuota => "daily_quota",
            Limit::Resource => "resource",
        }
    }
}

/// A refusal: which limit, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub limit: Limit,
    pub retry_after: Duration,
}

/// Grants idle this long lose their limiter state. It must outlive a day, or a daily quota
/// would start again after a pause.
const IDLE_SECONDS: i64 = 26 * 3600;

pub struct Limiters {
    clock: DefaultClock,
    systems: DefaultKeyedRateLimiter<String>,
    resources: DefaultKeyedRateLimiter<String>,
    /// Per grant id: its rate limiter and its calls today. Keys are ids of grants that
    /// permitted a call, so callers cannot grow the map; idle grants are swept.
    grants: DashMap<String, Arc<GrantState>>,
}

/// One grant's limiter state, found with one look-up per call.
struct GrantState {
    counters: Mutex<GrantCounters>,
    /// The platform time of the last call, in seconds, for the sweep.
    last_used: AtomicI64,
}

struct GrantCounters {
    /// The grant version `rate` was made for: a new version (say, a narrowed rate) starts a
    /// new limiter, while the day's count carries over.
    version: u32,
    rate: DefaultDirectRateLimiter,
    day: NaiveDate,
    calls: u32,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters").field("grants", &self.grants.len()).finish_non_exhaustive()
    }
}

fn per_second(n: u32) -> Quota {
    // A burst of one second's worth of calls, refilled evenly.
    Quota::per_second(NonZeroU32::new(n.max(1)).expect("at least one"))
}

impl Limiters {
    pub fn new(config: &LimitsConfig) -> Self {
        Limiters {
            clock: DefaultClock::default(),
            systems: RateLimiter::keyed(per_second(config.system_per_second)),
            resources: RateLimiter::keyed(per_second(config.resource_per_second)),
            grants: DashMap::new(),
        }
    }

    /// Drops the state of keys that have been idle, and gives the memory back. `now` is the
    /// platform's time, as given to [`Limiters::check`].
    pub fn sweep(&self, now: NaiveDateTime) {
        self.systems.retain_recent();
        self.systems.shrink_to_fit();
        self.resources.retain_recent();
        self.resources.shrink_to_fit();
        let now = now.and_utc().timestamp();
        self.grants.retain(|_, state| now - state.last_used.load(Ordering::Relaxed) < IDLE_SECONDS);
        self.grants.shrink_to_fit();
    }

    /// The state of `grant`, made on its first call.
    fn grant_state(&self, grant: &Grant, today: NaiveDate) -> Arc<GrantState> {
        if let Some(state) = self.grants.get(grant.id.as_str()) {
            return Arc::clone(&state);
        }
        let made = || {
            Arc::new(GrantState {
                counters: Mutex::new(GrantCounters {
                    version: grant.version,
                    rate: RateLimiter::direct(per_second(grant.rate_per_second)),
                    day: today,
                    calls: 0,
                }),
                last_used: AtomicI64::new(0),
            })
        };
        Arc::clone(&self.grants.entry(grant.id.clone()).or_insert_with(made))
    }

    /// Counts one call by `system` under `grants` on `resources`, or says which limit refuses
    /// it. `now` is the platform's time (Beijing), whose day the daily quota follows.
    pub fn check(
        &self,
        system: &str,
        grants: &[&Grant],
        resources: &[&str],
        now: NaiveDateTime,
    ) -> Result<(), Limited> {
        let today = now.date();
        let seconds = now.and_utc().timestamp();
        let states: Vec<Arc<GrantState>> = grants.iter().map(|g| self.grant_state(g, today)).collect();
        // The daily quota is checked first and counted last, so a call another limit refuses
        // does not use it up.
        for (grant, state) in grants.iter().zip(&states) {
            state.last_used.store(seconds, Ordering::Relaxed);
            let mut counters = state.counters.lock().expect("limiter lock is never poisoned");
            if counters.day < today {
                counters.day = today;
                counters.calls = 0;
            }
            if counters.calls >= grant.daily_quota {
                return Err(Limited { limit: Limit::DailyQuota, retry_after: until_midnight(now) });
            }
        }
        let limited = |limit, not_until: governor::NotUntil<_>| Limited {
            limit,
            retry_after: not_until.wait_time_from(self.clock.now()),
        };
        self.systems.check_key(&system.to_owned()).map_err(|n| limited(Limit::System, n))?;
        for (grant, state) in grants.iter().zip(&states) {
            let mut counters = state.counters.lock().expect("limiter lock is never poisoned");
            if counters.version != grant.version {
                counters.version = grant.version;
                counters.rate = RateLimiter::direct(per_second(grant.rate_per_second));
            }
            counters.rate.check().map_err(|n| limited(Limit::Grant, n))?;
        }
        for resource in resources {
            self.resources.check_key(&(*resource).to_owned()).map_err(|n| limited(Limit::Resource, n))?;
        }
        for state in &states {
            let mut counters = state.counters.lock().expect("limiter lock is never poisoned");
            // A call checked on one day whose count another call has moved to the next counts
            // for the next.
            if counters.day < today {
                counters.day = today;
                counters.calls = 0;
            }
            counters.calls += 1;
        }
        Ok(())
    }
}

fn until_midnight(now: NaiveDateTime) -> Duration {
    let midnight = (now.date() + chrono::Duration::days(1)).and_hms_opt(0, 0, 0).expect("midnight");
    (midnight - now).to_std().unwrap_or(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tongban_policy::grant::GrantStatus;

    fn grant(rate: u32, quota: u32) -> Grant {
        let day = |s: &str| s.parse::<NaiveDate>().expect("date");
        Grant {
            id: "g1".into(),
            version: 1,
            demand_id: "d1".into(),
            consumer_department: "dept".into(),
            consumer_system: None,
            resource_code: "A01".into(),
            resource_version: 1,
            dataset: "household".into(),
            service_item: "KSTB-GA-001".into(),
            purpose: String::new(),
            items: vec![],
            division_prefix: String::new(),
            rate_per_second: rate,
            daily_quota: quota,
            valid_from: day("2026-01-01"),
            valid_until: day("2026-12-31"),
            status: GrantStatus::Active,
        }
    }

    fn at(time: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S").expect("time")
    }

    #[test]
    fn a_grant_allows_its_rate_as_a_burst_then_refuses_with_a_wait() {
        let limits = Limiters::new(&LimitsConfig::default());
        let grant = grant(5, 1000);
        let now = at("2026-11-23 10:00:00");
        for _ in 0..5 {
            assert_eq!(limits.check("s1", &[&grant], &["A01"], now), Ok(()));
        }
        let refused = limits.check("s1", &[&grant], &["A01"], now).expect_err("over the rate");
        assert_eq!(refused.limit, Limit::Grant);
        assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_millis(200));
        // A narrowed version is a new limiter.
        let narrowed = Grant { version: 2, ..grant };
        assert_eq!(limits.check("s1", &[&narrowed], &["A01"], now), Ok(()));
    }

    #[test]
    fn daily_quotas_run_out_until_midnight_and_refused_calls_do_not_count() {
        let limits = Limiters::new(&LimitsConfig { system_per_second: 1000, resource_per_second: 1 });
        let grant = grant(1000, 2);
        let now = at("2026-11-23 23:59:30");
        assert_eq!(limits.check("s1", &[&grant], &["A01"], now), Ok(()));
        // The resource limit refuses this one; it does not count against the quota.
        assert_eq!(limits.check("s1", &[&grant], &["A01"], now).map_err(|l| l.limit), Err(Limit::Resource));
        assert_eq!(limits.check("s1", &[&grant], &["B02"], now), Ok(()));
        let refused = limits.check("s1", &[&grant], &["C03"], now).expect_err("quota used");
        assert_eq!((refused.limit, refused.retry_after), (Limit::DailyQuota, Duration::from_secs(30)));
        assert_eq!(limits.check("s1", &[&grant], &["D04"], at("2026-11-24 00:00:01")), Ok(()));
    }

    #[test]
    fn idle_grants_are_swept_only_after_their_day_is_over() {
        let limits = Limiters::new(&LimitsConfig::default());
        let grant = grant(1000, 1);
        assert_eq!(limits.check("s1", &[&grant], &["A01"], at("2026-11-23 10:00:00")), Ok(()));
        // An hour idle keeps the day's count: the quota stays used.
        limits.sweep(at("2026-11-23 11:00:00"));
        let refused = limits.check("s1", &[&grant], &["A01"], at("2026-11-23 11:00:00"));
        assert_eq!(refused.map_err(|l| l.limit), Err(Limit::DailyQuota));
        assert_eq!(limits.grants.len(), 1);
        // More than a day idle, the state is gone.
        limits.sweep(at("2026-11-24 13:00:01"));
        assert_eq!(limits.grants.len(), 0);
    }

    #[test]
    fn systems_share_one_limit_over_their_grants() {
        let limits = Limiters::new(&LimitsConfig { system_per_second: 2, resource_per_second: 1000 });
        let now = at("2026-11-23 10:00:00");
        let (a, b) = (grant(100, 1000), Grant { id: "g2".into(), ..grant(100, 1000) });
        assert_eq!(limits.check("s1", &[&a], &["A01"], now), Ok(()));
        assert_eq!(limits.check("s1", &[&b], &["A01"], now), Ok(()));
        assert_eq!(limits.check("s1", &[&a], &["A01"], now).map_err(|l| l.limit), Err(Limit::System));
        assert_eq!(limits.check("s2", &[&a], &["A01"], now), Ok(()));
        limits.sweep(now);
    }
}
