//! The per-core `Date` cache: formatting an IMF-fixdate costs more than the
//! rest of a small response head, so each core formats it once a second, and
//! reads the wall clock only then: requests in between reuse the reading on
//! the strength of the monotonic instant they were parsed at.

use crate::http::plan::Clock;
use crate::http::validators::{imf_fixdate, IMF_FIXDATE_LEN};
use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One core's view of the time, refreshed when the second changes.
#[derive(Debug, Default)]
pub struct DateCache {
    secs: Cell<u64>,
    text: Cell<[u8; IMF_FIXDATE_LEN]>,
    /// When the wall clock's second next changes, on the monotonic clock:
    /// until then the cached second stands. A step of the wall clock is
    /// seen at the next boundary, within a second.
    next_second: Cell<Option<Instant>>,
}

impl DateCache {
    /// The current second and its IMF-fixdate, for a request parsed at `at`
    /// (a recent reading of the monotonic clock).
    pub fn now(&self, at: Instant) -> (u64, [u8; IMF_FIXDATE_LEN]) {
        if self.next_second.get().is_some_and(|next| at < next) {
            return (self.secs.get(), self.text.get());
        }
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = wall.as_secs();
        let left = Duration::from_secs(1) - Duration::from_nanos(wall.subsec_nanos().into());
        self.next_second.set(Some(Instant::now() + left));
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
        let reading = cache.now(Instant::now());
        let text = std::str::from_utf8(&reading.1).unwrap();
        assert!(text.ends_with(" GMT"), "{text}");
        let parsed = httpdate::parse_http_date(text).unwrap();
        let secs = parsed.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(secs.abs_diff(reading.0) <= 1);
    }

    #[test]
    fn the_date_moves_on_with_the_second() {
        let cache = DateCache::default();
        let first = cache.now(Instant::now());
        assert_eq!(cache.now(Instant::now()).0, first.0, "within the second");
        std::thread::sleep(Duration::from_millis(1100));
        let later = cache.now(Instant::now());
        assert!(later.0 > first.0);
        assert_ne!(later.1, first.1);
    }
}
