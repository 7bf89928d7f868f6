//! Prometheus metrics at `/metrics`: exports, schema refreshes and connection checks by
//! connection and outcome, their durations, and errors by connection, operation and kind.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    connection: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Conn {
    connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Failure {
    connection: String,
    operation: String,
    kind: String,
}

type Durations = Family<Conn, Histogram, fn() -> Histogram>;

fn durations() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    exports: Family<Outcome, Counter>,
    refreshes: Family<Outcome, Counter>,
    checks: Family<Outcome, Counter>,
    export_seconds: Durations,
    refresh_seconds: Durations,
    errors: Family<Failure, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What one operation is, for [`Metrics::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Export,
    RefreshSchema,
    CheckConnection,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Export => "export",
            Operation::RefreshSchema => "refresh-schema",
            Operation::CheckConnection => "check-connection",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("idlink");
        let exports = Family::<Outcome, Counter>::default();
        let refreshes = Family::<Outcome, Counter>::default();
        let checks = Family::<Outcome, Counter>::default();
        let export_seconds = Durations::new_with_constructor(durations);
        let refresh_seconds = Durations::new_with_constructor(durations);
        let errors = Family::<Failure, Counter>::default();
        registry.register(
            "exports",
            "Exports run, by connection and outcome",
            exports.clone(),
        );
        registry.register(
            "schema_refreshes",
            "Schema refreshes run, by connection and outcome",
            refreshes.clone(),
        );
        registry.register(
            "connection_checks",
            "Connection checks run, by connection and outcome",
            checks.clone(),
        );
        registry.register(
            "export_duration_seconds",
            "How long exports took",
            export_seconds.clone(),
        );
        registry.register(
            "schema_refresh_duration_seconds",
            "How long schema refreshes took",
            refresh_seconds.clone(),
        );
        registry.register(
            "errors",
            "Failed operations, by connection, operation and kind of error",
            errors.clone(),
        );
        Metrics {
            registry,
            exports,
            refreshes,
            checks,
            export_seconds,
            refresh_seconds,
            errors,
        }
    }
}

impl Metrics {
    /// Counts one operation on `connection`: its outcome, its duration and, when it failed,
    /// the kind of error.
    pub fn record(
        &self,
        op: Operation,
        connection: &str,
        took: Duration,
        failure: Option<idlink_engine::ErrorKind>,
    ) {
        let outcome = Outcome {
            connection: connection.to_string(),
            outcome: if failure.is_some() { "failed" } else { "ok" }.into(),
        };
        let conn = Conn {
            connection: connection.to_string(),
        };
        match op {
            Operation::Export => {
                self.exports.get_or_create(&outcome).inc();
                self.export_seconds
                    .get_or_create(&conn)
                    .observe(took.as_secs_f64());
            }
            Operation::RefreshSchema => {
                self.refreshes.get_or_create(&outcome).inc();
                self.refresh_seconds
                    .get_or_create(&conn)
                    .observe(took.as_secs_f64());
            }
            Operation::CheckConnection => {
                self.checks.get_or_create(&outcome).inc();
            }
        }
        if let Some(kind) = failure {
            self.errors
                .get_or_create(&Failure {
                    connection: connection.to_string(),
                    operation: op.name().into(),
                    kind: kind.to_string(),
                })
                .inc();
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// `GET /metrics`.
pub async fn handler(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().encode(),
    )
        .into_response()
}
