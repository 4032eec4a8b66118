//! Any request-target: a cleaned path never climbs, never hides a dot segment,
//! NUL or backslash.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = ringcast::http::path::clean(data) {
        assert!(!path.relative.starts_with(b"/"));
        assert!(!path.relative.contains(&0) && !path.relative.contains(&b'\\'));
        if !path.relative.is_empty() {
            for segment in path.relative.split(|&b| b == b'/') {
                assert!(!segment.is_empty() && !segment.starts_with(b"."));
            }
        }
    }
});
