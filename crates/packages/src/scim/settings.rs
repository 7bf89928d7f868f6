//! Settings of the SCIM package.

use idlink_model::package::{Constraint, Field, Kind, SettingsSchema};

/// `Server`, one way to authenticate, and paging/bulk options.
const VENDOR_DIALECT_REFUSED: &str = "idlink's SCIM client speaks RFC 7643/7644 only, not this vendor's variant; use ScimSyntax RFC if the service follows the RFC, else a package for that vendor";

pub static SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required(
            "Server",
            Kind::String,
            "base URL of the service, without `/v2`",
        ),
        Field::optional("Login", Kind::String, "user name for basic authentication").secured(),
        Field::optional(
            "Password",
            Kind::String,
            "password for basic authentication",
        )
        .secured(),
        Field::optional("OAuthToken", Kind::String, "bearer token").secured(),
        Field::optional("ApplicationId", Kind::String, "OAuth2 client identifier"),
        Field::optional("ApplicationKey", Kind::String, "OAuth2 client secret").secured(),
        Field::optional("OAuth2Url", Kind::String, "OAuth2 token endpoint"),
        Field::optional(
            "Filter",
            Kind::String,
            "entities to export and their filters: `Entity|?filter=...*Entity2|...`",
        ),
        Field::optional(
            "PageSize",
            Kind::Int {
                min: 1,
                max: 10_000,
            },
            "resources per page (200)",
        ),
        Field::optional(
            "ServiceSupportBulk",
            Kind::Bool,
            "send changes as /Bulk requests",
        ),
        Field::optional(
            "ScimSyntax",
            Kind::Enum(&["RFC", "Salesforce", "CyberArk"]),
            "the SCIM dialect (default RFC): idlink speaks RFC 7643/7644",
        )
        .refusing(&[
            ("Salesforce", VENDOR_DIALECT_REFUSED),
            ("CyberArk", VENDOR_DIALECT_REFUSED),
        ]),
        Field::optional(
            "BulkMaxOperation",
            Kind::Int {
                min: 1,
                max: 100_000,
            },
            "most operations in one /Bulk request",
        ),
    ],
    // As the SCIM page documents, an account's Login/Password may go with the application's
    // ApplicationId/ApplicationKey (together they obtain a token); a ready OAuthToken replaces
    // both.
    constraints: &[
        Constraint::AtMostOne(&["OAuthToken", "Password"]),
        Constraint::AtMostOne(&["OAuthToken", "ApplicationKey"]),
    ],
};

#[cfg(test)]
mod tests {
    use idlink_model::diag::Diagnostics;
    use idlink_model::settings::{check_against, parse};

    use super::SETTINGS;

    fn check(json: &str) -> Vec<String> {
        let mut d = Diagnostics::default();
        let s = parse("appsettings.agent.json", json.as_bytes(), &mut d);
        for c in &s.connections {
            check_against(c, "Usercube.SCIM@0000001", &SETTINGS, &mut d);
        }
        d.iter()
            .map(|d| format!("{}: {}", d.rule, d.message))
            .collect()
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
        }
        assert!(
            check(r#"{"Connections": {"S": {"Server": "https://x", "ScimSyntax": "rfc"}}}"#)
                .is_empty()
        );
    }
}
