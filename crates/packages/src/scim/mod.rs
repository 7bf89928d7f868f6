//! SCIM 2.0 services (RFC 7643/7644): `Usercube.SCIM` and the documented variants
//! `Usercube.SCIM.Salesforce`, `Usercube.SCIM.Slack` and `Usercube.SCIM.CyberArk`, which are
//! the same package with their own defaults (Slack's server, Salesforce's token endpoint;
//! CyberArk without incremental export, as documented).
//!
//! - client (`client.rs`): reqwest over rustls, one client per instance; `Login`/`Password`
//!   (basic), `OAuthToken` (bearer), or `ApplicationId`/`ApplicationKey` against `OAuth2Url`
//!   (client credentials; a password grant when `Login`/`Password` come with them), the token
//!   cached until it expires and fetched again once on 401. Each request within `TimeOut`,
//!   each response within `MaxMessageSize`; 429 and 503 retried after `Retry-After`.
//! - export (`export.rs`): `<connection>_<entity>` per entity (Filter's, the mappings', else
//!   Users and Groups) and `<connection>_members_<entity>` (`value`, `MemberId`); paging by
//!   startIndex (reading ahead) or cursor; incremental for Users.
//! - schema (`schema.rs`): `/ResourceTypes` and `/Schemas`, extensions included.
//! - fulfill (`fulfill.rs`): POST, PATCH (or PUT), DELETE, membership PATCHes; `/Bulk`;
//!   idempotent; dry run.
//! - check connection: `/ServiceProviderConfig`, then one authenticated read, so that refused
//!   credentials, an unreachable server and a TLS failure are told apart.

pub mod client;
pub mod export;
pub mod fulfill;
pub mod schema;
pub mod settings;

use async_trait::async_trait;
use idlink_model::package::{Availability, Capabilities, PackageInfo};
use reqwest::Method;
use serde_json::Value;

use self::client::Client;
use self::schema::Catalog;
use self::settings::{Defaults, ScimSettings};
use crate::api::{
    CheckConnection, ConnectionSchema, Environment, Export, ExportOutcome, ExportRequest, Fulfill,
    FulfillRequest, Instance, OrderResult, PackageError, Schema,
};
use crate::output::ExportOutput;

const ALL: Capabilities = Capabilities {
    export: true,
    fulfill: true,
    incremental: true,
    schema: true,
};

/// `Usercube.SCIM@0000001`: exports resources, fulfills users and group memberships.
pub static SCIM: PackageInfo = PackageInfo {
    id: "Usercube.SCIM@0000001",
    display_name: "Custom/SCIM",
    capabilities: ALL,
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// `Usercube.SCIM.Salesforce@0000001`: SCIM with Salesforce's token endpoint as default.
pub static SALESFORCE: PackageInfo = PackageInfo {
    id: "Usercube.SCIM.Salesforce@0000001",
    display_name: "CRM/Salesforce (SCIM)",
    capabilities: ALL,
    availability: Availability::Supported,
    settings: &settings::SALESFORCE_SETTINGS,
};

/// `Usercube.SCIM.Slack@0000001`: SCIM with Slack's server as default.
pub static SLACK: PackageInfo = PackageInfo {
    id: "Usercube.SCIM.Slack@0000001",
    display_name: "Collaboration/Slack (SCIM)",
    capabilities: ALL,
    availability: Availability::Supported,
    settings: &settings::SLACK_SETTINGS,
};

/// `Usercube.SCIM.CyberArk@0000001`: SCIM, complete exports only (as documented).
pub static CYBERARK: PackageInfo = PackageInfo {
    id: "Usercube.SCIM.CyberArk@0000001",
    display_name: "PAM/CyberArk (SCIM)",
    capabilities: Capabilities {
        export: true,
        fulfill: true,
        incremental: false,
        schema: true,
    },
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// Every SCIM package.
pub static ALL_PACKAGES: [&PackageInfo; 4] = [&SCIM, &SALESFORCE, &SLACK, &CYBERARK];

/// Checks settings (no I/O) and returns the package ready to run.
pub fn instantiate(
    package: &PackageInfo,
    settings: serde_json::Value,
    env: Environment,
) -> Result<Box<dyn Instance>, PackageError> {
    let defaults = match package.id {
        id if id == SCIM.id || id == CYBERARK.id => Defaults::default(),
        id if id == SLACK.id => Defaults {
            server: Some(settings::SLACK_SERVER),
            ..Defaults::default()
        },
        id if id == SALESFORCE.id => Defaults {
            oauth2_url: Some(settings::SALESFORCE_OAUTH2_URL),
            ..Defaults::default()
        },
        _ => {
            return Err(PackageError::NotAvailable {
                package: package.id.to_string(),
            });
        }
    };
    let settings = settings::parse(&env.connection, settings, defaults)?;
    Ok(Box::new(ScimPackage {
        incremental: package.capabilities.incremental,
        client: tokio::sync::OnceCell::new(),
        settings,
        env,
    }))
}

/// A configured SCIM connection.
pub struct ScimPackage {
    settings: ScimSettings,
    env: Environment,
    incremental: bool,
    /// Built on first use (reading `CaFile` is I/O), then shared by every call.
    client: tokio::sync::OnceCell<Client>,
}

impl std::fmt::Debug for ScimPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimPackage")
            .field("connection", &self.env.connection)
            .field("settings", &self.settings)
            .finish()
    }
}

impl ScimPackage {
    async fn client(&self) -> Result<&Client, PackageError> {
        self.client
            .get_or_try_init(|| async { Client::new(&self.settings, &self.env) })
            .await
    }
}

impl Instance for ScimPackage {
    fn export(&self) -> Option<&dyn Export> {
        Some(self)
    }
    fn schema(&self) -> Option<&dyn Schema> {
        Some(self)
    }
    fn check_connection(&self) -> Option<&dyn CheckConnection> {
        Some(self)
    }
    fn fulfill(&self) -> Option<&dyn Fulfill> {
        Some(self)
    }
}

#[async_trait]
impl Export for ScimPackage {
    async fn export(
        &self,
        request: &ExportRequest<'_>,
        out: &mut ExportOutput,
    ) -> Result<ExportOutcome, PackageError> {
        let client = self.client().await?;
        export::run(
            client,
            &self.settings,
            &self.env,
            self.incremental,
            request,
            out,
        )
        .await
    }
}

#[async_trait]
impl Schema for ScimPackage {
    /// From `/ResourceTypes` and `/Schemas`: a table per resource type, and a members table
    /// per resource type with members.
    async fn schema(&self) -> Result<ConnectionSchema, PackageError> {
        let client = self.client().await?;
        let catalog = Catalog::read(client, "schema refresh").await?;
        Ok(catalog.connection_schema(&self.env.connection))
    }
}

#[async_trait]
impl CheckConnection for ScimPackage {
    /// `/ServiceProviderConfig`, then one resource of the first entity (many services serve
    /// their configuration to anyone, so only the second request tests the credentials).
    async fn check_connection(&self) -> Result<String, PackageError> {
        const OP: &str = "check-connection";
        let client = self.client().await?;
        let url = client.url(&["ServiceProviderConfig"], &[]);
        let (config, _) = client.json(Method::GET, &url, None, OP).await?;
        let entity = self
            .settings
            .queries
            .first()
            .map_or("Users", |q| q.entity.as_str());
        let probe = client.url(&[entity], &[("startIndex", "1"), ("count", "1")]);
        let (list, _) = client.json(Method::GET, &probe, None, OP).await?;
        let mut m = format!(
            "{}: reached with {}",
            client.cx.system,
            self.settings.auth.describe()
        );
        let supported = |k: &str| {
            config
                .get(k)
                .and_then(|s| s.get("supported"))
                .and_then(Value::as_bool)
                == Some(true)
        };
        let mut features: Vec<String> = ["patch", "filter", "sort", "etag", "changePassword"]
            .iter()
            .filter(|k| supported(k))
            .map(|k| k.to_string())
            .collect();
        if supported("bulk") {
            match config
                .get("bulk")
                .and_then(|b| b.get("maxOperations"))
                .and_then(Value::as_u64)
            {
                Some(n) => features.push(format!("bulk (up to {n} operations)")),
                None => features.push("bulk".into()),
            }
        }
        if export::paging_of(&config) == export::Paging::Cursor {
            features.push("cursor paging".into());
        }
        if !features.is_empty() {
            m.push_str(&format!("; the service supports {}", features.join(", ")));
        }
        if let Some(n) = list.get("totalResults").and_then(Value::as_u64) {
            m.push_str(&format!("; {entity}: {n} resources"));
        }
        Ok(m)
    }
}

#[async_trait]
impl Fulfill for ScimPackage {
    async fn fulfill(
        &self,
        request: &FulfillRequest<'_>,
    ) -> Result<Vec<OrderResult>, PackageError> {
        let client = self.client().await?;
        fulfill::run(client, &self.settings, request).await
    }
}
