//! Any bytes as a request body, framed by Content-Length or chunked: feeding
//! them whole, in two pieces, or byte by byte gives the same verdict (bytes
//! consumed, done or not, error or not) and the same decoded content, and
//! never consumes more than given.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringcast::http::body::BodyDecoder;
use ringcast::http::request::BodyFraming;

/// Feeds `pieces` in order; stops at the first error or once done.
fn run<'a>(
    framing: BodyFraming,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> (usize, bool, bool, Vec<u8>) {
    let mut skipper = BodyDecoder::new(framing);
    let mut used = 0;
    let mut out = Vec::new();
    for piece in pieces {
        match skipper.decode(piece, &mut out) {
            Ok(n) => {
                assert!(n <= piece.len());
                used += n;
                if n < piece.len() {
                    assert!(skipper.is_done(), "stopped early without being done");
                    break;
                }
            }
            Err(_) => return (used, skipper.is_done(), true, out),
        }
        if skipper.is_done() {
            break;
        }
    }
    assert!(out.len() <= used, "more content than bytes consumed");
    (used, skipper.is_done(), false, out)
}

fuzz_target!(|input: (u16, Option<u16>, &[u8])| {
    let (split, length, data) = input;
    let framing = match length {
        None => BodyFraming::Chunked,
        Some(0) => BodyFraming::None,
        Some(n) => BodyFraming::Length(u64::from(n)),
    };
    let split = usize::from(split).min(data.len());
    let whole = run(framing, std::iter::once(data));
    let two = run(framing, [&data[..split], &data[split..]].into_iter());
    let bytes = run(framing, data.chunks(1));
    // An error's position may differ by piece boundaries only in `used`.
    assert_eq!((whole.1, whole.2), (two.1, two.2));
    assert_eq!((whole.1, whole.2), (bytes.1, bytes.2));
    if !whole.2 {
        assert_eq!(whole.0, two.0);
        assert_eq!(whole.0, bytes.0);
        assert_eq!(whole.3, two.3);
        assert_eq!(whole.3, bytes.3);
    }
    if let BodyFraming::Length(n) = framing {
        let taken = (n as usize).min(data.len());
        assert_eq!(
            (whole.0, whole.1, whole.2),
            (taken, n as usize <= data.len(), false)
        );
        assert_eq!(whole.3, &data[..taken]);
    }
});
