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
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(|| async {
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
        })
        .expect("executor starts");
    handle.join().expect("the executor's thread did not panic");
}

/// A glommio stream and the std client connected to it.
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

/// Read timeouts keep one reactor timer per connection across completed
/// reads (PATCHES.md change 11): a timer left from an earlier read fires in
/// the middle of a later one, which must not time out then, but at its own
/// deadline.
#[test]
fn a_read_times_out_at_its_own_deadline_after_many_that_did_not() {
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(|| async {
            let (mut server, client) = connected_pair().await;
            let timeout = Duration::from_millis(200);
            server.set_read_timeout(Some(timeout)).unwrap();
            // 40 bytes over about 400 ms: the first read's timer fires
            // halfway through.
            trickle(
                client,
                40,
                Duration::from_millis(10),
                Duration::from_secs(5),
            );
            let mut byte = [0u8; 1];
            for i in 0..40 {
                let n = server.read(&mut byte).await;
                let n = n.unwrap_or_else(|e| panic!("read {i} failed early: {e}"));
                assert_eq!(n, 1);
            }
            let started = Instant::now();
            let error = server
                .read(&mut byte)
                .await
                .expect_err("no more bytes come");
            assert_eq!(error.kind(), io::ErrorKind::TimedOut);
            let waited = started.elapsed();
            assert!(
                waited >= timeout && waited < timeout + Duration::from_secs(1),
                "timed out after {waited:?}"
            );
        })
        .expect("executor starts");
    handle.join().expect("the test ran on the executor");
}

/// A kept timer from a longer timeout must not outlive a shorter one set
/// since (ringcast shortens the idle timeout to the header timeout once a
/// request has started).
#[test]
fn a_shorter_timeout_is_not_outlived_by_a_kept_timer() {
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(|| async {
            let (mut server, client) = connected_pair().await;
            server
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            trickle(client, 1, Duration::ZERO, Duration::from_secs(10));
            let mut byte = [0u8; 1];
            assert_eq!(server.read(&mut byte).await.expect("first read"), 1);
            server
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let started = Instant::now();
            let error = server
                .read(&mut byte)
                .await
                .expect_err("no more bytes come");
            assert_eq!(error.kind(), io::ErrorKind::TimedOut);
            let waited = started.elapsed();
            assert!(
                waited < Duration::from_secs(1),
                "timed out after {waited:?}"
            );
        })
        .expect("executor starts");
    handle.join().expect("the test ran on the executor");
}

/// Reads one byte from a client that sends nothing more, and says how long
/// the read took to time out; fails if it has not within 3 s (a read left
/// with no timer would wait forever).
async fn time_out_one_read(server: &mut glommio::net::TcpStream) -> Duration {
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
    started.elapsed()
}

/// A kept timer that fired while no read was pending (its wake-up went
/// unseen) must not be trusted by the next read.
#[test]
fn a_timer_that_fired_between_reads_is_not_kept() {
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(|| async {
            let (mut server, client) = connected_pair().await;
            let timeout = Duration::from_millis(100);
            server.set_read_timeout(Some(timeout)).unwrap();
            trickle(client, 1, Duration::ZERO, Duration::from_secs(10));
            let mut byte = [0u8; 1];
            assert_eq!(server.read(&mut byte).await.expect("first read"), 1);
            glommio::timer::sleep(3 * timeout).await;
            let waited = time_out_one_read(&mut server).await;
            assert!(
                waited >= timeout && waited < Duration::from_secs(1),
                "timed out after {waited:?}"
            );
        })
        .expect("executor starts");
    handle.join().expect("the test ran on the executor");
}

/// A kept timer wakes the task that registered it: a read from another
/// task (another waker) registers its own.
#[test]
fn a_kept_timer_is_not_trusted_to_wake_another_task() {
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(|| async {
            let (mut server, mut client) = connected_pair().await;
            let timeout = Duration::from_millis(200);
            server.set_read_timeout(Some(timeout)).unwrap();
            // The first read goes pending under a waker of no task, so its
            // timer would wake nobody.
            let counted = Arc::new(CountedWaker);
            let waker = std::task::Waker::from(counted);
            let mut cx = std::task::Context::from_waker(&waker);
            let mut byte = [0u8; 1];
            let pending = Pin::new(&mut server).poll_read(&mut cx, &mut byte);
            assert!(pending.is_pending(), "nothing was sent yet");
            client.write_all(b"x").unwrap();
            loop {
                glommio::timer::sleep(Duration::from_millis(5)).await;
                if let Poll::Ready(n) = Pin::new(&mut server).poll_read(&mut cx, &mut byte) {
                    assert_eq!(n.expect("read"), 1);
                    break;
                }
            }
            let waited = time_out_one_read(&mut server).await;
            assert!(
                waited >= timeout && waited < Duration::from_secs(1),
                "timed out after {waited:?}"
            );
            drop(client);
        })
        .expect("executor starts");
    handle.join().expect("the test ran on the executor");
}

/// Counts the clones of a waker alive (the test's own included).
struct CountedWaker;

impl std::task::Wake for CountedWaker {
    fn wake(self: Arc<Self>) {}
}

/// A stream dropped with its read timer kept leaves no timer behind: left in
/// the reactor, it would hold the connection's task until it fired.
#[test]
fn a_dropped_stream_leaves_no_timer_holding_its_task() {
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(|| async {
            let (mut server, mut client) = connected_pair().await;
            server
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let counted = Arc::new(CountedWaker);
            let waker = std::task::Waker::from(counted.clone());
            let mut cx = std::task::Context::from_waker(&waker);
            let mut byte = [0u8; 1];
            let pending = Pin::new(&mut server).poll_read(&mut cx, &mut byte);
            assert!(pending.is_pending(), "nothing was sent yet");
            client.write_all(b"x").unwrap();
            // The read completes once the reactor has seen the bytes.
            loop {
                glommio::timer::sleep(Duration::from_millis(5)).await;
                if let Poll::Ready(n) = Pin::new(&mut server).poll_read(&mut cx, &mut byte) {
                    assert_eq!(n.expect("read"), 1);
                    break;
                }
            }
            drop(server);
            drop(waker);
            assert_eq!(
                Arc::strong_count(&counted),
                1,
                "a waker clone outlived the stream"
            );
        })
        .expect("executor starts");
    handle.join().expect("the test ran on the executor");
}
