use std::fs;
use std::os::unix::fs::PermissionsExt;

use idlink_secrets::{
    AgentIdentity, PermissionCheck, SecretError, generate_identity, load_identity,
    load_identity_with, parse_recipient, write_identity,
};

use crate::assert_no_leak;

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn secret_line(identity: &AgentIdentity) -> String {
    identity
        .to_identity_file_text()
        .expose_secret()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap()
        .to_string()
}

#[test]
fn keygen_writes_mode_0600_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.key");
    let (identity, recipient) = generate_identity();
    let written = write_identity(&path, &identity, false).unwrap();
    assert_eq!(written, recipient);
    assert!(written.to_string().starts_with("age1"));
    assert_eq!(mode(&path), 0o600);

    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(&format!("# public key: {recipient}\n")),
        "{text}"
    );
    assert!(text.contains(&secret_line(&identity)));

    let loaded = load_identity(&path).unwrap();
    assert_eq!(loaded.recipient(), recipient);
    assert_eq!(parse_recipient(&recipient.to_string()).unwrap(), recipient);
}

#[test]
fn refuses_to_overwrite_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.key");
    let (first, first_recipient) = generate_identity();
    write_identity(&path, &first, false).unwrap();
    let before = fs::read(&path).unwrap();

    let (second, second_recipient) = generate_identity();
    let err = write_identity(&path, &second, false).unwrap_err();
    assert!(matches!(err, SecretError::IdentityExists { .. }), "{err:?}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before, "the old key is untouched");

    // Forced: replaced atomically, still 0600, no temp file left behind.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    write_identity(&path, &second, true).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(load_identity(&path).unwrap().recipient(), second_recipient);
    assert_ne!(first_recipient, second_recipient);
    let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
}

#[test]
fn write_into_missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("agent.key");
    let err = write_identity(&path, &AgentIdentity::generate(), false).unwrap_err();
    assert!(matches!(err, SecretError::IdentityWrite { .. }), "{err:?}");
    assert!(
        err.to_string().contains("cannot write agent key file"),
        "{err}"
    );
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.key");
    let err = load_identity(&path).unwrap_err();
    assert!(
        matches!(err, SecretError::IdentityNotFound { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("does not exist"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("idlink keygen"), "{msg}");
}

#[test]
fn open_permissions_refused_or_warned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.key");
    let (identity, recipient) = generate_identity();
    write_identity(&path, &identity, false).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

    let err = load_identity(&path).unwrap_err();
    assert!(
        matches!(
            err,
            SecretError::IdentityPermissionsTooOpen { mode: 0o644, .. }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("0644") && msg.contains("chmod 600"), "{msg}");

    let loaded = load_identity_with(&path, PermissionCheck::Warn).unwrap();
    assert_eq!(loaded.identity.recipient(), recipient);
    assert!(loaded.warning.unwrap().contains("chmod 600"));

    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let loaded = load_identity_with(&path, PermissionCheck::Refuse).unwrap();
    assert!(loaded.warning.is_none());
}

#[test]
fn not_an_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.key");

    // A public key where the secret key should be.
    let (_, recipient) = generate_identity();
    fs::write(&path, format!("{recipient}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let msg = load_identity(&path).unwrap_err().to_string();
    assert!(msg.contains("is not an age identity"), "{msg}");
    assert!(msg.contains("public key"), "{msg}");

    // Some other file: its contents are not quoted.
    fs::write(&path, "DB_PASSWORD=very-secret-password-123\n").unwrap();
    let err = load_identity(&path).unwrap_err();
    assert!(matches!(err, SecretError::NotAnIdentity { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert_no_leak(&msg, "very-secret-password-123");

    // A damaged key: the key text is not quoted.
    let line = secret_line(&AgentIdentity::generate());
    // Change the last character (to one it is not), which breaks the bech32 checksum.
    let last = if line.ends_with('X') { 'Y' } else { 'X' };
    let damaged = format!("{}{last}\n", &line[..line.len() - 1]);
    fs::write(&path, &damaged).unwrap();
    let msg = load_identity(&path).unwrap_err().to_string();
    assert!(msg.contains("damaged"), "{msg}");
    assert_no_leak(&msg, damaged.trim());

    // Binary data.
    fs::write(&path, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    let msg = load_identity(&path).unwrap_err().to_string();
    assert!(msg.contains("not text"), "{msg}");

    // A directory.
    let err = load_identity(dir.path()).unwrap_err();
    assert!(matches!(err, SecretError::IdentityRead { .. }), "{err:?}");
}

#[test]
fn bad_public_keys() {
    let identity = AgentIdentity::generate();
    let good = identity.recipient().to_string();
    let cut = &good[..good.len() - 3];
    let err = parse_recipient(cut).unwrap_err();
    assert!(
        matches!(err, SecretError::InvalidRecipient { .. }),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("invalid public key"), "{err}");

    let secret = secret_line(&identity);
    let msg = parse_recipient(&secret).unwrap_err().to_string();
    assert!(msg.contains("secret key, not a public key"), "{msg}");
    assert_no_leak(&msg, &secret);
}
