//! The simulation of normal life: the world (organisation + shared state),
//! the day loop, and helpers to plan runs for people and bots. Activity
//! lives in `activity` (people, bots, schedules), background noise in
//! `background`, the run builder in `run`, side effects in `effects`.

mod activity;
mod background;
pub(crate) mod effects;
pub(crate) mod run;
pub(crate) mod runners;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::SeedableRng;

use crate::calendar::midnight;
use crate::ctx::Ctx;
use crate::labels::Incident;
use crate::org::{Actor, Org, Person};
use crate::rng::{Rng, between, index, pick};
use crate::sink::Sink;
use crate::{DatasetError, GenerateOptions, formats, labels};

pub(crate) use background::{human_token, sso_session};
pub(crate) use run::{RunIds, RunPlan, Tweak};

/// The organisation and everything generated so far.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) org: Org,
    pub(crate) ctx: Ctx,
    pub(crate) start_date: NaiveDate,
    /// How often incidents used an entity (`repo:<i>`, `person:<i>`), so
    /// incidents spread over the organisation.
    pub(crate) used: BTreeMap<String, usize>,
    seed: u64,
}

impl World {
    /// Builds the organisation for the options.
    pub(crate) fn new(options: &GenerateOptions) -> World {
        let start = midnight(options.start);
        let mut org_rng = Rng::seed_from_u64(options.seed);
        org_rng.set_stream(1);
        let org = Org::build(&mut org_rng, options.scale, start, options.days);
        let mut sim_rng = Rng::seed_from_u64(options.seed);
        sim_rng.set_stream(2);
        World {
            org,
            ctx: Ctx::new(sim_rng, start, options.days),
            start_date: options.start,
            used: BTreeMap::new(),
            seed: options.seed,
        }
    }

    /// Switches to the incident random stream (independent of how much
    /// randomness normal activity used).
    pub(crate) fn incident_rng(&mut self) {
        let mut rng = Rng::seed_from_u64(self.seed);
        rng.set_stream(3);
        self.ctx.rng = rng;
    }

    /// Renders the aggregates and labels; returns everything to write.
    pub(crate) fn finish(
        mut self,
        options: &GenerateOptions,
        incidents: &[Incident],
    ) -> Result<Sink, DatasetError> {
        formats::sarif::finish(&mut self.ctx)?;
        formats::argocd::finish(&mut self.ctx, &self.org)?;
        labels::write(&mut self.ctx.sink, options, incidents)?;
        Ok(self.ctx.sink)
    }

    pub(crate) fn date(&self, day: u32) -> NaiveDate {
        self.start_date + Duration::days(i64::from(day))
    }

    /// Whether an instant lies inside the simulated period.
    pub(crate) fn in_period(&self, t: DateTime<Utc>) -> bool {
        t >= self.ctx.start && t < self.ctx.end()
    }
}

/// Runs the day loop of normal activity.
pub(crate) fn simulate(world: &mut World, on_progress: &dyn Fn(u64)) {
    for day in 0..world.ctx.days {
        activity::day(world, day);
        background::day(world, day);
        on_progress(world.ctx.sink.len());
    }
    background::once(world);
}

/// A person's commit identity.
pub(crate) fn author(p: &Person) -> (String, String) {
    (p.name.clone(), p.email.clone())
}

/// A person as a GitLab user.
pub(crate) fn gitlab_actor(p: &Person) -> Actor {
    Actor {
        login: p.login.clone(),
        id: p.gitlab_id,
        bot: false,
    }
}

/// A bot's commit identity.
pub(crate) fn bot_author(a: &Actor) -> (String, String) {
    (
        a.login.clone(),
        format!("{}+{}@users.noreply.github.com", a.id, a.login),
    )
}

const VERBS: &[&str] = &["fix", "feat", "chore", "refactor", "test", "docs", "perf"];
const TOPICS: &[&str] = &[
    "handle timeout in upstream client",
    "add retry with backoff",
    "expose request metrics",
    "paginate list endpoint",
    "clean up feature flags",
    "tighten input validation",
    "cache lookups for 60s",
    "update error messages",
    "split settings module",
    "add tracing spans",
    "drop unused dependency",
    "rate-limit webhook handler",
];

/// A commit message and a matching branch slug.
pub(crate) fn commit(rng: &mut Rng) -> (String, String) {
    let verb = pick(rng, VERBS);
    let topic = pick(rng, TOPICS);
    let slug: String = topic.split(' ').take(3).collect::<Vec<_>>().join("-");
    (format!("{verb}: {topic}"), slug)
}

/// A plan for a run with no tweaks and no push.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan(
    repo: usize,
    workflow: usize,
    event: &'static str,
    actor: Actor,
    author: (String, String),
    at: DateTime<Utc>,
    branch: &str,
    message: String,
) -> RunPlan {
    RunPlan {
        repo,
        workflow,
        event,
        actor,
        author,
        at,
        branch: branch.to_owned(),
        tag: false,
        env: None,
        fork: None,
        pr: false,
        message,
        reviewer: None,
        push: false,
        tweak: Tweak::default(),
    }
}

/// An outside contributor: not a member of the organisation.
pub(crate) fn outsider(rng: &mut Rng) -> Actor {
    const HANDLES: &[&str] = &[
        "kdrozdov",
        "m-farouk",
        "lindqvist-j",
        "tpereira",
        "ykato-dev",
        "abramov-s",
        "nchukwu",
        "helmi-r",
        "ostrowski-p",
        "gvargas",
        "leahmc",
        "dsantos-io",
    ];
    let handle = HANDLES[index(rng, HANDLES.len())];
    Actor {
        login: format!("{handle}{}", between(rng, 1, 99)),
        id: between(rng, 150_000_000, 240_000_000) as u64,
        bot: false,
    }
}
