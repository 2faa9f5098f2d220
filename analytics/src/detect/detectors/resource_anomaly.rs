//! Job duration, queue time, CPU, memory and network egress far outside the
//! job's own history (per repository, workflow and job): mining, a runaway
//! build or an upload of data shows as resources the job never used.
//!
//! # Baseline / Cold start
//!
//! Per job and record shape it keeps the last `max_history` runs in log
//! space: job spans with usage (duration, CPU, memory, egress) and CI
//! completion records with timing (duration, queue). Every `refit_every` new
//! runs it refits a robust baseline (median and MAD per feature, which the
//! explanation quotes) and a Gaussian mixture over the robust-standardized
//! features (linfa), whose Mahalanobis distance gives the joint surprise. A
//! run is reported only when both agree. A job with fewer than
//! `min_history` runs is only learned. Queue time and timing-only records
//! are at most a weak signal: waiting for an approval or a free runner
//! consumes nothing.

use std::collections::{HashMap, VecDeque};

use linfa::traits::Fit;
use linfa::{DatasetBase, ParamGuard};
use linfa_clustering::{GaussianMixtureModel, GmmError};
use ndarray::{Array1, Array2, Array3};
use pipewatch_schema::{Category, Severity};

use crate::detect::stats::RobustBaseline;
use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "resource_anomaly";

/// Recent job-run ids remembered per job, so a run reported twice (GitLab
/// sends a build both alone and inside its pipeline) counts once.
const RECENT_RUNS: usize = 16;

/// The mixture's settings, checked by linfa's own guard before any fit.
macro_rules! gmm_params {
    ($components:expr, $floor:expr) => {
        GaussianMixtureModel::<f64>::params($components)
            .reg_covariance($floor)
            .tolerance(1e-3)
            .max_n_iterations(100)
            .n_runs(1)
            .init_method(linfa_clustering::GmmInitMethod::Random)
            .check()
    };
}

/// Parameters of [`ResourceAnomaly`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Jobs (`owner/repo/job`) never reported.
    pub allow: Vec<String>,
    /// Runs a job needs before its runs are judged.
    pub min_history: usize,
    /// Runs kept per job (oldest dropped first).
    pub max_history: usize,
    /// New runs between two refits of a job's baseline and model.
    pub refit_every: usize,
    /// Most mixture components per job.
    pub max_components: usize,
    /// Runs needed per mixture component; fewer runs, fewer components.
    pub runs_per_component: usize,
    /// Added to the mixture covariances' diagonal (standardized units), so
    /// features that move together (duration and CPU) stay invertible.
    pub covariance_floor: f64,
    /// Smallest spread of a feature in log space (0.15 ≈ ±15%), so a job
    /// that always takes the same time is not alarmed by a small change.
    pub scale_floor: f64,
    /// Robust z (upward) at which a feature counts as unusual (weak signal).
    pub z_low: f64,
    /// Robust z (upward) needed for a medium finding.
    pub z_medium: f64,
    /// Robust z (upward) needed for a high finding.
    pub z_high: f64,
    /// How many times farther from the job's clusters than nine in ten of
    /// its own runs a run must be to count as unusual (weak signal).
    pub far_low: f64,
    /// The same distance ratio needed for a medium finding.
    pub far_medium: f64,
    /// The same distance ratio needed for a high finding.
    pub far_high: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_history: 8,
            max_history: 200,
            refit_every: 20,
            max_components: 2,
            runs_per_component: 40,
            covariance_floor: 0.05,
            scale_floor: 0.15,
            z_low: 4.0,
            z_medium: 8.0,
            z_high: 12.0,
            far_low: 5.0,
            far_medium: 20.0,
            far_high: 40.0,
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
        if self.min_history < 5 {
            return err("min_history", "must be at least 5");
        }
        if self.max_history < self.min_history {
            return err("max_history", "must be at least min_history");
        }
        if self.refit_every == 0 {
            return err("refit_every", "must be at least 1");
        }
        if self.runs_per_component < 5 {
            return err("runs_per_component", "must be at least 5");
        }
        if !(self.scale_floor.is_finite() && self.scale_floor > 0.0) {
            return err("scale_floor", "must be a positive number");
        }
        if !(self.z_low > 0.0 && self.z_low <= self.z_medium && self.z_medium <= self.z_high) {
            return err("z_low", "must be positive with z_low <= z_medium <= z_high");
        }
        if !(self.far_low > 1.0
            && self.far_low <= self.far_medium
            && self.far_medium <= self.far_high)
        {
            return err(
                "far_low",
                "must exceed 1 with far_low <= far_medium <= far_high",
            );
        }
        // The mixture's own guard refuses what it cannot fit with.
        gmm_params!(self.max_components, self.covariance_floor)
            .map(|_| ())
            .map_err(|e| ParamError::new(NAME, "max_components", e.to_string()))
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(ResourceAnomaly {
        params,
        jobs: HashMap::new(),
    })
}

/// Job duration, queue time, CPU, memory and egress far outside the job's own history.
#[derive(Debug)]
pub struct ResourceAnomaly {
    params: Params,
    jobs: HashMap<(String, String, String, Shape), JobHistory>,
}

/// Which measurements a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Shape {
    /// Job span with usage: duration (s), CPU (s), memory (MB), egress (MB).
    Usage,
    /// CI completion record: duration (s), queue (s).
    Timing,
}

impl Shape {
    fn features(self) -> &'static [Feature] {
        match self {
            Shape::Usage => &[
                Feature::Duration,
                Feature::Cpu,
                Feature::Memory,
                Feature::Egress,
            ],
            Shape::Timing => &[Feature::Duration, Feature::Queue],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feature {
    Duration,
    Queue,
    Cpu,
    Memory,
    Egress,
}

impl Feature {
    fn name(self) -> &'static str {
        match self {
            Feature::Duration => "duration",
            Feature::Queue => "queue time",
            Feature::Cpu => "CPU",
            Feature::Memory => "memory",
            Feature::Egress => "egress",
        }
    }

    /// A value in the feature's natural unit, for people.
    fn show(self, value: f64) -> String {
        match self {
            Feature::Duration | Feature::Queue if value >= 5400.0 => {
                format!("{:.1} h", value / 3600.0)
            }
            Feature::Duration | Feature::Queue if value >= 120.0 => {
                format!("{:.1} min", value / 60.0)
            }
            Feature::Duration | Feature::Queue => format!("{value:.0} s"),
            Feature::Cpu => format!("{value:.0} CPU-s"),
            Feature::Memory | Feature::Egress if value >= 1000.0 => {
                format!("{:.1} GB", value / 1000.0)
            }
            Feature::Memory | Feature::Egress => format!("{value:.1} MB"),
        }
    }
}

/// The shape and raw measurements of a record, when it has a full set.
fn measure(row: &EventRow) -> Option<(Shape, Vec<f64>)> {
    let seconds = |ms: i64| ms as f64 / 1000.0;
    let mb = |bytes: i64| bytes as f64 / 1e6;
    let duration = row.duration_ms.filter(|d| *d >= 0).map(seconds)?;
    if let (Some(cpu), Some(memory), Some(egress)) =
        (row.cpu_seconds, row.memory_bytes, row.egress_bytes)
    {
        return Some((
            Shape::Usage,
            vec![duration, cpu.max(0.0), mb(memory.max(0)), mb(egress.max(0))],
        ));
    }
    // Only a finished job has its timing; skipped and cancelled ones say nothing of usage.
    let queue = row.queue_ms.filter(|q| *q >= 0).map(seconds)?;
    matches!(row.outcome.as_str(), "success" | "failure")
        .then(|| (Shape::Timing, vec![duration, queue]))
}

/// The job a record belongs to (`repo/workflow/job/usage` or `…/timing`)
/// and its measurements in log space, exactly as this detector sees them;
/// `None` for a record without a full set. For comparing models on the
/// same feature vectors.
pub fn job_features(event: &EventRow) -> Option<(String, Vec<f64>)> {
    let repo = event.repo.as_deref()?;
    let job = event.cicd_pipeline_task_name.as_deref()?;
    let (shape, raw) = measure(event)?;
    let workflow = event.cicd_pipeline_name.as_deref().unwrap_or("-");
    let shape = match shape {
        Shape::Usage => "usage",
        Shape::Timing => "timing",
    };
    Some((
        format!("{repo}/{workflow}/{job}/{shape}"),
        raw.iter().map(|v| v.ln_1p()).collect(),
    ))
}

#[derive(Debug, Default)]
struct JobHistory {
    samples: VecDeque<Vec<f64>>,
    since_fit: usize,
    fitted: Option<Fitted>,
    recent: VecDeque<String>,
}

/// A job's baseline as of its last refit.
#[derive(Debug)]
struct Fitted {
    runs: usize,
    center: Vec<f64>,
    scale: Vec<f64>,
    mixture: Option<Mixture>,
}

#[derive(Debug)]
struct Mixture {
    means: Array2<f64>,
    precisions: Array3<f64>,
    /// The 90th percentile of the training runs' own squared distances: how
    /// far the job's ordinary runs already stray from their clusters.
    typical: f64,
}

impl Mixture {
    /// Squared Mahalanobis distance to the nearest component.
    fn distance2(&self, z: &Array1<f64>) -> f64 {
        (0..self.means.nrows())
            .map(|k| {
                let diff = z - &self.means.row(k);
                let precision = self.precisions.index_axis(ndarray::Axis(0), k);
                diff.dot(&precision.dot(&diff))
            })
            .fold(f64::INFINITY, f64::min)
    }
}

/// Fits a mixture of `components` Gaussians to standardized runs.
fn fit_mixture(data: &Array2<f64>, components: usize, floor: f64) -> Result<Mixture, GmmError> {
    let params = gmm_params!(components, floor)?;
    let model = params.fit(&DatasetBase::from(data.view()))?;
    let mut mixture = Mixture {
        means: model.means().to_owned(),
        precisions: model.precisions().to_owned(),
        typical: 1.0,
    };
    let mut own: Vec<f64> = data
        .rows()
        .into_iter()
        .map(|row| mixture.distance2(&row.to_owned()))
        .collect();
    own.sort_by(f64::total_cmp);
    let index = ((own.len() as f64 * 0.9).ceil() as usize).clamp(1, own.len().max(1)) - 1;
    // Floor at the 90th percentile of a chi-square: a job whose runs are
    // all alike must not make ordinary jitter look far.
    mixture.typical = own
        .get(index)
        .copied()
        .unwrap_or(1.0)
        .max(data.ncols() as f64 * 2.0);
    Ok(mixture)
}

impl ResourceAnomaly {
    fn fit(params: &Params, samples: &VecDeque<Vec<f64>>, dims: usize) -> Option<Fitted> {
        let mut center = Vec::with_capacity(dims);
        let mut scale = Vec::with_capacity(dims);
        for f in 0..dims {
            let column: Vec<f64> = samples.iter().map(|s| s[f]).collect();
            let baseline = RobustBaseline::of(&column)?;
            center.push(baseline.median);
            scale.push((1.4826 * baseline.mad).max(params.scale_floor));
        }
        let mut data = Array2::zeros((samples.len(), dims));
        for (i, sample) in samples.iter().enumerate() {
            for f in 0..dims {
                data[[i, f]] = (sample[f] - center[f]) / scale[f];
            }
        }
        let wanted =
            (samples.len() / params.runs_per_component).clamp(1, params.max_components.max(1));
        // A mixture that cannot be fitted (collapsed runs) falls back to
        // fewer components, then to the robust baseline alone.
        let mixture = (1..=wanted)
            .rev()
            .find_map(|k| fit_mixture(&data, k, params.covariance_floor).ok());
        Some(Fitted {
            runs: samples.len(),
            center,
            scale,
            mixture,
        })
    }

    /// Both views must agree: the robust z of the most unusual feature and
    /// the mixture's distance ratio. Without a mixture (it could not be
    /// fitted) the robust view alone can give at most medium.
    fn severity(&self, z_up: f64, farness: Option<f64>, shape: Shape) -> Severity {
        let p = &self.params;
        let level = |value: f64, low: f64, medium: f64, high: f64| {
            if value >= high {
                Severity::High
            } else if value >= medium {
                Severity::Medium
            } else if value >= low {
                Severity::Low
            } else {
                Severity::Info
            }
        };
        let robust = level(z_up, p.z_low, p.z_medium, p.z_high);
        let joint = farness.map_or(Severity::Medium, |f| {
            level(f, p.far_low, p.far_medium, p.far_high)
        });
        let both = robust.min(joint);
        match shape {
            Shape::Usage => both,
            // Timing alone is a weak signal: only what would otherwise be
            // medium or more shows, as low.
            Shape::Timing if both >= Severity::Medium => Severity::Low,
            Shape::Timing => Severity::Info,
        }
    }
}

impl Detector for ResourceAnomaly {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::PipelineJob]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        let (Some(repo), Some(job)) = (
            event.repo.as_deref(),
            event.cicd_pipeline_task_name.as_deref(),
        ) else {
            return;
        };
        let Some((shape, raw)) = measure(event) else {
            return;
        };
        let workflow = event.cicd_pipeline_name.as_deref().unwrap_or("-");
        let key = (repo.to_owned(), workflow.to_owned(), job.to_owned(), shape);
        let history = self.jobs.entry(key.clone()).or_default();
        let run = event
            .cicd_pipeline_task_run_id
            .clone()
            .or_else(|| event.span_id.clone())
            .unwrap_or_else(|| event.event_id.clone());
        if history.recent.contains(&run) {
            return;
        }
        history.recent.push_back(run);
        if history.recent.len() > RECENT_RUNS {
            history.recent.pop_front();
        }
        let x: Vec<f64> = raw.iter().map(|v| v.ln_1p()).collect();
        if phase == Phase::Score
            && let Some(finding) = self.judge(event, &key, shape, &raw, &x)
        {
            out.push(finding);
        }
        let max_history = self.params.max_history;
        let Some(history) = self.jobs.get_mut(&key) else {
            return;
        };
        history.samples.push_back(x);
        while history.samples.len() > max_history {
            history.samples.pop_front();
        }
        history.since_fit += 1;
        let due = match &history.fitted {
            None => history.samples.len() >= self.params.min_history,
            Some(f) => history.since_fit >= self.params.refit_every.min(f.runs.max(1)),
        };
        if due {
            history.fitted = Self::fit(&self.params, &history.samples, shape.features().len());
            history.since_fit = 0;
        }
    }
}

impl ResourceAnomaly {
    fn judge(
        &self,
        event: &EventRow,
        key: &(String, String, String, Shape),
        shape: Shape,
        raw: &[f64],
        x: &[f64],
    ) -> Option<Finding> {
        let history = self.jobs.get(key)?;
        let fitted = history.fitted.as_ref()?;
        if history.samples.len() < self.params.min_history {
            return None;
        }
        let features = shape.features();
        let z: Vec<f64> = x
            .iter()
            .zip(&fitted.center)
            .zip(&fitted.scale)
            .map(|((x, c), s)| (x - c) / s)
            .collect();
        let z_up = z.iter().copied().fold(0.0, f64::max);
        if z_up < self.params.z_low {
            return None;
        }
        let farness = fitted
            .mixture
            .as_ref()
            .map(|m| m.distance2(&Array1::from(z.clone())) / m.typical);
        let severity = self.severity(z_up, farness, shape);
        if severity < Severity::Low {
            return None;
        }
        let (repo, workflow, job, _) = key;
        // Unusual features, most unusual first, with their ratio to the median.
        let mut unusual: Vec<(Feature, f64, f64, f64)> = features
            .iter()
            .enumerate()
            .filter(|(i, _)| z[*i] >= self.params.z_low)
            .map(|(i, f)| {
                let median = fitted.center[i].exp_m1();
                let ratio = if median > 0.0 {
                    raw[i] / median
                } else {
                    f64::INFINITY
                };
                (*f, z[i], ratio, median)
            })
            .collect();
        unusual.sort_by(|a, b| b.1.total_cmp(&a.1));
        let times = |ratio: f64| match ratio {
            r if !r.is_finite() => "well above".to_owned(),
            r if r >= 10.0 => format!("{r:.0}x"),
            r => format!("{r:.1}x"),
        };
        let ratio_words =
            |(f, _, ratio, _): &(Feature, f64, f64, f64)| format!("{} {}", f.name(), times(*ratio));
        let headline: Vec<String> = unusual.iter().take(2).map(ratio_words).collect();
        let medians: Vec<String> = features
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{} {}", f.name(), f.show(fitted.center[i].exp_m1())))
            .collect();
        let observed: Vec<String> = features
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{} {}", f.name(), f.show(raw[i])))
            .collect();
        let details: Vec<String> = unusual
            .iter()
            .map(|(f, z, ratio, median)| {
                format!(
                    "{} {} its median of {} (robust z {z:.1})",
                    f.name(),
                    times(*ratio),
                    f.show(*median)
                )
            })
            .collect();
        let joint = match (farness, &fitted.mixture) {
            (Some(far), Some(m)) => format!(
                "; a {}-cluster Gaussian mixture of its runs (log units) puts this run {far:.0}x farther from its nearest cluster than nine in ten of its own runs",
                m.means.nrows()
            ),
            _ => String::new(),
        };
        let score = farness.unwrap_or(z_up);
        Some(Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score,
            event_time: event.event_time,
            entity: format!("{repo}/{job}"),
            title: format!("{job} job of {repo}: {} its median", headline.join(" and ")),
            explanation: Explanation {
                expected: format!(
                    "over its last {} runs the {job} job ({workflow}) of {repo} had a median {}",
                    fitted.runs,
                    medians.join(", ")
                ),
                observed: format!(
                    "its run at {} had {}",
                    event.event_time.format("%Y-%m-%d %H:%M UTC"),
                    observed.join(", ")
                ),
                unusual: format!("{}{joint}", details.join("; ")),
            },
            evidence: vec![event.event_id.clone()],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, TimeZone, Utc};

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 5, 8, 0, 0)
            .single()
            .expect("valid time")
    }

    /// A job span with usage; `jitter` in 0..1 varies each measurement
    /// independently by up to ±40%, `scale` multiplies them.
    fn span(n: usize, job: &str, jitter: f64, scale: [f64; 4]) -> EventRow {
        let time = start() + Duration::hours(n as i64);
        let mut row = EventRow::new(
            format!("e{n}"),
            time,
            Category::PipelineJob,
            "cicd.pipeline.task.run",
        );
        row.source = "otlp".into();
        row.outcome = "success".into();
        row.repo = Some("acme/api".into());
        row.cicd_pipeline_name = Some("CI".into());
        row.cicd_pipeline_task_name = Some(job.into());
        row.span_id = Some(format!("s{n}"));
        let vary = |salt: f64| 0.6 + 0.8 * ((jitter * 97.0 + salt) * 7.3).sin().abs();
        row.duration_ms = Some((300_000.0 * vary(0.0) * scale[0]) as i64);
        row.cpu_seconds = Some(600.0 * vary(1.0) * scale[1]);
        row.memory_bytes = Some((2e9 * vary(2.0) * scale[2]) as i64);
        row.egress_bytes = Some((10e6 * vary(3.0) * scale[3]) as i64);
        row
    }

    /// A deterministic spread of jitters in 0..1.
    fn jitter(n: usize) -> f64 {
        ((n * 7919) % 101) as f64 / 100.0
    }

    fn learn(detector: &mut Box<dyn Detector>, job: &str, runs: usize) {
        for n in 0..runs {
            detector.observe(
                &span(n, job, jitter(n), [1.0; 4]),
                Phase::Learn,
                &mut Vec::new(),
            );
        }
    }

    #[test]
    fn a_run_sending_far_more_egress_with_more_memory_is_reported() {
        let mut detector = build(Params::default());
        learn(&mut detector, "test", 60);
        let mut out = Vec::new();
        detector.observe(
            &span(100, "test", 0.5, [1.0, 1.2, 3.0, 90.0]),
            Phase::Score,
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        let finding = &out[0];
        assert_eq!(finding.severity, Severity::High, "{finding:?}");
        assert_eq!(finding.entity, "acme/api/test");
        assert_eq!(finding.evidence, vec!["e100".to_owned()]);
        assert!(
            finding.title.starts_with("test job of acme/api: egress"),
            "{}",
            finding.title
        );
        assert!(finding.explanation.unusual.contains("egress"));
        assert!(finding.explanation.expected.contains("over its last"));
    }

    #[test]
    fn an_ordinary_run_is_quiet() {
        let mut detector = build(Params::default());
        learn(&mut detector, "test", 60);
        let mut out = Vec::new();
        for n in 100..120 {
            detector.observe(
                &span(n, "test", jitter(n), [1.0; 4]),
                Phase::Score,
                &mut out,
            );
        }
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_moderate_rise_in_one_feature_stays_below_medium() {
        let mut detector = build(Params::default());
        learn(&mut detector, "test", 60);
        let mut out = Vec::new();
        detector.observe(
            &span(100, "test", 0.5, [1.0, 1.0, 1.0, 2.5]),
            Phase::Score,
            &mut out,
        );
        assert!(out.iter().all(|f| f.severity < Severity::Medium), "{out:?}");
    }

    #[test]
    fn a_job_without_enough_history_is_learned_not_judged() {
        let mut detector = build(Params::default());
        learn(&mut detector, "test", 5);
        let mut out = Vec::new();
        detector.observe(
            &span(100, "test", 0.5, [5.0, 30.0, 3.0, 90.0]),
            Phase::Score,
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn queue_time_alone_is_at_most_a_weak_signal() {
        let mut detector = build(Params::default());
        let completed = |n: usize| {
            let mut row = EventRow::new(
                format!("w{n}"),
                start() + Duration::hours(n as i64),
                Category::PipelineJob,
                "workflow_job.completed",
            );
            row.outcome = "success".into();
            row.repo = Some("acme/api".into());
            row.cicd_pipeline_name = Some("Deploy".into());
            row.cicd_pipeline_task_name = Some("deploy".into());
            row.cicd_pipeline_task_run_id = Some(format!("j{n}"));
            row.duration_ms = Some(150_000 + (jitter(n) * 30_000.0) as i64);
            row.queue_ms = Some(5_000 + (jitter(n) * 3_000.0) as i64);
            row
        };
        for n in 0..40 {
            detector.observe(&completed(n), Phase::Learn, &mut Vec::new());
        }
        let mut out = Vec::new();
        let mut waiting = completed(100);
        waiting.queue_ms = Some(900_000);
        detector.observe(&waiting, Phase::Score, &mut out);
        assert!(out.iter().all(|f| f.severity <= Severity::Low), "{out:?}");
    }

    #[test]
    fn the_same_run_reported_twice_is_judged_once() {
        let mut detector = build(Params::default());
        learn(&mut detector, "test", 60);
        let mut out = Vec::new();
        let odd = span(100, "test", 0.5, [1.0, 1.2, 3.0, 90.0]);
        detector.observe(&odd, Phase::Score, &mut out);
        detector.observe(&odd, Phase::Score, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn parameters_that_cannot_work_are_refused() {
        assert!(
            Params {
                max_components: 0,
                ..Params::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Params {
                refit_every: 0,
                ..Params::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Params {
                z_medium: 20.0,
                ..Params::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Params {
                far_low: 0.5,
                ..Params::default()
            }
            .check()
            .is_err()
        );
        assert!(Params::default().check().is_ok());
    }
}
