//! Any bytes: parse never panics, and a parsed head never claims more bytes than given.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = ringcast::http::request::parse(data) {
        assert!(used <= data.len());
    }
});
