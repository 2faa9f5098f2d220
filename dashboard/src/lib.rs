//! # pipewatch-dashboard
//!
//! The web face of pipewatch: server-rendered pages behind sign-in, with
//! local users and roles ([`users`]), server-side sessions ([`sessions`]),
//! login throttling ([`throttle`]), an audit log ([`audit`]), saved queries
//! ([`saved`]), API tokens ([`tokens`]) and SVG charts ([`charts`]). [`router`] is the one `axum::Router` the binary serves.
//! [`pgwire`] serves the same read-only SQL to PostgreSQL clients (psql,
//! DBeaver, Grafana), signing users in with SCRAM-SHA-256.

pub mod audit;
pub mod charts;
pub mod pgwire;
pub mod saved;
pub mod sessions;
pub mod throttle;
pub mod tokens;
pub mod users;
mod web;

pub use web::{
    Access, DashboardError, DashboardSettings, LiveIngest, POLICY, ProxyAuth, router,
    security_headers, standalone,
};
