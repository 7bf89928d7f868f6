//! Fulfill: provisioning orders -> `INSERT`, `UPDATE` and `DELETE` statements.
//!
//! How an order reads:
//! - `ResourceType.Identifier` picks the `Tables` entry (exact spelling first, then ignoring
//!   case); none: the order is Errored, naming the entries there are.
//! - The keys of `Changes` are column names, checked against the table's real columns (read
//!   once per table per run, before the transaction starts; a column is matched exactly, then
//!   ignoring case). Values are bound as parameters, never spliced into the SQL: strings,
//!   numbers, booleans and null; a list becomes one text, its values sorted case-insensitively
//!   and joined with a newline (SPEC §3 `MultivaluedText`), an empty list NULL. PostgreSQL
//!   receives every value as text cast to the column's type (`CAST($1 AS integer)`), so text,
//!   numbers, dates and booleans land in their columns; MySQL and SQLite convert by themselves.
//!   `<prop>_add` / `<prop>_remove` (membership changes) are refused: this package writes the
//!   columns of one table.
//! - The row: `Added` takes `Changes[KeyColumn]`; `Modified` and `Deleted` take
//!   `Resource[KeyColumn]` (the target's current values), else `Changes[KeyColumn]`. A
//!   `Modified` order whose `Changes[KeyColumn]` differs updates the key too (`WHERE` the old
//!   key).
//!
//! Idempotent (SPEC §6): an `Added` row already there is updated with the changes; a `Deleted`
//! row already absent is Executed; a `Modified` order whose old key is gone but whose new key is
//! there (a retried rename) updates that row. A `Modified` order with no row is Errored. A key
//! that matches more than one row is Errored: `KeyColumn` must identify one row.
//!
//! One transaction per request; each order runs inside a savepoint, so an order the database
//! refuses (a constraint) is rolled back alone, Errored with the database's message, and the
//! others commit. A failure to connect, or a lost connection, ends the request with an error
//! (nothing is committed then).
//!
//! Dry run: nothing connects. Each result lists the statement the order would start with,
//! values written as SQL literals (a column whose name says password or secret shows
//! `**REDACTED**`), with the names as configured; the columns are checked only by a real run
//! or by check connection.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::Executor;

use super::settings::{FulfillDatabaseSettings, TableMap};
use crate::api::{
    ChangeType, CheckConnection, Environment, ErrorKind, Fulfill, FulfillRequest, Instance,
    NoProgress, OrderResult, OrderState, PackageError, ProvisioningOrder,
};
use crate::sql::error::Cx;
use crate::sql::settings::Driver;
use crate::sql::{Conn, SqlPackage, schema};

/// The property the engine adds to Added orders from the mapping's `DefaultObjectClass`.
const OBJECT_CLASS: &str = "objectClass";

/// A configured fulfill-to-database connection.
pub(crate) struct FulfillDatabase {
    sql: SqlPackage,
    driver: Driver,
    tables: Vec<TableMap>,
    connection: String,
    setup_sql: Option<String>,
}

impl FulfillDatabase {
    pub(crate) fn new(settings: FulfillDatabaseSettings, env: Environment) -> Self {
        let connection = env.connection.clone();
        let driver = settings.sql.target.driver();
        FulfillDatabase {
            driver,
            tables: settings.tables,
            setup_sql: settings.setup_sql,
            sql: SqlPackage::new(settings.sql, env),
            connection,
        }
    }

    fn table_of(&self, resource_type: &str) -> Option<(usize, &TableMap)> {
        self.tables
            .iter()
            .position(|t| t.resource_type == resource_type)
            .or_else(|| {
                self.tables
                    .iter()
                    .position(|t| t.resource_type.eq_ignore_ascii_case(resource_type))
            })
            .map(|i| (i, &self.tables[i]))
    }
}

impl Instance for FulfillDatabase {
    fn fulfill(&self) -> Option<&dyn Fulfill> {
        Some(self)
    }
    fn check_connection(&self) -> Option<&dyn CheckConnection> {
        Some(self)
    }
}

/// A value to write.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Val {
    fn from_json(v: &Value) -> Result<Val, String> {
        Ok(match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::String(s) => Val::Text(s.clone()),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Val::Int(i),
                // Beyond i64 (u64): as text, which the databases convert.
                _ if n.is_u64() => Val::Text(n.to_string()),
                (None, Some(f)) => Val::Float(f),
                (None, None) => Val::Text(n.to_string()),
            },
            Value::Array(items) => {
                let mut texts = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::Null => {}
                        Value::String(s) => texts.push(s.clone()),
                        Value::Number(n) => texts.push(n.to_string()),
                        Value::Bool(b) => texts.push(b.to_string()),
                        Value::Array(_) | Value::Object(_) => {
                            return Err("is a list holding lists or objects (links to other resources): a column takes text, numbers, true/false, null, or a list of these".to_string());
                        }
                    }
                }
                if texts.is_empty() {
                    Val::Null
                } else {
                    // MultivaluedText: sorted case-insensitively, as exports write them.
                    texts.sort_by_cached_key(|t| t.to_lowercase());
                    Val::Text(texts.join("\n"))
                }
            }
            Value::Object(_) => {
                return Err("is an object (a link to another resource): a column takes text, numbers, true/false, null, or a list of these".to_string());
            }
        })
    }

    /// The value as an SQL literal, for operations and messages.
    fn literal(&self) -> String {
        match self {
            Val::Null => "NULL".to_string(),
            Val::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => f.to_string(),
            Val::Bool(true) => "TRUE".to_string(),
            Val::Bool(false) => "FALSE".to_string(),
        }
    }

    /// The value as PostgreSQL receives it: text, cast to the column's type in the statement.
    fn pg_text(&self) -> Option<String> {
        match self {
            Val::Null => None,
            Val::Text(s) => Some(s.clone()),
            Val::Int(i) => Some(i.to_string()),
            Val::Float(f) => Some(f.to_string()),
            Val::Bool(b) => Some(b.to_string()),
        }
    }
}

/// Whether a column's values must not be shown (`password`, `pwd`, `secret` in its name).
fn secret_column(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "passwd", "pwd", "secret"]
        .iter()
        .any(|s| n.contains(s))
}

/// A property of an order's map: exact name first, then ignoring case.
fn prop<'m>(m: &'m Map<String, Value>, name: &str) -> Option<&'m Value> {
    m.get(name).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// What an order asks, before the database is seen.
#[derive(Debug)]
struct Plan {
    table: usize,
    change: ChangeType,
    /// The row to find.
    key: Val,
    /// A `Modified` order's new key, when it differs.
    new_key: Option<Val>,
    /// The columns to write (`Changes` as given; for `Deleted`, none), the key among them when
    /// the order carries it.
    values: Vec<(String, Val)>,
}

impl FulfillDatabase {
    /// Reads an order (no I/O).
    fn plan(&self, order: &ProvisioningOrder) -> Result<Plan, String> {
        let rt = &order.resource_type.identifier;
        let Some((table, map)) = self.table_of(rt) else {
            let known: Vec<String> = self
                .tables
                .iter()
                .map(|t| format!("{} -> {}", t.resource_type, t.table))
                .collect();
            return Err(format!(
                "{}: resource type '{rt}' has no entry in Tables (the entries: {}): add {{\"ResourceType\": \"{rt}\", \"Table\": ..., \"KeyColumn\": ...}} to the connection's settings",
                self.connection,
                known.join(", ")
            ));
        };
        let kc = &map.key_column;
        let key_of = |m: &Map<String, Value>, from: &str| -> Result<Option<Val>, String> {
            match prop(m, kc) {
                None => Ok(None),
                Some(v) => match Val::from_json(v) {
                    Ok(Val::Null) => Err(format!(
                        "{}: {from}.{kc} (the KeyColumn of {}) is empty: it must identify the row",
                        self.connection, map.table
                    )),
                    Ok(k) => Ok(Some(k)),
                    Err(why) => Err(format!(
                        "{}: {from}.{kc} (the KeyColumn of {}) {why}",
                        self.connection, map.table
                    )),
                },
            }
        };
        let mut values = Vec::new();
        if order.change_type != ChangeType::Deleted {
            for (name, v) in &order.changes {
                let lower = name.to_ascii_lowercase();
                if (lower.ends_with("_add") || lower.ends_with("_remove")) && v.is_array() {
                    return Err(format!(
                        "{}: Changes.{name} changes a membership (a multi-valued navigation property), but this package writes columns of one table ({}); memberships need a table of their own: map the membership's resource type to it, or provision memberships with another package",
                        self.connection, map.table
                    ));
                }
                let val = Val::from_json(v).map_err(|why| {
                    format!(
                        "{}: Changes.{name} (column of {}) {why}",
                        self.connection, map.table
                    )
                })?;
                values.push((name.clone(), val));
            }
        }
        let in_changes = key_of(&order.changes, "Changes")?;
        let (key, new_key) = match order.change_type {
            ChangeType::Added => match in_changes {
                Some(k) => (k, None),
                None => {
                    return Err(format!(
                        "{}: an Added order needs its row's key: Changes has no {kc} (the KeyColumn of {} for resource type {})",
                        self.connection, map.table, map.resource_type
                    ));
                }
            },
            ChangeType::Modified | ChangeType::Deleted => {
                let current = match &order.resource {
                    Some(r) => key_of(r, "Resource")?,
                    None => None,
                };
                match (current, in_changes) {
                    (Some(old), Some(new))
                        if old != new && order.change_type == ChangeType::Modified =>
                    {
                        (old, Some(new))
                    }
                    (Some(old), _) => (old, None),
                    (None, Some(k)) => (k, None),
                    (None, None) => {
                        return Err(format!(
                            "{}: a {:?} order needs its row's key: neither Resource nor Changes has {kc} (the KeyColumn of {} for resource type {})",
                            self.connection, order.change_type, map.table, map.resource_type
                        ));
                    }
                }
            }
        };
        Ok(Plan {
            table,
            change: order.change_type,
            key,
            new_key,
            values,
        })
    }
}

/// A column as the database spells it, with the type PostgreSQL casts values to.
#[derive(Debug, Clone)]
struct Col {
    name: String,
    cast: Option<String>,
}

/// A table as the database spells it, and its columns.
#[derive(Debug, Clone)]
struct TableInfo {
    name: String,
    columns: Vec<Col>,
}

impl TableInfo {
    fn column(&self, wanted: &str) -> Result<&Col, String> {
        if let Some(c) = self.columns.iter().find(|c| c.name == wanted) {
            return Ok(c);
        }
        let mut loose = self
            .columns
            .iter()
            .filter(|c| c.name.eq_ignore_ascii_case(wanted));
        match (loose.next(), loose.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(format!(
                "column '{wanted}' is not in table {} (its columns: {})",
                self.name,
                self.columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// One statement: with placeholders for the database, with literals for people.
#[derive(Debug, Default)]
struct Stmt {
    sql: String,
    shown: String,
    params: Vec<Val>,
}

struct Builder {
    driver: Driver,
    st: Stmt,
}

impl Builder {
    fn new(driver: Driver) -> Self {
        Builder {
            driver,
            st: Stmt::default(),
        }
    }

    fn text(mut self, t: &str) -> Self {
        self.st.sql.push_str(t);
        self.st.shown.push_str(t);
        self
    }

    fn ident(self, name: &str) -> Self {
        let q = ident(self.driver, name);
        self.text(&q)
    }

    fn value(mut self, col: &Col, v: &Val) -> Self {
        self.st.params.push(v.clone());
        let n = self.st.params.len();
        match (self.driver, &col.cast) {
            (Driver::Postgres, Some(t)) => self.st.sql.push_str(&format!("CAST(${n} AS {t})")),
            (Driver::Postgres, None) => self.st.sql.push_str(&format!("${n}")),
            _ => self.st.sql.push('?'),
        }
        if secret_column(&col.name) && *v != Val::Null {
            self.st.shown.push_str("'**REDACTED**'");
        } else {
            self.st.shown.push_str(&v.literal());
        }
        self
    }

    fn done(self) -> Stmt {
        self.st
    }
}

/// An identifier quoted for the dialect.
fn ident(driver: Driver, name: &str) -> String {
    let q = if driver == Driver::MySql { '`' } else { '"' };
    format!("{q}{}{q}", name.replace(q, &format!("{q}{q}")))
}

/// `login = 'jdoe'`: a key as messages show it.
fn show_key(col: &str, key: &Val) -> String {
    if secret_column(col) {
        format!("{col} = '**REDACTED**'")
    } else {
        format!("{col} = {}", key.literal())
    }
}

fn count_stmt(d: Driver, t: &TableInfo, key: &Col, v: &Val) -> Stmt {
    Builder::new(d)
        .text("SELECT COUNT(*) FROM ")
        .ident(&t.name)
        .text(" WHERE ")
        .ident(&key.name)
        .text(" = ")
        .value(key, v)
        .done()
}

fn insert_stmt(d: Driver, t: &TableInfo, cols: &[(Col, Val)]) -> Stmt {
    let mut b = Builder::new(d)
        .text("INSERT INTO ")
        .ident(&t.name)
        .text(" (");
    for (i, (c, _)) in cols.iter().enumerate() {
        if i > 0 {
            b = b.text(",");
        }
        b = b.ident(&c.name);
    }
    b = b.text(") VALUES (");
    for (i, (c, v)) in cols.iter().enumerate() {
        if i > 0 {
            b = b.text(",");
        }
        b = b.value(c, v);
    }
    b.text(")").done()
}

fn update_stmt(d: Driver, t: &TableInfo, cols: &[(Col, Val)], key: &Col, v: &Val) -> Stmt {
    let mut b = Builder::new(d).text("UPDATE ").ident(&t.name).text(" SET ");
    for (i, (c, val)) in cols.iter().enumerate() {
        if i > 0 {
            b = b.text(", ");
        }
        b = b.ident(&c.name).text(" = ").value(c, val);
    }
    b.text(" WHERE ")
        .ident(&key.name)
        .text(" = ")
        .value(key, v)
        .done()
}

fn delete_stmt(d: Driver, t: &TableInfo, key: &Col, v: &Val) -> Stmt {
    Builder::new(d)
        .text("DELETE FROM ")
        .ident(&t.name)
        .text(" WHERE ")
        .ident(&key.name)
        .text(" = ")
        .value(key, v)
        .done()
}

/// Binds the parameters of a statement for MySQL or SQLite (typed values; the database
/// converts them to the column's type).
macro_rules! bind_typed {
    ($q:expr, $params:expr) => {{
        let mut q = $q;
        for p in $params {
            q = match p {
                Val::Null => q.bind(None::<String>),
                Val::Text(s) => q.bind(s.clone()),
                Val::Int(i) => q.bind(*i),
                Val::Float(f) => q.bind(*f),
                Val::Bool(b) => q.bind(*b),
            };
        }
        q
    }};
}

/// Binds the parameters of a statement for PostgreSQL (text, cast in the statement).
macro_rules! bind_pg {
    ($q:expr, $params:expr) => {{
        let mut q = $q;
        for p in $params {
            q = q.bind(p.pg_text());
        }
        q
    }};
}

/// Runs a write statement; returns the rows it touched.
async fn execute(
    conn: &mut Conn,
    cx: &Cx<'_>,
    op: &'static str,
    st: &Stmt,
) -> Result<u64, PackageError> {
    match conn {
        Conn::Pg(c) => {
            let q = bind_pg!(sqlx::query::<sqlx::Postgres>(&st.sql), &st.params);
            cx.wait(op, Box::pin(q.execute(&mut *c)))
                .await
                .map(|r| r.rows_affected())
        }
        Conn::My(c) => {
            let q = bind_typed!(sqlx::query::<sqlx::MySql>(&st.sql), &st.params);
            cx.wait(op, Box::pin(q.execute(&mut *c)))
                .await
                .map(|r| r.rows_affected())
        }
        Conn::Lite(c) => {
            let q = bind_typed!(sqlx::query::<sqlx::Sqlite>(&st.sql), &st.params);
            cx.wait(op, Box::pin(q.execute(&mut *c)))
                .await
                .map(|r| r.rows_affected())
        }
    }
}

/// Runs a `SELECT COUNT(*)`.
async fn count(conn: &mut Conn, cx: &Cx<'_>, st: &Stmt) -> Result<i64, PackageError> {
    let op = "look the row up";
    match conn {
        Conn::Pg(c) => {
            let q = bind_pg!(
                sqlx::query_scalar::<sqlx::Postgres, i64>(&st.sql),
                &st.params
            );
            cx.wait(op, Box::pin(q.fetch_one(&mut *c))).await
        }
        Conn::My(c) => {
            let q = bind_typed!(sqlx::query_scalar::<sqlx::MySql, i64>(&st.sql), &st.params);
            cx.wait(op, Box::pin(q.fetch_one(&mut *c))).await
        }
        Conn::Lite(c) => {
            let q = bind_typed!(sqlx::query_scalar::<sqlx::Sqlite, i64>(&st.sql), &st.params);
            cx.wait(op, Box::pin(q.fetch_one(&mut *c))).await
        }
    }
}

/// Runs a statement without parameters (transaction control).
async fn raw(
    conn: &mut Conn,
    cx: &Cx<'_>,
    op: &'static str,
    sql: &str,
) -> Result<(), PackageError> {
    match conn {
        Conn::Pg(c) => cx.wait(op, Box::pin(c.execute(sql))).await.map(|_| ()),
        Conn::My(c) => cx.wait(op, Box::pin(c.execute(sql))).await.map(|_| ()),
        Conn::Lite(c) => cx.wait(op, Box::pin(c.execute(sql))).await.map(|_| ()),
    }
}

/// The columns of `wanted` as the database spells them; `Ok(Err(why))` when there is no such
/// table (or the name is ambiguous).
async fn read_table(
    conn: &mut Conn,
    cx: &Cx<'_>,
    wanted: &str,
) -> Result<Result<TableInfo, String>, PackageError> {
    let op = "read the table's columns";
    // (table, column, PostgreSQL type)
    let rows: Vec<(String, String, Option<String>)> = match conn {
        Conn::Pg(c) => {
            let rows: Vec<(String, String, String)> = cx
                .wait(
                    op,
                    Box::pin(
                        sqlx::query_as(
                            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, NULL) \
                             FROM pg_catalog.pg_attribute a \
                             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                             WHERE pg_catalog.pg_table_is_visible(c.oid) \
                             AND c.relkind IN ('r', 'p', 'v', 'f') \
                             AND lower(c.relname) = lower($1) \
                             AND a.attnum > 0 AND NOT a.attisdropped \
                             ORDER BY c.relname, a.attnum",
                        )
                        .bind(wanted)
                        .fetch_all(&mut *c),
                    ),
                )
                .await?;
            rows.into_iter()
                .map(|(t, c, ty)| (t, c, Some(ty)))
                .collect()
        }
        Conn::My(c) => {
            let rows: Vec<(String, String)> = cx
                .wait(
                    op,
                    Box::pin(
                        sqlx::query_as(
                            "SELECT CAST(table_name AS CHAR), CAST(column_name AS CHAR) \
                             FROM information_schema.columns \
                             WHERE table_schema = DATABASE() AND lower(table_name) = lower(?) \
                             ORDER BY table_name, ordinal_position",
                        )
                        .bind(wanted)
                        .fetch_all(&mut *c),
                    ),
                )
                .await?;
            rows.into_iter().map(|(t, c)| (t, c, None)).collect()
        }
        Conn::Lite(c) => {
            let rows: Vec<(String, String)> = cx
                .wait(
                    op,
                    Box::pin(
                        sqlx::query_as(
                            "SELECT m.name, p.name FROM sqlite_master m \
                             JOIN pragma_table_info(m.name) p \
                             WHERE m.type IN ('table', 'view') AND lower(m.name) = lower(?) \
                             ORDER BY m.name, p.cid",
                        )
                        .bind(wanted)
                        .fetch_all(&mut *c),
                    ),
                )
                .await?;
            rows.into_iter().map(|(t, c)| (t, c, None)).collect()
        }
    };
    let mut names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    names.dedup();
    let name = match names.iter().find(|n| **n == wanted) {
        Some(n) => n.to_string(),
        None if names.len() == 1 => names[0].to_string(),
        None if names.is_empty() => {
            let tables = schema::table_names(conn, cx).await.unwrap_or_default();
            return Ok(Err(format!(
                "there is no table '{wanted}' in {}{}",
                cx.system,
                if tables.is_empty() {
                    String::new()
                } else {
                    format!(" (its tables: {})", tables.join(", "))
                }
            )));
        }
        None => {
            return Ok(Err(format!(
                "table '{wanted}' is ambiguous in {}: there are {}; write the exact name",
                cx.system,
                names.join(", ")
            )));
        }
    };
    let columns = rows
        .into_iter()
        .filter(|r| r.0 == name)
        .map(|(_, c, ty)| Col { name: c, cast: ty })
        .collect();
    Ok(Ok(TableInfo { name, columns }))
}

/// How one order ended.
struct Outcome {
    state: OrderState,
    message: String,
    operations: Vec<String>,
}

impl FulfillDatabase {
    /// Matches a plan's names to the table's real ones (no I/O).
    #[allow(clippy::type_complexity)]
    fn resolve<'t>(
        &self,
        plan: &Plan,
        table: &'t TableInfo,
    ) -> Result<(&'t Col, Vec<(Col, Val)>, Option<String>), String> {
        let map = &self.tables[plan.table];
        let mut note = None;
        let key = table.column(&map.key_column).map_err(|why| {
            format!(
                "{}: KeyColumn of resource type {}: {why}",
                self.connection, map.resource_type
            )
        })?;
        let mut cols = Vec::with_capacity(plan.values.len());
        for (name, v) in &plan.values {
            if name.eq_ignore_ascii_case(OBJECT_CLASS) && table.column(name).is_err() {
                note = Some(format!(
                    "Changes.{name} (the resource type mapping's DefaultObjectClass, which the engine adds to Added orders) is not a column of {}: not written",
                    table.name
                ));
                continue;
            }
            let c = table.column(name).map_err(|why| {
                format!(
                    "{}: Changes.{name}: {why}; the properties of the order's target entity type must be the table's columns",
                    self.connection
                )
            })?;
            cols.push((c.clone(), v.clone()));
        }
        Ok((key, cols, note))
    }

    /// Runs one order inside the transaction (its savepoint is the caller's).
    async fn apply(
        &self,
        conn: &mut Conn,
        cx: &Cx<'_>,
        plan: &Plan,
        table: &TableInfo,
    ) -> Result<Outcome, PackageError> {
        let (key_col, cols, note) = match self.resolve(plan, table) {
            Ok(r) => r,
            Err(m) => {
                return Ok(Outcome {
                    state: OrderState::Errored,
                    message: m,
                    operations: Vec::new(),
                });
            }
        };
        let mut outcome = self
            .apply_resolved(conn, cx, plan, table, key_col, &cols)
            .await?;
        if let Some(note) = note {
            outcome.message.push_str("; ");
            outcome.message.push_str(&note);
        }
        Ok(outcome)
    }

    /// Runs one order whose names are the table's.
    async fn apply_resolved(
        &self,
        conn: &mut Conn,
        cx: &Cx<'_>,
        plan: &Plan,
        table: &TableInfo,
        key_col: &Col,
        cols: &[(Col, Val)],
    ) -> Result<Outcome, PackageError> {
        let d = self.driver;
        let conn_name = &self.connection;
        let t = &table.name;
        let shown_key = show_key(&key_col.name, &plan.key);
        let mut ops = Vec::new();
        let done = |message: String, ops: Vec<String>| Outcome {
            state: OrderState::Executed,
            message,
            operations: ops,
        };
        let failed = |message: String, ops: Vec<String>| Outcome {
            state: OrderState::Errored,
            message,
            operations: ops,
        };
        let not_one = |n: i64, k: &str| {
            format!(
                "{conn_name}: {n} rows of {t} have {k}: the KeyColumn must identify one row, so nothing was changed"
            )
        };
        // Runs a write, recording it; a refusal becomes the order's error message.
        macro_rules! send {
            ($st:expr, $op:expr, $verb:expr) => {{
                let st = $st;
                ops.push(cx.redact(&st.shown));
                match execute(conn, cx, $op, &st).await {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Unavailable => return Err(e),
                    Err(e) => {
                        return Ok(failed(format!("{} {t} ({shown_key}): {e}", $verb), ops));
                    }
                }
            }};
        }
        macro_rules! lookup {
            ($key:expr) => {
                match count(conn, cx, &count_stmt(d, table, key_col, $key)).await {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Unavailable => return Err(e),
                    Err(e) => return Ok(failed(format!("SELECT {t} ({shown_key}): {e}"), ops)),
                }
            };
        }
        let without_key = |cols: &[(Col, Val)]| -> Vec<(Col, Val)> {
            cols.iter()
                .filter(|(c, _)| c.name != key_col.name)
                .cloned()
                .collect()
        };
        match plan.change {
            ChangeType::Added => {
                let n = lookup!(&plan.key);
                if n == 0 {
                    send!(insert_stmt(d, table, cols), "insert", "INSERT INTO");
                    return Ok(done(
                        format!("{conn_name}: inserted the row {shown_key} into {t}"),
                        ops,
                    ));
                }
                if n > 1 {
                    return Ok(failed(not_one(n, &shown_key), ops));
                }
                let sets = without_key(cols);
                if sets.is_empty() {
                    return Ok(done(
                        format!(
                            "{conn_name}: the row {shown_key} is already there in {t}: nothing to update"
                        ),
                        ops,
                    ));
                }
                send!(
                    update_stmt(d, table, &sets, key_col, &plan.key),
                    "update",
                    "UPDATE"
                );
                Ok(done(
                    format!("{conn_name}: the row {shown_key} is already there in {t}: updated"),
                    ops,
                ))
            }
            ChangeType::Modified => {
                let n = lookup!(&plan.key);
                let mut sets: Vec<(Col, Val)> = cols
                    .iter()
                    .filter(|(c, v)| c.name != key_col.name || plan.new_key.as_ref() == Some(v))
                    .cloned()
                    .collect();
                let (row_key, note) = match (n, &plan.new_key) {
                    (1, _) => (&plan.key, String::new()),
                    (0, Some(new)) => {
                        let shown_new = show_key(&key_col.name, new);
                        if lookup!(new) == 1 {
                            // A retried rename: the key is already the new one.
                            sets.retain(|(c, _)| c.name != key_col.name);
                            (
                                new,
                                format!(
                                    " (no row has {shown_key} any more, the row {shown_new} is there: already renamed)"
                                ),
                            )
                        } else {
                            return Ok(failed(
                                format!(
                                    "{conn_name}: UPDATE {t}: no row with {shown_key} in {t} (nor with {shown_new})"
                                ),
                                ops,
                            ));
                        }
                    }
                    (0, None) => {
                        return Ok(failed(
                            format!("{conn_name}: UPDATE {t}: no row with {shown_key} in {t}"),
                            ops,
                        ));
                    }
                    (n, _) => return Ok(failed(not_one(n, &shown_key), ops)),
                };
                let shown_row = show_key(&key_col.name, row_key);
                if sets.is_empty() {
                    return Ok(done(
                        format!("{conn_name}: the row {shown_row} in {t}: nothing to change{note}"),
                        ops,
                    ));
                }
                send!(
                    update_stmt(d, table, &sets, key_col, row_key),
                    "update",
                    "UPDATE"
                );
                let renamed = match &plan.new_key {
                    Some(new) if std::ptr::eq(row_key, &plan.key) => {
                        format!(", now {}", show_key(&key_col.name, new))
                    }
                    _ => String::new(),
                };
                Ok(done(
                    format!("{conn_name}: updated the row {shown_row} in {t}{renamed}{note}"),
                    ops,
                ))
            }
            ChangeType::Deleted => {
                let n = lookup!(&plan.key);
                if n == 0 {
                    return Ok(done(
                        format!(
                            "{conn_name}: the row {shown_key} is already absent from {t}: nothing to delete"
                        ),
                        ops,
                    ));
                }
                if n > 1 {
                    return Ok(failed(not_one(n, &shown_key), ops));
                }
                send!(
                    delete_stmt(d, table, key_col, &plan.key),
                    "delete",
                    "DELETE FROM"
                );
                Ok(done(
                    format!("{conn_name}: deleted the row {shown_key} from {t}"),
                    ops,
                ))
            }
        }
    }

    /// The statement an order would start with, with the names as configured (dry run).
    fn preview(&self, plan: &Plan, system: &str) -> (String, Vec<String>) {
        let map = &self.tables[plan.table];
        let d = self.driver;
        let as_given = |name: &str| Col {
            name: name.to_string(),
            cast: None,
        };
        let table = TableInfo {
            name: map.table.clone(),
            columns: Vec::new(),
        };
        let key_col = as_given(&map.key_column);
        let cols: Vec<(Col, Val)> = plan
            .values
            .iter()
            .map(|(n, v)| (as_given(n), v.clone()))
            .collect();
        let shown_key = show_key(&map.key_column, &plan.key);
        let mut message = format!("dry run: nothing sent to {system}");
        if plan.change != ChangeType::Deleted
            && let Some((name, _)) = plan
                .values
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(OBJECT_CLASS))
        {
            message.push_str(&format!(
                "; Changes.{name} is written only if {} has such a column",
                map.table
            ));
        }
        let ops = match plan.change {
            ChangeType::Added => {
                message.push_str(&format!(
                    "; if the row {shown_key} is already there, an UPDATE of the same columns runs instead"
                ));
                vec![insert_stmt(d, &table, &cols).shown]
            }
            ChangeType::Modified => {
                let sets: Vec<(Col, Val)> = cols
                    .into_iter()
                    .filter(|(c, v)| {
                        !c.name.eq_ignore_ascii_case(&map.key_column)
                            || plan.new_key.as_ref() == Some(v)
                    })
                    .collect();
                if sets.is_empty() {
                    message.push_str("; nothing to change");
                    Vec::new()
                } else {
                    vec![update_stmt(d, &table, &sets, &key_col, &plan.key).shown]
                }
            }
            ChangeType::Deleted => {
                message.push_str(&format!(
                    "; if the row {shown_key} is already absent, nothing is deleted"
                ));
                vec![delete_stmt(d, &table, &key_col, &plan.key).shown]
            }
        };
        (message, ops)
    }
}

#[async_trait]
impl Fulfill for FulfillDatabase {
    async fn fulfill(
        &self,
        request: &FulfillRequest<'_>,
    ) -> Result<Vec<OrderResult>, PackageError> {
        let cx = self.sql.cx(request.progress);
        let result = |i: usize, state: OrderState, message: &str, ops: Vec<String>| OrderResult {
            index: i,
            id: request.orders[i].id.clone(),
            state,
            message: cx.redact(message),
            operations: ops.iter().map(|o| cx.redact(o)).collect(),
        };
        let plans: Vec<Result<Plan, String>> =
            request.orders.iter().map(|o| self.plan(o)).collect();
        if request.dry_run {
            return Ok(plans
                .iter()
                .enumerate()
                .map(|(i, p)| match p {
                    Ok(p) => {
                        let (m, ops) = self.preview(p, &cx.system);
                        result(i, OrderState::Executed, &m, ops)
                    }
                    Err(m) => result(i, OrderState::Errored, m, Vec::new()),
                })
                .collect());
        }
        let mut results: Vec<Option<OrderResult>> = vec![None; request.orders.len()];
        let mut needed: Vec<usize> = Vec::new();
        for (i, p) in plans.iter().enumerate() {
            match p {
                Err(m) => {
                    results[i] = Some(result(i, OrderState::Errored, m, Vec::new()));
                    request.progress.rows("orders", 1);
                }
                Ok(p) if !needed.contains(&p.table) => needed.push(p.table),
                Ok(_) => {}
            }
        }
        if !needed.is_empty() {
            let mut conn = self
                .sql
                .connect_for(&cx, true, self.setup_sql.is_some())
                .await?;
            let outcome = match &self.setup_sql {
                Some(setup) => raw(&mut conn, &cx, "run SetupSql", setup).await,
                None => Ok(()),
            };
            let outcome = match outcome {
                Ok(()) => {
                    self.run(&mut conn, &cx, request, &plans, &needed, &mut results)
                        .await
                }
                Err(e) => Err(e),
            };
            conn.close().await;
            outcome?;
        }
        Ok(results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| result(i, OrderState::Errored, "not run", Vec::new()))
            })
            .collect())
    }
}

impl FulfillDatabase {
    /// Reads the tables' columns, then runs the planned orders in one transaction.
    async fn run(
        &self,
        conn: &mut Conn,
        cx: &Cx<'_>,
        request: &FulfillRequest<'_>,
        plans: &[Result<Plan, String>],
        needed: &[usize],
        results: &mut [Option<OrderResult>],
    ) -> Result<(), PackageError> {
        let mut tables: HashMap<usize, Result<TableInfo, String>> = HashMap::new();
        for &t in needed {
            let info = read_table(conn, cx, &self.tables[t].table).await?;
            tables.insert(t, info.map_err(|why| format!("{}: {why}", self.connection)));
        }
        let begin = match self.driver {
            Driver::Postgres => "BEGIN",
            Driver::MySql => "START TRANSACTION",
            Driver::Sqlite => "BEGIN IMMEDIATE",
        };
        raw(conn, cx, "begin transaction", begin).await?;
        let result = |i: usize, o: Outcome| OrderResult {
            index: i,
            id: request.orders[i].id.clone(),
            state: o.state,
            message: cx.redact(&o.message),
            operations: o.operations.iter().map(|s| cx.redact(s)).collect(),
        };
        let ran = async {
            for (i, p) in plans.iter().enumerate() {
                let Ok(plan) = p else { continue };
                let outcome = match tables.get(&plan.table) {
                    Some(Ok(table)) => {
                        raw(conn, cx, "set a savepoint", "SAVEPOINT idlink_order").await?;
                        let o = self.apply(conn, cx, plan, table).await?;
                        if o.state == OrderState::Executed {
                            raw(
                                conn,
                                cx,
                                "release the savepoint",
                                "RELEASE SAVEPOINT idlink_order",
                            )
                            .await?;
                        } else {
                            raw(
                                conn,
                                cx,
                                "roll back the order",
                                "ROLLBACK TO SAVEPOINT idlink_order",
                            )
                            .await?;
                            raw(
                                conn,
                                cx,
                                "release the savepoint",
                                "RELEASE SAVEPOINT idlink_order",
                            )
                            .await?;
                        }
                        o
                    }
                    Some(Err(why)) => Outcome {
                        state: OrderState::Errored,
                        message: why.clone(),
                        operations: Vec::new(),
                    },
                    None => Outcome {
                        state: OrderState::Errored,
                        message: "not run: its table was not read".to_string(),
                        operations: Vec::new(),
                    },
                };
                results[i] = Some(result(i, outcome));
                request.progress.rows("orders", 1);
            }
            raw(conn, cx, "commit", "COMMIT").await
        }
        .await;
        if let Err(e) = ran {
            // Nothing of this request is committed: say so, and leave the connection clean.
            let _ = raw(conn, cx, "roll back", "ROLLBACK").await;
            return Err(match e {
                PackageError::System {
                    connection,
                    system,
                    operation,
                    message,
                    retryable,
                } => PackageError::System {
                    connection,
                    system,
                    operation,
                    message: format!("{message}; nothing of this batch was committed"),
                    retryable,
                },
                other => other,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl CheckConnection for FulfillDatabase {
    async fn check_connection(&self) -> Result<String, PackageError> {
        let progress = NoProgress;
        let cx = self.sql.cx(&progress);
        let mut conn = self.sql.connect_for(&cx, true, false).await?;
        let checked = async {
            let version = schema::server_version(&mut conn, &cx).await?;
            let mut seen = Vec::new();
            for (i, t) in self.tables.iter().enumerate() {
                let settings = |path: String, message: String| PackageError::Settings {
                    connection: self.connection.clone(),
                    path,
                    message: cx.redact(&message),
                };
                let info = read_table(&mut conn, &cx, &t.table)
                    .await?
                    .map_err(|why| settings(format!("Tables[{i}].Table"), why))?;
                let key = info
                    .column(&t.key_column)
                    .map_err(|why| settings(format!("Tables[{i}].KeyColumn"), why))?;
                seen.push(format!("{} (key {})", info.name, key.name));
            }
            Ok::<_, PackageError>(format!(
                "{} ({version}); tables: {}",
                cx.system,
                seen.join(", ")
            ))
        }
        .await;
        conn.close().await;
        checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_become_parameters_and_literals() {
        assert_eq!(
            Val::from_json(&json!("O'Hara")),
            Ok(Val::Text("O'Hara".into()))
        );
        assert_eq!(Val::from_json(&json!(42)), Ok(Val::Int(42)));
        assert_eq!(Val::from_json(&json!(1.5)), Ok(Val::Float(1.5)));
        assert_eq!(
            Val::from_json(&json!(u64::MAX)),
            Ok(Val::Text(u64::MAX.to_string()))
        );
        assert_eq!(
            Val::from_json(&json!(["b", "A", null, 3])),
            Ok(Val::Text("3\nA\nb".into()))
        );
        assert_eq!(Val::from_json(&json!([])), Ok(Val::Null));
        assert!(Val::from_json(&json!({"name": "x"})).is_err());
        assert!(Val::from_json(&json!([{"name": "x"}])).is_err());
        assert_eq!(Val::Text("O'Hara".into()).literal(), "'O''Hara'");
        assert_eq!(Val::Bool(true).literal(), "TRUE");
        assert_eq!(Val::Null.pg_text(), None);
    }

    #[test]
    fn statements_quote_identifiers_and_bind_values() {
        let t = TableInfo {
            name: "acc\"ounts".into(),
            columns: Vec::new(),
        };
        let login = Col {
            name: "login".into(),
            cast: Some("text".into()),
        };
        let age = Col {
            name: "age".into(),
            cast: Some("integer".into()),
        };
        let pw = Col {
            name: "Password".into(),
            cast: Some("text".into()),
        };
        let cols = vec![
            (login.clone(), Val::Text("jdoe".into())),
            (age, Val::Int(3)),
            (pw, Val::Text("hunter2".into())),
        ];
        let st = insert_stmt(Driver::Postgres, &t, &cols);
        assert_eq!(
            st.sql,
            r#"INSERT INTO "acc""ounts" ("login","age","Password") VALUES (CAST($1 AS text),CAST($2 AS integer),CAST($3 AS text))"#
        );
        assert_eq!(
            st.shown,
            r#"INSERT INTO "acc""ounts" ("login","age","Password") VALUES ('jdoe',3,'**REDACTED**')"#
        );
        assert_eq!(st.params.len(), 3);
        let st = update_stmt(
            Driver::MySql,
            &t,
            &cols[1..2],
            &login,
            &Val::Text("x'; DROP TABLE t; --".into()),
        );
        assert_eq!(
            st.sql,
            "UPDATE `acc\"ounts` SET `age` = ? WHERE `login` = ?"
        );
        assert_eq!(
            st.shown,
            "UPDATE `acc\"ounts` SET `age` = 3 WHERE `login` = 'x''; DROP TABLE t; --'"
        );
        let st = delete_stmt(Driver::Sqlite, &t, &login, &Val::Int(1));
        assert_eq!(st.sql, r#"DELETE FROM "acc""ounts" WHERE "login" = ?"#);
    }
}
