//! Robot Framework (PyPI's `robotframework`) for the script packages' tests, in a virtual
//! environment under a cache folder: `$IDLINK_ROBOT_VENV`, else `/var/cache/idlink/robot-venv`.
//! When it lacks `bin/robot`, [`robot_bin`] creates it (`python3 -m venv`, then `pip install
//! robotframework`, once even when test processes start together); when that fails, the error
//! names the install line. Tests never skip for want of it.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::LaunchError;
use crate::process;

/// The default virtual environment.
pub const DEFAULT_VENV: &str = "/var/cache/idlink/robot-venv";
/// The package installed.
pub const PACKAGE: &str = "robotframework";

/// The virtual environment in use.
pub fn venv() -> PathBuf {
    std::env::var_os("IDLINK_ROBOT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VENV))
}

/// The line that installs Robot Framework by hand.
pub fn install_line() -> String {
    let v = venv();
    format!(
        "python3 -m venv {0} && {0}/bin/pip install '{PACKAGE}'",
        v.display()
    )
}

/// The folder holding the `robot` executable, installed first when missing.
pub fn robot_bin() -> Result<PathBuf, LaunchError> {
    let venv = venv();
    let bin = venv.join("bin");
    let robot = bin.join("robot");
    if robot.is_file() {
        return Ok(bin);
    }
    let fail = |why: String| {
        LaunchError(format!(
            "robot is not installed in {} and installing it failed ({why}); install it with: {}",
            venv.display(),
            install_line()
        ))
    };
    let python = process::find_binary(&["python3"], &[], "apt-get install -y python3 python3-venv")
        .map_err(|e| fail(e.0))?;
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    }
    // A lock folder: the first process installs, the others wait for it.
    let lock = venv.with_extension("lock");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match std::fs::create_dir(&lock) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if robot.is_file() {
                    return Ok(bin);
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
    let result = (|| {
        if robot.is_file() {
            return Ok(());
        }
        process::run(
            Command::new(&python).arg("-m").arg("venv").arg(&venv),
            "python3 -m venv",
        )?;
        process::run(
            Command::new(bin.join("pip"))
                .args(["install", "--quiet", PACKAGE])
                .env("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
            "pip install robotframework",
        )?;
        Ok::<(), LaunchError>(())
    })();
    let _ = std::fs::remove_dir(&lock);
    result.map_err(|e| fail(e.0))?;
    if robot.is_file() {
        Ok(bin)
    } else {
        Err(fail(format!("{} is still missing", robot.display())))
    }
}
