//! The package registry: every package identifier a configuration may name.

use idlink_model::package::{
    Availability, Capabilities, PackageCatalog, PackageInfo, SettingsSchema,
};

use crate::api::{Environment, Instance, PackageError};
use crate::{
    csv, custom, fulfill_database, fulfill_to_file, ldap, ldif, manual, scim, script, sql,
};

/// Checks a connection's settings (`settings` from [`idlink_model::settings::typed_json`]) and
/// returns the package ready to run. Packages this build cannot run say so.
pub fn instantiate(
    package: &PackageInfo,
    settings: serde_json::Value,
    env: Environment,
) -> Result<Box<dyn Instance>, PackageError> {
    match package.id {
        id if id == csv::CSV.id || id == csv::CSV_COMPLETE.id => {
            csv::instantiate(package, settings, env)
        }
        id if [
            sql::SQL.id,
            sql::POSTGRESQL.id,
            sql::MYSQL.id,
            sql::SQLITE.id,
        ]
        .contains(&id) =>
        {
            sql::instantiate(package, settings, env)
        }
        id if id == ldif::LDIF.id => ldif::instantiate(package, settings, env),
        id if id == ldap::LDAP.id || id == ldap::OPENLDAP.id => {
            ldap::instantiate(package, settings, env)
        }
        id if scim::ALL_PACKAGES.iter().any(|p| p.id == id) => {
            scim::instantiate(package, settings, env)
        }
        id if [
            script::POWERSHELL.id,
            script::POWERSHELL_SYNC.id,
            script::ROBOT_FRAMEWORK.id,
        ]
        .contains(&id) =>
        {
            script::instantiate(package, settings, env)
        }
        id if id == fulfill_database::FULFILL_DATABASE.id => {
            fulfill_database::instantiate(package, settings, env)
        }
        id if id == manual::MANUAL.id => manual::instantiate(package, settings, env),
        id if id == fulfill_to_file::FULFILL_TO_FILE.id => {
            fulfill_to_file::instantiate(package, settings, env)
        }
        _ => Err(PackageError::NotAvailable {
            package: package.id.to_string(),
        }),
    }
}

/// Every package known to idlink, sorted by identifier (byte order) for binary search.
///
/// Supported packages live in their folders; the others are only documented (E, F, I below).
#[rustfmt::skip]
static PACKAGES: &[&PackageInfo] = &[
    &sql::SQLITE,
    &documented("Usercube.AD@0000001",                             "Directory/Active Directory",         Y, Y, Y),
    &documented("Usercube.Azure@0000001",                          "Cloud/Azure resources",              Y, N, N),
    &documented("Usercube.AzureAD@0000001",                        "Directory/Microsoft Entra ID",       Y, Y, Y),
    &csv::CSV_COMPLETE,
    &csv::CSV,
    &custom::CUSTOM,
    &documented("Usercube.EasyVista@0000001",                      "ITSM/EasyVista",                     Y, Y, Y),
    &documented("Usercube.EasyVistaTicket@0000001",                "Ticket/EasyVista",                   N, Y, N),
    &documented("Usercube.Excel@0000001",                          "File/Excel",                         Y, N, Y),
    &fulfill_database::FULFILL_DATABASE,
    &fulfill_to_file::FULFILL_TO_FILE,
    &documented("Usercube.FulfillWorkflow@0000001",                "Workflow/Fulfill workflow",          N, Y, N),
    &documented("Usercube.GoogleWorkspace@0000001",                "Cloud/Google Workspace",             Y, Y, N),
    &documented("Usercube.HomeFolder@0000001",                     "Storage/Home folders",               Y, N, N),
    &documented("Usercube.LDAP.Apache@0000001",                    "Directory/Apache Directory Server",  Y, Y, N),
    &documented("Usercube.LDAP.Oracle@0000001",                    "Directory/Oracle LDAP",              Y, Y, N),
    &documented("Usercube.LDAP.RedHat@0000001",                    "Directory/Red Hat Directory Server", Y, Y, N),
    &ldap::LDAP,
    &ldif::LDIF,
    &manual::MANUAL,
    &documented("Usercube.MicrosoftExchange@0000001",              "Messaging/Microsoft Exchange",       Y, Y, Y),
    &documented("Usercube.OData@0000001",                          "Custom/OData",                       Y, N, N),
    &ldap::OPENLDAP,
    &script::POWERSHELL,
    &script::POWERSHELL_SYNC,
    &documented("Usercube.RACF@0000001",                           "Mainframe/RACF",                     Y, N, N),
    &script::ROBOT_FRAMEWORK,
    &documented("Usercube.SAP.ERP60@0000001",                      "ERP/SAP ERP 6.0",                    Y, Y, N),
    &documented("Usercube.SAP@0000001",                            "ERP/SAP",                            Y, Y, N),
    &scim::CYBERARK,
    &scim::SALESFORCE,
    &scim::SLACK,
    &scim::SCIM,
    &sql::MYSQL,
    &documented("Usercube.SQL.ODBC@0000001",                       "Database/ODBC",                      Y, N, N),
    &documented("Usercube.SQL.Oracle@0000001",                     "Database/Oracle",                    Y, N, N),
    &sql::POSTGRESQL,
    &documented("Usercube.SQL.SAPAse@0000001",                     "Database/SAP ASE",                   Y, N, N),
    &documented("Usercube.SQL.SQLServer@0000001",                  "Database/SQL Server",                Y, N, N),
    &documented("Usercube.SQL.SQLServerEntitlements@0000001",      "Database/SQL Server entitlements",   Y, N, N),
    &sql::SQL,
    &documented("Usercube.ServiceNow@0000001",                     "ITSM/ServiceNow",                    Y, Y, Y),
    &documented("Usercube.SharePoint@0000001",                     "Collaboration/SharePoint",           Y, Y, Y),
    &documented("Usercube.SharedFolder@0000001",                   "Storage/Shared folders",             Y, N, N),
    &documented("Usercube.SnowTicket@0000001",                     "Ticket/ServiceNow",                  N, Y, N),
    &documented("Usercube.TSS@0000001",                            "Mainframe/Top Secret (TSS)",         Y, N, N),
    &documented("Usercube.UpdateManualProvisioningTicket@0000001", "Ticket/Update manual provisioning",  N, Y, N),
    &documented("Usercube.Workday@0000001",                        "HR/Workday",                         Y, N, N),
];

const Y: bool = true;
const N: bool = false;

/// A package documented for Netwrix Identity Manager that this build cannot run.
const fn documented(
    id: &'static str,
    display_name: &'static str,
    export: bool,
    fulfill: bool,
    incremental: bool,
) -> PackageInfo {
    PackageInfo {
        id,
        display_name,
        capabilities: Capabilities {
            export,
            fulfill,
            incremental,
            schema: false,
        },
        availability: Availability::DocumentedOnly,
        settings: &SettingsSchema::EMPTY,
    }
}

/// Builds a package instance from checked settings (see [`instantiate`]).
pub type Factory = std::sync::Arc<
    dyn Fn(&PackageInfo, serde_json::Value, Environment) -> Result<Box<dyn Instance>, PackageError>
        + Send
        + Sync,
>;

/// The packages of this build: the supported ones and those only documented (SPEC §3), plus
/// any registered at run time (a scripted package in tests, a plug-in later). The registry is
/// a value the engine is given, not a hidden static.
#[derive(Clone, Default)]
pub struct Registry {
    extra: Vec<(&'static PackageInfo, Factory)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field(
                "registered",
                &self.extra.iter().map(|(p, _)| p.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Registry {
    /// The packages built into idlink.
    pub const fn new() -> Self {
        Registry { extra: Vec::new() }
    }

    /// Adds a package (or replaces a built-in one with the same identifier).
    #[must_use]
    pub fn with(mut self, package: &'static PackageInfo, factory: Factory) -> Self {
        self.extra.retain(|(p, _)| p.id != package.id);
        self.extra.push((package, factory));
        self
    }

    /// Lookup ignoring ASCII case, to suggest the right spelling of a mistyped identifier.
    pub fn lookup_ignore_case(&self, id: &str) -> Option<&PackageInfo> {
        self.all().find(|p| p.id.eq_ignore_ascii_case(id))
    }

    /// Checks a connection's settings and returns the package ready to run (see
    /// [`instantiate`]); registered packages use their own factory.
    pub fn instantiate(
        &self,
        package: &PackageInfo,
        settings: serde_json::Value,
        env: Environment,
    ) -> Result<Box<dyn Instance>, PackageError> {
        match self.extra.iter().find(|(p, _)| p.id == package.id) {
            Some((p, factory)) => factory(p, settings, env),
            None => instantiate(package, settings, env),
        }
    }
}

impl PackageCatalog for Registry {
    fn get(&self, id: &str) -> Option<&PackageInfo> {
        self.get_static(id)
    }

    fn all(&self) -> Box<dyn Iterator<Item = &PackageInfo> + '_> {
        let extra = self.extra.iter().map(|(p, _)| *p);
        let builtin = PACKAGES
            .iter()
            .copied()
            .filter(|b| !self.extra.iter().any(|(p, _)| p.id == b.id));
        Box::new(extra.chain(builtin))
    }
}

impl Registry {
    /// The package registered under `id`, with the `'static` lifetime its descriptor has.
    pub fn get_static(&self, id: &str) -> Option<&'static PackageInfo> {
        if let Some((p, _)) = self.extra.iter().find(|(p, _)| p.id == id) {
            return Some(p);
        }
        PACKAGES
            .binary_search_by(|p| p.id.cmp(id))
            .ok()
            .map(|i| PACKAGES[i])
    }
}

#[cfg(test)]
mod tests {
    use idlink_model::package::{Constraint, Kind, StringCheck};

    use super::*;

    /// SPEC Appendix: identifier (without `@0000001`) and E/F/I as `y`/`n`.
    const APPENDIX: &[(&str, &str)] = &[
        ("Usercube.AD", "yyy"),
        ("Usercube.OData", "ynn"),
        ("Usercube.LDAP.Apache", "yyn"),
        ("Usercube.SQL.ODBC", "ynn"),
        ("Usercube.AzureAD", "yyy"),
        ("Usercube.OpenLDAP", "yyy"),
        ("Usercube.Azure", "ynn"),
        ("Usercube.SQL.Oracle", "ynn"),
        ("Usercube.CSV", "yny"),
        ("Usercube.LDAP.Oracle", "yyn"),
        ("Usercube.CSV.Complete", "ynn"),
        ("Usercube.SQL.PostgreSQL", "ynn"),
        ("Usercube.SCIM.CyberArk", "yyn"),
        ("Usercube.Powershell", "nyn"),
        ("Usercube.EasyVista", "yyy"),
        ("Usercube.PowershellSync", "yny"),
        ("Usercube.EasyVistaTicket", "nyn"),
        ("Usercube.RACF", "ynn"),
        ("Usercube.Excel", "yny"),
        ("Usercube.LDAP.RedHat", "yyn"),
        ("Usercube.LDAP", "yyn"),
        ("Usercube.RobotFramework", "nyn"),
        ("Usercube.SCIM", "yyy"),
        ("Usercube.SCIM.Salesforce", "yyy"),
        ("Usercube.SQL", "ynn"),
        ("Usercube.SQL.SAPAse", "ynn"),
        ("Usercube.GoogleWorkspace", "yyn"),
        ("Usercube.SAP.ERP60", "yyn"),
        ("Usercube.HomeFolder", "ynn"),
        ("Usercube.SAP", "yyn"),
        ("Usercube.FulfillDatabase", "nyn"),
        ("Usercube.SnowTicket", "nyn"),
        ("Usercube.FulfillToFile", "nyn"),
        ("Usercube.ServiceNow", "yyy"),
        ("Usercube.LDIF", "ynn"),
        ("Usercube.SharedFolder", "ynn"),
        ("Usercube.Manual", "nyn"),
        ("Usercube.SharePoint", "yyy"),
        ("Usercube.UpdateManualProvisioningTicket", "nyn"),
        ("Usercube.SCIM.Slack", "yyy"),
        ("Usercube.MicrosoftExchange", "yyy"),
        ("Usercube.SQL.SQLServer", "ynn"),
        ("Usercube.SQL.MySQL", "ynn"),
        ("Usercube.SQL.SQLServerEntitlements", "ynn"),
        ("Usercube.TSS", "ynn"),
        ("Usercube.Custom", "nnn"),
        ("Usercube.Workday", "ynn"),
        ("Usercube.FulfillWorkflow", "nyn"),
    ];

    /// SPEC §3: the supported packages, their display names and E/F/I/schema.
    const SUPPORTED: &[(&str, &str, &str)] = &[
        ("Usercube.CSV", "File/CSV", "ynyy"),
        ("Usercube.CSV.Complete", "File/CSV (complete only)", "ynny"),
        ("Usercube.SQL", "Database/Generic SQL", "ynny"),
        ("Usercube.SQL.PostgreSQL", "Database/PostgreSQL", "ynny"),
        ("Usercube.SQL.MySQL", "Database/MySQL", "ynny"),
        ("Idlink.SQL.SQLite", "Database/SQLite", "ynny"),
        ("Usercube.LDAP", "Directory/Generic LDAP", "yyny"),
        ("Usercube.OpenLDAP", "Directory/Open LDAP", "yyyy"),
        ("Usercube.SCIM", "Custom/SCIM", "yyyy"),
        ("Usercube.SCIM.Salesforce", "CRM/Salesforce (SCIM)", "yyyy"),
        ("Usercube.SCIM.Slack", "Collaboration/Slack (SCIM)", "yyyy"),
        ("Usercube.SCIM.CyberArk", "PAM/CyberArk (SCIM)", "yyny"),
        ("Usercube.LDIF", "Directory/LDIF", "ynny"),
        ("Usercube.FulfillToFile", "Custom/JSON", "nynn"),
        (
            "Usercube.FulfillDatabase",
            "Database/Fulfill to database",
            "nynn",
        ),
        ("Usercube.Powershell", "Custom/Script fulfill", "nynn"),
        ("Usercube.PowershellSync", "Custom/Script export", "ynyn"),
        // Issue 13: the script fulfill, with the Robot Framework page's setting name.
        ("Usercube.RobotFramework", "Custom/Robot Framework", "nynn"),
        ("Usercube.Manual", "Ticket/manual", "nynn"),
        ("Usercube.Custom", "Custom/Unplugged", "nnnn"),
    ];

    fn flags(c: Capabilities) -> String {
        [c.export, c.fulfill, c.incremental, c.schema]
            .iter()
            .map(|&b| if b { 'y' } else { 'n' })
            .collect()
    }

    fn get(id: &str) -> &'static PackageInfo {
        let id = format!("{id}@0000001");
        PACKAGES
            .iter()
            .copied()
            .find(|p| p.id == id)
            .unwrap_or_else(|| panic!("{id} missing"))
    }

    #[test]
    fn every_appendix_identifier_has_its_capabilities() {
        for (id, efi) in APPENDIX {
            assert_eq!(&flags(get(id).capabilities)[..3], *efi, "{id}");
        }
        let appendix_and_sqlite = APPENDIX.len() + 1;
        assert_eq!(
            PACKAGES.len(),
            appendix_and_sqlite,
            "a package outside the appendix"
        );
    }

    #[test]
    fn supported_packages_match_the_spec_table() {
        for (id, display, efis) in SUPPORTED {
            let p = get(id);
            assert_eq!(p.availability, Availability::Supported, "{id}");
            assert_eq!(p.display_name, *display, "{id}");
            assert_eq!(flags(p.capabilities), *efis, "{id}");
        }
        let supported = PACKAGES
            .iter()
            .filter(|p| p.availability == Availability::Supported);
        assert_eq!(supported.count(), SUPPORTED.len());
    }

    #[test]
    fn documented_only_packages_have_no_schema_nor_settings() {
        for p in PACKAGES
            .iter()
            .filter(|p| p.availability == Availability::DocumentedOnly)
        {
            assert!(!p.capabilities.schema, "{}", p.id);
            assert!(
                p.settings.fields.is_empty() && p.settings.constraints.is_empty(),
                "{}",
                p.id
            );
            assert!(p.display_name.contains('/'), "{}", p.id);
        }
    }

    #[test]
    fn identifiers_are_unique_sorted_and_versioned() {
        for pair in PACKAGES.windows(2) {
            assert!(
                pair[0].id < pair[1].id,
                "{} must come before {}",
                pair[1].id,
                pair[0].id
            );
        }
        for (i, p) in PACKAGES.iter().enumerate() {
            assert!(p.id.ends_with("@0000001"), "{}", p.id);
            let same = PACKAGES[i + 1..]
                .iter()
                .find(|q| q.id.eq_ignore_ascii_case(p.id));
            assert!(same.is_none(), "{} appears twice", p.id);
        }
    }

    #[test]
    fn lookup_is_exact_and_ignore_case_finds_the_spelling() {
        let registry = Registry::new();
        assert!(registry.get("usercube.csv@0000001").is_none());
        assert!(registry.get("Usercube.CSV").is_none());
        let found = registry
            .lookup_ignore_case("usercube.csv@0000001")
            .map(|p| p.id);
        assert_eq!(found, Some("Usercube.CSV@0000001"));
        assert_eq!(registry.all().count(), PACKAGES.len());
        for p in registry.all() {
            assert!(
                registry.get(p.id).is_some_and(|q| std::ptr::eq(q, p)),
                "{}",
                p.id
            );
        }
    }

    /// Field names unique (case-insensitively) and constraints naming fields, nested schemas too.
    fn check_schema(owner: &str, schema: &SettingsSchema) {
        for (i, f) in schema.fields.iter().enumerate() {
            let twice = schema.fields[i + 1..]
                .iter()
                .any(|g| g.name.eq_ignore_ascii_case(f.name));
            assert!(!twice, "{owner}: field {} appears twice", f.name);
            assert!(
                !f.doc.is_empty() && !f.doc.contains('\n'),
                "{owner}: doc of {}",
                f.name
            );
            if let Kind::ObjectList(inner) = f.kind {
                check_schema(&format!("{owner}.{}", f.name), inner);
            }
        }
        for c in schema.constraints {
            let names: Vec<&str> = match *c {
                Constraint::AtLeastOne(names) | Constraint::AtMostOne(names) => names.to_vec(),
                Constraint::RequiresWhen { field, then, .. } => [&[field], then].concat(),
                Constraint::OneShapeOf(shapes) => shapes.concat(),
            };
            for name in names {
                assert!(
                    schema.fields.iter().any(|f| f.name == name),
                    "{owner}: `{c}` names {name}"
                );
            }
            if let Constraint::RequiresWhen { field, equals, .. } = *c
                && let Some(Kind::Enum(values)) = schema.field(field).map(|f| f.kind)
            {
                assert!(
                    values.iter().any(|v| v.eq_ignore_ascii_case(equals)),
                    "{owner}: `{c}`"
                );
            }
        }
    }

    #[test]
    fn supported_schemas_are_consistent() {
        for p in PACKAGES
            .iter()
            .filter(|p| p.availability == Availability::Supported)
        {
            check_schema(p.id, p.settings);
        }
    }

    fn check_of(id: &str, field: &str) -> StringCheck {
        match get(id).settings.field(field).map(|f| f.kind) {
            Some(Kind::CheckedString(check)) => check,
            other => panic!("{id}.{field}: {other:?}"),
        }
    }

    #[test]
    fn csv_encoding_accepts_known_names_in_any_case() {
        for id in ["Usercube.CSV", "Usercube.CSV.Complete"] {
            let check = check_of(id, "Encoding");
            for ok in [
                "UTF-8",
                "utf8",
                "utf-16le",
                "UTF-16BE",
                "unicode",
                "windows-1252",
                "cp1252",
            ] {
                assert_eq!(check(ok), Ok(()), "{ok}");
            }
            for ok in [
                "ISO-8859-1",
                "latin1",
                "Latin-1",
                "us-ascii",
                "ASCII",
                "UTF-16",
            ] {
                assert_eq!(check(ok), Ok(()), "{ok}");
            }
            for bad in ["", "utf", "UTF-32", "EBCDIC", " UTF-8"] {
                let err = check(bad).expect_err(bad);
                assert!(err.contains("UTF-8") && err.contains("Latin1"), "{err}");
            }
        }
        assert_eq!(check_of("Usercube.LDIF", "LdifEncoding")("utf-8"), Ok(()));
        assert!(check_of("Usercube.LDIF", "LdifEncoding")("klingon").is_err());
    }

    #[test]
    fn csv_separator_is_one_character_or_tab() {
        let check = check_of("Usercube.CSV", "Separator");
        for ok in [",", ";", "|", "\t", "tab", "TAB", "\\t"] {
            assert_eq!(check(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", ";;", "comma", "\"", "\n", "\\n", "é"] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }

    /// Issue #9: the CSV page documents PathIncremental; Usercube.CSV.Complete runs complete
    /// exports only, so it accepts it without effect instead of calling it unknown.
    #[test]
    fn regression_csv_complete_accepts_the_incremental_path_without_effect() {
        let complete = get("Usercube.CSV.Complete").settings;
        assert!(
            complete
                .field("PathIncremental")
                .is_some_and(|f| f.no_effect.is_some() && !f.required)
        );
        assert!(complete.field("path").is_some_and(|f| f.required));
        assert!(
            get("Usercube.CSV")
                .settings
                .field("PathIncremental")
                .is_some()
        );
    }
}
