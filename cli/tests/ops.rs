//! `ringwire ls`, `inspect`, `clean`, `pub`, `sub`, `send`, `recv` with real processes, some of them
//! killed with SIGKILL first. Every wait has a deadline that fails the test.

use ringwire::broadcast::Mode;
use ringwire::{RingConfig, ShmBroadcast, ShmQueue, ShmRing};
use ringwire_testkit::watchdog;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// `ringwire clean` acts on every ring of /dev/shm: the tests here take turns, so that one test's clean
/// does not remove the dead rings another test is looking at.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial(f: impl FnOnce() + Send + 'static) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    watchdog(LIMIT, f);
}
const SETTLE: Duration = Duration::from_secs(30);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringwire"))
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("ringwire-ops-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn shm(name: &str) -> PathBuf {
    PathBuf::from("/dev/shm").join(name)
}

fn run(args: &[&str]) -> std::process::Output {
    bin().args(args).output().unwrap()
}

/// `ringwire inspect NAME --json`.
fn inspect(name: &str) -> Value {
    let out = run(&["inspect", name, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `ringwire ls --json`, the entry for `name`.
fn ls_entry(name: &str) -> Option<Value> {
    let out = run(&["ls", "--json"]);
    assert!(out.status.success());
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.into_iter().find(|r| r["name"] == name)
}

fn settle(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Kid(Child);
impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Kid {
    Kid(bin().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
}

/// A named SPSC pair made by an `echo --transport shm` that was then SIGKILLed: rings whose creator and
/// endpoints are all dead.
fn dead_rings() -> String {
    let name = unique("dead");
    let mut echo = bin()
        .args(["echo", "--transport", "shm", "--listen", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(echo.stdout.take().unwrap()).read_line(&mut line).unwrap();
    echo.kill().unwrap();
    echo.wait().unwrap();
    name
}

#[test]
fn ls_and_inspect_show_endpoints_alive_then_dead() {
    serial(|| {
        let name = unique("q");
        let q = ShmQueue::create(&name, RingConfig::new(1 << 16, 256)).unwrap();
        let mut sender = spawn(&["send", &name]); // holds a producer while its stdin is open
        settle("the producer shows up alive", || {
            inspect(&name)["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["role"] == "producer" && e["alive"] == true)
        });
        let pid = sender.0.id();
        sender.0.stdin.as_mut().unwrap().write_all(b"one\ntwo\n").unwrap();
        settle("two messages queued", || inspect(&name)["fill"] == 2);
        let entry = ls_entry(&name).expect("ls lists the queue");
        assert_eq!(entry["kind"], "mpmc");
        assert_eq!(entry["max_message"], 256);
        assert_eq!(entry["in_use"], true);
        sender.0.kill().unwrap();
        sender.0.wait().unwrap();
        let v = inspect(&name);
        let e = v["endpoints"].as_array().unwrap().iter().find(|e| e["pid"] == pid).expect("its entry stays");
        assert_eq!(e["alive"], false, "{v}");
        // Text forms too.
        let text = String::from_utf8(run(&["inspect", &name]).stdout).unwrap();
        assert!(text.contains("mpmc ring") && text.contains("dead"), "{text}");
        let ls = String::from_utf8(run(&["ls"]).stdout).unwrap();
        assert!(ls.lines().any(|l| l.starts_with(&name) && l.contains("producer")), "{ls}");
        drop(q);
    });
}

#[test]
fn inspect_refuses_what_is_not_a_ring() {
    serial(|| {
        let name = unique("junk");
        std::fs::write(shm(&name), b"not a ring at all, just bytes".repeat(300)).unwrap();
        let out = run(&["inspect", &name]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a ringwire region"));
        // ls skips it quietly, clean never touches it.
        assert!(ls_entry(&name).is_none());
        assert!(run(&["clean"]).status.success());
        assert!(shm(&name).exists());
        std::fs::remove_file(shm(&name)).unwrap();
    });
}

/// A FIFO planted in the directory, or under a ring's name, is skipped by `ls` and `clean` and refused
/// by `inspect` and `ShmRing::open`, at once: opening a FIFO waits for a peer, so a blocking open would
/// hang them all (regression: a stray FIFO in /dev/shm hung `ringwire ls` and `clean`).
#[test]
fn a_fifo_in_the_directory_hangs_nothing() {
    serial(|| {
        let name = unique("fifo");
        let status = Command::new("mkfifo").arg(shm(&name)).status().unwrap();
        assert!(status.success(), "mkfifo");
        assert!(ls_entry(&name).is_none());
        assert!(run(&["clean"]).status.success());
        assert!(shm(&name).exists(), "clean removed a FIFO");
        let out = run(&["inspect", &name]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"), "{out:?}");
        assert!(ShmRing::open(&name).is_err());
        std::fs::remove_file(shm(&name)).unwrap();
    });
}

#[test]
fn clean_removes_dead_rings_and_only_those() {
    serial(|| {
        let dead = dead_rings();
        let live_name = unique("live");
        // Creator alive, no endpoint: in use.
        let live = ShmRing::create(&live_name, RingConfig::default()).unwrap();
        // Dead creator, but a live endpoint attached since: in use. The endpoint is a producer waiting on
        // its stdin (a consumer would see that the dead echo's producer is gone, and exit).
        let held = dead_rings();
        let mut holder = spawn(&["send", &format!("{held}.up")]);
        settle("the producer shows up alive", || {
            inspect(&format!("{held}.up"))["endpoints"].as_array().unwrap().iter().any(|e| e["alive"] == true)
        });
        let dry = String::from_utf8(run(&["clean", "--dry-run"]).stdout).unwrap();
        assert!(dry.contains(&format!("{dead}.down")) && dry.contains(&format!("{dead}.up")), "{dry}");
        assert!(shm(&format!("{dead}.down")).exists(), "--dry-run removed something");
        let out = String::from_utf8(run(&["clean"]).stdout).unwrap();
        assert!(out.contains(&format!("removed /dev/shm/{dead}.down")), "{out}");
        assert!(!shm(&format!("{dead}.down")).exists() && !shm(&format!("{dead}.up")).exists());
        assert!(shm(&live_name).exists(), "a ring whose creator runs was removed");
        assert!(shm(&format!("{held}.up")).exists(), "a ring with a live endpoint was removed");
        holder.0.kill().unwrap();
        holder.0.wait().unwrap();
        let out = String::from_utf8(run(&["clean"]).stdout).unwrap();
        assert!(out.contains(&format!("{held}.up")), "{out}");
        drop(live);
    });
}

#[test]
fn an_endpoint_attaching_after_clean_removed_the_ring_is_refused() {
    serial(|| {
        let dead = dead_rings();
        let ring = ShmRing::open(&format!("{dead}.up")).unwrap(); // opened, not attached yet
        let removed = ringwire::shm::inspect::remove_if_unused(&shm(&format!("{dead}.up"))).unwrap();
        assert_eq!(removed, ringwire::shm::inspect::Removal::Removed);
        let err = ring.consumer().map(drop).unwrap_err();
        assert!(err.to_string().contains("removed"), "{err}");
        let _ = std::fs::remove_file(shm(&format!("{dead}.down")));
    });
}

#[test]
fn pub_and_sub_carry_lines_over_a_broadcast_ring() {
    serial(|| {
        let name = unique("b");
        let ring = ShmBroadcast::create(&name, RingConfig::new(1 << 16, 256), Mode::Backpressure).unwrap();
        let mut sub = spawn(&["sub", &name]);
        settle("the subscriber attached", || {
            inspect(&name)["endpoints"].as_array().unwrap().iter().any(|e| e["role"] == "subscriber")
        });
        let mut publ = bin().args(["pub", &name]).stdin(Stdio::piped()).spawn().unwrap();
        publ.stdin.take().unwrap().write_all(b"tick 1\n\xff raw\n").unwrap();
        assert!(publ.wait().unwrap().success());
        // Every publisher has gone: sub prints what it got and ends.
        let out = sub.0.stdout.take().unwrap();
        let mut lines = Vec::new();
        BufReader::new(out).read_until(0, &mut lines).unwrap();
        assert_eq!(lines, b"tick 1\n\xff raw\n");
        assert!(sub.0.wait().unwrap().success());
        drop(ring);
    });
}

#[test]
fn send_and_recv_carry_lines_over_a_queue() {
    serial(|| {
        for mpmc in [false, true] {
            let name = unique("s");
            let (_a, _b);
            if mpmc {
                _a = Some(ShmQueue::create(&name, RingConfig::new(1 << 16, 256)).unwrap());
                _b = None;
            } else {
                _b = Some(ShmRing::create(&name, RingConfig::default()).unwrap());
                _a = None;
            }
            let mut send = bin().args(["send", &name]).stdin(Stdio::piped()).spawn().unwrap();
            send.stdin.take().unwrap().write_all(b"a\nb\r\nc\n").unwrap();
            assert!(send.wait().unwrap().success());
            let out = bin().args(["recv", &name]).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(out.stdout, b"a\nb\r\nc\n", "mpmc {mpmc}");
        }
    });
}
