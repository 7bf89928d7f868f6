//! Writing the order files.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::api::{
    Environment, Fulfill, FulfillRequest, Instance, OrderResult, OrderState, OrdersFile,
    PackageError,
};
use crate::output::write_atomic;

pub(crate) struct JsonFiles {
    pub folder: PathBuf,
    pub env: Environment,
}

impl Instance for JsonFiles {
    fn fulfill(&self) -> Option<&dyn Fulfill> {
        Some(self)
    }
}

/// A file-name-safe form of an order id.
fn file_part(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[async_trait]
impl Fulfill for JsonFiles {
    async fn fulfill(
        &self,
        request: &FulfillRequest<'_>,
    ) -> Result<Vec<OrderResult>, PackageError> {
        let folder = if request.dry_run {
            self.env.roots.check_for_write(&self.folder)?
        } else {
            self.env.roots.create_dir(&self.folder)?
        };
        let mut results = Vec::with_capacity(request.orders.len());
        for (index, order) in request.orders.iter().enumerate() {
            let name = match &order.id {
                Some(id) => format!("{}_{}.json", self.env.connection, file_part(id)),
                None => format!("{}_{index:06}.json", self.env.connection),
            };
            let path = folder.join(name);
            let operation = format!(
                "write {} ({:?} {})",
                path.display(),
                order.change_type,
                order.resource_type.identifier
            );
            let (state, message) = if request.dry_run {
                (OrderState::Executed, "dry run: nothing written".to_string())
            } else {
                let body = OrdersFile {
                    orders: vec![order.clone()],
                };
                match serde_json::to_vec_pretty(&body)
                    .map_err(std::io::Error::other)
                    .and_then(|b| write_atomic(&path, &b))
                {
                    Ok(()) => (
                        OrderState::Executed,
                        format!("written to {}", path.display()),
                    ),
                    Err(e) => (
                        OrderState::Errored,
                        format!("cannot write {}: {e}", path.display()),
                    ),
                }
            };
            results.push(OrderResult {
                index,
                id: order.id.clone(),
                state,
                message,
                operations: vec![operation],
            });
            request.progress.rows(&self.env.connection, 1);
        }
        Ok(results)
    }
}
