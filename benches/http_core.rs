//! Micro-benchmarks of the sans-io hot path: what every request costs in user
//! space before a byte moves. Run with `cargo bench --bench http_core`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringcast::http::plan::{plan_file, route, Clock, Context, Route};
use ringcast::http::policy::Policy;
use ringcast::http::request::parse;
use ringcast::http::validators::FileMeta;
use ringcast::http::{range, request::Conditionals, validators};

/// What a browser's `<video>` sends when it seeks.
const PLAYER_REQUEST: &[u8] = b"GET /videos/big_buck_bunny_1080p.mp4 HTTP/1.1\r\n\
Host: media.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\n\
Accept: */*\r\nAccept-Encoding: identity;q=1, *;q=0\r\nAccept-Language: en-US,en;q=0.9\r\n\
Range: bytes=1048576-\r\nReferer: https://example.com/watch\r\nConnection: keep-alive\r\n\r\n";

const FILE: FileMeta = FileMeta {
    len: 734_003_200,
    inode: 1_234_567,
    mtime_nanos: 1_700_000_000_123_456_789,
};

const CLOCK: Clock<'static> = Clock {
    now: 1_700_000_100,
    date: b"Tue, 14 Nov 2023 22:15:00 GMT",
};

fn request_parse(c: &mut Criterion) {
    c.bench_function("request_parse", |b| {
        b.iter(|| parse(black_box(PLAYER_REQUEST)).unwrap().unwrap().1)
    });
}

fn range_parse(c: &mut Criterion) {
    c.bench_function("range_single", |b| {
        b.iter(|| {
            range::resolve(
                &range::parse(black_box(b"bytes=1048576-2097151")).unwrap(),
                734_003_200,
            )
        })
    });
    c.bench_function("range_multi", |b| {
        b.iter(|| {
            range::resolve(
                &range::parse(black_box(b"bytes=0-99,200-299,-100")).unwrap(),
                734_003_200,
            )
        })
    });
}

fn preconditions(c: &mut Criterion) {
    let etag = FILE.etag();
    let mut conditionals = Conditionals::default();
    conditionals.if_none_match.push(b"\"abc\", W/\"def\"");
    conditionals.if_range = ringcast::http::request::Single::One(etag.as_bytes());
    let v = validators::Validators {
        etag: etag.as_bytes(),
        last_modified: 1_700_000_000,
        now: 1_700_000_100,
    };
    c.bench_function("preconditions", |b| {
        b.iter(|| validators::evaluate(black_box(&conditionals), true, &v))
    });
}

fn response_head(c: &mut Criterion) {
    let (request, _) = parse(PLAYER_REQUEST).unwrap().unwrap();
    let policy = Policy::default();
    let Ok(Route::File(path)) = route(&request, &policy) else {
        panic!("the player request routes to a file")
    };
    let ctx = Context {
        clock: CLOCK,
        policy: &policy,
    };
    let mut head = Vec::with_capacity(512);
    c.bench_function("plan_and_head", |b| {
        b.iter(|| {
            head.clear();
            plan_file(black_box(&request), &path, &FILE, None, &ctx, &mut head).status
        })
    });
}

criterion_group!(
    benches,
    request_parse,
    range_parse,
    preconditions,
    response_head
);
criterion_main!(benches);
