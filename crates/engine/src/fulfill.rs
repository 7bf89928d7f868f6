//! Fulfill dispatch: hands provisioning orders to a connection's package and returns one result
//! per order. Orders whose package cannot fulfill, or whose fulfill side is deactivated, are
//! refused before anything is sent.

use idlink_model::Configuration;
use idlink_packages::api::{
    ChangeType, FulfillRequest, OrderResult, OrderState, Progress, ProvisioningOrder,
};

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

/// Fills what the configuration knows and orders may leave out: an `Added` order without an
/// `objectClass` takes its resource type mapping's `DefaultObjectClass`.
pub fn with_mapping_defaults(config: &Configuration, orders: &mut [ProvisioningOrder]) {
    for order in orders
        .iter_mut()
        .filter(|o| o.change_type == ChangeType::Added)
    {
        let has_class = order
            .changes
            .keys()
            .any(|k| k.eq_ignore_ascii_case("objectClass"));
        let default = config
            .resource_type_mappings
            .iter()
            .find(|m| m.id.value == order.resource_type.identifier)
            .and_then(|m| m.attribute("DefaultObjectClass"));
        if let (false, Some(class)) = (has_class, default) {
            order.changes.insert(
                "objectClass".into(),
                serde_json::Value::String(class.value.clone()),
            );
        }
    }
}
