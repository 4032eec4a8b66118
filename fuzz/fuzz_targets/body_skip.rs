//! Any bytes as a chunked body, fed in two pieces: never panics, never
//! consumes more than it was given.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringcast::http::body::BodySkipper;
use ringcast::http::request::BodyFraming;

fuzz_target!(|input: (u8, &[u8])| {
    let (split, data) = input;
    let split = usize::from(split).min(data.len());
    let mut skipper = BodySkipper::new(BodyFraming::Chunked);
    if let Ok(used) = skipper.skip(&data[..split]) {
        assert!(used <= split);
        if used == split {
            if let Ok(more) = skipper.skip(&data[split..]) {
                assert!(more <= data.len() - split);
            }
        }
    }
});
