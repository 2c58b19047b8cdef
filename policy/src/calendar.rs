//! Working days: weekdays, less public holidays, plus the weekend days worked in exchange
//! (调休). Deadlines in the demand workflow are counted in working days over this calendar.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

/// A calendar whose holidays and make-up working days are data, published yearly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkingCalendar {
    holidays: BTreeSet<NaiveDate>,
    makeup_working_days: BTreeSet<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("{0} is listed both as a holiday and as a make-up working day")]
    Both(NaiveDate),
}

impl WorkingCalendar {
    pub fn new(
        holidays: impl IntoIterator<Item = NaiveDate>,
        makeup_working_days: impl IntoIterator<Item = NaiveDate>,
    ) -> Result<Self, CalendarError> {
        let holidays: BTreeSet<NaiveDate> = holidays.into_iter().collect();
        let makeup_working_days: BTreeSet<NaiveDate> = makeup_working_days.into_iter().collect();
        if let Some(day) = holidays.intersection(&makeup_working_days).next() {
            return Err(CalendarError::Both(*day));
        }
        Ok(WorkingCalendar { holidays, makeup_working_days })
    }

    pub fn is_working_day(&self, day: NaiveDate) -> bool {
        if self.makeup_working_days.contains(&day) {
            return true;
        }
        !self.holidays.contains(&day) && !matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
    }

    /// The `n`-th working day after `start` (`start` itself not counted). With `n = 0`,
    /// `start` itself.
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> NaiveDate {
        let mut day = start;
        let mut left = n;
        while left > 0 {
            day = day.succ_opt().expect("dates stay far from chrono's limits");
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        day
    }

    /// Working days in `(from, to]`; zero when `to` is not after `from`.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> u32 {
        from.iter_days().skip(1).take_while(|d| *d <= to).filter(|d| self.is_working_day(*d)).count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("date")
    }

    /// A national-day week: 1-7 October off, with Sunday 28 September and Saturday 11
    /// October worked in exchange (the shape of the published schedules).
    fn national_day() -> WorkingCalendar {
        WorkingCalendar::new((1..=7).map(|day| d(2025, 10, day)), [d(2025, 9, 28), d(2025, 10, 11)])
            .expect("valid calendar")
    }

    #[test]
    fn holidays_and_makeup_days_change_deadlines() {
        let calendar = national_day();
        assert!(calendar.is_working_day(d(2025, 9, 28)), "make-up Sunday");
        assert!(!calendar.is_working_day(d(2025, 10, 1)));
        assert!(!calendar.is_working_day(d(2025, 10, 12)), "ordinary Sunday");
        // Submitted on Tuesday 30 September: two working days later is Thursday 9 October.
        assert_eq!(calendar.add_working_days(d(2025, 9, 30), 2), d(2025, 10, 9));
        // Submitted on Friday 26 September: the make-up Sunday counts.
        assert_eq!(calendar.add_working_days(d(2025, 9, 26), 1), d(2025, 9, 28));
        assert_eq!(calendar.working_days_between(d(2025, 9, 30), d(2025, 10, 11)), 4);
        assert_eq!(calendar.working_days_between(d(2025, 10, 11), d(2025, 9, 30)), 0);
        assert_eq!(
            WorkingCalendar::new([d(2025, 10, 1)], [d(2025, 10, 1)]),
            Err(CalendarError::Both(d(2025, 10, 1)))
        );
    }

    proptest! {
        #[test]
        fn adding_then_counting_working_days_round_trips(offset in 0u32..800, n in 0u32..60) {
            let calendar = national_day();
            let start = d(2025, 1, 1) + chrono::Duration::days(i64::from(offset));
            let end = calendar.add_working_days(start, n);
            prop_assert_eq!(calendar.working_days_between(start, end), n);
            prop_assert!(n == 0 || calendar.is_working_day(end));
        }
    }
}
