//! Settings of `Usercube.FulfillDatabase`: where the database is (a secured `ConnectionString`,
//! read by the SQL packages' own parser), and per resource type the table its orders write and
//! the column that identifies a row.

use idlink_model::package::{Field, Kind, SettingsSchema};
use idlink_secrets::Secret;
use serde::Deserialize;

use crate::api::{PackageError, parse_settings};
use crate::sql::settings::SqlSettings;

/// One `Tables` entry.
pub static TABLE: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "ResourceType",
            Kind::String,
            "identifier of the resource type whose orders go to this table",
        ),
        Field::required(
            "Table",
            Kind::String,
            "the database table the orders insert into, update and delete from (in the connection's default schema or database)",
        ),
        Field::required(
            "KeyColumn",
            Kind::String,
            "the column that identifies a row (a target entity type property of the orders, e.g. login)",
        ),
    ],
    constraints: &[],
};

/// `ConnectionString`, `Tables[]`, `Timeout`.
pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "ConnectionString",
            Kind::String,
            "how to reach the database, as a URL that names its kind: postgres://user:password@host:port/database, mysql:// or mariadb://, sqlite:path/to/file.db (secured: it may carry a password)",
        )
        .secured(),
        Field::required(
            "Tables",
            Kind::ObjectList(&TABLE),
            "per resource type, the table its orders write and the key column that identifies a row",
        ),
        Field::optional(
            "SetupSql",
            Kind::String,
            "statements run before each batch, e.g. CREATE TABLE IF NOT EXISTS ... for a demo or test database (keep them idempotent); with SQLite, the database file is created when it does not exist yet",
        ),
        Field::optional(
            "Timeout",
            Kind::Int {
                min: 0,
                max: 86_400,
            },
            "longest wait for the database, in seconds (default 30; 0: no limit): for connecting and for each statement's answer",
        ),
    ],
    constraints: &[],
};

/// Where one resource type's orders go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMap {
    /// The resource type's identifier.
    pub resource_type: String,
    /// The table, as configured (matched to the database's spelling when the package runs).
    pub table: String,
    /// The column that identifies a row.
    pub key_column: String,
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct FulfillDatabaseSettings {
    /// The database and how long to wait for it (the SQL packages' checked form).
    pub sql: SqlSettings,
    pub tables: Vec<TableMap>,
    /// `SetupSql`: statements run before each batch (creating the tables of a demo database).
    pub setup_sql: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Raw {
    connection_string: Secret,
    #[serde(default)]
    tables: Option<Vec<RawTable>>,
    #[allow(dead_code)] // Parsed for its type here; SqlSettings reads it.
    timeout: Option<u64>,
    #[serde(default)]
    setup_sql: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawTable {
    resource_type: Option<String>,
    table: Option<String>,
    key_column: Option<String>,
}

const TABLES_SHAPE: &str =
    r#"[{"ResourceType": "<resource type>", "Table": "<table>", "KeyColumn": "<column>"}]"#;

impl FulfillDatabaseSettings {
    /// Checks settings (from [`idlink_model::settings::typed_json`]); no I/O, and no message
    /// quotes the connection string.
    pub fn parse(
        connection: &str,
        settings: serde_json::Value,
    ) -> Result<FulfillDatabaseSettings, PackageError> {
        let err = |path: String, message: String| PackageError::Settings {
            connection: connection.to_string(),
            path,
            message,
        };
        let raw: Raw = parse_settings(connection, settings.clone())?;
        if !is_url(raw.connection_string.expose_secret()) {
            return Err(err(
                "ConnectionString".to_string(),
                "this package writes to PostgreSQL, MySQL/MariaDB or SQLite, so the connection string must be a URL that names which: postgres://user:password@host:port/database, mysql://... (or mariadb://...), or sqlite:path/to/file.db".to_string(),
            ));
        }
        let Some(raw_tables) = raw.tables else {
            return Err(err(
                "Tables".to_string(),
                format!(
                    "is missing: list, per resource type, the table its orders write and the column that identifies a row: {TABLES_SHAPE}"
                ),
            ));
        };
        if raw_tables.is_empty() {
            return Err(err(
                "Tables".to_string(),
                format!(
                    "is empty, so no order could go anywhere: list, per resource type, the table its orders write and the column that identifies a row: {TABLES_SHAPE}"
                ),
            ));
        }
        let mut tables: Vec<TableMap> = Vec::with_capacity(raw_tables.len());
        for (i, t) in raw_tables.into_iter().enumerate() {
            let field = |name: &str, value: Option<String>, what: &str| match value
                .map(|v| v.trim().to_string())
            {
                Some(v) if !v.is_empty() => Ok(v),
                Some(_) => Err(err(
                    format!("Tables[{i}].{name}"),
                    format!("is empty: give {what}"),
                )),
                None => Err(err(
                    format!("Tables[{i}].{name}"),
                    format!("is missing: give {what}"),
                )),
            };
            let resource_type = field(
                "ResourceType",
                t.resource_type,
                "the identifier of the resource type whose orders go to this table",
            )?;
            let table = field(
                "Table",
                t.table,
                "the database table this resource type's orders write",
            )?;
            let key_column = field(
                "KeyColumn",
                t.key_column,
                "the column that identifies a row of the table (e.g. login)",
            )?;
            if let Some(j) = tables
                .iter()
                .position(|x| x.resource_type.eq_ignore_ascii_case(&resource_type))
            {
                return Err(err(
                    format!("Tables[{i}].ResourceType"),
                    format!(
                        "resource type '{resource_type}' is already mapped by Tables[{j}]: one table per resource type"
                    ),
                ));
            }
            tables.push(TableMap {
                resource_type,
                table,
                key_column,
            });
        }
        // The rest (ConnectionString, Timeout) is the SQL packages' business.
        let mut rest = settings;
        if let Some(o) = rest.as_object_mut() {
            o.retain(|k, _| !k.eq_ignore_ascii_case("Tables"));
        }
        let sql = SqlSettings::parse(connection, None, rest)?;
        let setup_sql = raw.setup_sql.filter(|s| !s.trim().is_empty());
        Ok(FulfillDatabaseSettings {
            sql,
            tables,
            setup_sql,
        })
    }

    /// The `Tables` entry of a resource type (exact spelling first, then ignoring case).
    pub fn table_of(&self, resource_type: &str) -> Option<&TableMap> {
        self.tables
            .iter()
            .find(|t| t.resource_type == resource_type)
            .or_else(|| {
                self.tables
                    .iter()
                    .find(|t| t.resource_type.eq_ignore_ascii_case(resource_type))
            })
    }
}

fn is_url(s: &str) -> bool {
    let s = s.trim();
    s.contains("://")
        || s.get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("sqlite:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<FulfillDatabaseSettings, String> {
        FulfillDatabaseSettings::parse("AppsDB", v).map_err(|e| e.to_string())
    }

    #[test]
    fn good_settings_give_tables_and_the_sql_target() {
        let s = parse(json!({
            "ConnectionString": "postgres://app:pw-s3cret@db.example:5433/apps",
            "Tables": [
                {"ResourceType": "Apps_Account", "Table": "accounts", "KeyColumn": "login"},
                {"ResourceType": "Apps_Group", "Table": " groups ", "KeyColumn": "name"}
            ],
            "Timeout": 5
        }))
        .expect("ok");
        assert_eq!(s.tables.len(), 2);
        assert_eq!(s.tables[1].table, "groups");
        assert_eq!(
            s.table_of("apps_account").map(|t| t.key_column.as_str()),
            Some("login")
        );
        assert!(s.table_of("Other").is_none());
        assert_eq!(
            s.sql.target.describe(),
            "PostgreSQL at db.example:5433/apps"
        );
        assert_eq!(s.sql.timeout, Some(std::time::Duration::from_secs(5)));
        assert!(s.sql.secrets.leaks("pw-s3cret"));
        let s = parse(json!({
            "ConnectionString": "sqlite:data/apps.db",
            "Tables": [{"ResourceType": "A", "Table": "t", "KeyColumn": "k"}]
        }))
        .expect("sqlite");
        assert_eq!(s.sql.target.describe(), "SQLite database 'data/apps.db'");
        assert_eq!(s.sql.timeout, Some(std::time::Duration::from_secs(30)));
    }

    #[test]
    fn missing_or_empty_tables_and_fields_say_what_to_write() {
        let cs = "mysql://u:pw-s3cret@h/db";
        for (tables, path, wants) in [
            (None, "Tables", "is missing"),
            (Some(json!([])), "Tables", "is empty"),
            (
                Some(json!([{"ResourceType": "A", "Table": "t"}])),
                "Tables[0].KeyColumn",
                "is missing: give the column that identifies a row",
            ),
            (
                Some(json!([{"ResourceType": "A", "KeyColumn": "k"}])),
                "Tables[0].Table",
                "is missing",
            ),
            (
                Some(json!([{"Table": "t", "KeyColumn": "k"}])),
                "Tables[0].ResourceType",
                "is missing",
            ),
            (
                Some(json!([{"ResourceType": "A", "Table": "t", "KeyColumn": " "}])),
                "Tables[0].KeyColumn",
                "is empty",
            ),
            (
                Some(json!([
                    {"ResourceType": "A", "Table": "t", "KeyColumn": "k"},
                    {"ResourceType": "a", "Table": "u", "KeyColumn": "k"}
                ])),
                "Tables[1].ResourceType",
                "resource type 'a' is already mapped by Tables[0]",
            ),
        ] {
            let mut v = json!({ "ConnectionString": cs });
            if let Some(t) = tables {
                v["Tables"] = t;
            }
            let e = parse(v).expect_err(path);
            assert!(e.contains(&format!("setting {path}: {wants}")), "{e}");
            assert!(!e.contains("pw-s3cret"), "{e}");
        }
    }

    #[test]
    fn connection_string_problems_name_the_setting_without_its_value() {
        let tables = json!([{"ResourceType": "A", "Table": "t", "KeyColumn": "k"}]);
        let e = parse(json!({"Tables": tables})).expect_err("missing");
        assert!(e.contains("ConnectionString"), "{e}");
        let e = parse(json!({
            "ConnectionString": "Host=h;Database=d;Password=pw-s3cret",
            "Tables": tables
        }))
        .expect_err("pairs");
        assert!(
            e.contains("setting ConnectionString: ") && e.contains("URL"),
            "{e}"
        );
        assert!(!e.contains("pw-s3cret"), "{e}");
        let e = parse(json!({
            "ConnectionString": "oracle://u:pw-s3cret@h/db",
            "Tables": tables
        }))
        .expect_err("scheme");
        assert!(
            e.contains("unknown URL scheme") && !e.contains("pw-s3cret"),
            "{e}"
        );
        let e = parse(json!({
            "ConnectionString": "sqlite:x.db",
            "Tables": tables,
            "SqlCommand": "SELECT 1"
        }))
        .expect_err("unknown field");
        assert!(e.contains("SqlCommand"), "{e}");
    }
}
