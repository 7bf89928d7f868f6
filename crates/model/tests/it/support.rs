//! A tiny package catalog and helpers to check configurations held in memory.

use idlink_model::diag::Diagnostics;
use idlink_model::package::*;
use idlink_model::settings;
use idlink_model::xml::Loader;
use idlink_model::{Checked, Rule};

static CSV_SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[
        Field::optional("Path", Kind::String, "the file"),
        Field::optional("PathIncremental", Kind::String, "the incremental file"),
        Field::optional("Separator", Kind::String, "separator"),
        Field::optional(
            "NumberOfLinesToSkip",
            Kind::Int { min: 0, max: 1000 },
            "lines to skip",
        ),
    ],
    constraints: &[Constraint::AtLeastOne(&["Path", "PathIncremental"])],
};

static SERVER: SettingsSchema = SettingsSchema {
    fields: &[
        Field::required("Server", Kind::String, "URL"),
        Field::optional("AuthType", Kind::Enum(&["Anonymous", "Basic"]), "auth"),
        Field::optional("Password", Kind::String, "password").secured(),
    ],
    constraints: &[Constraint::RequiresWhen {
        field: "AuthType",
        equals: "Basic",
        then: &["Password"],
    }],
};

static LDAP_SETTINGS: SettingsSchema = SettingsSchema {
    fields: &[Field::required(
        "Servers",
        Kind::ObjectList(&SERVER),
        "servers",
    )],
    constraints: &[],
};

const fn caps(export: bool, fulfill: bool) -> Capabilities {
    Capabilities {
        export,
        fulfill,
        incremental: false,
        schema: true,
    }
}

static PACKAGES: [PackageInfo; 4] = [
    PackageInfo {
        id: "Usercube.CSV@0000001",
        display_name: "File/CSV",
        capabilities: caps(true, false),
        availability: Availability::Supported,
        settings: &CSV_SETTINGS,
    },
    PackageInfo {
        id: "Usercube.LDAP@0000001",
        display_name: "Directory/LDAP",
        capabilities: caps(true, true),
        availability: Availability::Supported,
        settings: &LDAP_SETTINGS,
    },
    PackageInfo {
        id: "Usercube.FulfillToFile@0000001",
        display_name: "Custom/JSON",
        capabilities: caps(false, true),
        availability: Availability::Supported,
        settings: &SettingsSchema::EMPTY,
    },
    PackageInfo {
        id: "Usercube.AD@0000001",
        display_name: "Directory/AD",
        capabilities: caps(true, true),
        availability: Availability::DocumentedOnly,
        settings: &SettingsSchema::EMPTY,
    },
];

/// A catalog of four packages, enough for the rules (the real registry is tested in its crate).
pub struct TestCatalog;

impl PackageCatalog for TestCatalog {
    fn get(&self, id: &str) -> Option<&PackageInfo> {
        PACKAGES.iter().find(|p| p.id == id)
    }
    fn all(&self) -> Box<dyn Iterator<Item = &PackageInfo> + '_> {
        Box::new(PACKAGES.iter())
    }
}

/// Wraps elements in a `<ConfigurationFile>` with the namespace.
pub fn file(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ConfigurationFile xmlns=\"urn:schemas-usercube-com:configuration\">\n{body}\n</ConfigurationFile>\n"
    )
}

/// Checks XML files and a settings text held in memory, as `idlink check` would.
pub fn check(files: &[(&str, &str)], settings_json: &str, env: &[(&str, &str)]) -> Checked {
    let mut loader = Loader::default();
    for (name, text) in files {
        loader.add_file(name, text.as_bytes());
    }
    let (config, mut diagnostics) = loader.finish();
    let mut agent = settings::parse(
        "appsettings.agent.json",
        settings_json.as_bytes(),
        &mut diagnostics,
    );
    settings::apply_env(&mut agent, env.iter().copied(), &mut diagnostics);
    diagnostics.extend(idlink_model::validate::validate(
        &config,
        &agent,
        &TestCatalog,
    ));
    diagnostics.sort();
    Checked {
        config,
        settings: agent,
        diagnostics,
    }
}

/// A small valid configuration: an HR connector with a CSV connection and a mapping, and a
/// directory connector with an LDAP connection, a resource type and a job.
pub const BASE: &str = r#"
<Agent Identifier="Local" />
<Connector Identifier="HR" DisplayName_L1="HR" Agent="Local" />
<Connection Identifier="HRPeople" DisplayName_L1="People" Connector="HR" Package="Usercube.CSV@0000001" />
<EntityType Identifier="Person">
  <Property Identifier="Id" />
  <Property Identifier="Name" />
</EntityType>
<EntityTypeMapping Identifier="Person" Connector="HR" ConnectionTable="HRPeople">
  <Property Identifier="Id" ConnectionColumn="Id" IsPrimaryKey="true" />
  <Property Identifier="Name" ConnectionColumn="Name" />
</EntityTypeMapping>
<ConnectionTable Connection="HRPeople" Identifier="HRPeople">
  <Column Identifier="Id" />
  <Column Identifier="Name" />
</ConnectionTable>
<Connector Identifier="Dir" DisplayName_L1="Directory" />
<Connection Identifier="DirLDAP" DisplayName_L1="LDAP" Connector="Dir" Package="Usercube.LDAP@0000001" />
<EntityType Identifier="Account">
  <Property Identifier="dn" />
  <Property Identifier="cn" />
</EntityType>
<EntityTypeMapping Identifier="Account" Connector="Dir" ConnectionTable="DirLDAP_entries">
  <Property Identifier="dn" ConnectionColumn="dn" IsPrimaryKey="true" />
  <Property Identifier="cn" ConnectionColumn="cn" />
</EntityTypeMapping>
<ConnectionTable Connection="DirLDAP" Identifier="DirLDAP_entries">
  <Column Identifier="dn" />
  <Column Identifier="cn" />
</ConnectionTable>
<ResourceType Identifier="Account_Person" SourceEntityType="Person" TargetEntityType="Account">
  <ScalarRule Property="cn" Binding="Name" />
</ResourceType>
<ResourceTypeMapping Identifier="Account_Person" Connection="DirLDAP" />
<Job Identifier="Daily" DisplayName_L1="Daily" CrontabExpression="0 5 * * *">
  <ExportTask DisplayName_L1="Export" Connection="HRPeople" />
  <PrepareSynchronizationTask Connector="HR" SynchronizationMode="Complete" />
  <SynchronizeTask Connector="HR" />
  <GenerateProvisioningOrdersTask ResourceTypes="Account_Person" />
  <FulfillTask DisplayName_L1="Fulfill"><TaskResourceType ResourceType="Account_Person" /></FulfillTask>
</Job>
"#;

pub const BASE_SETTINGS: &str = r#"{
  "Connections": {
    "HRPeople": { "Path": "people.csv" },
    "DirLDAP": { "Servers": [ { "Server": "ldap://127.0.0.1:389", "AuthType": "Basic", "Password": "s3cret-value" } ] }
  }
}"#;

/// `(rule, line)` of every diagnostic, for compact assertions.
pub fn found(d: &Diagnostics) -> Vec<(Rule, u32)> {
    d.iter().map(|d| (d.rule, d.at.line)).collect()
}

/// The rules of every error.
pub fn errors(d: &Diagnostics) -> Vec<Rule> {
    d.iter().filter(|d| d.is_error()).map(|d| d.rule).collect()
}

/// Formats diagnostics for assertion messages.
pub fn show(d: &Diagnostics) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
