//! The per-core `Date` cache: formatting an IMF-fixdate costs more than the
//! rest of a small response head, so each core formats it once a second.

use crate::http::plan::Clock;
use crate::http::validators::{imf_fixdate, IMF_FIXDATE_LEN};
use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// One core's view of the time, refreshed when the second changes.
#[derive(Debug, Default)]
pub struct DateCache {
    secs: Cell<u64>,
    text: Cell<[u8; IMF_FIXDATE_LEN]>,
}

impl DateCache {
    /// The current second and its IMF-fixdate.
    pub fn now(&self) -> (u64, [u8; IMF_FIXDATE_LEN]) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs.get() || self.text.get()[0] == 0 {
            self.secs.set(secs);
            self.text.set(imf_fixdate(secs));
        }
        (secs, self.text.get())
    }
}

/// Borrows a [`Clock`] for the planner from a cached reading.
pub fn clock(reading: &(u64, [u8; IMF_FIXDATE_LEN])) -> Clock<'_> {
    Clock {
        now: reading.0,
        date: &reading.1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_an_imf_fixdate_that_parses_back() {
        let cache = DateCache::default();
        let reading = cache.now();
        let text = std::str::from_utf8(&reading.1).unwrap();
        assert!(text.ends_with(" GMT"), "{text}");
        let parsed = httpdate::parse_http_date(text).unwrap();
        let secs = parsed.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(secs.abs_diff(reading.0) <= 1);
    }
}
