//! TLS to PostgreSQL, negotiated by the relay (rustls with ring), with the modes of libpq and
//! Npgsql (`SSL Mode`, `sslmode`):
//!
//! | mode | asks for TLS | without TLS on the server | checks the certificate |
//! | --- | --- | --- | --- |
//! | Disable | no | plain | — |
//! | Allow, Prefer (the default) | yes | plain | no |
//! | Require | yes | refused | only when `Root Certificate` is set (as libpq) |
//! | VerifyCA | yes | refused | signed by `Root Certificate` (else the system's authorities) |
//! | VerifyFull | yes | refused | VerifyCA, and the host name (or IP address) is in the certificate |
//!
//! `Allow` is treated as `Prefer` (libpq tries plain first, then TLS; asking for TLS first is
//! never less safe).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::relay::Failure;

/// The system's certificate authorities, when no `Root Certificate` is given.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The TLS modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// Parses `Disable`, `verify-full`, `VerifyCA`, ... (any case, `-`/`_` ignored).
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match super::settings::norm(s).as_str() {
            "disable" | "disabled" | "none" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" | "preferred" => SslMode::Prefer,
            "require" | "required" => SslMode::Require,
            "verifyca" => SslMode::VerifyCa,
            "verifyfull" | "verifyidentity" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// Whether a server without TLS is refused.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }

    /// The name as the connection string writes it.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "Disable",
            SslMode::Allow => "Allow",
            SslMode::Prefer => "Prefer",
            SslMode::Require => "Require",
            SslMode::VerifyCa => "VerifyCA",
            SslMode::VerifyFull => "VerifyFull",
        }
    }
}

/// TLS settings of a connection, checked (no I/O).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `Root Certificate` / `sslrootcert`: a PEM file of authorities, relative to the settings
    /// file's folder.
    pub root_cert: Option<String>,
}

/// What the relay does about TLS, with the files read.
#[derive(Debug, Clone)]
pub(crate) struct TlsPlan {
    pub mode: SslMode,
    /// `None` for Disable.
    pub config: Option<Arc<rustls::ClientConfig>>,
    /// Where the authorities came from, for messages.
    pub roots_shown: String,
}

impl TlsPlan {
    /// No TLS (MySQL, Unix sockets).
    pub fn none() -> TlsPlan {
        TlsPlan {
            mode: SslMode::Disable,
            config: None,
            roots_shown: String::new(),
        }
    }

    /// Reads the authorities the mode needs and builds the rustls configuration. `Err`: a
    /// message about the `Root Certificate` file.
    pub fn build(settings: &TlsSettings, base_dir: &std::path::Path) -> Result<TlsPlan, String> {
        let mode = settings.mode;
        if mode == SslMode::Disable {
            return Ok(TlsPlan::none());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verify_chain = match mode {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            SslMode::Require => settings.root_cert.is_some(),
            _ => false,
        };
        let (verifier, roots_shown): (Arc<dyn ServerCertVerifier>, String) = if verify_chain {
            let (path, shown) = match &settings.root_cert {
                Some(f) => (base_dir.join(f), format!("the Root Certificate '{f}'")),
                None => (
                    PathBuf::from(SYSTEM_CAS),
                    format!("the system's authorities ({SYSTEM_CAS}; no Root Certificate set)"),
                ),
            };
            let roots = read_roots(&path, &shown)?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| format!("TLS setup with {shown}: {e}"))?;
            (
                Arc::new(Verifier {
                    inner: Some(webpki),
                    check_name: mode == SslMode::VerifyFull,
                    algorithms: provider.signature_verification_algorithms,
                }),
                shown,
            )
        } else {
            (
                Arc::new(Verifier {
                    inner: None,
                    check_name: false,
                    algorithms: provider.signature_verification_algorithms,
                }),
                String::new(),
            )
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(TlsPlan {
            mode,
            config: Some(Arc::new(config)),
            roots_shown,
        })
    }
}

fn read_roots(path: &std::path::Path, shown: &str) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown} is not a PEM file of certificates: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{shown} holds no usable certificate"));
    }
    Ok(roots)
}

/// Checks the chain (when `inner` is set) and the name (when `check_name`); always checks
/// the handshake's signatures, so the server holds the certificate's key.
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Asks the server for TLS as the mode says, and does the handshake. The caller bounds the
/// time.
pub(crate) async fn negotiate_pg(
    mut tcp: tokio::net::TcpStream,
    host: &str,
    plan: &TlsPlan,
) -> Result<Box<dyn super::relay::StreamBox>, Failure> {
    let Some(config) = &plan.config else {
        return Ok(Box::new(tcp));
    };
    let broke = |e: std::io::Error| Failure {
        message: format!("cannot reach the server: {e}"),
        retryable: true,
    };
    tcp.write_all(&SSL_REQUEST).await.map_err(broke)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.map_err(broke)?;
    match answer[0] {
        b'S' => {}
        b'N' if plan.mode.requires_tls() => {
            return Err(Failure {
                message: format!(
                    "the server does not accept TLS, and SSL Mode={} requires it (use SSL Mode=Prefer or Disable to connect without TLS)",
                    plan.mode.name()
                ),
                retryable: false,
            });
        }
        b'N' => return Ok(Box::new(tcp)),
        other => {
            return Err(Failure {
                message: format!(
                    "the server answered the TLS request with byte 0x{other:02x} instead of 'S' or 'N': is it a PostgreSQL server?"
                ),
                retryable: false,
            });
        }
    }
    let name = ServerName::try_from(host.to_string()).map_err(|e| Failure {
        message: format!("the host name '{host}' cannot be checked by TLS: {e}"),
        retryable: false,
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    match connector.connect(name, tcp).await {
        Ok(tls) => Ok(Box::new(tls)),
        Err(e) => Err(tls_failure(&e, host, plan)),
    }
}

/// A TLS handshake failure in words: which check failed and what to do.
fn tls_failure(e: &std::io::Error, host: &str, plan: &TlsPlan) -> Failure {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let message = match rustls_error {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "TLS: the server's certificate is not trusted: it is not signed by {} ({c:?}); set Root Certificate to the authority that signed it",
                plan.roots_shown
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "TLS: the server's certificate is not valid for the host '{host}' (SSL Mode=VerifyFull checks the name): connect with a name the certificate holds, or use VerifyCA"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "TLS: the server's certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "TLS: the server's certificate is not valid yet (check the clocks)".to_string()
            }
            other => format!("TLS: the server's certificate is refused: {other:?}"),
        },
        Some(other) => format!("TLS handshake failed: {other}"),
        None => format!("TLS handshake failed: {e}"),
    };
    let retryable = rustls_error.is_none();
    Failure { message, retryable }
}
