//! The [`Secret`] type.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// What every secret prints as: in `Debug`, `Display`, serde output and [`crate::redact`].
pub const REDACTED: &str = "**REDACTED**";

/// A secret string (a password, a token, a connection string, a secured option).
///
/// - `Debug` and `Display` print [`REDACTED`], so no log line or error message can show it.
/// - Serializing it (JSON for the API, run reports, `check --format json`) writes
///   [`REDACTED`]; deserializing reads the real value from a string.
/// - Its memory is zeroized when it is dropped (clones have their own buffer, zeroized too).
/// - The value is read only through [`Secret::expose_secret`], so every place that uses the
///   clear text is easy to find.
/// - `==` compares in constant time (for equal lengths).
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value. The `String` is moved, not copied, so no clear copy is left behind.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The clear value. Use it only where the value is needed (to connect to a system, or
    /// in [`crate::redact`]); never format it into a message.
    pub fn expose_secret(&self) -> &str {
        self.0.as_str()
    }

    /// Whether the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl Serialize for Secret {
    /// Always writes [`REDACTED`]: a secret never leaves through an API or a report.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// Reads a string (from self-describing formats such as JSON). A value of another type is
    /// refused with an error that names the type only: serde's default messages would quote a
    /// number or a boolean.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `deserialize_any`, not `deserialize_string`: serde_json answers the latter with its
        // own message for a number, quoting it.
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: de::Error>(kind: &str) -> E {
        E::custom(format_args!(
            "invalid type: {kind}, expected a string (a secured value is written as a JSON string)"
        ))
    }
}

impl de::Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Secret, E> {
        std::str::from_utf8(v)
            .map(Secret::new)
            .map_err(|_| Self::refuse("bytes that are not UTF-8"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(Self::refuse("boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(Self::refuse("integer"))
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Secret, E> {
        Err(Self::refuse("integer"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(Self::refuse("integer"))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Secret, E> {
        Err(Self::refuse("integer"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(Self::refuse("number"))
    }

    fn visit_char<E: de::Error>(self, v: char) -> Result<Secret, E> {
        Ok(Secret::new(v.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s:#?}"), REDACTED);
        assert_eq!(s.expose_secret(), "hunter2-very-secret");
    }

    #[test]
    fn serde_redacts_on_the_way_out() {
        let s: Secret = serde_json::from_str("\"hunter2-very-secret\"").unwrap();
        assert_eq!(s.expose_secret(), "hunter2-very-secret");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"**REDACTED**\"");
    }

    #[test]
    fn deserialize_error_does_not_show_value() {
        for text in ["12345678", "-12345678", "1234.5678", "true"] {
            let e = serde_json::from_str::<Secret>(text).unwrap_err();
            assert!(!e.to_string().contains(text), "{e}");
            assert!(e.to_string().contains("expected a string"), "{e}");
        }
    }

    #[test]
    fn equality() {
        assert_eq!(Secret::new("abc"), Secret::from("abc"));
        assert_ne!(Secret::new("abc"), Secret::from("abd"));
        assert_ne!(Secret::new("abc"), Secret::from("abcd"));
        let c = Secret::new("x").clone();
        assert_eq!(c.expose_secret(), "x");
        assert!(Secret::new("").is_empty());
    }
}
