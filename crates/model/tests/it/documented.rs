//! Configurations written the way the Netwrix Identity Manager 6.2 reference pages write them
//! (issue #9): each documented form is accepted, with a regression test named after it.

use idlink_model::{Rule, Severity};

use crate::support::*;

fn check_body(body: &str) -> idlink_model::Checked {
    check(&[("conf.xml", &file(body))], BASE_SETTINGS, &[])
}

/// No error and no warning (but the plain-text password `BASE_SETTINGS` carries on purpose).
fn clean(c: &idlink_model::Checked) {
    let bad: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| matches!(d.severity, Severity::Error | Severity::Warning))
        .filter(|d| d.rule != Rule::PlaintextSecret)
        .collect();
    assert!(bad.is_empty(), "{}", show(&c.diagnostics));
}

#[test]
fn regression_rtm_property_written_with_property_attribute_is_accepted() {
    let body = BASE.replace(
        r#"<ResourceTypeMapping Identifier="Account_Person" Connection="DirLDAP" />"#,
        r#"<LdapResourceTypeMapping Identifier="Account_Person" Connection="DirLDAP" DefaultObjectClass="inetOrgPerson">
  <Property Property="dn" IsDNProperty="true" />
  <Property Property="cn" IsRDNProperty="1" />
  <Property Identifier="cn" />
</LdapResourceTypeMapping>"#,
    );
    let c = check_body(&body);
    clean(&c);
    let m = &c.config.resource_type_mappings[0];
    let ids: Vec<_> = m.properties.iter().map(|p| p.id.value.as_str()).collect();
    assert_eq!(ids, ["dn", "cn", "cn"]);
    assert!(
        m.properties[0]
            .attributes
            .iter()
            .any(|(n, v)| n == "IsDNProperty" && v.value == "true")
    );
    // A wrong property is still caught, whichever way it is written.
    let c = check_body(&BASE.replace(
        r#"<ResourceTypeMapping Identifier="Account_Person" Connection="DirLDAP" />"#,
        r#"<ResourceTypeMapping Identifier="Account_Person" Connection="DirLDAP"><Property Property="nope" /></ResourceTypeMapping>"#,
    ));
    assert_eq!(errors(&c.diagnostics), [Rule::UnresolvedReference], "{}", show(&c.diagnostics));
}
