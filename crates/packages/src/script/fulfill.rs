//! Fulfill: the orders file in, one result per order back from the results file.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use async_trait::async_trait;

use super::run::{self, Invocation, Outcome};
use super::{Runner, Script, work_dir};
use crate::api::{
    Fulfill, FulfillRequest, OrderResult, OrderState, OrdersFile, PackageError, ProvisioningOrder,
};

/// The largest results file read back (bytes per order, at least 1 MiB in all).
const RESULT_BYTES_PER_ORDER: u64 = 64 * 1024;
/// The longest line of the results file read back.
const RESULT_LINE_MAX: usize = 64 * 1024;

impl Script {
    fn fulfill_invocation(&self, runner: &Runner, dir: &Path) -> Invocation {
        let orders = dir.join("orders.json").into_os_string();
        let results = dir.join("results.jsonl").into_os_string();
        let script = self.settings.script.clone().into_os_string();
        match runner {
            Runner::Pwsh(pwsh) => Invocation {
                program: pwsh.clone(),
                args: vec![
                    "-NoProfile".into(),
                    "-NonInteractive".into(),
                    "-File".into(),
                    script,
                    "-resultsFilePath".into(),
                    results,
                    "-ordersPath".into(),
                    orders,
                ],
            },
            Runner::Robot(robot) => {
                let mut o = std::ffi::OsString::from("ordersPath:");
                o.push(&orders);
                let mut r = std::ffi::OsString::from("resultsFilePath:");
                r.push(&results);
                Invocation {
                    program: robot.clone(),
                    args: vec![
                        "--outputdir".into(),
                        dir.join("robot").into_os_string(),
                        "--variable".into(),
                        o,
                        "--variable".into(),
                        r,
                        script,
                    ],
                }
            }
            Runner::Direct => Invocation {
                program: self.settings.script.clone(),
                args: vec![orders, results],
            },
        }
    }
}

#[async_trait]
impl Fulfill for Script {
    async fn fulfill(
        &self,
        request: &FulfillRequest<'_>,
    ) -> Result<Vec<OrderResult>, PackageError> {
        let runner = self.runner()?;
        let orders = request.orders;
        if request.dry_run {
            let shown = self.fulfill_invocation(&runner, Path::new("<temp>"));
            let keys: Vec<&str> = self.settings.options.keys().map(String::as_str).collect();
            let stdin = if keys.is_empty() {
                "no options".to_string()
            } else {
                format!("Options {} on stdin", keys.join(", "))
            };
            return Ok(orders
                .iter()
                .enumerate()
                .map(|(index, order)| OrderResult {
                    index,
                    id: order.id.clone(),
                    state: OrderState::Executed,
                    message: format!(
                        "dry run: nothing run; the script would get this order among {} in one run",
                        orders.len()
                    ),
                    operations: vec![format!(
                        "run {shown} ({:?} {}; {stdin})",
                        order.change_type, order.resource_type.identifier
                    )],
                })
                .collect());
        }
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let dir = work_dir(&self.env.connection)?;
        let orders_path = dir.path().join("orders.json");
        let body = serde_json::to_vec(&OrdersFile {
            orders: orders.to_vec(),
        })
        .map_err(|e| PackageError::io("write", &orders_path, std::io::Error::other(e)))?;
        std::fs::write(&orders_path, body)
            .map_err(|e| PackageError::io("write", &orders_path, e))?;
        let results_path = dir.path().join("results.jsonl");
        std::fs::write(&results_path, b"")
            .map_err(|e| PackageError::io("create", &results_path, e))?;
        let invocation = self.fulfill_invocation(&runner, dir.path());
        request
            .progress
            .phase(&format!("running {invocation} on {} orders", orders.len()));
        let outcome = run::run(self.run_spec(&invocation, request.progress)).await?;
        let reported = read_results(&results_path, orders, &self.redactor)?;
        let results = merge(orders, reported, &outcome, &invocation);
        request
            .progress
            .rows(&self.env.connection, orders.len() as u64);
        Ok(results)
    }
}

/// What the results file says: per order, its state and message; and the lines it could not use.
#[derive(Debug, Default)]
struct Reported {
    by_order: Vec<Option<(OrderState, String)>>,
    problems: Vec<String>,
}

/// One line of the results file.
#[derive(Debug, serde::Deserialize)]
struct ResultLine {
    #[serde(rename = "Id", alias = "id", default)]
    id: Option<serde_json::Value>,
    #[serde(rename = "Index", alias = "index", default)]
    index: Option<usize>,
    #[serde(rename = "State", alias = "state", default)]
    state: Option<String>,
    #[serde(rename = "Message", alias = "message", default)]
    message: Option<String>,
}

fn read_results(
    path: &Path,
    orders: &[ProvisioningOrder],
    redactor: &idlink_secrets::Redactor,
) -> Result<Reported, PackageError> {
    let mut reported = Reported {
        by_order: vec![None; orders.len()],
        problems: Vec::new(),
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            reported
                .problems
                .push("the results file was removed".into());
            return Ok(reported);
        }
        Err(e) => return Err(PackageError::io("read", path, e)),
    };
    let limit = (orders.len() as u64)
        .saturating_mul(RESULT_BYTES_PER_ORDER)
        .max(1024 * 1024);
    let mut reader = BufReader::new(file.take(limit + 1));
    let mut read = 0u64;
    let mut line_no = 0usize;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .by_ref()
            .take(RESULT_LINE_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| PackageError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        line_no += 1;
        if read > limit {
            reported.problems.push(format!(
                "the results file is larger than {limit} bytes: the rest was not read"
            ));
            break;
        }
        if line.len() > RESULT_LINE_MAX && !line.ends_with(b"\n") {
            reported.problems.push(format!(
                "results line {line_no} is longer than {RESULT_LINE_MAX} bytes: not read"
            ));
            // Skip the rest of the line.
            let mut rest = Vec::new();
            let _ = reader.read_until(b'\n', &mut rest);
            read += rest.len() as u64;
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        if let Err(problem) = apply_line(&text, orders, redactor, &mut reported) {
            reported
                .problems
                .push(format!("results line {line_no}: {problem}"));
        }
    }
    Ok(reported)
}

fn apply_line(
    text: &str,
    orders: &[ProvisioningOrder],
    redactor: &idlink_secrets::Redactor,
    reported: &mut Reported,
) -> Result<(), String> {
    // serde_json's messages quote no input, but the line itself may hold a secret: say only
    // where it breaks.
    // Windows PowerShell writes UTF-8 with a byte-order mark.
    let text = text.trim().trim_start_matches('\u{feff}');
    let line: ResultLine = serde_json::from_str(text).map_err(|e| {
        format!(
            "not a JSON object with Id or Index, State and Message (column {}: {:?})",
            e.column(),
            e.classify()
        )
    })?;
    let id = match &line.id {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err("Id must be a string".into()),
    };
    let index = match (line.index, &id) {
        (Some(i), _) if i < orders.len() => {
            if let Some(id) = &id
                && orders[i].id.as_deref() != Some(id.as_str())
            {
                return Err(format!("Index {i} is not the order with Id {id}"));
            }
            i
        }
        (Some(i), _) => {
            return Err(format!(
                "Index {i} is past the last order ({} orders, counted from 0)",
                orders.len()
            ));
        }
        (None, Some(id)) => orders
            .iter()
            .position(|o| o.id.as_deref() == Some(id.as_str()))
            .ok_or_else(|| format!("no order has Id {}", redactor.redact(id)))?,
        (None, None) => return Err("it names no order: give Id (or Index)".into()),
    };
    let state = match line.state.as_deref().map(str::trim) {
        Some(s) if s.eq_ignore_ascii_case("Executed") => OrderState::Executed,
        Some(s) if s.eq_ignore_ascii_case("Errored") => OrderState::Errored,
        Some(s) => {
            return Err(format!(
                "State '{}' is neither Executed nor Errored",
                redactor.redact(s)
            ));
        }
        None => return Err("State is missing (Executed or Errored)".into()),
    };
    let message = match line.message.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => redactor.redact(m),
        _ => format!("the script reported {state:?}"),
    };
    reported.by_order[index] = Some((state, message));
    Ok(())
}

fn merge(
    orders: &[ProvisioningOrder],
    reported: Reported,
    outcome: &Outcome,
    invocation: &Invocation,
) -> Vec<OrderResult> {
    let operation = format!("run {invocation}");
    let problems = if reported.problems.is_empty() {
        String::new()
    } else {
        format!(" ({})", reported.problems.join("; "))
    };
    orders
        .iter()
        .zip(reported.by_order)
        .enumerate()
        .map(|(index, (order, result))| {
            let (state, message) = match result {
                Some((state, message)) => (state, message),
                None if outcome.exit.success() => (
                    OrderState::Errored,
                    format!(
                        "the script exited with status 0 without reporting this order{problems}"
                    ),
                ),
                None => (
                    OrderState::Errored,
                    format!(
                        "the script {} before reporting this order{problems}",
                        outcome.describe()
                    ),
                ),
            };
            OrderResult {
                index,
                id: order.id.clone(),
                state,
                message,
                operations: vec![operation.clone()],
            }
        })
        .collect()
}
