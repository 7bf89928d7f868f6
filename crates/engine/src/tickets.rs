//! Tickets: orders handed to a `Usercube.Manual` connection wait, `Transmitted`, for a person
//! to carry them out and close them as Executed (done) or Errored (could not be done, and why).

use idlink_store::{OrderFilter, OrderState, OrderUpdate, Store, StoredOrder};

use crate::{Engine, EngineError};

/// The identifier of the manual provisioning package.
pub const MANUAL_PACKAGE: &str = "Usercube.Manual@0000001";

/// The connections whose package is the manual one (lower-cased identifiers).
fn manual_connections(engine: &Engine) -> Vec<String> {
    engine
        .checked()
        .config
        .connections
        .iter()
        .filter(|c| c.package.value.eq_ignore_ascii_case(MANUAL_PACKAGE))
        .map(|c| c.id.value.to_ascii_lowercase())
        .collect()
}

fn is_ticket(manual: &[String], o: &StoredOrder) -> bool {
    o.connection
        .as_ref()
        .is_some_and(|c| manual.contains(&c.to_ascii_lowercase()))
}

/// The open tickets (or, with `all`, the closed ones too), oldest first.
pub async fn list(
    engine: &Engine,
    store: &Store,
    all: bool,
) -> Result<Vec<StoredOrder>, EngineError> {
    let manual = manual_connections(engine);
    if manual.is_empty() {
        return Ok(Vec::new());
    }
    let states = if all {
        vec![
            OrderState::Transmitted,
            OrderState::Executed,
            OrderState::Errored,
            OrderState::Verified,
        ]
    } else {
        vec![OrderState::Transmitted]
    };
    let orders = store
        .orders(&OrderFilter {
            states,
            ..OrderFilter::default()
        })
        .await?;
    Ok(orders
        .into_iter()
        .filter(|o| is_ticket(&manual, o))
        .collect())
}

/// Closes ticket `id`: Executed, or Errored with `error`. Returns the new state.
pub async fn complete(
    engine: &Engine,
    store: &Store,
    id: i64,
    error: Option<&str>,
) -> Result<OrderState, EngineError> {
    let Some(order) = store.order(id).await? else {
        return Err(EngineError::Data(format!("there is no ticket #{id}")));
    };
    if !is_ticket(&manual_connections(engine), &order) {
        return Err(EngineError::Data(format!(
            "order {id} is not a ticket: its connection ({}) is not a {MANUAL_PACKAGE} connection",
            order.connection.as_deref().unwrap_or("none")
        )));
    }
    if order.state != OrderState::Transmitted {
        return Err(EngineError::Data(format!(
            "ticket #{id} is not open: it is {}",
            order.state
        )));
    }
    let (state, message) = match error.map(str::trim) {
        Some("") => {
            return Err(EngineError::Data(
                "--error needs a message: say why it could not be done".into(),
            ));
        }
        Some(e) => (OrderState::Errored, format!("ticket closed as failed: {e}")),
        None => (OrderState::Executed, "ticket closed as done".to_string()),
    };
    // Only if still open: two people closing one ticket do not both succeed.
    let moved = store
        .claim_orders(&[id], OrderState::Transmitted, state)
        .await?;
    if moved.is_empty() {
        return Err(EngineError::Data(format!(
            "ticket #{id} was closed by someone else meanwhile"
        )));
    }
    store
        .update_orders(&[OrderUpdate { id, state, message }])
        .await?;
    Ok(state)
}
