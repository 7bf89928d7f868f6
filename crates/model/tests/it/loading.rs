//! Reading configuration files: any number of files, any order, namespace or not, BOM or not,
//! LF or CRLF; located errors for bad input; never a panic.

use idlink_model::Rule;
use idlink_model::xml::{LoadError, load_dir};

use crate::support::*;

#[test]
fn base_configuration_is_valid_without_warnings() {
    let c = check(&[("conf.xml", &file(BASE))], BASE_SETTINGS, &[]);
    // The one warning: the LDAP password is in plain text.
    let rules: Vec<_> = found(&c.diagnostics);
    assert_eq!(
        rules,
        vec![(Rule::PlaintextSecret, 4)],
        "{}",
        show(&c.diagnostics)
    );
    let s = c.summary();
    assert_eq!(
        (
            s.connectors,
            s.connections,
            s.entity_types,
            s.mappings,
            s.resource_types,
            s.jobs
        ),
        (2, 2, 2, 2, 1, 1)
    );
}

#[test]
fn elements_may_sit_in_any_file_in_any_order_with_any_encoding_form() {
    // Split BASE into one element per file, reversed, alternating namespace, BOM and CRLF.
    let mut chunks: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in BASE.lines() {
        if line.starts_with('<') && !line.starts_with("</") && !current.trim().is_empty() {
            chunks.push(std::mem::take(&mut current));
        }
        current.push_str(line);
        current.push('\n');
    }
    chunks.push(current);
    chunks.reverse();
    let files: Vec<(String, Vec<u8>)> = chunks
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let xml = if i % 2 == 0 {
                file(body)
            } else {
                format!("<ConfigurationFile>\n{body}</ConfigurationFile>")
            };
            let xml = if i % 3 == 0 {
                xml.replace('\n', "\r\n")
            } else {
                xml
            };
            let mut bytes = if i % 4 == 1 {
                vec![0xEF, 0xBB, 0xBF]
            } else {
                Vec::new()
            };
            bytes.extend(xml.into_bytes());
            (format!("part{i:02}.xml"), bytes)
        })
        .collect();
    assert!(files.len() > 10);
    let mut loader = idlink_model::xml::Loader::default();
    for (name, bytes) in &files {
        loader.add_file(name, bytes);
    }
    let (config, diags) = loader.finish();
    assert!(diags.is_empty(), "{}", show(&diags));
    let base = check(&[("conf.xml", &file(BASE))], BASE_SETTINGS, &[]).config;
    assert_eq!(config.connections.len(), base.connections.len());
    assert_eq!(
        config.entity_type_mappings.len(),
        base.entity_type_mappings.len()
    );
    assert_eq!(config.jobs[0].steps.len(), 5);
}

#[test]
fn every_element_keeps_file_line_and_column() {
    let xml = "<ConfigurationFile>\r\n  <Connector Identifier=\"HR\"\r\n     DisplayName_L1=\"é\"\r\n     Agent=\"Nope\" />\r\n</ConfigurationFile>";
    let c = check(&[("a/hr.xml", xml)], "{}", &[]);
    let conn = &c.config.connectors[0];
    assert_eq!(
        (conn.at.file.as_ref(), conn.at.line, conn.at.column),
        ("a/hr.xml", 2, 3)
    );
    assert_eq!((conn.id.at.line, conn.id.at.column), (2, 14));
    // The dangling Agent reference is reported at the attribute, on its own line.
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.rule == Rule::UnresolvedReference)
        .expect("unresolved agent");
    assert_eq!(d.at.to_string(), "a/hr.xml:4:6");
}

#[test]
fn malformed_xml_is_located() {
    let xml = "<ConfigurationFile>\n  <Connector Identifier=\"HR\" DisplayName_L1=\"HR\">\n</ConfigurationFile>\n";
    let c = check(&[("bad.xml", xml)], "{}", &[]);
    assert_eq!(errors(&c.diagnostics), vec![Rule::XmlSyntax]);
    let d = c.diagnostics.iter().next().expect("a diagnostic");
    assert_eq!(d.at.line, 3, "{d}");
    assert!(d.message.contains("malformed XML"), "{d}");
}

/// An entity bomb ("billion laughs") in a configuration file is refused before any entity is
/// expanded; its hint said to close elements and quote attributes, and now says to remove the
/// DOCTYPE.
#[test]
fn regression_a_doctype_is_refused_with_a_hint_to_remove_it() {
    let mut xml =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n");
    for i in 2..10 {
        let prev = if i == 2 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        xml.push_str(&format!(
            " <!ENTITY lol{i} \"{}\">\n",
            format!("&{prev};").repeat(10)
        ));
    }
    xml.push_str("]>\n<ConfigurationFile><Connector Identifier=\"X\" DisplayName_L1=\"&lol9;\"/></ConfigurationFile>\n");
    let c = check(&[("bomb.xml", &xml)], "{}", &[]);
    assert_eq!(errors(&c.diagnostics), vec![Rule::XmlSyntax]);
    let d = c.diagnostics.iter().next().expect("a diagnostic");
    assert!(d.message.contains("DTD"), "{d}");
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.starts_with("remove the <!DOCTYPE")),
        "{d}"
    );
    assert!(c.config.connectors.is_empty());
}

#[test]
fn other_files_are_still_read_after_a_malformed_one() {
    let c = check(
        &[
            ("a.xml", "<ConfigurationFile><Agent"),
            ("b.xml", &file(BASE)),
        ],
        BASE_SETTINGS,
        &[],
    );
    assert_eq!(errors(&c.diagnostics), vec![Rule::XmlSyntax]);
    assert_eq!(c.config.connections.len(), 2);
}

#[test]
fn invalid_utf8_is_located() {
    let mut loader = idlink_model::xml::Loader::default();
    loader.add_file(
        "latin1.xml",
        b"<ConfigurationFile>\n<Agent Identifier=\"Caf\xe9\" />\n</ConfigurationFile>",
    );
    let (_, diags) = loader.finish();
    let d = diags.iter().next().expect("a diagnostic");
    assert_eq!(
        (d.rule, d.at.line, d.at.column),
        (Rule::XmlSyntax, 2, 23),
        "{d}"
    );
    assert!(
        d.message.contains("UTF-8") && d.message.contains("0xE9"),
        "{d}"
    );
}

#[test]
fn utf16_is_refused_with_advice() {
    let mut loader = idlink_model::xml::Loader::default();
    loader.add_file("u16.xml", &[0xFF, 0xFE, b'<', 0]);
    let (_, diags) = loader.finish();
    assert!(
        diags
            .iter()
            .any(|d| d.rule == Rule::XmlSyntax && d.message.contains("UTF-16"))
    );
}

#[test]
fn wrong_root_element() {
    let c = check(
        &[(
            "x.xml",
            "<Configuration><Agent Identifier=\"A\"/></Configuration>",
        )],
        "{}",
        &[],
    );
    assert_eq!(errors(&c.diagnostics), vec![Rule::XmlSyntax]);
    assert!(c.diagnostics.iter().next().is_some_and(|d| {
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("ConfigurationFile"))
    }));
}

#[test]
fn out_of_scope_elements_warn_once_per_kind() {
    let body = format!(
        "{BASE}<SingleRole Identifier=\"a\"/>\n<SingleRole Identifier=\"b\"/>\n<Category Identifier=\"c\"/>\n<Tile Identifier=\"t\"/>"
    );
    let c = check(&[("conf.xml", &file(&body))], BASE_SETTINGS, &[]);
    let warnings: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.rule == Rule::OutOfScopeElement)
        .collect();
    assert_eq!(warnings.len(), 3, "{}", show(&c.diagnostics));
    assert!(
        warnings
            .iter()
            .any(|d| d.message.contains("<SingleRole>") && d.message.contains("2 elements"))
    );
    assert!(c.is_valid());
}

#[test]
fn misspelt_in_scope_element_is_an_error_with_a_suggestion() {
    let body = format!("{BASE}<Conection Identifier=\"X\" />");
    let c = check(&[("conf.xml", &file(&body))], BASE_SETTINGS, &[]);
    assert_eq!(errors(&c.diagnostics), vec![Rule::UnknownElement]);
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.rule == Rule::UnknownElement)
        .expect("error");
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("<Connection>")),
        "{d}"
    );
}

#[test]
fn unknown_attributes_warn_with_did_you_mean() {
    let body = BASE.replace(
        "<Connector Identifier=\"Dir\"",
        "<Connector Identifier=\"Dir\" IsDeactivted=\"true\"",
    );
    let c = check(&[("conf.xml", &file(&body))], BASE_SETTINGS, &[]);
    assert!(c.is_valid());
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.rule == Rule::UnknownAttribute)
        .expect("warning");
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("IsDeactivated")),
        "{d}"
    );
}

#[test]
fn wrong_attribute_types_list_the_allowed_values() {
    let body = BASE
        .replace(
            "SynchronizationMode=\"Complete\"",
            "SynchronizationMode=\"Sometimes\"",
        )
        .replace(
            "<Connector Identifier=\"Dir\"",
            "<Connector Identifier=\"Dir\" MaximumDeletedLines=\"lots\" IsDeactivated=\"yes\"",
        );
    let c = check(&[("conf.xml", &file(&body))], BASE_SETTINGS, &[]);
    let msgs: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.rule == Rule::AttributeValue)
        .map(|d| d.message.clone())
        .collect();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.contains("Sometimes") && m.contains("Initial, Complete, Incremental")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("lots") && m.contains("whole number")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("true, false, 1 or 0")),
        "{msgs:?}"
    );
}

#[test]
fn a_ten_megabyte_configuration_loads() {
    let mut body = String::with_capacity(11 << 20);
    body.push_str(BASE);
    let mut i = 0;
    while body.len() < 10 << 20 {
        body.push_str(&format!(
            "<Connector Identifier=\"C{i}\" DisplayName_L1=\"Connector number {i} with a long display name\" />\n\
             <Connection Identifier=\"C{i}-csv\" DisplayName_L1=\"CSV {i}\" Connector=\"C{i}\" Package=\"Usercube.FulfillToFile@0000001\" />\n"
        ));
        i += 1;
    }
    let c = check(&[("big.xml", &file(&body))], BASE_SETTINGS, &[]);
    assert!(
        c.diagnostics
            .iter()
            .all(|d| d.rule == Rule::PlaintextSecret),
        "{}",
        show(&c.diagnostics)
    );
    assert_eq!(c.config.connectors.len(), i + 2);
}

#[test]
fn load_dir_reads_sub_folders_and_reports_missing_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
    std::fs::write(dir.path().join("a/b/conf.XML"), file(BASE)).expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not xml").expect("write");
    let (config, diags) = load_dir(dir.path()).expect("loads");
    assert!(diags.is_empty(), "{}", show(&diags));
    assert_eq!(config.files.len(), 1);
    assert!(matches!(
        load_dir(&dir.path().join("nope")),
        Err(LoadError::MissingFolder(_))
    ));
    let empty = tempfile::tempdir().expect("tempdir");
    assert!(matches!(load_dir(empty.path()), Err(LoadError::NoFiles(_))));
}
