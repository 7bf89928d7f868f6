use idlink_secrets::{
    AgentIdentity, PathSegment, decrypt_value, is_encrypted, path_to_string, protect_json,
    protect_jsonc_text,
};
use serde_json::{Value, json};

/// What the caller (who knows each package's schema) would say: LDAP `Login`/`Password` (also
/// inside `Servers[]`), SCIM `OAuthToken`, and everything under a script's `Options`.
fn is_secured(path: &[PathSegment]) -> bool {
    let keys: Vec<&str> = path.iter().filter_map(PathSegment::key).collect();
    match keys.as_slice() {
        ["Connections", _, rest @ ..] => match rest {
            [leaf] => ["Password", "Login", "OAuthToken"]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(leaf)),
            ["Servers", leaf] => ["Password", "Login"]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(leaf)),
            ["Options", ..] => true,
            _ => false,
        },
        _ => false,
    }
}

fn document(already: &str) -> Value {
    json!({
        "Connections": {
            "LDAP": {
                "Servers": [
                    { "Server": "ldap://a:389", "AuthType": "Basic", "Login": "cn=admin", "Password": "pw-server-zero", "EnableSSL": false },
                    { "Server": "ldap://b:389", "AuthType": "Anonymous" },
                    { "Server": "ldap://c:389", "Password": "pw-server-two" }
                ],
                "Tables": [ { "Table": "entries", "BaseDN": "dc=x", "Filter": "(objectClass=*)", "Scope": "Subtree" } ],
                "SizeLimit": 1000,
                "TimeOut": 1.5
            },
            "SCIM": { "Server": "http://127.0.0.1:8000", "OAuthToken": already, "PageSize": 200 },
            "Script": { "PowerShellScriptPath": "/opt/x.sh", "Options": { "ApiKey": "opt-key-value", "Nested": ["opt-list-value"] } },
            "Weird": { "Password": 123456, "Login": null },
            "CSV": { "Path": "/data/hr/people.csv", "Separator": ";" }
        },
        "SourcesRootPaths": ["/data/hr"],
        "EncryptionIdentity": "/etc/idlink/agent.key"
    })
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    v.pointer(path).unwrap()
}

#[test]
fn protect_json_encrypts_exactly_the_secured_paths() {
    let id = AgentIdentity::generate();
    let already = idlink_secrets::encrypt_value(&id.recipient(), "scim-token-value").unwrap();
    let input = document(&already);
    let (out, report) = protect_json(&input, &id.recipient(), is_secured).unwrap();

    let secured = [
        ("/Connections/LDAP/Servers/0/Login", "cn=admin"),
        ("/Connections/LDAP/Servers/0/Password", "pw-server-zero"),
        ("/Connections/LDAP/Servers/2/Password", "pw-server-two"),
        ("/Connections/Script/Options/ApiKey", "opt-key-value"),
        ("/Connections/Script/Options/Nested/0", "opt-list-value"),
    ];
    let mut expected_out = input.clone();
    for (pointer, clear) in secured {
        let v = get(&out, pointer).as_str().unwrap();
        assert!(is_encrypted(v), "{pointer}: {v}");
        assert_eq!(decrypt_value(&id, v).unwrap().expose_secret(), clear);
        *expected_out.pointer_mut(pointer).unwrap() = Value::String(v.to_string());
    }
    // Nothing else changed (the already-encrypted token included), nothing removed.
    assert_eq!(out, expected_out);
    assert_eq!(
        get(&out, "/Connections/SCIM/OAuthToken").as_str().unwrap(),
        already
    );
    let text = serde_json::to_string(&out).unwrap();
    for (_, clear) in secured {
        assert!(!text.contains(clear), "{clear} left in clear");
    }

    let names = |paths: &[Vec<PathSegment>]| -> Vec<String> {
        paths.iter().map(|p| path_to_string(p)).collect()
    };
    let mut encrypted = names(&report.encrypted);
    encrypted.sort();
    assert_eq!(
        encrypted,
        [
            "Connections.LDAP.Servers[0].Login",
            "Connections.LDAP.Servers[0].Password",
            "Connections.LDAP.Servers[2].Password",
            "Connections.Script.Options.ApiKey",
            "Connections.Script.Options.Nested[0]",
        ]
    );
    assert_eq!(
        names(&report.already_encrypted),
        ["Connections.SCIM.OAuthToken"]
    );
    assert_eq!(names(&report.not_strings), ["Connections.Weird.Password"]);

    // Protecting again changes nothing.
    let (again, report) = protect_json(&out, &id.recipient(), is_secured).unwrap();
    assert_eq!(again, out);
    assert!(report.encrypted.is_empty());
    assert_eq!(report.already_encrypted.len(), 6);
}

#[test]
fn a_plain_value_that_starts_with_the_prefix_is_still_encrypted() {
    let id = AgentIdentity::generate();
    let input = json!({ "Connections": { "X": { "Password": "age:hunter2-not-ciphertext" } } });
    let (out, report) = protect_json(&input, &id.recipient(), is_secured).unwrap();
    let v = get(&out, "/Connections/X/Password").as_str().unwrap();
    assert_eq!(
        decrypt_value(&id, v).unwrap().expose_secret(),
        "age:hunter2-not-ciphertext"
    );
    assert_eq!(report.encrypted.len(), 1);
}

const JSONC: &str = r#"﻿{
  // Agent settings — comments and trailing commas are allowed.
  "Connections": {
    "LDAP": {
      "Servers": [
        { "Server": "ldap://a:389", "AuthType": "Basic", "Login": "cn=admin", "Password": "pw\"zero\u00e9", },
        { "Server": "ldap://b:389", "AuthType": "Anonymous" },
        { "Server": "ldap://c:389",   "Password":   "pw-server-two" }
      ],
      "SizeLimit": 1.50e3, /* spelled as written */
    },
    "Script": { "Options": { "ApiKey": "opt-key-value" } },
    "CSV": { "Path": "/data/hr/ünïcødé.csv" },
  },
  "SourcesRootPaths": ["/data/hr"],
}
"#;

#[test]
fn protect_jsonc_text_keeps_every_other_byte() {
    let id = AgentIdentity::generate();
    let (out, report) = protect_jsonc_text(JSONC, &id.recipient(), is_secured).unwrap();
    assert_eq!(report.encrypted.len(), 4, "{report:?}");
    assert!(out.starts_with('\u{feff}'));

    // Put the original literals back in place of the ciphertexts: the original text returns.
    let originals = [
        ("\"cn=admin\"", "cn=admin"),
        ("\"pw\\\"zero\\u00e9\"", "pw\"zeroé"),
        ("\"pw-server-two\"", "pw-server-two"),
        ("\"opt-key-value\"", "opt-key-value"),
    ];
    let mut restored = out.clone();
    let mut found = 0;
    for (literal, clear) in originals {
        assert!(!out.contains(literal), "{literal} left in clear");
        // Find the ciphertext that decrypts to `clear`.
        let mut rest = out.as_str();
        while let Some(start) = rest.find("\"age:") {
            let after = &rest[start + 1..];
            let end = after.find('"').unwrap();
            let value = &after[..end];
            if decrypt_value(&id, value).unwrap().expose_secret() == clear {
                restored = restored.replace(&format!("\"{value}\""), literal);
                found += 1;
                break;
            }
            rest = &after[end..];
        }
    }
    assert_eq!(found, 4);
    assert_eq!(restored, JSONC);

    // Protecting the result again is a no-op.
    let (again, report) = protect_jsonc_text(&out, &id.recipient(), is_secured).unwrap();
    assert_eq!(again, out);
    assert!(report.encrypted.is_empty());
    assert_eq!(report.already_encrypted.len(), 4);
}

#[test]
fn protect_jsonc_text_without_secured_values_is_identity() {
    let id = AgentIdentity::generate();
    let (out, report) = protect_jsonc_text(JSONC, &id.recipient(), |_| false).unwrap();
    assert_eq!(out, JSONC);
    assert_eq!(report, Default::default());
    let (out, _) = protect_jsonc_text("", &id.recipient(), |_| true).unwrap();
    assert_eq!(out, "");
}

/// Defect 2 of issue #8: protect replaced the encrypted file with a copy of every setting.
/// Now it merges: only secured values go in, what the file holds stays, nothing is dropped.
#[test]
fn regression_protect_merges_only_secured_values_and_never_drops_an_encrypted_one() {
    use idlink_secrets::protect_into_encrypted;
    let id = AgentIdentity::generate();
    let kept = idlink_secrets::encrypt_value(&id.recipient(), "kept-login").unwrap();
    let replaced = idlink_secrets::encrypt_value(&id.recipient(), "old-pw").unwrap();
    let existing = format!(
        "{{\n  // my comment\n  \"Connections\": {{\n    \"ldap\": {{ \"servers\": [ {{ \"login\": \"{kept}\", \"PASSWORD\": \"{replaced}\" }} ] }},\n    \"Gone\": {{ \"OAuthToken\": \"{kept}\" }}\n  }}\n}}\n"
    );
    let plain = r#"{
      // plain
      "SourcesRootPaths": ["/data"],
      "Connections": {
        "LDAP": { "Servers": [ { "Server": "ldap://a", "Password": "new-pw" }, { "Server": "ldap://b", "Login": "second" } ] },
        "SCIM": { "Server": "http://x", "OAuthToken": "tok" },
        "CSV": { "Path": "p.csv" },
        "Weird": { "Password": 12 }
      }
    }"#;
    let bind = |p: &[PathSegment]| {
        is_secured(p).then(|| idlink_secrets::Binding {
            place: idlink_secrets::path_to_string(p),
            destination: Vec::new(),
        })
    };
    let (out, report) =
        protect_into_encrypted(plain, Some(&existing), &id.recipient(), bind).unwrap();
    assert!(
        out.starts_with("{\n  // my comment\n  \"Connections\": {\n    \"ldap\": {"),
        "{out}"
    );
    assert!(out.ends_with("}\n"));
    for ordinary in [
        "Server\"",
        "Path",
        "SourcesRootPaths",
        "new-pw",
        "tok\"",
        "second",
    ] {
        assert!(!out.contains(ordinary), "{ordinary} in:\n{out}");
    }
    let v: Value = jsonc_to_value(&out);
    let clear = |p: &str| {
        decrypt_value(&id, get(&v, p).as_str().unwrap())
            .unwrap()
            .expose_secret()
            .to_string()
    };
    assert_eq!(clear("/Connections/ldap/servers/0/login"), "kept-login");
    assert_eq!(clear("/Connections/ldap/servers/0/PASSWORD"), "new-pw");
    assert_eq!(clear("/Connections/ldap/servers/1/Login"), "second");
    assert_eq!(clear("/Connections/Gone/OAuthToken"), "kept-login");
    assert_eq!(clear("/Connections/SCIM/OAuthToken"), "tok");
    // Each value encrypted is bound to its place.
    let (_, bound) = idlink_secrets::decrypt_bound(
        &id,
        get(&v, "/Connections/SCIM/OAuthToken").as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(bound.unwrap().place, "Connections.SCIM.OAuthToken");
    assert_eq!(report.encrypted.len(), 3);
    assert_eq!(report.replaced.len(), 1);
    assert_eq!(report.kept.len(), 2);
    assert_eq!(report.not_strings.len(), 1);
    // Nothing to encrypt: the text comes back byte for byte.
    let (same, _) = protect_into_encrypted(
        "{\"Connections\":{}}",
        Some(&existing),
        &id.recipient(),
        bind,
    )
    .unwrap();
    assert_eq!(same, existing);
    // Another shape where a value must go: refused, with the path, never the values.
    let bad = "{\"Connections\": {\"LDAP\": {\"Servers\": \"oops\"}}}";
    let e = protect_into_encrypted(plain, Some(bad), &id.recipient(), bind)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Connections.LDAP.Servers") && e.contains("an array"),
        "{e}"
    );
    assert!(!e.contains("new-pw"), "{e}");
}

/// The JSON of a JSON-with-comments text.
fn jsonc_to_value(text: &str) -> Value {
    let stripped: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&stripped).unwrap()
}
