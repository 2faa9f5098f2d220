//! Pipeline runs started at a time of day when the person behind them never
//! works: a run whose start hour lies hours away from every earlier run of
//! that actor, and that the actor has no habit of running at that hour.
//!
//! Baseline / Cold start: per actor an hour-of-day/hour-of-week profile of
//! the runs they started (judged by hour of day: a few weeks of history are
//! too thin per hour of the week), per actor+workflow an hour-of-day count,
//! and per workflow (repository + name) a run count. Scheduled runs are neither
//! judged nor learned (their hour is the cron's, not the actor's). An actor
//! with fewer than `min_history` runs or runs on fewer than
//! `min_active_days` days is only learned; a run of a workflow never seen
//! before, or started by a bot or service, is at most `low`.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use pipewatch_schema::{ActorKind, Category, Severity};

use super::unexpected_trigger::{RecentKeys, object_key};
use crate::detect::stats::TimeProfile;
use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "off_hours_run";

/// Parameters of [`OffHoursRun`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Actors never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Runs an actor must have started before their hours are judged.
    pub min_history: u32,
    /// Distinct days with runs an actor needs before their hours are
    /// judged: one push starts several workflows at once, so run counts
    /// alone overstate how much of a working day has been seen.
    pub min_active_days: u32,
    /// Hours either side of a run's hour of day that count as "near" an
    /// earlier run; a run is a candidate only when none is that near.
    pub radius_hours: u32,
    /// Hours from the nearest earlier run (time of day) for `medium`.
    pub medium_gap_hours: u32,
    /// Hours from the nearest earlier run (time of day) for `high`.
    pub high_gap_hours: u32,
    /// An earlier run of the same workflow by the same actor within this
    /// many hours of day makes the run routine (night duty, release trains).
    pub precedent_radius_hours: u32,
    /// Earlier runs (any actor) a workflow needs before an off-hours run
    /// of it is more than `low`: a brand-new workflow has no routine yet.
    pub min_workflow_runs: u32,
    /// How long a run's later lifecycle rows are recognised as the same run.
    pub dedupe_hours: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_history: 10,
            min_active_days: 5,
            radius_hours: 2,
            medium_gap_hours: 5,
            high_gap_hours: 7,
            precedent_radius_hours: 3,
            min_workflow_runs: 1,
            dedupe_hours: 24,
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
        if self.min_history == 0 {
            return err("min_history", "must be at least 1");
        }
        if self.min_active_days == 0 {
            return err("min_active_days", "must be at least 1");
        }
        if self.radius_hours >= 12 {
            return err("radius_hours", "must be below 12 (half a day)");
        }
        if self.medium_gap_hours <= self.radius_hours || self.medium_gap_hours > 12 {
            return err(
                "medium_gap_hours",
                "must be above radius_hours and at most 12",
            );
        }
        if self.high_gap_hours < self.medium_gap_hours || self.high_gap_hours > 12 {
            return err(
                "high_gap_hours",
                "must be at least medium_gap_hours and at most 12",
            );
        }
        if self.precedent_radius_hours >= 12 {
            return err("precedent_radius_hours", "must be below 12 (half a day)");
        }
        if self.dedupe_hours == 0 {
            return err("dedupe_hours", "must be at least 1");
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(OffHoursRun {
        seen: RecentKeys::new(Duration::hours(i64::from(params.dedupe_hours)), 200_000),
        params,
        actors: HashMap::new(),
        actor_workflows: HashMap::new(),
        workflows: HashMap::new(),
    })
}

/// Pipeline runs at hours unusual for the actor who started them.
#[derive(Debug)]
pub struct OffHoursRun {
    params: Params,
    seen: RecentKeys,
    actors: HashMap<String, ActorHours>,
    /// Keyed by (actor, repository, workflow).
    actor_workflows: HashMap<(String, String, String), DayHours>,
    /// Runs per (repository, workflow), any actor.
    workflows: HashMap<(String, String), u32>,
}

impl Detector for OffHoursRun {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::PipelineRun]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        let Some(actor) = event.actor.as_deref() else {
            return;
        };
        // The hour of a scheduled run is the cron's, not the person's who
        // last edited the schedule.
        if event.cicd_pipeline_trigger.as_deref() == Some("schedule") {
            return;
        }
        if !self
            .seen
            .first_sight(event.event_time, object_key(event), &event.event_id)
        {
            return;
        }
        let repo = event.repo_or_dash().to_owned();
        let workflow = event
            .cicd_pipeline_name
            .clone()
            .unwrap_or_else(|| "pipeline".into());
        let workflow_key = (repo, workflow);
        let aw_key = (
            actor.to_owned(),
            workflow_key.0.clone(),
            workflow_key.1.clone(),
        );
        if phase == Phase::Score
            && let Some(finding) = self.judge(event, actor, &workflow_key, &aw_key)
        {
            out.push(finding);
        }
        self.actors
            .entry(actor.to_owned())
            .or_default()
            .observe(event.event_time);
        self.actor_workflows
            .entry(aw_key)
            .or_default()
            .observe(event.event_time);
        *self.workflows.entry(workflow_key).or_default() += 1;
    }
}

impl OffHoursRun {
    fn judge(
        &self,
        event: &EventRow,
        actor: &str,
        workflow: &(String, String),
        aw_key: &(String, String, String),
    ) -> Option<Finding> {
        let p = &self.params;
        let hours = self.actors.get(actor)?;
        let (profile, days) = (&hours.profile, hours.days);
        let n = profile.total();
        if n < p.min_history || days < p.min_active_days {
            return None;
        }
        let time = event.event_time;
        let gap = hours_to_nearest(profile, time)?;
        if gap <= p.radius_hours {
            return None;
        }
        let own = self.actor_workflows.get(aw_key);
        if own.is_some_and(|w| w.near(time, p.precedent_radius_hours) > 0) {
            return None;
        }
        let workflow_runs = self.workflows.get(workflow).copied().unwrap_or(0);
        let mut severity = if gap >= p.high_gap_hours {
            Severity::High
        } else if gap >= p.medium_gap_hours {
            Severity::Medium
        } else {
            Severity::Low
        };
        // A bot's timing follows whatever triggers it, and a brand-new
        // workflow has no routine yet: both stay weak signals.
        let automation = matches!(event.actor_kind, Some(ActorKind::Bot | ActorKind::Service));
        let new_workflow = workflow_runs < p.min_workflow_runs;
        if automation || new_workflow {
            severity = severity.min(Severity::Low);
        }
        let trigger = event
            .cicd_pipeline_trigger
            .as_deref()
            .unwrap_or("unknown trigger");
        let at = format!("{:02}:{:02} UTC", time.hour(), time.minute());
        let own_runs = own.map_or(0, DayHours::total);
        let mut unusual = format!(
            "{gap} h from the nearest time of day any of their {n} runs started; none within ±{} h",
            p.radius_hours
        );
        if automation {
            unusual.push_str("; kept low because the actor is automation");
        } else if new_workflow {
            unusual.push_str("; kept low because the workflow has no earlier runs");
        }
        Some(Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score: f64::from(gap) + (f64::from(n)).log10(),
            event_time: time,
            entity: actor.to_owned(),
            title: format!(
                "{actor} started {} of {} at {at}, {gap} h outside their usual hours",
                workflow.1, workflow.0
            ),
            explanation: Explanation {
                expected: format!(
                    "{actor}'s {n} earlier runs on {days} days started at {} ({own_runs} of them runs of {} of {})",
                    profile.usual_hours(),
                    workflow.1,
                    workflow.0
                ),
                observed: format!(
                    "{actor} started {} of {} ({trigger}, branch {}) at {at}",
                    workflow.1,
                    workflow.0,
                    event.vcs_ref_head_name.as_deref().unwrap_or("-")
                ),
                unusual,
            },
            evidence: vec![event.event_id.clone()],
        })
    }
}

/// When one actor starts runs.
#[derive(Debug, Default)]
struct ActorHours {
    profile: TimeProfile,
    /// Distinct days with runs; events arrive in time order, so counting
    /// day changes is enough.
    days: u32,
    last_day: Option<NaiveDate>,
}

impl ActorHours {
    fn observe(&mut self, time: DateTime<Utc>) {
        self.profile.observe(time);
        let day = time.date_naive();
        if self.last_day != Some(day) {
            self.last_day = Some(day);
            self.days += 1;
        }
    }
}

/// Runs per hour of day (UTC): small enough to keep per actor+workflow.
#[derive(Debug, Default)]
struct DayHours([u32; 24]);

impl DayHours {
    fn observe(&mut self, time: DateTime<Utc>) {
        self.0[time.hour() as usize] += 1;
    }

    fn total(&self) -> u32 {
        self.0.iter().sum()
    }

    /// Runs within `radius` (below 12) hours of `time`'s hour of day.
    fn near(&self, time: DateTime<Utc>, radius: u32) -> u32 {
        let (hour, radius) = (i64::from(time.hour()), i64::from(radius));
        (-radius..=radius)
            .map(|d| self.0[usize::try_from((hour + d).rem_euclid(24)).unwrap_or(0)])
            .sum()
    }
}

/// Circular distance in hours of day from `time` to the nearest hour in
/// which the profile has a run; `None` for an empty profile.
fn hours_to_nearest(profile: &TimeProfile, time: DateTime<Utc>) -> Option<u32> {
    (0..=12u32).find(|radius| profile.near_hour_of_day(time, *radius as usize) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(id: &str, actor: &str, workflow: &str, time: DateTime<Utc>, trigger: &str) -> EventRow {
        let mut row = EventRow::new(id, time, Category::PipelineRun, "workflow_run.requested");
        row.source = "github_webhook".into();
        row.source_event_id = format!("{id}:requested");
        row.actor = Some(actor.into());
        row.actor_kind = Some(ActorKind::User);
        row.repo = Some("acme/shop".into());
        row.cicd_pipeline_name = Some(workflow.into());
        row.cicd_pipeline_run_id = Some(id.into());
        row.cicd_pipeline_trigger = Some(trigger.into());
        row
    }

    fn day(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, d, h, m, 0).unwrap()
    }

    /// Twelve daytime runs (13:00–18:00 UTC) by `dev` over a week.
    fn learned() -> Box<dyn Detector> {
        let mut detector = build(Params::default());
        let mut sink = Vec::new();
        for i in 0..12u32 {
            let row = run(
                &format!("r{i}"),
                "dev",
                "Deploy",
                day(5 + i / 2, 13 + i % 6, 10),
                "push",
            );
            detector.observe(&row, Phase::Learn, &mut sink);
        }
        detector
    }

    #[test]
    fn a_dispatch_far_from_the_actors_hours_is_reported_once() {
        let mut detector = learned();
        let mut out = Vec::new();
        let night = run("x1", "dev", "Deploy", day(13, 6, 22), "workflow_dispatch");
        detector.observe(&night, Phase::Score, &mut out);
        let mut later = night.clone();
        later.event_id = "x1-completed".into();
        later.source_event_id = "x1:completed".into();
        detector.observe(&later, Phase::Score, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].severity, Severity::High);
        assert_eq!(out[0].entity, "dev");
        assert_eq!(out[0].evidence, vec!["x1".to_owned()]);
        assert!(
            out[0].explanation.unusual.contains("7 h"),
            "{:?}",
            out[0].explanation
        );
    }

    #[test]
    fn runs_near_the_usual_hours_and_scheduled_runs_are_not_reported() {
        let mut detector = learned();
        let mut out = Vec::new();
        detector.observe(
            &run("y1", "dev", "Deploy", day(13, 19, 40), "push"),
            Phase::Score,
            &mut out,
        );
        detector.observe(
            &run("y2", "dev", "Deploy", day(13, 3, 0), "schedule"),
            Phase::Score,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn cold_start_actor_and_routine_night_duty_are_not_reported() {
        let mut detector = learned();
        let mut out = Vec::new();
        // A newcomer with no history.
        detector.observe(
            &run("n1", "newbie", "Deploy", day(13, 3, 0), "push"),
            Phase::Score,
            &mut out,
        );
        assert!(out.is_empty());
        // A first run of a brand-new workflow at night is at most low...
        detector.observe(
            &run(
                "m1",
                "dev",
                "Maintenance",
                day(13, 6, 0),
                "workflow_dispatch",
            ),
            Phase::Score,
            &mut out,
        );
        assert!(out.iter().all(|f| f.severity <= Severity::Low), "{out:?}");
        out.clear();
        // ...and repeating it at about that hour is that person's routine.
        detector.observe(
            &run(
                "m2",
                "dev",
                "Maintenance",
                day(14, 7, 30),
                "workflow_dispatch",
            ),
            Phase::Score,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn many_runs_on_few_days_are_not_yet_a_working_day() {
        let mut detector = build(Params::default());
        let mut out = Vec::new();
        for i in 0..12u32 {
            let row = run(
                &format!("f{i}"),
                "fresh",
                "CI",
                day(5 + i / 6, 12 + i % 4, 0),
                "push",
            );
            detector.observe(&row, Phase::Score, &mut out);
        }
        detector.observe(
            &run("f-night", "fresh", "CI", day(7, 21, 0), "pull_request"),
            Phase::Score,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn unusable_parameters_are_refused() {
        let bad = Params {
            radius_hours: 6,
            medium_gap_hours: 5,
            ..Params::default()
        };
        assert!(bad.check().is_err());
        let bad = Params {
            min_history: 0,
            ..Params::default()
        };
        assert!(bad.check().is_err());
        assert!(Params::default().check().is_ok());
    }
}
