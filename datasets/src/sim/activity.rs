//! Normal pipeline activity of one day: people pushing and merging in
//! their working hours (CI, CodeQL, staging deploys), approved production
//! deploys, releases by the release bot, Dependabot and the Monday
//! Renovate burst, scheduled workflows, and the on-call SRE's routine
//! night-time maintenance runs.

use chrono::{Datelike, Duration, Weekday};

use super::{World, author, bot_author, commit, gitlab_actor, plan, run};
use crate::calendar::{is_weekend, night_time, utc, work_time};
use crate::formats::audit;
use crate::org::{Provider, RepoKind, Role, WfKind};
use crate::rng::{between, chance, index, poisson, uniform};

/// All activity of day `day`.
pub(crate) fn day(w: &mut World, day: u32) {
    people(w, day);
    production_deploys(w, day);
    releases(w, day);
    dependabot(w, day);
    renovate(w, day);
    schedules(w, day);
    oncall(w, day);
    outside_contributors(w, day);
}

const TEAM_KEYS: &[&str] = &["PAY", "PLAT", "WEB", "IDN", "DATA", "SEC"];

/// A repository a person works on today: mostly their team's.
fn pick_repo(w: &mut World, person: usize, day: u32) -> Option<usize> {
    let team = w.org.people[person].team;
    let candidates: Vec<(usize, f64)> = w
        .org
        .repos
        .iter()
        .enumerate()
        .filter(|(_, r)| r.exists_on(day))
        .map(|(i, r)| (i, r.weight * if r.team == team { 6.0 } else { 0.25 }))
        .collect();
    let total: f64 = candidates.iter().map(|c| c.1).sum();
    let mut x = uniform(&mut w.ctx.rng, 0.0, total);
    for (i, weight) in &candidates {
        if x < *weight {
            return Some(*i);
        }
        x -= weight;
    }
    candidates.last().map(|c| c.0)
}

fn people(w: &mut World, day: u32) {
    let date = w.date(day);
    for pi in 0..w.org.people.len() {
        let p = w.org.people[pi].clone();
        if p.role == Role::Security {
            continue;
        }
        let rate = p.push_rate
            * if is_weekend(date) {
                p.weekend_rate
            } else {
                1.0
            };
        for _ in 0..poisson(&mut w.ctx.rng, rate) {
            let at = work_time(&mut w.ctx.rng, p.tz, date, p.hours);
            if !w.in_period(at) {
                continue;
            }
            let Some(ri) = pick_repo(w, pi, day) else {
                continue;
            };
            let merge = chance(&mut w.ctx.rng, 0.3);
            let (message, slug) = commit(&mut w.ctx.rng);
            let branch = if merge {
                "main".to_owned()
            } else if chance(&mut w.ctx.rng, 0.5) {
                format!("{}/{slug}", p.login)
            } else {
                format!(
                    "feat/{}-{}-{slug}",
                    TEAM_KEYS[p.team],
                    between(&mut w.ctx.rng, 100, 2_400)
                )
            };
            let repo = &w.org.repos[ri];
            if repo.provider == Provider::GitLab {
                let mut pl = plan(
                    ri,
                    0,
                    "push",
                    gitlab_actor(&p),
                    author(&p),
                    at,
                    &branch,
                    message,
                );
                pl.push = true;
                run::run(&w.org, &mut w.ctx, pl);
                continue;
            }
            let Some(ci) = repo.workflow(WfKind::Ci) else {
                continue;
            };
            let event = if merge { "push" } else { "pull_request" };
            let mut pl = plan(
                ri,
                ci,
                event,
                p.actor(),
                author(&p),
                at,
                &branch,
                message.clone(),
            );
            pl.push = true;
            pl.pr = !merge;
            run::run(&w.org, &mut w.ctx, pl);
            if !merge {
                if let Some(lw) = w.org.repos[ri].workflow(WfKind::Labeler) {
                    let t = at + Duration::seconds(1);
                    run::run(
                        &w.org,
                        &mut w.ctx,
                        plan(
                            ri,
                            lw,
                            "pull_request_target",
                            p.actor(),
                            author(&p),
                            t,
                            &branch,
                            message,
                        ),
                    );
                }
                continue;
            }
            let repo = &w.org.repos[ri];
            if let (Some(cq), true) = (repo.workflow(WfKind::CodeQl), chance(&mut w.ctx.rng, 0.5)) {
                let t = at + Duration::seconds(1);
                run::run(
                    &w.org,
                    &mut w.ctx,
                    plan(
                        ri,
                        cq,
                        "push",
                        p.actor(),
                        author(&p),
                        t,
                        "main",
                        message.clone(),
                    ),
                );
            }
            let repo = &w.org.repos[ri];
            if let Some(dw) = repo.workflow(WfKind::Deploy) {
                let t = at + Duration::seconds(2);
                let mut pl = plan(ri, dw, "push", p.actor(), author(&p), t, "main", message);
                pl.env = Some("staging");
                run::run(&w.org, &mut w.ctx, pl);
            }
        }
    }
}

fn production_deploys(w: &mut World, day: u32) {
    let date = w.date(day);
    if is_weekend(date) {
        return;
    }
    for ri in 0..w.org.repos.len() {
        let repo = &w.org.repos[ri];
        if repo.service.is_none() || !repo.exists_on(day) {
            continue;
        }
        let team = repo.team;
        let provider = repo.provider;
        for _ in 0..poisson(&mut w.ctx.rng, 0.7) {
            let members = w.org.team_members(team);
            if members.is_empty() {
                continue;
            }
            let p = w.org.people[members[index(&mut w.ctx.rng, members.len())]].clone();
            let mut hours = p.hours;
            hours.end -= if date.weekday() == Weekday::Fri {
                3.0
            } else {
                1.0
            };
            hours.evening = 0.0;
            let at = work_time(&mut w.ctx.rng, p.tz, date, hours);
            if !w.in_period(at) {
                continue;
            }
            let message = format!("Deploy {} to production", w.org.repos[ri].name);
            let mut pl = match provider {
                Provider::GitHub => {
                    let Some(dw) = w.org.repos[ri].workflow(WfKind::Deploy) else {
                        continue;
                    };
                    let mut pl = plan(
                        ri,
                        dw,
                        "workflow_dispatch",
                        p.actor(),
                        author(&p),
                        at,
                        "main",
                        message,
                    );
                    let lead = w.org.team_lead(team);
                    let reviewer = if w.org.people[lead].login == p.login {
                        w.org.people[w.org.team_lead((team + 1) % crate::org::TEAMS.len())].actor()
                    } else {
                        w.org.people[lead].actor()
                    };
                    pl.reviewer = Some(reviewer);
                    pl
                }
                Provider::GitLab => plan(
                    ri,
                    0,
                    "web",
                    gitlab_actor(&p),
                    author(&p),
                    at,
                    "main",
                    message,
                ),
            };
            pl.env = Some("production");
            run::run(&w.org, &mut w.ctx, pl);
        }
    }
}

fn releases(w: &mut World, day: u32) {
    let date = w.date(day);
    if is_weekend(date) {
        return;
    }
    let bot = w.org.bots.release.clone();
    for ri in w.org.repos_of(Provider::GitHub) {
        let repo = &w.org.repos[ri];
        let p = match repo.kind {
            RepoKind::Service(_) => 0.25,
            RepoKind::Library => 0.12,
            _ => 0.0,
        };
        let Some(rw) = repo.workflow(WfKind::Release) else {
            continue;
        };
        if !repo.exists_on(day) || !chance(&mut w.ctx.rng, p) {
            continue;
        }
        let at = utc(date, uniform(&mut w.ctx.rng, 13.0, 17.0));
        let tag = format!(
            "v{}.{}.{}",
            between(&mut w.ctx.rng, 1, 4),
            between(&mut w.ctx.rng, 0, 40),
            between(&mut w.ctx.rng, 0, 9)
        );
        let who = audit::Who::app(&bot, run::bot_token(&bot, at), None);
        audit::git(
            &mut w.ctx,
            at - Duration::seconds(90),
            "git.clone",
            &who,
            &w.org.repos[ri],
        );
        let mut pl = plan(
            ri,
            rw,
            "push",
            bot.clone(),
            bot_author(&bot),
            at,
            &tag,
            format!("chore(release): {tag}"),
        );
        pl.tag = true;
        pl.push = true;
        run::run(&w.org, &mut w.ctx, pl);
    }
}

fn dependabot(w: &mut World, day: u32) {
    let date = w.date(day);
    if is_weekend(date) {
        return;
    }
    let bot = w.org.bots.dependabot.clone();
    let repos: Vec<usize> = w
        .org
        .repos_of(Provider::GitHub)
        .into_iter()
        .filter(|r| w.org.repos[*r].exists_on(day))
        .collect();
    for _ in 0..poisson(&mut w.ctx.rng, 1.6) {
        let ri = repos[index(&mut w.ctx.rng, repos.len())];
        let Some(ci) = w.org.repos[ri].workflow(WfKind::Ci) else {
            continue;
        };
        let (eco, deps) = w.org.repos[ri].lang.ecosystem();
        let dep = deps[index(&mut w.ctx.rng, deps.len())];
        let version = format!(
            "{}.{}.{}",
            between(&mut w.ctx.rng, 1, 9),
            between(&mut w.ctx.rng, 0, 30),
            between(&mut w.ctx.rng, 0, 12)
        );
        let at = utc(date, uniform(&mut w.ctx.rng, 5.0, 7.0));
        let branch = format!("dependabot/{eco}/{dep}-{version}");
        let mut pl = plan(
            ri,
            ci,
            "pull_request",
            bot.clone(),
            bot_author(&bot),
            at,
            &branch,
            format!("Bump {dep} to {version}"),
        );
        pl.push = true;
        pl.pr = true;
        run::run(&w.org, &mut w.ctx, pl);
    }
}

/// Renovate runs every Monday morning across nearly every repository.
fn renovate(w: &mut World, day: u32) {
    let date = w.date(day);
    if date.weekday() != Weekday::Mon {
        return;
    }
    let bot = w.org.bots.renovate.clone();
    let mut at = utc(date, uniform(&mut w.ctx.rng, 6.0, 6.2));
    for ri in w.org.repos_of(Provider::GitHub) {
        if !w.org.repos[ri].exists_on(day) || !chance(&mut w.ctx.rng, 0.8) {
            continue;
        }
        at += Duration::seconds(between(&mut w.ctx.rng, 40, 110));
        let who = audit::Who::app(&bot, run::bot_token(&bot, at), None);
        audit::git(&mut w.ctx, at, "git.clone", &who, &w.org.repos[ri]);
        let Some(ci) = w.org.repos[ri].workflow(WfKind::Ci) else {
            continue;
        };
        let (_, deps) = w.org.repos[ri].lang.ecosystem();
        let dep = deps[index(&mut w.ctx.rng, deps.len())].replace('/', "-");
        let branch = format!("renovate/{dep}");
        let t = at + Duration::seconds(between(&mut w.ctx.rng, 10, 30));
        let mut pl = plan(
            ri,
            ci,
            "pull_request",
            bot.clone(),
            bot_author(&bot),
            t,
            &branch,
            format!("chore(deps): update {dep}"),
        );
        pl.push = true;
        pl.pr = true;
        run::run(&w.org, &mut w.ctx, pl);
    }
}

fn schedules(w: &mut World, day: u32) {
    let date = w.date(day);
    let weekday = date.weekday();
    for ri in w.org.repos_of(Provider::GitHub) {
        if !w.org.repos[ri].exists_on(day) {
            continue;
        }
        let lead = w.org.people[w.org.team_lead(w.org.repos[ri].team)].clone();
        let jobs: Vec<(WfKind, f64)> = [
            (
                WfKind::CodeQl,
                if weekday == Weekday::Wed { 3.45 } else { -1.0 },
            ),
            (
                WfKind::Nightly,
                if w.org.repos[ri].kind == RepoKind::Ml {
                    1.0
                } else {
                    2.0
                },
            ),
            (
                WfKind::LegacyExport,
                if matches!(weekday, Weekday::Mon | Weekday::Thu) {
                    2.5
                } else {
                    -1.0
                },
            ),
            (
                WfKind::BackupSync,
                if weekday == Weekday::Sun { 1.1 } else { -1.0 },
            ),
        ]
        .into_iter()
        .filter(|(_, h)| *h >= 0.0)
        .collect();
        for (kind, hour) in jobs {
            let Some(wi) = w.org.repos[ri].workflow(kind) else {
                continue;
            };
            // Scheduled runs start a few minutes late, as GitHub's do.
            let at = utc(date, hour + uniform(&mut w.ctx.rng, 0.05, 0.4));
            let name = w.org.repos[ri].workflows[wi].name.clone();
            let pl = plan(
                ri,
                wi,
                "schedule",
                lead.actor(),
                author(&lead),
                at,
                "main",
                name,
            );
            run::run(&w.org, &mut w.ctx, pl);
        }
    }
}

/// The on-call SRE runs maintenance at night a few times a week: routine.
fn oncall(w: &mut World, day: u32) {
    let date = w.date(day);
    let p = w.org.people[w.org.oncall].clone();
    let Some(ri) = w.org.repos.iter().position(|r| r.kind == RepoKind::Ops) else {
        return;
    };
    let Some(wi) = w.org.repos[ri].workflow(WfKind::Maintenance) else {
        return;
    };
    if !chance(&mut w.ctx.rng, 0.4) {
        return;
    }
    let at = night_time(&mut w.ctx.rng, p.tz, date);
    if !w.in_period(at) {
        return;
    }
    let message = "Maintenance: vacuum and reindex".to_owned();
    run::run(
        &w.org,
        &mut w.ctx,
        plan(
            ri,
            wi,
            "workflow_dispatch",
            p.actor(),
            author(&p),
            at,
            "main",
            message,
        ),
    );
}

/// Outside contributors open pull requests from forks on public repositories.
fn outside_contributors(w: &mut World, day: u32) {
    let date = w.date(day);
    for ri in w.org.repos_of(Provider::GitHub) {
        if !w.org.repos[ri].public || !chance(&mut w.ctx.rng, 0.35) {
            continue;
        }
        let fork = super::outsider(&mut w.ctx.rng);
        let at = utc(date, uniform(&mut w.ctx.rng, 7.0, 23.0));
        let (message, slug) = commit(&mut w.ctx.rng);
        let author = (
            fork.login.clone(),
            format!("{}+{}@users.noreply.github.com", fork.id, fork.login),
        );
        for (kind, event) in [
            (WfKind::Ci, "pull_request"),
            (WfKind::Labeler, "pull_request_target"),
        ] {
            let Some(wi) = w.org.repos[ri].workflow(kind) else {
                continue;
            };
            let mut pl = plan(
                ri,
                wi,
                event,
                fork.clone(),
                author.clone(),
                at,
                &slug,
                message.clone(),
            );
            pl.fork = Some(fork.clone());
            pl.pr = true;
            run::run(&w.org, &mut w.ctx, pl);
        }
    }
}
