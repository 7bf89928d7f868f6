//! A connection's schema (SPEC §7): the connection tables a package describes and their
//! columns. Packages produce it ("Refresh schema"), the store keeps it as JSON, `check` reads
//! mapped tables and columns against it.
//!
//! The JSON form is the one `idlink refresh-schema --format json` prints: value types as the
//! configuration writes them (`"Int32"`), keys as `"none"`, `"primary"` or `"unique"`.

use serde::{Deserialize, Serialize};

use crate::config::{KeyType, ValueType};

/// A connection's schema: its tables and their columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionSchema {
    pub tables: Vec<TableSchema>,
}

impl ConnectionSchema {
    /// The table named `name` (connection table names compare case-insensitively, as
    /// connection identifiers do).
    pub fn table(&self, name: &str) -> Option<&TableSchema> {
        self.tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// The full connection table name.
    pub name: String,
    pub columns: Vec<ColumnSchema>,
}

impl TableSchema {
    /// The column named exactly `name` (column names are case-sensitive, as mappings write them).
    pub fn column(&self, name: &str) -> Option<&ColumnSchema> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    #[serde(with = "value_type_serde")]
    pub value_type: ValueType,
    /// The source's own type name (e.g. `timestamp with time zone`), when it has one.
    #[serde(default)]
    pub source_type: Option<String>,
    #[serde(default)]
    pub multivalued: bool,
    #[serde(with = "key_type_serde", default)]
    pub key: KeyType,
}

impl ColumnSchema {
    /// A plain string column.
    pub fn string(name: impl Into<String>) -> Self {
        ColumnSchema {
            name: name.into(),
            value_type: ValueType::String,
            source_type: None,
            multivalued: false,
            key: KeyType::None,
        }
    }
}

const VALUE_TYPES: &[(ValueType, &str)] = &[
    (ValueType::String, "String"),
    (ValueType::Bytes, "Bytes"),
    (ValueType::Int32, "Int32"),
    (ValueType::Int64, "Int64"),
    (ValueType::DateTime, "DateTime"),
    (ValueType::Bool, "Bool"),
    (ValueType::Guid, "Guid"),
    (ValueType::Double, "Double"),
    (ValueType::Binary, "Binary"),
    (ValueType::Byte, "Byte"),
    (ValueType::Int16, "Int16"),
];

/// `ValueType` as the configuration writes it.
pub fn value_type_name(t: ValueType) -> &'static str {
    VALUE_TYPES
        .iter()
        .find(|(v, _)| *v == t)
        .map_or("String", |(_, n)| n)
}

/// The `ValueType` a configuration name stands for (exact spelling).
pub fn value_type_from_name(name: &str) -> Option<ValueType> {
    VALUE_TYPES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(v, _)| *v)
}

/// `KeyType` as the schema JSON writes it.
pub fn key_type_name(k: KeyType) -> &'static str {
    match k {
        KeyType::None => "none",
        KeyType::Primary => "primary",
        KeyType::Unique => "unique",
    }
}

mod value_type_serde {
    use super::*;

    pub fn serialize<S: serde::Serializer>(t: &ValueType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value_type_name(*t))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ValueType, D::Error> {
        let name = String::deserialize(d)?;
        value_type_from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "'{name}' is not a value type (expected one of {})",
                VALUE_TYPES
                    .iter()
                    .map(|(_, n)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

mod key_type_serde {
    use super::*;

    pub fn serialize<S: serde::Serializer>(k: &KeyType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(key_type_name(*k))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<KeyType, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "none" => Ok(KeyType::None),
            "primary" => Ok(KeyType::Primary),
            "unique" => Ok(KeyType::Unique),
            other => Err(serde::de::Error::custom(format!(
                "'{other}' is not a key type (expected none, primary or unique)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_type_name_round_trips() {
        for (t, n) in VALUE_TYPES {
            assert_eq!(value_type_name(*t), *n);
            assert_eq!(value_type_from_name(n), Some(*t));
        }
        assert_eq!(value_type_from_name("int32"), None);
    }

    #[test]
    fn schema_json_round_trips_in_the_refresh_schema_shape() {
        let schema = ConnectionSchema {
            tables: vec![TableSchema {
                name: "HR_people".into(),
                columns: vec![
                    ColumnSchema {
                        name: "id".into(),
                        value_type: ValueType::Int64,
                        source_type: Some("bigint".into()),
                        multivalued: false,
                        key: KeyType::Primary,
                    },
                    ColumnSchema::string("name"),
                ],
            }],
        };
        let json = serde_json::to_value(&schema).expect("serializes");
        assert_eq!(json["tables"][0]["columns"][0]["value_type"], "Int64");
        assert_eq!(json["tables"][0]["columns"][0]["key"], "primary");
        assert_eq!(
            json["tables"][0]["columns"][1]["source_type"],
            serde_json::Value::Null
        );
        let back: ConnectionSchema = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, schema);
        assert!(back.table("hr_PEOPLE").is_some());
        assert!(back.tables[0].column("Name").is_none());
    }

    #[test]
    fn unknown_value_types_are_refused_with_the_list() {
        let e = serde_json::from_str::<ColumnSchema>(r#"{"name":"x","value_type":"Text"}"#)
            .expect_err("refused");
        assert!(e.to_string().contains("'Text' is not a value type"), "{e}");
    }
}
