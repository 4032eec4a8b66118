//! HTTPS on every core: certificates and SNI, session tickets that any core
//! opens, the per-core rustls configuration and its reload on SIGHUP, the
//! TLS record framing the kernel hand-off depends on, and kernel TLS itself.
//!
//! - Certificate files are read once, off the cores ([`CertSource::read`],
//!   at start and by the signal thread on SIGHUP); each core builds its own
//!   keys and `ServerConfig` from the checked bytes ([`CoreTls`]), so no
//!   handshake touches another core's memory.
//! - Tickets are sealed with a key that every core derives from one
//!   process-wide secret and the current epoch ([`Tickets`]): a client
//!   resumes on whichever core the kernel hands its next connection to, and
//!   no core shares a lock or a cache line with another to make that so.
//! - [`offload`] gives a finished handshake's keys to the kernel (`TCP_ULP`
//!   `tls`, `TLS_TX` and `TLS_RX`); the connection then takes the plain data
//!   path unchanged (sendfile, the mapped `sendmsg`).

use crate::config::CertPair;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hmac;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// TLS 1.2 sessions remembered per core for clients that resume by session
/// id instead of a ticket.
const SESSION_CACHE: usize = 4096;
/// The ALPN protocols we speak: an HTTP/1.0 client (`curl -0`) offers
/// only `http/1.0`, and would get a no_application_protocol alert without it.
const ALPN: [&[u8]; 2] = [b"http/1.1", b"http/1.0"];
/// A ticket key's life: tickets sealed in one epoch open in it and the next.
const TICKET_EPOCH_SECS: u64 = 6 * 3600;

/// Why certificates could not be loaded or TLS could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read.
    Read(PathBuf, std::io::Error),
    /// The file holds no PEM certificate (or a malformed one).
    NoCertificate(PathBuf),
    /// The file holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    NoKey(PathBuf),
    /// The key is of a kind rustls cannot sign with.
    BadKey(PathBuf, rustls::Error),
    /// The key does not belong to the certificate it is paired with.
    Mismatch(PathBuf, PathBuf),
    /// `--ktls require` on a kernel without TLS (`tls` ULP not available).
    KernelTlsMissing(std::io::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            TlsError::NoCertificate(path) => {
                write!(f, "{}: no PEM certificate in it", path.display())
            }
            TlsError::NoKey(path) => write!(f, "{}: no PEM private key in it", path.display()),
            TlsError::BadKey(path, e) => write!(f, "{}: unusable key: {e}", path.display()),
            TlsError::Mismatch(cert, key) => write!(
                f,
                "{} is not the key of {}",
                key.display(),
                cert.display()
            ),
            TlsError::KernelTlsMissing(e) => write!(
                f,
                "--ktls require: this kernel has no TLS offload (setsockopt TCP_ULP \"tls\": {e}; try modprobe tls)"
            ),
        }
    }
}

impl std::error::Error for TlsError {}

/// The rustls crypto we use. Key exchange, signatures and randomness come
/// from aws-lc-rs (its P-256 and X25519 make handshakes cheapest); the
/// record layer's AEAD suites from ring, whose AES-GCM has a VAES/AVX2 path
/// that aws-lc lacks (it has only AVX-512), so CPUs with VAES but no
/// AVX-512 encrypt bulk bytes faster (docs/benchmarks.md). AEAD suites only
/// (rustls offers no others), TLS 1.3 and 1.2.
fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: rustls::crypto::ring::DEFAULT_CIPHER_SUITES.to_vec(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    }
}

/// Certificate and key files as read and checked: what the cores build
/// their configurations from.
#[derive(Debug)]
pub struct CertSource {
    pairs: Vec<PemPair>,
}

#[derive(Debug)]
struct PemPair {
    paths: CertPair,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl CertSource {
    /// Reads every pair and checks that it makes a usable key for its chain.
    pub fn read(pairs: &[CertPair]) -> Result<CertSource, TlsError> {
        let read =
            |path: &PathBuf| std::fs::read(path).map_err(|e| TlsError::Read(path.clone(), e));
        let mut loaded = Vec::with_capacity(pairs.len());
        for paths in pairs {
            let pair = PemPair {
                cert: read(&paths.cert)?,
                key: read(&paths.key)?,
                paths: paths.clone(),
            };
            pair.certified_key(&provider())?;
            loaded.push(pair);
        }
        Ok(CertSource { pairs: loaded })
    }

    /// A source from PEM bytes already in memory (one pair, named `label`).
    pub fn from_pem(label: &str, cert: Vec<u8>, key: Vec<u8>) -> Result<CertSource, TlsError> {
        let pair = PemPair {
            paths: CertPair {
                cert: PathBuf::from(label),
                key: PathBuf::from(label),
            },
            cert,
            key,
        };
        pair.certified_key(&provider())?;
        Ok(CertSource { pairs: vec![pair] })
    }

    /// The certified keys, the default first.
    fn certified_keys(
        &self,
        provider: &CryptoProvider,
    ) -> Result<Vec<Arc<CertifiedKey>>, TlsError> {
        self.pairs
            .iter()
            .map(|pair| pair.certified_key(provider).map(Arc::new))
            .collect()
    }
}

impl PemPair {
    fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<_, _>>()
            .map_err(|_| TlsError::NoCertificate(self.paths.cert.clone()))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate(self.paths.cert.clone()));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|_| TlsError::NoKey(self.paths.key.clone()))?;
        let key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadKey(self.paths.key.clone(), e))?;
        let certified = CertifiedKey::new(chain, key);
        certified
            .keys_match()
            .map_err(|_| TlsError::Mismatch(self.paths.cert.clone(), self.paths.key.clone()))?;
        Ok(certified)
    }
}

/// The certificates every core serves, replaced whole on SIGHUP. Cores look
/// at `generation` on their shutdown tick (not per request) and take the new
/// source when it moved.
#[derive(Debug)]
pub struct SharedCerts {
    generation: AtomicU64,
    current: Mutex<Arc<CertSource>>,
    paths: Vec<CertPair>,
}

impl SharedCerts {
    pub fn new(source: CertSource, paths: Vec<CertPair>) -> SharedCerts {
        SharedCerts {
            generation: AtomicU64::new(0),
            current: Mutex::new(Arc::new(source)),
            paths,
        }
    }

    /// Re-reads every file (SIGHUP). A bad file keeps the old certificates
    /// and says why in one line.
    pub fn reload(&self) {
        match CertSource::read(&self.paths) {
            Ok(source) => {
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(source);
                self.generation.fetch_add(1, Ordering::Release);
                eprintln!(
                    "ringcast: SIGHUP: reloaded {} certificate(s); new handshakes use them",
                    self.paths.len()
                );
            }
            Err(e) => eprintln!("ringcast: SIGHUP: keeping the old certificates: {e}"),
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn current(&self) -> Arc<CertSource> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Picks a certificate by the ClientHello's SNI: the first whose names
/// cover it, else the default (the first pair).
#[derive(Debug)]
struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.keys.len() > 1 {
            if let Some(name) = hello.server_name().and_then(|n| DnsName::try_from(n).ok()) {
                let name = ServerName::DnsName(name.to_owned());
                let covers = |key: &&Arc<CertifiedKey>| {
                    key.end_entity_cert().ok().is_some_and(|der| {
                        webpki::EndEntityCert::try_from(der)
                            .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
                    })
                };
                if let Some(key) = self.keys.iter().find(covers) {
                    return Some(key.clone());
                }
            }
        }
        self.keys.first().cloned()
    }
}

/// The process-wide secret ticket keys are derived from; made once at start.
#[derive(Clone, Copy)]
pub struct TicketSecret([u8; 32]);

impl TicketSecret {
    pub fn random() -> TicketSecret {
        let mut secret = [0; 32];
        aws_lc_rs::rand::fill(&mut secret).expect("the system's random source works");
        TicketSecret(secret)
    }
}

impl fmt::Debug for TicketSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TicketSecret(..)")
    }
}

/// Stateless session tickets: AES-256-GCM under a key derived, per epoch of
/// [`TICKET_EPOCH_SECS`], from the [`TicketSecret`] every core holds. A
/// ticket is `epoch (4, big-endian) || nonce (12) || sealed state || tag`;
/// it opens in its own epoch and the next, so keys roll without a lock and
/// an old key is forgotten after two epochs.
pub struct Tickets {
    secret: hmac::Key,
    /// The last epoch's key, derived once per epoch. Only its own core uses
    /// it; the mutex is for rustls' `Sync` bound and is never contended.
    cached: Mutex<Option<(u32, LessSafeKey)>>,
}

impl fmt::Debug for Tickets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tickets(..)")
    }
}

impl Tickets {
    pub fn new(secret: TicketSecret) -> Tickets {
        Tickets {
            secret: hmac::Key::new(hmac::HMAC_SHA256, &secret.0),
            cached: Mutex::new(None),
        }
    }

    fn epoch_now() -> u32 {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        (secs / TICKET_EPOCH_SECS) as u32
    }

    /// Runs `with` on the key of `epoch`.
    fn with_key<T>(&self, epoch: u32, with: impl FnOnce(&LessSafeKey) -> T) -> Option<T> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, key)) = &*cached {
            if *at == epoch {
                return Some(with(key));
            }
        }
        let mut label = b"ringcast ticket key ".to_vec();
        label.extend_from_slice(&epoch.to_be_bytes());
        let derived = hmac::sign(&self.secret, &label);
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, derived.as_ref()).ok()?);
        let result = with(&key);
        *cached = Some((epoch, key));
        Some(result)
    }
}

impl ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_EPOCH_SECS as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let epoch = Self::epoch_now();
        let mut nonce = [0; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(4 + NONCE_LEN + plain.len() + 16);
        ticket.extend_from_slice(&epoch.to_be_bytes());
        ticket.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        self.with_key(epoch, |key| {
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(epoch.to_be_bytes()),
                &mut sealed,
            )
        })?
        .ok()?;
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let epoch = u32::from_be_bytes(cipher.get(..4)?.try_into().ok()?);
        let now = Self::epoch_now();
        if epoch != now && epoch.checked_add(1) != Some(now) {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = cipher.get(4..4 + NONCE_LEN)?.try_into().ok()?;
        let mut sealed = cipher.get(4 + NONCE_LEN..)?.to_vec();
        let len = self.with_key(epoch, |key| {
            key.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(epoch.to_be_bytes()),
                &mut sealed,
            )
            .map(|plain| plain.len())
        })?;
        sealed.truncate(len.ok()?);
        Some(sealed)
    }
}

/// One core's TLS state: its rustls configuration, rebuilt when SIGHUP
/// brings new certificates.
pub struct CoreTls {
    shared: Arc<SharedCerts>,
    secret: TicketSecret,
    /// Hand keys to the kernel after the handshake (`--ktls` auto/require,
    /// and the kernel has TLS).
    pub offload: bool,
    built: std::cell::RefCell<(u64, Arc<ServerConfig>)>,
}

impl CoreTls {
    pub fn new(
        shared: Arc<SharedCerts>,
        secret: TicketSecret,
        offload: bool,
    ) -> Result<CoreTls, TlsError> {
        let generation = shared.generation();
        let config = server_config(&shared.current(), secret, offload)?;
        Ok(CoreTls {
            shared,
            secret,
            offload,
            built: std::cell::RefCell::new((generation, config)),
        })
    }

    /// The configuration for a new handshake: this core's own.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.built.borrow().1.clone()
    }

    /// Takes new certificates if SIGHUP brought some (called on the core's
    /// shutdown tick). Connections keep the configuration they began with.
    pub fn refresh(&self) {
        let generation = self.shared.generation();
        if generation == self.built.borrow().0 {
            return;
        }
        match server_config(&self.shared.current(), self.secret, self.offload) {
            Ok(config) => *self.built.borrow_mut() = (generation, config),
            Err(e) => {
                // Checked by the signal thread, so only a file changed since.
                eprintln!("ringcast: keeping the old certificates on this core: {e}");
                self.built.borrow_mut().0 = generation;
            }
        }
    }
}

/// A core's rustls configuration: its own keys, ticket sealer and TLS 1.2
/// session cache.
pub fn server_config(
    source: &CertSource,
    secret: TicketSecret,
    offload: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(provider());
    let keys = source.certified_keys(&provider)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("aws-lc-rs offers TLS 1.3 and 1.2")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { keys }));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.ticketer = Arc::new(Tickets::new(secret));
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.enable_secret_extraction = offload;
    // Two tickets per full handshake, as OpenSSL sends: clients that open
    // several connections at once each find one to resume with (with one,
    // 14% of a 16-connection client's handshakes were full again).
    config.send_tls13_tickets = 2;
    Ok(Arc::new(config))
}

/// Whether this kernel can take TLS keys: sets the `tls` ULP on a loopback
/// connection made for the purpose.
pub fn kernel_has_tls() -> Result<(), std::io::Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let (_server, _) = listener.accept()?;
    set_tls_ulp(client.as_raw_fd())
}

/// Sets the `tls` upper-layer protocol on a connected socket: the first step
/// of kernel TLS, and the one that fails (ENOENT) where the kernel has none.
/// Until keys are set the socket carries bytes as before.
pub fn set_tls_ulp(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: `fd` is an open socket for the duration of the call.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    ktls_core::setup_ulp(&socket).map_err(std::io::Error::other)
}

/// Moves a finished handshake's record keys into the kernel (`TLS_TX` and
/// `TLS_RX`) on a socket whose ULP is set. The caller has flushed every
/// record rustls queued and read out every byte it decrypted. rustls is
/// consumed either way: an error leaves the connection unusable.
pub fn offload_keys(fd: RawFd, conn: rustls::ServerConnection) -> Result<(), String> {
    let version = conn.protocol_version().ok_or("no protocol version")?;
    let secrets = conn
        .dangerous_extract_secrets()
        .map_err(|e| e.to_string())?;
    let secrets = ktls_core::ExtractedSecrets::try_from(secrets).map_err(|e| e.to_string())?;
    let version = ktls_core::ProtocolVersion::from(version);
    let (tx_seq, tx) = secrets.tx;
    let (rx_seq, rx) = secrets.rx;
    let tx = ktls_core::TlsCryptoInfoTx::new(version, tx, tx_seq).map_err(|e| e.to_string())?;
    let rx = ktls_core::TlsCryptoInfoRx::new(version, rx, rx_seq).map_err(|e| e.to_string())?;
    // SAFETY: `fd` is the connection's open socket for the duration of the call.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    ktls_core::setup_tls_params(&socket, &tx, &rx).map_err(|e| e.to_string())
}

/// Where a byte stream of TLS records stands: between records or inside
/// one. Keys can move to the kernel only between records that rustls has
/// wholly taken: bytes of a record already read from the socket cannot be
/// given back for the kernel to decrypt.
#[derive(Debug, Default, Clone)]
pub struct RecordCursor {
    /// Header bytes seen of the current record (0..=5).
    header_seen: usize,
    /// The current record's header, as far as seen.
    header: [u8; 5],
    /// Payload bytes of the current record still to come.
    body_left: usize,
}

impl RecordCursor {
    /// Header: content type (1), legacy version (2), length (2), RFC 8446 §5.1.
    const HEADER: usize = 5;

    /// Follows `bytes`, the next bytes of the stream.
    pub fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let take = self.body_left.min(bytes.len());
                self.body_left -= take;
                bytes = &bytes[take..];
                continue;
            }
            let take = (Self::HEADER - self.header_seen).min(bytes.len());
            self.header[self.header_seen..self.header_seen + take].copy_from_slice(&bytes[..take]);
            self.header_seen += take;
            bytes = &bytes[take..];
            if self.header_seen == Self::HEADER {
                self.body_left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.header_seen = 0;
            }
        }
    }

    /// True when the bytes so far end exactly at a record's end.
    pub fn at_boundary(&self) -> bool {
        self.header_seen == 0 && self.body_left == 0
    }
}

/// Gives `bytes` (ciphertext from the client) to rustls, processing the
/// records it completes, and follows them with `records`. An error is
/// fatal: rustls has queued the alert that says why.
pub fn feed(
    conn: &mut rustls::ServerConnection,
    records: &mut RecordCursor,
    bytes: &[u8],
) -> Result<(), rustls::Error> {
    records.advance(bytes);
    let mut rest = bytes;
    // A pass that takes no bytes may still make room (processing frees the
    // buffer); two in a row mean rustls will take no more (its plaintext
    // buffer is full, or the peer said close_notify): refuse rather than spin.
    let mut stalled = false;
    while !rest.is_empty() {
        let before = rest.len();
        match conn.read_tls(&mut rest) {
            Ok(_) => {}
            // Its buffer is full: processing below makes room.
            Err(e) if e.kind() == std::io::ErrorKind::Other => {}
            Err(_) => return Err(rustls::Error::General("read_tls failed".into())),
        }
        conn.process_new_packets()?;
        if rest.len() == before {
            if stalled {
                return Err(rustls::Error::General("receive buffer full".into()));
            }
            stalled = true;
        } else {
            stalled = false;
        }
    }
    Ok(())
}

/// True when a TLS port's first bytes look like an HTTP/1 request line
/// (`GET /`, `HEAD /` ...): a client that should have used https://.
pub fn looks_like_plain_http(first: &[u8]) -> bool {
    let method_len = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=7).contains(&method_len) && first.get(method_len) == Some(&b' ')
}

/// True when the first bytes hold a ClientHello whose `client_version` is
/// below TLS 1.2 (SSLv3, TLS 1.0, 1.1): every client that can speak 1.2 or
/// 1.3 puts 0x0303 there (RFC 8446 §4.1.2). Only names why a handshake
/// failed; rustls decides whether it does.
pub fn offers_only_old_versions(first: &[u8]) -> bool {
    const HANDSHAKE: u8 = 22;
    const CLIENT_HELLO: u8 = 1;
    // Record header (5), handshake type (1) and length (3), then the version.
    match first {
        [HANDSHAKE, _, _, _, _, CLIENT_HELLO, _, _, _, major, minor, ..] => {
            u16::from_be_bytes([*major, *minor]) < 0x0303
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(kind: u8, len: usize) -> Vec<u8> {
        let mut bytes = vec![kind, 3, 3];
        bytes.extend_from_slice(&(len as u16).to_be_bytes());
        bytes.extend(std::iter::repeat_n(0xab, len));
        bytes
    }

    #[test]
    fn the_cursor_is_at_a_boundary_only_after_whole_records() {
        let mut cursor = RecordCursor::default();
        assert!(cursor.at_boundary());
        let stream = [record(22, 40), record(23, 0), record(23, 300)].concat();
        cursor.advance(&stream[..3]);
        assert!(!cursor.at_boundary(), "inside a header");
        cursor.advance(&stream[3..45]);
        assert!(cursor.at_boundary(), "after the first record");
        cursor.advance(&stream[45..50]);
        assert!(
            cursor.at_boundary(),
            "an empty record is whole after its header"
        );
        cursor.advance(&stream[50..60]);
        assert!(!cursor.at_boundary(), "inside a body");
        cursor.advance(&stream[60..]);
        assert!(cursor.at_boundary());
    }

    proptest! {
        /// However the stream is cut into reads, the cursor ends at a
        /// boundary exactly when every record is whole.
        #[test]
        fn any_split_of_whole_records_ends_at_a_boundary(
            lens in proptest::collection::vec(0usize..2000, 1..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
            short in 1usize..5,
        ) {
            let stream: Vec<u8> = lens.iter().flat_map(|&len| record(23, len)).collect();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len())).collect();
            points.sort_unstable();
            let mut cursor = RecordCursor::default();
            let mut at = 0;
            for point in points {
                cursor.advance(&stream[at..point]);
                at = point;
            }
            cursor.advance(&stream[at..]);
            prop_assert!(cursor.at_boundary());
            let mut partial = RecordCursor::default();
            partial.advance(&stream[..stream.len() - short.min(stream.len())]);
            prop_assert!(!partial.at_boundary() || short >= stream.len());
        }
    }

    #[test]
    fn client_hellos_below_tls12_are_recognised() {
        let hello = |major: u8, minor: u8| vec![22, 3, 1, 0, 100, 1, 0, 0, 96, major, minor, 0];
        assert!(offers_only_old_versions(&hello(3, 0)), "SSLv3");
        assert!(offers_only_old_versions(&hello(3, 1)), "TLS 1.0");
        assert!(offers_only_old_versions(&hello(3, 2)), "TLS 1.1");
        assert!(!offers_only_old_versions(&hello(3, 3)), "TLS 1.2 and 1.3");
        assert!(!offers_only_old_versions(&hello(3, 1)[..8]), "cut short");
        assert!(!offers_only_old_versions(b"GET / HTTP/1.1\r\n"));
    }

    #[test]
    fn feeding_more_than_rustls_takes_stops_instead_of_spinning() {
        let source = CertSource::from_pem(
            "test",
            include_bytes!("../../fuzz/certs/server.pem").to_vec(),
            include_bytes!("../../fuzz/certs/server.key").to_vec(),
        )
        .unwrap();
        let config = server_config(&source, TicketSecret::random(), false).unwrap();
        // One record header announcing 16 KiB, then far more than any
        // buffer takes in one go: either an error or all taken, never a hang.
        let mut flood = vec![22, 3, 1, 0x40, 0x00];
        flood.extend(std::iter::repeat_n(0, 200_000));
        let mut conn = rustls::ServerConnection::new(config).unwrap();
        let mut records = RecordCursor::default();
        let _ = feed(&mut conn, &mut records, &flood);
    }

    #[test]
    fn plain_http_on_the_tls_port_is_recognised() {
        assert!(looks_like_plain_http(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_plain_http(b"OPTIONS * HTTP/1.1"));
        assert!(!looks_like_plain_http(&record(22, 100)));
        assert!(!looks_like_plain_http(b"GE"));
        assert!(!looks_like_plain_http(b"get / HTTP/1.1"));
    }

    #[test]
    fn tickets_open_on_any_core_with_the_same_secret_and_never_with_another() {
        let secret = TicketSecret::random();
        let (core_a, core_b) = (Tickets::new(secret), Tickets::new(secret));
        let ticket = core_a.encrypt(b"session state").unwrap();
        assert_eq!(
            core_b.decrypt(&ticket).as_deref(),
            Some(&b"session state"[..])
        );
        assert_eq!(
            core_a.decrypt(&ticket).as_deref(),
            Some(&b"session state"[..])
        );
        let stranger = Tickets::new(TicketSecret::random());
        assert_eq!(stranger.decrypt(&ticket), None);
    }

    #[test]
    fn tampered_short_or_stale_tickets_do_not_open() {
        let tickets = Tickets::new(TicketSecret::random());
        let ticket = tickets.encrypt(b"state").unwrap();
        for at in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[at] ^= 1;
            assert_eq!(tickets.decrypt(&bad), None, "byte {at} flipped");
        }
        for len in 0..ticket.len() {
            assert_eq!(tickets.decrypt(&ticket[..len]), None);
        }
        // A ticket from two epochs ago: its key is gone.
        let old = Tickets::epoch_now() - 2;
        let mut stale = old.to_be_bytes().to_vec();
        stale.extend_from_slice(&ticket[4..]);
        assert_eq!(tickets.decrypt(&stale), None);
    }
}
