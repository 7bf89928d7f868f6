//! Launchers for the real servers idlink's tests use (PostgreSQL, MariaDB, slapd, scim2-server).
//!
//! Each launcher starts a PRIVATE server on a free `127.0.0.1` port, in a temporary folder,
//! and stops it when dropped. A missing server binary is a failure that names the install
//! line, never a silent skip.
//!
//! # No orphans, even from a `static`
//! Test binaries share one server through a `static` (`LazyLock`), and statics are never
//! dropped. So every server runs under a small `sh` watchdog whose standard input is a pipe
//! held by this process: when the pipe closes (on [`Drop`], or because the test process ended
//! in any way, even killed), the watchdog signals the server, waits for it, and removes the
//! temporary folder.
//!
//! # Root
//! PostgreSQL refuses to run as root and MariaDB wants its own user: when this process is root,
//! the watchdog and the server run as `postgres` / `mysql` (set on the child process, like
//! `runuser -u postgres --` but without an intermediate process that would stand between the
//! signal and the server).

pub mod fake_pg;
pub mod hostile;
mod mariadb;
mod postgres;
mod process;
pub mod robot;
pub mod scim;
pub mod slapd;
mod venv;

pub use fake_pg::{FakePgServer, Hostility};
pub use mariadb::MariaDbServer;
pub use postgres::{PostgresServer, make_certificates};
pub use scim::{Fault, FaultProxy, ScimOptions, ScimServer};
pub use slapd::{SlapdOptions, SlapdServer};

/// Why a server could not be started or a setup command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchError(pub String);

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LaunchError {}

/// A port nobody listens on right now (bound on `127.0.0.1:0`, then released).
pub fn free_port() -> Result<u16, LaunchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| LaunchError(format!("cannot bind 127.0.0.1:0 to find a free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| LaunchError(format!("cannot read the free port: {e}")))
}

/// A port that refuses connections: free, and nothing started on it. For "unreachable" tests.
pub fn closed_port() -> u16 {
    free_port().unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone(dir: &std::path::Path, port: u16) {
        assert!(!dir.exists(), "{} is left behind", dir.display());
        assert!(process::tcp_open(port).is_err(), "port {port} still open");
    }

    #[test]
    fn postgres_starts_answers_and_stops_clean() {
        let pg = PostgresServer::start();
        let (dir, port) = (pg.socket_dir().to_path_buf(), pg.port());
        assert_eq!(
            pg.execute("postgres", "SELECT 40 + 2;")
                .expect("sql")
                .trim(),
            "42"
        );
        pg.create_database("launcher_db").expect("create database");
        pg.create_user("launcher_user", "pw-1")
            .expect("create user");
        assert!(
            pg.url("launcher_db")
                .ends_with(&format!(":{port}/launcher_db"))
        );
        let e = pg
            .execute("postgres", "SELEC 1;")
            .expect_err("syntax error");
        assert!(e.0.contains("syntax error"), "{e}");
        drop(pg);
        gone(&dir, port);
    }

    #[test]
    fn mariadb_starts_answers_and_stops_clean() {
        let db = MariaDbServer::start();
        let (dir, port) = (db.socket(), db.port());
        let dir = dir.parent().expect("socket dir").to_path_buf();
        assert_eq!(
            db.execute("mysql", "SELECT 40 + 2;").expect("sql").trim(),
            "42"
        );
        db.create_database("launcher_db").expect("create database");
        db.create_user("launcher_user", "pw-1")
            .expect("create user");
        assert!(db.url("launcher_db").starts_with("mysql://idlink:"));
        drop(db);
        gone(&dir, port);
    }

    #[test]
    fn a_missing_binary_names_the_install_line() {
        let e = process::find_binary(&["idlink-no-such-server"], &[], "apt-get install -y x")
            .expect_err("missing");
        assert!(
            e.0.ends_with("install it with: apt-get install -y x"),
            "{e}"
        );
    }

    #[test]
    fn setup_helpers_refuse_what_would_break_a_statement() {
        assert!(process::check_identifier("ok_name1").is_ok());
        assert!(process::check_identifier("x; DROP").is_err());
        assert!(process::check_password("it's").is_err());
    }
}
