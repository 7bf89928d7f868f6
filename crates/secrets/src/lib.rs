//! Secured values for idlink (SPEC §2.3 and §8).
//!
//! - [`Secret`]: a secret string that never prints (`**REDACTED**` in `Debug`, `Display` and
//!   serde output), is zeroized on drop and is read only through [`Secret::expose_secret`].
//! - The agent's key: an [age](https://age-encryption.org) X25519 identity, written by
//!   [`write_identity`] (mode 0600) and read by [`load_identity`]; its public key
//!   ([`AgentRecipient`], `age1...`) is what `idlink protect` encrypts to.
//! - Values: [`encrypt_value`] gives a one-line `age:<base64>` string for JSON settings files,
//!   [`is_encrypted`] tells it from a plain value, [`decrypt_value`] gives back a [`Secret`].
//! - [`protect_json`] and [`protect_jsonc_text`] encrypt the secured settings of an
//!   appsettings document; [`redact`] scrubs known secret values out of any text.
//!
//! No error of this crate ever contains a plaintext, a ciphertext or a secret key.

mod error;
mod keys;
mod protect;
mod redact;
mod redactor;
mod secret;
mod value;

pub use error::SecretError;
pub use keys::{
    AgentIdentity, AgentRecipient, LoadedIdentity, PermissionCheck, generate_identity,
    load_identity, load_identity_with, parse_identity, parse_recipient, write_identity,
};
pub use protect::{
    JsonPath, MergeReport, PathSegment, ProtectReport, parse_path, path_to_string,
    protect_into_encrypted, protect_json, protect_jsonc_text,
};
pub use redact::{MIN_REDACTED_LEN, redact};
pub use redactor::Redactor;
pub use secret::{REDACTED, Secret};
pub use value::{
    Binding, ENCRYPTED_PREFIX, decrypt_bound, decrypt_value, encrypt_bound, encrypt_value,
    is_encrypted,
};
