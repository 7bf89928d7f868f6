//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong with keys and secured values.
///
/// No variant carries a plaintext, a ciphertext or a secret key, so every message is safe to
/// log and to show. Callers add the connection and setting names (e.g. with `anyhow::Context`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The agent key file does not exist.
    #[error(
        "agent key file '{}' does not exist; create it with `idlink keygen --out {}`, or point \
         EncryptionIdentity (appsettings.agent.json) or IDLINK_AGENT_KEY at the agent's key file",
        path.display(),
        path.display()
    )]
    IdentityNotFound { path: PathBuf },

    /// The agent key file exists but could not be read.
    #[error("cannot read agent key file '{}': {error}", path.display())]
    IdentityRead {
        path: PathBuf,
        error: std::io::Error,
    },

    /// The agent key file (or key text) is not an age X25519 identity.
    #[error("{origin} is not an age identity: {reason}")]
    NotAnIdentity {
        /// `agent key file '<path>'` or `the key text`.
        origin: String,
        /// What is wrong, without quoting the file.
        reason: String,
    },

    /// Group or other users have access to the agent key file.
    #[error(
        "agent key file '{}' is accessible by other users (mode {mode:04o}); the agent's secret \
         key must be readable by its owner only: run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    IdentityPermissionsTooOpen { path: PathBuf, mode: u32 },

    /// `write_identity` was asked not to overwrite and the file exists.
    #[error(
        "agent key file '{}' already exists; refusing to overwrite it, since values encrypted to \
         its public key could no longer be decrypted (choose another path, or force the overwrite)",
        path.display()
    )]
    IdentityExists { path: PathBuf },

    /// The agent key file could not be written.
    #[error("cannot write agent key file '{}': {error}", path.display())]
    IdentityWrite {
        path: PathBuf,
        error: std::io::Error,
    },

    /// A public key given to encrypt to is not an age X25519 recipient.
    #[error("invalid public key: {reason}")]
    InvalidRecipient { reason: String },

    /// The value does not start with [`crate::ENCRYPTED_PREFIX`].
    #[error(
        "the value is not an encrypted value (encrypted values start with 'age:'); encrypt it \
         with `idlink protect`"
    )]
    NotEncrypted,

    /// The text after the prefix is not base64.
    #[error(
        "the encrypted value is damaged: the text after 'age:' is not base64 (was it cut or \
         edited?); encrypt the value again with `idlink protect`"
    )]
    NotBase64,

    /// The ciphertext ends too early.
    #[error(
        "the encrypted value is truncated (it ends before the end of its age header); copy the \
         whole value, or encrypt it again with `idlink protect`"
    )]
    Truncated,

    /// The ciphertext is not valid age data or fails authentication.
    #[error(
        "the encrypted value is corrupt: {detail}; encrypt the value again with `idlink protect`"
    )]
    Corrupt { detail: &'static str },

    /// The value was encrypted to another public key.
    #[error(
        "not encrypted to this agent's key: it was encrypted for another recipient (or its header \
         was damaged); this agent's public key is {agent_recipient}: encrypt the value again with \
         `idlink protect --recipient {agent_recipient}`"
    )]
    WrongKey { agent_recipient: String },

    /// The value decrypted, but is not UTF-8 text.
    #[error("the encrypted value decrypts to bytes that are not UTF-8 text")]
    NotUtf8,

    /// age could not encrypt (not expected with an in-memory buffer).
    #[error("encryption failed: {reason}")]
    Encrypt { reason: String },

    /// The settings text given to `protect_jsonc_text` is not JSON.
    #[error("the settings file is not valid JSON at line {line}, column {column}: {kind}")]
    InvalidJson {
        line: usize,
        column: usize,
        kind: String,
    },

    /// The encrypted settings file has another shape where a secured value must be written.
    #[error(
        "the encrypted settings file holds something else than {expected} at '{path}', where a \
         secured value must be written; fix that part of the file by hand"
    )]
    Shape {
        path: String,
        expected: &'static str,
    },
}
