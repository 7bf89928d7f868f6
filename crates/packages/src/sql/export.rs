//! The row loop, common to every database: describe the result, open the table, stream the
//! rows, render each value.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use idlink_model::config::ValueType;
use sqlx::{ColumnIndex, Database, Row, ValueRef};

use super::Query;
use super::error::Cx;
use crate::api::PackageError;
use crate::output::{ExportOutput, TableId};

/// What differs between databases: how a column's type is rendered.
pub(crate) trait Dialect {
    type DB: Database;
    /// How to render one column (chosen once per result, from the column's type).
    type Kind: Clone + Send + Sync;

    /// The renderer for a column type; `None` when values of that type cannot be rendered.
    fn classify(type_info: &<Self::DB as Database>::TypeInfo) -> Option<Self::Kind>;

    /// The idlink value type of a column, and whether it is multivalued.
    fn value_type(kind: &Self::Kind) -> (ValueType, bool);

    /// Appends the canonical text of a non-NULL value.
    fn render(
        value: <Self::DB as Database>::ValueRef<'_>,
        kind: &Self::Kind,
        out: &mut String,
    ) -> Result<(), String>;

    /// Prepares `sql` and returns its result's columns: name and type name, and type info
    /// classified.
    fn prepare<'c>(
        conn: &'c mut <Self::DB as Database>::Connection,
        sql: &'c str,
    ) -> BoxFuture<'c, Result<Vec<ResultColumn<Self::Kind>>, sqlx::Error>>;

    /// Runs `sql` and streams its rows.
    fn fetch<'c>(
        conn: &'c mut <Self::DB as Database>::Connection,
        sql: &'c str,
    ) -> BoxStream<'c, Result<<Self::DB as Database>::Row, sqlx::Error>>;
}

/// Implements [`Dialect::prepare`] and [`Dialect::fetch`] for a concrete database (generic
/// code over sqlx's executors does not give `Send` futures).
macro_rules! prepare_and_fetch {
    ($db:ty) => {
        fn prepare<'c>(
            conn: &'c mut <$db as sqlx::Database>::Connection,
            sql: &'c str,
        ) -> futures_util::future::BoxFuture<
            'c,
            Result<Vec<super::export::ResultColumn<Self::Kind>>, sqlx::Error>,
        > {
            Box::pin(async move {
                use sqlx::{Column, Executor, Statement, TypeInfo};
                let statement = conn.prepare(sql).await?;
                Ok(statement
                    .columns()
                    .iter()
                    .map(|c| super::export::ResultColumn {
                        name: c.name().to_string(),
                        type_name: c.type_info().name().to_string(),
                        kind: Self::classify(c.type_info()),
                    })
                    .collect())
            })
        }

        fn fetch<'c>(
            conn: &'c mut <$db as sqlx::Database>::Connection,
            sql: &'c str,
        ) -> futures_util::stream::BoxStream<'c, Result<<$db as sqlx::Database>::Row, sqlx::Error>>
        {
            sqlx::query::<$db>(sql).fetch(conn)
        }
    };
}
pub(crate) use prepare_and_fetch;

/// One column of a result.
#[derive(Debug, Clone)]
pub(crate) struct ResultColumn<K> {
    pub name: String,
    /// The database's name of the type (`TIMESTAMPTZ`, `VARCHAR`, ...).
    pub type_name: String,
    /// `None`: this type cannot be rendered.
    pub kind: Option<K>,
}

/// The columns of `sql`'s result, without running it.
pub(crate) async fn describe<D: Dialect>(
    conn: &mut <D::DB as Database>::Connection,
    sql: &str,
    cx: &Cx<'_>,
) -> Result<Vec<ResultColumn<D::Kind>>, PackageError> {
    cx.wait("prepare the query", D::prepare(conn, sql)).await
}

/// The first column that cannot be rendered, as an error naming it and its type.
pub(crate) fn check_renderable<K>(
    columns: &[ResultColumn<K>],
    table: &str,
    cx: &Cx<'_>,
) -> Result<(), PackageError> {
    match columns.iter().find(|c| c.kind.is_none()) {
        None => Ok(()),
        Some(c) => Err(cx.data(
            format!("connection '{}', table '{table}'", cx.connection),
            format!(
                "column '{}' has type {}, which idlink cannot render as text; convert it in the query (e.g. CAST({} AS text), or CAST(... AS CHAR) in MySQL)",
                c.name, c.type_name, c.name
            ),
        )),
    }
}

/// Rows between two progress reports.
const PROGRESS_EVERY: u64 = 16_384;

/// A table opened for a query's result.
pub(crate) struct Opened<K> {
    pub table: TableId,
    pub name: String,
    pub columns: Vec<ResultColumn<K>>,
    pub kinds: Vec<K>,
}

impl<K> Opened<K> {
    /// The location of a value, for messages.
    pub fn at(&self, cx: &Cx<'_>, row: u64, column: usize) -> String {
        let c = &self.columns[column];
        format!(
            "connection '{}', table '{}', row {row}, column '{}' ({})",
            cx.connection, self.name, c.name, c.type_name
        )
    }
}

/// Describes the query's result and opens its table: fails, before any row is read, when the
/// statement returns no columns or a column cannot be rendered.
pub(crate) async fn open<D: Dialect>(
    conn: &mut <D::DB as Database>::Connection,
    query: &Query<'_>,
    out: &mut ExportOutput,
    cx: &Cx<'_>,
) -> Result<Opened<D::Kind>, PackageError> {
    let name = out.table_name(query.suffix);
    let columns = describe::<D>(conn, query.sql, cx).await?;
    if columns.is_empty() {
        return Err(cx.data(
            format!("connection '{}', table '{name}'", cx.connection),
            "the statement returns no columns: the command must be a query (SELECT ...)"
                .to_string(),
        ));
    }
    check_renderable(&columns, &name, cx)?;
    let kinds: Vec<D::Kind> = columns.iter().filter_map(|c| c.kind.clone()).collect();
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let table = out.create(query.suffix, &names)?;
    cx.progress.phase(&format!("reading {name}"));
    Ok(Opened {
        table,
        name,
        columns,
        kinds,
    })
}

/// Counts rows and reports progress in batches.
pub(crate) struct Counter {
    pub rows: u64,
}

impl Counter {
    pub fn new() -> Self {
        Counter { rows: 0 }
    }

    pub fn add(&mut self, cx: &Cx<'_>, table: &str) {
        self.rows += 1;
        if self.rows.is_multiple_of(PROGRESS_EVERY) {
            cx.progress.rows(table, PROGRESS_EVERY);
        }
    }

    pub fn finish(self, cx: &Cx<'_>, table: &str) -> u64 {
        if !self.rows.is_multiple_of(PROGRESS_EVERY) {
            cx.progress.rows(table, self.rows % PROGRESS_EVERY);
        }
        self.rows
    }
}

/// Exports the result of one query as one table, row by row. Returns the number of rows.
pub(crate) async fn export_query<D: Dialect>(
    conn: &mut <D::DB as Database>::Connection,
    query: &Query<'_>,
    out: &mut ExportOutput,
    cx: &Cx<'_>,
) -> Result<u64, PackageError>
where
    usize: ColumnIndex<<D::DB as Database>::Row>,
{
    let opened = open::<D>(conn, query, out, cx).await?;
    let Opened {
        table, ref kinds, ..
    } = opened;
    let mut stream = D::fetch(conn, query.sql);
    let mut watch = Watch::new(cx.timeout);
    let mut cells: Vec<String> = vec![String::new(); kinds.len()];
    let mut count = Counter::new();
    loop {
        let row = match watch.next(&mut stream, count.rows).await {
            Err(TimedOut) => return Err(cx.timed_out("read rows")),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(cx.sqlx("read rows", e)),
            Ok(Some(Ok(row))) => row,
        };
        if row.len() != kinds.len() {
            return Err(cx.data(
                format!("connection '{}', table '{}'", cx.connection, opened.name),
                format!(
                    "the query returned {} columns, but described {}",
                    row.len(),
                    kinds.len()
                ),
            ));
        }
        for (i, (cell, kind)) in cells.iter_mut().zip(kinds).enumerate() {
            cell.clear();
            let value = row.try_get_raw(i).map_err(|e| cx.sqlx("read rows", e))?;
            if value.is_null() {
                continue;
            }
            D::render(value, kind, cell)
                .map_err(|m| cx.data(opened.at(cx, count.rows + 1, i), m))?;
        }
        out.write(table, &cells)?;
        count.add(cx, &opened.name);
    }
    Ok(count.finish(cx, &opened.name))
}

/// No row came within the timeout.
pub(crate) struct TimedOut;

/// Bounds the wait for each row without arming a timer per row: one timer is re-armed when it
/// fires if rows arrived since it was armed. A stall is thus detected between one and two
/// timeouts after the last row, and exactly at the timeout before the first.
pub(crate) struct Watch {
    timer: Option<(std::pin::Pin<Box<tokio::time::Sleep>>, Duration)>,
    rows_at_arm: u64,
}

impl Watch {
    pub fn new(timeout: Option<Duration>) -> Self {
        Watch {
            timer: timeout.map(|t| (Box::pin(tokio::time::sleep(t)), t)),
            rows_at_arm: 0,
        }
    }

    pub async fn next<S: futures_util::Stream + Unpin>(
        &mut self,
        stream: &mut S,
        rows: u64,
    ) -> Result<Option<S::Item>, TimedOut> {
        let Some((timer, period)) = &mut self.timer else {
            return Ok(stream.next().await);
        };
        loop {
            tokio::select! {
                biased;
                item = stream.next() => return Ok(item),
                () = timer.as_mut() => {
                    if rows == self.rows_at_arm {
                        return Err(TimedOut);
                    }
                    self.rows_at_arm = rows;
                    timer.as_mut().reset(tokio::time::Instant::now() + *period);
                }
            }
        }
    }
}
