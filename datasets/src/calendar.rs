//! The organisation's rhythm: the four office time zones (with their
//! daylight-saving rules), each person's working hours in local time, and
//! sampling of the moments people and schedules act.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc, Weekday,
};

use crate::rng::{Rng, chance, uniform};

/// Where a person works from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tz {
    Berlin,
    NewYork,
    SanFrancisco,
    Bangalore,
}

impl Tz {
    /// The UTC offset in minutes at instant `t`.
    pub(crate) fn offset_minutes(self, t: DateTime<Utc>) -> i64 {
        match self {
            Tz::Berlin => {
                if eu_summer(t) {
                    120
                } else {
                    60
                }
            }
            Tz::NewYork => {
                if us_summer(t) {
                    -240
                } else {
                    -300
                }
            }
            Tz::SanFrancisco => {
                if us_summer(t) {
                    -420
                } else {
                    -480
                }
            }
            Tz::Bangalore => 330,
        }
    }

    /// The local hour of day (fractional) at instant `t`.
    pub(crate) fn local_hour(self, t: DateTime<Utc>) -> f64 {
        let local = t + Duration::minutes(self.offset_minutes(t));
        f64::from(local.hour()) + f64::from(local.minute()) / 60.0
    }

    /// The instant of local `date` at fractional `hour` (may exceed 24).
    pub(crate) fn at(self, date: NaiveDate, hour: f64) -> DateTime<Utc> {
        let secs = (hour * 3600.0).round() as i64;
        let naive = Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN)) + Duration::seconds(secs);
        let first = naive - Duration::minutes(self.offset_minutes(naive));
        naive - Duration::minutes(self.offset_minutes(first))
    }
}

fn nth_sunday(year: i32, month: u32, n: u32) -> NaiveDate {
    let first = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or_default();
    let to_sunday = (7 - first.weekday().num_days_from_sunday()) % 7;
    first + Duration::days(i64::from(to_sunday + 7 * (n - 1)))
}

fn last_sunday(year: i32, month: u32) -> NaiveDate {
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }
    .unwrap_or_default();
    let last = next - Duration::days(1);
    last - Duration::days(i64::from(last.weekday().num_days_from_sunday()))
}

fn utc_at(date: NaiveDate, hour: u32) -> DateTime<Utc> {
    Utc.from_utc_datetime(
        &date.and_time(NaiveTime::from_hms_opt(hour, 0, 0).unwrap_or(NaiveTime::MIN)),
    )
}

/// EU summer time: last Sunday of March 01:00 UTC to last Sunday of October 01:00 UTC.
fn eu_summer(t: DateTime<Utc>) -> bool {
    let y = t.year();
    t >= utc_at(last_sunday(y, 3), 1) && t < utc_at(last_sunday(y, 10), 1)
}

/// US daylight time: second Sunday of March to first Sunday of November
/// (switch instants approximated at 07:00 / 06:00 UTC).
fn us_summer(t: DateTime<Utc>) -> bool {
    let y = t.year();
    t >= utc_at(nth_sunday(y, 3, 2), 7) && t < utc_at(nth_sunday(y, 11, 1), 6)
}

/// Saturday or Sunday.
pub(crate) fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Midnight UTC of `date`.
pub(crate) fn midnight(date: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

/// An instant on UTC `date` at a fractional hour.
pub(crate) fn utc(date: NaiveDate, hour: f64) -> DateTime<Utc> {
    midnight(date) + Duration::seconds((hour * 3600.0).round() as i64)
}

/// A person's working day in local hours, and how often they spill over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hours {
    pub(crate) start: f64,
    pub(crate) end: f64,
    /// Share of activity in the early evening after `end`.
    pub(crate) evening: f64,
}

/// A moment on local `date` inside the given working hours: flat through
/// the day, a dip at lunch, softer first and last hours, a little evening.
pub(crate) fn work_time(rng: &mut Rng, tz: Tz, date: NaiveDate, hours: Hours) -> DateTime<Utc> {
    if chance(rng, hours.evening) {
        let h = uniform(rng, hours.end, hours.end + 2.5);
        return tz.at(date, h);
    }
    let mut h = uniform(rng, hours.start, hours.end);
    for _ in 0..16 {
        let weight = if (12.0..13.0).contains(&h) {
            0.45
        } else if h < hours.start + 0.75 || h > hours.end - 0.75 {
            0.6
        } else {
            1.0
        };
        if chance(rng, weight) {
            break;
        }
        h = uniform(rng, hours.start, hours.end);
    }
    tz.at(date, h)
}

/// A moment deep in the local night (00:30–04:30).
pub(crate) fn night_time(rng: &mut Rng, tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    tz.at(date, uniform(rng, 0.5, 4.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daylight_saving_switches_on_the_right_days() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default();
        assert_eq!(last_sunday(2026, 10), d(2026, 10, 25));
        assert_eq!(nth_sunday(2026, 11, 1), d(2026, 11, 1));
        assert_eq!(nth_sunday(2026, 3, 2), d(2026, 3, 8));
        assert_eq!(Tz::Berlin.offset_minutes(utc(d(2026, 10, 5), 12.0)), 120);
        assert_eq!(Tz::Berlin.offset_minutes(utc(d(2026, 10, 26), 12.0)), 60);
        assert_eq!(Tz::NewYork.offset_minutes(utc(d(2026, 11, 2), 12.0)), -300);
    }

    #[test]
    fn local_times_round_trip() {
        let date = NaiveDate::from_ymd_opt(2026, 10, 6).unwrap_or_default();
        let t = Tz::SanFrancisco.at(date, 9.5);
        assert!((Tz::SanFrancisco.local_hour(t) - 9.5).abs() < 1e-9);
        assert_eq!(t, utc(date, 16.5));
    }
}
