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

/// Copies a folder recursively (to edit an example in a temp dir).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// A temporary folder holding the quickstart's configuration as `conf`: `idlink` run from it
/// finds it.
pub fn quickstart() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &repo_root().join("examples/quickstart"),
        &dir.path().join("conf"),
    );
    dir
}

/// Runs `idlink` in `dir` with extra environment variables; returns the exit code and
/// stdout followed by stderr.
pub fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = idlink();
    cmd.current_dir(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The quickstart in a temporary folder, its Directory connection pointed at `slapd` with the
/// directory's credentials protected to an agent key of its own (`agent.key` in the folder):
/// the folder, and the environment every `idlink` run there needs.
pub fn quickstart_with_directory(
    slapd: &idlink_test_support::SlapdServer,
) -> (tempfile::TempDir, Vec<(&'static str, String)>) {
    use idlink_test_support::slapd::ADMIN_DN;
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("conf");
    copy_dir(&repo_root().join("examples/quickstart"), &conf);
    let (code, out) = run(dir.path(), &["keygen", "--out", "agent.key"], &[]);
    assert_eq!(code, 0, "{out}");
    let pubkey = out
        .lines()
        .find(|l| l.starts_with("age1"))
        .expect("public key")
        .to_string();
    let secrets = format!(
        r#"{{"Connections": {{"DirectoryLDAP": {{"Servers": [{{"Login": "{ADMIN_DN}", "Password": "{}"}}]}}}}}}"#,
        slapd.admin_password()
    );
    std::fs::write(dir.path().join("secrets.json"), secrets).expect("write");
    std::fs::remove_file(conf.join("appsettings.encrypted.agent.json")).expect("rm");
    let (code, out) = run(
        dir.path(),
        &[
            "protect",
            "--recipient",
            &pubkey,
            "--file",
            "secrets.json",
            "--out",
            "conf/appsettings.encrypted.agent.json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    std::fs::remove_file(dir.path().join("secrets.json")).expect("rm");
    let env = vec![
        ("IDLINK_AGENT_KEY", "agent.key".to_string()),
        (
            "IDLINK__Connections__DirectoryLDAP__Servers__0__Server",
            slapd.url(),
        ),
    ];
    (dir, env)
}
