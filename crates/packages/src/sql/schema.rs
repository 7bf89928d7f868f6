//! Refresh schema and check connection.

use idlink_model::config::KeyType;
use sqlx::Database;

use super::Conn;
use super::error::Cx;
use super::export::{Dialect, ResultColumn, check_renderable, describe};
use super::{mysql, postgres, sqlite};
use crate::api::{ColumnSchema, ConnectionSchema, PackageError, TableSchema};

fn columns<D: Dialect>(cols: &[ResultColumn<D::Kind>]) -> Vec<ColumnSchema> {
    cols.iter()
        .map(|c| {
            let (value_type, multivalued) = c
                .kind
                .as_ref()
                .map_or((idlink_model::config::ValueType::String, false), |k| {
                    D::value_type(k)
                });
            ColumnSchema {
                name: c.name.clone(),
                value_type,
                source_type: Some(c.type_name.clone()),
                multivalued,
                key: KeyType::None,
            }
        })
        .collect()
}

/// The columns of one query, with its table name. `strict`: a column that cannot be rendered
/// is an error (the export would fail on it).
async fn table<D: Dialect>(
    conn: &mut <D::DB as Database>::Connection,
    sql: &str,
    name: String,
    strict: bool,
    cx: &Cx<'_>,
) -> Result<TableSchema, PackageError> {
    let cols = describe::<D>(conn, sql, cx).await?;
    if strict {
        check_renderable(&cols, &name, cx)?;
    }
    Ok(TableSchema {
        name,
        columns: columns::<D>(&cols),
    })
}

async fn table_of(
    conn: &mut Conn,
    sql: &str,
    name: String,
    strict: bool,
    cx: &Cx<'_>,
) -> Result<TableSchema, PackageError> {
    match conn {
        Conn::Pg(c) => table::<postgres::Pg>(c, sql, name, strict, cx).await,
        Conn::My(c) => table::<mysql::My>(c, sql, name, strict, cx).await,
        Conn::Lite(c) => table::<sqlite::Lite>(c, sql, name, strict, cx).await,
    }
}

/// The schema: one table per query (the command, or the mapped tables); with no command
/// (`list_database`), also every table and view of the database not mapped yet, so that
/// mappings can choose among them.
pub(crate) async fn schema(
    conn: &mut Conn,
    queries: &[(String, Option<String>)],
    list_database: bool,
    connection: &str,
    cx: &Cx<'_>,
) -> Result<ConnectionSchema, PackageError> {
    let name = |suffix: Option<&str>| match suffix {
        Some(s) => format!("{connection}_{s}"),
        None => connection.to_string(),
    };
    let mut tables = Vec::new();
    for (sql, suffix) in queries {
        tables.push(table_of(conn, sql, name(suffix.as_deref()), true, cx).await?);
    }
    if list_database {
        for t in table_names(conn, cx).await? {
            let full = name(Some(&t));
            if tables.iter().any(|x| x.name.eq_ignore_ascii_case(&full)) {
                continue;
            }
            // A table that cannot be described (no privilege, ...) is left out.
            if let Ok(schema) = table_of(conn, &format!("SELECT * FROM {t}"), full, false, cx).await
            {
                tables.push(schema);
            }
        }
    }
    Ok(ConnectionSchema { tables })
}

/// The tables and views of the database, written as a query names them (quoted when needed).
pub(crate) async fn table_names(conn: &mut Conn, cx: &Cx<'_>) -> Result<Vec<String>, PackageError> {
    let op = "list tables";
    Ok(match conn {
        Conn::Pg(c) => {
            let rows: Vec<(String, String, bool)> = cx
                .wait(
                    op,
                    Box::pin(
                        sqlx::query_as(
                            "SELECT n.nspname::text, c.relname::text, n.nspname = current_schema() \
                         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') \
                         AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                         AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
                         ORDER BY 3 DESC, 1, 2",
                        )
                        .fetch_all(&mut *c),
                    ),
                )
                .await?;
            rows.into_iter()
                .map(|(schema, table, current)| {
                    if current {
                        quote(&table, '"')
                    } else {
                        format!("{}.{}", quote(&schema, '"'), quote(&table, '"'))
                    }
                })
                .collect()
        }
        Conn::My(c) => {
            let rows: Vec<(String, String, bool)> = cx
                .wait(
                    op,
                    Box::pin(
                        sqlx::query_as(
                            "SELECT CAST(table_schema AS CHAR), CAST(table_name AS CHAR), \
                         table_schema = DATABASE() FROM information_schema.tables \
                         WHERE table_schema = DATABASE() OR (DATABASE() IS NULL AND table_schema \
                         NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')) \
                         ORDER BY 1, 2",
                        )
                        .fetch_all(&mut *c),
                    ),
                )
                .await?;
            rows.into_iter()
                .map(|(schema, table, current)| {
                    if current {
                        quote(&table, '`')
                    } else {
                        format!("{}.{}", quote(&schema, '`'), quote(&table, '`'))
                    }
                })
                .collect()
        }
        Conn::Lite(c) => {
            let rows: Vec<(String,)> = cx
                .wait(
                    op,
                    Box::pin(
                        sqlx::query_as(
                            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
                         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                        )
                        .fetch_all(&mut *c),
                    ),
                )
                .await?;
            rows.into_iter().map(|(t,)| quote(&t, '"')).collect()
        }
    })
}

/// Words that cannot name a table unquoted (the reserved words of SQL:2016 that PostgreSQL,
/// MySQL or SQLite reserve, as far as table names go).
const RESERVED: &[&str] = &[
    "all",
    "and",
    "any",
    "as",
    "asc",
    "between",
    "by",
    "case",
    "check",
    "column",
    "constraint",
    "create",
    "cross",
    "current_date",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "delete",
    "desc",
    "distinct",
    "drop",
    "else",
    "end",
    "except",
    "exists",
    "false",
    "for",
    "foreign",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "in",
    "index",
    "inner",
    "insert",
    "intersect",
    "into",
    "is",
    "join",
    "key",
    "left",
    "like",
    "limit",
    "natural",
    "not",
    "null",
    "offset",
    "on",
    "or",
    "order",
    "outer",
    "primary",
    "references",
    "right",
    "select",
    "session_user",
    "set",
    "table",
    "then",
    "to",
    "true",
    "union",
    "unique",
    "update",
    "user",
    "using",
    "values",
    "when",
    "where",
    "with",
];

/// `name` as an identifier: as it is when plain lower-case, quoted with `q` otherwise.
fn quote(name: &str, q: char) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&name);
    if plain {
        return name.to_string();
    }
    let doubled = name.replace(q, &format!("{q}{q}"));
    format!("{q}{doubled}{q}")
}

/// `SELECT 1`, then the server's version.
pub(crate) async fn server_version(conn: &mut Conn, cx: &Cx<'_>) -> Result<String, PackageError> {
    let op = "check connection";
    Ok(match conn {
        Conn::Pg(c) => {
            let _: (i32,) = cx
                .wait(op, Box::pin(sqlx::query_as("SELECT 1").fetch_one(&mut *c)))
                .await?;
            let (v,): (String,) = cx
                .wait(
                    op,
                    Box::pin(
                        sqlx::query_as("SELECT current_setting('server_version')")
                            .fetch_one(&mut *c),
                    ),
                )
                .await?;
            format!("PostgreSQL {v}")
        }
        Conn::My(c) => {
            let _: (i64,) = cx
                .wait(op, Box::pin(sqlx::query_as("SELECT 1").fetch_one(&mut *c)))
                .await?;
            let (v,): (String,) = cx
                .wait(
                    op,
                    Box::pin(sqlx::query_as("SELECT CAST(VERSION() AS CHAR)").fetch_one(&mut *c)),
                )
                .await?;
            if v.to_ascii_lowercase().contains("mariadb") {
                format!("MariaDB {v}")
            } else {
                format!("MySQL {v}")
            }
        }
        Conn::Lite(c) => {
            // SQLite opens files lazily: reading the catalog proves the file is a database.
            let _: (i64,) = cx
                .wait(
                    op,
                    Box::pin(
                        sqlx::query_as("SELECT count(*) FROM sqlite_master").fetch_one(&mut *c),
                    ),
                )
                .await?;
            let (v,): (String,) = cx
                .wait(
                    op,
                    Box::pin(sqlx::query_as("SELECT sqlite_version()").fetch_one(&mut *c)),
                )
                .await?;
            format!("SQLite {v}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_only_when_needed() {
        assert_eq!(quote("people", '"'), "people");
        assert_eq!(quote("People", '"'), "\"People\"");
        assert_eq!(quote("user", '"'), "\"user\"");
        assert_eq!(quote("a\"b", '"'), "\"a\"\"b\"");
        assert_eq!(quote("group", '`'), "`group`");
        assert_eq!(quote("9lives", '"'), "\"9lives\"");
    }
}
