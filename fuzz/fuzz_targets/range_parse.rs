//! Any Range value and length: the selection stays inside the file and never
//! carries more bytes than the file has.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringcast::http::range::{parse, resolve, Selection};

fuzz_target!(|input: (u64, &[u8])| {
    let (length, value) = input;
    let Ok(specs) = parse(value) else { return };
    let ranges = match resolve(&specs, length) {
        Selection::Single(r) => vec![r],
        Selection::Multiple(v) => v,
        Selection::Full | Selection::Unsatisfiable => return,
    };
    let mut total: u64 = 0;
    for r in &ranges {
        assert!(r.start <= r.end && r.end < length);
        total += r.byte_count();
    }
    assert!(total <= length);
});
