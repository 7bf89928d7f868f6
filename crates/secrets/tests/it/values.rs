use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use idlink_secrets::{
    AgentIdentity, ENCRYPTED_PREFIX, SecretError, decrypt_value, encrypt_value, is_encrypted,
};

use crate::assert_no_leak;

const PLAINTEXT: &str = "Sup3r-Secret-Passw0rd!";

fn encrypted(identity: &AgentIdentity, plaintext: &str) -> String {
    encrypt_value(&identity.recipient(), plaintext).unwrap()
}

/// The error's text holds neither the plaintext nor the (full or partial) ciphertext.
fn assert_clean(err: &SecretError, ciphertext: &str) {
    let msg = err.to_string();
    let dbg = format!("{err:?}");
    for text in [&msg, &dbg] {
        assert_no_leak(text, PLAINTEXT);
        assert_no_leak(
            text,
            ciphertext
                .strip_prefix(ENCRYPTED_PREFIX)
                .unwrap_or(ciphertext),
        );
    }
}

#[test]
fn round_trip() {
    let id = AgentIdentity::generate();
    for plaintext in [
        PLAINTEXT,
        "",
        "with \"quotes\", \\backslashes\\, newline\nand ünïcødé ✓",
        &"x".repeat(200_000), // several age STREAM chunks
    ] {
        let v = encrypted(&id, plaintext);
        assert!(is_encrypted(&v));
        assert!(v.starts_with("age:"));
        assert!(
            !v.contains(['\n', '\r', '"', '\\', ' ']),
            "one JSON-safe line"
        );
        assert!(!v.contains(plaintext) || plaintext.is_empty());
        assert_eq!(decrypt_value(&id, &v).unwrap().expose_secret(), plaintext);
    }
    // Fresh randomness each time.
    assert_ne!(encrypted(&id, PLAINTEXT), encrypted(&id, PLAINTEXT));
    assert!(!is_encrypted(PLAINTEXT));
}

#[test]
fn wrong_key() {
    let agent = AgentIdentity::generate();
    let other = AgentIdentity::generate();
    let v = encrypted(&other, PLAINTEXT);
    let err = decrypt_value(&agent, &v).unwrap_err();
    assert!(matches!(err, SecretError::WrongKey { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("not encrypted to this agent's key: it was encrypted for another recipient"),
        "{msg}"
    );
    assert!(msg.contains(&agent.recipient().to_string()), "{msg}");
    assert_clean(&err, &v);
}

#[test]
fn ciphertext_for_another_recipient() {
    // `protect` run with someone else's public key, then loaded by this agent.
    let agent = AgentIdentity::generate();
    let (_, someone_else) = idlink_secrets::generate_identity();
    let v = encrypt_value(&someone_else, PLAINTEXT).unwrap();
    let err = decrypt_value(&agent, &v).unwrap_err();
    assert!(matches!(err, SecretError::WrongKey { .. }), "{err:?}");
    assert_clean(&err, &v);
}

#[test]
fn rotated_keys_still_decrypt() {
    let old = AgentIdentity::generate();
    let new = AgentIdentity::generate();
    let both = idlink_secrets::parse_identity(&format!(
        "{}{}",
        new.to_identity_file_text().expose_secret(),
        old.to_identity_file_text().expose_secret()
    ))
    .unwrap();
    let v = encrypted(&old, PLAINTEXT);
    assert_eq!(decrypt_value(&both, &v).unwrap().expose_secret(), PLAINTEXT);
    assert_eq!(both.recipient(), new.recipient());
}

#[test]
fn truncated() {
    let id = AgentIdentity::generate();
    let v = encrypted(&id, PLAINTEXT);
    // Cut in half: inside the age header.
    let half = &v[..v.len() / 2];
    let err = decrypt_value(&id, half).unwrap_err();
    assert!(matches!(err, SecretError::Truncated), "{err:?}");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_clean(&err, &v);

    // Cut at the end: the body fails authentication.
    let short = &v[..v.len() - 8];
    let err = decrypt_value(&id, short).unwrap_err();
    assert!(matches!(err, SecretError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("cut short or modified"), "{err}");
    assert_clean(&err, &v);

    // Every cut gives a clean damage error, never a decryption nor a panic.
    for cut in ENCRYPTED_PREFIX.len()..v.len() {
        if v[cut..].bytes().all(|b| b == b'=') {
            // Only base64 padding removed: no data lost, the value still decrypts.
            assert_eq!(
                decrypt_value(&id, &v[..cut]).unwrap().expose_secret(),
                PLAINTEXT
            );
            continue;
        }
        let err = decrypt_value(&id, &v[..cut]).unwrap_err();
        assert!(
            matches!(
                err,
                SecretError::Truncated | SecretError::Corrupt { .. } | SecretError::NotBase64
            ),
            "cut at {cut}: {err:?}"
        );
        assert_clean(&err, &v);
    }
}

#[test]
fn corrupt_and_garbage() {
    let id = AgentIdentity::generate();
    let v = encrypted(&id, PLAINTEXT);

    // One byte of the body flipped.
    let mut bytes = STANDARD.decode(&v[4..]).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    let flipped = format!("age:{}", STANDARD.encode(&bytes));
    let err = decrypt_value(&id, &flipped).unwrap_err();
    assert!(matches!(err, SecretError::Corrupt { .. }), "{err:?}");
    assert_clean(&err, &flipped);

    // Base64 of something that is not age data.
    let garbage = format!(
        "age:{}",
        STANDARD.encode("not an age file at all, just text")
    );
    let err = decrypt_value(&id, &garbage).unwrap_err();
    assert!(matches!(err, SecretError::Corrupt { .. }), "{err:?}");
    assert_clean(&err, &garbage);

    // Not base64.
    let err = decrypt_value(&id, "age:%%%not-base64%%%").unwrap_err();
    assert!(matches!(err, SecretError::NotBase64), "{err:?}");
    assert!(err.to_string().contains("not base64"), "{err}");
    assert_no_leak(&err.to_string(), "%%%not-base64%%%");

    // Not our prefix: a plain value is not echoed.
    let err = decrypt_value(&id, PLAINTEXT).unwrap_err();
    assert!(matches!(err, SecretError::NotEncrypted), "{err:?}");
    assert_clean(&err, PLAINTEXT);

    // An armored age file pasted instead of our form.
    let err = decrypt_value(&id, "age:-----BEGIN AGE ENCRYPTED FILE-----").unwrap_err();
    assert!(matches!(err, SecretError::NotBase64), "{err:?}");
}

#[test]
fn errors_are_distinct() {
    let id = AgentIdentity::generate();
    let other = AgentIdentity::generate();
    let v = encrypted(&id, PLAINTEXT);
    let messages = [
        decrypt_value(&other, &v).unwrap_err().to_string(),
        decrypt_value(&id, &v[..v.len() / 2])
            .unwrap_err()
            .to_string(),
        decrypt_value(&id, &v[..v.len() - 8])
            .unwrap_err()
            .to_string(),
        decrypt_value(&id, "age:%%%").unwrap_err().to_string(),
        decrypt_value(&id, "plain").unwrap_err().to_string(),
    ];
    for (i, a) in messages.iter().enumerate() {
        for b in &messages[i + 1..] {
            assert_ne!(a, b);
        }
    }
}
