//! Fulfill dispatch: hands provisioning orders to a connection's package and returns one result
//! per order. Orders whose package cannot fulfill, or whose fulfill side is deactivated, are
//! refused before anything is sent.

use idlink_packages::api::{FulfillRequest, OrderResult, OrderState, Progress, ProvisioningOrder};

use crate::EngineError;
use crate::connection::OpenConnection;

/// Runs `orders` through the connection (or plans them with `dry_run`).
pub async fn run_fulfill(
    open: &OpenConnection<'_>,
    orders: &[ProvisioningOrder],
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<Vec<OrderResult>, EngineError> {
    let id = open.connection.id.value.as_str();
    let fulfill = open
        .instance
        .fulfill()
        .ok_or_else(|| EngineError::Unsupported {
            connection: id.to_string(),
            package: open.package.id.to_string(),
            capability: "fulfill",
        })?;
    if !open.connection.fulfill_enabled() && !dry_run {
        return Err(EngineError::FulfillDeactivated {
            connection: id.to_string(),
        });
    }
    progress.phase(&format!(
        "{} {} orders through {id}",
        if dry_run { "planning" } else { "fulfilling" },
        orders.len()
    ));
    let request = FulfillRequest {
        orders,
        dry_run,
        progress,
    };
    let results = fulfill.fulfill(&request).await?;
    if results.len() != orders.len() {
        return Err(EngineError::Contract(format!(
            "connection '{id}': the package returned {} results for {} orders",
            results.len(),
            orders.len()
        )));
    }
    let errored = results
        .iter()
        .filter(|r| r.state == OrderState::Errored)
        .count();
    tracing::info!(
        connection = id,
        orders = orders.len(),
        errored,
        dry_run,
        "fulfill done"
    );
    Ok(results)
}
