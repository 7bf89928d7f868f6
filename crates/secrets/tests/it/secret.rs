use idlink_secrets::{REDACTED, Secret};
use serde::{Deserialize, Serialize};

const VALUE: &str = "correct-horse-battery-staple";

#[derive(Debug, Serialize, Deserialize)]
struct Settings {
    server: String,
    password: Secret,
    tokens: Vec<Secret>,
    maybe: Option<Secret>,
}

fn settings() -> Settings {
    serde_json::from_value(serde_json::json!({
        "server": "ldap://127.0.0.1",
        "password": VALUE,
        "tokens": [VALUE, "another-token-value"],
        "maybe": VALUE,
    }))
    .unwrap()
}

#[test]
fn debug_and_display_never_show_the_value() {
    let s = settings();
    for text in [
        format!("{s:?}"),
        format!("{s:#?}"),
        format!("{}", s.password),
        format!("{:>40}", s.password),
        s.password.to_string(),
        format!("{:?}", s.maybe),
    ] {
        assert!(!text.contains(VALUE), "{text}");
        assert!(!text.contains("another-token-value"), "{text}");
        assert!(text.contains(REDACTED), "{text}");
    }
    assert_eq!(s.password.expose_secret(), VALUE);
    assert_eq!(s.tokens[1].expose_secret(), "another-token-value");
}

#[test]
fn serde_writes_only_redacted() {
    let s = settings();
    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains(VALUE), "{json}");
    assert_eq!(
        json,
        r#"{"server":"ldap://127.0.0.1","password":"**REDACTED**","tokens":["**REDACTED**","**REDACTED**"],"maybe":"**REDACTED**"}"#
    );
    let pretty = serde_json::to_string_pretty(&serde_json::to_value(&s).unwrap()).unwrap();
    assert!(!pretty.contains(VALUE), "{pretty}");
}

#[test]
fn wrong_type_errors_do_not_quote_the_value() {
    let e = serde_json::from_str::<Settings>(
        r#"{"server":"x","password":987654321,"tokens":[],"maybe":null}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(!e.contains("987654321"), "{e}");
    assert!(e.contains("expected a string"), "{e}");
}

#[test]
fn clones_are_independent_and_equal() {
    let a = Secret::new(VALUE.to_string());
    let b = a.clone();
    drop(a);
    assert_eq!(b.expose_secret(), VALUE);
    assert_eq!(b, Secret::from(VALUE));
    assert_ne!(b, Secret::from("correct-horse-battery-stapl"));
}
