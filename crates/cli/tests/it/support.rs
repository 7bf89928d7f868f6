//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// `idlink` with a clean environment for `IDLINK__` overrides, run from the repository root.
pub fn idlink() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("idlink").expect("idlink binary");
    for (k, _) in std::env::vars() {
        if k.starts_with("IDLINK") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(repo_root());
    cmd
}
