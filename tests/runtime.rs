//! The vendored runtime (vendor/glommio) under the patterns ringcast's cores
//! use, where a fault would take a whole core down rather than one request.

use futures_lite::{future, AsyncRead, AsyncReadExt};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Each core's task polls its accept loop beside a shutdown check that wakes
/// it every 25 ms, so a pending accept is polled again and again while no
/// client comes. Upstream glommio kept a new waker clone per poll; the task's
/// 16-bit reference count overflowed after 32,767 of them (about 14 idle
/// minutes) and the core's thread panicked (vendor/glommio/PATCHES.md,
/// change 10). Here 40,000 polls of one pending accept take milliseconds.
#[test]
fn a_pending_accept_survives_any_number_of_polls() {
    on_executor(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let spin = async {
            for _ in 0..40_000 {
                future::yield_now().await;
            }
        };
        // `or` polls the accept first on every wake-up of the task.
        let outcome = future::or(async { listener.accept().await.map(|_| ()) }, async {
            spin.await;
            Ok(())
        });
        outcome.await.expect("no connection was expected");
    });
}

/// Runs `test` on a fresh executor's thread and fails if it panics there.
fn on_executor<F, T>(test: F)
where
    F: FnOnce() -> T + Send + 'static,
    T: std::future::Future<Output = ()> + 'static,
{
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(test)
        .expect("executor starts");
    handle.join().expect("the test ran on the executor");
}

/// A glommio stream (reading through the ring, as ringcast's do) and the std
/// client connected to it.
async fn connected_pair() -> (glommio::net::TcpStream, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let client = std::thread::spawn(move || std::net::TcpStream::connect(addr).expect("connect"));
    let mut server = listener.accept().await.expect("accept");
    server.set_ring_recv(true);
    (server, client.join().expect("client thread"))
}

/// Sends one byte every `gap`, `count` times, then keeps the connection open
/// for `linger`.
fn trickle(mut client: std::net::TcpStream, count: usize, gap: Duration, linger: Duration) {
    std::thread::spawn(move || {
        for _ in 0..count {
            std::thread::sleep(gap);
            client.write_all(b"x").expect("client write");
        }
        std::thread::sleep(linger);
    });
}

/// Reads one byte from a client that sends nothing more and checks that the
/// read times out after `timeout` and well within a second of it. A read
/// left with no timer would wait forever: a 3 s guard fails it instead.
async fn assert_times_out_after(server: &mut glommio::net::TcpStream, timeout: Duration) {
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = async { Some(server.read(&mut byte).await) };
    let guard = async {
        glommio::timer::sleep(Duration::from_secs(3)).await;
        None
    };
    let error = future::or(read, guard)
        .await
        .expect("the read never timed out")
        .expect_err("no more bytes come");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    let waited = started.elapsed();
    assert!(
        waited >= timeout && waited < timeout + Duration::from_millis(800),
        "timed out after {waited:?}, the timeout being {timeout:?}"
    );
}

/// Counts the clones of a waker alive (the test's own included).
struct CountedWaker;

impl std::task::Wake for CountedWaker {
    fn wake(self: Arc<Self>) {}
}

/// Reads the byte `client` sends with `server` polled by hand under `waker`
/// (no task's): the read first goes pending, registering its timer with that
/// waker, then completes once the reactor has seen the byte.
async fn read_one_byte_under(
    waker: &std::task::Waker,
    server: &mut glommio::net::TcpStream,
    client: &mut std::net::TcpStream,
) {
    let mut cx = std::task::Context::from_waker(waker);
    let mut byte = [0u8; 1];
    let pending = Pin::new(&mut *server).poll_read(&mut cx, &mut byte);
    assert!(pending.is_pending(), "nothing was sent yet");
    client.write_all(b"x").unwrap();
    loop {
        glommio::timer::sleep(Duration::from_millis(5)).await;
        if let Poll::Ready(n) = Pin::new(&mut *server).poll_read(&mut cx, &mut byte) {
            assert_eq!(n.expect("read"), 1);
            return;
        }
    }
}

/// Read timeouts keep one reactor timer per connection across completed
/// reads (PATCHES.md change 11): a timer left from an earlier read fires in
/// the middle of a later one, which must not time out then, but at its own
/// deadline.
#[test]
fn a_read_times_out_at_its_own_deadline_after_many_that_did_not() {
    on_executor(|| async {
        let (mut server, client) = connected_pair().await;
        let timeout = Duration::from_millis(200);
        server.set_read_timeout(Some(timeout)).unwrap();
        // 40 bytes over about 400 ms: the first read's timer fires halfway
        // through.
        let gap = Duration::from_millis(10);
        trickle(client, 40, gap, Duration::from_secs(5));
        let mut byte = [0u8; 1];
        for i in 0..40 {
            let n = server.read(&mut byte).await;
            let n = n.unwrap_or_else(|e| panic!("read {i} failed early: {e}"));
            assert_eq!(n, 1);
        }
        assert_times_out_after(&mut server, timeout).await;
    });
}

/// A kept timer from a longer timeout must not outlive a shorter one set
/// since (ringcast shortens the idle timeout to the header timeout once a
/// request has started).
#[test]
fn a_shorter_timeout_is_not_outlived_by_a_kept_timer() {
    on_executor(|| async {
        let (mut server, client) = connected_pair().await;
        server
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        trickle(client, 1, Duration::ZERO, Duration::from_secs(10));
        let mut byte = [0u8; 1];
        assert_eq!(server.read(&mut byte).await.expect("first read"), 1);
        let shorter = Duration::from_millis(100);
        server.set_read_timeout(Some(shorter)).unwrap();
        assert_times_out_after(&mut server, shorter).await;
    });
}

/// A kept timer that fired while no read was pending (its wake-up went
/// unseen) must not be trusted by the next read.
#[test]
fn a_timer_that_fired_between_reads_is_not_kept() {
    on_executor(|| async {
        let (mut server, client) = connected_pair().await;
        let timeout = Duration::from_millis(100);
        server.set_read_timeout(Some(timeout)).unwrap();
        trickle(client, 1, Duration::ZERO, Duration::from_secs(10));
        let mut byte = [0u8; 1];
        assert_eq!(server.read(&mut byte).await.expect("first read"), 1);
        glommio::timer::sleep(3 * timeout).await;
        assert_times_out_after(&mut server, timeout).await;
    });
}

/// A kept timer wakes the task that registered it: a read from another
/// task (another waker) registers its own.
#[test]
fn a_kept_timer_is_not_trusted_to_wake_another_task() {
    on_executor(|| async {
        let (mut server, mut client) = connected_pair().await;
        let timeout = Duration::from_millis(200);
        server.set_read_timeout(Some(timeout)).unwrap();
        // The first read's timer wakes no task.
        let waker = std::task::Waker::from(Arc::new(CountedWaker));
        read_one_byte_under(&waker, &mut server, &mut client).await;
        assert_times_out_after(&mut server, timeout).await;
    });
}

/// A stream dropped with its read timer kept leaves no timer behind: left in
/// the reactor, it would hold the connection's task until it fired.
#[test]
fn a_dropped_stream_leaves_no_timer_holding_its_task() {
    on_executor(|| async {
        let (mut server, mut client) = connected_pair().await;
        server
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let counted = Arc::new(CountedWaker);
        let waker = std::task::Waker::from(counted.clone());
        read_one_byte_under(&waker, &mut server, &mut client).await;
        drop(server);
        drop(waker);
        let clones = Arc::strong_count(&counted);
        assert_eq!(clones, 1, "a waker clone outlived the stream");
    });
}
