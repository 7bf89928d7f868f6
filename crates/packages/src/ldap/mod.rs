//! LDAP directories: `Usercube.LDAP` (generic) and `Usercube.OpenLDAP` (incremental).
//!
//! - connection (`conn.rs`): `Servers` tried in order; plain LDAP, LDAPS (`EnableSSL`) or
//!   StartTLS (`StartTls`) with rustls trusting `CaFile` (else the system's authorities; never
//!   any certificate); anonymous or simple bind. Messages name the server and tell bad
//!   credentials (result code 49) from an unreachable server from a TLS failure; `Login` and
//!   `Password` never appear.
//! - bounded reads (`wire.rs`): every message from a server is at most `MaxMessageSize`
//!   (16 MiB; a header announcing more fails before anything is buffered) and at most
//!   `MaxMessageSize / 16` BER elements; ldap3 reads through a relay that forwards only
//!   whole, well-formed messages. `TimeOut` (seconds, default 120, 0: no limit): connecting
//!   to one server (TCP, TLS, bind) takes at most TimeOut, else the next server is tried;
//!   check-connection and schema refresh end within TimeOut of the start of connecting to
//!   the server that answered; export and fulfill wait at most TimeOut for each complete
//!   response message (a server trickling bytes does not stretch it).
//! - bulk reader (`bulk.rs`): the searches of exports run on a second, lean connection that
//!   decodes responses in place (ldap3's decoder cost twice ldapsearch's CPU); ldap3 does the
//!   rest.
//! - export (`export.rs`): `<connection>_entries.csv` (`dn`, then the attributes the mappings
//!   read from `<connection>_entries`, else every user attribute: a complete export reads the
//!   entries once, spooling them to an unlinked temporary file until the columns are known;
//!   an incremental `Usercube.OpenLDAP` run lists the names in a first, types-only pass) and
//!   `<connection>_<attribute>.csv` (`dn`, `<attribute>`, one row per value) for each
//!   multi-valued DN-valued attribute (from the subschema; `member`, `uniqueMember`,
//!   `manager`, ... when it cannot be read). A `Tables` element other than `entries` names a
//!   link attribute read by its own search (its BaseDN, Filter and Scope). Binary values are
//!   base64; multi-valued cells are sorted and newline-separated. With `PagedResult` the
//!   search is paged (`PageSize`, 1000), so memory stays flat. Referrals are not followed.
//! - incremental (`sync.rs`, `Usercube.OpenLDAP` only): RFC 4533 refreshOnly content
//!   synchronization, or `modifyTimestamp>=` when the server has no syncprov. Incremental
//!   tables carry a `Command` column (`Insert`, `Update`, `Delete`).
//! - schema (`schema.rs`): the subschema subentry's attribute types and object classes.
//! - fulfill (`fulfill.rs`): add, modify, rename, delete; idempotent; dry run.

mod bulk;
mod conn;
mod dn;
mod entry;
mod export;
mod fulfill;
mod schema;
pub mod settings;
mod sync;
mod wire;

use async_trait::async_trait;
use idlink_model::package::{Availability, Capabilities, PackageInfo};

use self::conn::{Cx, RootDse, Session};
use self::export::{Layout, Writer};
use self::schema::DirectorySchema;
use self::settings::LdapSettings;
use crate::api::{
    CheckConnection, ConnectionSchema, Environment, Export, ExportOutcome, ExportRequest, Fulfill,
    FulfillRequest, Instance, NoProgress, OrderResult, PackageError, Progress, Schema,
};
use crate::output::ExportOutput;

/// `Usercube.LDAP@0000001`: any LDAPv3 directory.
pub static LDAP: PackageInfo = PackageInfo {
    id: "Usercube.LDAP@0000001",
    display_name: "Directory/Generic LDAP",
    capabilities: Capabilities {
        export: true,
        fulfill: true,
        incremental: false,
        schema: true,
    },
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// `Usercube.OpenLDAP@0000001`: OpenLDAP, incremental through syncrepl or `modifyTimestamp`.
pub static OPENLDAP: PackageInfo = PackageInfo {
    id: "Usercube.OpenLDAP@0000001",
    display_name: "Directory/Open LDAP",
    capabilities: Capabilities {
        export: true,
        fulfill: true,
        incremental: true,
        schema: true,
    },
    availability: Availability::Supported,
    settings: &settings::SETTINGS,
};

/// Checks settings (no I/O) and returns the package ready to run.
pub fn instantiate(
    package: &PackageInfo,
    settings: serde_json::Value,
    env: Environment,
) -> Result<Box<dyn Instance>, PackageError> {
    let openldap = package.id == OPENLDAP.id;
    if !openldap && package.id != LDAP.id {
        return Err(PackageError::NotAvailable {
            package: package.id.to_string(),
        });
    }
    let settings = settings::parse(&env.connection, settings)?;
    Ok(Box::new(LdapPackage {
        settings,
        env,
        openldap,
    }))
}

/// A configured LDAP connection.
#[derive(Debug)]
pub struct LdapPackage {
    settings: LdapSettings,
    env: Environment,
    /// `Usercube.OpenLDAP`: incremental export.
    openldap: bool,
}

impl Instance for LdapPackage {
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

impl LdapPackage {
    fn cx(&self) -> Cx {
        Cx::new(&self.env, &self.settings)
    }

    async fn connect(&self, progress: &dyn Progress) -> Result<Session, PackageError> {
        let cx = self.cx();
        progress.phase(&format!("connecting to {}", cx.system));
        conn::connect(&self.settings, &self.env, &cx).await
    }

    /// The root DSE and the schema; a directory that hides them is read with the standard
    /// link attributes and binary detection by value. A server that broke the connection
    /// (a message too large or malformed) or did not answer within TimeOut fails the export.
    async fn discover(
        &self,
        session: &mut Session,
    ) -> Result<(RootDse, DirectorySchema), PackageError> {
        let fatal = |session: &Session, e: PackageError| {
            if let Some(broken) = session.cx.broken("read the root DSE") {
                return Some(broken);
            }
            match e {
                PackageError::System {
                    retryable: true, ..
                } => Some(e),
                _ => None,
            }
        };
        let dse = match conn::root_dse(session).await {
            Ok(d) => d,
            Err(e) => match fatal(session, e) {
                Some(e) => return Err(e),
                None => RootDse::default(),
            },
        };
        let schema = match schema::read(session, dse.subschema.as_deref()).await {
            Ok(s) => s,
            Err(e) => match fatal(session, e) {
                Some(e) => return Err(e),
                None => DirectorySchema::default(),
            },
        };
        Ok((dse, schema))
    }

    async fn export_with(
        &self,
        session: &mut Session,
        request: &ExportRequest<'_>,
        out: &mut ExportOutput,
    ) -> Result<ExportOutcome, PackageError> {
        let (dse, schema) = self.discover(session).await?;
        let paged = self.settings.servers[session.server].paged;
        let mapping = Layout::from_mapping(&self.env.mapped_tables, &self.settings, &schema);
        if mapping.is_none() && !self.openldap {
            // No mapping: one pass over the directory, spooled until the columns are known.
            request.progress.phase(&format!(
                "reading {} ({}) with every attribute (no mapping names them)",
                self.settings.entries().base_dn,
                self.settings.entries().filter
            ));
            let spool = export::spool_all(session, &self.settings, paged, &[]).await?;
            let layout = Layout::from_names(spool.names(), &self.settings, &schema);
            let cx = session.cx.clone();
            let mut writer = Writer::open(&layout, &schema, out, false, request.progress)?;
            spool.replay(&cx, &mut |raw| writer.entry(raw, "", out))?;
            writer.report(out);
            export::own_links(session, &self.settings, &layout, paged, out).await?;
            return Ok(ExportOutcome {
                notes: Vec::new(),
                cookie: None,
                incremental: false,
            });
        }
        let complete = !(request.incremental && request.cookie.is_some());
        if mapping.is_none() && self.openldap && complete {
            // No mapping, complete: one pass, spooled (an incremental run lists the names
            // first so that its columns are those of a complete export).
            let empty = Layout::default();
            let ctx = sync::Context {
                settings: &self.settings,
                layout: &empty,
                schema: &schema,
                dse: &dse,
                paged,
                progress: request.progress,
            };
            let (outcome, layout) = sync::complete_as(session, &ctx, true, out).await?;
            let layout = layout.unwrap_or(empty);
            export::own_links(session, &self.settings, &layout, paged, out).await?;
            return Ok(outcome);
        }
        let layout = match mapping {
            Some(l) => l,
            None => {
                request
                    .progress
                    .phase("listing the attributes of the entries (no mapping names them)");
                let names = export::scan_names(session, &self.settings, paged).await?;
                Layout::from_names(names, &self.settings, &schema)
            }
        };
        if self.openldap {
            let ctx = sync::Context {
                settings: &self.settings,
                layout: &layout,
                schema: &schema,
                dse: &dse,
                paged,
                progress: request.progress,
            };
            let outcome = match (request.incremental, request.cookie) {
                (true, Some(cookie)) => sync::incremental(session, &ctx, cookie, out).await?,
                _ => sync::complete(session, &ctx, out).await?,
            };
            export::own_links(session, &self.settings, &layout, paged, out).await?;
            return Ok(outcome);
        }
        request.progress.phase(&format!(
            "reading {} ({})",
            self.settings.entries().base_dn,
            self.settings.entries().filter
        ));
        let mut writer = Writer::open(&layout, &schema, out, false, request.progress)?;
        let mut each = |item: export::Item| match item {
            export::Item::Entry(raw, _) => writer.entry(raw, "", out),
            export::Item::Info(_) => Ok(()),
        };
        export::search(
            session,
            &self.settings,
            export::Search {
                table: self.settings.entries(),
                attrs: layout.requested(),
                paged,
                typesonly: false,
                controls: Vec::new(),
            },
            &mut each,
        )
        .await?;
        writer.report(out);
        export::own_links(session, &self.settings, &layout, paged, out).await?;
        Ok(ExportOutcome {
            notes: Vec::new(),
            cookie: None,
            incremental: false,
        })
    }
}

/// Runs `work` until `limit` (the deadline, and `TimeOut` for the message): check-connection
/// and schema refresh end within `TimeOut` of the start of connecting to the server.
async fn within<T>(
    limit: Option<(tokio::time::Instant, std::time::Duration)>,
    cx: &Cx,
    operation: &'static str,
    work: impl std::future::Future<Output = Result<T, PackageError>>,
) -> Result<T, PackageError> {
    let Some((deadline, timeout)) = limit else {
        return work.await;
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(cx.error(
            operation,
            format!(
                "not done within TimeOut ({}), which bounds the whole {operation}",
                wire::timeout_text(Some(timeout))
            ),
            true,
        )),
    }
}

#[async_trait]
impl Export for LdapPackage {
    /// `<connection>_entries` (`dn` and the attributes the mappings read, else every user
    /// attribute of the entries) and the link tables. `Usercube.OpenLDAP` also returns a
    /// cookie, and with one exports only the changes (with a `Command` column).
    async fn export(
        &self,
        request: &ExportRequest<'_>,
        out: &mut ExportOutput,
    ) -> Result<ExportOutcome, PackageError> {
        let mut session = self.connect(request.progress).await?;
        let result = self.export_with(&mut session, request, out).await;
        session.close().await;
        result
    }
}

#[async_trait]
impl Schema for LdapPackage {
    /// From the subschema subentry: `<connection>_entries` (`dn`, then the user attributes
    /// with their value types; SINGLE-VALUE ones are not multivalued) and one table per
    /// link attribute.
    async fn schema(&self) -> Result<ConnectionSchema, PackageError> {
        let mut session = self.connect(&NoProgress).await?;
        let cx = session.cx.clone();
        let limit = session.whole_limit();
        let work = async {
            let dse = conn::root_dse(&mut session).await?;
            schema::read(&mut session, dse.subschema.as_deref()).await
        };
        let result = within(limit, &cx, "schema refresh", work).await;
        session.close().await;
        let directory = result?;
        if !directory.from_server {
            return Err(self.cx().error(
                "read the subschema",
                "the directory returned no subschema subentry (or this Login may not read it)",
                false,
            ));
        }
        Ok(schema::connection_schema(
            &self.env.connection,
            &self.settings,
            &directory,
            &self.env.mapped_tables,
        ))
    }
}

#[async_trait]
impl CheckConnection for LdapPackage {
    /// Connects (servers in order), binds, and reads the root DSE. Failures tell bad
    /// credentials (result code 49) from an unreachable server from a TLS failure.
    async fn check_connection(&self) -> Result<String, PackageError> {
        let mut session = self.connect(&NoProgress).await?;
        let cx = session.cx.clone();
        let system = cx.system.clone();
        let limit = session.whole_limit();
        let result = within(limit, &cx, "check-connection", conn::root_dse(&mut session)).await;
        session.close().await;
        let dse = result?;
        let mut m = format!("{system}: bound");
        if let Some(v) = &dse.vendor {
            m.push_str(&format!(", {v}"));
        }
        if !dse.naming_contexts.is_empty() {
            m.push_str(&format!(
                ", naming contexts {}",
                dse.naming_contexts.join("; ")
            ));
        }
        if dse.supports(conn::PAGED_OID) {
            m.push_str(", paged results supported");
        }
        if dse.supports(conn::SYNC_OID) {
            m.push_str(", content synchronization (syncrepl) supported");
        }
        Ok(m)
    }
}

#[async_trait]
impl Fulfill for LdapPackage {
    /// Applies the orders (see [`fulfill`] for the rules); one result per order.
    async fn fulfill(
        &self,
        request: &FulfillRequest<'_>,
    ) -> Result<Vec<OrderResult>, PackageError> {
        fulfill::run(&self.settings, &self.env, request, self.cx()).await
    }
}
