//! What each connection asks for, and when: whole-resource GETs, random
//! aligned ranges, or a video player's paced sequential ranges with seeks;
//! closed loop, or an open-loop schedule at a fixed rate. Pure logic over
//! `Instant`s and a seeded RNG, so it is tested without sockets or sleeps.

use std::time::{Duration, Instant};

/// Chunks a player fetches back to back at start and after a seek, before
/// it settles into pacing at the bitrate (its start-up buffer).
pub const PLAYER_STARTUP_CHUNKS: u32 = 2;

/// splitmix64: small, fast, and good enough for offsets and seek times.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (bias below 2^-32 for our n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Exponentially distributed with the given mean: the gap between events
    /// of a Poisson process, so seeks come "at random times".
    pub fn exponential(&mut self, mean: Duration) -> Duration {
        Duration::from_secs_f64(-self.unit().ln() * mean.as_secs_f64())
    }
}

/// The request mix, from the flags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// GET of the whole resource.
    Whole,
    /// `Range: bytes=a-b` of `size` bytes at a random multiple of `size`.
    Ranges { size: u64 },
    /// Sequential `chunk`-byte ranges paced at `bitrate` bits/s, seeking to a
    /// random chunk every `seek_mean` on average (exponentially distributed).
    Player {
        bitrate: u64,
        chunk: u64,
        seek_mean: Duration,
    },
}

/// One planned request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// When the request should be sent. Latency is measured from here, not
    /// from the actual send, whenever it is set (open loop, player).
    pub intended: Option<Instant>,
    /// Inclusive byte range to ask for; `None` for the whole resource.
    pub range: Option<(u64, u64)>,
    /// Set for player requests: the playback time the chunk covers, so a
    /// response slower than this leaves the player short of data.
    pub play_time: Option<Duration>,
}

/// A fixed open-loop schedule: request `i` is due at `first + i * interval`.
#[derive(Debug, Clone)]
struct Schedule {
    first: Instant,
    interval: Duration,
    next: u64,
}

impl Schedule {
    fn at(&self, i: u64) -> Instant {
        self.first + self.interval.mul_f64(i as f64)
    }
}

/// A player's position and pacing.
#[derive(Debug, Clone)]
struct Player {
    chunk: u64,
    /// Playback time of one full chunk at the bitrate.
    chunk_time: Duration,
    seek_mean: Duration,
    /// Next byte to fetch.
    position: u64,
    /// Chunks still to fetch back to back (start-up buffer).
    burst: u32,
    /// When the next paced chunk is due.
    next_due: Instant,
    next_seek: Instant,
}

/// Plans one connection's requests.
#[derive(Debug, Clone)]
pub struct Planner {
    shape: Shape,
    /// Length of the resource, when the server told us.
    len: Option<u64>,
    rng: Rng,
    schedule: Option<Schedule>,
    player: Option<Player>,
    deadline: Instant,
    /// Seeks made so far (player only).
    pub seeks: u64,
}

impl Planner {
    /// `index` of `connections` active connections, starting at `start`. With
    /// `rate` (requests/s in total), each connection gets an equal share and
    /// the connections' schedules are staggered evenly over one interval.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shape: Shape,
        len: Option<u64>,
        seed: u64,
        index: u32,
        connections: u32,
        rate: Option<f64>,
        start: Instant,
        deadline: Instant,
    ) -> Planner {
        let mut rng = Rng::new(seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let schedule = rate.map(|rate| {
            let interval = Duration::from_secs_f64(connections as f64 / rate);
            Schedule {
                first: start + interval.mul_f64(index as f64 / connections as f64),
                interval,
                next: 0,
            }
        });
        let player = match (shape, len) {
            (
                Shape::Player {
                    bitrate,
                    chunk,
                    seek_mean,
                },
                Some(len),
            ) if len > 0 => Some(Player {
                chunk,
                chunk_time: Duration::from_secs_f64(chunk as f64 * 8.0 / bitrate as f64),
                seek_mean,
                position: rng.below(len.div_ceil(chunk)) * chunk,
                burst: PLAYER_STARTUP_CHUNKS,
                next_due: start,
                next_seek: start + rng.exponential(seek_mean),
            }),
            _ => None,
        };
        Planner {
            shape,
            len,
            rng,
            schedule,
            player,
            deadline,
            seeks: 0,
        }
    }

    /// The next request, or `None` once its time is at or past the deadline.
    pub fn next(&mut self, now: Instant) -> Option<Planned> {
        if let Some(player) = &mut self.player {
            let len = self.len.unwrap_or(0);
            if now >= player.next_seek {
                player.position = self.rng.below(len.div_ceil(player.chunk)) * player.chunk;
                player.burst = PLAYER_STARTUP_CHUNKS;
                player.next_seek = now + self.rng.exponential(player.seek_mean);
                self.seeks += 1;
            }
            let intended = if player.burst > 0 {
                player.burst -= 1;
                player.next_due = now + player.chunk_time;
                now
            } else {
                let due = player.next_due;
                player.next_due += player.chunk_time;
                due
            };
            if intended >= self.deadline {
                return None;
            }
            let first = player.position;
            let last = (first + player.chunk).min(len) - 1;
            player.position = last + 1;
            if player.position >= len {
                // The end of the video: the viewer starts it again.
                player.position = 0;
                player.burst = PLAYER_STARTUP_CHUNKS;
            }
            let play_time = player
                .chunk_time
                .mul_f64((last + 1 - first) as f64 / player.chunk as f64);
            return Some(Planned {
                intended: Some(intended),
                range: Some((first, last)),
                play_time: Some(play_time),
            });
        }
        let intended = match &mut self.schedule {
            Some(schedule) => {
                let at = schedule.at(schedule.next);
                schedule.next += 1;
                Some(at)
            }
            None => None,
        };
        if intended.unwrap_or(now) >= self.deadline {
            return None;
        }
        let range = match (self.shape, self.len) {
            (Shape::Ranges { size }, Some(len)) if len > 0 => {
                let first = self.rng.below(len.div_ceil(size)) * size;
                Some((first, (first + size).min(len) - 1))
            }
            _ => None,
        };
        Some(Planned {
            intended,
            range,
            play_time: None,
        })
    }

    /// Scheduled requests that were never sent because the run ended while
    /// this connection was behind schedule; `next_unsent` is the first of them.
    pub fn missed_from(&self, next_unsent: Instant) -> u64 {
        match &self.schedule {
            Some(schedule) if next_unsent < self.deadline => {
                let behind = (self.deadline - next_unsent).as_secs_f64();
                (behind / schedule.interval.as_secs_f64()).ceil() as u64
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn planner(shape: Shape, len: u64, rate: Option<f64>, start: Instant, secs: u64) -> Planner {
        Planner::new(
            shape,
            Some(len),
            7,
            0,
            1,
            rate,
            start,
            start + Duration::from_secs(secs),
        )
    }

    #[test]
    fn ranges_are_aligned_sized_and_inside_the_file() {
        let start = Instant::now();
        let len = 10 * 65536 + 100; // a short last block
        let mut p = planner(Shape::Ranges { size: 65536 }, len, None, start, 10);
        let mut saw_short = false;
        for _ in 0..2000 {
            let (first, last) = p.next(start).unwrap().range.unwrap();
            assert_eq!(first % 65536, 0);
            assert!(last < len);
            assert!(last - first < 65536);
            saw_short |= last - first + 1 == 100;
        }
        assert!(saw_short, "the last, short block is requested too");
    }

    #[test]
    fn closed_loop_stops_at_the_deadline() {
        let start = Instant::now();
        let mut p = planner(Shape::Whole, 10, None, start, 1);
        assert_eq!(p.next(start).unwrap().intended, None);
        assert_eq!(p.next(start).unwrap().range, None);
        assert!(p.next(start + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn open_loop_schedule_is_fixed_and_staggered() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(1);
        // 4 connections at 400/s: 100/s each, every 10 ms, offset by 2.5 ms.
        let mut c1 = Planner::new(
            Shape::Whole,
            Some(10),
            1,
            1,
            4,
            Some(400.0),
            start,
            deadline,
        );
        let first = c1.next(start).unwrap().intended.unwrap();
        assert_eq!(first - start, Duration::from_micros(2500));
        // However late the caller is, the schedule does not move.
        let second = c1
            .next(start + Duration::from_millis(500))
            .unwrap()
            .intended
            .unwrap();
        assert_eq!(second - first, Duration::from_millis(10));
        let mut count = 2;
        while c1.next(start + Duration::from_secs(5)).is_some() {
            count += 1;
        }
        assert_eq!(count, 100);
        // Behind by 100 ms at the end: 10 requests never sent.
        assert_eq!(c1.missed_from(deadline - Duration::from_millis(100)), 10);
        assert_eq!(c1.missed_from(deadline), 0);
    }

    #[test]
    fn player_bursts_then_paces_and_seeks() {
        let start = Instant::now();
        // 8 Mbit/s with 1 MiB chunks: one chunk of playback is 1.048576 s.
        let shape = Shape::Player {
            bitrate: 8_000_000,
            chunk: MIB,
            seek_mean: Duration::from_secs(3600),
        };
        let len = 100 * MIB;
        let mut p = planner(shape, len, None, start, 60);
        let a = p.next(start).unwrap();
        let b = p.next(start + Duration::from_millis(5)).unwrap();
        assert_eq!(a.intended, Some(start));
        assert_eq!(b.intended, Some(start + Duration::from_millis(5)));
        let (a0, a1) = a.range.unwrap();
        assert_eq!(a0 % MIB, 0);
        assert_eq!(a1 - a0 + 1, MIB.min(len - a0));
        assert_eq!(b.range.unwrap().0, (a1 + 1) % len, "sequential");
        // After the start-up burst, one chunk per chunk of playback time.
        let c = p.next(start + Duration::from_millis(10)).unwrap();
        let d = p.next(start + Duration::from_millis(20)).unwrap();
        let chunk_time = Duration::from_nanos(1_048_576_000);
        assert_eq!(c.intended.unwrap() - b.intended.unwrap(), chunk_time);
        assert_eq!(d.intended.unwrap() - c.intended.unwrap(), chunk_time);
        assert_eq!(p.seeks, 0);
    }

    #[test]
    fn player_seeks_at_random_times() {
        let start = Instant::now();
        let shape = Shape::Player {
            bitrate: 1_000_000,
            chunk: MIB,
            seek_mean: Duration::from_millis(100),
        };
        let mut p = planner(shape, 1000 * MIB, None, start, 3600);
        let mut now = start;
        let mut jumps = 0;
        let mut last_end = None;
        for _ in 0..200 {
            now += Duration::from_millis(50);
            let (first, last) = p.next(now).unwrap().range.unwrap();
            if last_end.is_some_and(|end: u64| first != end + 1) {
                jumps += 1;
            }
            last_end = Some(last);
        }
        assert!(p.seeks > 20, "seeks {}", p.seeks);
        assert!(jumps > 20);
    }

    #[test]
    fn rng_is_uniform_enough() {
        let mut rng = Rng::new(1);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            buckets[rng.below(10) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (9_000..11_000).contains(&n)),
            "{buckets:?}"
        );
        let mean: f64 = (0..10_000)
            .map(|_| rng.exponential(Duration::from_secs(1)).as_secs_f64())
            .sum::<f64>()
            / 10_000.0;
        assert!((0.9..1.1).contains(&mean), "{mean}");
    }
}
