//! Model 10: the sleep/wake protocol with an *async* waiter (`src/reactor.rs`): a future that announces
//! itself in the ring's `WaitCell` exactly as a blocked thread does, then hands `(seq, expected,
//! waker)` to the process's reactor instead of sleeping in `futex_wait`. The reactor runs on its own
//! loom thread (`ringwire::reactor::__loom_run`) and sleeps in the modelled `futex_waitv` (all of its
//! words under the futex model's one mutex; a wake of any word wakes it). The future is driven by
//! `loom::future::block_on`, which parks its thread until the waker is called: a lost wake-up
//! anywhere on the path (notifier → futex → reactor → waker) is a loom deadlock.
//! Each model also checks what the async futures promise beyond waking: a future dropped after it
//! registered loses no message and leaves no sleeper counted.
//! Preemption bound: per test, the `Bound` passed to `common::model` (`run.sh` sets LOOM_MAX_PREEMPTIONS=2).

mod common;
use common::*;
use ringwire::mpmc;
use ringwire::RingConfig;
use std::future::Future;
use std::task::Poll;

/// Runs the model's reactor thread around `body` and stops it after (the rings `body` uses must
/// outlive the reactor: they are dropped by the caller after this returns).
fn with_reactor<T>(body: impl FnOnce() -> T) -> T {
    let reactor = loom::thread::spawn(ringwire::reactor::__loom_run);
    let r = body();
    ringwire::reactor::__loom_stop();
    reactor.join().unwrap();
    r
}

/// Polls `fut` once: `Some(output)` if it completed, `None` if it is pending (registered).
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    loom::future::block_on(std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *fut).poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    }))
}

/// Data direction: an async `recv_async` on an empty ring (announce, re-check, register with the
/// reactor) races a `try_send` (commit, barrier, `sleepers` load, bump + wake). Whichever way they
/// interleave, the future completes with the message.
#[test]
fn async_recv_registering_while_a_send_publishes_no_lost_wakeup() {
    model("async/data ready", Bound::Env, || {
        let (mut tx, mut rx) = channel();
        let tx = with_reactor(|| {
            let p = loom::thread::spawn(move || {
                tx.try_send(&payload(1, 40)).expect("try_send");
                tx
            });
            loom::future::block_on(async {
                check(&rx.recv_async().await.expect("recv_async"), 1, 40);
            });
            p.join().unwrap()
        });
        drop((tx, rx));
    });
}

/// Space direction: the ring is full (see `wake.rs`); an async `send_async` races the consumer's
/// `try_recv`, whose release publishes `head` and notifies the space cell. The future gets through,
/// and everything is read back intact.
#[test]
fn async_send_registering_while_a_recv_frees_space_no_lost_wakeup() {
    const LENS: [usize; 3] = [1500, 2000, 1200];
    model("async/space ready", Bound::Env, || {
        let (mut tx, mut rx) = channel();
        tx.try_send(&payload(0, LENS[0])).expect("m0 fits");
        tx.try_send(&payload(1, LENS[1])).expect("m1 fits");
        let rx = with_reactor(|| {
            let c = loom::thread::spawn(move || {
                check(&rx.try_recv().expect("m0 is committed"), 0, LENS[0]);
                rx
            });
            loom::future::block_on(tx.send_async(&payload(2, LENS[2]))).expect("send_async");
            c.join().unwrap()
        });
        let mut rx = rx;
        check(&rx.try_recv().expect("m1"), 1, LENS[1]);
        check(&rx.try_recv().expect("m2"), 2, LENS[2]);
        drop(tx);
    });
}

/// Cancel-safety: a `recv_async` future is polled once (it registers, or finds the message) and then
/// dropped, racing a `try_send`. The message is received exactly once: by the future if it completed,
/// else by the `try_recv` after the sender is done.
#[test]
fn dropped_recv_future_loses_no_message() {
    model("async/cancel", Bound::Env, || {
        let (mut tx, mut rx) = channel();
        let (tx, rx) = with_reactor(|| {
            let p = loom::thread::spawn(move || {
                tx.try_send(&payload(3, 16)).expect("try_send");
                tx
            });
            let got = {
                let mut fut = Box::pin(rx.recv_vec_async());
                poll_once(&mut fut)
            };
            let tx = p.join().unwrap();
            match got {
                Some(m) => {
                    check(&m.expect("recv_vec_async"), 3, 16);
                    assert!(rx.try_recv().is_err(), "delivered twice");
                }
                None => check(&rx.try_recv().expect("the dropped future took the message"), 3, 16),
            }
            (tx, rx)
        });
        drop((tx, rx));
    });
}

/// MPMC (a slot ring: the sleep mark in the participant table too): an async consumer races a
/// producer; afterwards no sleeper is left counted on either cell, so later sends make no syscall.
#[test]
fn mpmc_async_recv_no_lost_wakeup_and_no_sleeper_left() {
    model("async/mpmc", Bound::Env, || {
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 2000)).expect("valid config");
        let tx = with_reactor(|| {
            let p = loom::thread::spawn(move || {
                tx.try_send(&payload(4, 24)).expect("try_send");
                tx
            });
            loom::future::block_on(async {
                check(&rx.recv_async().await.expect("recv_async"), 4, 24);
            });
            p.join().unwrap()
        });
        assert_eq!(tx.__sleepers(), (0, 0));
        drop((tx, rx));
    });
}

/// MPMC: the only producer sends one message and drops its end while an async consumer waits: the
/// future gets the message, then `PeerGone` (the close's wake-up makes the waiter ask about the
/// producers after it announces, as `wait_for` does), never a hang.
#[test]
fn mpmc_async_recv_sees_a_clean_close() {
    model("async/mpmc close", Bound::Env, || {
        let (mut tx, mut rx) = mpmc::channel(RingConfig::new(4096, 2000)).expect("valid config");
        with_reactor(|| {
            let p = loom::thread::spawn(move || {
                tx.try_send(&payload(6, 24)).expect("try_send");
            });
            loom::future::block_on(async {
                check(&rx.recv_async().await.expect("recv_async"), 6, 24);
                assert!(matches!(rx.recv_async().await.map(|m| m.len()), Err(mpmc::RecvError::PeerGone)));
            });
            p.join().unwrap();
        });
    });
}
