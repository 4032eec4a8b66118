//! Any bytes: parse never panics; a parsed head never claims more bytes than
//! given nor more than MAX_HEAD, and parses the same from exactly those bytes;
//! "need more bytes" is never the answer once MAX_HEAD bytes are buffered
//! (server/conn.rs stops growing its read buffer there).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringcast::http::request::{parse, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Some((request, used))) => {
            assert!(0 < used && used <= data.len() && used <= MAX_HEAD);
            assert_eq!(parse(&data[..used]), Ok(Some((request, used))));
        }
        Ok(None) => assert!(data.len() < MAX_HEAD),
        Err(_) => {}
    }
});
