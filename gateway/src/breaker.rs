//! The circuit breaker each supplier binding and each peer gateway has.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A breaker per upstream: closed while calls succeed; open for a while after
/// `threshold` consecutive failures; then half open, admitting one trial call whose outcome
/// closes or reopens it.
#[derive(Debug)]
pub(crate) struct Breaker {
    /// What the breaker guards (a resource's supplier, a peer gateway), for the warning.
    guards: String,
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum BreakerState {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// Whether an admitted call is the trial of a half-open breaker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trial(bool);

impl Breaker {
    pub(crate) fn new(guards: impl Into<String>, threshold: u32, open_for: Duration) -> Self {
        Breaker {
            guards: guards.into(),
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    /// Admits a call now, or says how long the circuit stays open.
    pub(crate) fn admit(&self) -> Result<Trial, Duration> {
        self.admit_at(Instant::now())
    }

    /// Records the outcome of an admitted call that ended now.
    pub(crate) fn record(&self, trial: Trial, success: bool) {
        self.record_at(trial, success, Instant::now());
    }

    /// Admits a call at `now`, or says how long the circuit stays open. The time is given, so
    /// that tests can move it rather than wait for it.
    fn admit_at(&self, now: Instant) -> Result<Trial, Duration> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *state {
            BreakerState::Closed { .. } => Ok(Trial(false)),
            BreakerState::Open { until } => {
                if now >= until {
                    *state = BreakerState::HalfOpen;
                    Ok(Trial(true))
                } else {
                    Err(until - now)
                }
            }
            // One trial at a time; the others are refused until it decides.
            BreakerState::HalfOpen => Err(Duration::from_secs(1)),
        }
    }

    fn record_at(&self, trial: Trial, success: bool, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *state = match (*state, success) {
            (_, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false) if failures + 1 < self.threshold && !trial.0 => {
                BreakerState::Closed { failures: failures + 1 }
            }
            (_, false) => {
                if !matches!(*state, BreakerState::Open { .. }) {
                    tracing::warn!(
                        guards = %self.guards,
                        open_for_ms = self.open_for.as_millis() as u64,
                        "circuit opened"
                    );
                }
                BreakerState::Open { until: now + self.open_for }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakers_open_after_failures_and_close_after_a_good_trial() {
        let open_for = Duration::from_millis(30);
        let breaker = Breaker::new("a test", 3, open_for);
        let start = Instant::now();
        for _ in 0..2 {
            let trial = breaker.admit_at(start).expect("closed");
            breaker.record_at(trial, false, start);
        }
        assert!(breaker.admit_at(start).is_ok(), "two failures of three keep it closed");
        breaker.record_at(Trial(false), false, start);
        assert_eq!(breaker.admit_at(start).err(), Some(open_for), "the third opens it");
        let later = start + open_for + Duration::from_millis(10);
        assert!(breaker.admit_at(later - Duration::from_millis(11)).is_err(), "open until its time is up");
        let trial = breaker.admit_at(later).expect("half open admits one trial");
        assert!(breaker.admit_at(later).is_err(), "only one trial at a time");
        breaker.record_at(trial, false, later);
        assert!(breaker.admit_at(later).is_err(), "a failed trial reopens it");
        let even_later = later + open_for;
        let trial = breaker.admit_at(even_later).expect("trial");
        breaker.record_at(trial, true, even_later);
        assert!(
            breaker.admit_at(even_later).is_ok() && breaker.admit_at(even_later).is_ok(),
            "a good trial closes it"
        );
    }
}
