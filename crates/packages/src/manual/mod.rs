//! Manual provisioning: `Usercube.Manual`. Each order becomes a ticket for a person: the
//! package answers `Transmitted` with what the person has to do, and the order stays open until
//! the ticket is closed (`idlink tickets complete`, or the server's tickets page) as Executed
//! or Errored. Nothing is sent anywhere, so a dry run and a real run plan the same words.

pub mod settings;

use async_trait::async_trait;

use crate::api::{
    Environment, Fulfill, FulfillRequest, Instance, OrderResult, OrderState, PackageError,
};

use idlink_model::package::{Availability, Capabilities, PackageInfo};

/// `Usercube.Manual@0000001`: each order opens a ticket for a person to carry out.
pub static MANUAL: PackageInfo = PackageInfo {
    id: "Usercube.Manual@0000001",
    display_name: "Ticket/manual",
    capabilities: Capabilities {
        export: false,
        fulfill: true,
        incremental: false,
        schema: false,
    },
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// Checks settings (there are none) and returns the package ready to run.
pub fn instantiate(
    package: &PackageInfo,
    settings: serde_json::Value,
    env: Environment,
) -> Result<Box<dyn Instance>, PackageError> {
    let _ = (package, settings);
    Ok(Box::new(Manual { env }))
}

struct Manual {
    env: Environment,
}

impl Instance for Manual {
    fn fulfill(&self) -> Option<&dyn Fulfill> {
        Some(self)
    }
}

#[async_trait]
impl Fulfill for Manual {
    async fn fulfill(
        &self,
        request: &FulfillRequest<'_>,
    ) -> Result<Vec<OrderResult>, PackageError> {
        let mut out = Vec::with_capacity(request.orders.len());
        for (index, order) in request.orders.iter().enumerate() {
            let task = ticket_text(order);
            out.push(OrderResult {
                index,
                id: order.id.clone(),
                state: OrderState::Transmitted,
                message: format!("ticket opened ({}): {task}", self.env.connection),
                operations: vec![task],
            });
        }
        Ok(out)
    }
}

/// What the person has to do, in one line: the change, the resource, the values.
pub fn ticket_text(order: &crate::api::ProvisioningOrder) -> String {
    use crate::api::ChangeType;
    let owner = order
        .owner
        .as_ref()
        .and_then(|o| o.get("Identifier"))
        .and_then(|v| v.as_str())
        .map(|o| format!(" for owner '{o}'"))
        .unwrap_or_default();
    let verb = match order.change_type {
        ChangeType::Added => "create",
        ChangeType::Modified => "change",
        ChangeType::Deleted => "delete",
    };
    let changes: Vec<String> = order
        .changes
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k} = {s}"),
            serde_json::Value::Null => format!("{k} cleared"),
            other => format!("{k} = {other}"),
        })
        .collect();
    let values = if changes.is_empty() {
        String::new()
    } else {
        format!(": {}", changes.join(", "))
    };
    format!(
        "{verb} a {} resource{owner}{values}",
        order.resource_type.identifier
    )
}
