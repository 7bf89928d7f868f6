//! The rules of SPEC §2.2, each against the small valid configuration in `support::BASE`
//! with one thing changed.

use idlink_model::{Rule, Severity};

use crate::support::*;

fn check_body(body: &str) -> idlink_model::Checked {
    check(&[("conf.xml", &file(body))], BASE_SETTINGS, &[])
}

/// Asserts that the only errors are of `rule`, and returns their messages.
fn only(c: &idlink_model::Checked, rule: Rule) -> Vec<String> {
    let errs = errors(&c.diagnostics);
    assert!(
        !errs.is_empty() && errs.iter().all(|r| *r == rule),
        "expected only {rule}:\n{}",
        show(&c.diagnostics)
    );
    c.diagnostics
        .iter()
        .filter(|d| d.rule == rule)
        .map(|d| d.message.clone())
        .collect()
}

#[test]
fn connection_identifiers_keep_their_form() {
    let body = BASE.replace("\"HRPeople\"", "\"HR_People\"");
    let msgs = only(
        &check(
            &[("conf.xml", &file(&body))],
            r#"{"Connections":{"HR_People":{"Path":"p.csv"},"DirLDAP":{"Servers":[{"Server":"s"}]}}}"#,
            &[],
        ),
        Rule::ConnectionIdentifier,
    );
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].contains("'_'"), "{msgs:?}");
}

#[test]
fn connections_clash_case_insensitively_and_others_per_kind() {
    let body = format!(
        "{BASE}<Connection Identifier=\"hrpeople\" DisplayName_L1=\"x\" Connector=\"HR\" Package=\"Usercube.CSV@0000001\" />\n\
         <Agent Identifier=\"Local\" />\n<Agent Identifier=\"local\" />"
    );
    let c = check_body(&body);
    let msgs = only(&c, Rule::DuplicateIdentifier);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.contains("connection 'hrpeople'") && m.contains("case-insensitively"))
    );
    assert!(msgs.iter().any(|m| m.contains("agent 'Local'")));
    // Same identifier, different kinds: no clash (Person is an entity type and a mapping).
}

#[test]
fn every_reference_resolves() {
    let body = BASE
        .replace("Agent=\"Local\"", "Agent=\"Remote\"")
        .replace("SourceEntityType=\"Person\"", "SourceEntityType=\"Persn\"")
        .replace(
            "<SynchronizeTask Connector=\"HR\"",
            "<SynchronizeTask Connector=\"HRR\"",
        )
        .replace(
            "<ScalarRule Property=\"cn\"",
            "<ScalarRule Property=\"commonName\"",
        );
    let c = check_body(&body);
    let msgs = only(&c, Rule::UnresolvedReference);
    assert_eq!(msgs.len(), 4, "{}", show(&c.diagnostics));
    let hints: Vec<_> = c
        .diagnostics
        .iter()
        .filter_map(|d| d.hint.clone())
        .collect();
    assert!(
        hints.iter().any(|h| h.contains("did you mean 'Person'")),
        "{hints:?}"
    );
    assert!(
        hints.iter().any(|h| h.contains("did you mean 'HR'")),
        "{hints:?}"
    );
}

#[test]
fn binding_paths_follow_navigation_properties() {
    let body = format!(
        "{BASE}<EntityType Identifier=\"Org\"><Property Identifier=\"Name\" /><Property Identifier=\"Members\" Type=\"ForeignKey\" /></EntityType>\n\
         <EntityAssociation Identifier=\"PersonOrg\" Property1=\"Person:Org\" Property2=\"Org:Members\" />"
    )
    .replace("<Property Identifier=\"Name\" />\n</EntityType>", "<Property Identifier=\"Name\" />\n  <Property Identifier=\"Org\" Type=\"ForeignKey\" />\n</EntityType>")
    .replace("Binding=\"Name\"", "Binding=\"Org.Name\"");
    let c = check(&[("conf.xml", &file(&body))], BASE_SETTINGS, &[]);
    assert!(c.is_valid(), "{}", show(&c.diagnostics));
    let bad = body.replace("Binding=\"Org.Name\"", "Binding=\"Org.Nmae\"");
    let c = check(&[("conf.xml", &file(&bad))], BASE_SETTINGS, &[]);
    let msgs = only(&c, Rule::UnresolvedReference);
    assert!(
        msgs[0].contains("'Nmae'") && msgs[0].contains("'Org'"),
        "{msgs:?}"
    );
}

#[test]
fn unknown_packages_and_missing_capabilities() {
    let body = BASE.replace(
        "Package=\"Usercube.CSV@0000001\"",
        "Package=\"Usercube.CVS@0000001\"",
    );
    let c = check_body(&body);
    only(&c, Rule::UnknownPackage);
    assert!(c.diagnostics.iter().any(|d| {
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("Usercube.CSV@0000001"))
    }));

    // A CSV connection cannot fulfill; a FulfillToFile connection cannot export.
    let body = format!(
        "{BASE}<Connection Identifier=\"HRJson\" DisplayName_L1=\"x\" Connector=\"HR\" Package=\"Usercube.FulfillToFile@0000001\" />"
    )
    .replace("<ResourceTypeMapping Identifier=\"Account_Person\" Connection=\"DirLDAP\" />", "<ResourceTypeMapping Identifier=\"Account_Person\" Connection=\"HRPeople\" />")
    .replace("<ExportTask DisplayName_L1=\"Export\" Connection=\"HRPeople\" />", "<ExportTask DisplayName_L1=\"Export\" Connection=\"HRJson\" />");
    let c = check_body(&body);
    let msgs = only(&c, Rule::PackageCapability);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
}

#[test]
fn documented_packages_are_accepted_with_a_warning_and_unchecked_settings() {
    let body = BASE.replace(
        "Package=\"Usercube.LDAP@0000001\"",
        "Package=\"Usercube.AD@0000001\"",
    );
    let c = check(
        &[("conf.xml", &file(&body))],
        r#"{"Connections":{"HRPeople":{"Path":"p"},"DirLDAP":{"Whatever":1}}}"#,
        &[],
    );
    assert!(c.is_valid(), "{}", show(&c.diagnostics));
    assert_eq!(
        found(&c.diagnostics)
            .iter()
            .filter(|(r, _)| *r == Rule::PackageNotAvailable)
            .count(),
        1
    );
    assert!(!c.diagnostics.iter().any(|d| d.rule == Rule::UnknownSetting));
}

#[test]
fn deactivated_sides_warn() {
    let body = BASE.replace(
        "Package=\"Usercube.CSV@0000001\" />",
        "Package=\"Usercube.CSV@0000001\" DeactivationExportFulfill=\"1\" />",
    );
    let c = check_body(&body);
    assert!(c.is_valid());
    assert!(
        c.diagnostics
            .iter()
            .any(|d| d.rule == Rule::DeactivatedSide && d.severity == Severity::Warning)
    );
}

#[test]
fn settings_are_required_and_checked_against_the_package_schema() {
    let settings = r#"{
  "Connections": {
    "HRPeople": { "Separator": ";", "NumberOfLinesToSkip": "many", "Pth": "x" },
    "DirLDAP": { "Servers": [ { "AuthType": "Basic", "Password": "s3cret-value" }, "ldap://b" ] },
    "Ghost": { "Path": "x" }
  }
}"#;
    let c = check(&[("conf.xml", &file(BASE))], settings, &[]);
    let d = &c.diagnostics;
    let text = show(d);
    // HRPeople: Path/PathIncremental missing (required constraint), bad number, unknown key with suggestion.
    assert!(d.iter().any(|x| x.rule == Rule::SettingRequired && x.message.contains("Path, PathIncremental")), "{text}");
    assert!(
        d.iter().any(|x| x.rule == Rule::SettingValue
            && x.message.contains("'many'")
            && x.at.line == 3),
        "{text}"
    );
    assert!(
        d.iter().any(|x| x.rule == Rule::UnknownSetting
            && x.hint.as_deref().is_some_and(|h| h.contains("'Path'"))),
        "{text}"
    );
    // DirLDAP: Server missing in Servers[0]; Servers[1] not an object.
    assert!(
        d.iter().any(|x| x.rule == Rule::SettingRequired
            && x.message
                .contains("Servers[0] lacks the required setting Server")),
        "{text}"
    );
    assert!(
        d.iter()
            .any(|x| x.rule == Rule::SettingValue
                && x.message.contains("Servers[1] must be an object")),
        "{text}"
    );
    // Ghost: settings for an unknown connection.
    assert!(
        d.iter()
            .any(|x| x.rule == Rule::UnknownConnectionSettings && x.severity == Severity::Warning),
        "{text}"
    );
    assert!(!text.contains("s3cret-value"), "{text}");
}

#[test]
fn a_connection_without_settings_is_an_error_naming_the_file() {
    let c = check(
        &[("conf.xml", &file(BASE))],
        r#"{"Connections":{"HRPeople":{"Path":"p"}}}"#,
        &[],
    );
    let msgs = only(&c, Rule::MissingSettings);
    assert!(
        msgs[0].contains("'DirLDAP'") && msgs[0].contains("appsettings.agent.json"),
        "{msgs:?}"
    );
}

#[test]
fn environment_overrides_fill_and_are_checked() {
    let env = [
        (
            "IDLINK__Connections__DirLDAP__Servers__0__Server",
            "ldap://127.0.0.1",
        ),
        (
            "IDLINK__Connections__DirLDAP__Servers__0__AuthType",
            "Anonymous",
        ),
        ("IDLINK__Connections__hrpeople__Path", "people.csv"),
    ];
    let c = check(&[("conf.xml", &file(BASE))], "{}", &env);
    assert!(c.diagnostics.is_empty(), "{}", show(&c.diagnostics));

    let env = [
        ("IDLINK__Connections__HRPeople__Path", "p.csv"),
        ("IDLINK__Connections__HRPeople__NumberOfLinesToSkip", "-3"),
        ("IDLINK__Connections__DirLDAP__Servers__0__Server", "s"),
    ];
    let c = check(&[("conf.xml", &file(BASE))], "{}", &env);
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.rule == Rule::SettingValue)
        .expect("bad override");
    assert!(
        d.at.to_string()
            .contains("IDLINK__Connections__HRPeople__NumberOfLinesToSkip"),
        "{d}"
    );
}

#[test]
fn invalid_json_gives_line_and_path() {
    let settings = "{\n  \"Connections\": {\n    \"HRPeople\": { \"Path\": \"p\" },\n    \"DirLDAP\": { \"Servers\": [ { \"Server\" \"s\" } ] }\n  }\n}";
    let c = check(&[("conf.xml", &file(BASE))], settings, &[]);
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.rule == Rule::JsonSyntax)
        .expect("json error");
    assert_eq!(d.at.line, 4, "{d}");
    assert!(
        d.message.contains("$.Connections.DirLDAP.Servers[0]"),
        "{d}"
    );

    let c = check(
        &[("conf.xml", &file(BASE))],
        r#"{"Connections": ["HRPeople"]}"#,
        &[],
    );
    assert!(c.diagnostics.iter().any(
        |d| d.rule == Rule::JsonSyntax && d.message.contains("$.Connections must be an object")
    ));
}

#[test]
fn task_connections() {
    let body = BASE
        .replace(
            "<ExportTask DisplayName_L1=\"Export\" Connection=\"HRPeople\" />",
            "<ExportTask DisplayName_L1=\"Export\" />",
        )
        .replace(
            "<FulfillTask DisplayName_L1=\"Fulfill\">",
            "<FulfillTask DisplayName_L1=\"Fulfill\" Connection=\"DirLDAP\">",
        );
    let msgs = only(&check_body(&body), Rule::TaskConnection);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
}

/// Rough edge of issue #8: "ExportTask in job 'Complete' has no Connection" did not say which
/// of twenty. A task is named by its Identifier, else its display name, else its position.
#[test]
fn regression_check_names_a_task_by_identifier_or_display_name() {
    let body = BASE
        .replace(
            "<ExportTask DisplayName_L1=\"Export\" Connection=\"HRPeople\" />",
            "<ExportTask Identifier=\"ExportPeople\" DisplayName_L1=\"Export\" />\n  <ExportTask DisplayName_L1=\"Export again\" />\n  <ExportTask />",
        )
        .replace(
            "<FulfillTask DisplayName_L1=\"Fulfill\">",
            "<FulfillTask DisplayName_L1=\"Fulfill\" Connection=\"DirLDAP\">",
        );
    // The nameless task also lacks its DisplayName_L1 (missing-attribute): look at task-connection only.
    let checked = check_body(&body);
    let msgs: Vec<&str> = checked
        .diagnostics
        .iter()
        .filter(|d| d.rule == Rule::TaskConnection)
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    let has = |s: &str| msgs.iter().any(|m| m.starts_with(s));
    assert!(has("ExportTask 'ExportPeople' in job 'Daily'"), "{msgs:?}");
    assert!(has("ExportTask 'Export again' in job 'Daily'"), "{msgs:?}");
    assert!(has("ExportTask (task 3 of 7) in job 'Daily'"), "{msgs:?}");
    assert!(has("FulfillTask 'Fulfill' in job 'Daily'"), "{msgs:?}");
}

#[test]
fn mapping_keys() {
    let body = BASE.replace(
        "<Property Identifier=\"cn\" ConnectionColumn=\"cn\" />",
        "<Property Identifier=\"cn\" ConnectionColumn=\"cn\" IsPrimaryKey=\"true\" />",
    );
    let msgs = only(&check_body(&body), Rule::MappingKeys);
    assert!(msgs[0].contains("2 IsPrimaryKey"), "{msgs:?}");
    let body = BASE.replace(" IsPrimaryKey=\"true\"", "");
    let msgs = only(&check_body(&body), Rule::MappingKeys);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
}

#[test]
fn association_mappings_match_on_keys() {
    let body = format!(
        "{BASE}<EntityAssociation Identifier=\"Owns\" Property1=\"Person:Id\" Property2=\"Account:dn\" />\n\
         <EntityAssociationMapping Identifier=\"Owns\" Connector=\"HR\" ConnectionTable=\"HRPeople\" Column1=\"Id\" Column2=\"Name\" \
         EntityPropertyMapping1=\"Person:Id\" EntityPropertyMapping2=\"Account:cn\" />"
    );
    let msgs = only(&check_body(&body), Rule::AssociationKey);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].contains("Account:cn"), "{msgs:?}");
}

#[test]
fn mapping_tables_and_columns() {
    let body = BASE.replace(
        "ConnectionTable=\"DirLDAP_entries\"",
        "ConnectionTable=\"HRPeople_entries\"",
    );
    let msgs = only(&check_body(&body), Rule::MappingTable);
    assert!(msgs[0].contains("belongs to connector 'HR'"), "{msgs:?}");

    let body = BASE.replace("ConnectionColumn=\"Name\"", "ConnectionColumn=\"FullName\"");
    let msgs = only(&check_body(&body), Rule::UnknownColumn);
    assert!(msgs[0].contains("'FullName'"), "{msgs:?}");

    // No <ConnectionTable>: a warning that the schema has not been refreshed.
    let body = BASE.replace(
        "<ConnectionTable Connection=\"HRPeople\" Identifier=\"HRPeople\">",
        "<ConnectionTable Connection=\"HRPeople\" Identifier=\"HRPeople_old\">",
    );
    let c = check_body(&body);
    assert!(c.is_valid(), "{}", show(&c.diagnostics));
    assert!(
        c.diagnostics
            .iter()
            .any(|d| d.rule == Rule::SchemaNotRefreshed)
    );
}

#[test]
fn crontab_and_csharp() {
    let body = BASE
        .replace(
            "CrontabExpression=\"0 5 * * *\"",
            "CrontabExpression=\"0 25 * * *\"",
        )
        .replace(
            "<ScalarRule Property=\"cn\" Binding=\"Name\" />",
            "<ScalarRule Property=\"cn\" Expression=\"C#:person:return person.Name;\" />",
        );
    let c = check_body(&body);
    only(&c, Rule::Crontab);
    assert!(
        c.diagnostics
            .iter()
            .any(|d| d.rule == Rule::CsharpExpression && d.severity == Severity::Warning)
    );
}

#[test]
fn all_problems_are_reported_in_one_run_sorted_by_location() {
    let body = BASE
        .replace("Agent=\"Local\"", "Agent=\"Nobody\"")
        .replace(
            "\"HRPeople\" DisplayName_L1",
            "\"HR People\" DisplayName_L1",
        )
        .replace(
            "SynchronizationMode=\"Complete\"",
            "SynchronizationMode=\"Sometimes\"",
        )
        .replace(
            "CrontabExpression=\"0 5 * * *\"",
            "CrontabExpression=\"whenever\"",
        );
    let c = check_body(&body);
    let rules = errors(&c.diagnostics);
    for r in [
        Rule::UnresolvedReference,
        Rule::ConnectionIdentifier,
        Rule::AttributeValue,
        Rule::Crontab,
    ] {
        assert!(rules.contains(&r), "{r} missing:\n{}", show(&c.diagnostics));
    }
    let lines: Vec<u32> = c
        .diagnostics
        .iter()
        .filter(|d| &*d.at.file == "conf.xml")
        .map(|d| d.at.line)
        .collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn plaintext_secrets_warn_unless_encrypted_or_from_the_environment() {
    let c = check(&[("conf.xml", &file(BASE))], BASE_SETTINGS, &[]);
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.rule == Rule::PlaintextSecret)
        .expect("warning");
    assert!(
        d.message
            .contains("Connections.DirLDAP.Servers[0].Password"),
        "{d}"
    );
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("idlink protect")),
        "{d}"
    );
    assert!(!d.to_string().contains("s3cret-value"), "{d}");

    let encrypted = BASE_SETTINGS.replace("s3cret-value", "age:YWdlLWVuY3J5cHRpb24ub3JnL3Yx");
    let c = check(&[("conf.xml", &file(BASE))], &encrypted, &[]);
    assert!(c.diagnostics.is_empty(), "{}", show(&c.diagnostics));

    let without = BASE_SETTINGS.replace(", \"Password\": \"s3cret-value\"", "");
    let c = check(
        &[("conf.xml", &file(BASE))],
        &without,
        &[(
            "IDLINK__Connections__DirLDAP__Servers__0__Password",
            "from-env",
        )],
    );
    assert!(c.diagnostics.is_empty(), "{}", show(&c.diagnostics));
}

#[test]
fn the_encrypted_settings_file_overrides_plain_values_deeply() {
    use idlink_model::settings::{overlay, parse};
    let mut d = idlink_model::Diagnostics::default();
    let mut base = parse("plain.json", br#"{"Connections":{"Dir":{"Servers":[{"Server":"a","Password":"old"},{"Server":"b"}],"Timeout":5}}}"#, &mut d);
    let top = parse(
        "enc.json",
        br#"{"Connections":{"dir":{"Servers":[{"Password":"age:x"}]}}}"#,
        &mut d,
    );
    overlay(&mut base, top);
    assert!(d.is_empty());
    let json = base
        .connection("Dir")
        .map(idlink_model::settings::ConnectionSettings::to_json);
    assert_eq!(
        json,
        Some(
            serde_json::json!({"Servers":[{"Server":"a","Password":"age:x"},{"Server":"b"}],"Timeout":5})
        )
    );
}

/// Defect 2 of issue #8: the encrypted settings file must hold only secured, encrypted values;
/// and a plain secured value it shadows is worth a warning.
#[test]
fn regression_encrypted_file_with_ordinary_or_plain_values_is_reported() {
    use idlink_model::package::PackageCatalog as _;
    use idlink_model::settings::{check_encrypted, parse};
    let mut d = idlink_model::Diagnostics::default();
    let plain = parse(
        "plain.json",
        br#"{"Connections": {
  "HRPeople": {"Path": "people.csv"},
  "DirLDAP": {"Servers": [{"Server": "ldap://a", "Password": "plain-pw-1"}]}
}}"#,
        &mut d,
    );
    let encrypted = parse(
        "enc.json",
        br#"{"SourcesRootPaths": ["/x"], "Connections": {
  "hrpeople": {"Path": "other.csv"},
  "DirLDAP": {"Servers": [{"Password": "age:abc", "Server": "ldap://b"}, {"Password": "clear-pw-2"}]},
  "Unknown": {"Path": "x"}
}}"#,
        &mut d,
    );
    assert!(d.is_empty(), "{}", show(&d));
    let c = check_body(BASE);
    let schema_of = |id: &str| {
        let conn = c.config.connection(id)?;
        TestCatalog.get(&conn.package.value).map(|p| p.settings)
    };
    check_encrypted(&plain, &encrypted, schema_of, &mut d);
    let got: Vec<String> = d
        .iter()
        .map(|x| format!("{}:{} {} {}", x.at.file, x.at.line, x.rule, x.message))
        .collect();
    let has = |s: &str| got.iter().any(|g| g.contains(s));
    assert!(
        has("enc.json:1 encrypted-settings SourcesRootPaths is not a secured setting"),
        "{got:#?}"
    );
    assert!(
        has("enc.json:2 encrypted-settings Connections.hrpeople.Path is not a secured setting"),
        "{got:#?}"
    );
    assert!(
        has(
            "enc.json:3 encrypted-settings Connections.DirLDAP.Servers[0].Server is not a secured setting"
        ),
        "{got:#?}"
    );
    assert!(
        has(
            "enc.json:3 encrypted-settings Connections.DirLDAP.Servers[1].Password is a secured setting, but its value in enc.json is not encrypted"
        ),
        "{got:#?}"
    );
    assert!(
        has(
            "plain.json:3 plaintext-secret Connections.DirLDAP.Servers[0].Password is a secured setting stored in plain text, and enc.json holds an encrypted value for it"
        ),
        "{got:#?}"
    );
    assert_eq!(got.len(), 5, "{got:#?}");
    assert!(
        !got.iter()
            .any(|g| g.contains("plain-pw-1") || g.contains("clear-pw-2"))
    );
    assert!(d.iter().all(|x| x.severity == Severity::Warning));
}
