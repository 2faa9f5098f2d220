//! One module per detector; the registry in `registry.rs` lists them all.

pub mod account_burst;
pub mod big_bang_deploy;
pub mod deploy_after_protection_removed;
pub mod deploy_without_approval;
pub mod egress_change;
pub mod finding_spike;
pub mod new_long_lived_token;
pub mod new_self_hosted_runner;
pub mod non_default_branch_deploy;
pub mod off_hours_run;
pub mod persistent_runner_secrets;
pub mod policy_failure_spike;
pub mod protection_weakened;
pub mod resource_anomaly;
pub mod secret_bulk_read;
pub mod secret_denied_burst;
pub mod secret_new_consumer;
pub mod secret_off_hours;
pub mod static_key_where_oidc;
pub mod unexpected_trigger;
pub mod vault_root_token;
