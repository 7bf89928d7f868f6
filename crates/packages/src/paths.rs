//! `SourcesRootPaths`: file-based packages read only below these folders. Paths are
//! canonicalized first, so `..` and symbolic links that leave the roots are refused.

use std::path::{Path, PathBuf};

use crate::api::PackageError;

/// The canonical source roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRoots {
    roots: Vec<PathBuf>,
    /// Roots as configured, for messages (including those that do not exist).
    shown: Vec<String>,
    /// Whether the programs that script packages run must lie under the roots too
    /// ([`SourceRoots::confining_programs`]).
    programs: bool,
}

impl SourceRoots {
    /// Roots from settings, relative ones resolved against `base_dir`. Roots that do not exist
    /// allow nothing (and are named in refusals).
    pub fn new<S: AsRef<str>>(base_dir: &Path, roots: &[S]) -> Self {
        let mut out = SourceRoots::default();
        for r in roots {
            let p = base_dir.join(r.as_ref());
            out.shown.push(p.display().to_string());
            if let Ok(c) = p.canonicalize() {
                out.roots.push(c);
            }
        }
        out
    }

    /// These roots, which programs must lie under too: a remote agent started with its own
    /// roots (`idlink agent --sources-root`) runs only scripts found there, so a server that
    /// sends it a configuration cannot make it run a program from anywhere else.
    pub fn confining_programs(mut self) -> Self {
        self.programs = true;
        self
    }

    /// Where program `path` (a script's path, resolved against the settings folder) runs
    /// from: the path as it is, or, when programs are confined
    /// ([`SourceRoots::confining_programs`]), its canonical form once checked to lie under a
    /// root.
    pub fn program(&self, path: &Path) -> Result<PathBuf, PackageError> {
        if !self.programs {
            return Ok(path.to_path_buf());
        }
        self.resolve(path).map_err(|e| match e {
            PackageError::OutsideRoots { path, roots, why } => PackageError::OutsideRoots {
                path,
                roots,
                why: format!(
                    "{why}; this agent runs only scripts under its own roots (idlink agent --sources-root)"
                ),
            },
            other => other,
        })
    }

    /// The first root as configured (resolved against the settings folder, not canonical):
    /// where packages put a default output folder.
    pub fn first(&self) -> Option<PathBuf> {
        self.shown.first().map(PathBuf::from)
    }

    pub fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }

    fn list(&self) -> String {
        if self.shown.is_empty() {
            "none configured".to_string()
        } else {
            self.shown.join(", ")
        }
    }

    /// The canonical form of `path`, if it lies under a root.
    pub fn resolve(&self, path: &Path) -> Result<PathBuf, PackageError> {
        let canonical = path
            .canonicalize()
            .map_err(|e| PackageError::io("open", path, e))?;
        self.check(path, &canonical)?;
        Ok(canonical)
    }

    /// A folder to write into, which may not exist yet: its nearest existing ancestor is
    /// canonicalized and checked, so `..` and links cannot lead out. Returns the folder as it
    /// will be once created (nothing is created).
    pub fn check_for_write(&self, folder: &Path) -> Result<PathBuf, PackageError> {
        let mut existing = folder;
        let mut rest = Vec::new();
        let canonical = loop {
            match existing.canonicalize() {
                Ok(c) => break c,
                Err(_) => {
                    let (Some(parent), Some(name)) = (existing.parent(), existing.file_name())
                    else {
                        return Err(PackageError::io(
                            "resolve",
                            folder,
                            std::io::Error::from(std::io::ErrorKind::NotFound),
                        ));
                    };
                    if name == ".." || name == "." {
                        return Err(PackageError::OutsideRoots {
                            path: folder.to_path_buf(),
                            roots: self.list(),
                            why: "'..' in a folder that does not exist yet cannot be checked"
                                .into(),
                        });
                    }
                    rest.push(name.to_os_string());
                    existing = parent;
                }
            }
        };
        let target = rest.iter().rev().fold(canonical.clone(), |p, n| p.join(n));
        self.check(folder, &target)?;
        Ok(target)
    }

    /// [`SourceRoots::check_for_write`], then creates the folder.
    pub fn create_dir(&self, folder: &Path) -> Result<PathBuf, PackageError> {
        let target = self.check_for_write(folder)?;
        std::fs::create_dir_all(&target).map_err(|e| PackageError::io("create", &target, e))?;
        // Re-check: a link created meanwhile must not lead out.
        self.resolve(&target)
    }

    /// Checks a canonical path (e.g. a folder to search for files) against the roots.
    pub fn check(&self, shown: &Path, canonical: &Path) -> Result<(), PackageError> {
        if self.roots.iter().any(|r| canonical.starts_with(r)) {
            return Ok(());
        }
        let why = if self.shown.is_empty() {
            "add the folder that holds it to SourcesRootPaths in appsettings.agent.json".to_string()
        } else if canonical != shown {
            format!(
                "it resolves to '{}', outside every root",
                canonical.display()
            )
        } else {
            "it is outside every root".to_string()
        };
        Err(PackageError::OutsideRoots {
            path: shown.to_path_buf(),
            roots: self.list(),
            why,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_and_symlinks_cannot_leave_the_roots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("data");
        std::fs::create_dir(&root).expect("mkdir");
        std::fs::write(root.join("ok.csv"), "a\n").expect("write");
        std::fs::write(dir.path().join("secret.csv"), "a\n").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret.csv"), root.join("link.csv"))
            .expect("symlink");
        let roots = SourceRoots::new(dir.path(), &["data"]);
        assert!(roots.resolve(&root.join("ok.csv")).is_ok());
        let e = roots
            .resolve(&root.join("../secret.csv"))
            .expect_err("outside");
        assert!(e.to_string().contains("outside SourcesRootPaths"), "{e}");
        #[cfg(unix)]
        assert!(roots.resolve(&root.join("link.csv")).is_err());
        let out = roots
            .create_dir(&root.join("orders/new"))
            .expect("creates under the root");
        assert!(out.ends_with("data/orders/new") && out.is_dir());
        assert!(
            roots
                .check_for_write(&dir.path().join("elsewhere/x"))
                .is_err()
        );
        assert!(
            roots
                .check_for_write(&root.join("missing/../../x"))
                .is_err()
        );
        // Programs run from anywhere, unless confined like a remote agent's.
        let elsewhere = dir.path().join("secret.csv");
        assert_eq!(roots.program(&elsewhere).expect("anywhere"), elsewhere);
        let confined = roots.clone().confining_programs();
        let e = confined.program(&elsewhere).expect_err("outside");
        assert!(e.to_string().contains("--sources-root"), "{e}");
        #[cfg(unix)]
        assert!(confined.program(&root.join("link.csv")).is_err());
        assert!(
            confined
                .program(&root.join("ok.csv"))
                .expect("under a root")
                .ends_with("data/ok.csv")
        );
        let none = SourceRoots::new(dir.path(), &[] as &[&str]);
        assert!(
            none.resolve(&root.join("ok.csv"))
                .expect_err("no roots")
                .to_string()
                .contains("none configured")
        );
    }
}
