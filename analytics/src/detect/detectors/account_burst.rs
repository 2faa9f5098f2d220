//! An account (person, bot, token) suddenly touching many more distinct
//! repositories within a few minutes than it ever did before: mass cloning
//! or pushing with a stolen or misused credential.
//!
//! Baseline / Cold start: per actor a sliding window of its recent
//! repository touches (authentication and code-change events naming a
//! repository) and, per active day, the most distinct repositories it
//! touched within one window, kept for `history_days`. A burst is compared
//! with that peak only once the burst is over, so it cannot raise its own
//! bar, and a burst that was reported stays out of the baseline until the
//! account has had `learn_reported_after` of them. An actor active on fewer than `min_active_days` days is only
//! learned: a bot that works one day a week (say, dependency updates every
//! Monday) is judged once it has that precedent.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use pipewatch_schema::{Category, Severity};

use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "account_burst";
/// Touches kept per actor window; a burst beyond it is already reported.
const MAX_WINDOW: usize = 512;
/// Touches between sweeps of idle actors.
const SWEEP_EVERY: u64 = 50_000;
/// Evidence events listed per finding.
const MAX_EVIDENCE: usize = 50;

/// Parameters of [`AccountBurst`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Actors never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Length of the sliding window, in minutes.
    pub window_minutes: u32,
    /// Fewest distinct repositories in one window worth reporting.
    pub min_repos: u32,
    /// How many times the actor's own peak a window must reach.
    pub ratio: f64,
    /// Distinct repositories in one window for `high` (with twice `ratio`).
    pub high_repos: u32,
    /// Days with activity an actor needs before it is judged.
    pub min_active_days: u32,
    /// Days of per-day peaks kept as the baseline.
    pub history_days: u32,
    /// Reported bursts an account needs before such bursts count as its
    /// habit; until then a reported burst is not the precedent that would
    /// hide the next one.
    pub learn_reported_after: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            window_minutes: 10,
            min_repos: 6,
            ratio: 3.0,
            high_repos: 12,
            min_active_days: 3,
            history_days: 28,
            learn_reported_after: 2,
        }
    }
}

impl DetectorConfig for Params {
    fn common(&self) -> CommonParams<'_> {
        CommonParams {
            enabled: self.enabled,
            allow: &self.allow,
        }
    }

    fn check(&self) -> Result<(), ParamError> {
        let err = |param, reason: &str| Err(ParamError::new(NAME, param, reason));
        if self.window_minutes == 0 {
            return err("window_minutes", "must be at least 1");
        }
        if self.min_repos < 2 {
            return err("min_repos", "must be at least 2");
        }
        if !(self.ratio.is_finite() && self.ratio > 1.0) {
            return err("ratio", "must be above 1");
        }
        if self.high_repos < self.min_repos {
            return err("high_repos", "must be at least min_repos");
        }
        if self.history_days == 0 {
            return err("history_days", "must be at least 1");
        }
        if self.learn_reported_after == 0 {
            return err("learn_reported_after", "must be at least 1");
        }
        if self.min_active_days > self.history_days {
            return err("min_active_days", "must not exceed history_days");
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(AccountBurst {
        params,
        actors: HashMap::new(),
        seen: 0,
    })
}

/// One repository touch.
#[derive(Debug, Clone)]
struct Touch {
    time: DateTime<Utc>,
    repo: String,
    event_id: String,
    action: String,
}

/// What is known about one actor.
#[derive(Debug, Default)]
struct ActorState {
    window: VecDeque<Touch>,
    /// Touches per repository in the window, so its distinct count is O(1).
    counts: HashMap<String, u32>,
    /// Peak distinct repositories of the burst in progress, and its day.
    episode_peak: u32,
    episode_day: Option<NaiveDate>,
    /// Distinct repositories at the last finding of this burst (0: none).
    reported: u32,
    /// Per active day, the peak distinct repositories in one window; oldest first.
    days: VecDeque<(NaiveDate, u32)>,
    /// Bursts of this actor that were reported.
    reported_bursts: u32,
}

impl ActorState {
    /// Folds a finished burst into the per-day peaks.
    fn close_episode(&mut self, keep_days: u32, learn_reported_after: u32) {
        let Some(day) = self.episode_day.take() else {
            return;
        };
        let mut episode_peak = self.episode_peak;
        if self.reported > 0 {
            self.reported_bursts += 1;
            if self.reported_bursts < learn_reported_after {
                // The day still counts as active, the burst not as precedent.
                episode_peak = 0;
            }
        }
        match self.days.back_mut() {
            Some((last, peak)) if *last == day => *peak = (*peak).max(episode_peak),
            _ => self.days.push_back((day, episode_peak)),
        }
        while self
            .days
            .front()
            .is_some_and(|(d, _)| (day - *d).num_days() >= i64::from(keep_days))
        {
            self.days.pop_front();
        }
        self.episode_peak = 0;
        self.reported = 0;
    }

    fn push(&mut self, touch: Touch) {
        *self.counts.entry(touch.repo.clone()).or_default() += 1;
        self.window.push_back(touch);
    }

    fn pop(&mut self) {
        let Some(touch) = self.window.pop_front() else {
            return;
        };
        if let Some(n) = self.counts.get_mut(&touch.repo) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&touch.repo);
            }
        }
    }

    fn distinct(&self) -> u32 {
        u32::try_from(self.counts.len()).unwrap_or(u32::MAX)
    }
}

/// Accounts touching far more repositories at once than they ever did.
#[derive(Debug)]
pub struct AccountBurst {
    params: Params,
    actors: HashMap<String, ActorState>,
    /// Touches seen, to sweep idle actors now and then.
    seen: u64,
}

impl Detector for AccountBurst {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::Auth, Category::CodeChange]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        let (Some(actor), Some(repo)) = (event.actor.as_deref(), event.repo.as_deref()) else {
            return;
        };
        let p = &self.params;
        let span = Duration::minutes(i64::from(p.window_minutes));
        let now = event.event_time;
        self.seen += 1;
        if self.seen.is_multiple_of(SWEEP_EVERY) {
            // Forget actors idle for longer than the baseline reaches back,
            // so one-off identities (per-branch CI tokens) do not pile up.
            let horizon = now - Duration::days(i64::from(p.history_days));
            self.actors
                .retain(|_, s| s.window.back().is_some_and(|t| t.time >= horizon));
        }
        if !self.actors.contains_key(actor) {
            self.actors.insert(actor.to_owned(), ActorState::default());
        }
        let Some(state) = self.actors.get_mut(actor) else {
            return;
        };
        if state
            .window
            .back()
            .is_some_and(|last| now - last.time > span)
        {
            state.close_episode(p.history_days, p.learn_reported_after);
        }
        while state.window.front().is_some_and(|t| now - t.time > span)
            || state.window.len() >= MAX_WINDOW
        {
            state.pop();
        }
        state.push(Touch {
            time: now,
            repo: repo.to_owned(),
            event_id: event.event_id.clone(),
            action: event.action.clone(),
        });
        let distinct = state.distinct();
        state.episode_day.get_or_insert(now.date_naive());
        if phase == Phase::Score
            && let Some(finding) = judge(p, actor, state, distinct, event)
        {
            state.reported = distinct;
            out.push(finding);
        }
        state.episode_peak = state.episode_peak.max(distinct);
    }
}

fn judge(
    p: &Params,
    actor: &str,
    state: &ActorState,
    distinct: u32,
    event: &EventRow,
) -> Option<Finding> {
    let active_days = u32::try_from(state.days.len()).unwrap_or(u32::MAX);
    if active_days < p.min_active_days || distinct < p.min_repos {
        return None;
    }
    let peak = state.days.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let ratio = f64::from(distinct) / f64::from(peak);
    if ratio < p.ratio {
        return None;
    }
    // Report the crossing, then again only when the burst has doubled.
    if state.reported > 0 && distinct < state.reported.saturating_mul(2) {
        return None;
    }
    let severity = if distinct >= p.high_repos && ratio >= 2.0 * p.ratio {
        Severity::High
    } else {
        Severity::Medium
    };
    // The newest touch of each repository, the triggering event first.
    let mut listed = HashSet::new();
    let mut evidence = Vec::new();
    let mut actions = Vec::new();
    for touch in state.window.iter().rev() {
        if listed.insert(touch.repo.as_str()) && evidence.len() < MAX_EVIDENCE {
            evidence.push(touch.event_id.clone());
        }
        if !actions.contains(&touch.action.as_str()) && actions.len() < 4 {
            actions.push(touch.action.as_str());
        }
    }
    let first = state.window.front().map_or(event.event_time, |t| t.time);
    let minutes = ((event.event_time - first).num_seconds() as f64 / 60.0).max(0.1);
    Some(Finding {
        scope: Default::default(),
        detector: NAME,
        severity,
        score: ratio,
        event_time: event.event_time,
        entity: actor.to_owned(),
        title: format!("{actor} touched {distinct} repositories within {minutes:.1} minutes"),
        explanation: Explanation {
            expected: format!(
                "{actor} touched at most {peak} distinct {} within {} minutes on any of its {active_days} active days",
                if peak == 1 {
                    "repository"
                } else {
                    "repositories"
                },
                p.window_minutes
            ),
            observed: format!(
                "{distinct} distinct repositories within {minutes:.1} minutes ({}), the latest {}",
                actions.join(", "),
                event.repo_or_dash()
            ),
            unusual: format!("{ratio:.1} times its own peak"),
        },
        evidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn touch(id: &str, actor: &str, repo: &str, time: DateTime<Utc>) -> EventRow {
        let mut row = EventRow::new(id, time, Category::Auth, "git.clone");
        row.actor = Some(actor.into());
        row.repo = Some(repo.into());
        row
    }

    fn day(d: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, d, h, m, s).unwrap()
    }

    /// `bot` clones one repository at a time on five days.
    fn learned() -> Box<dyn Detector> {
        let mut detector = build(Params::default());
        let mut sink = Vec::new();
        for d in 5..10 {
            for k in 0..3 {
                let row = touch(
                    &format!("h{d}{k}"),
                    "bot",
                    &format!("acme/r{k}"),
                    day(d, 10 + k, 0, 0),
                );
                detector.observe(&row, Phase::Learn, &mut sink);
            }
        }
        detector
    }

    #[test]
    fn a_clone_burst_is_reported_with_its_events() {
        let mut detector = learned();
        let mut out = Vec::new();
        for k in 0..14u32 {
            let time = day(12, 21, 0, 0) + Duration::seconds(i64::from(8 * k));
            let row = touch(&format!("b{k}"), "bot", &format!("acme/s{k}"), time);
            detector.observe(&row, Phase::Score, &mut out);
        }
        // Crossing at 6 repositories, then again at 12.
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].severity, Severity::Medium);
        assert_eq!(out[0].evidence.first().map(String::as_str), Some("b5"));
        assert_eq!(out[0].evidence.len(), 6);
        assert_eq!(out[1].severity, Severity::High);
        assert_eq!(out[1].entity, "bot");
    }

    #[test]
    fn a_reported_burst_does_not_hide_the_next_one() {
        let mut detector = learned();
        let mut out = Vec::new();
        for (n, d) in [12u32, 14, 16].iter().enumerate() {
            for k in 0..8u32 {
                let time = day(*d, 21, 0, 0) + Duration::seconds(i64::from(8 * k));
                let row = touch(&format!("b{d}-{k}"), "bot", &format!("acme/s{k}"), time);
                detector.observe(&row, Phase::Score, &mut out);
            }
            let reported = out
                .iter()
                .filter(|f| f.evidence[0].starts_with(&format!("b{d}-")))
                .count();
            // Twice reported; after that it is the account's habit.
            assert_eq!(reported, usize::from(n < 2), "burst {n}: {out:?}");
        }
    }

    #[test]
    fn a_weekly_sweep_is_learned_on_first_sight_and_then_has_precedent() {
        let mut detector = build(Params::default());
        let mut out = Vec::new();
        let sweep = |detector: &mut Box<dyn Detector>, d: u32, out: &mut Vec<Finding>| {
            for k in 0..12u32 {
                let row = touch(
                    &format!("w{d}-{k}"),
                    "updater",
                    &format!("acme/r{k}"),
                    day(d, 6, k, 0),
                );
                detector.observe(&row, Phase::Score, out);
            }
        };
        sweep(&mut detector, 5, &mut out);
        for d in 6..9 {
            let row = touch(&format!("s{d}"), "updater", "acme/r0", day(d, 9, 0, 0));
            detector.observe(&row, Phase::Score, &mut out);
        }
        sweep(&mut detector, 12, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn ordinary_activity_is_quiet() {
        let mut detector = learned();
        let mut out = Vec::new();
        for k in 0..3u32 {
            let row = touch(
                &format!("o{k}"),
                "bot",
                &format!("acme/r{k}"),
                day(12, 10, k, 0),
            );
            detector.observe(&row, Phase::Score, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn unusable_parameters_are_refused() {
        assert!(
            Params {
                window_minutes: 0,
                ..Params::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Params {
                ratio: 0.5,
                ..Params::default()
            }
            .check()
            .is_err()
        );
        assert!(Params::default().check().is_ok());
    }
}
