//! Any bytes from a client on the TLS port, fed the way the transport feeds
//! them (`server::tls::feed`, cut into reads where the first byte says):
//! rustls with our configuration (SNI resolver, ticket sealer, ALPN) never
//! panics, an error stops the stream for good, and the record cursor that
//! decides the kernel hand-off agrees with a record walk of the same bytes.
//! The sniffers of the first bytes (plain HTTP, old versions) run too.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringcast::server::tls::{
    feed, looks_like_plain_http, offers_only_old_versions, server_config, CertSource,
    RecordCursor, TicketSecret,
};
use std::sync::{Arc, OnceLock};

fn config() -> Arc<rustls::ServerConfig> {
    static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let source = CertSource::from_pem(
                "fuzz",
                include_bytes!("../certs/server.pem").to_vec(),
                include_bytes!("../certs/server.key").to_vec(),
            )
            .expect("the fuzz certificate loads");
            server_config(&source, TicketSecret::random(), true).expect("a configuration")
        })
        .clone()
}

/// Whether `bytes` end exactly at a record boundary, walking headers.
fn ends_at_boundary(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 5) else { return false };
        at += 5 + usize::from(u16::from_be_bytes([header[3], header[4]]));
    }
    at == bytes.len()
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else { return };
    let _ = looks_like_plain_http(bytes);
    let _ = offers_only_old_versions(bytes);
    let mut conn = rustls::ServerConnection::new(config()).expect("a connection");
    let mut records = RecordCursor::default();
    let step = usize::from(cut).max(1);
    let mut fed = 0;
    for piece in bytes.chunks(step) {
        fed += piece.len();
        if feed(&mut conn, &mut records, piece).is_err() {
            break;
        }
        let mut out = Vec::new();
        while conn.wants_write() {
            if conn.write_tls(&mut out).is_err() {
                break;
            }
        }
    }
    assert_eq!(records.at_boundary(), ends_at_boundary(&bytes[..fed]));
});
