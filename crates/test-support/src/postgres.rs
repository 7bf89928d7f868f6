//! A private PostgreSQL server: `initdb` in a temporary folder, `postgres` on a free port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::LaunchError;
use crate::process::{self, RunAs, Watched};

const INSTALL: &str = "apt-get install -y postgresql";

/// A PostgreSQL server of its own, stopped (and its folder removed) when dropped.
///
/// Local (socket) connections are trusted, TCP connections need a password: the superuser
/// `postgres` has [`PostgresServer::password`], and [`PostgresServer::create_user`] adds others.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    password: String,
    bin: PathBuf,
    run_as: RunAs,
    server: Watched,
    /// With TLS: the authority that signed the server's certificate.
    ca: Option<PathBuf>,
}

impl PostgresServer {
    /// Starts a server, panicking with the reason (and the install line when PostgreSQL is
    /// missing): for tests.
    pub fn start() -> PostgresServer {
        match PostgresServer::try_start() {
            Ok(s) => s,
            Err(e) => panic!("cannot start PostgreSQL: {e}"),
        }
    }

    /// Starts a server on a free port; retries on another port when the chosen one was taken
    /// in between.
    pub fn try_start() -> Result<PostgresServer, LaunchError> {
        PostgresServer::try_start_with(false)
    }

    /// Starts a server that also accepts TLS (`ssl=on`), with a certificate for `127.0.0.1` and
    /// `localhost` signed by a throwaway authority ([`PostgresServer::ca_file`]), both made with
    /// the `openssl` command. Panics with the reason: for tests.
    pub fn start_tls() -> PostgresServer {
        match PostgresServer::try_start_with(true) {
            Ok(s) => s,
            Err(e) => panic!("cannot start PostgreSQL with TLS: {e}"),
        }
    }

    fn try_start_with(tls: bool) -> Result<PostgresServer, LaunchError> {
        let bin = bin_dir()?;
        let run_as = RunAs::service_user("postgres")?;
        let mut last = None;
        for _ in 0..3 {
            match PostgresServer::start_once(&bin, run_as, tls) {
                Ok(s) => return Ok(s),
                Err(e) if e.0.contains("already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| LaunchError("no free port".to_string())))
    }

    fn start_once(bin: &Path, run_as: RunAs, tls: bool) -> Result<PostgresServer, LaunchError> {
        let dir = tempfile::Builder::new()
            .prefix("idlink-pg-")
            .tempdir()
            .map_err(|e| LaunchError(format!("cannot create a temporary folder: {e}")))?;
        run_as.own(dir.path())?;
        let password = process::password("pg");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n"))
            .map_err(|e| LaunchError(format!("cannot write {}: {e}", pwfile.display())))?;
        run_as.own(&pwfile)?;
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "--no-instructions",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(dir.path());
        process::run(run_as.apply(&mut initdb), "initdb")?;
        let _ = std::fs::remove_file(&pwfile);

        let port = crate::free_port()?;
        let socket_dir = dir.path().to_path_buf();
        let mut args = vec![bin.join("postgres").display().to_string()];
        args.extend(["-D".to_string(), data.display().to_string()]);
        args.extend(["-p".to_string(), port.to_string()]);
        args.extend(["-k".to_string(), socket_dir.display().to_string()]);
        for setting in [
            "listen_addresses=127.0.0.1",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "shared_buffers=16MB",
            "max_connections=60",
            "max_wal_size=256MB",
            "logging_collector=off",
            "log_min_messages=warning",
            "TimeZone=UTC",
        ] {
            args.extend(["-c".to_string(), setting.to_string()]);
        }
        let ca = if tls {
            let certs = dir.path().join("certs");
            std::fs::create_dir(&certs)
                .map_err(|e| LaunchError(format!("cannot create {}: {e}", certs.display())))?;
            let ca = make_certificates(&certs)?;
            let key = certs.join("server.key");
            set_mode(&key, 0o600)?;
            for f in [&certs, &key, &certs.join("server.pem")] {
                run_as.own(f)?;
            }
            args.extend(["-c".to_string(), "ssl=on".to_string()]);
            args.extend([
                "-c".to_string(),
                format!("ssl_cert_file={}", certs.join("server.pem").display()),
            ]);
            args.extend(["-c".to_string(), format!("ssl_key_file={}", key.display())]);
            Some(ca)
        } else {
            None
        };
        // SIGQUIT: immediate shutdown, fast and fine for a throwaway cluster.
        let server = Watched::spawn(dir, run_as, "QUIT", &args)?;
        let pg = PostgresServer {
            port,
            password,
            bin: bin.to_path_buf(),
            run_as,
            server,
            ca,
        };
        pg.server
            .wait_ready("PostgreSQL", Duration::from_secs(60), || {
                process::tcp_open(port)?;
                pg.psql_tcp("postgres", "SELECT 1")
                    .map(drop)
                    .map_err(|e| e.0)
            })?;
        Ok(pg)
    }

    /// With [`PostgresServer::start_tls`]: the PEM file of the authority that signed the
    /// server's certificate.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// The TCP port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password (user `postgres`).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The folder holding the server's socket (local connections are trusted).
    pub fn socket_dir(&self) -> &Path {
        self.server.dir()
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/<database>`.
    pub fn url(&self, database: &str) -> String {
        self.url_for("postgres", &self.password, database)
    }

    /// A URL for another user (passwords made of URL-safe characters only).
    pub fn url_for(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Runs `sql` (one or more statements) as `postgres` in `database`, through the socket.
    /// Returns psql's unaligned, tuples-only output.
    pub fn execute(&self, database: &str, sql: &str) -> Result<String, LaunchError> {
        let mut psql = self.psql_command();
        psql.arg("-h")
            .arg(self.socket_dir())
            .args(["-d", database, "-f", "-"]);
        process::run_with_input(&mut psql, sql, "psql")
    }

    /// Creates a database (owned by `postgres`).
    pub fn create_database(&self, name: &str) -> Result<(), LaunchError> {
        process::check_identifier(name)?;
        self.execute("postgres", &format!("CREATE DATABASE {name};"))
            .map(drop)
    }

    /// Creates a login role with a password, allowed to connect to every database.
    pub fn create_user(&self, name: &str, password: &str) -> Result<(), LaunchError> {
        process::check_identifier(name)?;
        process::check_password(password)?;
        self.execute(
            "postgres",
            &format!("CREATE ROLE {name} LOGIN PASSWORD '{password}';"),
        )
        .map(drop)
    }

    /// The end of the server's log.
    pub fn log(&self) -> String {
        self.server.log_tail()
    }

    fn psql_command(&self) -> Command {
        let psql = self.bin.join("psql");
        let mut c = Command::new(if psql.is_file() {
            psql
        } else {
            PathBuf::from("psql")
        });
        c.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .env("PGCONNECT_TIMEOUT", "5")
        .current_dir("/");
        self.run_as.apply(&mut c);
        c
    }

    /// A login over TCP with the password: proves what tests will use works.
    fn psql_tcp(&self, database: &str, sql: &str) -> Result<String, LaunchError> {
        let mut psql = self.psql_command();
        psql.args(["-h", "127.0.0.1", "-d", database, "-c", sql])
            .env("PGPASSWORD", &self.password);
        process::run(&mut psql, "psql login")
    }
}

/// A certificate authority and a server certificate for `127.0.0.1` and `localhost`, made in
/// `dir` with the `openssl` command; returns the authority's PEM file. (A second call in
/// another folder gives an authority that did not sign the first server's certificate.)
pub fn make_certificates(dir: &Path) -> Result<PathBuf, LaunchError> {
    crate::slapd::make_certificates(dir)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LaunchError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| LaunchError(format!("cannot chmod {}: {e}", path.display())))
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`, else `initdb` on `PATH`.
fn bin_dir() -> Result<PathBuf, LaunchError> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let initdb = process::find_binary(&["initdb"], &[], INSTALL)?;
    match initdb.parent() {
        Some(dir) if dir.join("postgres").is_file() => Ok(dir.to_path_buf()),
        _ => Err(LaunchError(format!(
            "found {} but no postgres beside it; install PostgreSQL with: {INSTALL}",
            initdb.display()
        ))),
    }
}
