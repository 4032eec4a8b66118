//! Any request head against any file and policy: planning (preconditions,
//! ranges, CORS, Cache-Control, sidecar encodings, head encoding) never panics,
//! file bodies stay inside the file, and the head's Content-Length is exactly
//! the body that follows.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringcast::http::encoding::Encoding;
use ringcast::http::error::Status;
use ringcast::http::plan::{
    plan_error, plan_file, plan_preflight, plan_written, route, Body, Clock, Context, Route,
};
use ringcast::http::policy::{CacheRule, Cors, Policy};
use ringcast::http::upload::{plan_write, Ingest, Tokens, Write};
use ringcast::http::validators::FileMeta;

/// The value of the head's Content-Length field.
fn content_length(head: &[u8]) -> Option<u64> {
    let name = b"\r\nContent-Length: ";
    let at = head.windows(name.len()).position(|w| w == name)? + name.len();
    let digits = &head[at..at + head[at..].iter().position(|&b| b == b'\r')?];
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn policy(bits: u8) -> Policy {
    let cors = match bits & 3 {
        0 => None,
        1 => Some(Cors::AnyOrigin),
        _ => Some(Cors::parse("https://a.example, http://b.example:8080").unwrap()),
    };
    let cache_rules = if bits & 4 != 0 {
        ["/live/=no-cache", ".m4s=max-age=31536000", "*=max-age=60"]
            .iter()
            .map(|r| CacheRule::parse(r).unwrap())
            .collect()
    } else {
        Vec::new()
    };
    let ingest = (bits & 16 != 0).then(|| Ingest::new(&["/live/".into()], 1 << 20).unwrap());
    Policy {
        cors,
        cache_rules,
        index: bits & 8 != 0,
        ingest,
    }
}

fuzz_target!(|input: (u64, u64, i64, u32, u8, &[u8])| {
    let (len, inode, mtime_secs, mtime_nsec, bits, raw) = input;
    let Ok(Some((request, _))) = ringcast::http::request::parse(raw) else {
        return;
    };
    // What server/fs.rs builds from fstat: st_mtime is any time_t and
    // st_mtime_nsec is below 10^9 (st_size is at most i64::MAX).
    let len = len & i64::MAX as u64;
    let file = FileMeta {
        len,
        inode,
        mtime_nanos: i128::from(mtime_secs) * 1_000_000_000
            + i128::from(mtime_nsec % 1_000_000_000),
    };
    let policy = policy(bits);
    let encoding = match bits >> 4 & 3 {
        1 => Some(Encoding::Brotli),
        2 => Some(Encoding::Gzip),
        _ => None,
    };
    let ctx = Context {
        clock: Clock {
            now: 1_700_000_000,
            date: b"Tue, 14 Nov 2023 22:13:20 GMT",
        },
        policy: &policy,
    };
    let mut head = Vec::new();
    match route(&request, &policy) {
        Ok(Route::File(path)) => {
            let plan = plan_file(&request, &path, &file, encoding, &ctx, &mut head);
            match &plan.body {
                Body::File(r) => {
                    assert!(r.start <= r.end && r.end < len);
                    assert_eq!(content_length(&head), Some(r.byte_count()));
                    assert!(head.ends_with(b"\r\n\r\n"));
                }
                Body::Multipart { parts, closing } => {
                    assert!(parts.len() >= 2);
                    let mut ranges: Vec<_> = parts.iter().map(|p| p.range).collect();
                    ranges.sort_by_key(|r| r.start);
                    assert!(ranges.iter().all(|r| r.start <= r.end && r.end < len));
                    assert!(ranges.windows(2).all(|w| w[0].end + 1 < w[1].start));
                    let total = parts
                        .iter()
                        .map(|p| p.head.len() as u128 + u128::from(p.range.byte_count()))
                        .sum::<u128>()
                        + closing.len() as u128;
                    assert_eq!(content_length(&head).map(u128::from), Some(total));
                    assert!(head.ends_with(b"\r\n\r\n"));
                }
                Body::Generated(page) => {
                    assert_eq!(content_length(&head), Some(page.len() as u64));
                }
                Body::None => {}
            }
        }
        Ok(Route::Preflight) => {
            plan_preflight(&request, &ctx, &mut head);
        }
        Ok(Route::Write(path)) => {
            let ingest = policy.ingest.as_ref().expect("writes route only under --ingest");
            assert!(ingest.covers(&path));
            let tokens = Tokens::parse("fuzz-token").unwrap();
            match plan_write(&request, path, ingest, &tokens) {
                Ok(Write::Put { path, .. } | Write::Delete { path }) => assert!(ingest.covers(&path)),
                Err(e) => {
                    plan_error(e, Some(&request), &ctx, &mut head);
                }
            }
            if head.is_empty() {
                plan_written(&request, Status::Created, &ctx, &mut head);
            }
        }
        Err(e) => {
            plan_error(e, Some(&request), &ctx, &mut head);
        }
    }
    assert!(head.windows(4).any(|w| w == b"\r\n\r\n"));
    // Nothing from the request may split a header line.
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(head[..end]
        .windows(2)
        .all(|w| (w[0] == b'\r') == (w[1] == b'\n')));
});
