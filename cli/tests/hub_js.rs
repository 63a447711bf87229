//! `ringwire hub`'s JavaScript side end to end: its client (`src/hub/assets/client.js`) in Node.js against
//! a scripted fake hub and against a real `ringwire hub`, and its chat page (`src/hub/assets/index.html`)
//! in headless Chromium. Plus, with raw HTTP from here, the handshake's refusals as the JavaScript client
//! sees them (a browser can't send a foreign Origin) and the two assets served byte for byte. And
//! reconnection with connection-state recovery (`ringwire hub --recovery`) over a real network fault: a
//! TCP forwarder here, between the client and the hub, that the script asks to cut (`@@ CUT` on its
//! stdout, `CUT DONE` back on its stdin). And long-polling, the WebSocket-less fallback: the same chat
//! sequence over a WebSocket, over polling and over polling upgraded half-way, the fallback in Node.js
//! and in Chromium (its WebSockets cut with playwright's `routeWebSocket`), recovery over polling.
//!
//! The scripts are `tests/js/*.mjs`; each prints what it checked and exits 0, or prints the failing step
//! and exits 1. `scripts/setup.sh` installs Node.js, Chromium and `tests/js/node_modules`: a missing one
//! fails these tests, it does not skip them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ringwire_testkit::watchdog;

/// Every test here runs under a watchdog that fails it (as a hang) after this long.
const TEST_LIMIT: Duration = Duration::from_secs(240);
/// A script still running after this long is killed (and its test fails with what it printed).
const SCRIPT_LIMIT: Duration = Duration::from_secs(180);
const TOKEN: &str = "hub-js-token";
const CHROMIUM: &str = "/usr/bin/chromium";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Node.js 20+ and the test packages, or a failure saying how to get them.
fn require_node() {
    let out = Command::new("node").arg("--version").output();
    let version = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => panic!("node is not installed: run scripts/setup.sh (it installs Node.js 20+)"),
    };
    let major: u32 = version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    assert!(major >= 20, "node {version} is too old: the hub tests need Node.js 20+ (scripts/setup.sh)");
    let modules = repo().join("tests/js/node_modules");
    assert!(
        modules.join("ws").is_dir() && modules.join("playwright-core").is_dir(),
        "{} is missing or incomplete: run scripts/setup.sh (npm ci in tests/js)",
        modules.display()
    );
}

/// A `ringwire hub` on a free port, killed and reaped on drop; its stderr goes to a log file.
struct Hub {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hub {
    fn start(tag: &str, extra: &[&str]) -> Hub {
        Hub::start_on(tag, "127.0.0.1:0", extra)
    }

    /// As `start`, listening on `listen` (a restarted hub takes its predecessor's address).
    fn start_on(tag: &str, listen: &str, extra: &[&str]) -> Hub {
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hub-js-{tag}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringwire"))
            .args(["hub", "--listen", listen, "--token", TOKEN])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("create the hub's log file"))
            .spawn()
            .expect("spawn ringwire hub");
        let mut first = String::new();
        let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut first);
        let url = match (read, first.trim().strip_prefix("ringwire hub: listening on ")) {
            (Ok(_), Some(url)) if url.starts_with("http://127.0.0.1:") => url.to_string(),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ringwire hub said {first:?} instead of its address; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            }
        };
        Hub { child, url, log }
    }

    fn addr(&self) -> &str {
        self.url.strip_prefix("http://").unwrap()
    }

    /// Stops the hub as an operator would (SIGTERM: it closes its connections with 1001 and exits)
    /// and waits for it; a hub that does not exit is caught by the test's watchdog.
    fn stop(&mut self) {
        // SAFETY: kill(2) on the child's pid; it has not been reaped (its wait has not returned).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().expect("wait for the hub");
        assert!(status.success(), "the hub exited with {status} on SIGTERM:\n{}", self.log());
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// Runs `node tests/js/<script> <args>` in the repository root and returns its stdout; fails the test
/// (showing stdout, stderr and `context`) if it exits non-zero or outlives SCRIPT_LIMIT.
fn node(script: &str, args: &[&str], context: impl Fn() -> String) -> String {
    node_with(script, args, None, context)
}

/// `node`, with the script's requests to `forwarder` served: a stdout line `@@ CUT`, `@@ CUT SILENT` or
/// `@@ RESTORE` is done, then answered on the script's stdin with `<request> DONE`.
fn node_with(script: &str, args: &[&str], forwarder: Option<&Forwarder>, context: impl Fn() -> String) -> String {
    let serve = |request: &str| {
        let Some(f) = forwarder else { return false };
        match request {
            "CUT" => f.cut(false),
            "CUT SILENT" => f.cut(true),
            "RESTORE" => f.restore(),
            _ => return false,
        }
        true
    };
    node_serving(script, args, &serve, context)
}

/// `node`, with the script's requests (`@@ <request>` stdout lines) done by `serve` (which says whether
/// it knows the request), each answered on the script's stdin with `<request> DONE`.
fn node_serving(script: &str, args: &[&str], serve: &dyn Fn(&str) -> bool, context: impl Fn() -> String) -> String {
    let mut child = Command::new("node")
        .args(["--no-warnings", "--experimental-websocket"])
        .arg(repo().join("tests/js").join(script))
        .args(args)
        .current_dir(repo())
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let pid = child.id() as libc::pid_t;
    let mut stdin = child.stdin.take();
    let stdout_pipe = child.stdout.take().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut e = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut e);
        e
    });
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let killer = std::thread::spawn(move || {
        let late = finished.recv_timeout(SCRIPT_LIMIT).is_err();
        if late {
            // SAFETY: kill(2) on the child's pid; it has not been reaped (its wait has not returned).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        late
    });
    let mut stdout = String::new();
    let mut bad_request = None;
    for line in BufReader::new(stdout_pipe).lines() {
        let Ok(line) = line else { break };
        stdout.push_str(&line);
        stdout.push('\n');
        let Some(request) = line.strip_prefix("@@ ") else { continue };
        if !serve(request) {
            bad_request = Some(request.to_string());
            // SAFETY: kill(2) on the child's pid; it has not been reaped (its wait has not returned).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            break;
        }
        if let Some(w) = stdin.as_mut() {
            let _ = writeln!(w, "{request} DONE").and_then(|()| w.flush());
        }
    }
    drop(stdin);
    let status = child.wait().expect("wait for node");
    let _ = done.send(());
    let killed = killer.join().unwrap();
    let stderr = stderr_reader.join().unwrap();
    let stderr = String::from_utf8_lossy(&stderr);
    println!("{stdout}");
    assert!(
        bad_request.is_none(),
        "node {script} asked for {bad_request:?}, which this test does not serve:\n{stdout}\n{stderr}"
    );
    assert!(
        status.success() && !killed,
        "node {script} {}{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n{}",
        if killed { "was killed after " } else { "exited with " },
        if killed { format!("{SCRIPT_LIMIT:?}") } else { status.to_string() },
        context()
    );
    stdout
}

#[test]
fn client_against_a_scripted_fake_hub() {
    watchdog(TEST_LIMIT, || {
        require_node();
        node("client_fake_hub.mjs", &[], String::new);
    });
}

#[test]
fn node_clients_chat_through_the_hub() {
    watchdog(TEST_LIMIT, || {
        require_node();
        let hub = Hub::start("node", &["--notify-every", "1"]);
        node("hub_node.mjs", &[&hub.url, TOKEN], || format!("--- hub log (tail)\n{}", hub.log()));
    });
}

#[test]
fn chat_page_in_chromium() {
    watchdog(TEST_LIMIT, || {
        require_node();
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run scripts/setup.sh (it installs Debian's chromium)"
        );
        let hub = Hub::start("browser", &["--notify-every", "1"]);
        let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hub-chat.png");
        let _ = std::fs::remove_file(&shot);
        let out = node("hub_browser.mjs", &[&hub.url, TOKEN, shot.to_str().unwrap()], || {
            format!("--- hub log (tail)\n{}", hub.log())
        });
        assert!(shot.is_file(), "no screenshot at {}:\n{out}", shot.display());
        println!("screenshot: {}", shot.display());
    });
}

/// One HTTP/1.1 request on a fresh connection: (status, headers in lower case, body).
fn http(addr: &str, request: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect to the hub");
    // A guard against a hub that never answers (the watchdog would catch it too), not a timing check.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line).expect("read the status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("read a header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap_or_else(|| panic!("not a header: {line:?}"));
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len = headers.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.parse::<usize>().unwrap());
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body).expect("read the body");
        }
        None if status == 101 => {}
        None => {
            r.read_to_end(&mut body).expect("read the body to the end");
        }
    }
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn upgrade_request(host: &str, origin: &str, token: &str) -> String {
    format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

#[test]
fn handshake_origin_and_token_checks_answer_in_plain_http() {
    watchdog(TEST_LIMIT, || {
        let hub = Hub::start("origin", &[]);
        let host = hub.addr().to_string();

        // A foreign Origin: 403 with a one-line text reason, before any upgrade (and before the token).
        let (status, headers, body) = http(&host, &upgrade_request(&host, "http://evil.example", TOKEN));
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 403, "foreign origin: {headers:?} {body:?}\n{}", hub.log());
        assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("text/plain")), "{headers:?}");
        assert_eq!(body.trim_end().lines().count(), 1, "one line of reason: {body:?}");
        let (status, _, _) = http(&host, &upgrade_request(&host, "http://evil.example", "wrong"));
        assert_eq!(status, 403, "the origin is checked before the token");

        // The hub's own origin passes; a wrong token is then 401 with WWW-Authenticate: Bearer.
        let own = format!("http://{host}");
        let (status, headers, body) = http(&host, &upgrade_request(&host, &own, "wrong"));
        assert_eq!(status, 401, "wrong token: {headers:?} {}", String::from_utf8_lossy(&body));
        assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"), "{headers:?}");
        let (status, headers, _) = http(&host, &upgrade_request(&host, &own, TOKEN));
        assert_eq!(status, 101, "own origin and the token: the upgrade ({headers:?})");

        // What the JavaScript client asks after a failed handshake: a plain GET, which passes 1-3 -> 426.
        let (status, _, _) =
            http(&host, &format!("GET /ws?token={TOKEN} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
        assert_eq!(status, 426, "a plain GET with the token");

        // The page and the client module are the files in src/hub/assets, served as they are.
        let get =
            |path: &str| http(&host, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
        let (status, headers, body) = get("/client.js");
        assert_eq!(status, 200);
        assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("text/javascript")), "{headers:?}");
        assert_eq!(String::from_utf8(body).unwrap(), include_str!("../../src/hub/assets/client.js"));
        let (status, headers, body) = get("/");
        assert_eq!(status, 200);
        assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("text/html")), "{headers:?}");
        assert_eq!(String::from_utf8(body).unwrap(), include_str!("../../src/hub/assets/index.html"));
    });
}

/// A TCP forwarder from a local port to the hub that can fail like a network: `cut(false)` closes
/// every forwarded connection at the TCP level (both sides see the stream end; no WebSocket close frame
/// is sent by anyone), `cut(true)` silently stops forwarding on them while leaving them open (what a
/// pulled cable looks like: only the heartbeat notices). After a cut, new connections are accepted but
/// held, unforwarded, until `restore()`: a client's reconnection attempts wait, so that what happens
/// meanwhile happens while it is provably away.
struct Forwarder {
    addr: SocketAddr,
    to: SocketAddr,
    state: Arc<Mutex<Links>>,
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct Links {
    hold: bool,
    held: Vec<TcpStream>,
    /// (client side, hub side, frozen) of every forwarded connection not cut yet.
    open: Vec<(TcpStream, TcpStream, Arc<AtomicBool>)>,
}

impl Forwarder {
    fn start(to: &str) -> Forwarder {
        let to: SocketAddr = to.parse().expect("the hub's address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the forwarder");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(Links::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let mut links = st.lock().unwrap_or_else(PoisonError::into_inner);
                if links.hold {
                    links.held.push(client);
                } else {
                    Self::forward(&mut links, client, to);
                }
            }
        });
        Forwarder { addr, to, state, stop }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn forward(links: &mut Links, client: TcpStream, to: SocketAddr) {
        let Ok(hub) = TcpStream::connect(to) else { return };
        let _ = (client.set_nodelay(true), hub.set_nodelay(true));
        let frozen = Arc::new(AtomicBool::new(false));
        for (from, into) in [(&client, &hub), (&hub, &client)] {
            let (mut from, mut into, frozen) = (from.try_clone().unwrap(), into.try_clone().unwrap(), frozen.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        // Frozen: what arrives is dropped, and the end of the stream is not passed on.
                        Ok(_) if frozen.load(Ordering::SeqCst) => {}
                        Ok(n) => {
                            if into.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                if !frozen.load(Ordering::SeqCst) {
                    let _ = into.shutdown(Shutdown::Write);
                }
            });
        }
        links.open.push((client, hub, frozen));
    }

    fn cut(&self, silent: bool) {
        let mut links = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        links.hold = true;
        for (client, hub, frozen) in links.open.drain(..) {
            if silent {
                frozen.store(true, Ordering::SeqCst);
            } else {
                let _ = client.shutdown(Shutdown::Both);
                let _ = hub.shutdown(Shutdown::Both);
            }
        }
    }

    fn restore(&self) {
        let mut links = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        links.hold = false;
        let held: Vec<TcpStream> = links.held.drain(..).collect();
        for client in held {
            Self::forward(&mut links, client, self.to);
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        let mut links = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for (client, hub, _) in links.open.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = hub.shutdown(Shutdown::Both);
        }
        links.held.clear();
    }
}

/// The hub of the recovery tests: recovery on, a replay window of 8 events (so that one script step can
/// outrun it), and a heartbeat short enough that a silent cut is noticed within 1.5 s (the client gives
/// up after pingInterval + pingTimeout without a ping), with room for a busy machine.
fn recovery_hub(tag: &str) -> Hub {
    Hub::start(tag, &["--recovery", "--recovery-window", "8", "--ping-interval", "500", "--ping-timeout", "1000"])
}

#[test]
fn node_client_recovers_its_session_after_network_cuts() {
    watchdog(TEST_LIMIT, || {
        require_node();
        let hub = recovery_hub("recovery-node");
        let fwd = Forwarder::start(hub.addr());
        node_with("hub_recovery_node.mjs", &[&hub.url, &fwd.url(), TOKEN], Some(&fwd), || {
            format!("--- hub log (tail)\n{}", hub.log())
        });
    });
}

#[test]
fn chat_page_recovers_after_a_network_cut_in_chromium() {
    watchdog(TEST_LIMIT, || {
        require_node();
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run scripts/setup.sh (it installs Debian's chromium)"
        );
        let hub = recovery_hub("recovery-browser");
        let fwd = Forwarder::start(hub.addr());
        let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hub-recovered.png");
        let _ = std::fs::remove_file(&shot);
        let out = node_with(
            "hub_recovery_browser.mjs",
            &[&hub.url, &fwd.url(), TOKEN, shot.to_str().unwrap()],
            Some(&fwd),
            || format!("--- hub log (tail)\n{}", hub.log()),
        );
        assert!(shot.is_file(), "no screenshot at {}:\n{out}", shot.display());
        println!("screenshot: {}", shot.display());
    });
}

/// A real hub restart (issue: "stop and restart the hub"): hubs A and B with recovery on share rooms
/// through a Redis stream on a private redis-server; the page, on hub A, recovers its session on a new
/// hub A process started on the same address, and shows what was sent (through hub B) while A was
/// down, once.
#[test]
fn chat_page_recovers_across_a_hub_restart_in_chromium() {
    watchdog(TEST_LIMIT, || {
        require_node();
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run scripts/setup.sh (it installs Debian's chromium)"
        );
        let redis = ringwire_testkit::redis_server::RedisServer::start().expect("start a private redis-server");
        let cluster = format!("redis-stream:{}/hub-restart", redis.url());
        let args = ["--recovery", "--cluster", cluster.as_str()];
        let hub_b = Hub::start("restart-b", &args);
        let hub_a = Mutex::new(Hub::start("restart-a1", &args));
        let (url_a, addr_a) = {
            let a = hub_a.lock().unwrap();
            (a.url.clone(), a.addr().to_string())
        };
        let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hub-restarted.png");
        let _ = std::fs::remove_file(&shot);
        let out = node_serving(
            "hub_restart_browser.mjs",
            &[&url_a, &hub_b.url, TOKEN, shot.to_str().unwrap()],
            &|request| {
                let mut a = hub_a.lock().unwrap_or_else(PoisonError::into_inner);
                match request {
                    "STOP" => a.stop(),
                    "START" => *a = Hub::start_on("restart-a2", &addr_a, &args),
                    _ => return false,
                }
                true
            },
            || {
                let a = hub_a.lock().unwrap_or_else(PoisonError::into_inner);
                format!("--- hub A log (tail)\n{}\n--- hub B log (tail)\n{}", a.log(), hub_b.log())
            },
        );
        assert!(shot.is_file(), "no screenshot at {}:\n{out}", shot.display());
        println!("screenshot: {}", shot.display());
    });
}

/// Long-polling (the WebSocket-less fallback): the same chat sequence over a WebSocket, over polling and
/// over polling upgraded half-way, compared; the fallback from a WebSocket that can't be built or fails;
/// heartbeats over polling (a 1 s ping interval, so that pongs go out in posts within the script).
#[test]
fn node_client_falls_back_to_long_polling_and_upgrades() {
    watchdog(TEST_LIMIT, || {
        require_node();
        let hub = Hub::start("polling-node", &["--ping-interval", "1000", "--ping-timeout", "5000"]);
        node("hub_polling_node.mjs", &[&hub.url, TOKEN], || format!("--- hub log (tail)\n{}", hub.log()));
    });
}

/// The chat page with its WebSockets cut (playwright's `routeWebSocket`): it chats over long-polling and
/// its state badge says so; a page started on polling with WebSockets allowed upgrades.
#[test]
fn chat_page_falls_back_to_long_polling_in_chromium() {
    watchdog(TEST_LIMIT, || {
        require_node();
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run scripts/setup.sh (it installs Debian's chromium)"
        );
        let hub = Hub::start("polling-browser", &[]);
        let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hub-polling.png");
        let _ = std::fs::remove_file(&shot);
        let out = node("hub_polling_browser.mjs", &[&hub.url, TOKEN, shot.to_str().unwrap()], || {
            format!("--- hub log (tail)\n{}", hub.log())
        });
        assert!(shot.is_file(), "no screenshot at {}:\n{out}", shot.display());
        println!("screenshot: {}", shot.display());
    });
}

/// Recovery over long-polling: the recovery script with client x on `transports: ['polling']` through the
/// forwarder (its polls cut, then held), resuming with `GET /poll?...&sid=..&offset=..`.
#[test]
fn node_client_recovers_its_session_over_long_polling() {
    watchdog(TEST_LIMIT, || {
        require_node();
        let hub = recovery_hub("recovery-polling");
        let fwd = Forwarder::start(hub.addr());
        node_with("hub_recovery_node.mjs", &[&hub.url, &fwd.url(), TOKEN, "polling"], Some(&fwd), || {
            format!("--- hub log (tail)\n{}", hub.log())
        });
    });
}
