//! # pipewatch-dashboard
//!
//! The web face of pipewatch: pages, the JSON and SQL API, authentication
//! and roles. It sits on top of `pipewatch-analytics` and exposes one
//! `axum::Router` to the binary. So far it holds the local users and their
//! roles ([`users`]); pages follow.

pub mod users;
