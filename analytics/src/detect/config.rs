//! Detection configuration: the `[detect]` settings and one table of
//! parameters per detector (`[detectors.<name>]`), read from TOML and
//! checked before any detector is built.

use serde::{Deserialize, Serialize};

use super::registry::DetectorsConfig;

/// A parameter that cannot work, named with its detector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("detector {detector}: parameter {param} {reason}")]
pub struct ParamError {
    pub detector: &'static str,
    pub param: &'static str,
    pub reason: String,
}

impl ParamError {
    /// A parameter error for `detector`.
    pub fn new(detector: &'static str, param: &'static str, reason: impl Into<String>) -> Self {
        ParamError {
            detector,
            param,
            reason: reason.into(),
        }
    }
}

/// The settings every detector's parameters carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonParams<'a> {
    /// Whether the detector runs at all.
    pub enabled: bool,
    /// Entities never reported (exact names, or a prefix ending in `*`).
    pub allow: &'a [String],
}

impl CommonParams<'_> {
    /// Whether `entity` is on the allow-list.
    pub fn allows(&self, entity: &str) -> bool {
        self.allow
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => entity.starts_with(prefix),
                None => entity == pattern,
            })
    }
}

/// Parameters of one detector: unchecked until [`DetectorConfig::check`]
/// says they can work.
pub trait DetectorConfig: std::fmt::Debug + Default + Clone {
    /// `enabled` and the allow-list.
    fn common(&self) -> CommonParams<'_>;
    /// Refuses values the detector cannot work with (zero windows,
    /// probabilities outside 0..1, thresholds below their floor).
    fn check(&self) -> Result<(), ParamError>;
}

/// Everything `pipewatch detect` and the live service need to know about
/// detection, as read from the `[detect]` and `[detectors.*]` tables.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    pub detect: EngineParams,
    pub detectors: DetectorsConfig,
}

/// Settings of the engine itself.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineParams {
    /// History replayed to warm baselines up before `--since`, in days.
    pub learning_window_days: u32,
    /// Findings of one detector about one entity closer than this are one alert.
    pub group_window_minutes: u32,
    /// Events the engine reads and scores at a time during backfill.
    pub batch_events: usize,
}

impl Default for EngineParams {
    fn default() -> Self {
        EngineParams {
            learning_window_days: 30,
            group_window_minutes: 60,
            batch_events: 50_000,
        }
    }
}

impl DetectConfig {
    /// Parses a TOML document (the whole configuration file; tables other
    /// than `[detect]` and `[detectors]` are refused here, so callers pass
    /// only the detection part) and checks every parameter.
    pub fn from_toml(text: &str) -> Result<Self, ParamError> {
        let config: DetectConfig =
            toml::from_str(text).map_err(|e| ParamError::new("config", "toml", e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// The configuration as TOML, every setting spelled out.
    pub fn to_toml(&self) -> Result<String, ParamError> {
        toml::to_string(self).map_err(|e| ParamError::new("config", "toml", e.to_string()))
    }

    /// Checks the engine settings and every detector's parameters.
    pub fn check(&self) -> Result<(), ParamError> {
        if self.detect.learning_window_days == 0 {
            return Err(ParamError::new(
                "engine",
                "learning_window_days",
                "must be at least 1",
            ));
        }
        if self.detect.group_window_minutes == 0 {
            return Err(ParamError::new(
                "engine",
                "group_window_minutes",
                "must be at least 1",
            ));
        }
        if self.detect.batch_events == 0 {
            return Err(ParamError::new(
                "engine",
                "batch_events",
                "must be at least 1",
            ));
        }
        self.detectors.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example configuration shipped with pipewatch spells out every
    /// detection setting at its default, so it cannot drift from the code.
    #[test]
    fn the_example_configuration_spells_out_the_defaults() {
        let example = include_str!("../../../deploy/config/pipewatch.example.toml");
        // The file also configures the service; detection is its
        // `[detect]` and `[detectors]` tables.
        let mut table: toml::Table = example.parse().expect("the example is TOML");
        table.retain(|key, _| key == "detect" || key == "detectors");
        let detection = toml::to_string(&table).expect("serializes");
        let parsed = DetectConfig::from_toml(&detection).expect("the example parses and checks");
        assert_eq!(parsed, DetectConfig::default());
        let written = DetectConfig::default().to_toml().expect("serializes");
        assert_eq!(
            DetectConfig::from_toml(&written).expect("round trip"),
            parsed
        );
    }

    #[test]
    fn unusable_engine_settings_are_refused_by_name() {
        let error =
            DetectConfig::from_toml("[detect]\ngroup_window_minutes = 0\n").expect_err("refused");
        assert_eq!(error.param, "group_window_minutes");
        let error =
            DetectConfig::from_toml("[detect]\nlearning_window = 3\n").expect_err("refused");
        assert!(error.to_string().contains("learning_window"), "{error}");
    }
}
