//! Robust statistics and time profiles shared by detectors: median and MAD,
//! hour-of-week profiles, sliding time windows and rate surprise. Small and
//! exact; anything needing a model lives with its detector.

use std::collections::VecDeque;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

/// The median of `values` (sorted in place); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// Median and median absolute deviation of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RobustBaseline {
    pub median: f64,
    /// Median absolute deviation, unscaled.
    pub mad: f64,
    /// Sample size.
    pub n: usize,
}

impl RobustBaseline {
    /// The baseline of `values`; `None` when empty.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted = values.to_vec();
        let median = median(&mut sorted)?;
        let mut deviations: Vec<f64> = sorted.iter().map(|v| (v - median).abs()).collect();
        let mad = self::median(&mut deviations).unwrap_or(0.0);
        Some(RobustBaseline {
            median,
            mad,
            n: values.len(),
        })
    }

    /// Robust z-score: distance from the median in units of 1.4826·MAD (the
    /// standard deviation for normal data). `floor` keeps a constant
    /// history (MAD 0) from turning a tiny change into an infinite score.
    pub fn z(&self, value: f64, floor: f64) -> f64 {
        let scale = (1.4826 * self.mad).max(floor);
        (value - self.median) / scale
    }
}

/// Hour of the week, 0 = Monday 00:00–00:59 UTC.
pub fn hour_of_week(time: DateTime<Utc>) -> usize {
    time.weekday().num_days_from_monday() as usize * 24 + time.hour() as usize
}

/// How often something happened in each hour of the week and of the day.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeProfile {
    week: [u32; 168],
    day: [u32; 24],
    total: u32,
}

impl Default for TimeProfile {
    fn default() -> Self {
        TimeProfile {
            week: [0; 168],
            day: [0; 24],
            total: 0,
        }
    }
}

impl TimeProfile {
    /// Counts one occurrence at `time`.
    pub fn observe(&mut self, time: DateTime<Utc>) {
        self.week[hour_of_week(time)] += 1;
        self.day[time.hour() as usize] += 1;
        self.total += 1;
    }

    /// Occurrences counted so far.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Occurrences within `radius` hours of `time`'s hour of the day (any day).
    pub fn near_hour_of_day(&self, time: DateTime<Utc>, radius: usize) -> u32 {
        let hour = time.hour() as usize;
        (0..=2 * radius)
            .map(|offset| self.day[(hour + 24 + offset - radius) % 24])
            .sum()
    }

    /// Occurrences within `radius` hours of `time`'s hour of the week.
    pub fn near_hour_of_week(&self, time: DateTime<Utc>, radius: usize) -> u32 {
        let hour = hour_of_week(time);
        (0..=2 * radius)
            .map(|offset| self.week[(hour + 168 + offset - radius) % 168])
            .sum()
    }

    /// The hours of the day (UTC) holding most of the history, as a short
    /// range for explanations, e.g. `07–17 UTC`.
    pub fn usual_hours(&self) -> String {
        if self.total == 0 {
            return "no history".into();
        }
        let hours: Vec<usize> = (0..24).filter(|h| self.day[*h] > 0).collect();
        match (hours.first(), hours.last()) {
            (Some(first), Some(last)) if hours.len() == last - first + 1 => {
                format!("{first:02}–{last:02} UTC")
            }
            _ => format!(
                "{} UTC",
                hours
                    .iter()
                    .map(|h| format!("{h:02}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Items seen within the last `span` of event time, oldest first.
#[derive(Debug, Clone)]
pub struct TimeWindow<T> {
    span: Duration,
    items: VecDeque<(DateTime<Utc>, T)>,
}

impl<T> TimeWindow<T> {
    /// An empty window covering `span`.
    pub fn new(span: Duration) -> Self {
        TimeWindow {
            span,
            items: VecDeque::new(),
        }
    }

    /// Adds an item at `time` and drops the items older than `time − span`.
    pub fn push(&mut self, time: DateTime<Utc>, item: T) {
        self.expire(time);
        self.items.push_back((time, item));
    }

    /// Drops items older than `now − span`.
    pub fn expire(&mut self, now: DateTime<Utc>) {
        while self
            .items
            .front()
            .is_some_and(|(t, _)| *t < now - self.span)
        {
            self.items.pop_front();
        }
    }

    /// The items in the window, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &(DateTime<Utc>, T)> {
        self.items.iter()
    }

    /// Items in the window.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the window holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Empties the window.
    pub fn clear(&mut self) {
        self.items.clear();
    }
}

/// Probability of seeing at least `k` successes in `n` trials of rate `p`
/// (the upper binomial tail), for "how surprising is this many failures".
pub fn binomial_upper_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
    let ln_choose = |n: u64, i: u64| ln_factorial(n) - ln_factorial(i) - ln_factorial(n - i);
    (k..=n)
        .map(|i| (ln_choose(n, i) + i as f64 * ln_p + (n - i) as f64 * ln_q).exp())
        .sum::<f64>()
        .min(1.0)
}

fn ln_factorial(n: u64) -> f64 {
    (2..=n).map(|i| (i as f64).ln()).sum()
}

/// Probability of at least `k` events when `mean` are expected (upper
/// Poisson tail), for count spikes against a learned rate. Summed upward
/// from `k` so tiny tails stay exact instead of cancelling to zero.
pub fn poisson_upper_tail(k: u64, mean: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    let mean = mean.max(1e-9);
    let ln_term = |i: u64| i as f64 * mean.ln() - mean - ln_factorial(i);
    let mut total = 0.0;
    let mut i = k;
    loop {
        let term = ln_term(i).exp();
        total += term;
        // Past the mode terms only shrink; stop once they no longer count.
        if (i as f64 > mean && term < total * 1e-12) || i > k + 10_000 {
            break;
        }
        i += 1;
    }
    total.min(1.0)
}

/// A probability given as its `log10`, readable even below `f64`'s range.
pub fn format_log10_probability(log10_p: f64) -> String {
    if log10_p > -300.0 {
        format!("{:.1e}", 10f64.powf(log10_p))
    } else {
        format!("10^{log10_p:.0}")
    }
}

/// `log10` of the upper Poisson tail P(X >= k) for mean `mean`, exact far
/// into the tail where the plain sum underflows: the score keeps growing
/// with the count, so an alert follows its strongest finding.
pub fn log10_poisson_upper_tail(k: u64, mean: f64) -> f64 {
    let mean = mean.max(1e-9);
    if k == 0 {
        return 0.0;
    }
    if (k as f64) <= mean + 1.0 {
        return poisson_upper_tail(k, mean).max(1e-300).log10();
    }
    let ln_k_factorial: f64 = (2..=k).map(|i| (i as f64).ln()).sum();
    let ln_point = k as f64 * mean.ln() - mean - ln_k_factorial;
    // P(X >= k) = P(X = k) · (1 + m/(k+1) + m²/((k+1)(k+2)) + …), converging for k > m.
    let (mut term, mut sum, mut i) = (1.0_f64, 1.0_f64, 1u64);
    while term > 1e-12 && i < 10_000 {
        term *= mean / (k + i) as f64;
        sum += term;
        i += 1;
    }
    (ln_point + sum.ln()) / std::f64::consts::LN_10
}

/// Maps a tail probability to the detectors' shared severity scale, so
/// "how unusual" means the same thing across detectors.
pub fn severity_for_tail(p: f64) -> pipewatch_schema::Severity {
    use pipewatch_schema::Severity;
    if p < 1e-6 {
        Severity::High
    } else if p < 1e-3 {
        Severity::Medium
    } else if p < 1e-2 {
        Severity::Low
    } else {
        Severity::Info
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn robust_z_ignores_one_outlier_in_the_history() {
        let baseline = RobustBaseline::of(&[10.0, 11.0, 9.0, 10.0, 12.0, 500.0]).expect("baseline");
        assert_eq!(baseline.median, 10.5);
        assert!(baseline.z(11.0, 0.1).abs() < 1.0);
        assert!(baseline.z(100.0, 0.1) > 20.0);
    }

    #[test]
    fn a_constant_history_still_gives_a_finite_score() {
        let baseline = RobustBaseline::of(&[5.0; 10]).expect("baseline");
        assert_eq!(baseline.mad, 0.0);
        assert_eq!(baseline.z(6.0, 0.5), 2.0);
    }

    #[test]
    fn profiles_wrap_around_midnight_and_the_week() {
        let mut profile = TimeProfile::default();
        let sunday_late = Utc
            .with_ymd_and_hms(2026, 10, 11, 23, 30, 0)
            .single()
            .expect("valid time");
        profile.observe(sunday_late);
        let monday_early = Utc
            .with_ymd_and_hms(2026, 10, 12, 0, 10, 0)
            .single()
            .expect("valid time");
        assert_eq!(profile.near_hour_of_day(monday_early, 1), 1);
        assert_eq!(profile.near_hour_of_week(monday_early, 1), 1);
        assert_eq!(
            profile.near_hour_of_week(monday_early + Duration::hours(3), 1),
            0
        );
    }

    #[test]
    fn windows_forget_what_is_older_than_their_span() {
        let start = Utc
            .with_ymd_and_hms(2026, 10, 12, 0, 0, 0)
            .single()
            .expect("valid time");
        let mut window = TimeWindow::new(Duration::minutes(10));
        window.push(start, 1);
        window.push(start + Duration::minutes(5), 2);
        window.push(start + Duration::minutes(12), 3);
        let kept: Vec<i32> = window.iter().map(|(_, v)| *v).collect();
        assert_eq!(kept, vec![2, 3]);
    }

    #[test]
    fn tails_match_known_values() {
        assert!((binomial_upper_tail(1, 1, 0.3) - 0.3).abs() < 1e-9);
        assert!((binomial_upper_tail(2, 2, 0.5) - 0.25).abs() < 1e-9);
        assert!((poisson_upper_tail(1, 1.0) - (1.0 - (-1.0f64).exp())).abs() < 1e-9);
        assert!(poisson_upper_tail(20, 1.0) < 1e-12);
        assert!(
            poisson_upper_tail(40, 0.5) > 0.0,
            "tiny tails do not cancel to zero"
        );
        assert!((poisson_upper_tail(3, 2.0) - 0.323_323_583_8).abs() < 1e-9);
    }
}
