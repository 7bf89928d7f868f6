//! Orders files (SPEC §6: `{"ProvisioningOrdersList": [...]}`), read with errors in the words of
//! that format: which order, which field, what is expected, at which line and column.

use std::path::Path;

use idlink_packages::api::{OrdersFile, ProvisioningOrder};
use idlink_store::StoredOrder;

use crate::EngineError;

/// A stored order as the CLI (`idlink orders --format json`) and the API show it: its record,
/// and the order itself under `order`.
pub fn stored_json(o: &StoredOrder) -> serde_json::Value {
    let body: serde_json::Value = serde_json::from_str(&o.body).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "id": o.id,
        "state": o.state,
        "changeType": o.change_type,
        "resourceType": o.resource_type,
        "connection": o.connection,
        "owner": o.owner_key,
        "target": o.target_key,
        "message": o.message,
        "createdAt": o.created_at,
        "updatedAt": o.updated_at,
        "order": body,
    })
}

/// Reads and checks an orders file.
pub fn load(path: &Path) -> Result<Vec<ProvisioningOrder>, EngineError> {
    let file = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| EngineError::io("read the orders file", path, e))?;
    parse(&file, &bytes)
}

/// Parses the text of an orders file named `file` (for messages).
pub fn parse(file: &str, bytes: &[u8]) -> Result<Vec<ProvisioningOrder>, EngineError> {
    let err = |location: Option<(usize, usize)>, message: String| EngineError::Orders {
        file: file.to_string(),
        location,
        message,
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "the file ends too early".to_string(),
            _ => format!(
                "this is not valid JSON ({})",
                strip_position(&e.to_string())
            ),
        };
        err(
            Some((e.line(), e.column())),
            format!("{what}; an orders file is {{\"ProvisioningOrdersList\": [ ...orders ]}}"),
        )
    })?;
    let shape = "an orders file is a JSON object {\"ProvisioningOrdersList\": [ ...orders ]}";
    let Some(top) = value.as_object() else {
        return Err(err(
            None,
            format!("the file holds {}; {shape}", describe(&value)),
        ));
    };
    let list = top
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("ProvisioningOrdersList"))
        .map(|(_, v)| v);
    match list {
        None => {
            return Err(err(
                None,
                format!("\"ProvisioningOrdersList\" is missing; {shape}"),
            ));
        }
        Some(v) if !v.is_array() => {
            return Err(err(
                None,
                format!(
                    "\"ProvisioningOrdersList\" holds {}; it must be an array of orders",
                    describe(v)
                ),
            ));
        }
        Some(_) => {}
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: OrdersFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        err(
            Some((inner.line(), inner.column())),
            format!(
                "{}: {}",
                where_(&path),
                words(&strip_position(&inner.to_string()))
            ),
        )
    })?;
    Ok(parsed.orders)
}

/// `ProvisioningOrdersList[2].ResourceType.Identifier` → `order #3 (ProvisioningOrdersList[2]), ResourceType.Identifier`.
fn where_(path: &str) -> String {
    let Some(rest) = path.strip_prefix("ProvisioningOrdersList[") else {
        return if path.is_empty() || path == "." {
            "the file".to_string()
        } else {
            path.to_string()
        };
    };
    let Some((index, field)) = rest.split_once(']') else {
        return path.to_string();
    };
    let n = index.parse::<usize>().map_or(0, |i| i + 1);
    let field = field.trim_start_matches('.');
    if field.is_empty() {
        format!("order #{n} (ProvisioningOrdersList[{index}])")
    } else {
        format!("order #{n} (ProvisioningOrdersList[{index}]), {field}")
    }
}

/// serde's messages in the words of the orders format.
fn words(message: &str) -> String {
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        let hint = match field {
            "ChangeType" => ": it is Added, Modified or Deleted",
            "ResourceType" => ": {\"Identifier\": \"<resource type>\"}",
            "Identifier" => ": the resource type's identifier",
            _ => "",
        };
        return format!("\"{field}\" is missing{hint}");
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((value, _)) = rest.split_once('`')
    {
        return format!("'{value}' is not a change type: use Added, Modified or Deleted");
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        let expected = match expected {
            e if e.starts_with("struct ResourceTypeRef") => {
                "an object {\"Identifier\": \"<resource type>\"}"
            }
            e if e.starts_with("struct ProvisioningOrder") => "an order object",
            e if e.starts_with("a map") => "an object",
            e if e.starts_with("a sequence") => "an array",
            e => e,
        };
        return format!("expected {expected}, found {found}");
    }
    message.to_string()
}

/// serde_json appends " at line L column C": the location is reported on its own.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn describe(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(a) if a.is_empty() => "an empty array",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn message(text: &str) -> String {
        parse("orders.json", text.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn regression_orders_file_errors_speak_the_orders_format() {
        let m = message("[]");
        assert!(
            m.contains("the file holds an empty array") && m.contains("ProvisioningOrdersList"),
            "{m}"
        );
        assert!(!m.contains("invalid length"), "{m}");
        let m = message("{}");
        assert!(m.contains("\"ProvisioningOrdersList\" is missing"), "{m}");
        let m = message("{\"ProvisioningOrdersList\": {}}");
        assert!(m.contains("holds an object; it must be an array"), "{m}");
        let m = message(
            "{\"ProvisioningOrdersList\": [\n {\"ChangeType\": \"Added\", \"ResourceType\": {\"Identifier\": \"A\"}},\n {\"ResourceType\": {\"Identifier\": \"A\"}}\n]}",
        );
        assert!(
            m.starts_with("orders.json:3:")
                && m.contains("order #2 (ProvisioningOrdersList[1])")
                && m.contains("\"ChangeType\" is missing: it is Added, Modified or Deleted"),
            "{m}"
        );
        let m = message(
            "{\"ProvisioningOrdersList\": [{\"ChangeType\": \"Create\", \"ResourceType\": {\"Identifier\": \"A\"}}]}",
        );
        assert!(
            m.contains("'Create' is not a change type: use Added, Modified or Deleted"),
            "{m}"
        );
        let m = message(
            "{\"ProvisioningOrdersList\": [{\"ChangeType\": \"Added\", \"ResourceType\": \"A\"}]}",
        );
        assert!(
            m.contains("ResourceType: expected an object {\"Identifier\""),
            "{m}"
        );
        let m = message("{\"ProvisioningOrdersList\": [");
        assert!(
            m.contains("orders.json:1:") && m.contains("ends too early"),
            "{m}"
        );
    }

    #[test]
    fn a_valid_file_gives_its_orders() {
        let orders = parse(
            "o.json",
            b"\xEF\xBB\xBF{\"ProvisioningOrdersList\": [{\"ChangeType\": \"Deleted\", \"ResourceType\": {\"Identifier\": \"A\"}}]}",
        )
        .unwrap();
        assert_eq!(orders.len(), 1);
    }
}
