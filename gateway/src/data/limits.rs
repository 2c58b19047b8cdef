//! Rate limits: per calling system, per grant (the rate and daily quota its approval set) and
//! per resource (protecting the supplier). Limiters are keyed and bounded in memory: keys idle
//! for long are swept, so a flood of distinct callers cannot grow them without bound.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
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

/// Grants idle this long lose their limiter state (a fresh one starts full).
const IDLE: Duration = Duration::from_secs(15 * 60);
/// The most grants whose limiter state is kept.
const MAX_GRANTS: u64 = 200_000;

pub struct Limiters {
    clock: DefaultClock,
    systems: DefaultKeyedRateLimiter<String>,
    resources: DefaultKeyedRateLimiter<String>,
    /// Per grant version: a new version (say, a narrowed rate) starts a new limiter.
    grants: moka::sync::Cache<(String, u32), Arc<DefaultDirectRateLimiter>>,
    /// Calls counted against each grant's daily quota: (day, calls that day).
    days: moka::sync::Cache<String, Arc<Mutex<(NaiveDate, u32)>>>,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters").field("grants", &self.grants.entry_count()).finish_non_exhaustive()
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
            grants: moka::sync::Cache::builder().max_capacity(MAX_GRANTS).time_to_idle(IDLE).build(),
            // A day's count must outlive the day it counts.
            days: moka::sync::Cache::builder()
                .max_capacity(MAX_GRANTS)
                .time_to_idle(Duration::from_secs(26 * 3600))
                .build(),
        }
    }

    /// Drops the state of keys that have been idle, and gives the memory back.
    pub fn sweep(&self) {
        self.systems.retain_recent();
        self.systems.shrink_to_fit();
        self.resources.retain_recent();
        self.resources.shrink_to_fit();
        self.grants.run_pending_tasks();
        self.days.run_pending_tasks();
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
        // The daily quota is checked first and counted last, so a call another limit refuses
        // does not use it up.
        for grant in grants {
            let day = self.days.get_with(grant.id.clone(), || Arc::new(Mutex::new((today, 0))));
            let (counted_day, calls) = *day.lock().expect("quota lock is never poisoned");
            if counted_day == today && calls >= grant.daily_quota {
                return Err(Limited { limit: Limit::DailyQuota, retry_after: until_midnight(now) });
            }
        }
        let limited = |limit, not_until: governor::NotUntil<_>| Limited {
            limit,
            retry_after: not_until.wait_time_from(self.clock.now()),
        };
        self.systems.check_key(&system.to_owned()).map_err(|n| limited(Limit::System, n))?;
        for grant in grants {
            let limiter = self.grants.get_with((grant.id.clone(), grant.version), || {
                Arc::new(RateLimiter::direct(per_second(grant.rate_per_second)))
            });
            limiter.check().map_err(|n| limited(Limit::Grant, n))?;
        }
        for resource in resources {
            self.resources.check_key(&(*resource).to_owned()).map_err(|n| limited(Limit::Resource, n))?;
        }
        for grant in grants {
            let day = self.days.get_with(grant.id.clone(), || Arc::new(Mutex::new((today, 0))));
            let mut day = day.lock().expect("quota lock is never poisoned");
            if day.0 != today {
                *day = (today, 0);
            }
            day.1 += 1;
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
    fn systems_share_one_limit_over_their_grants() {
        let limits = Limiters::new(&LimitsConfig { system_per_second: 2, resource_per_second: 1000 });
        let now = at("2026-11-23 10:00:00");
        let (a, b) = (grant(100, 1000), Grant { id: "g2".into(), ..grant(100, 1000) });
        assert_eq!(limits.check("s1", &[&a], &["A01"], now), Ok(()));
        assert_eq!(limits.check("s1", &[&b], &["A01"], now), Ok(()));
        assert_eq!(limits.check("s1", &[&a], &["A01"], now).map_err(|l| l.limit), Err(Limit::System));
        assert_eq!(limits.check("s2", &[&a], &["A01"], now), Ok(()));
        limits.sweep();
    }
}
