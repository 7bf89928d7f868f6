//! What the service says it holds: `/ResourceTypes` (endpoints, core schema, extensions) and
//! `/Schemas` (attributes), and the connection tables they make.
//!
//! Columns are the attributes as the SCIM page names them: `userName`, a sub-attribute of a
//! complex attribute as `name:givenName` (of a multi-valued one, `emails:value`: every
//! value's, in one multi-valued cell), an extension's attribute with its schema's URN in front
//! (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`,
//! `...:User:manager:value`). Every table starts with `id` (the primary key), `externalId`,
//! `meta:created` and `meta:lastModified`. Attributes the service never returns (`password`)
//! are left out; so is `members` of an entity whose memberships go to their own
//! `<connection>_members_<entity>` table (`value`, `MemberId`).

use idlink_model::config::{KeyType, ValueType};
use reqwest::Method;
use serde_json::Value;

use super::client::Client;
use crate::api::{ColumnSchema, ConnectionSchema, PackageError, TableSchema};

/// The core schema of users.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core schema of groups.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise user extension.
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// One attribute of a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    /// `string`, `boolean`, `decimal`, `integer`, `dateTime`, `binary`, `reference`, `complex`.
    pub kind: String,
    pub multi: bool,
    pub sub: Vec<Attribute>,
    /// `returned: never` (a password): never exported.
    pub never_returned: bool,
}

/// One resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// `User`.
    pub name: String,
    /// `Users` (the endpoint without its `/`).
    pub endpoint: String,
    /// The core schema's URN.
    pub schema: String,
    pub extensions: Vec<String>,
}

/// The service's resource types and schemas.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub types: Vec<ResourceType>,
    pub schemas: Vec<(String, Vec<Attribute>)>,
}

/// A column of an entity table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub value_type: ValueType,
    pub source_type: String,
    pub multi: bool,
}

impl Catalog {
    /// Reads `/ResourceTypes` and `/Schemas`.
    pub async fn read(client: &Client, operation: &'static str) -> Result<Catalog, PackageError> {
        let (types, schemas) = tokio::join!(
            list(client, "ResourceTypes", operation),
            list(client, "Schemas", operation)
        );
        let (types, schemas) = (types?, schemas?);
        let mut out = Catalog::default();
        for t in &types {
            let Some(name) = t.get("name").and_then(Value::as_str) else {
                continue;
            };
            let endpoint = t
                .get("endpoint")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .trim_matches('/')
                .to_string();
            let schema = t
                .get("schema")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let extensions = t
                .get("schemaExtensions")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.get("schema").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            out.types.push(ResourceType {
                name: name.to_string(),
                endpoint,
                schema,
                extensions,
            });
        }
        for s in &schemas {
            let Some(id) = s.get("id").and_then(Value::as_str) else {
                continue;
            };
            let attrs = s
                .get("attributes")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(attribute).collect())
                .unwrap_or_default();
            out.schemas.push((id.to_string(), attrs));
        }
        if out.types.is_empty() {
            return Err(client
                .cx
                .data("GET /ResourceTypes", "the service lists no resource type"));
        }
        Ok(out)
    }

    /// What idlink assumes of a service that does not describe itself: `Users` (with the
    /// enterprise extension) and `Groups`, attributes unknown.
    pub fn fallback() -> Catalog {
        Catalog {
            types: vec![
                ResourceType {
                    name: "User".into(),
                    endpoint: "Users".into(),
                    schema: USER_SCHEMA.into(),
                    extensions: vec![ENTERPRISE_SCHEMA.into()],
                },
                ResourceType {
                    name: "Group".into(),
                    endpoint: "Groups".into(),
                    schema: GROUP_SCHEMA.into(),
                    extensions: Vec::new(),
                },
            ],
            schemas: Vec::new(),
        }
    }

    /// The resource type of an entity: by endpoint (`Users`), else by name (`User`).
    pub fn resource_type(&self, entity: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.endpoint.eq_ignore_ascii_case(entity))
            .or_else(|| {
                self.types
                    .iter()
                    .find(|t| t.name.eq_ignore_ascii_case(entity))
            })
    }

    /// A schema's attributes.
    pub fn attributes(&self, schema: &str) -> Option<&[Attribute]> {
        self.schemas
            .iter()
            .find(|(id, _)| id.eq_ignore_ascii_case(schema))
            .map(|(_, a)| a.as_slice())
    }

    /// Whether an attribute is multi-valued (`None`: the schema is unknown).
    pub fn is_multi(&self, rt: &ResourceType, urn: Option<&str>, name: &str) -> Option<bool> {
        let schema = urn.unwrap_or(&rt.schema);
        self.attributes(schema)?
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .map(|a| a.multi)
    }

    /// Whether a resource type has a `members` attribute (its memberships get a table).
    pub fn has_members(&self, rt: &ResourceType) -> bool {
        match self.attributes(&rt.schema) {
            Some(attrs) => attrs.iter().any(|a| a.name.eq_ignore_ascii_case("members")),
            None => rt.schema.eq_ignore_ascii_case(GROUP_SCHEMA),
        }
    }

    /// The columns of a resource type's table (`None` when its schema is unknown).
    pub fn columns(&self, rt: &ResourceType, without_members: bool) -> Option<Vec<Column>> {
        let core = self.attributes(&rt.schema)?;
        let mut out = vec![
            column("id", "string", false),
            column("externalId", "string", false),
            column("meta:created", "dateTime", false),
            column("meta:lastModified", "dateTime", false),
        ];
        let fixed = ["id", "externalId", "meta"];
        for a in core {
            if fixed.iter().any(|f| a.name.eq_ignore_ascii_case(f))
                || (without_members && a.name.eq_ignore_ascii_case("members"))
            {
                continue;
            }
            flatten(&mut out, "", a);
        }
        for ext in &rt.extensions {
            if let Some(attrs) = self.attributes(ext) {
                for a in attrs {
                    flatten(&mut out, &format!("{ext}:"), a);
                }
            }
        }
        Some(out)
    }

    /// The connection's tables: each resource type's, and the memberships of those with
    /// members. Resource types whose schema is unknown have an `id` column only.
    pub fn connection_schema(&self, connection: &str) -> ConnectionSchema {
        let mut tables = Vec::new();
        for rt in &self.types {
            let members = self.has_members(rt);
            let columns = self
                .columns(rt, members)
                .unwrap_or_else(|| vec![column("id", "string", false)]);
            tables.push(TableSchema {
                name: format!("{connection}_{}", rt.endpoint),
                columns: columns
                    .into_iter()
                    .map(|c| ColumnSchema {
                        key: if c.name == "id" {
                            KeyType::Primary
                        } else {
                            KeyType::None
                        },
                        name: c.name,
                        value_type: c.value_type,
                        source_type: Some(c.source_type),
                        multivalued: c.multi,
                    })
                    .collect(),
            });
            if members {
                tables.push(TableSchema {
                    name: format!("{connection}_members_{}", rt.endpoint),
                    columns: vec![
                        ColumnSchema::string("value"),
                        ColumnSchema::string("MemberId"),
                    ],
                });
            }
        }
        ConnectionSchema { tables }
    }
}

fn flatten(out: &mut Vec<Column>, prefix: &str, a: &Attribute) {
    if a.never_returned {
        return;
    }
    if a.sub.is_empty() {
        out.push(column(&format!("{prefix}{}", a.name), &a.kind, a.multi));
        return;
    }
    for s in a.sub.iter().filter(|s| !s.never_returned) {
        out.push(column(
            &format!("{prefix}{}:{}", a.name, s.name),
            &s.kind,
            a.multi || s.multi,
        ));
    }
}

fn column(name: &str, kind: &str, multi: bool) -> Column {
    Column {
        name: name.to_string(),
        value_type: value_type(kind),
        source_type: kind.to_string(),
        multi,
    }
}

/// A SCIM type as a column's value type.
pub fn value_type(kind: &str) -> ValueType {
    match kind.to_ascii_lowercase().as_str() {
        "boolean" => ValueType::Bool,
        "integer" => ValueType::Int64,
        "decimal" => ValueType::Double,
        "datetime" => ValueType::DateTime,
        "binary" => ValueType::Binary,
        _ => ValueType::String,
    }
}

fn attribute(v: &Value) -> Option<Attribute> {
    let name = v.get("name").and_then(Value::as_str)?.to_string();
    Some(Attribute {
        name,
        kind: v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string")
            .to_string(),
        multi: v
            .get("multiValued")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        sub: v
            .get("subAttributes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(attribute).collect())
            .unwrap_or_default(),
        never_returned: v
            .get("returned")
            .and_then(Value::as_str)
            .is_some_and(|r| r.eq_ignore_ascii_case("never")),
    })
}

/// The resources of a discovery endpoint: a ListResponse, or a plain array.
async fn list(
    client: &Client,
    endpoint: &str,
    operation: &'static str,
) -> Result<Vec<Value>, PackageError> {
    let url = client.url(&[endpoint], &[]);
    let (value, reply) = client.json(Method::GET, &url, None, operation).await?;
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(mut o) => match o.remove("Resources") {
            Some(Value::Array(items)) => Ok(items),
            None => Ok(Vec::new()),
            Some(_) => Err(client.cx.data(&reply.request, "Resources is not an array")),
        },
        _ => Err(client.cx.data(
            &reply.request,
            "the answer is neither a ListResponse nor an array",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn catalog() -> Catalog {
        let user = json!({"id": USER_SCHEMA, "attributes": [
            {"name": "userName", "type": "string"},
            {"name": "password", "type": "string", "returned": "never"},
            {"name": "active", "type": "boolean"},
            {"name": "name", "type": "complex", "subAttributes": [
                {"name": "givenName", "type": "string"}, {"name": "familyName", "type": "string"}]},
            {"name": "emails", "type": "complex", "multiValued": true, "subAttributes": [
                {"name": "value", "type": "string"}, {"name": "primary", "type": "boolean"}]},
        ]});
        let ext = json!({"id": ENTERPRISE_SCHEMA, "attributes": [
            {"name": "employeeNumber", "type": "string"},
            {"name": "manager", "type": "complex", "subAttributes": [{"name": "value", "type": "string"}]},
        ]});
        let group = json!({"id": GROUP_SCHEMA, "attributes": [
            {"name": "displayName", "type": "string"},
            {"name": "members", "type": "complex", "multiValued": true, "subAttributes": [
                {"name": "value", "type": "string"}]},
        ]});
        let mut c = Catalog::fallback();
        for s in [user, ext, group] {
            let id = s["id"].as_str().expect("id").to_string();
            let attrs = s["attributes"]
                .as_array()
                .expect("attrs")
                .iter()
                .filter_map(attribute)
                .collect();
            c.schemas.push((id, attrs));
        }
        c
    }

    #[test]
    fn columns_flatten_complex_multi_valued_and_extension_attributes() {
        let c = catalog();
        let users = c.resource_type("users").expect("Users");
        let cols = c.columns(users, false).expect("known");
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "id",
                "externalId",
                "meta:created",
                "meta:lastModified",
                "userName",
                "active",
                "name:givenName",
                "name:familyName",
                "emails:value",
                "emails:primary",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager:value",
            ]
        );
        let emails = cols
            .iter()
            .find(|c| c.name == "emails:value")
            .expect("emails");
        assert!(emails.multi);
        let active = cols.iter().find(|c| c.name == "active").expect("active");
        assert_eq!(active.value_type, ValueType::Bool);
        assert_eq!(
            c.resource_type("Group").map(|t| t.endpoint.as_str()),
            Some("Groups")
        );
    }

    #[test]
    fn the_connection_schema_has_a_members_table_for_groups() {
        let s = catalog().connection_schema("S");
        let names: Vec<&str> = s.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["S_Users", "S_Groups", "S_members_Groups"]);
        let groups = &s.tables[1];
        assert!(
            groups
                .columns
                .iter()
                .all(|c| !c.name.starts_with("members"))
        );
        assert_eq!(groups.columns[0].key, KeyType::Primary);
    }
}
