//! # pipewatch-dashboard
//!
//! The web face of pipewatch: pages, the JSON and SQL API, authentication
//! and roles. It sits on top of `pipewatch-analytics` and exposes one
//! `axum::Router` to the binary. Nothing is served yet; the command line
//! (`pipewatch sql`) is the way to read the lake today.
