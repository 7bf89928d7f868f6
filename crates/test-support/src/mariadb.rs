//! A private MariaDB server: `mariadb-install-db` in a temporary folder, `mariadbd` on a free
//! port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::LaunchError;
use crate::process::{self, RunAs, Watched};

const INSTALL: &str = "apt-get install -y mariadb-server";

/// A MariaDB server of its own, stopped (and its folder removed) when dropped.
///
/// `root` logs in without a password through the socket (setup only); TCP connections use the
/// user `idlink` with [`MariaDbServer::password`], who holds every privilege, and
/// [`MariaDbServer::create_user`] adds others.
#[derive(Debug)]
pub struct MariaDbServer {
    port: u16,
    password: String,
    client: PathBuf,
    server: Watched,
}

/// The user tests connect as.
const USER: &str = "idlink";

impl MariaDbServer {
    /// Starts a server, panicking with the reason (and the install line when MariaDB is
    /// missing): for tests.
    pub fn start() -> MariaDbServer {
        match MariaDbServer::try_start() {
            Ok(s) => s,
            Err(e) => panic!("cannot start MariaDB: {e}"),
        }
    }

    /// Starts a server on a free port; retries on another port when the chosen one was taken
    /// in between.
    pub fn try_start() -> Result<MariaDbServer, LaunchError> {
        let server = process::find_binary(&["mariadbd", "mysqld"], &[], INSTALL)?;
        let install_db =
            process::find_binary(&["mariadb-install-db", "mysql_install_db"], &[], INSTALL)?;
        let client = process::find_binary(&["mariadb", "mysql"], &[], INSTALL)?;
        let run_as = RunAs::service_user("mysql")?;
        let mut last = None;
        for _ in 0..3 {
            match MariaDbServer::start_once(&server, &install_db, &client, run_as) {
                Ok(s) => return Ok(s),
                Err(e) if e.0.contains("already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| LaunchError("no free port".to_string())))
    }

    fn start_once(
        server: &Path,
        install_db: &Path,
        client: &Path,
        run_as: RunAs,
    ) -> Result<MariaDbServer, LaunchError> {
        let dir = tempfile::Builder::new()
            .prefix("idlink-mariadb-")
            .tempdir()
            .map_err(|e| LaunchError(format!("cannot create a temporary folder: {e}")))?;
        run_as.own(dir.path())?;
        let data = dir.path().join("data");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp)
            .map_err(|e| LaunchError(format!("cannot create {}: {e}", tmp.display())))?;
        run_as.own(&tmp)?;
        let mut install = Command::new(install_db);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ])
            .current_dir(dir.path());
        process::run(run_as.apply(&mut install), "mariadb-install-db")?;

        let port = crate::free_port()?;
        let socket = dir.path().join("sock");
        let args = vec![
            server.display().to_string(),
            "--no-defaults".to_string(),
            format!("--datadir={}", data.display()),
            format!("--port={port}"),
            format!("--socket={}", socket.display()),
            format!("--pid-file={}", dir.path().join("mariadbd.pid").display()),
            format!("--tmpdir={}", tmp.display()),
            "--bind-address=127.0.0.1".to_string(),
            "--skip-name-resolve".to_string(),
            "--skip-log-bin".to_string(),
            "--innodb-buffer-pool-size=16M".to_string(),
            "--innodb-flush-log-at-trx-commit=0".to_string(),
            "--innodb-doublewrite=0".to_string(),
            "--character-set-server=utf8mb4".to_string(),
            "--collation-server=utf8mb4_general_ci".to_string(),
            "--max-connections=60".to_string(),
        ];
        // SIGKILL: mariadbd is one process, and the data are thrown away.
        let watched = Watched::spawn(dir, run_as, "KILL", &args)?;
        let db = MariaDbServer {
            port,
            password: process::password("my"),
            client: client.to_path_buf(),
            server: watched,
        };
        let setup = format!(
            "CREATE USER '{USER}'@'%' IDENTIFIED BY '{}';\n\
             GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%' WITH GRANT OPTION;\n",
            db.password
        );
        let mut created = false;
        db.server
            .wait_ready("MariaDB", Duration::from_secs(60), || {
                process::tcp_open(port)?;
                if !created {
                    db.execute_as_root("mysql", &setup).map_err(|e| e.0)?;
                    created = true;
                }
                // A real login over TCP, as the tests will do.
                let mut c = db.client_command();
                c.args(["-h", "127.0.0.1", "-P", &port.to_string(), "-u", USER])
                    .arg(format!("-p{}", db.password))
                    .args(["-e", "SELECT 1"]);
                process::run(&mut c, "mariadb login")
                    .map(drop)
                    .map_err(|e| e.0)
            })?;
        Ok(db)
    }

    /// The TCP port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user tests connect as over TCP (`idlink`, every privilege).
    pub fn user(&self) -> &str {
        USER
    }

    /// The password of [`MariaDbServer::user`].
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The server's socket (root logs in there without a password).
    pub fn socket(&self) -> PathBuf {
        self.server.dir().join("sock")
    }

    /// `mysql://idlink:PASSWORD@127.0.0.1:PORT/<database>`.
    pub fn url(&self, database: &str) -> String {
        self.url_for(USER, &self.password, database)
    }

    /// A URL for another user (passwords made of URL-safe characters only).
    pub fn url_for(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "mysql://{user}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Runs `sql` (statements separated by `;`) as root in `database`, through the socket.
    /// Returns the client's tab-separated output without column names.
    pub fn execute(&self, database: &str, sql: &str) -> Result<String, LaunchError> {
        self.execute_as_root(database, sql)
    }

    fn execute_as_root(&self, database: &str, sql: &str) -> Result<String, LaunchError> {
        let mut c = self.client_command();
        c.arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "-D", database]);
        process::run_with_input(&mut c, sql, "mariadb client")
    }

    /// Creates a database.
    pub fn create_database(&self, name: &str) -> Result<(), LaunchError> {
        process::check_identifier(name)?;
        self.execute("mysql", &format!("CREATE DATABASE {name};"))
            .map(drop)
    }

    /// Creates a user who may log in from anywhere with `password` and use every database.
    pub fn create_user(&self, name: &str, password: &str) -> Result<(), LaunchError> {
        process::check_identifier(name)?;
        process::check_password(password)?;
        self.execute(
            "mysql",
            &format!(
                "CREATE USER '{name}'@'%' IDENTIFIED BY '{password}';\n\
                 GRANT ALL PRIVILEGES ON *.* TO '{name}'@'%';\n"
            ),
        )
        .map(drop)
    }

    /// The end of the server's log.
    pub fn log(&self) -> String {
        self.server.log_tail()
    }

    fn client_command(&self) -> Command {
        let mut c = Command::new(&self.client);
        c.args([
            "--no-defaults",
            "--batch",
            "--skip-column-names",
            "--connect-timeout=5",
        ])
        .current_dir("/");
        c
    }
}
