//! The platform's clock. Workflow deadlines, grant validity, sessions and daily quotas are all
//! counted from it, so a test that sets it can cross a deadline without waiting for one or
//! writing dates into the store by hand.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{Duration, NaiveDateTime};

/// Where the platform reads the time: Beijing wall time from the system clock, or a clock a
/// test has set ([`SetClock`]).
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<SetClock>);

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// Beijing time (UTC+8, the mainland's one time zone, without daylight saving), whatever
    /// the server's own zone. The store keeps timestamps as Beijing wall time; the console
    /// reads them so and shows them in the reader's zone.
    pub fn now(&self) -> NaiveDateTime {
        match &self.0 {
            Some(set) => set.now(),
            None => system_beijing_time(),
        }
    }
}

impl From<SetClock> for Clock {
    fn from(set: SetClock) -> Clock {
        Clock(Some(set))
    }
}

/// A clock that stands still at the time it is set to until it is moved on. Clones share one
/// time, so the test keeps one and the platform reads another.
#[derive(Clone, Debug)]
pub struct SetClock(Arc<Mutex<NaiveDateTime>>);

impl SetClock {
    /// A clock standing at `at`.
    pub fn at(at: NaiveDateTime) -> SetClock {
        SetClock(Arc::new(Mutex::new(at)))
    }

    /// A clock standing at the present moment.
    pub fn now_standing() -> SetClock {
        SetClock::at(system_beijing_time())
    }

    pub fn now(&self) -> NaiveDateTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the clock on by `by`.
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

fn system_beijing_time() -> NaiveDateTime {
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    chrono::Utc::now().with_timezone(&beijing).naive_local()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_clock_stands_still_until_moved_and_its_clones_share_the_time() {
        let set = SetClock::at(chrono::NaiveDate::from_ymd_opt(2026, 3, 1).expect("date").into());
        let clock = Clock::from(set.clone());
        let before = clock.now();
        assert_eq!(clock.now(), before);
        set.advance(Duration::days(31));
        assert_eq!(clock.now(), before + Duration::days(31));
    }
}
