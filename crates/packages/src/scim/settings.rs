//! Settings of the SCIM packages (`Usercube.SCIM` and its documented variants).
//!
//! The variants take the same settings; each has its own defaults: `Usercube.SCIM.Slack`
//! knows Slack's server, `Usercube.SCIM.Salesforce` Salesforce's token endpoint.

use std::time::Duration;

use idlink_model::package::{Constraint, Field, Kind, SettingsSchema};
use idlink_secrets::{Redactor, Secret};
use reqwest::Url;

use crate::api::{PackageError, parse_settings};

const VENDOR_DIALECT_REFUSED: &str = "idlink's SCIM client speaks RFC 7643/7644 only, not this vendor's variant; use ScimSyntax RFC if the service follows the RFC, else a package for that vendor";

/// Slack's SCIM API (`Usercube.SCIM.Slack`'s default `Server`).
pub const SLACK_SERVER: &str = "https://api.slack.com/scim";
/// Salesforce's OAuth2 token endpoint (`Usercube.SCIM.Salesforce`'s default `OAuth2Url`).
pub const SALESFORCE_OAUTH2_URL: &str = "https://login.salesforce.com/services/oauth2/token";

/// Resources per page when `PageSize` is not set (the documented default).
pub const DEFAULT_PAGE_SIZE: u32 = 200;
/// The wait for each response when `TimeOut` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest response body accepted when `MaxMessageSize` is not set (16 MiB).
pub const DEFAULT_MAX_MESSAGE: u64 = 16 * 1024 * 1024;
/// Requests in flight at once when `MaxConcurrentRequests` is not set.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Operations in one `/Bulk` request when neither `BulkMaxOperation` nor the server says.
pub const DEFAULT_BULK_MAX: usize = 100;

const SERVER: Field = Field::required(
    "Server",
    Kind::String,
    "base URL of the service, without `/v2` (http or https)",
)
.destination();
const LOGIN: Field = Field::optional(
    "Login",
    Kind::String,
    "user name: basic authentication, or with ApplicationId/ApplicationKey the account of an OAuth2 password grant",
)
.secured();
const PASSWORD: Field = Field::optional(
    "Password",
    Kind::String,
    "password of Login (basic authentication or OAuth2 password grant)",
)
.secured();
const OAUTH_TOKEN: Field = Field::optional(
    "OAuthToken",
    Kind::String,
    "a ready bearer token (used alone: Login and ApplicationId are then not used)",
)
.secured();
const APPLICATION_ID: Field = Field::optional(
    "ApplicationId",
    Kind::String,
    "OAuth2 client identifier (with ApplicationKey and OAuth2Url: client credentials, or a password grant with Login/Password)",
);
const APPLICATION_KEY: Field =
    Field::optional("ApplicationKey", Kind::String, "OAuth2 client secret").secured();
const OAUTH2_URL: Field = Field::optional(
    "OAuth2Url",
    Kind::String,
    "OAuth2 token endpoint (absent: the token_endpoint of the metadata the service's origin publishes at /.well-known/oauth-authorization-server or /.well-known/openid-configuration)",
)
.destination();
const FILTER: Field = Field::optional(
    "Filter",
    Kind::String,
    "entities to export and their filters: `Entity|?filter=...*Entity2|...`",
);
const PAGE_SIZE: Field = Field::optional(
    "PageSize",
    Kind::Int {
        min: 1,
        max: 10_000,
    },
    "resources per page (200)",
);
const SERVICE_SUPPORT_BULK: Field = Field::optional(
    "ServiceSupportBulk",
    Kind::Bool,
    "send changes as /Bulk requests",
);
const SCIM_SYNTAX: Field = Field::optional(
    "ScimSyntax",
    Kind::Enum(&["RFC", "Salesforce", "CyberArk"]),
    "the SCIM dialect (default RFC): idlink speaks RFC 7643/7644",
)
.refusing(&[
    ("Salesforce", VENDOR_DIALECT_REFUSED),
    ("CyberArk", VENDOR_DIALECT_REFUSED),
]);
const BULK_MAX_OPERATION: Field = Field::optional(
    "BulkMaxOperation",
    Kind::Int {
        min: 1,
        max: 100_000,
    },
    "most operations in one /Bulk request (default: the server's bulk.maxOperations, else 100)",
);
const TIME_OUT: Field = Field::optional(
    "TimeOut",
    Kind::Int {
        min: 0,
        max: i32::MAX as i64,
    },
    "seconds one HTTP request may take, connecting and reading the whole response included (default 120; 0: no limit)",
);
const MAX_MESSAGE_SIZE: Field = Field::optional(
    "MaxMessageSize",
    Kind::Int {
        min: 1024,
        max: i32::MAX as i64,
    },
    "largest response body accepted, in bytes (default 16777216, 16 MiB; one page of PageSize resources is one response). A response announcing more fails at once, before it is read",
);
const MAX_CONCURRENT_REQUESTS: Field = Field::optional(
    "MaxConcurrentRequests",
    Kind::Int { min: 1, max: 256 },
    "fulfill requests in flight at once without /Bulk (default 8)",
);
const PAGES_AHEAD: Field = Field::optional(
    "PagesAhead",
    Kind::Int { min: 0, max: 16 },
    "pages an export requests ahead of the one it writes, once the first page told totalResults (default 0: one page at a time, the kindest to the service; more helps with a distant service that serves requests in parallel)",
);
const CA_FILE: Field = Field::optional(
    "CaFile",
    Kind::String,
    "PEM file of CA certificates to trust besides the system's (an https Server with a private authority)",
);

/// `Usercube.SCIM` and `Usercube.SCIM.CyberArk`: `Server`, one way to authenticate, and
/// paging/bulk options.
pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        SERVER,
        LOGIN,
        PASSWORD,
        OAUTH_TOKEN,
        APPLICATION_ID,
        APPLICATION_KEY,
        OAUTH2_URL,
        FILTER,
        PAGE_SIZE,
        SERVICE_SUPPORT_BULK,
        SCIM_SYNTAX,
        BULK_MAX_OPERATION,
        TIME_OUT,
        MAX_MESSAGE_SIZE,
        MAX_CONCURRENT_REQUESTS,
        PAGES_AHEAD,
        CA_FILE,
    ],
    constraints: CONSTRAINTS,
};

/// `Usercube.SCIM.Slack`: `Server` defaults to Slack's API.
pub static SLACK_SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::optional(
            "Server",
            Kind::String,
            "base URL of the service, without `/v2` (default https://api.slack.com/scim)",
        )
        .destination(),
        LOGIN,
        PASSWORD,
        OAUTH_TOKEN,
        APPLICATION_ID,
        APPLICATION_KEY,
        OAUTH2_URL,
        FILTER,
        PAGE_SIZE,
        SERVICE_SUPPORT_BULK,
        SCIM_SYNTAX,
        BULK_MAX_OPERATION,
        TIME_OUT,
        MAX_MESSAGE_SIZE,
        MAX_CONCURRENT_REQUESTS,
        PAGES_AHEAD,
        CA_FILE,
    ],
    constraints: CONSTRAINTS,
};

/// `Usercube.SCIM.Salesforce`: `OAuth2Url` defaults to Salesforce's token endpoint.
pub static SALESFORCE_SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        SERVER,
        LOGIN,
        PASSWORD,
        OAUTH_TOKEN,
        APPLICATION_ID,
        APPLICATION_KEY,
        Field::optional(
            "OAuth2Url",
            Kind::String,
            "OAuth2 token endpoint (default https://login.salesforce.com/services/oauth2/token)",
        )
        .destination(),
        FILTER,
        PAGE_SIZE,
        SERVICE_SUPPORT_BULK,
        SCIM_SYNTAX,
        BULK_MAX_OPERATION,
        TIME_OUT,
        MAX_MESSAGE_SIZE,
        MAX_CONCURRENT_REQUESTS,
        PAGES_AHEAD,
        CA_FILE,
    ],
    constraints: CONSTRAINTS,
};

// As the SCIM page documents, an account's Login/Password may go with the application's
// ApplicationId/ApplicationKey (together they obtain a token); a ready OAuthToken replaces
// both.
const CONSTRAINTS: &[Constraint] = &[
    Constraint::AtMostOne(&["OAuthToken", "Password"]),
    Constraint::AtMostOne(&["OAuthToken", "ApplicationKey"]),
];

/// The defaults a variant brings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Defaults {
    pub server: Option<&'static str>,
    pub oauth2_url: Option<&'static str>,
}

/// How requests authenticate.
#[derive(Clone)]
pub enum Auth {
    /// No credentials (a service open to anyone who reaches it).
    None,
    /// `Login` / `Password` as HTTP basic authentication.
    Basic { login: Secret, password: Secret },
    /// `OAuthToken` as a bearer token.
    Bearer(Secret),
    /// A token from `OAuth2Url`: client credentials (`ApplicationId` / `ApplicationKey`), or a
    /// password grant when `Login` / `Password` come with them.
    OAuth2 {
        /// `None`: found in the authorization server's metadata (RFC 8414, or OpenID
        /// Connect discovery) at the service's origin.
        url: Option<Url>,
        client_id: String,
        /// `None`: a public client (password grant only).
        client_secret: Option<Secret>,
        account: Option<(Secret, Secret)>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { .. } => f.write_str("Basic(**REDACTED**)"),
            Auth::Bearer(_) => f.write_str("Bearer(**REDACTED**)"),
            Auth::OAuth2 {
                url,
                client_id,
                account,
                ..
            } => write!(
                f,
                "OAuth2 {{ url: {}, client_id: {client_id}, grant: {} }}",
                url.as_ref().map_or("(discovered)", Url::as_str),
                if account.is_some() {
                    "password"
                } else {
                    "client_credentials"
                }
            ),
        }
    }
}

impl Auth {
    /// How messages name the credentials in use (what to check when they are refused).
    pub fn describe(&self) -> &'static str {
        match self {
            Auth::None => "no credentials (none are set)",
            Auth::Basic { .. } => "Login and Password (basic authentication)",
            Auth::Bearer(_) => "OAuthToken (bearer token)",
            Auth::OAuth2 { account: None, .. } => {
                "a token obtained with ApplicationId and ApplicationKey from OAuth2Url"
            }
            Auth::OAuth2 { .. } => {
                "a token obtained with ApplicationId, ApplicationKey, Login and Password from OAuth2Url"
            }
        }
    }
}

/// One entity of `Filter` (or of the mappings): what to list and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityQuery {
    /// The endpoint's name, e.g. `Users` (the table suffix).
    pub entity: String,
    /// Extra query parameters (`filter`, `attributes`, `sortBy`, ...), decoded.
    pub params: Vec<(String, String)>,
}

impl EntityQuery {
    /// The `filter` parameter, if any.
    pub fn filter(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("filter"))
            .map(|(_, v)| v.as_str())
    }
}

/// The checked settings of a SCIM connection.
#[derive(Debug, Clone)]
pub struct ScimSettings {
    /// The endpoints' base, ending with `/v2/`.
    pub base: Url,
    pub auth: Auth,
    /// `Filter`, in order (empty: the mappings say, else Users and Groups).
    pub queries: Vec<EntityQuery>,
    pub page_size: u32,
    /// `ServiceSupportBulk`.
    pub bulk: bool,
    /// `BulkMaxOperation`.
    pub bulk_max: Option<usize>,
    /// Each request's limit; `None`: no limit.
    pub timeout: Option<Duration>,
    /// `MaxMessageSize`, in bytes.
    pub max_message: u64,
    pub concurrency: usize,
    /// `PagesAhead`: export pages requested ahead (0: one at a time).
    pub pages_ahead: usize,
    /// `CaFile` as written (resolved against the settings folder when the client is built).
    pub ca_file: Option<String>,
}

impl ScimSettings {
    /// The secured values, to remove from any message.
    pub fn secrets(&self) -> Redactor {
        let mut out = Redactor::new();
        match &self.auth {
            Auth::None => {}
            Auth::Basic { login, password } => {
                out.add(password.expose_secret());
                out.add(login.expose_secret());
            }
            Auth::Bearer(t) => out.add(t.expose_secret()),
            Auth::OAuth2 {
                client_secret,
                account,
                ..
            } => {
                if let Some(k) = client_secret {
                    out.add(k.expose_secret());
                }
                if let Some((login, password)) = account {
                    out.add(password.expose_secret());
                    out.add(login.expose_secret());
                }
            }
        }
        out
    }

    /// How messages name the server: the base URL (it holds no credentials).
    pub fn system(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }
}

#[derive(Debug, serde::Deserialize)]
// A field the schema lacks is refused, so the schema and this parser cannot disagree
// silently (the settings schema test in idlink-engine walks both).
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(rename = "Server", default)]
    server: Option<String>,
    #[serde(rename = "Login", default)]
    login: Option<Secret>,
    #[serde(rename = "Password", default)]
    password: Option<Secret>,
    #[serde(rename = "OAuthToken", default)]
    oauth_token: Option<Secret>,
    #[serde(rename = "ApplicationId", default)]
    application_id: Option<String>,
    #[serde(rename = "ApplicationKey", default)]
    application_key: Option<Secret>,
    #[serde(rename = "OAuth2Url", default)]
    oauth2_url: Option<String>,
    #[serde(rename = "Filter", default)]
    filter: Option<String>,
    #[serde(rename = "PageSize", default)]
    page_size: Option<i64>,
    #[serde(rename = "ServiceSupportBulk", default)]
    service_support_bulk: Option<bool>,
    #[serde(rename = "ScimSyntax", default)]
    scim_syntax: Option<String>,
    #[serde(rename = "BulkMaxOperation", default)]
    bulk_max_operation: Option<i64>,
    #[serde(rename = "TimeOut", default)]
    timeout: Option<i64>,
    #[serde(rename = "MaxMessageSize", default)]
    max_message: Option<i64>,
    #[serde(rename = "MaxConcurrentRequests", default)]
    concurrency: Option<i64>,
    #[serde(rename = "PagesAhead", default)]
    pages_ahead: Option<i64>,
    #[serde(rename = "CaFile", default)]
    ca_file: Option<String>,
}

/// Query parameters idlink sets itself while paging.
const PAGING_PARAMS: &[&str] = &["startIndex", "count", "cursor"];

/// Parses and checks the settings (no I/O). Messages name the setting, never a secured value.
pub fn parse(
    connection: &str,
    value: serde_json::Value,
    defaults: Defaults,
) -> Result<ScimSettings, PackageError> {
    let raw: Raw = parse_settings(connection, value)?;
    let err = |path: &str, message: String| PackageError::Settings {
        connection: connection.to_string(),
        path: path.to_string(),
        message,
    };
    if let Some(s) = raw.scim_syntax.as_deref()
        && let Some(why) = SETTINGS.field("ScimSyntax").and_then(|f| f.refusal(s))
    {
        return Err(err(
            "ScimSyntax",
            format!("is {}, which idlink refuses: {why}", s.trim()),
        ));
    }
    let server = match raw.server.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => match defaults.server {
            Some(d) => d.to_string(),
            None => {
                return Err(err(
                    "Server",
                    "is required: the service's base URL without /v2, e.g. \"https://scim.example.org/scim\"".into(),
                ));
            }
        },
    };
    let base = base_url(&server).map_err(|m| err("Server", m))?;
    let auth = auth(&raw, defaults, &err)?;
    let queries = match raw.filter.as_deref() {
        Some(f) => parse_filter(f).map_err(|m| err("Filter", m))?,
        None => Vec::new(),
    };
    let timeout = match raw.timeout {
        None => Some(DEFAULT_TIMEOUT),
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s.max(0) as u64)),
    };
    Ok(ScimSettings {
        base,
        auth,
        queries,
        page_size: raw
            .page_size
            .map_or(DEFAULT_PAGE_SIZE, |p| p.clamp(1, 10_000) as u32),
        bulk: raw.service_support_bulk.unwrap_or(false),
        bulk_max: raw.bulk_max_operation.map(|b| b.clamp(1, 100_000) as usize),
        timeout,
        max_message: raw.max_message.map_or(DEFAULT_MAX_MESSAGE, |m| {
            m.clamp(1024, i32::MAX as i64) as u64
        }),
        concurrency: raw
            .concurrency
            .map_or(DEFAULT_CONCURRENCY, |c| c.clamp(1, 256) as usize),
        pages_ahead: raw.pages_ahead.map_or(0, |p| p.clamp(0, 16) as usize),
        ca_file: raw.ca_file.filter(|c| !c.trim().is_empty()),
    })
}

/// `Server` + `/v2/`. A `Server` already ending with `/v2` is taken as it is.
fn base_url(server: &str) -> Result<Url, String> {
    let url = Url::parse(server).map_err(|e| {
        format!("'{server}' is not a URL ({e}): write the service's base URL, e.g. \"https://scim.example.org/scim\"")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "'{server}' is a {} URL: SCIM runs over http or https",
            url.scheme()
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "holds credentials (user:password@): give them as Login and Password instead".into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "'{}' has a query or a fragment: give only the base URL, and queries in Filter",
            url.host_str().unwrap_or_default()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{server}' names no host"));
    }
    let path = url.path().trim_end_matches('/');
    let path = if path.to_ascii_lowercase().ends_with("/v2") {
        format!("{path}/")
    } else {
        format!("{path}/v2/")
    };
    let mut url = url;
    url.set_path(&path);
    Ok(url)
}

fn auth(
    raw: &Raw,
    defaults: Defaults,
    err: &impl Fn(&str, String) -> PackageError,
) -> Result<Auth, PackageError> {
    if let Some(token) = &raw.oauth_token {
        if token.is_empty() {
            return Err(err("OAuthToken", "is empty".into()));
        }
        return Ok(Auth::Bearer(token.clone()));
    }
    let account = match (&raw.login, &raw.password) {
        (Some(l), Some(p)) if !l.is_empty() => Some((l.clone(), p.clone())),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(err("Login", "is empty".into())),
        (Some(_), None) => {
            return Err(err(
                "Password",
                "is missing: Login needs its Password".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(err("Login", "is missing: Password needs its Login".into()));
        }
    };
    let application = match (&raw.application_id, &raw.application_key) {
        (Some(id), key) if !id.trim().is_empty() => match (key, &account) {
            (Some(k), _) => Some((id.trim().to_string(), Some(k.clone()))),
            // A public client: the account's password grant without a client secret.
            (None, Some(_)) => Some((id.trim().to_string(), None)),
            (None, None) => {
                return Err(err(
                    "ApplicationKey",
                    "is missing: ApplicationId needs ApplicationKey (OAuth2 client credentials), or Login and Password (a password grant)".into(),
                ));
            }
        },
        (None, None) => None,
        (Some(_), _) => return Err(err("ApplicationId", "is empty".into())),
        (None, Some(_)) => {
            return Err(err(
                "ApplicationId",
                "is missing: ApplicationKey needs its ApplicationId (the OAuth2 client identifier)"
                    .into(),
            ));
        }
    };
    match application {
        Some((client_id, client_secret)) => {
            let written = raw
                .oauth2_url
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty());
            // Without one, the token endpoint is read from the service's metadata.
            let url = match written.or(defaults.oauth2_url) {
                None => None,
                Some(url) => Some(
                    Url::parse(url)
                        .ok()
                        .filter(|u| {
                            matches!(u.scheme(), "http" | "https") && u.host_str().is_some()
                        })
                        .ok_or_else(|| {
                            err("OAuth2Url", format!("'{url}' is not an http or https URL"))
                        })?,
                ),
            };
            Ok(Auth::OAuth2 {
                url,
                client_id,
                client_secret,
                account,
            })
        }
        None => {
            if raw.oauth2_url.is_some() {
                return Err(err(
                    "OAuth2Url",
                    "is given without ApplicationId and ApplicationKey, which obtain the token from it: add them, or remove OAuth2Url".into(),
                ));
            }
            Ok(match account {
                Some((login, password)) => Auth::Basic { login, password },
                None => Auth::None,
            })
        }
    }
}

/// `Entity|?filter=...*Entity2|...`: entities separated by `*`, each with its query string
/// written as in a URL (with or without `?`; percent-encoded or not).
pub fn parse_filter(text: &str) -> Result<Vec<EntityQuery>, String> {
    let mut out: Vec<EntityQuery> = Vec::new();
    for part in text.split('*') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (entity, query) = match part.split_once('|') {
            Some((e, q)) => (e.trim(), q.trim()),
            None => (part, ""),
        };
        let entity = entity.trim_start_matches('/');
        if entity.is_empty()
            || !entity
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(format!(
                "'{entity}' is not an entity name: write the endpoint's name (Users, Groups, ...) before '|', entities separated by '*'"
            ));
        }
        if out.iter().any(|q| q.entity.eq_ignore_ascii_case(entity)) {
            return Err(format!("entity '{entity}' appears twice"));
        }
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut params = Vec::new();
        for pair in query.split('&').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                format!("'{pair}' in the query of {entity} is not name=value (e.g. filter=active eq \"true\")")
            })?;
            let k = decode(k.trim());
            if PAGING_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(&k)) {
                return Err(format!(
                    "the query of {entity} sets {k}, which idlink sets itself while paging (PageSize sets count)"
                ));
            }
            params.push((k, decode(v)));
        }
        out.push(EntityQuery {
            entity: entity.to_string(),
            params,
        });
    }
    if out.is_empty() {
        return Err("names no entity: write e.g. Users|?filter=active eq \"true\"*Groups".into());
    }
    Ok(out)
}

/// Percent-decodes: filters may be written encoded or as plain text. A `+` stays a `+` (a
/// phone number's), not a space.
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use idlink_model::diag::Diagnostics;
    use idlink_model::settings::{check_against, parse as parse_json};
    use serde_json::json;

    use super::*;

    fn check(json: &str) -> Vec<String> {
        let mut d = Diagnostics::default();
        let s = parse_json("appsettings.agent.json", json.as_bytes(), &mut d);
        for c in &s.connections {
            check_against(c, "Usercube.SCIM@0000001", &SETTINGS, &mut d);
        }
        d.iter()
            .map(|d| format!("{}: {}", d.rule, d.message))
            .collect()
    }

    fn settings(v: serde_json::Value) -> Result<ScimSettings, PackageError> {
        parse("S", v, Defaults::default())
    }

    fn message(e: PackageError) -> String {
        e.to_string()
    }

    /// Issue #9: the SCIM page's own example (an account's Login/Password with the
    /// application's ApplicationId/ApplicationKey, and ScimSyntax) passes check untouched.
    #[test]
    fn regression_scim_documented_login_password_with_application_credentials_pass_check() {
        let found = check(
            r#"{"Connections": {"SCIMExport": {
                "ApplicationId": "app-1", "Server": "https://scim.example.org/services/scim",
                "ApplicationKey": "key-1", "Login": "admin", "Password": "pw-1",
                "Filter": "Users|?filter=active eq \"true\"", "ScimSyntax": "RFC",
                "ServiceSupportBulk": true, "BulkMaxOperation": 10
            }}}"#,
        );
        assert!(found.is_empty(), "{found:?}");
        // A ready token goes alone.
        let found = check(
            r#"{"Connections": {"S": {"Server": "https://x", "OAuthToken": "t", "Password": "p"}}}"#,
        );
        assert!(
            found
                .iter()
                .any(|m| m.contains("only one of OAuthToken, Password")),
            "{found:?}"
        );
        let found =
            check(r#"{"Connections": {"S": {"Server": "https://x", "ScimSyntax": "Okta"}}}"#);
        assert!(found.iter().any(|m| m.contains("ScimSyntax")), "{found:?}");
    }

    /// Issue #9: ScimSyntax's vendor dialects are documented values idlink refuses, saying why;
    /// RFC (the default) is accepted.
    #[test]
    fn regression_scim_vendor_dialects_are_refused_with_the_reason() {
        for dialect in ["Salesforce", "cyberark"] {
            let found = check(&format!(
                r#"{{"Connections": {{"S": {{"Server": "https://x", "ScimSyntax": "{dialect}"}}}}}}"#
            ));
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(
                found[0].contains("is refused by idlink") && found[0].contains("RFC 7643/7644"),
                "{found:?}"
            );
            let e = settings(json!({"Server": "https://x", "ScimSyntax": dialect}))
                .expect_err("refused");
            assert!(message(e).contains("RFC 7643/7644"));
        }
        assert!(
            check(r#"{"Connections": {"S": {"Server": "https://x", "ScimSyntax": "rfc"}}}"#)
                .is_empty()
        );
    }

    #[test]
    fn the_documented_example_is_a_password_grant_with_the_application_credentials() {
        let s = settings(json!({
            "ApplicationId": "app-1", "Server": "https://scim.example.org/services/scim",
            "ApplicationKey": "key-1", "Login": "admin", "Password": "pw-1",
            "OAuth2Url": "https://login.example.org/token",
            "Filter": "Users|?filter=active eq \"true\"",
        }))
        .expect("settings");
        assert_eq!(
            s.base.as_str(),
            "https://scim.example.org/services/scim/v2/"
        );
        assert!(matches!(
            &s.auth,
            Auth::OAuth2 {
                account: Some(_),
                ..
            }
        ));
        assert_eq!(s.queries[0].entity, "Users");
        assert_eq!(s.queries[0].filter(), Some("active eq \"true\""));
        assert_eq!(s.page_size, DEFAULT_PAGE_SIZE);
        let debug = format!("{s:?}");
        for secret in ["key-1", "pw-1", "admin"] {
            assert!(!debug.contains(secret), "{debug}");
            assert!(s.secrets().leaks(secret));
        }
        // Without OAuth2Url, the endpoint is discovered when the first token is needed.
        let s =
            settings(json!({"Server": "https://x", "ApplicationId": "a", "ApplicationKey": "k"}))
                .expect("discovered");
        assert!(matches!(&s.auth, Auth::OAuth2 { url: None, .. }));
        // Salesforce's variant knows its endpoint.
        let s = parse(
            "S",
            json!({"Server": "https://x", "ApplicationId": "a", "ApplicationKey": "k"}),
            Defaults {
                oauth2_url: Some(SALESFORCE_OAUTH2_URL),
                ..Defaults::default()
            },
        )
        .expect("salesforce");
        assert!(
            matches!(&s.auth, Auth::OAuth2 { url: Some(url), account: None, .. } if url.as_str() == SALESFORCE_OAUTH2_URL)
        );
    }

    #[test]
    fn authentication_is_basic_bearer_oauth2_or_none() {
        let basic = settings(json!({"Server": "http://h:8080/", "Login": "u", "Password": "p"}))
            .expect("basic");
        assert!(matches!(basic.auth, Auth::Basic { .. }));
        assert_eq!(basic.base.as_str(), "http://h:8080/v2/");
        let bearer =
            settings(json!({"Server": "http://h/scim/v2", "OAuthToken": "t"})).expect("bearer");
        assert!(matches!(bearer.auth, Auth::Bearer(_)));
        assert_eq!(bearer.base.as_str(), "http://h/scim/v2/");
        let none = settings(json!({"Server": "https://h"})).expect("none");
        assert!(matches!(none.auth, Auth::None));
        for (v, field) in [
            (json!({"Server": "https://h", "Login": "u"}), "Password"),
            (json!({"Server": "https://h", "Password": "p"}), "Login"),
            (
                json!({"Server": "https://h", "ApplicationId": "a"}),
                "ApplicationKey",
            ),
            (
                json!({"Server": "https://h", "OAuth2Url": "https://t"}),
                "OAuth2Url",
            ),
            (json!({"Server": "ftp://h"}), "Server"),
            (json!({"Server": "https://u:p@h"}), "Server"),
            (json!({"Server": "h.example.org"}), "Server"),
            (json!({}), "Server"),
        ] {
            match settings(v.clone()) {
                Err(PackageError::Settings { path, message, .. }) => {
                    assert_eq!(path, field, "{v}: {message}");
                    assert!(!message.contains("u:p"), "{message}");
                }
                other => panic!("{v}: {other:?}"),
            }
        }
        let slack = parse(
            "S",
            json!({"OAuthToken": "t"}),
            Defaults {
                server: Some(SLACK_SERVER),
                ..Defaults::default()
            },
        )
        .expect("slack");
        assert_eq!(slack.base.as_str(), "https://api.slack.com/scim/v2/");
    }

    #[test]
    fn filters_name_entities_and_their_queries() {
        let q = parse_filter(
            "Users|?filter=active eq \"true\"&attributes=userName*Groups|*Roles|filter=displayName%20sw%20%22A%22",
        )
        .expect("filter");
        assert_eq!(q.len(), 3);
        assert_eq!(
            q[0].params,
            vec![
                ("filter".to_string(), "active eq \"true\"".to_string()),
                ("attributes".to_string(), "userName".to_string())
            ]
        );
        assert!(q[1].params.is_empty());
        assert_eq!(q[2].filter(), Some("displayName sw \"A\""));
        for bad in [
            "",
            "Us ers|",
            "Users|?startIndex=5",
            "Users|?count=5",
            "Users*users",
            "Users|?filter",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_have_defaults_and_zero_timeout_means_none() {
        let s = settings(json!({"Server": "https://h", "PageSize": 50, "TimeOut": 0, "MaxMessageSize": 2048, "MaxConcurrentRequests": 3, "PagesAhead": 2, "ServiceSupportBulk": true, "BulkMaxOperation": 10}))
            .expect("settings");
        assert_eq!(s.page_size, 50);
        assert_eq!(s.timeout, None);
        assert_eq!(s.max_message, 2048);
        assert_eq!(s.concurrency, 3);
        assert_eq!(s.pages_ahead, 2);
        assert!(s.bulk);
        assert_eq!(s.bulk_max, Some(10));
        let d = settings(json!({"Server": "https://h"})).expect("defaults");
        assert_eq!(d.timeout, Some(DEFAULT_TIMEOUT));
        assert_eq!(d.max_message, DEFAULT_MAX_MESSAGE);
        assert_eq!(d.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(d.pages_ahead, 0);
        assert!(settings(json!({"Server": "https://h", "Unknown": 1})).is_err());
    }
}
