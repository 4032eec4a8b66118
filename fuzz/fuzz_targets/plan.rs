//! Any request head against any file: planning (preconditions, ranges, head
//! encoding) never panics and file bodies stay inside the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringcast::http::plan::{plan_error, plan_file, route, Body, Clock};
use ringcast::http::validators::FileMeta;

fuzz_target!(|input: (u64, u64, i64, &[u8])| {
    let (len, inode, mtime, raw) = input;
    let Ok(Some((request, _))) = ringcast::http::request::parse(raw) else { return };
    let file = FileMeta { len, inode, mtime_nanos: i128::from(mtime) };
    let clock = Clock { now: 1_700_000_000, date: b"Tue, 14 Nov 2023 22:13:20 GMT" };
    let mut head = Vec::new();
    match route(&request) {
        Ok(path) => {
            let plan = plan_file(&request, &path, &file, &clock, &mut head);
            match plan.body {
                Body::File(r) => assert!(r.end < len),
                Body::Multipart { parts, .. } => assert!(parts.iter().all(|p| p.range.end < len)),
                Body::None => {}
            }
        }
        Err(e) => {
            plan_error(e, Some(&request), &clock, &mut head);
        }
    }
    assert!(head.windows(4).any(|w| w == b"\r\n\r\n"));
});
