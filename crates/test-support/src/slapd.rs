//! A private OpenLDAP server: `slapd.conf` (mdb, syncprov) in a temporary folder, fixtures
//! loaded with `slapadd` before start, `slapd -d 0` in the foreground on free ports (plain
//! LDAP with StartTLS, and LDAPS), with a certificate authority made for this server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::LaunchError;
use crate::process::{self, RunAs, Watched};

const INSTALL: &str = "apt-get install -y slapd ldap-utils";

/// The suffix of the directory every server holds.
pub const SUFFIX: &str = "dc=example,dc=org";
/// The root DN (not subject to size limits nor access rules).
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";

/// How a server is set up.
#[derive(Debug, Clone)]
pub struct SlapdOptions {
    /// LDIF loaded with `slapadd` before start, after the suffix entry (which the launcher
    /// writes itself).
    pub ldif: String,
    /// Load the syncprov overlay (RFC 4533 content synchronization).
    pub syncprov: bool,
    /// Give syncprov a session log (deletions are then sent by entryUUID; without it, the
    /// server lists the present entries instead).
    pub session_log: bool,
    /// Generate a certificate authority and serve LDAPS and StartTLS.
    pub tls: bool,
    /// The size limit of everyone but the root DN; paged searches are not limited in total.
    pub size_limit: Option<u32>,
    /// `slapadd -q`: quick load without consistency checks, for large benchmark loads.
    pub quick_load: bool,
}

impl Default for SlapdOptions {
    fn default() -> Self {
        SlapdOptions {
            ldif: String::new(),
            syncprov: true,
            session_log: true,
            tls: true,
            size_limit: None,
            quick_load: false,
        }
    }
}

/// An OpenLDAP server of its own, stopped (and its folder removed) when dropped.
#[derive(Debug)]
pub struct SlapdServer {
    port: u16,
    tls_port: Option<u16>,
    password: String,
    ca_file: Option<PathBuf>,
    server: Watched,
}

impl SlapdServer {
    /// Starts a server with `options`, panicking with the reason (and the install line when
    /// slapd is missing): for tests.
    pub fn start(options: &SlapdOptions) -> SlapdServer {
        match SlapdServer::try_start(options) {
            Ok(s) => s,
            Err(e) => panic!("cannot start slapd: {e}"),
        }
    }

    /// Starts a server on free ports; retries on other ports when one was taken in between.
    pub fn try_start(options: &SlapdOptions) -> Result<SlapdServer, LaunchError> {
        let slapd = process::find_binary(&["slapd"], &[], INSTALL)?;
        let slapadd = process::find_binary(&["slapadd"], &[], INSTALL)?;
        process::find_binary(&["ldapwhoami"], &[], INSTALL)?;
        if !Path::new("/etc/ldap/schema/core.schema").is_file() {
            return Err(LaunchError(format!(
                "/etc/ldap/schema/core.schema is missing; install the schemas with: {INSTALL}"
            )));
        }
        let run_as = RunAs::service_user("openldap")?;
        let mut last = None;
        for _ in 0..3 {
            match SlapdServer::start_once(&slapd, &slapadd, run_as, options) {
                Ok(s) => return Ok(s),
                Err(e) if e.0.contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| LaunchError("no free port".to_string())))
    }

    fn start_once(
        slapd: &Path,
        slapadd: &Path,
        run_as: RunAs,
        options: &SlapdOptions,
    ) -> Result<SlapdServer, LaunchError> {
        let dir = tempfile::Builder::new()
            .prefix("idlink-slapd-")
            .tempdir()
            .map_err(|e| LaunchError(format!("cannot create a temporary folder: {e}")))?;
        let root = dir.path().to_path_buf();
        let password = process::password("ldap");
        let data = root.join("data");
        std::fs::create_dir(&data)
            .map_err(|e| LaunchError(format!("cannot create {}: {e}", data.display())))?;
        let ca_file = if options.tls {
            Some(make_certificates(&root)?)
        } else {
            None
        };
        let conf = root.join("slapd.conf");
        write(&conf, &config(&root, &password, options))?;
        let ldif = root.join("fixtures.ldif");
        let mut text = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n"
        );
        text.push_str(&options.ldif);
        write(&ldif, &text)?;
        own_tree(run_as, &root)?;

        let mut add = Command::new(slapadd);
        add.arg("-f").arg(&conf).arg("-l").arg(&ldif);
        if options.quick_load {
            add.arg("-q");
        }
        add.current_dir(&root);
        process::run(run_as.apply(&mut add), "slapadd")?;

        let port = crate::free_port()?;
        let tls_port = if options.tls {
            Some(crate::free_port()?)
        } else {
            None
        };
        let mut urls = format!("ldap://127.0.0.1:{port}/");
        if let Some(p) = tls_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
        }
        let args = vec![
            slapd.display().to_string(),
            "-f".to_string(),
            conf.display().to_string(),
            "-h".to_string(),
            urls,
            "-d".to_string(),
            "0".to_string(),
        ];
        let server = Watched::spawn(dir, run_as, "TERM", &args)?;
        let s = SlapdServer {
            port,
            tls_port,
            password,
            ca_file,
            server,
        };
        s.server.wait_ready("slapd", Duration::from_secs(60), || {
            process::tcp_open(port)?;
            s.whoami().map(drop).map_err(|e| e.0)
        })?;
        Ok(s)
    }

    /// The plain LDAP port on `127.0.0.1` (StartTLS available when TLS is on).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// The LDAPS port, when TLS is on.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The PEM file of the certificate authority that signed the server's certificate (whose
    /// names are `127.0.0.1` and `localhost`), when TLS is on.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The root DN's password.
    pub fn admin_password(&self) -> &str {
        &self.password
    }

    /// The folder the server runs in.
    pub fn dir(&self) -> &Path {
        self.server.dir()
    }

    /// The end of the server's log.
    pub fn log(&self) -> String {
        self.server.log_tail()
    }

    /// `ldapwhoami` as the root DN: a real bind.
    pub fn whoami(&self) -> Result<String, LaunchError> {
        let mut c = self.client("ldapwhoami");
        process::run(&mut c, "ldapwhoami")
    }

    /// Applies LDIF change records (`changetype: add|modify|delete|modrdn`) as the root DN.
    pub fn ldapmodify(&self, ldif: &str) -> Result<String, LaunchError> {
        let mut c = self.client("ldapmodify");
        process::run_with_input(&mut c, ldif, "ldapmodify")
    }

    /// Adds entries (LDIF content records) as the root DN.
    pub fn ldapadd(&self, ldif: &str) -> Result<String, LaunchError> {
        let mut c = self.client("ldapmodify");
        c.arg("-a");
        process::run_with_input(&mut c, ldif, "ldapadd")
    }

    /// Searches as the root DN; the LDIF output (`-LLL`, no line wrapping).
    pub fn ldapsearch(
        &self,
        base: &str,
        filter: &str,
        attributes: &[&str],
    ) -> Result<String, LaunchError> {
        let mut c = self.client("ldapsearch");
        c.args(["-LLL", "-o", "ldif-wrap=no", "-b", base, filter]);
        c.args(attributes);
        process::run(&mut c, "ldapsearch")
    }

    fn client(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args([
            "-x",
            "-H",
            &self.url(),
            "-D",
            ADMIN_DN,
            "-w",
            &self.password,
        ])
        .env("LDAPTLS_REQCERT", "never")
        .current_dir("/");
        c
    }
}

fn write(path: &Path, text: &str) -> Result<(), LaunchError> {
    std::fs::write(path, text)
        .map_err(|e| LaunchError(format!("cannot write {}: {e}", path.display())))
}

/// Gives the folder and everything in it to the service user.
fn own_tree(run_as: RunAs, path: &Path) -> Result<(), LaunchError> {
    run_as.own(path)?;
    if path.is_dir() {
        let entries = std::fs::read_dir(path)
            .map_err(|e| LaunchError(format!("cannot list {}: {e}", path.display())))?;
        for e in entries.flatten() {
            own_tree(run_as, &e.path())?;
        }
    }
    Ok(())
}

fn config(root: &Path, password: &str, options: &SlapdOptions) -> String {
    let mut c = String::new();
    for schema in ["core", "cosine", "inetorgperson", "nis"] {
        c.push_str(&format!("include /etc/ldap/schema/{schema}.schema\n"));
    }
    c.push_str(&format!(
        "pidfile {root}/slapd.pid\nargsfile {root}/slapd.args\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n",
        root = root.display()
    ));
    if options.syncprov {
        c.push_str("moduleload syncprov\n");
    }
    if options.tls {
        c.push_str(&format!(
            "TLSCACertificateFile {root}/ca.pem\nTLSCertificateFile {root}/server.pem\nTLSCertificateKeyFile {root}/server.key\n",
            root = root.display()
        ));
    }
    match options.size_limit {
        Some(n) => c.push_str(&format!(
            "sizelimit size.soft={n} size.hard={n} size.prtotal=unlimited\n"
        )),
        None => c.push_str("sizelimit unlimited\n"),
    }
    c.push_str(&format!(
        "database mdb\nsuffix \"{SUFFIX}\"\nrootdn \"{ADMIN_DN}\"\nrootpw {password}\ndirectory {root}/data\nmaxsize 4294967296\n",
        root = root.display()
    ));
    c.push_str("index objectClass eq\nindex entryUUID,entryCSN eq\n");
    c.push_str(
        "access to attrs=userPassword by self write by anonymous auth by * none\naccess to * by * read\n",
    );
    if options.syncprov {
        c.push_str("overlay syncprov\nsyncprov-checkpoint 100 10\n");
        if options.session_log {
            c.push_str("syncprov-sessionlog 10000\n");
        }
    }
    c
}

/// A certificate authority and a server certificate for `127.0.0.1` and `localhost` (EC
/// P-256), made with the `openssl` command; returns the CA's PEM file.
pub(crate) fn make_certificates(root: &Path) -> Result<PathBuf, LaunchError> {
    let openssl = process::find_binary(&["openssl"], &[], "apt-get install -y openssl")?;
    let p = |name: &str| root.join(name).display().to_string();
    write(
        &root.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )?;
    write(
        &root.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n",
    )?;
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut ca = Command::new(&openssl);
    ca.args(["req", "-new", "-nodes"])
        .args(ec)
        .args(["-keyout", &p("ca.key"), "-out", &p("ca.csr")])
        .args(["-subj", "/CN=idlink test CA"]);
    process::run(&mut ca, "openssl (CA request)")?;
    let mut sign_ca = Command::new(&openssl);
    sign_ca
        .args(["x509", "-req", "-days", "2", "-in", &p("ca.csr")])
        .args(["-signkey", &p("ca.key"), "-out", &p("ca.pem")])
        .args(["-extfile", &p("ca.ext")]);
    process::run(&mut sign_ca, "openssl (CA certificate)")?;
    let mut req = Command::new(&openssl);
    req.args(["req", "-new", "-nodes"])
        .args(ec)
        .args(["-keyout", &p("server.key"), "-out", &p("server.csr")])
        .args(["-subj", "/CN=127.0.0.1"]);
    process::run(&mut req, "openssl (server request)")?;
    let mut sign = Command::new(&openssl);
    sign.args(["x509", "-req", "-days", "2", "-in", &p("server.csr")])
        .args([
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
        ])
        .args(["-out", &p("server.pem"), "-extfile", &p("server.ext")]);
    process::run(&mut sign, "openssl (server certificate)")?;
    Ok(root.join("ca.pem"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slapd_starts_binds_answers_and_stops_clean() {
        let s = SlapdServer::start(&SlapdOptions {
            ldif: "dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n"
                .to_string(),
            ..SlapdOptions::default()
        });
        let (dir, port) = (s.dir().to_path_buf(), s.port());
        assert!(s.whoami().expect("whoami").contains(ADMIN_DN));
        let found = s
            .ldapsearch(SUFFIX, "(ou=people)", &["ou"])
            .expect("search");
        assert!(found.contains("dn: ou=people,dc=example,dc=org"), "{found}");
        s.ldapadd("dn: ou=x,dc=example,dc=org\nobjectClass: organizationalUnit\nou: x\n")
            .expect("add");
        assert!(s.ca_file().is_some_and(Path::is_file));
        assert!(s.tls_port().is_some());
        drop(s);
        assert!(!dir.exists(), "{} is left behind", dir.display());
        assert!(process::tcp_open(port).is_err(), "port {port} still open");
    }
}
