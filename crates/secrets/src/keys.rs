//! The agent's age X25519 key: generate, write (mode 0600), load, and parse public keys.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age::x25519;
use zeroize::Zeroizing;

use crate::error::SecretError;
use crate::secret::{REDACTED, Secret};

/// An agent key file is a few hundred bytes; anything much larger is the wrong file.
const MAX_IDENTITY_FILE_LEN: u64 = 64 * 1024;

/// The agent's private key (one or more age X25519 identities).
///
/// The first key is the agent's current key: its public key is [`AgentIdentity::recipient`].
/// Further keys (more `AGE-SECRET-KEY-1...` lines in the file) are kept so values encrypted to a
/// previous key still decrypt during a key rotation. `Debug` shows the public key only.
#[derive(Clone)]
pub struct AgentIdentity {
    /// Never empty.
    keys: Vec<x25519::Identity>,
}

impl AgentIdentity {
    /// A new random key.
    pub fn generate() -> Self {
        AgentIdentity {
            keys: vec![x25519::Identity::generate()],
        }
    }

    /// The public key of the agent's current key: what `idlink protect` encrypts to.
    pub fn recipient(&self) -> AgentRecipient {
        AgentRecipient(self.primary().to_public())
    }

    /// The public keys of every key held (current first).
    pub fn recipients(&self) -> Vec<AgentRecipient> {
        self.keys
            .iter()
            .map(|k| AgentRecipient(k.to_public()))
            .collect()
    }

    /// The text of an age identity file for this key, as written by [`write_identity`]
    /// (compatible with `age -d -i FILE`).
    pub fn to_identity_file_text(&self) -> Secret {
        let mut text = Zeroizing::new(String::from(
            "# idlink agent key: keep this file secret (mode 0600).\n\
             # Secured settings are encrypted to its public key; losing it loses them.\n",
        ));
        for key in &self.keys {
            text.push_str("# public key: ");
            text.push_str(&key.to_public().to_string());
            text.push('\n');
            text.push_str(key.to_string().expose_secret());
            text.push('\n');
        }
        Secret::new(std::mem::take(&mut *text))
    }

    pub(crate) fn keys(&self) -> &[x25519::Identity] {
        &self.keys
    }

    fn primary(&self) -> &x25519::Identity {
        // `keys` is never empty: every constructor puts at least one key in it.
        &self.keys[0]
    }
}

impl fmt::Debug for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentIdentity")
            .field("recipient", &self.recipient())
            .field("keys", &self.keys.len())
            .field("secret", &REDACTED)
            .finish()
    }
}

/// A public key (`age1...`) that values are encrypted to.
///
/// `Display` writes the `age1...` string; [`parse_recipient`] (or `str::parse`) reads it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AgentRecipient(x25519::Recipient);

impl AgentRecipient {
    pub(crate) fn inner(&self) -> &x25519::Recipient {
        &self.0
    }
}

impl fmt::Display for AgentRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for AgentRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentRecipient({})", self.0)
    }
}

impl FromStr for AgentRecipient {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, SecretError> {
        parse_recipient(s)
    }
}

/// A new random agent key and its public key (`age1...`).
pub fn generate_identity() -> (AgentIdentity, AgentRecipient) {
    let identity = AgentIdentity::generate();
    let recipient = identity.recipient();
    (identity, recipient)
}

/// Parses a public key (`age1...`, surrounding whitespace ignored).
///
/// The error never quotes the input: a secret key pasted by mistake is not echoed.
pub fn parse_recipient(s: &str) -> Result<AgentRecipient, SecretError> {
    let s = s.trim();
    let reason = if s.is_empty() {
        "it is empty; pass the agent's public key (age1..., printed by `idlink keygen`)"
    } else if s.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        "this is a secret key, not a public key; pass the public key (age1..., printed by \
         `idlink keygen` and written in the key file's '# public key:' line), and keep the secret \
         key off command lines"
    } else if s.starts_with("ssh-") {
        "SSH public keys are not supported; pass an age public key (age1..., printed by `idlink keygen`)"
    } else if !s.starts_with("age1") {
        "a public key starts with 'age1' (as printed by `idlink keygen`)"
    } else {
        match x25519::Recipient::from_str(s) {
            Ok(r) => return Ok(AgentRecipient(r)),
            Err(e) => {
                return Err(SecretError::InvalidRecipient {
                    reason: format!(
                        "it starts with 'age1' but is not a valid age X25519 public key ({e}): \
                         it may be cut or mistyped, or a plugin key; copy the whole key printed \
                         by `idlink keygen`"
                    ),
                });
            }
        }
    };
    Err(SecretError::InvalidRecipient {
        reason: reason.to_string(),
    })
}

/// Parses the text of an age identity file: `#` comment lines, blank lines, and one or more
/// `AGE-SECRET-KEY-1...` lines (the first is the agent's current key).
pub fn parse_identity(text: &str) -> Result<AgentIdentity, SecretError> {
    parse_identity_from(text, || "the key text".to_string())
}

fn parse_identity_from(
    text: &str,
    origin: impl Fn() -> String,
) -> Result<AgentIdentity, SecretError> {
    let fail = |reason: String| SecretError::NotAnIdentity {
        origin: origin(),
        reason,
    };
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let n = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("AGE-SECRET-KEY-1") {
            let key = x25519::Identity::from_str(line).map_err(|e| {
                fail(format!(
                    "line {n} starts like an age secret key but is damaged ({e})"
                ))
            })?;
            keys.push(key);
        } else if line.starts_with("age1") {
            return Err(fail(format!(
                "line {n} is a public key (age1...), not a secret key; the agent needs the secret \
                 key file written by `idlink keygen`"
            )));
        } else if line.starts_with("AGE-PLUGIN-") || line.starts_with("AGE-SECRET-KEY-") {
            return Err(fail(format!(
                "line {n} is a plugin or post-quantum age key; only X25519 keys \
                 (AGE-SECRET-KEY-1...) are supported"
            )));
        } else if line.starts_with("-----BEGIN") {
            return Err(fail(
                "it is a PEM block (an SSH/TLS key or an armored age file); only age X25519 \
                 identity files (AGE-SECRET-KEY-1... lines) are supported"
                    .to_string(),
            ));
        } else {
            return Err(fail(format!(
                "line {n} is not an age secret key (expected AGE-SECRET-KEY-1...), a comment \
                 (#...) or a blank line"
            )));
        }
    }
    if keys.is_empty() {
        return Err(fail(
            "it holds no AGE-SECRET-KEY-1... line; create a key file with `idlink keygen`"
                .to_string(),
        ));
    }
    Ok(AgentIdentity { keys })
}

/// What [`load_identity_with`] does when group or other users have access to the key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PermissionCheck {
    /// Refuse to load it ([`SecretError::IdentityPermissionsTooOpen`]), like OpenSSH does.
    #[default]
    Refuse,
    /// Load it and return the same message as a warning (e.g. for key files mounted by a
    /// container platform with fixed modes).
    Warn,
}

/// An identity loaded with [`load_identity_with`], and the warning about its file, if any.
#[derive(Debug)]
pub struct LoadedIdentity {
    pub identity: AgentIdentity,
    /// Set when the file's permissions are too open and the check was [`PermissionCheck::Warn`].
    pub warning: Option<String>,
}

/// Loads the agent key file, refusing a file that group or other users can access
/// (any of the mode bits 0o077 set; Unix only). See [`load_identity_with`] to warn instead.
pub fn load_identity(path: &Path) -> Result<AgentIdentity, SecretError> {
    load_identity_with(path, PermissionCheck::Refuse).map(|l| l.identity)
}

/// Loads the agent key file: [`SecretError::IdentityNotFound`] when it is missing,
/// [`SecretError::IdentityRead`] when it cannot be read, [`SecretError::NotAnIdentity`] when
/// it is not an age X25519 identity file, and per `permissions` when its mode is too open.
pub fn load_identity_with(
    path: &Path,
    permissions: PermissionCheck,
) -> Result<LoadedIdentity, SecretError> {
    let read_error = |error: io::Error| SecretError::IdentityRead {
        path: path.to_path_buf(),
        error,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SecretError::IdentityNotFound {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(read_error(e)),
    };
    // Checked on the open file, so the file checked is the file read.
    let meta = file.metadata().map_err(read_error)?;
    if meta.is_dir() {
        return Err(read_error(io::Error::other(
            "it is a directory; EncryptionIdentity names the key file itself",
        )));
    }
    let warning = match open_mode(&meta) {
        Some(mode) => {
            let err = SecretError::IdentityPermissionsTooOpen {
                path: path.to_path_buf(),
                mode,
            };
            match permissions {
                PermissionCheck::Refuse => return Err(err),
                PermissionCheck::Warn => Some(err.to_string()),
            }
        }
        None => None,
    };
    let origin = || format!("agent key file '{}'", path.display());
    if meta.len() > MAX_IDENTITY_FILE_LEN {
        return Err(SecretError::NotAnIdentity {
            origin: origin(),
            reason: format!(
                "it is {} bytes long, far more than an age key file (did EncryptionIdentity name the wrong file?)",
                meta.len()
            ),
        });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
    file.take(MAX_IDENTITY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| SecretError::NotAnIdentity {
        origin: origin(),
        reason:
            "it is not text (age key files are ASCII); did EncryptionIdentity name the wrong file?"
                .to_string(),
    })?;
    let identity = parse_identity_from(text, origin)?;
    Ok(LoadedIdentity { identity, warning })
}

/// The file's mode when group or other have any access to it.
#[cfg(unix)]
fn open_mode(meta: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn open_mode(_meta: &fs::Metadata) -> Option<u32> {
    None
}

/// Writes `identity` as an age identity file at `path`, readable and writable by its owner
/// only (mode 0600), and returns its public key (`Display` gives the `age1...` string).
///
/// Without `overwrite`, an existing file is never touched ([`SecretError::IdentityExists`]):
/// the file is created with `O_EXCL`. With `overwrite`, the key is written to a new file in the
/// same directory and renamed over `path`, so a failure leaves the old key in place.
pub fn write_identity(
    path: &Path,
    identity: &AgentIdentity,
    overwrite: bool,
) -> Result<AgentRecipient, SecretError> {
    let text = identity.to_identity_file_text();
    let write_error = |error: io::Error| SecretError::IdentityWrite {
        path: path.to_path_buf(),
        error,
    };
    if !overwrite {
        let mut file = match create_private(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(SecretError::IdentityExists {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(write_error(e)),
        };
        if let Err(e) = fill(&mut file, &text) {
            drop(file);
            let _ = fs::remove_file(path);
            return Err(write_error(e));
        }
    } else {
        let temp = temp_path(path);
        let result = create_private(&temp)
            .and_then(|mut file| fill(&mut file, &text))
            .and_then(|()| fs::rename(&temp, path));
        if let Err(e) = result {
            let _ = fs::remove_file(&temp);
            return Err(write_error(e));
        }
    }
    sync_parent(path);
    Ok(identity.recipient())
}

/// Creates a new file (failing if it exists) with mode 0600.
fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    // The umask can only remove bits; set the exact mode in case it removed the owner's.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = file.set_permissions(fs::Permissions::from_mode(0o600)) {
            drop(file);
            let _ = fs::remove_file(path);
            return Err(e);
        }
    }
    Ok(file)
}

fn fill(file: &mut File, text: &Secret) -> io::Result<()> {
    file.write_all(text.expose_secret().as_bytes())?;
    file.sync_all()
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "agent.key".to_string());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Best effort: makes the new directory entry durable.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_text_round_trips() {
        let (id, r) = generate_identity();
        let text = id.to_identity_file_text();
        assert!(
            text.expose_secret()
                .contains(&format!("# public key: {r}\n"))
        );
        let back = parse_identity(text.expose_secret()).unwrap();
        assert_eq!(back.recipient(), r);
    }

    #[test]
    fn debug_shows_public_key_only() {
        let id = AgentIdentity::generate();
        let dbg = format!("{id:?}");
        let secret = id.to_identity_file_text();
        let key_line = secret
            .expose_secret()
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .unwrap()
            .to_string();
        assert!(!dbg.contains(&key_line), "{dbg}");
        assert!(
            !dbg.to_ascii_uppercase().contains("AGE-SECRET-KEY"),
            "{dbg}"
        );
        assert!(dbg.contains(&id.recipient().to_string()), "{dbg}");
    }

    #[test]
    fn recipient_errors_do_not_echo() {
        let id = AgentIdentity::generate();
        let sk = id.to_identity_file_text();
        let key_line = sk
            .expose_secret()
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .unwrap();
        let e = parse_recipient(key_line).unwrap_err().to_string();
        assert!(e.contains("secret key, not a public key"), "{e}");
        assert!(!e.contains(key_line), "{e}");

        for bad in [
            "",
            "hunter2password",
            "age1qqqqqqqqbroken",
            "ssh-ed25519 AAAA",
        ] {
            let e = parse_recipient(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid public key: "), "{e}");
            if !bad.is_empty() {
                assert!(!e.contains(bad), "{e}");
            }
        }
        let r = id.recipient().to_string();
        assert_eq!(
            parse_recipient(&format!("  {r}\n")).unwrap(),
            id.recipient()
        );
        assert_eq!(r.parse::<AgentRecipient>().unwrap(), id.recipient());
    }

    #[test]
    fn several_keys_for_rotation() {
        let a = AgentIdentity::generate();
        let b = AgentIdentity::generate();
        let text = format!(
            "{}\n{}",
            a.to_identity_file_text().expose_secret(),
            b.to_identity_file_text().expose_secret()
        );
        let both = parse_identity(&text).unwrap();
        assert_eq!(both.recipient(), a.recipient());
        assert_eq!(both.recipients(), vec![a.recipient(), b.recipient()]);
    }

    #[test]
    fn identity_parse_errors() {
        let r = AgentIdentity::generate().recipient().to_string();
        let e = parse_identity(&format!("# public key: x\n{r}\n")).unwrap_err();
        assert!(e.to_string().contains("line 2 is a public key"), "{e}");
        let e = parse_identity("# nothing\n\n").unwrap_err();
        assert!(e.to_string().contains("no AGE-SECRET-KEY-1"), "{e}");
        let e = parse_identity("password=hunter2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1 is not an age secret key"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse_identity("AGE-SECRET-KEY-1QQQQ\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("damaged"), "{e}");
        assert!(!e.contains("AGE-SECRET-KEY-1QQQQ"), "{e}");
        let e = parse_identity("-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap_err();
        assert!(e.to_string().contains("PEM"), "{e}");
    }
}
