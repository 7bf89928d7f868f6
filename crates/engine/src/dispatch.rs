//! Fulfill from the store (SPEC §6): the Pending orders go to the connection their resource
//! type mapping names, in batches; each result is recorded (Executed, Errored, or Transmitted
//! for a ticket). Orders are claimed (Pending → Transmitted) before they are sent, so two
//! fulfills never send one order twice; an order whose batch could not be sent at all goes
//! back to Pending when a retry may help.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idlink_packages::api::{OrderState as Sent, Progress, ProvisioningOrder};
use idlink_store::{OrderFilter, OrderState, OrderUpdate, Store, StoredOrder};
use serde::Serialize;

use crate::provision::mapping_connection;
use crate::{Engine, EngineError};

/// Orders per batch when the task does not say (`BatchSize`).
pub const DEFAULT_BATCH_SIZE: u32 = 500;

/// Which pending orders to send, and how.
#[derive(Debug, Clone, Default)]
pub struct DispatchOptions {
    /// Only the orders of this connection (the `FulfillTask`'s `Connection`, or
    /// `idlink fulfill --connection`).
    pub connection: Option<String>,
    /// Only the orders of these resource types (empty: all).
    pub resource_types: Vec<String>,
    pub batch_size: Option<u32>,
    /// List what would be sent; change nothing.
    pub dry_run: bool,
    /// Carries the orders of connections on other agents; without it, every connection's
    /// orders are sent from this process.
    pub agents: Option<Arc<dyn crate::agents::RemoteAgents>>,
}

/// Where a connection's orders go: its package in this process, or its remote agent.
enum Sender<'a> {
    Local(crate::Opened),
    Remote {
        agents: &'a Arc<dyn crate::agents::RemoteAgents>,
        agent: String,
        connection: String,
    },
}

impl Sender<'_> {
    async fn fulfill(
        &self,
        orders: Vec<ProvisioningOrder>,
        dry_run: bool,
        progress: Arc<dyn Progress>,
    ) -> Result<Vec<idlink_packages::api::OrderResult>, EngineError> {
        match self {
            Sender::Local(opened) => opened.fulfill(orders, dry_run, progress).await,
            Sender::Remote {
                agents,
                agent,
                connection,
            } => agents.fulfill(agent, connection, orders, dry_run).await,
        }
    }

    /// Hides the connection's secrets (a remote agent hid them before answering: this
    /// process never holds them).
    fn redact(&self, text: &str) -> String {
        match self {
            Sender::Local(opened) => opened.redact(text),
            Sender::Remote { .. } => text.to_string(),
        }
    }
}

/// One order's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct OrderOutcome {
    pub id: i64,
    pub resource_type: String,
    pub change_type: String,
    pub owner: Option<String>,
    pub target: Option<String>,
    /// Executed, Errored or Transmitted; in a dry run, what would be.
    pub state: String,
    pub message: String,
    /// What was (or would be) sent, one line each, secrets redacted.
    pub operations: Vec<String>,
}

/// What one connection did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectionDispatch {
    pub connection: String,
    pub package: String,
    pub orders: u64,
    pub executed: u64,
    pub errored: u64,
    pub transmitted: u64,
    /// Orders put back to Pending because their batch could not be sent.
    pub not_sent: u64,
    /// Why the connection stopped before its last batch.
    pub failure: Option<String>,
    pub outcomes: Vec<OrderOutcome>,
}

/// The run's report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DispatchReport {
    pub dry_run: bool,
    pub connections: Vec<ConnectionDispatch>,
    /// Pending orders no connection can take (no resource type mapping), Errored.
    pub unroutable: u64,
    #[serde(serialize_with = "crate::secs")]
    pub duration: Duration,
}

impl DispatchReport {
    pub fn errored(&self) -> u64 {
        self.unroutable
            + self
                .connections
                .iter()
                .map(|c| c.errored + c.not_sent)
                .sum::<u64>()
    }
}

impl Engine {
    /// Sends the pending orders `options` selects and records each result.
    pub async fn fulfill_pending(
        &self,
        store: &Store,
        options: &DispatchOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<DispatchReport, EngineError> {
        let started = Instant::now();
        let config = &self.checked().config;
        if let Some(c) = &options.connection {
            // An unknown connection is an error, not an empty run.
            if self.remote_agent(options, c).is_some() {
                if config.connection(c).is_none() {
                    self.open(c)?;
                }
            } else {
                self.open(c)?;
            }
        }
        // Transmitted orders too: those a killed fulfill left behind are sent again (below).
        let pending = store
            .orders(&OrderFilter {
                states: vec![OrderState::Pending, OrderState::Transmitted],
                resource_types: options.resource_types.clone(),
                ..OrderFilter::default()
            })
            .await?;
        let mut report = DispatchReport {
            dry_run: options.dry_run,
            ..DispatchReport::default()
        };
        // By the connection the mapping names now (the configuration may have changed since
        // the orders were generated).
        let mut by_connection: BTreeMap<String, Vec<StoredOrder>> = BTreeMap::new();
        let mut unroutable = Vec::new();
        let is_manual = |c: &str| {
            config
                .connection(c)
                .is_some_and(|x| x.package.value == crate::tickets::MANUAL_PACKAGE)
        };
        for o in pending {
            if o.state == OrderState::Transmitted {
                // Only orders a fulfill of this same connection left behind; tickets wait.
                let same = mapping_connection(config, &o.resource_type).is_some_and(|c| {
                    o.connection
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case(&c))
                        && !is_manual(&c)
                });
                if !same {
                    continue;
                }
            }
            match mapping_connection(config, &o.resource_type) {
                Some(c) => {
                    let wanted = options
                        .connection
                        .as_ref()
                        .is_none_or(|w| w.eq_ignore_ascii_case(&c));
                    if wanted {
                        by_connection.entry(c).or_default().push(o);
                    }
                }
                None if options.connection.is_none() => unroutable.push(o),
                None => {}
            }
        }
        if !options.dry_run && !unroutable.is_empty() {
            report.unroutable = unroutable.len() as u64;
            let updates: Vec<OrderUpdate> = unroutable
                .iter()
                .map(|o| OrderUpdate {
                    id: o.id,
                    state: OrderState::Errored,
                    message: format!(
                        "resource type '{}' has no resource type mapping naming a connection; nothing was sent",
                        o.resource_type
                    ),
                })
                .collect();
            store.update_orders(&updates).await?;
        }
        let batch = options.batch_size.unwrap_or(DEFAULT_BATCH_SIZE).max(1) as usize;
        for (connection, orders) in by_connection {
            let r = self
                .dispatch_connection(store, &connection, orders, batch, options, &progress)
                .await?;
            report.connections.push(r);
        }
        report.duration = started.elapsed();
        Ok(report)
    }

    /// The remote agent `connection`'s orders go to, when `options` carries agents and the
    /// connection runs on one.
    fn remote_agent(&self, options: &DispatchOptions, connection: &str) -> Option<String> {
        let agents = options.agents.as_ref()?;
        self.remote_agent_of(connection, None, agents.local_agent())
    }

    async fn dispatch_connection(
        &self,
        store: &Store,
        connection: &str,
        orders: Vec<StoredOrder>,
        batch: usize,
        options: &DispatchOptions,
        progress: &Arc<dyn Progress>,
    ) -> Result<ConnectionDispatch, EngineError> {
        let dry_run = options.dry_run;
        let mut r = ConnectionDispatch {
            connection: connection.to_string(),
            orders: orders.len() as u64,
            ..ConnectionDispatch::default()
        };
        let sender = match (self.remote_agent(options, connection), &options.agents) {
            (Some(agent), Some(agents)) => {
                r.package = self
                    .checked()
                    .config
                    .connection(connection)
                    .map(|c| c.package.value.clone())
                    .unwrap_or_default();
                Sender::Remote {
                    agents,
                    agent,
                    connection: connection.to_string(),
                }
            }
            _ => match self.open(connection) {
                Ok(o) => {
                    r.package = o.package.id.to_string();
                    Sender::Local(o)
                }
                Err(e) => {
                    // The orders wait: the connection cannot be opened (settings, package).
                    r.failure = Some(e.to_string());
                    r.not_sent = orders.len() as u64;
                    return Ok(r);
                }
            },
        };
        let opened = &sender;
        // Transmitted orders here are those a killed fulfill left (`fulfill_pending` keeps no
        // ticket: those wait for a person).
        let (pending, stranded): (Vec<StoredOrder>, Vec<StoredOrder>) = orders
            .into_iter()
            .partition(|o| o.state == OrderState::Pending);
        if dry_run {
            let mut all = pending;
            all.extend(stranded);
            all.sort_by_key(|o| o.id);
            return self
                .dispatch_batches(store, opened, all, batch, true, progress, r)
                .await;
        }
        // One fulfill per connection at a time; orders a killed fulfill left Transmitted are
        // sent again (fulfill is idempotent).
        let lock = store
            .lock_connector(&format!("fulfill:{connection}"), "fulfill")
            .await?;
        let mut orders = pending;
        if !stranded.is_empty() {
            let ids: Vec<i64> = stranded.iter().map(|o| o.id).collect();
            let back = store
                .claim_orders(&ids, OrderState::Transmitted, OrderState::Pending)
                .await?;
            tracing::warn!(
                connection,
                orders = back.len(),
                "orders left Transmitted by an interrupted fulfill are sent again"
            );
            orders.extend(
                stranded
                    .into_iter()
                    .filter(|o| back.binary_search(&o.id).is_ok()),
            );
            orders.sort_by_key(|o| o.id);
        }
        let result = self
            .dispatch_batches(store, opened, orders, batch, false, progress, r)
            .await;
        let _ = lock.release().await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn dispatch_batches(
        &self,
        store: &Store,
        opened: &Sender<'_>,
        orders: Vec<StoredOrder>,
        batch: usize,
        dry_run: bool,
        progress: &Arc<dyn Progress>,
        mut r: ConnectionDispatch,
    ) -> Result<ConnectionDispatch, EngineError> {
        r.orders = orders.len() as u64;
        for chunk in orders.chunks(batch) {
            let ids: Vec<i64> = chunk.iter().map(|o| o.id).collect();
            let claimed: Vec<&StoredOrder> = if dry_run {
                chunk.iter().collect()
            } else {
                let got = store
                    .claim_orders(&ids, OrderState::Pending, OrderState::Transmitted)
                    .await?;
                chunk
                    .iter()
                    .filter(|o| got.binary_search(&o.id).is_ok())
                    .collect()
            };
            if claimed.is_empty() {
                continue;
            }
            let mut sent = Vec::with_capacity(claimed.len());
            let mut updates = Vec::new();
            let mut kept = Vec::with_capacity(claimed.len());
            for o in &claimed {
                match serde_json::from_str::<ProvisioningOrder>(&o.body) {
                    Ok(mut order) => {
                        order.id = Some(o.id.to_string());
                        sent.push(order);
                        kept.push(*o);
                    }
                    Err(e) => updates.push(OrderUpdate {
                        id: o.id,
                        state: OrderState::Errored,
                        message: format!("the stored order cannot be read: {e}"),
                    }),
                }
            }
            let result = opened.fulfill(sent, dry_run, progress.clone()).await;
            match result {
                Ok(results) => {
                    for (res, o) in results.into_iter().zip(&kept) {
                        let message = opened.redact(&res.message);
                        let operations: Vec<String> =
                            res.operations.iter().map(|op| opened.redact(op)).collect();
                        let state = match res.state {
                            Sent::Executed => {
                                r.executed += 1;
                                OrderState::Executed
                            }
                            Sent::Errored => {
                                r.errored += 1;
                                OrderState::Errored
                            }
                            Sent::Transmitted => {
                                r.transmitted += 1;
                                OrderState::Transmitted
                            }
                        };
                        updates.push(OrderUpdate {
                            id: o.id,
                            state,
                            message: message.clone(),
                        });
                        r.outcomes.push(OrderOutcome {
                            id: o.id,
                            resource_type: o.resource_type.clone(),
                            change_type: o.change_type.clone(),
                            owner: o.owner_key.clone(),
                            target: o.target_key.clone(),
                            state: state.to_string(),
                            message,
                            operations,
                        });
                    }
                    if !dry_run {
                        store.update_orders(&updates).await?;
                    }
                }
                Err(e) => {
                    let message = opened.redact(&e.to_string());
                    let retry = e.kind().retryable();
                    let state = if retry {
                        OrderState::Pending
                    } else {
                        OrderState::Errored
                    };
                    for o in &kept {
                        updates.push(OrderUpdate {
                            id: o.id,
                            state,
                            message: format!("not sent: {message}"),
                        });
                    }
                    if !dry_run {
                        store.update_orders(&updates).await?;
                    }
                    if retry {
                        r.not_sent += kept.len() as u64;
                    } else {
                        r.errored += kept.len() as u64;
                    }
                    // The rest of this connection's orders wait for the next run.
                    r.failure = Some(message);
                    break;
                }
            }
        }
        Ok(r)
    }
}
