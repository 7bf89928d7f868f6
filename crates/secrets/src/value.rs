//! One secured value as one line of text: `age:` + base64 of the binary age ciphertext.

use std::io::{self, Read};

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use zeroize::Zeroizing;

use crate::error::SecretError;
use crate::keys::{AgentIdentity, AgentRecipient};
use crate::secret::Secret;

/// What every encrypted value starts with.
pub const ENCRYPTED_PREFIX: &str = "age:";

/// The first bytes of every age file (`age-encryption.org/v1`).
const AGE_MAGIC: &[u8] = b"age-encryption.org/";

/// Reads padded or unpadded base64, so a value cut in the middle is reported as truncated
/// rather than as not base64 when possible.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Encrypts `plaintext` to `recipient`, as a one-line string safe in JSON:
/// [`ENCRYPTED_PREFIX`] followed by the standard base64 (padded) of the binary age ciphertext.
/// Each call gives a different string (age uses a fresh file key every time).
pub fn encrypt_value(recipient: &AgentRecipient, plaintext: &str) -> Result<String, SecretError> {
    seal(recipient, plaintext.as_bytes())
}

fn seal(recipient: &AgentRecipient, plaintext: &[u8]) -> Result<String, SecretError> {
    let ciphertext =
        age::encrypt(recipient.inner(), plaintext).map_err(|e| SecretError::Encrypt {
            reason: e.to_string(),
        })?;
    let mut out = String::with_capacity(ENCRYPTED_PREFIX.len() + ciphertext.len() * 4 / 3 + 4);
    out.push_str(ENCRYPTED_PREFIX);
    STANDARD.encode_string(&ciphertext, &mut out);
    Ok(out)
}

/// What an encrypted value is bound to: the setting it was encrypted for and where that
/// setting's connection sends it. Sealed inside the ciphertext with the value, so whoever edits
/// the settings (a server, for a remote agent) can neither move it to another setting nor
/// point its connection elsewhere without the agent noticing: it cannot make a new one without
/// knowing the value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Binding {
    /// The setting, as `Connections.<connection>.<path>` ([`crate::path_to_string`]).
    #[serde(rename = "for")]
    pub place: String,
    /// The settings that say where the value is sent, as `Name=value`, outermost first.
    #[serde(rename = "to", default)]
    pub destination: Vec<String>,
}

impl Binding {
    /// Whether a value encrypted with this binding may serve at `here`: the same place
    /// (settings keys compare case-insensitively, as in .NET configuration) with the same
    /// destination. A value encrypted where no destination was known (a file of secrets alone,
    /// its connections' servers given elsewhere) is bound to its place only.
    pub fn admits(&self, here: &Binding) -> bool {
        self.place.eq_ignore_ascii_case(&here.place)
            && (self.destination.is_empty() || self.destination == here.destination)
    }
}

impl std::fmt::Display for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.place)?;
        if !self.destination.is_empty() {
            write!(f, " with {}", self.destination.join(", "))?;
        }
        Ok(())
    }
}

/// The first line of a bound plaintext; the binding's JSON is the second, the value the rest.
const BOUND_MAGIC: &[u8] = b"idlink-bound/1\n";

/// Encrypts `plaintext` to `recipient` bound to `binding` (see [`Binding`]), in the form of
/// [`encrypt_value`]. [`decrypt_value`] gives the value alone; [`decrypt_bound`] the binding too.
pub fn encrypt_bound(
    recipient: &AgentRecipient,
    binding: &Binding,
    plaintext: &str,
) -> Result<String, SecretError> {
    let json = serde_json::to_string(binding).map_err(|e| SecretError::Encrypt {
        reason: e.to_string(),
    })?;
    let mut sealed = Zeroizing::new(Vec::with_capacity(
        BOUND_MAGIC.len() + json.len() + 1 + plaintext.len(),
    ));
    sealed.extend_from_slice(BOUND_MAGIC);
    sealed.extend_from_slice(json.as_bytes());
    sealed.push(b'\n');
    sealed.extend_from_slice(plaintext.as_bytes());
    seal(recipient, &sealed)
}

/// Whether a settings value is meant as an encrypted value (it starts with
/// [`ENCRYPTED_PREFIX`]). It says nothing about whether it will decrypt: a damaged value is
/// still "encrypted", and [`decrypt_value`] says what is wrong with it.
pub fn is_encrypted(value: &str) -> bool {
    value.starts_with(ENCRYPTED_PREFIX)
}

/// Whether `value` is a well-formed encrypted value: the prefix, base64, and an age header
/// start. Used by `protect` to leave encrypted values alone and encrypt anything else.
pub(crate) fn looks_like_ciphertext(value: &str) -> bool {
    value
        .strip_prefix(ENCRYPTED_PREFIX)
        .and_then(|b64| STANDARD.decode(b64).ok())
        .is_some_and(|bytes| bytes.starts_with(AGE_MAGIC))
}

/// Decrypts a value made by [`encrypt_value`] with the agent's key.
///
/// Errors, none of which quotes the value: [`SecretError::NotEncrypted`] (no `age:` prefix),
/// [`SecretError::NotBase64`], [`SecretError::Truncated`] (cut inside the age header),
/// [`SecretError::Corrupt`] (not age data, or the body fails authentication: cut or edited),
/// [`SecretError::WrongKey`] (encrypted to another public key), [`SecretError::NotUtf8`].
pub fn decrypt_value(identity: &AgentIdentity, value: &str) -> Result<Secret, SecretError> {
    decrypt_bound(identity, value).map(|(secret, _)| secret)
}

/// [`decrypt_value`], with the [`Binding`] the value was encrypted with ([`encrypt_bound`]);
/// `None` for a value encrypted unbound ([`encrypt_value`], or by an older idlink).
pub fn decrypt_bound(
    identity: &AgentIdentity,
    value: &str,
) -> Result<(Secret, Option<Binding>), SecretError> {
    let b64 = value
        .strip_prefix(ENCRYPTED_PREFIX)
        .ok_or(SecretError::NotEncrypted)?;
    let ciphertext = LENIENT.decode(b64).map_err(|_| SecretError::NotBase64)?;
    if ciphertext.is_empty() {
        return Err(SecretError::Truncated);
    }
    if !ciphertext.starts_with(AGE_MAGIC) {
        // A prefix of the magic is a value cut very early.
        return Err(if AGE_MAGIC.starts_with(&ciphertext) {
            SecretError::Truncated
        } else {
            SecretError::Corrupt {
                detail: "it is not age-encrypted data",
            }
        });
    }
    let decryptor = age::Decryptor::new_buffered(&ciphertext[..]).map_err(map_decrypt_error)?;
    let identities = identity.keys().iter().map(|k| k as &dyn age::Identity);
    let mut reader = match decryptor.decrypt(identities) {
        Ok(r) => r,
        Err(age::DecryptError::NoMatchingKeys) => {
            return Err(SecretError::WrongKey {
                agent_recipient: identity.recipient().to_string(),
            });
        }
        Err(e) => return Err(map_decrypt_error(e)),
    };
    let mut plaintext = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    reader
        .read_to_end(&mut plaintext)
        .map_err(|e| map_decrypt_error(age::DecryptError::Io(e)))?;
    let Some(bound) = plaintext.strip_prefix(BOUND_MAGIC) else {
        let text = std::str::from_utf8(&plaintext).map_err(|_| SecretError::NotUtf8)?;
        return Ok((Secret::new(text), None));
    };
    let unreadable = || SecretError::Corrupt {
        detail: "the setting it is bound to cannot be read",
    };
    let end = bound
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(unreadable)?;
    let binding: Binding = serde_json::from_slice(&bound[..end]).map_err(|_| unreadable())?;
    let text = std::str::from_utf8(&bound[end + 1..]).map_err(|_| SecretError::NotUtf8)?;
    Ok((Secret::new(text), Some(binding)))
}

fn map_decrypt_error(e: age::DecryptError) -> SecretError {
    use age::DecryptError as D;
    match e {
        D::NoMatchingKeys => SecretError::Corrupt {
            detail: "none of the agent's keys can open it",
        },
        D::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => SecretError::Truncated,
        D::Io(_) | D::DecryptionFailed => SecretError::Corrupt {
            detail: "its contents fail authentication (it was cut short or modified)",
        },
        D::InvalidHeader | D::UnknownFormat => SecretError::Corrupt {
            detail: "its age header is invalid",
        },
        D::InvalidMac => SecretError::Corrupt {
            detail: "its age header fails authentication (it was modified)",
        },
        D::KeyDecryptionFailed | D::ExcessiveWork { .. } => SecretError::Corrupt {
            detail: "it is not encrypted to an X25519 public key",
        },
        _ => SecretError::Corrupt {
            detail: "it cannot be decrypted",
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let id = AgentIdentity::generate();
        let v = encrypt_value(&id.recipient(), "s3cret-päss").unwrap();
        assert!(is_encrypted(&v));
        assert!(looks_like_ciphertext(&v));
        assert!(!v.contains('\n'));
        assert_eq!(
            decrypt_value(&id, &v).unwrap().expose_secret(),
            "s3cret-päss"
        );
        let empty = encrypt_value(&id.recipient(), "").unwrap();
        assert_eq!(decrypt_value(&id, &empty).unwrap().expose_secret(), "");
    }

    #[test]
    fn a_bound_value_gives_its_binding_and_reads_as_the_value_alone() {
        let id = AgentIdentity::generate();
        let binding = Binding {
            place: "Connections.Dir.Servers[0].Password".into(),
            destination: vec!["Server=ldap://h:389".into()],
        };
        for plain in ["s3cret\nwith a line", ""] {
            let v = encrypt_bound(&id.recipient(), &binding, plain).unwrap();
            assert!(looks_like_ciphertext(&v) && !v.contains('\n'));
            assert_eq!(decrypt_value(&id, &v).unwrap().expose_secret(), plain);
            let (secret, bound) = decrypt_bound(&id, &v).unwrap();
            assert_eq!(secret.expose_secret(), plain);
            assert_eq!(bound.as_ref(), Some(&binding));
        }
        let unbound = encrypt_value(&id.recipient(), "s3cret").unwrap();
        assert!(decrypt_bound(&id, &unbound).unwrap().1.is_none());
        let other = Binding {
            place: "connections.dir.servers[0].PASSWORD".into(),
            ..binding.clone()
        };
        assert!(binding.admits(&other));
        let elsewhere = Binding {
            destination: vec!["Server=ldap://evil:389".into()],
            ..binding.clone()
        };
        assert!(!binding.admits(&elsewhere));
        let placed = Binding {
            destination: Vec::new(),
            ..binding.clone()
        };
        assert!(placed.admits(&elsewhere) && placed.admits(&binding));
        let moved = Binding {
            place: "Connections.Other.Servers[0].Password".into(),
            ..elsewhere.clone()
        };
        assert!(!placed.admits(&moved));
        assert_eq!(
            binding.to_string(),
            "Connections.Dir.Servers[0].Password with Server=ldap://h:389"
        );
        // A bound plaintext whose binding is cut is corrupt, never taken as the value.
        let cut = seal(&id.recipient(), b"idlink-bound/1\n{\"for\":").unwrap();
        assert!(matches!(
            decrypt_bound(&id, &cut),
            Err(SecretError::Corrupt { .. })
        ));
    }

    #[test]
    fn prefix_and_shape() {
        assert!(!is_encrypted("hunter2"));
        assert!(is_encrypted("age:xyz"));
        assert!(!looks_like_ciphertext("age:xyz"));
        assert!(!looks_like_ciphertext("age:aGVsbG8="));
        let id = AgentIdentity::generate();
        assert!(matches!(
            decrypt_value(&id, "hunter2"),
            Err(SecretError::NotEncrypted)
        ));
        assert!(matches!(
            decrypt_value(&id, "age:!!!!"),
            Err(SecretError::NotBase64)
        ));
        assert!(matches!(
            decrypt_value(&id, "age:"),
            Err(SecretError::Truncated)
        ));
        assert!(matches!(
            decrypt_value(&id, "age:aGVsbG8gd29ybGQ="),
            Err(SecretError::Corrupt { .. })
        ));
    }
}
