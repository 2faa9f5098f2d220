//! Shared by the analytics integration tests.

pub(crate) mod provider;
