//! A PyPI package installed into a virtual environment under a cache folder, once even when
//! test processes start together (a lock folder beside the environment: the first process
//! installs, the others wait for it). Tests never skip for want of it: a failure names the
//! install line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::LaunchError;
use crate::process;

/// What to install and where.
pub(crate) struct PyPackage<'a> {
    /// The virtual environment.
    pub venv: PathBuf,
    /// What `pip install` is given (`scim2-server[cursor]`, `robotframework`).
    pub package: &'a str,
    /// The executable under `bin/` that shows the package is there.
    pub executable: &'a str,
}

impl PyPackage<'_> {
    /// The line that installs it by hand.
    pub fn install_line(&self) -> String {
        format!(
            "python3 -m venv {0} && {0}/bin/pip install '{1}'",
            self.venv.display(),
            self.package
        )
    }

    /// The path of the executable, installing the package first when it is missing.
    pub fn ensure(&self) -> Result<PathBuf, LaunchError> {
        let venv = &self.venv;
        let binary = venv.join("bin").join(self.executable);
        if binary.is_file() {
            return Ok(binary);
        }
        let fail = |why: String| {
            LaunchError(format!(
                "{} is not installed in {} and installing it failed ({why}); install it with: {}",
                self.executable,
                venv.display(),
                self.install_line()
            ))
        };
        let python =
            process::find_binary(&["python3"], &[], "apt-get install -y python3 python3-venv")
                .map_err(|e| fail(e.0))?;
        if let Some(parent) = venv.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
        }
        let lock = venv.with_extension("lock");
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match std::fs::create_dir(&lock) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if binary.is_file() {
                        return Ok(binary);
                    }
                    if Instant::now() > deadline {
                        return Err(fail(format!(
                            "{} has been locked for 10 minutes; remove it if no install runs",
                            lock.display()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(fail(format!("cannot create {}: {e}", lock.display()))),
            }
        }
        let result = install(&python, venv, self.package, &binary);
        let _ = std::fs::remove_dir(&lock);
        result.map_err(|e| fail(e.0))?;
        if binary.is_file() {
            Ok(binary)
        } else {
            Err(fail(format!("{} is still missing", binary.display())))
        }
    }
}

fn install(python: &Path, venv: &Path, package: &str, binary: &Path) -> Result<(), LaunchError> {
    if binary.is_file() {
        return Ok(());
    }
    process::run(
        Command::new(python).arg("-m").arg("venv").arg(venv),
        "python3 -m venv",
    )?;
    process::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", package])
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        &format!("pip install {package}"),
    )
    .map(|_| ())
}
