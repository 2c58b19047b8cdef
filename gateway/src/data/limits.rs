//! Rate limits: per calling system, per grant (the rate and daily quota its approval set) and
//! per resource (protecting the supplier). Limiters are keyed and bounded in memory: keys idle
//! for long are swept, so a flood of distinct callers cannot grow them without bound.
//!
//! Rates are a gateway's own: each bounds the load on itself and on the suppliers behind it.
//! A daily quota is the approval's, whatever the number of gateways or their restarts, so it is
//! counted in the store: a gateway leases about a second's worth of a grant's calls at a time
//! (its approved rate) and counts them down in memory, so the store sees at most one write a
//! second per grant and gateway, and a day's calls never add up to more than the quota.

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

use tongban_platform::store::{Store, StoreError};

use crate::error::ApiError;

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

pub use tongban_exchange::Limit;

/// A refusal: which limit, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub limit: Limit,
    pub retry_after: Duration,
}

/// A call refused by a rate limit or quota answers 429 with when to try again.
impl From<Limited> for ApiError {
    fn from(limited: Limited) -> Self {
        let what = match limited.limit {
            Limit::System => "the calling system's rate limit",
            Limit::Grant => "the grant's approved rate",
            Limit::DailyQuota => "the grant's daily quota",
            Limit::Resource => "the resource's rate limit, which protects its supplier",
        };
        // Whole seconds, rounded up, and never zero: a client told 0 would retry at once.
        let seconds = limited.retry_after.as_secs() + u64::from(limited.retry_after.subsec_nanos() > 0);
        let mut error = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
            format!("{what} is used up; try again in {} s", seconds.max(1)),
        );
        error.retry_after = Some(seconds.max(1));
        error
    }
}

/// Grants idle this long lose their limiter state. It must outlive a day, or a daily quota
/// would start again after a pause.
const IDLE_SECONDS: i64 = 26 * 3600;

pub struct Limiters {
    store: Store,
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
    /// Held while a lease is taken from the store, so that calls arriving together with the
    /// lease used up take one lease, not one each.
    leasing: tokio::sync::Mutex<()>,
    /// The platform time of the last call, in seconds, for the sweep.
    last_used: AtomicI64,
}

struct GrantCounters {
    /// The grant version `rate` was made for: a new version (say, a narrowed rate) starts a
    /// new limiter and gives its unused lease back, while the day's count carries over.
    version: u32,
    rate: DefaultDirectRateLimiter,
    /// The day `leased` belongs to.
    day: NaiveDate,
    /// Calls of that day's quota leased from the store and not used yet.
    leased: u32,
}

/// Why a call was not let through.
#[derive(Debug)]
pub enum Refusal {
    /// A limit is used up.
    Limited(Limited),
    /// The daily quota could not be counted: the store did not answer. The call is refused
    /// rather than let through uncounted.
    QuotaUnavailable(StoreError),
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
    pub fn new(config: &LimitsConfig, store: Store) -> Self {
        Limiters {
            store,
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
                    leased: 0,
                }),
                leasing: tokio::sync::Mutex::new(()),
                last_used: AtomicI64::new(0),
            })
        };
        Arc::clone(&self.grants.entry(grant.id.clone()).or_insert_with(made))
    }

    /// Counts one call by `system` under `grants` on `resources`, or says which limit refuses
    /// it. `now` is the platform's time (Beijing), whose day the daily quota follows.
    pub async fn check(
        &self,
        system: &str,
        grants: &[&Grant],
        resources: &[&str],
        now: NaiveDateTime,
    ) -> Result<(), Refusal> {
        let today = now.date();
        let seconds = now.and_utc().timestamp();
        let states: Vec<Arc<GrantState>> = grants.iter().map(|g| self.grant_state(g, today)).collect();
        for state in &states {
            state.last_used.store(seconds, Ordering::Relaxed);
        }
        // The rates first, in memory: a call over a rate is refused without reaching the store
        // for its quota, so a burst is cut at the approved rate however long a lease takes.
        let mut unused = Vec::new();
        let rated = self.check_rates(system, grants, &states, resources, today, &mut unused);
        for (grant_id, calls) in unused {
            // A new version may have narrowed the quota: what this gateway holds but has not
            // used goes back before it counts again.
            self.store.return_quota(grant_id, today, calls).await.map_err(Refusal::QuotaUnavailable)?;
        }
        rated.map_err(Refusal::Limited)?;
        // Then one call of each grant's daily quota, given back if a later grant's quota
        // refuses the call, so a refused call does not use the quota up.
        let mut taken: Vec<&GrantState> = Vec::with_capacity(states.len());
        for (grant, state) in grants.iter().zip(&states) {
            let refusal = match self.take_quota(grant, state, today).await {
                Ok(true) => {
                    taken.push(state);
                    continue;
                }
                Ok(false) => {
                    Refusal::Limited(Limited { limit: Limit::DailyQuota, retry_after: until_midnight(now) })
                }
                Err(e) => Refusal::QuotaUnavailable(e),
            };
            give_back(&taken, today);
            return Err(refusal);
        }
        Ok(())
    }

    /// The calling system's, each grant's and each resource's rate, in that order. Moves each
    /// grant's counters to its version and to `today` on the way, adding to `unused` the calls
    /// leased under an earlier version, which the caller gives back to the store.
    fn check_rates<'g>(
        &self,
        system: &str,
        grants: &[&'g Grant],
        states: &[Arc<GrantState>],
        resources: &[&str],
        today: NaiveDate,
        unused: &mut Vec<(&'g str, u32)>,
    ) -> Result<(), Limited> {
        let limited = |limit, not_until: governor::NotUntil<_>| Limited {
            limit,
            retry_after: not_until.wait_time_from(self.clock.now()),
        };
        self.systems.check_key(&system.to_owned()).map_err(|n| limited(Limit::System, n))?;
        for (grant, state) in grants.iter().zip(states) {
            let mut counters = state.counters.lock().expect("limiter lock is never poisoned");
            let calls = counters.catch_up(grant, today);
            if calls > 0 {
                unused.push((grant.id.as_str(), calls));
            }
            counters.rate.check().map_err(|n| limited(Limit::Grant, n))?;
        }
        for resource in resources {
            self.resources.check_key(&(*resource).to_owned()).map_err(|n| limited(Limit::Resource, n))?;
        }
        Ok(())
    }

    /// Takes one call of `grant`'s quota for `today` from this gateway's lease, leasing more
    /// from the store when it is used up. False when the day's quota is used up.
    async fn take_quota(
        &self,
        grant: &Grant,
        state: &GrantState,
        today: NaiveDate,
    ) -> Result<bool, StoreError> {
        // Most calls end here, in memory.
        if state.counters.lock().expect("limiter lock is never poisoned").take(today) {
            return Ok(true);
        }
        let _leasing = state.leasing.lock().await;
        // Another call may have leased while this one waited.
        if state.counters.lock().expect("limiter lock is never poisoned").take(today) {
            return Ok(true);
        }
        let lease = grant.rate_per_second.clamp(1, grant.daily_quota.max(1));
        let leased = self.store.lease_quota(&grant.id, today, lease, grant.daily_quota).await?;
        if leased == 0 {
            return Ok(false);
        }
        let mut counters = state.counters.lock().expect("limiter lock is never poisoned");
        if counters.day < today {
            counters.day = today;
            counters.leased = 0;
        }
        // Unless a call of the next day has moved the counters on meanwhile.
        if counters.day == today {
            counters.leased += leased - 1;
        }
        Ok(true)
    }

    /// Gives every unused lease of today back to the store, so that a gateway stopping (for a
    /// restart, say) leaves the rest of the day's quotas to the others.
    pub async fn return_leases(&self, now: NaiveDateTime) -> Result<(), StoreError> {
        let today = now.date();
        let held: Vec<(String, u32)> = self
            .grants
            .iter()
            .filter_map(|entry| {
                let mut counters = entry.value().counters.lock().expect("limiter lock is never poisoned");
                let unused = if counters.day == today { std::mem::take(&mut counters.leased) } else { 0 };
                (unused > 0).then(|| (entry.key().clone(), unused))
            })
            .collect();
        for (grant_id, unused) in held {
            self.store.return_quota(&grant_id, today, unused).await?;
        }
        Ok(())
    }
}

impl GrantCounters {
    /// Moves the counters to `grant`'s version and to `today`. Returns the calls leased for
    /// today under an earlier version and not used, which the caller gives back.
    fn catch_up(&mut self, grant: &Grant, today: NaiveDate) -> u32 {
        if self.day < today {
            // A lease is for one day; yesterday's unused calls are of no use today.
            self.day = today;
            self.leased = 0;
        }
        if self.version == grant.version {
            return 0;
        }
        self.version = grant.version;
        self.rate = RateLimiter::direct(per_second(grant.rate_per_second));
        std::mem::take(&mut self.leased)
    }

    /// Takes one leased call of `today`, if one is left.
    fn take(&mut self, today: NaiveDate) -> bool {
        if self.day != today || self.leased == 0 {
            return false;
        }
        self.leased -= 1;
        true
    }
}

/// Puts back the calls taken from the leases of `states` for a call that was then refused.
fn give_back(states: &[&GrantState], today: NaiveDate) {
    for state in states {
        let mut counters = state.counters.lock().expect("limiter lock is never poisoned");
        if counters.day == today {
            counters.leased += 1;
        }
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
            superseded_by: None,
        }
    }

    fn at(time: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S").expect("time")
    }

    async fn store() -> Store {
        Store::connect("sqlite::memory:").await.expect("store")
    }

    /// `check`'s outcome as the limit that refused, if any.
    async fn outcome(
        limits: &Limiters,
        system: &str,
        grant: &Grant,
        resource: &str,
        now: NaiveDateTime,
    ) -> Result<(), Limit> {
        match limits.check(system, &[grant], &[resource], now).await {
            Ok(()) => Ok(()),
            Err(Refusal::Limited(limited)) => Err(limited.limit),
            Err(Refusal::QuotaUnavailable(e)) => panic!("the store failed: {e}"),
        }
    }

    #[tokio::test]
    async fn a_grant_allows_its_rate_as_a_burst_then_refuses_with_a_wait() {
        let limits = Limiters::new(&LimitsConfig::default(), store().await);
        let grant = grant(5, 1000);
        let now = at("2026-11-23 10:00:00");
        for _ in 0..5 {
            assert_eq!(outcome(&limits, "s1", &grant, "A01", now).await, Ok(()));
        }
        let Err(Refusal::Limited(refused)) = limits.check("s1", &[&grant], &["A01"], now).await else {
            panic!("over the rate")
        };
        assert_eq!(refused.limit, Limit::Grant);
        assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_millis(200));
        // A narrowed version is a new limiter.
        let narrowed = Grant { version: 2, ..grant };
        assert_eq!(outcome(&limits, "s1", &narrowed, "A01", now).await, Ok(()));
    }

    #[tokio::test]
    async fn daily_quotas_run_out_until_midnight_and_refused_calls_do_not_count() {
        let limits =
            Limiters::new(&LimitsConfig { system_per_second: 1000, resource_per_second: 1 }, store().await);
        let grant = grant(1000, 2);
        let now = at("2026-11-23 23:59:30");
        assert_eq!(outcome(&limits, "s1", &grant, "A01", now).await, Ok(()));
        // The resource limit refuses this one; it does not count against the quota.
        assert_eq!(outcome(&limits, "s1", &grant, "A01", now).await, Err(Limit::Resource));
        assert_eq!(outcome(&limits, "s1", &grant, "B02", now).await, Ok(()));
        let Err(Refusal::Limited(refused)) = limits.check("s1", &[&grant], &["C03"], now).await else {
            panic!("quota used")
        };
        assert_eq!((refused.limit, refused.retry_after), (Limit::DailyQuota, Duration::from_secs(30)));
        assert_eq!(outcome(&limits, "s1", &grant, "D04", at("2026-11-24 00:00:01")).await, Ok(()));
    }

    #[tokio::test]
    async fn idle_grants_are_swept_only_after_their_day_is_over() {
        let limits = Limiters::new(&LimitsConfig::default(), store().await);
        let grant = grant(1000, 1);
        assert_eq!(outcome(&limits, "s1", &grant, "A01", at("2026-11-23 10:00:00")).await, Ok(()));
        // An hour idle keeps the day's count: the quota stays used.
        limits.sweep(at("2026-11-23 11:00:00"));
        let refused = outcome(&limits, "s1", &grant, "A01", at("2026-11-23 11:00:00")).await;
        assert_eq!(refused, Err(Limit::DailyQuota));
        assert_eq!(limits.grants.len(), 1);
        // More than a day idle, the state is gone.
        limits.sweep(at("2026-11-24 13:00:01"));
        assert_eq!(limits.grants.len(), 0);
    }

    #[tokio::test]
    async fn systems_share_one_limit_over_their_grants() {
        let limits =
            Limiters::new(&LimitsConfig { system_per_second: 2, resource_per_second: 1000 }, store().await);
        let now = at("2026-11-23 10:00:00");
        let (a, b) = (grant(100, 1000), Grant { id: "g2".into(), ..grant(100, 1000) });
        assert_eq!(outcome(&limits, "s1", &a, "A01", now).await, Ok(()));
        assert_eq!(outcome(&limits, "s1", &b, "A01", now).await, Ok(()));
        assert_eq!(outcome(&limits, "s1", &a, "A01", now).await, Err(Limit::System));
        assert_eq!(outcome(&limits, "s2", &a, "A01", now).await, Ok(()));
        limits.sweep(now);
    }

    /// Two gateways on one store, and a third started after them, share one daily quota:
    /// their calls add up to the quota and no more, whichever gateway takes them.
    #[tokio::test]
    async fn gateways_on_one_store_and_restarts_share_one_daily_quota() {
        let store = store().await;
        let gateway = || Limiters::new(&LimitsConfig::default(), store.clone());
        let (first, second) = (gateway(), gateway());
        let grant = grant(3, 10);
        let now = at("2026-11-23 10:00:00");
        let mut allowed = 0;
        let mut used_up = [false, false];
        for call in 0..200 {
            if used_up == [true, true] {
                break;
            }
            let at_first = call % 3 == 0;
            let through = if at_first { &first } else { &second };
            match outcome(through, "s1", &grant, "A01", now).await {
                Ok(()) => allowed += 1,
                Err(Limit::DailyQuota) => used_up[usize::from(!at_first)] = true,
                // The rate limiter keeps real time: wait for the next call's turn.
                Err(limit) => {
                    assert_eq!(limit, Limit::Grant);
                    tokio::time::sleep(Duration::from_millis(120)).await;
                }
            }
        }
        assert_eq!(used_up, [true, true], "both gateways reach the end of the quota");
        assert!(allowed <= 10, "{allowed} calls on a quota of 10");
        // What the two gateways hold unused goes back when they stop; a gateway started
        // afterwards has exactly the rest of the day's quota.
        first.return_leases(now).await.expect("return");
        second.return_leases(now).await.expect("return");
        assert_eq!(store.quota_used("g1", now.date()).await.expect("used"), allowed);
        let restarted = gateway();
        let mut after = 0;
        while outcome(&restarted, "s1", &grant, "A01", now).await.is_ok() {
            after += 1;
        }
        assert_eq!(allowed + after, 10, "the day's calls add up to the quota");
    }

    /// A narrowed quota holds at once: calls leased under the old version go back to the
    /// store before the new one is counted.
    #[tokio::test]
    async fn a_narrowed_quota_gives_back_what_was_leased_under_the_old_one() {
        let store = store().await;
        let limits = Limiters::new(&LimitsConfig::default(), store.clone());
        let now = at("2026-11-23 10:00:00");
        let wide = grant(5, 100);
        assert_eq!(outcome(&limits, "s1", &wide, "A01", now).await, Ok(()));
        assert_eq!(store.quota_used("g1", now.date()).await.expect("used"), 5, "a second's worth is leased");
        let narrowed = Grant { version: 2, daily_quota: 2, ..wide };
        assert_eq!(outcome(&limits, "s1", &narrowed, "A01", now).await, Ok(()));
        assert_eq!(store.quota_used("g1", now.date()).await.expect("used"), 2);
        assert_eq!(outcome(&limits, "s1", &narrowed, "A01", now).await, Err(Limit::DailyQuota));
    }

    /// A store that cannot count the quota refuses the call instead of letting it through.
    #[tokio::test]
    async fn a_quota_that_cannot_be_counted_refuses_the_call() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("store.db");
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.expect("store");
        let limits = Limiters::new(&LimitsConfig::default(), store.clone());
        store.close().await;
        let refused = limits.check("s1", &[&grant(5, 100)], &["A01"], at("2026-11-23 10:00:00")).await;
        assert!(matches!(refused, Err(Refusal::QuotaUnavailable(_))), "{refused:?}");
    }
}
