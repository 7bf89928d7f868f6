//! The store's test suite: every case runs on both backends, a SQLite file in a temporary
//! folder and a database of its own on a private PostgreSQL server (test-support).

mod agents;
mod lock;
mod open;
mod resources;
mod schedule;
mod schemas;
mod support;
mod users;
