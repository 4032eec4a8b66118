//! The vendored runtime (vendor/glommio) under the patterns ringcast's cores
//! use, where a fault would take a whole core down rather than one request.

use futures_lite::future;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

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
