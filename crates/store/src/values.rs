//! How a resource's values are stored (`resources.data`).
//!
//! A resource written by a synchronization holds its values as a JSON array that starts with
//! the id of a *layout*: the list of its entity type's property identifiers that the other
//! elements follow, kept once in `resource_layouts` ([`crate::SyncTx::data_layout`]). `null`
//! is a property without a value, and trailing ones are left out:
//!
//! ```text
//! layout 3 = ["EmployeeId", "Grade", "Login", "Phone"]
//! data     = [3,"E0000001",7,"ada.lovelace1"]
//! ```
//!
//! A million resources of ten properties are then 100 MB smaller than as JSON objects, which
//! SQLite writes twice (to its log and at the checkpoint). A property added to or removed from
//! an entity type gets a new layout for the rows written after; rows keep the layout they were
//! written with. A JSON object (how stores before format 9 held values, and still a valid
//! `data`) reads as it is.

use std::collections::HashMap;
use std::io::Write as _;

use serde_json::{Map, Value};

/// Writes one resource's `data` text in a layout, value by value in the layout's order.
#[derive(Debug)]
pub struct Packer {
    layout: i64,
    buf: Vec<u8>,
    /// Properties without a value since the last one with a value: written as `null` only
    /// when a value follows.
    absent: usize,
}

impl Packer {
    pub fn new(layout: i64) -> Packer {
        Packer {
            layout,
            buf: Vec::with_capacity(256),
            absent: 0,
        }
    }

    /// Starts a resource.
    pub fn start(&mut self) {
        self.buf.clear();
        self.buf.push(b'[');
        let _ = write!(self.buf, "{}", self.layout);
        self.absent = 0;
    }

    /// The next property's value, as JSON text.
    pub fn value(&mut self, json: &[u8]) {
        for _ in 0..self.absent {
            self.buf.extend_from_slice(b",null");
        }
        self.absent = 0;
        self.buf.push(b',');
        self.buf.extend_from_slice(json);
    }

    /// The next property has no value.
    pub fn absent(&mut self) {
        self.absent += 1;
    }

    /// The resource's `data` text (an error when a value given was not UTF-8).
    pub fn finish(&mut self) -> Result<&str, std::str::Utf8Error> {
        self.buf.push(b']');
        std::str::from_utf8(&self.buf)
    }
}

/// Reads a resource's `data` text: a JSON object, or an array in one of `layouts` (id ->
/// property identifiers).
pub(crate) fn decode(
    text: &str,
    layouts: &HashMap<i64, Vec<String>>,
) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text).map_err(|e| e.to_string())? {
        Value::Object(m) => Ok(m),
        Value::Array(values) => {
            let mut values = values.into_iter();
            let id = values
                .next()
                .and_then(|v| v.as_i64())
                .ok_or("the values do not start with a layout id")?;
            let names = layouts
                .get(&id)
                .ok_or_else(|| format!("layout {id} is not one of its entity type's"))?;
            if values.len() > names.len() {
                return Err(format!(
                    "{} values for the {} properties of layout {id}",
                    values.len(),
                    names.len()
                ));
            }
            Ok(names
                .iter()
                .zip(values)
                .filter(|(_, v)| !v.is_null())
                .map(|(n, v)| (n.clone(), v))
                .collect())
        }
        _ => Err("neither a JSON object nor an array".into()),
    }
}

/// The text of a layout's property list, as `resource_layouts.properties` keeps it.
pub(crate) fn layout_text(properties: &[&str]) -> String {
    Value::from(properties.to_vec()).to_string()
}

/// Reads `resource_layouts.properties`.
pub(crate) fn layout_of(text: &str) -> Result<Vec<String>, String> {
    serde_json::from_str(text).map_err(|e| format!("a layout is unreadable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layouts() -> HashMap<i64, Vec<String>> {
        HashMap::from([(
            3,
            ["A", "B", "C", "D"].iter().map(|s| s.to_string()).collect(),
        )])
    }

    #[test]
    fn absent_values_are_nulls_between_and_nothing_at_the_end() {
        let mut p = Packer::new(3);
        p.start();
        p.absent();
        p.value(b"\"x\"");
        p.absent();
        p.absent();
        assert_eq!(p.finish(), Ok(r#"[3,null,"x"]"#));
        let m = decode(r#"[3,null,"x"]"#, &layouts()).expect("decode");
        assert_eq!(Value::Object(m), serde_json::json!({"B": "x"}));
        p.start();
        for v in [&b"1"[..], b"true", b"[\"m\",\"n\"]", b"\"d\""] {
            p.value(v);
        }
        let m = decode(p.finish().expect("text"), &layouts()).expect("decode");
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"A": 1, "B": true, "C": ["m", "n"], "D": "d"})
        );
        p.start();
        assert_eq!(p.finish(), Ok("[3]"));
        p.start();
        p.value(b"\"\xff\"");
        assert!(p.finish().is_err(), "not UTF-8");
        assert!(decode("[3]", &layouts()).expect("decode").is_empty());
    }

    #[test]
    fn objects_read_as_they_are_and_bad_texts_are_refused() {
        let m = decode(r#"{"Z":"z","A":1}"#, &layouts()).expect("decode");
        assert_eq!(Value::Object(m), serde_json::json!({"Z": "z", "A": 1}));
        for (text, says) in [
            ("[4,1]", "layout 4"),
            ("[3,1,2,3,4,5]", "5 values for the 4"),
            (r#"["3",1]"#, "layout id"),
            ("[]", "layout id"),
            ("7", "neither"),
            ("[3,", "EOF"),
        ] {
            let e = decode(text, &layouts()).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn a_layout_text_reads_back() {
        let t = layout_text(&["a\"b", "é"]);
        assert_eq!(layout_of(&t).expect("read"), ["a\"b", "é"]);
    }
}
