//! The rustls client configuration an `https://` run uses, built once from
//! the flags: which CAs are trusted, which name is verified (and sent as
//! SNI), which versions and suites are offered, and whether sessions are
//! resumed. Also the names of what a handshake negotiated, for the report.
//!
//! Verification is always on: a benchmark that talks to the wrong server,
//! or through a broken certificate chain, must fail rather than measure it.

use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ProtocolVersion, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where Debian (and most distributions) keep the system's trusted CAs.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The one application protocol offered: loadgen speaks only HTTP/1.1.
const ALPN_HTTP11: &[u8] = b"http/1.1";
/// Servers remembered by one load thread's session cache. A run has one
/// target, so this only needs room for it (and for `--sni` variants).
const SESSION_CACHE_SERVERS: usize = 16;

/// The TLS flags, as `args` parsed them.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Extra trusted CAs (PEM), on top of the system's.
    pub cacerts: Vec<PathBuf>,
    /// The name to verify and send as SNI; the URL's host when `None`.
    pub sni: Option<String>,
    /// Offer only this version (`None`: TLS 1.2 and 1.3).
    pub version: Option<TlsVersion>,
    /// Offer only this cipher suite (its IANA name, as rustls spells it).
    pub cipher: Option<String>,
}

/// A `--tls-version` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// `1.2`, `1.3` (also `tls1.3`, `TLSv1.3`) -> a version.
pub fn parse_tls_version(value: &str) -> Result<TlsVersion, String> {
    let lower = value.trim().to_ascii_lowercase();
    let number = lower
        .strip_prefix("tlsv")
        .or_else(|| lower.strip_prefix("tls"))
        .unwrap_or(&lower);
    match number {
        "1.2" => Ok(TlsVersion::Tls12),
        "1.3" => Ok(TlsVersion::Tls13),
        _ => Err(format!("{value:?} is not a TLS version (1.2 or 1.3)")),
    }
}

/// What every connection of a run needs to start a TLS session.
#[derive(Debug, Clone)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    /// Verified against the certificate, and sent as SNI unless an IP address.
    pub server_name: ServerName<'static>,
}

impl TlsClient {
    /// Builds the configuration from the flags; `host` is the URL's host.
    /// Resumption is off here: [`TlsClient::for_thread`] turns it on.
    pub fn new(options: &TlsOptions, host: &str) -> Result<TlsClient, String> {
        let name = options.sni.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| format!("{name:?} is not a valid TLS server name"))?;
        let versions: &[&rustls::SupportedProtocolVersion] = match options.version {
            Some(TlsVersion::Tls12) => &[&rustls::version::TLS12],
            Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
            None => rustls::DEFAULT_VERSIONS,
        };
        let mut config = ClientConfig::builder_with_provider(provider(options)?.into())
            .with_protocol_versions(versions)
            .map_err(|e| format!("--cipher and --tls-version do not fit together: {e}"))?
            .with_root_certificates(roots(&options.cacerts)?)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        config.resumption = Resumption::disabled();
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The configuration for one load thread: with `resume`, its own session
    /// cache, shared by all that thread's connections (no lock is contended
    /// across threads, and each thread resumes what it itself negotiated).
    pub fn for_thread(&self, resume: bool) -> TlsClient {
        if !resume {
            return self.clone();
        }
        let mut config = (*self.config).clone();
        let cache = Arc::new(ClientSessionMemoryCache::new(SESSION_CACHE_SERVERS));
        config.resumption = Resumption::store(cache);
        TlsClient {
            config: Arc::new(config),
            server_name: self.server_name.clone(),
        }
    }

    /// A fresh client session (no I/O yet).
    pub fn session(&self) -> Result<ClientConnection, rustls::Error> {
        ClientConnection::new(self.config.clone(), self.server_name.clone())
    }
}

/// aws-lc-rs, cut down to the one `--cipher` if given.
fn provider(options: &TlsOptions) -> Result<CryptoProvider, String> {
    let mut provider = aws_lc_rs::default_provider();
    if let Some(wanted) = &options.cipher {
        let known: Vec<&str> = provider
            .cipher_suites
            .iter()
            .filter_map(|s| s.suite().as_str())
            .collect();
        provider.cipher_suites.retain(|s| {
            s.suite()
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(wanted))
        });
        if provider.cipher_suites.is_empty() {
            return Err(format!(
                "--cipher {wanted:?} is not a suite rustls offers; one of: {}",
                known.join(", ")
            ));
        }
    }
    Ok(provider)
}

/// The system's CAs (when the file exists) plus each `--cacert` file's.
fn roots(cacerts: &[PathBuf]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if let Ok(system) = CertificateDer::pem_file_iter(SYSTEM_ROOTS) {
        roots.add_parsable_certificates(system.filter_map(Result::ok));
    }
    for path in cacerts {
        add_pem(&mut roots, path)?;
    }
    Ok(roots)
}

fn add_pem(roots: &mut RootCertStore, path: &Path) -> Result<(), String> {
    let shown = path.display();
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("--cacert {shown}: {e}"))? {
        let cert = cert.map_err(|e| format!("--cacert {shown}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("--cacert {shown}: not a usable CA certificate: {e}"))?;
        added += 1;
    }
    if added == 0 {
        return Err(format!("--cacert {shown}: no PEM certificate in the file"));
    }
    Ok(())
}

/// What one handshake negotiated, as names (static, so recording one per
/// handshake allocates nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Session {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// The IANA name, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: &'static str,
    /// The key exchange group (`X25519`, `secp256r1`); `none` for a TLS 1.2
    /// resumption, which does no key exchange.
    pub group: &'static str,
}

/// How a completed handshake went: resumed or full, and what it chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub resumed: bool,
    pub session: Session,
}

impl Handshake {
    /// Reads a connection whose handshake is complete.
    pub fn of(conn: &ClientConnection) -> Handshake {
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            Some(other) => other.as_str().unwrap_or("unknown"),
            None => "unknown",
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("unknown");
        let group = conn
            .negotiated_key_exchange_group()
            .map_or("none", |g| g.name().as_str().unwrap_or("unknown"));
        Handshake {
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
            session: Session {
                version,
                cipher,
                group,
            },
        }
    }
}

/// One line for a TLS failure, with a hint where the usual cause is known.
pub fn describe(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(_) => format!(
            "TLS handshake: {error} (is --cacert the CA that signed the server's certificate, \
             and does the certificate name the URL's host or --sni?)"
        ),
        _ => format!("TLS: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_tls_version("1.2"), Ok(TlsVersion::Tls12));
        assert_eq!(parse_tls_version("TLSv1.3"), Ok(TlsVersion::Tls13));
        assert_eq!(parse_tls_version("tls1.3"), Ok(TlsVersion::Tls13));
        assert!(parse_tls_version("1.1").is_err());
    }

    #[test]
    fn an_unknown_cipher_lists_the_known_ones() {
        let options = TlsOptions {
            cipher: Some("RC4".into()),
            ..Default::default()
        };
        let error = TlsClient::new(&options, "localhost").unwrap_err();
        assert!(error.contains("TLS13_AES_128_GCM_SHA256"), "{error}");
    }

    #[test]
    fn a_tls12_suite_with_tls13_only_is_refused() {
        let options = TlsOptions {
            cipher: Some("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()),
            version: Some(TlsVersion::Tls13),
            ..Default::default()
        };
        assert!(TlsClient::new(&options, "localhost").is_err());
        let options = TlsOptions {
            version: Some(TlsVersion::Tls12),
            ..options
        };
        assert!(TlsClient::new(&options, "localhost").is_ok());
    }

    #[test]
    fn names_and_resumption() {
        let client = TlsClient::new(&TlsOptions::default(), "127.0.0.1").unwrap();
        assert!(matches!(client.server_name, ServerName::IpAddress(_)));
        assert_eq!(client.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let sni = TlsOptions {
            sni: Some("rsa.test".into()),
            ..Default::default()
        };
        let client = TlsClient::new(&sni, "127.0.0.1").unwrap();
        assert!(matches!(client.server_name, ServerName::DnsName(_)));
        assert!(TlsClient::new(&TlsOptions::default(), "bad name!").is_err());
        // A thread's own cache makes a distinct configuration.
        let threaded = client.for_thread(true);
        assert!(!Arc::ptr_eq(&threaded.config, &client.config));
        assert!(Arc::ptr_eq(
            &client.for_thread(false).config,
            &client.config
        ));
    }

    #[test]
    fn a_cacert_without_certificates_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not pem\n").unwrap();
        let options = TlsOptions {
            cacerts: vec![path],
            ..Default::default()
        };
        let error = TlsClient::new(&options, "localhost").unwrap_err();
        assert!(error.contains("no PEM certificate"), "{error}");
        let missing = TlsOptions {
            cacerts: vec![dir.path().join("missing.pem")],
            ..Default::default()
        };
        assert!(TlsClient::new(&missing, "localhost").is_err());
    }
}
