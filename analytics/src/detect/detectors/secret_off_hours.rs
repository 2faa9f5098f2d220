//! Secret reads at an hour far from the reader's usual day: a person who
//! works 08–16 UTC reading production secrets at 00:16, or a scheduled
//! job's credential used at a new hour.
//!
//! Baseline / Cold start: hour-of-day profiles (one count per clock hour
//! of activity, with the circular mean "middle of the day") per actor from
//! its secret reads and, for people, per client address from everything
//! they do there (pushes, logins, configuration changes, reads), because
//! people read secrets too rarely for a profile of reads alone. Activity
//! joins a profile `settle_minutes` after it happened, so a session's own
//! login is no precedent for its reads. A profile with fewer than
//! `min_history` active hours is cold and judges nothing; automation
//! (bots, services) is judged only when it keeps a schedule
//! (`automation_min_concentration`) and is at most `low`, its hours being
//! the scheduler's or the pushers'.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Timelike, Utc};
use pipewatch_schema::{ActorKind, Category, Severity};

use crate::detect::stats::TimeProfile;
use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "secret_off_hours";

/// Parameters of [`SecretOffHours`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Actors never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Active clock hours a profile needs before it judges anything.
    pub min_history: u32,
    /// Hours between a read and the middle of the reader's day for `medium`.
    pub min_distance_hours: f64,
    /// Hours between a read and the middle of the reader's day for `high`.
    pub high_distance_hours: f64,
    /// A read within this many hours (of day) of earlier activity is routine.
    pub near_hours: u32,
    /// Concentration (0..1, length of the mean hour vector) a profile needs
    /// to have a "day" at all; round-the-clock readers are not judged.
    pub min_concentration: f64,
    /// Concentration automation (bots, services) needs to be judged: only
    /// credentials that keep a schedule have hours that can be broken.
    pub automation_min_concentration: f64,
    /// Minutes before an event joins its profile.
    pub settle_minutes: u32,
    /// Profiles kept (actors plus addresses); new ones beyond are not learned.
    pub max_profiles: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_history: 5,
            min_distance_hours: 7.5,
            high_distance_hours: 9.5,
            near_hours: 1,
            min_concentration: 0.3,
            automation_min_concentration: 0.8,
            settle_minutes: 60,
            max_profiles: 200_000,
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
        if !(self.min_distance_hours > 0.0 && self.min_distance_hours <= 12.0) {
            return err("min_distance_hours", "must be within 0..12 (half a day)");
        }
        if !(self.high_distance_hours >= self.min_distance_hours
            && self.high_distance_hours <= 12.0)
        {
            return err(
                "high_distance_hours",
                "must be within min_distance_hours..12",
            );
        }
        if self.near_hours >= 12 {
            return err("near_hours", "must be below 12");
        }
        if !(0.0..1.0).contains(&self.min_concentration) {
            return err("min_concentration", "must be within 0..1");
        }
        if !(0.0..1.0).contains(&self.automation_min_concentration) {
            return err("automation_min_concentration", "must be within 0..1");
        }
        if self.max_profiles == 0 {
            return err("max_profiles", "must be at least 1");
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(SecretOffHours {
        settle: Duration::minutes(i64::from(params.settle_minutes)),
        params,
        profiles: HashMap::new(),
    })
}

/// Events waiting to join a profile, bounded per profile.
const MAX_PENDING: usize = 256;

/// When someone (or something) is active, one count per clock hour.
#[derive(Debug, Default)]
struct Profile {
    hours: TimeProfile,
    /// Sum of unit vectors of the hours of day, for the circular mean.
    x: f64,
    y: f64,
    first: Option<DateTime<Utc>>,
    last_slot: Option<i64>,
    pending: VecDeque<DateTime<Utc>>,
}

impl Profile {
    /// Folds in the pending activity older than `settle`.
    fn settle(&mut self, now: DateTime<Utc>, settle: Duration) {
        while let Some(t) = self.pending.front().copied() {
            if now - t < settle {
                break;
            }
            self.pending.pop_front();
            let slot = t.timestamp().div_euclid(3600);
            if self.last_slot == Some(slot) {
                continue;
            }
            self.last_slot = Some(slot);
            self.hours.observe(t);
            let angle = hour_of_day(t) / 24.0 * std::f64::consts::TAU;
            self.x += angle.cos();
            self.y += angle.sin();
            self.first.get_or_insert(t);
        }
    }

    fn add(&mut self, at: DateTime<Utc>) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(at);
    }

    /// The middle of the day (hour, UTC) and how concentrated the hours are.
    fn centre(&self) -> (f64, f64) {
        let n = f64::from(self.hours.total().max(1));
        let hour =
            self.y.atan2(self.x).rem_euclid(std::f64::consts::TAU) / std::f64::consts::TAU * 24.0;
        (hour, self.x.hypot(self.y) / n)
    }
}

/// Which profile an activity belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Actor(String),
    Address(String),
}

/// Secret reads outside the hours the reader is usually active.
#[derive(Debug)]
pub struct SecretOffHours {
    params: Params,
    settle: Duration,
    profiles: HashMap<Key, Profile>,
}

impl SecretOffHours {
    fn record(&mut self, key: Key, at: DateTime<Utc>) {
        if !self.profiles.contains_key(&key) && self.profiles.len() >= self.params.max_profiles {
            return;
        }
        let settle = self.settle;
        let profile = self.profiles.entry(key).or_default();
        profile.settle(at, settle);
        profile.add(at);
    }

    /// The profile a read is judged against, settled up to `now`.
    fn baseline(&mut self, keys: &[Key], now: DateTime<Utc>) -> Option<(Key, &Profile)> {
        let settle = self.settle;
        for key in keys {
            if let Some(profile) = self.profiles.get_mut(key) {
                profile.settle(now, settle);
            }
        }
        let key = keys.iter().find(|k| {
            self.profiles
                .get(*k)
                .is_some_and(|p| p.hours.total() >= self.params.min_history)
        })?;
        self.profiles.get(key).map(|p| (key.clone(), p))
    }
}

impl Detector for SecretOffHours {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[
            Category::SecretAccess,
            Category::CodeChange,
            Category::ConfigChange,
            Category::Auth,
        ]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        // Vault's pending request half: the response is the same moment.
        if event.outcome == "pending" {
            return;
        }
        let person = event.actor_kind == Some(ActorKind::User);
        let address = event
            .client_address
            .clone()
            .filter(|_| person)
            .map(Key::Address);
        let actor = event.actor.clone();
        let is_read = event.category == Category::SecretAccess && is_read(&event.action);

        if phase == Phase::Score
            && is_read
            && let Some(actor) = actor.as_deref()
        {
            // A person is judged by where they work from first (richer), then by their reads.
            let keys: Vec<Key> = address
                .iter()
                .cloned()
                .chain([Key::Actor(actor.to_owned())])
                .collect();
            if let Some(found) = self.judge(event, actor, person, &keys) {
                out.push(found);
            }
        }

        // Learn: people's activity of any kind by address, reads by actor.
        if let Some(key) = address {
            self.record(key, event.event_time);
        }
        if is_read && let Some(actor) = actor {
            self.record(Key::Actor(actor), event.event_time);
        }
    }
}

impl SecretOffHours {
    fn judge(
        &mut self,
        event: &EventRow,
        actor: &str,
        person: bool,
        keys: &[Key],
    ) -> Option<Finding> {
        let params = self.params.clone();
        let (key, profile) = self.baseline(keys, event.event_time)?;
        let (centre, concentration) = profile.centre();
        let hour = hour_of_day(event.event_time);
        let distance = circular_distance(hour, centre);
        let near = profile
            .hours
            .near_hour_of_day(event.event_time, params.near_hours as usize);
        let needed = if person {
            params.min_concentration
        } else {
            params.automation_min_concentration
        };
        if concentration < needed || distance < params.min_distance_hours || near > 0 {
            return None;
        }
        let total = profile.hours.total();
        let severity = if !person {
            Severity::Low
        } else if distance >= params.high_distance_hours && total >= 2 * params.min_history {
            Severity::High
        } else {
            Severity::Medium
        };
        let source = match &key {
            Key::Address(addr) => format!("activity from {addr} (pushes, logins, changes, reads)"),
            Key::Actor(_) => "secret reads".to_owned(),
        };
        let since = profile
            .first
            .map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d").to_string());
        let secret = event.target_name.as_deref().unwrap_or("-");
        let kind = if person { "" } else { " (automation)" };
        Some(Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score: distance,
            event_time: event.event_time,
            entity: actor.to_owned(),
            title: format!(
                "{actor} read {secret} at {} UTC, outside their usual hours",
                event.event_time.format("%H:%M")
            ),
            explanation: Explanation {
                expected: format!(
                    "{actor}{kind} is active {} in {total} active hours of {source} since {since}; the middle of their day is {}",
                    profile.hours.usual_hours(),
                    clock(centre)
                ),
                observed: format!(
                    "{} {secret} at {} from {}",
                    event.action,
                    event.event_time.format("%Y-%m-%d %H:%M UTC"),
                    event
                        .client_address
                        .as_deref()
                        .unwrap_or("an unknown address")
                ),
                unusual: format!(
                    "{distance:.1} h from the middle of their day, with no earlier activity within {} h of that hour",
                    params.near_hours
                ),
            },
            evidence: vec![event.event_id.clone()],
        })
    }
}

/// Reads, gets and listings (writes are not reads).
fn is_read(action: &str) -> bool {
    let verb = action
        .rsplit('.')
        .next()
        .unwrap_or(action)
        .to_ascii_lowercase();
    verb.starts_with("read") || verb.starts_with("get") || verb.starts_with("list")
}

fn hour_of_day(t: DateTime<Utc>) -> f64 {
    f64::from(t.hour()) + f64::from(t.minute()) / 60.0
}

fn circular_distance(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(24.0);
    d.min(24.0 - d)
}

fn clock(hour: f64) -> String {
    let minutes = (hour * 60.0).round() as i64 % (24 * 60);
    format!("{:02}:{:02} UTC", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, day, hour, minute, 0)
            .unwrap()
    }

    fn read(id: &str, time: DateTime<Utc>, actor: &str) -> EventRow {
        let mut row = EventRow::new(id, time, Category::SecretAccess, "secret.read");
        row.outcome = "success".into();
        row.actor = Some(actor.into());
        row.actor_kind = Some(ActorKind::User);
        row.client_address = Some("91.64.1.1".into());
        row.target_name = Some("secret/data/payments/billing/database".into());
        row
    }

    fn push(id: &str, time: DateTime<Utc>) -> EventRow {
        let mut row = EventRow::new(id, time, Category::CodeChange, "git.push");
        row.outcome = "success".into();
        row.actor = Some("mweber".into());
        row.actor_kind = Some(ActorKind::User);
        row.client_address = Some("91.64.1.1".into());
        row
    }

    /// Pushes and reads between 07:00 and 12:00 UTC over eight weekdays.
    fn workdays() -> Vec<EventRow> {
        let mut rows = Vec::new();
        for day in 5..13 {
            rows.push(push(&format!("p{day}"), at(day, 7 + day % 3, 10)));
            rows.push(push(&format!("q{day}"), at(day, 10 + day % 3, 40)));
        }
        rows.push(read("r1", at(8, 9, 5), "marcus@acme.io"));
        rows
    }

    fn run(rows: &[EventRow]) -> Vec<Finding> {
        let mut detector = build(Params::default());
        let mut out = Vec::new();
        for row in rows {
            detector.observe(row, Phase::Score, &mut out);
        }
        out
    }

    #[test]
    fn a_read_in_the_middle_of_the_night_is_reported() {
        let mut rows = workdays();
        rows.push(read("night", at(13, 0, 16), "marcus@acme.io"));
        let found = run(&rows);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].evidence, vec!["night".to_owned()]);
        assert!(found[0].severity >= Severity::Medium);
        assert_eq!(found[0].entity, "marcus@acme.io");
        assert!(found[0].explanation.expected.contains("91.64.1.1"));
    }

    #[test]
    fn a_read_in_working_hours_or_the_early_evening_is_not() {
        let mut rows = workdays();
        rows.push(read("day", at(13, 11, 0), "marcus@acme.io"));
        rows.push(read("evening", at(13, 15, 30), "marcus@acme.io"));
        assert!(run(&rows).is_empty());
    }

    #[test]
    fn a_person_without_enough_history_is_not_judged() {
        let rows = vec![
            read("a", at(5, 9, 0), "new@acme.io"),
            read("b", at(6, 10, 0), "new@acme.io"),
            read("c", at(7, 2, 0), "new@acme.io"),
        ];
        assert!(run(&rows).is_empty());
    }

    #[test]
    fn night_work_that_is_routine_from_the_start_is_not_reported() {
        // An on-call engineer reading at night a few times a week from day one.
        let mut rows = Vec::new();
        for day in 5..20 {
            let hour = if day % 2 == 0 { 1 } else { 14 };
            rows.push(read(
                &format!("n{day}"),
                at(day, hour, 30),
                "oncall@acme.io",
            ));
        }
        assert!(run(&rows).is_empty());
    }

    #[test]
    fn automation_at_a_new_hour_is_only_low() {
        let mut rows = Vec::new();
        for day in 5..15 {
            let mut row = read(&format!("j{day}"), at(day, 2, 30), "svc-export");
            row.actor_kind = Some(ActorKind::Service);
            rows.push(row);
        }
        let mut odd = read("odd", at(15, 14, 0), "svc-export");
        odd.actor_kind = Some(ActorKind::Service);
        rows.push(odd);
        let found = run(&rows);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Low);
    }

    #[test]
    fn unusable_parameters_are_refused() {
        assert!(Params::default().check().is_ok());
        let bad: [fn(&mut Params); 5] = [
            |p| p.min_history = 0,
            |p| p.min_distance_hours = 13.0,
            |p| p.high_distance_hours = 5.0,
            |p| p.min_concentration = 1.0,
            |p| p.automation_min_concentration = -0.1,
        ];
        for spoil in bad {
            let mut params = Params::default();
            spoil(&mut params);
            assert!(params.check().is_err(), "{params:?}");
        }
    }
}
