//! Fulfill dispatch: hands provisioning orders to a connection's package and returns one result
//! per order. Orders whose package cannot fulfill, or whose fulfill side is deactivated, are
//! refused before anything is sent; an order for a resource type the configuration does not
//! declare is Errored and nothing is sent for it.

use std::sync::Arc;

use idlink_model::Configuration;
use idlink_packages::api::{
    ChangeType, FulfillRequest, OrderResult, OrderState, Progress, ProvisioningOrder,
};

use crate::EngineError;
use crate::connection::Opened;

impl Opened {
    /// Runs `orders` through the connection (or plans them with `dry_run`). Results come in
    /// the orders' order, one per order.
    pub async fn fulfill(
        &self,
        mut orders: Vec<ProvisioningOrder>,
        dry_run: bool,
        progress: Arc<dyn Progress>,
    ) -> Result<Vec<OrderResult>, EngineError> {
        let id = self.id().to_string();
        let fulfill = self
            .instance
            .fulfill()
            .ok_or_else(|| self.unsupported("fulfill"))?;
        if !self.connection().fulfill_enabled() && !dry_run {
            return Err(EngineError::FulfillDeactivated { connection: id });
        }
        let config = &self.engine().checked().config;
        with_mapping_defaults(config, &mut orders);
        // Orders for resource types the configuration does not declare are refused one by one.
        let mut results: Vec<Option<OrderResult>> = vec![None; orders.len()];
        let mut sent = Vec::with_capacity(orders.len());
        let mut positions = Vec::with_capacity(orders.len());
        for (i, order) in orders.into_iter().enumerate() {
            let rt = &order.resource_type.identifier;
            // Resource type identifiers are case-sensitive (only connections' are not), as
            // the mapping defaults above look them up.
            if config.resource_type(rt).is_some() {
                positions.push(i);
                sent.push(order);
            } else {
                let known: Vec<&str> = config
                    .resource_types
                    .iter()
                    .map(|r| r.id.value.as_str())
                    .collect();
                let hint = idlink_model::diag::did_you_mean(rt, known.iter().copied())
                    .map(|s| format!("; did you mean '{s}'?"))
                    .unwrap_or_default();
                results[i] = Some(OrderResult {
                    index: i,
                    id: order.id.clone(),
                    state: OrderState::Errored,
                    message: format!(
                        "resource type '{rt}' is not declared in the configuration{hint}; nothing was sent for this order"
                    ),
                    operations: Vec::new(),
                });
            }
        }
        progress.phase(&format!(
            "{} {} orders through {id}",
            if dry_run { "planning" } else { "fulfilling" },
            sent.len()
        ));
        if !sent.is_empty() {
            let request = FulfillRequest {
                orders: &sent,
                dry_run,
                progress: &*progress,
            };
            let package_results = fulfill.fulfill(&request).await?;
            if package_results.len() != sent.len() {
                return Err(EngineError::Contract(format!(
                    "connection '{id}': the package returned {} results for {} orders",
                    package_results.len(),
                    sent.len()
                )));
            }
            for (mut r, &i) in package_results.into_iter().zip(&positions) {
                r.index = i;
                results[i] = Some(r);
            }
        }
        let results: Vec<OrderResult> = results.into_iter().flatten().collect();
        let errored = results
            .iter()
            .filter(|r| r.state == OrderState::Errored)
            .count();
        tracing::info!(
            connection = %id,
            orders = results.len(),
            errored,
            dry_run,
            "fulfill done"
        );
        Ok(results)
    }
}

/// Fills what the configuration knows and orders may leave out, from the resource type
/// mapping's `DefaultObjectClass` ("the default object class used by the provisioner"):
/// - every order (Added, Modified, Deleted) that names none carries it as
///   `ResourceType.DefaultObjectClass`, so that a package finds where the resource lives (a
///   SCIM order for a `Groups` resource type goes to `/Groups`, not to `/Users`);
/// - an `Added` order without an `objectClass` change also gets it as `Changes.objectClass`
///   (the classes the new entry is created with). `Modified` and `Deleted` orders do not: the
///   object class is not one of their changes.
pub fn with_mapping_defaults(config: &Configuration, orders: &mut [ProvisioningOrder]) {
    for order in orders.iter_mut() {
        let default = config
            .resource_type_mappings
            .iter()
            .find(|m| m.id.value == order.resource_type.identifier)
            .and_then(|m| m.attribute("DefaultObjectClass"))
            .map(|class| class.value.clone())
            .filter(|class| !class.trim().is_empty());
        let Some(class) = default else { continue };
        if order
            .resource_type
            .default_object_class
            .as_deref()
            .is_none_or(|c| c.trim().is_empty())
        {
            order.resource_type.default_object_class = Some(class.clone());
        }
        let has_class = order
            .changes
            .keys()
            .any(|k| k.eq_ignore_ascii_case("objectClass"));
        if order.change_type == ChangeType::Added && !has_class {
            order
                .changes
                .insert("objectClass".into(), serde_json::Value::String(class));
        }
    }
}
