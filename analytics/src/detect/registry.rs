//! The closed registry of detectors: every detector has a variant here, a
//! parameter table in [`DetectorsConfig`] and one exhaustive `match` arm
//! that builds it. Adding a detector means one module and these three lines.

use serde::{Deserialize, Serialize};

use super::config::{DetectConfig, DetectorConfig, ParamError};
use super::{Detector, detectors};

/// Every detector pipewatch has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DetectorKind {
    /// Pipeline runs at hours unusual for that repository and actor (hour-of-week profiles).
    OffHoursRun,
    /// Workflows started by a trigger they never ran on, notably `pull_request_target` from forks.
    UnexpectedTrigger,
    /// Deployments from a non-default branch to an environment normally deployed from the default branch.
    NonDefaultBranchDeploy,
    /// An account suddenly touching far more repositories than it usually does.
    AccountBurst,
    /// Job duration, queue time, CPU, memory and egress far outside the job's own history.
    ResourceAnomaly,
    /// New package registries and new egress destinations for a job.
    EgressChange,
    /// Failed policy checks rising well above a repository's own failure rate.
    PolicyFailureSpike,
    /// A scan reporting far more new findings than that repository's scans usually do.
    FindingSpike,
    /// A secret read by an identity or pipeline that has never read it before.
    SecretNewConsumer,
    /// Secret reads outside the hours that identity usually reads them.
    SecretOffHours,
    /// One identity reading or listing many secret paths within minutes.
    SecretBulkRead,
    /// Bursts of denied secret reads by one identity.
    SecretDeniedBurst,
    /// A secret read with a long-lived static key where it is normally read through OIDC.
    StaticKeyWhereOidc,
    /// Use of a Vault root token.
    VaultRootToken,
    /// Deployments without approval to an environment whose deployments are normally approved.
    DeployWithoutApproval,
    /// All-at-once deployments of an application normally rolled out progressively.
    BigBangDeploy,
    /// Deployments shortly after a protection of that repository was removed.
    DeployAfterProtectionRemoved,
    /// Configuration changes that weaken protection: branch protection, audit streaming, security tooling, 2FA.
    ProtectionWeakened,
    /// Registration of self-hosted runners and jobs on runners never seen before.
    NewSelfHostedRunner,
    /// Creation of long-lived credentials (access keys, personal and project tokens).
    NewLongLivedToken,
    /// Jobs handling secrets on persistent runners where that job normally runs ephemeral.
    PersistentRunnerSecrets,
}

impl DetectorKind {
    /// Every detector, in registry order.
    pub const ALL: &'static [DetectorKind] = &[
        DetectorKind::OffHoursRun,
        DetectorKind::UnexpectedTrigger,
        DetectorKind::NonDefaultBranchDeploy,
        DetectorKind::AccountBurst,
        DetectorKind::ResourceAnomaly,
        DetectorKind::EgressChange,
        DetectorKind::PolicyFailureSpike,
        DetectorKind::FindingSpike,
        DetectorKind::SecretNewConsumer,
        DetectorKind::SecretOffHours,
        DetectorKind::SecretBulkRead,
        DetectorKind::SecretDeniedBurst,
        DetectorKind::StaticKeyWhereOidc,
        DetectorKind::VaultRootToken,
        DetectorKind::DeployWithoutApproval,
        DetectorKind::BigBangDeploy,
        DetectorKind::DeployAfterProtectionRemoved,
        DetectorKind::ProtectionWeakened,
        DetectorKind::NewSelfHostedRunner,
        DetectorKind::NewLongLivedToken,
        DetectorKind::PersistentRunnerSecrets,
    ];

    /// The registry name, as in `[detectors.<name>]` and the `detector` column.
    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::OffHoursRun => "off_hours_run",
            DetectorKind::UnexpectedTrigger => "unexpected_trigger",
            DetectorKind::NonDefaultBranchDeploy => "non_default_branch_deploy",
            DetectorKind::AccountBurst => "account_burst",
            DetectorKind::ResourceAnomaly => "resource_anomaly",
            DetectorKind::EgressChange => "egress_change",
            DetectorKind::PolicyFailureSpike => "policy_failure_spike",
            DetectorKind::FindingSpike => "finding_spike",
            DetectorKind::SecretNewConsumer => "secret_new_consumer",
            DetectorKind::SecretOffHours => "secret_off_hours",
            DetectorKind::SecretBulkRead => "secret_bulk_read",
            DetectorKind::SecretDeniedBurst => "secret_denied_burst",
            DetectorKind::StaticKeyWhereOidc => "static_key_where_oidc",
            DetectorKind::VaultRootToken => "vault_root_token",
            DetectorKind::DeployWithoutApproval => "deploy_without_approval",
            DetectorKind::BigBangDeploy => "big_bang_deploy",
            DetectorKind::DeployAfterProtectionRemoved => "deploy_after_protection_removed",
            DetectorKind::ProtectionWeakened => "protection_weakened",
            DetectorKind::NewSelfHostedRunner => "new_self_hosted_runner",
            DetectorKind::NewLongLivedToken => "new_long_lived_token",
            DetectorKind::PersistentRunnerSecrets => "persistent_runner_secrets",
        }
    }

    /// The detector with registry name `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }
}

/// One parameter table per detector (`[detectors.<name>]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorsConfig {
    pub off_hours_run: detectors::off_hours_run::Params,
    pub unexpected_trigger: detectors::unexpected_trigger::Params,
    pub non_default_branch_deploy: detectors::non_default_branch_deploy::Params,
    pub account_burst: detectors::account_burst::Params,
    pub resource_anomaly: detectors::resource_anomaly::Params,
    pub egress_change: detectors::egress_change::Params,
    pub policy_failure_spike: detectors::policy_failure_spike::Params,
    pub finding_spike: detectors::finding_spike::Params,
    pub secret_new_consumer: detectors::secret_new_consumer::Params,
    pub secret_off_hours: detectors::secret_off_hours::Params,
    pub secret_bulk_read: detectors::secret_bulk_read::Params,
    pub secret_denied_burst: detectors::secret_denied_burst::Params,
    pub static_key_where_oidc: detectors::static_key_where_oidc::Params,
    pub vault_root_token: detectors::vault_root_token::Params,
    pub deploy_without_approval: detectors::deploy_without_approval::Params,
    pub big_bang_deploy: detectors::big_bang_deploy::Params,
    pub deploy_after_protection_removed: detectors::deploy_after_protection_removed::Params,
    pub protection_weakened: detectors::protection_weakened::Params,
    pub new_self_hosted_runner: detectors::new_self_hosted_runner::Params,
    pub new_long_lived_token: detectors::new_long_lived_token::Params,
    pub persistent_runner_secrets: detectors::persistent_runner_secrets::Params,
}

impl DetectorsConfig {
    /// Checks every detector's parameters, enabled or not, so a disabled
    /// detector cannot hide a broken table until the day it is enabled.
    pub fn check(&self) -> Result<(), ParamError> {
        self.off_hours_run.check()?;
        self.unexpected_trigger.check()?;
        self.non_default_branch_deploy.check()?;
        self.account_burst.check()?;
        self.resource_anomaly.check()?;
        self.egress_change.check()?;
        self.policy_failure_spike.check()?;
        self.finding_spike.check()?;
        self.secret_new_consumer.check()?;
        self.secret_off_hours.check()?;
        self.secret_bulk_read.check()?;
        self.secret_denied_burst.check()?;
        self.static_key_where_oidc.check()?;
        self.vault_root_token.check()?;
        self.deploy_without_approval.check()?;
        self.big_bang_deploy.check()?;
        self.deploy_after_protection_removed.check()?;
        self.protection_weakened.check()?;
        self.new_self_hosted_runner.check()?;
        self.new_long_lived_token.check()?;
        self.persistent_runner_secrets.check()?;
        Ok(())
    }

    /// `(enabled, allow-list, detector)` for `kind`.
    fn build(&self, kind: DetectorKind) -> (bool, Vec<String>, Box<dyn Detector>) {
        match kind {
            DetectorKind::OffHoursRun => (
                self.off_hours_run.common().enabled,
                self.off_hours_run.allow.clone(),
                detectors::off_hours_run::build(self.off_hours_run.clone()),
            ),
            DetectorKind::UnexpectedTrigger => (
                self.unexpected_trigger.common().enabled,
                self.unexpected_trigger.allow.clone(),
                detectors::unexpected_trigger::build(self.unexpected_trigger.clone()),
            ),
            DetectorKind::NonDefaultBranchDeploy => (
                self.non_default_branch_deploy.common().enabled,
                self.non_default_branch_deploy.allow.clone(),
                detectors::non_default_branch_deploy::build(self.non_default_branch_deploy.clone()),
            ),
            DetectorKind::AccountBurst => (
                self.account_burst.common().enabled,
                self.account_burst.allow.clone(),
                detectors::account_burst::build(self.account_burst.clone()),
            ),
            DetectorKind::ResourceAnomaly => (
                self.resource_anomaly.common().enabled,
                self.resource_anomaly.allow.clone(),
                detectors::resource_anomaly::build(self.resource_anomaly.clone()),
            ),
            DetectorKind::EgressChange => (
                self.egress_change.common().enabled,
                self.egress_change.allow.clone(),
                detectors::egress_change::build(self.egress_change.clone()),
            ),
            DetectorKind::PolicyFailureSpike => (
                self.policy_failure_spike.common().enabled,
                self.policy_failure_spike.allow.clone(),
                detectors::policy_failure_spike::build(self.policy_failure_spike.clone()),
            ),
            DetectorKind::FindingSpike => (
                self.finding_spike.common().enabled,
                self.finding_spike.allow.clone(),
                detectors::finding_spike::build(self.finding_spike.clone()),
            ),
            DetectorKind::SecretNewConsumer => (
                self.secret_new_consumer.common().enabled,
                self.secret_new_consumer.allow.clone(),
                detectors::secret_new_consumer::build(self.secret_new_consumer.clone()),
            ),
            DetectorKind::SecretOffHours => (
                self.secret_off_hours.common().enabled,
                self.secret_off_hours.allow.clone(),
                detectors::secret_off_hours::build(self.secret_off_hours.clone()),
            ),
            DetectorKind::SecretBulkRead => (
                self.secret_bulk_read.common().enabled,
                self.secret_bulk_read.allow.clone(),
                detectors::secret_bulk_read::build(self.secret_bulk_read.clone()),
            ),
            DetectorKind::SecretDeniedBurst => (
                self.secret_denied_burst.common().enabled,
                self.secret_denied_burst.allow.clone(),
                detectors::secret_denied_burst::build(self.secret_denied_burst.clone()),
            ),
            DetectorKind::StaticKeyWhereOidc => (
                self.static_key_where_oidc.common().enabled,
                self.static_key_where_oidc.allow.clone(),
                detectors::static_key_where_oidc::build(self.static_key_where_oidc.clone()),
            ),
            DetectorKind::VaultRootToken => (
                self.vault_root_token.common().enabled,
                self.vault_root_token.allow.clone(),
                detectors::vault_root_token::build(self.vault_root_token.clone()),
            ),
            DetectorKind::DeployWithoutApproval => (
                self.deploy_without_approval.common().enabled,
                self.deploy_without_approval.allow.clone(),
                detectors::deploy_without_approval::build(self.deploy_without_approval.clone()),
            ),
            DetectorKind::BigBangDeploy => (
                self.big_bang_deploy.common().enabled,
                self.big_bang_deploy.allow.clone(),
                detectors::big_bang_deploy::build(self.big_bang_deploy.clone()),
            ),
            DetectorKind::DeployAfterProtectionRemoved => (
                self.deploy_after_protection_removed.common().enabled,
                self.deploy_after_protection_removed.allow.clone(),
                detectors::deploy_after_protection_removed::build(
                    self.deploy_after_protection_removed.clone(),
                ),
            ),
            DetectorKind::ProtectionWeakened => (
                self.protection_weakened.common().enabled,
                self.protection_weakened.allow.clone(),
                detectors::protection_weakened::build(self.protection_weakened.clone()),
            ),
            DetectorKind::NewSelfHostedRunner => (
                self.new_self_hosted_runner.common().enabled,
                self.new_self_hosted_runner.allow.clone(),
                detectors::new_self_hosted_runner::build(self.new_self_hosted_runner.clone()),
            ),
            DetectorKind::NewLongLivedToken => (
                self.new_long_lived_token.common().enabled,
                self.new_long_lived_token.allow.clone(),
                detectors::new_long_lived_token::build(self.new_long_lived_token.clone()),
            ),
            DetectorKind::PersistentRunnerSecrets => (
                self.persistent_runner_secrets.common().enabled,
                self.persistent_runner_secrets.allow.clone(),
                detectors::persistent_runner_secrets::build(self.persistent_runner_secrets.clone()),
            ),
        }
    }
}

/// A built detector with its allow-list.
#[derive(Debug)]
pub struct BuiltDetector {
    pub kind: DetectorKind,
    pub allow: Vec<String>,
    pub detector: Box<dyn Detector>,
}

/// Checks the configuration and builds every enabled detector.
pub fn build_detectors(config: &DetectConfig) -> Result<Vec<BuiltDetector>, ParamError> {
    config.check()?;
    Ok(DetectorKind::ALL
        .iter()
        .filter_map(|&kind| {
            let (enabled, allow, detector) = config.detectors.build(kind);
            enabled.then_some(BuiltDetector {
                kind,
                allow,
                detector,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_detector_is_named_once_and_built_under_its_own_name() {
        let built = build_detectors(&DetectConfig::default()).expect("defaults are valid");
        assert_eq!(built.len(), DetectorKind::ALL.len());
        for b in &built {
            assert_eq!(b.detector.name(), b.kind.name());
            assert_eq!(DetectorKind::parse(b.kind.name()), Some(b.kind));
        }
    }

    #[test]
    fn a_disabled_detector_is_not_built_and_unknown_tables_are_refused() {
        let config = DetectConfig::from_toml("[detectors.vault_root_token]\nenabled = false\n")
            .expect("valid");
        let built = build_detectors(&config).expect("builds");
        assert!(built.iter().all(|b| b.kind != DetectorKind::VaultRootToken));
        let error = DetectConfig::from_toml("[detectors.no_such_detector]\nenabled = true\n")
            .expect_err("refused");
        assert!(error.to_string().contains("no_such_detector"), "{error}");
    }
}
