//! The server's test suite: handlers through `oneshot` on the whole router (authentication,
//! CSRF and security headers included), over a SQLite store and a copy of the quickstart.

mod agents;
mod api;
mod auth;
mod browser;
mod cache;
mod edit;
mod http;
mod jobs;
mod mappings;
mod openapi;
mod scheduler;
mod support;
mod tokens;
mod ui;
mod watcher;
