//! Hostile peers and bad days, against the real `ringwire echo` / `ringwire cat` processes: each case is
//! a peer (raw Python sockets, raw bytes from Rust) or an event (signals, descriptor exhaustion, a Redis
//! outage, a corrupted ring) that used to end a server, burn a CPU or lose bytes. Each asserts a bound
//! read from /proc (CPU time, threads, descriptors), an exit status or what reached stderr, never a
//! duration; everything that waits has a deadline that fails the test.

use ringwire_testkit::redis_server::RedisServer;
use ringwire_testkit::watchdog;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);
/// How long a condition polled from /proc may take to become true before the test fails.
const SETTLE: Duration = Duration::from_secs(30);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringwire"))
}

/// A `ringwire echo` process: its address, its stderr lines (read on a thread), killed on drop.
struct Echo {
    child: Child,
    addr: String,
    errs: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Echo {
    fn start(args: &[&str]) -> Echo {
        Self::start_with(args, |_| {})
    }

    fn start_with(args: &[&str], prepare: impl FnOnce(&mut Command)) -> Echo {
        let mut cmd = bin();
        cmd.arg("echo").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        prepare(&mut cmd);
        let mut child = cmd.spawn().expect("spawn ringwire echo");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("echo said {line:?}")).into();
        let errs = lines(child.stderr.take().unwrap());
        Echo { child, addr, errs, seen: Vec::new() }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `what` (fails the test after SETTLE).
    fn expect_err(&mut self, what: &str) -> String {
        let deadline = Instant::now() + SETTLE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.errs.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(what) {
                        return l;
                    }
                }
                Err(_) => panic!("echo never said {what:?}; it said {:?}", self.seen),
            }
        }
    }

    /// Every stderr line so far (after the process ended, all of them).
    fn stderr_lines(&mut self) -> Vec<String> {
        while let Ok(l) = self.errs.try_recv() {
            self.seen.push(l);
        }
        self.seen.clone()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.kill();
    }
}

fn lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines() {
            let Ok(l) = l else { return };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

/// CPU time (user + system) a process has used, in clock ticks (/proc/PID/stat fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as u64
}

fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Polls `cond` until it holds; fails the test after SETTLE.
fn settle(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A raw Python client: connects to `addr` (host:port or a unix path), sends `hex` bytes, closes.
fn python_sends(addr: &str, hex: &str) {
    let connect = if addr.starts_with('/') {
        format!("s = socket.socket(socket.AF_UNIX); s.connect({addr:?})")
    } else {
        let (h, p) = addr.rsplit_once(':').unwrap();
        format!("s = socket.create_connection(({h:?}, {p}))")
    };
    let script = format!("import socket\n{connect}\ns.sendall(bytes.fromhex({hex:?}))\ns.close()\n");
    let st = Command::new("python3").arg("-c").arg(script).status().expect("python3");
    assert!(st.success());
}

/// One round trip through a `ringwire cat` process.
fn cat_round_trip(transport: &str, addr: &str, line: &[u8]) -> Vec<u8> {
    let mut cat = bin()
        .args(["cat", "--transport", transport, "--connect", addr, "--timeout", "30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cat.stdin.take().unwrap().write_all(line).unwrap();
    let out = cat.wait_with_output().unwrap();
    assert!(out.status.success(), "cat failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// As [`cat_round_trip`], retried until it succeeds (for a server that is recovering: connections
/// still closing, descriptors coming back); fails the test after SETTLE.
fn cat_round_trip_eventually(transport: &str, addr: &str, line: &[u8]) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let out = bin()
            .args(["cat", "--transport", transport, "--connect", addr, "--timeout", "5"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(line)?;
                c.wait_with_output()
            })
            .unwrap();
        if out.status.success() && out.stdout == line {
            return;
        }
        assert!(Instant::now() < deadline, "the server never served {line:?} again");
    }
}

/// A header with an unknown kind (5), then the 5 bytes it announces, then the client is gone: the
/// connection's stream can't be resynchronised. The server closes that connection once, says so once,
/// and burns no CPU on it; its thread and descriptor go back.
fn bad_header_case(transport: &str, listen: &str) {
    let mut echo = Echo::start(&["--transport", transport, "--listen", listen]);
    let pid = echo.pid();
    let (t0, f0, c0) = (threads(pid), fds(pid), cpu_ticks(pid));
    for _ in 0..3 {
        python_sends(&echo.addr, "05000000020000007878787878");
    }
    settle("threads and descriptors back to where they were", || threads(pid) == t0 && fds(pid) == f0);
    // A good client is still served.
    assert_eq!(cat_round_trip(transport, &echo.addr, b"still here\n"), b"still here\n");
    let used = cpu_ticks(pid) - c0;
    assert!(used < ticks_per_second(), "echo used {used} ticks of CPU: a connection spins");
    echo.kill();
    let bad = echo.stderr_lines().iter().filter(|l| l.contains("broken")).count();
    assert_eq!(bad, 3, "one line per bad connection: {:?}", echo.seen);
}

#[test]
fn tcp_bad_header_ends_that_connection_without_spinning() {
    watchdog(LIMIT, || bad_header_case("tcp", "127.0.0.1:0"));
}

#[test]
fn unix_bad_header_ends_that_connection_without_spinning() {
    watchdog(LIMIT, || {
        let path = std::env::temp_dir().join(format!("ringwire-hostile-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        bad_header_case("unix", path.to_str().unwrap());
        let _ = std::fs::remove_file(&path);
    });
}

#[test]
fn the_bench_stdio_peer_exits_on_a_broken_stream() {
    watchdog(LIMIT, || {
        let mut child = bin()
            .args(["__peer", "echo", "--adapter", "stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&[5, 0, 0, 0, 2, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
        // stdin stays open: the peer must end because of the bad stream, not because input ended.
        let deadline = Instant::now() + SETTLE;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the peer kept running on a broken stream");
            std::thread::sleep(Duration::from_millis(10));
        };
        drop(stdin);
        assert!(!status.success());
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(err.contains("broken"), "{err}");
    });
}

#[test]
fn running_out_of_descriptors_is_survived() {
    watchdog(LIMIT, || {
        // 40 descriptors: what the process needs, plus a few connections.
        let mut echo = Echo::start_with(&["--transport", "tcp", "--listen", "127.0.0.1:0"], |cmd| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; it runs in the child before exec.
            unsafe {
                cmd.pre_exec(|| {
                    let lim = libc::rlimit { rlim_cur: 40, rlim_max: 40 };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        });
        let idle: Vec<TcpStream> = (0..60).map(|_| TcpStream::connect(&echo.addr).unwrap()).collect();
        echo.expect_err("accept failed");
        drop(idle);
        // Still alive, and serving again once descriptors are free (the threads of the dropped
        // connections release theirs as they see the end of their streams; until then a new connection
        // may still be accepted and closed for want of a descriptor).
        cat_round_trip_eventually("tcp", &echo.addr, b"back\n");
        assert!(echo.child.try_wait().unwrap().is_none(), "echo exited");
    });
}

#[test]
fn past_the_connection_cap_a_client_is_refused_and_told_on_stderr() {
    watchdog(LIMIT, || {
        let mut echo = Echo::start(&["--transport", "tcp", "--listen", "127.0.0.1:0", "--max-connections", "2"]);
        let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&echo.addr).unwrap()).collect();
        settle("two connection threads", || threads(echo.pid()) >= 3);
        let mut third = TcpStream::connect(&echo.addr).unwrap();
        third.set_read_timeout(Some(SETTLE)).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(third.read(&mut buf).unwrap(), 0, "the refused connection is closed");
        echo.expect_err("--max-connections");
        drop(held);
        // Room again once the held connections' threads have seen them end.
        cat_round_trip_eventually("tcp", &echo.addr, b"room again\n");
    });
}

#[test]
fn cat_is_byte_transparent() {
    watchdog(LIMIT, || {
        let echo = Echo::start(&["--transport", "tcp", "--listen", "127.0.0.1:0"]);
        let input: &[u8] = b"ok\n\xff\nafter\nx\r\n61\xff62\n";
        assert_eq!(cat_round_trip("tcp", &echo.addr, input), input);
    });
}

#[test]
fn cat_ends_when_the_server_goes_while_stdin_is_still_open() {
    watchdog(LIMIT, || {
        let mut echo = Echo::start(&["--transport", "tcp", "--listen", "127.0.0.1:0"]);
        let mut cat = bin()
            .args(["cat", "--transport", "tcp", "--connect", &echo.addr])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = cat.stdin.take().unwrap();
        stdin.write_all(b"hi\n").unwrap();
        let mut out = BufReader::new(cat.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "hi\n");
        echo.kill();
        let deadline = Instant::now() + SETTLE;
        let status = loop {
            if let Some(s) = cat.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "cat did not notice the server was gone");
            std::thread::sleep(Duration::from_millis(10));
        };
        drop(stdin);
        assert_eq!(status.code(), Some(1));
        let mut err = String::new();
        cat.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(err.contains("peer"), "{err}");
    });
}

#[test]
fn cat_timeout_says_how_many_replies_are_missing() {
    watchdog(LIMIT, || {
        // A server that accepts, never answers, and keeps the connection open until cat is done.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let (s, _) = silent.accept().unwrap();
            let _ = done_rx.recv();
            drop(s);
        });
        let mut cat = bin()
            .args(["cat", "--transport", "tcp", "--connect", &addr, "--timeout", "0.2"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        cat.stdin.take().unwrap().write_all(b"a\nb\n").unwrap();
        let out = cat.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("2 of 2 replies missing"));
        done_tx.send(()).unwrap();
        holder.join().unwrap();
    });
}

fn sigterm(pid: u32) {
    // SAFETY: kill with a valid signal number on our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
}

#[test]
fn unix_echo_cleans_up_on_sigterm_and_takes_over_a_stale_socket() {
    watchdog(LIMIT, || {
        let path = std::env::temp_dir().join(format!("ringwire-hostile-sig-{}.sock", std::process::id()));
        let p = path.to_str().unwrap().to_string();
        let _ = std::fs::remove_file(&path);
        let mut echo = Echo::start(&["--transport", "unix", "--listen", &p]);
        sigterm(echo.pid());
        let status = echo.child.wait().unwrap();
        assert!(!path.exists(), "SIGTERM left the socket file behind");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), None, "exited itself, not killed");
        // SIGKILL leaves the file; the next server takes it over.
        let mut echo = Echo::start(&["--transport", "unix", "--listen", &p]);
        echo.kill();
        assert!(path.exists());
        let echo2 = Echo::start(&["--transport", "unix", "--listen", &p]);
        assert_eq!(cat_round_trip("unix", &echo2.addr, b"new\n"), b"new\n");
        // A live server's path is refused, with a message.
        let out = bin().args(["echo", "--transport", "unix", "--listen", &p]).output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("another server is listening"));
        drop(echo2);
        let _ = std::fs::remove_file(&path);
    });
}

#[test]
fn shm_echo_cleans_up_on_sigint_and_takes_over_stale_rings() {
    watchdog(LIMIT, || {
        let name = format!("ringwire-hostile-shm-{}", std::process::id());
        let down = std::path::Path::new("/dev/shm").join(format!("{name}.down"));
        let echo = Echo::start(&["--transport", "shm", "--listen", &name]);
        // SAFETY: kill with a valid signal number on our own child.
        assert_eq!(unsafe { libc::kill(echo.pid() as i32, libc::SIGINT) }, 0);
        let mut echo = echo;
        echo.child.wait().unwrap();
        assert!(!down.exists(), "SIGINT left the ring behind");
        let mut echo = Echo::start(&["--transport", "shm", "--listen", &name]);
        echo.kill(); // SIGKILL: the rings stay
        assert!(down.exists());
        let echo = Echo::start(&["--transport", "shm", "--listen", &name]);
        assert_eq!(cat_round_trip("shm", &name, b"taken over\n"), b"taken over\n");
        drop(echo);
        let _ = std::fs::remove_file(&down);
        let _ = std::fs::remove_file(down.with_extension("up"));
    });
}

#[test]
fn shm_echo_on_a_corrupted_ring_is_an_error_not_a_clean_exit() {
    watchdog(LIMIT, || {
        let name = format!("ringwire-hostile-corrupt-{}", std::process::id());
        let mut echo = Echo::start(&["--transport", "shm", "--listen", &name]);
        // Another process writes a record header no producer writes at the consumer's position of the
        // ring echo reads (`NAME.up`; data starts at 4096).
        let up = std::path::Path::new("/dev/shm").join(format!("{name}.up"));
        let f = std::fs::OpenOptions::new().write(true).open(&up).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[9, 0, 0, 0, 0x55, 0, 0, 0], 4096).unwrap();
        let status = echo.child.wait().unwrap();
        assert!(!status.success(), "a corrupted ring ended echo with success");
        echo.expect_err("corrupt");
        let _ = std::fs::remove_file(&up);
        let _ = std::fs::remove_file(up.with_extension("down"));
    });
}

#[test]
fn redis_echo_outlives_a_redis_outage() {
    watchdog(LIMIT, || {
        let mut server = RedisServer::start().expect("start a private redis-server");
        let addr = format!("{}/hostile", server.url());
        let mut echo = Echo::start(&["--transport", "redis", "--listen", &addr]);
        assert_eq!(cat_round_trip("redis", &addr, b"before\n"), b"before\n");
        server.kill();
        echo.expect_err("does not answer");
        assert!(echo.child.try_wait().unwrap().is_none(), "echo gave up");
        server.restart().expect("restart redis-server");
        // Serving again: the subscriber resubscribed by itself.
        let deadline = Instant::now() + SETTLE;
        loop {
            let out = bin()
                .args(["cat", "--transport", "redis", "--connect", &addr, "--timeout", "1"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .and_then(|mut c| {
                    c.stdin.take().unwrap().write_all(b"after\n")?;
                    c.wait_with_output()
                })
                .unwrap();
            if out.status.success() && out.stdout == b"after\n" {
                break;
            }
            assert!(Instant::now() < deadline, "echo never served again after Redis came back");
        }
    });
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

/// 200 connections that each send one 8-byte header announcing the largest message (1 MiB) and then
/// nothing: the server holds memory for what arrived (a few KiB of buffer and a thread's stack each),
/// not for what was announced (200 MiB).
#[test]
fn announced_sizes_cost_no_memory_until_the_bytes_arrive() {
    watchdog(LIMIT, || {
        let echo = Echo::start(&["--transport", "tcp", "--listen", "127.0.0.1:0"]);
        let pid = echo.pid();
        let before = rss_kib(pid);
        let t0 = threads(pid);
        let header = [0u8, 0, 0x10, 0, 1, 0, 0, 0]; // len = 1 MiB, kind 1
        let conns: Vec<TcpStream> = (0..200)
            .map(|_| {
                let mut s = TcpStream::connect(&echo.addr).unwrap();
                s.write_all(&header).unwrap();
                s
            })
            .collect();
        settle("200 connection threads", || threads(pid) >= t0 + 200);
        // Each connection's thread has read its header by now or will without allocating more; give the
        // reads a chance, then measure.
        settle("the headers read", || fds(pid) >= 200);
        let grown = rss_kib(pid).saturating_sub(before);
        assert!(grown < 200 * 128, "RSS grew {grown} KiB for 200 eight-byte headers");
        drop(conns);
    });
}
