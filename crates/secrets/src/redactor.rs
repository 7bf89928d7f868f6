//! The one redactor every crate uses: the secret values of a connection (or of anything), and
//! how to scrub them out of text.

use crate::redact::redact;
use crate::secret::Secret;

/// The secret values to hide from anything shown: messages, logs, results, reports.
///
/// Built from the values of secured settings. A value that reads as a connection string
/// (`Host=db;Password=x` or `postgres://user:x@db/hr`) hides its secret parts (passwords,
/// tokens, keys) on their own too, and leaves the host, port, database and user readable: a
/// person needs those to diagnose a failure.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// Keys of a connection string whose values are secrets.
fn is_secret_key(key: &str) -> bool {
    let k = key.trim().to_ascii_lowercase().replace([' ', '_', '-'], "");
    ["password", "pwd", "pass", "token", "secret", "key", "apikey", "credential"]
        .iter()
        .any(|s| k == *s || k.ends_with(s))
        // `Key` alone is secret, but these name files or modes, not secrets.
        && !["sslkey", "sslrootcert", "sslcert", "keyfile", "primarykey"]
            .iter()
            .any(|s| k == *s)
}

impl Redactor {
    pub fn new() -> Self {
        Redactor::default()
    }

    /// Adds a secret value (the whole of it).
    pub fn add(&mut self, value: impl Into<String>) {
        let value = value.into();
        if !value.is_empty() && !self.secrets.iter().any(|s| s.expose_secret() == value) {
            self.secrets.push(Secret::new(value));
        }
    }

    /// Adds a secured value that may be a connection string: the whole value, and on their own
    /// the values of its secret keys (`Password=`, `Pwd=`, tokens, keys) and a URL's password.
    pub fn add_connection_string(&mut self, value: &str) {
        self.add(value);
        if let Some((_, rest)) = value.split_once("://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            if let Some((userinfo, _)) = authority.rsplit_once('@')
                && let Some((_, password)) = userinfo.split_once(':')
            {
                self.add(password);
                self.add(percent_decode(password));
            }
            if let Some((_, query)) = rest.split_once('?') {
                for pair in query.split('&') {
                    if let Some((k, v)) = pair.split_once('=')
                        && is_secret_key(k)
                    {
                        self.add(v);
                        self.add(percent_decode(v));
                    }
                }
            }
            return;
        }
        for part in value.split(';') {
            if let Some((k, v)) = part.split_once('=')
                && is_secret_key(k)
            {
                let v = v.trim();
                self.add(v);
                self.add(v.trim_matches(['"', '\'']));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret value replaced by `**REDACTED**` (see [`redact`]).
    pub fn redact(&self, text: &str) -> String {
        if self.secrets.is_empty() {
            return text.to_string();
        }
        let values: Vec<&str> = self.secrets.iter().map(Secret::expose_secret).collect();
        redact(text, &values)
    }

    /// Whether `text` holds any secret value (for tests and last-line checks).
    pub fn leaks(&self, text: &str) -> bool {
        self.redact(text) != text
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_keep_host_database_and_user_readable() {
        let mut r = Redactor::new();
        r.add_connection_string(
            "Host=db.example;Port=5432;Database=hr;Username=reader;Password=S3cr3t!x",
        );
        let shown = r.redact("cannot log in to db.example:5432/hr as reader with S3cr3t!x");
        assert_eq!(
            shown,
            "cannot log in to db.example:5432/hr as reader with **REDACTED**"
        );
    }

    #[test]
    fn url_passwords_are_hidden_encoded_and_decoded() {
        let mut r = Redactor::new();
        r.add_connection_string("postgres://reader:p%40ss-word@db:5432/hr?sslmode=require");
        assert_eq!(
            r.redact("postgres://reader:p%40ss-word@db:5432/hr and p@ss-word"),
            "postgres://reader:**REDACTED**@db:5432/hr and **REDACTED**"
        );
        assert_eq!(r.redact("db:5432/hr reader"), "db:5432/hr reader");
    }

    #[test]
    fn plain_values_are_hidden_whole() {
        let mut r = Redactor::new();
        r.add("tok-123456");
        assert_eq!(r.redact("Bearer tok-123456"), "Bearer **REDACTED**");
        assert!(r.leaks("x tok-123456"));
        assert!(!r.leaks("nothing here"));
    }

    #[test]
    fn secret_keys_are_recognised() {
        for k in [
            "Password",
            "PWD",
            "User Password",
            "AccessToken",
            "ApiKey",
            "client_secret",
            "Key",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["Host", "User ID", "Database", "SSL Mode", "SslKey", "Port"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
