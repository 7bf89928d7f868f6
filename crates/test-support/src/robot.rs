//! Robot Framework (PyPI's `robotframework`) for the script packages' tests, in a virtual
//! environment under a cache folder: `$IDLINK_ROBOT_VENV`, else `/var/cache/idlink/robot-venv`.
//! When it lacks `bin/robot`, [`robot_bin`] creates it (`python3 -m venv`, then `pip install
//! robotframework`, once even when test processes start together); when that fails, the error
//! names the install line. Tests never skip for want of it.

use std::path::PathBuf;

use crate::LaunchError;

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
    package().install_line()
}

fn package() -> crate::venv::PyPackage<'static> {
    crate::venv::PyPackage {
        venv: venv(),
        package: PACKAGE,
        executable: "robot",
    }
}

/// The folder holding the `robot` executable, installed first when missing.
pub fn robot_bin() -> Result<PathBuf, LaunchError> {
    let robot = package().ensure()?;
    robot
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| LaunchError(format!("{} has no folder", robot.display())))
}
