//! Settings of the SCIM package.

use idlink_model::package::{Constraint, Field, Kind, SettingsSchema};

/// `Server`, one way to authenticate, and paging/bulk options.
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
            "BulkMaxOperation",
            Kind::Int {
                min: 1,
                max: 100_000,
            },
            "most operations in one /Bulk request",
        ),
    ],
    constraints: &[Constraint::AtMostOne(&[
        "Password",
        "OAuthToken",
        "ApplicationKey",
    ])],
};
