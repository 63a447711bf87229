//! The hub (`ringwire::hub`) against real clients over real sockets: the Rust `HubClient`, and raw
//! WebSocket / TCP clients that misbehave (never read, never answer pings, send garbage, text,
//! oversize messages, reserved events, no token, a foreign origin, a slow handshake). The JavaScript
//! client (Node and Chromium) is tested in cli/tests/hub_js.rs against `ringwire hub`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ringwire::hub::protocol::{self, close};
use ringwire::hub::{ClientEvent, Hub, HubClient, HubConfig, HubError, Origins};
use ringwire_testkit::watchdog;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::Receiver;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "s3cret";

/// Runs an async test body on its own runtime under a watchdog (alongside the other tests of this
/// file, which share one process).
fn run<F: Future<Output = ()> + Send + 'static>(body: impl FnOnce() -> F + Send + 'static) {
    watchdog(Duration::from_secs(120), move || {
        let _shared = ALONE.read().unwrap_or_else(|e| e.into_inner());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(body());
    })
}

/// As [`run`], with no other test of this file running meanwhile: for a test that measures the
/// process (its resident memory), which the other tests' allocations would inflate. (It failed in CI
/// with 149 -> 300 MiB while a Redis-outage test ran beside it, and passed alone.)
fn run_alone<F: Future<Output = ()> + Send + 'static>(body: impl FnOnce() -> F + Send + 'static) {
    watchdog(Duration::from_secs(120), move || {
        let _alone = ALONE.write().unwrap_or_else(|e| e.into_inner());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(body());
    })
}

/// Held shared by every test of this file and exclusively by [`run_alone`]'s.
static ALONE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn config() -> HubConfig {
    HubConfig { token: Some(TOKEN.into()), ..HubConfig::default() }
}

/// Starts `hub` on a free port; returns its `ws://` URL.
async fn start(hub: &Hub) -> (String, std::net::SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let h = hub.clone();
    tokio::spawn(async move { h.serve(l).await.unwrap() });
    (format!("ws://{addr}/ws"), addr)
}

async fn connect(url: &str) -> (HubClient, Receiver<ClientEvent>) {
    HubClient::connect(url, Some(TOKEN)).await.expect("connect")
}

/// The events a client receives up to (not including) the marker event `m` with body `tag`.
async fn until_marker(rx: &mut Receiver<ClientEvent>, tag: u64) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    loop {
        let ev = rx.recv().await.expect("connection open");
        let v: Value = ev.decode().unwrap();
        if ev.name() == "m" && v == json!(tag) {
            return got;
        }
        got.push((ev.name().to_owned(), v));
    }
}

fn names(evs: &[(String, Value)]) -> Vec<&str> {
    evs.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn rooms_and_every_emit_target() {
    run(|| async {
        let hub = Hub::new(config());
        let (url, _) = start(&hub).await;
        let (a, mut ra) = connect(&url).await;
        let (b, mut rb) = connect(&url).await;
        let (c, mut rc) = connect(&url).await;
        a.join("A").await.unwrap();
        b.join("A").await.unwrap();
        b.join("B").await.unwrap();
        c.join("B").await.unwrap();
        let cb = hub.conn(&b.id()).unwrap();
        let mut want: HashSet<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
        want.insert(b.id());
        assert_eq!(cb.rooms().into_iter().collect::<HashSet<_>>(), want);

        hub.to("A").emit("to A", &1).unwrap();
        // One copy per connection however many of the rooms it is in.
        assert_eq!(hub.to("A").to("B").emit("to A and B", &2).unwrap(), 3);
        hub.to("A").except("B").emit("A except B", &3).unwrap();
        cb.to("A").emit("b to A", &4).unwrap();
        cb.broadcast().emit("b broadcast", &5).unwrap();
        hub.except("A").emit("except A", &6).unwrap();
        hub.to(&c.id()).emit("to c alone", &7).unwrap();
        hub.emit("m", &1).unwrap();

        assert_eq!(
            names(&until_marker(&mut ra, 1).await),
            ["to A", "to A and B", "A except B", "b to A", "b broadcast"]
        );
        assert_eq!(names(&until_marker(&mut rb, 1).await), ["to A", "to A and B"]);
        assert_eq!(names(&until_marker(&mut rc, 1).await), ["to A and B", "b broadcast", "except A", "to c alone"]);

        b.leave("A").await.unwrap();
        hub.to("A").emit("after leave", &8).unwrap();
        hub.emit("m", &2).unwrap();
        assert_eq!(names(&until_marker(&mut ra, 2).await), ["after leave"]);
        assert!(until_marker(&mut rb, 2).await.is_empty());
        assert!(until_marker(&mut rc, 2).await.is_empty());
        let members: HashSet<_> = hub.room_members("B").iter().map(|s| s.to_string()).collect();
        assert_eq!(members, [b.id(), c.id()].into_iter().collect());

        // A client can't join another connection's own room, nor leave its own.
        assert!(matches!(c.join(&a.id()).await, Err(HubError::Refused { status: 0, .. })));
        assert!(matches!(c.leave(&c.id()).await, Err(HubError::Refused { status: 0, .. })));
    });
}

#[test]
fn acks_both_ways_with_timeouts_and_disconnects() {
    run(|| async {
        let hub = Hub::new(config());
        hub.on("echo", |ev| {
            let v: Value = ev.decode().unwrap();
            assert!(ev.wants_ack());
            assert!(ev.ack(&json!({"echo": v})).unwrap());
            assert!(!ev.ack(&"twice").unwrap(), "only the first ack is sent");
        });
        hub.on("no answer", |_| {});
        let (url, _) = start(&hub).await;
        let (a, mut ra) = connect(&url).await;

        // Client to hub.
        let reply = a.emit_with_ack("echo", &json!({"k": 1}), Duration::from_secs(10)).await.unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&reply).unwrap(), json!({"echo": {"k": 1}}));
        assert!(matches!(a.emit_with_ack("no answer", &1, Duration::from_millis(50)).await, Err(HubError::Timeout)));
        assert_eq!(a.pending_acks(), 0);

        // Hub to client.
        let ca = hub.conn(&a.id()).unwrap();
        let ask = tokio::spawn(async move { ca.emit_with_ack("question", &41, Duration::from_secs(10)).await });
        let mut ev = ra.recv().await.unwrap();
        assert_eq!((ev.name(), ev.decode::<u64>().unwrap(), ev.wants_ack()), ("question", 41, true));
        ev.ack(&42).await.unwrap();
        assert_eq!(&ask.await.unwrap().unwrap()[..], b"42");

        // Timed out: bookkeeping freed, the late reply dropped and counted.
        let ca = hub.conn(&a.id()).unwrap();
        let r = ca.emit_with_ack("question", &0, Duration::from_millis(20)).await;
        assert!(matches!(r, Err(HubError::Timeout)), "{r:?}");
        assert_eq!(ca.pending_acks(), 0);
        let mut late = ra.recv().await.unwrap();
        late.ack(&"late").await.unwrap();

        // A broadcast ack: one reply per client; the silent one is reported missing on timeout.
        let (b, mut rb) = connect(&url).await;
        let (c, rc) = connect(&url).await;
        for x in [&a, &b, &c] {
            x.join("R").await.unwrap();
        }
        let answer = |mut rx: Receiver<ClientEvent>, with: u64| {
            tokio::spawn(async move {
                while let Some(mut ev) = rx.recv().await {
                    if ev.name() == "vote" {
                        ev.ack(&with).await.unwrap();
                    }
                }
            })
        };
        let _ta = answer(ra, 1);
        let _tb = answer(std::mem::replace(&mut rb, tokio::sync::mpsc::channel(1).1), 2);
        let _keep_c_silent = rc;
        let r = hub.to("R").emit_with_ack("vote", &"?", Duration::from_millis(300)).await.unwrap();
        let mut replies: Vec<(String, Value)> =
            r.replies.iter().map(|(id, b)| (id.to_string(), serde_json::from_slice(b).unwrap())).collect();
        replies.sort_by_key(|(_, v)| v.as_u64());
        assert_eq!(replies, [(a.id(), json!(1)), (b.id(), json!(2))]);
        assert_eq!(r.missing.iter().map(|s| s.to_string()).collect::<Vec<_>>(), [c.id()]);
        assert!(!r.complete());
        for x in [&a, &b, &c] {
            assert_eq!(hub.conn(&x.id()).unwrap().pending_acks(), 0);
        }
        // The stale reply above was counted (it arrived before these acks were asked).
        assert!(hub.stats().stale_acks >= 1);

        // The connection ends while the hub waits: Closed, at once, not at the timeout.
        let cc = hub.conn(&c.id()).unwrap();
        let ask = tokio::spawn(async move { cc.emit_with_ack("vote", &"?", Duration::from_secs(3600)).await });
        c.close().await;
        assert!(matches!(ask.await.unwrap(), Err(HubError::Closed)));
        // And the client's side: its pending ack ends when the hub goes away.
        let pending = tokio::spawn({
            let b = b.clone();
            async move { b.emit_with_ack("no answer", &1, Duration::from_secs(3600)).await }
        });
        while b.pending_acks() == 0 {
            tokio::task::yield_now().await;
        }
        hub.conn(&b.id()).unwrap().disconnect("bye");
        assert!(matches!(pending.await.unwrap(), Err(HubError::Closed)));
        assert_eq!(b.closed().await.code, close::KICKED);
    });
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// socket.io keeps the callbacks of timed-out broadcast acks; the hub frees them.
#[test]
fn memory_stays_flat_over_100k_timed_out_broadcast_acks() {
    run_alone(|| async {
        let hub = Hub::new(HubConfig { send_queue: 1 << 16, ..config() });
        let (url, _) = start(&hub).await;
        let (a, mut ra) = connect(&url).await;
        let (b, mut rb) = connect(&url).await;
        // Both read everything and answer nothing.
        tokio::spawn(async move { while ra.recv().await.is_some() {} });
        tokio::spawn(async move { while rb.recv().await.is_some() {} });
        let round = |n: usize| {
            let hub = hub.clone();
            async move {
                for _ in 0..n / 500 {
                    let mut batch = Vec::new();
                    for _ in 0..500 {
                        let hub = hub.clone();
                        batch.push(tokio::spawn(async move {
                            let r = hub.all().emit_with_ack("ask", &0, Duration::from_millis(1)).await.unwrap();
                            assert_eq!(r.missing.len() + r.replies.len(), 2);
                        }));
                    }
                    for t in batch {
                        t.await.unwrap();
                    }
                }
            }
        };
        round(20_000).await;
        let before = rss_kib();
        round(100_000).await;
        let after = rss_kib();
        eprintln!("RSS {before} KiB after 20k timed-out broadcast acks, {after} KiB after 100k more");
        for x in [&a, &b] {
            assert_eq!(hub.conn(&x.id()).unwrap().pending_acks(), 0);
        }
        assert!(after < before + 8 * 1024, "RSS grew from {before} KiB to {after} KiB over 100k acks");
    });
}

#[test]
fn handshake_checks_token_origin_cap_and_upgrade() {
    run(|| async {
        let hub = Hub::new(HubConfig { max_connections: 2, ..config() });
        let (url, addr) = start(&hub).await;
        let refused = |r: Result<(HubClient, Receiver<ClientEvent>), HubError>| match r {
            Err(HubError::Refused { status, reason }) => (status, reason),
            other => panic!("expected a refusal, got {other:?}"),
        };
        let (s, why) = refused(HubClient::connect(&url, None).await);
        assert_eq!((s, why.contains("token is required")), (401, true), "{why}");
        assert_eq!(refused(HubClient::connect(&url, Some("wrong")).await), (401, "wrong token".into()));
        // The query parameter works as well as the header (a browser can't set headers).
        let (ws, _) = tokio_tungstenite::connect_async(format!("{url}?token={TOKEN}")).await.unwrap();
        drop(ws);
        // Origins: a browser on another site is refused; the hub's own pages are not.
        let with_origin = |o: &str| {
            let mut req = format!("{url}?token={TOKEN}").into_client_request().unwrap();
            req.headers_mut().insert("origin", o.parse().unwrap());
            req
        };
        match tokio_tungstenite::connect_async(with_origin("http://evil.example")).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
            other => panic!("expected 403, got {:?}", other.map(|_| ())),
        }
        let (ws, _) = tokio_tungstenite::connect_async(with_origin(&format!("http://{addr}"))).await.unwrap();
        drop(ws);

        // Plain HTTP: the page, the client, the endpoint without an upgrade (426), anything else 404.
        for (path, status, kind) in [
            ("/", 200, "text/html"),
            ("/client.js", 200, "text/javascript"),
            ("/ws?token=s3cret", 426, "text/plain"),
            ("/nope", 404, "text/plain"),
        ] {
            let resp = http_get(addr, path).await;
            assert!(resp.starts_with(&format!("HTTP/1.1 {status}")), "{path}: {resp}");
            assert!(resp.to_ascii_lowercase().contains(&format!("content-type: {kind}")), "{path}: {resp}");
        }
        // The cap: two open, the third gets 503 until one leaves.
        let (a, _ra) = connect(&url).await;
        let (_b, _rb) = connect(&url).await;
        let (s, _) = refused(HubClient::connect(&url, Some(TOKEN)).await);
        assert_eq!(s, 503);
        a.close().await;
        a.closed().await;
        let (_c, _rc) = loop {
            match HubClient::connect(&url, Some(TOKEN)).await {
                Err(HubError::Refused { status: 503, .. }) => tokio::task::yield_now().await,
                r => break r.unwrap(),
            }
        };

        assert!(hub.stats().refused >= 4);
    });
}

#[test]
fn custom_auth_and_origin_list() {
    run(|| async {
        let hub = Hub::new(HubConfig { origins: Origins::List(vec!["https://app.example".into()]), ..config() });
        hub.auth(|hs| match hs.token.as_deref() {
            Some(t) if t.starts_with("user-") => Ok(()),
            _ => Err("tokens start with user-".into()),
        });
        let (url, _) = start(&hub).await;
        HubClient::connect(&url, Some("user-7")).await.unwrap();
        assert!(matches!(HubClient::connect(&url, Some(TOKEN)).await, Err(HubError::Refused { status: 401, .. })));
        for (origin, ok) in
            [("https://app.example", true), ("https://APP.example/", true), ("http://app.example", false)]
        {
            let mut req = format!("{url}?token=user-1").into_client_request().unwrap();
            req.headers_mut().insert("origin", origin.parse().unwrap());
            assert_eq!(tokio_tungstenite::connect_async(req).await.is_ok(), ok, "{origin}");
        }
    });
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_slow_handshake_is_cut_off_at_the_deadline() {
    run(|| async {
        let hub = Hub::new(HubConfig { handshake_timeout: Duration::from_millis(200), ..config() });
        let (_, addr) = start(&hub).await;
        for partial in ["", "GET /ws HTTP/1.1\r\nHost: x\r\n"] {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(partial.as_bytes()).await.unwrap();
            let mut buf = [0u8; 256];
            // The hub closes (EOF, or a reset; maybe after a 408) instead of waiting for the rest.
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        }
    });
}

type Raw = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw(url: &str) -> Raw {
    tokio_tungstenite::connect_async(format!("{url}?token={TOKEN}")).await.unwrap().0
}

/// Reads until the close frame; returns its code and reason (hello and pings are read and ignored).
async fn close_of(ws: &mut Raw) -> (u16, String) {
    while let Some(m) = ws.next().await {
        if let Message::Close(Some(f)) = m.unwrap() {
            return (f.code.into(), f.reason.to_string());
        }
    }
    panic!("the connection ended without a close frame")
}

#[test]
fn bad_input_closes_that_connection_with_a_reason_and_no_other() {
    run(|| async {
        let hub = Hub::new(HubConfig { max_message: 1024, ..config() });
        let (url, _) = start(&hub).await;
        let (bystander, mut rb) = connect(&url).await;

        let mut ws = raw(&url).await;
        ws.send(Message::Binary(protocol::encode("big", &[b'x'; 2000]))).await.unwrap();
        let (code, why) = close_of(&mut ws).await;
        assert_eq!(code, close::TOO_BIG);
        assert!(why.contains("exceeds the limit of 1024"), "{why}");

        let mut ws = raw(&url).await;
        ws.send(Message::Text("42[\"chat\",\"hi\"]".into())).await.unwrap();
        assert_eq!(close_of(&mut ws).await.0, close::UNSUPPORTED);

        for garbage in [vec![1, 2, 3], vec![0xff; 40], {
            let mut m = protocol::encode("x", b"{}").to_vec();
            m[0] = 9; // len disagrees with the message
            m
        }] {
            let mut ws = raw(&url).await;
            ws.send(Message::Binary(garbage.into())).await.unwrap();
            let (code, why) = close_of(&mut ws).await;
            assert_eq!(code, close::PROTOCOL, "{why}");
        }

        let mut ws = raw(&url).await;
        ws.send(Message::Binary(protocol::encode(protocol::HELLO, b"{}"))).await.unwrap();
        assert_eq!(close_of(&mut ws).await.0, close::POLICY);

        // A malformed ack name and a bad room are complaints, not closes.
        let mut ws = raw(&url).await;
        ws.send(Message::Binary(protocol::encode("ringwire:ack:zz", b"1"))).await.unwrap();
        ws.send(Message::Binary(protocol::encode(protocol::JOIN, b"17"))).await.unwrap();
        let mut codes = Vec::new();
        while codes.len() < 2 {
            let Message::Binary(b) = ws.next().await.unwrap().unwrap() else { continue };
            let ev = protocol::decode(b).unwrap();
            if ev.name() == protocol::ERROR {
                codes.push(serde_json::from_slice::<Value>(&ev.body()).unwrap()["code"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(codes, ["bad_ack", "bad_room"]);

        hub.emit("m", &9).unwrap();
        assert!(until_marker(&mut rb, 9).await.is_empty());
        assert!(hub.conn(&bystander.id()).is_some());
    });
}

#[test]
fn heartbeat_drops_a_stalled_client_and_keeps_a_live_one() {
    run(|| async {
        let hub = Hub::new(HubConfig {
            ping_interval: Duration::from_millis(50),
            ping_timeout: Duration::from_millis(100),
            ..config()
        });
        let (url, _) = start(&hub).await;
        let (live, _rl) = connect(&url).await;
        // Reads (so its queue never fills) but never answers a ping.
        let mut stalled = raw(&url).await;
        let mut pings = 0;
        let code = loop {
            match stalled.next().await.unwrap().unwrap() {
                Message::Binary(b) if protocol::decode(b.clone()).unwrap().name() == protocol::PING => pings += 1,
                Message::Close(Some(f)) => break u16::from(f.code),
                _ => {}
            }
        };
        assert_eq!((code, pings), (close::PING_TIMEOUT, 1));
        // The live client answered every ping meanwhile.
        assert!(hub.conn(&live.id()).is_some());
    });
}

#[test]
fn a_slow_client_is_dropped_while_the_others_keep_receiving() {
    run(|| async {
        let hub = Hub::new(HubConfig { send_queue: 8, ..config() });
        let ends = Arc::new(Mutex::new(Vec::new()));
        let e = ends.clone();
        hub.on_disconnect(move |c, r| e.lock().unwrap().push((c.id().to_string(), r.code)));
        let (url, _) = start(&hub).await;
        let (fast, mut rf) = connect(&url).await;
        fast.join("R").await.unwrap();
        // Joins, then never reads again.
        let mut slow = raw(&url).await;
        let join = protocol::encode(&protocol::ack_name(1, 1, protocol::JOIN), b"\"R\"");
        slow.send(Message::Binary(join)).await.unwrap();
        while hub.room_members("R").len() < 2 {
            tokio::task::yield_now().await;
        }
        let slow_id = hub.room_members("R").into_iter().find(|id| **id != *fast.id()).unwrap();
        let body = vec![b'7'; 64 * 1024];
        let mut sent = 0u64;
        while hub.conn(&slow_id).is_some_and(|c| !c.is_closed()) {
            assert!(sent < 100_000, "the slow client was never dropped");
            hub.to("R").emit_bytes("chunk", &body).unwrap();
            sent += 1;
            // The fast client reads each one before the next is sent.
            let ev = rf.recv().await.unwrap();
            assert_eq!((ev.name(), ev.bytes().len()), ("chunk", body.len()));
        }
        hub.to("R").emit("m", &3).unwrap();
        assert!(until_marker(&mut rf, 3).await.is_empty());
        assert!(sent > 8, "the socket buffers took some before the queue filled: {sent}");
        while !ends.lock().unwrap().iter().any(|(id, _)| *id == *slow_id) {
            tokio::task::yield_now().await;
        }
        assert!(ends.lock().unwrap().contains(&(slow_id.to_string(), close::SLOW_CLIENT)));
        assert_eq!(hub.stats().slow_clients, 1);
        drop(slow);
    });
}

#[test]
fn disconnecting_sees_the_rooms_and_disconnect_does_not() {
    run(|| async {
        let hub = Hub::new(config());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        hub.on_disconnecting(move |c, _| s.lock().unwrap().push(("disconnecting", c.rooms().len())));
        let s = seen.clone();
        hub.on_disconnect(move |c, _| s.lock().unwrap().push(("disconnect", c.rooms().len())));
        let connected = Arc::new(Mutex::new(Vec::new()));
        let c2 = connected.clone();
        hub.on_connection(move |c| c2.lock().unwrap().push(c.id().to_string()));
        let (url, _) = start(&hub).await;
        let (a, _ra) = connect(&url).await;
        assert_eq!(*connected.lock().unwrap(), [a.id()]);
        a.join("A").await.unwrap();
        a.join("B").await.unwrap();
        a.close().await;
        assert_eq!(a.closed().await.code, close::NORMAL);
        while seen.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(*seen.lock().unwrap(), [("disconnecting", 3), ("disconnect", 0)]);
        assert!(hub.rooms().is_empty());
    });
}

#[test]
fn server_push_from_any_thread_and_shutdown_closes_with_1001() {
    run(|| async {
        let hub = Hub::new(config());
        let (url, _) = start(&hub).await;
        let (a, mut ra) = connect(&url).await;
        let h = hub.clone();
        std::thread::spawn(move || h.emit("notification", &json!({"text": "tick"})).unwrap()).join().unwrap();
        let ev = ra.recv().await.unwrap();
        assert_eq!((ev.name(), ev.decode::<Value>().unwrap()), ("notification", json!({"text": "tick"})));
        // Names the application may not emit.
        assert!(matches!(hub.emit("ringwire:hello", &1), Err(HubError::BadName(_))));
        assert!(matches!(hub.emit("", &1), Err(HubError::BadName(0))));
        assert!(matches!(hub.all().emit_bytes("x", &vec![0; 2 << 20]), Err(HubError::Oversize { .. })));
        hub.shutdown();
        // A hub going away may come back: the client says why and tries again.
        let mut st = a.state();
        let s = st.wait_for(|s| matches!(s, ringwire::hub::ClientState::Reconnecting { .. })).await.unwrap().clone();
        assert!(
            matches!(s, ringwire::hub::ClientState::Reconnecting { reason, .. } if reason.code == close::GOING_AWAY)
        );
        a.close().await;
        assert_eq!(a.closed().await.code, close::NORMAL);
    });
}

#[test]
fn room_hooks_fire_on_join_and_leave_and_send_error_reaches_the_client() {
    run(|| async {
        let hub = Hub::new(config());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        hub.on_join_room(move |c, r| s.lock().unwrap().push(format!("{} join {r}", c.id())));
        let s = seen.clone();
        hub.on_leave_room(move |c, r| {
            s.lock().unwrap().push(format!("{} leave {r}", c.id()));
            // Hooks may emit: the registry lock is not held while they run.
            c.to(r).emit("left", &r).unwrap();
        });
        let (url, _) = start(&hub).await;
        let (a, mut ra) = connect(&url).await;
        let (b, _rb) = connect(&url).await;
        a.join("A").await.unwrap();
        b.join("A").await.unwrap();
        b.leave("A").await.unwrap();
        let ev = ra.recv().await.unwrap();
        assert_eq!((ev.name(), ev.decode::<String>().unwrap()), ("left", "A".to_owned()));
        assert!(hub.conn(&a.id()).unwrap().send_error("custom", "a complaint"));
        let ev = ra.recv().await.unwrap();
        assert_eq!(ev.name(), protocol::ERROR);
        assert_eq!(ev.decode::<Value>().unwrap(), json!({"code": "custom", "message": "a complaint"}));
        assert_eq!(
            *seen.lock().unwrap(),
            [format!("{} join A", a.id()), format!("{} join A", b.id()), format!("{} leave A", b.id())]
        );
    });
}

/// A TCP forwarder between clients and the hub that the test can cut: a real network fault (no close
/// frame). `cut(true)` leaves the hub's side open and silent (a half-open connection, as when a client
/// vanishes without a FIN); `cut(false)` closes both sides. While `refuse` is set, new connections are
/// closed at once (the client's reconnection attempts fail).
struct Forwarder {
    addr: std::net::SocketAddr,
    /// Where new connections go (re-pointed: a client that moves to another hub).
    to: Arc<Mutex<std::net::SocketAddr>>,
    cut: tokio::sync::watch::Sender<(u64, bool)>,
    refuse: Arc<std::sync::atomic::AtomicBool>,
    half_open: Arc<Mutex<Vec<tokio::net::TcpStream>>>,
}

impl Forwarder {
    async fn start(to: std::net::SocketAddr) -> Forwarder {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let cut = tokio::sync::watch::channel((0u64, false)).0;
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let half_open = Arc::new(Mutex::new(Vec::new()));
        let target = Arc::new(Mutex::new(to));
        let (c, r, h, t) = (cut.clone(), refuse.clone(), half_open.clone(), target.clone());
        tokio::spawn(async move {
            loop {
                let (mut client, _) = l.accept().await.unwrap();
                if r.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let to = *t.lock().unwrap();
                let mut up = tokio::net::TcpStream::connect(to).await.unwrap();
                let mut rx = c.subscribe();
                let h = h.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut up) => {}
                        _ = rx.changed() => {
                            if rx.borrow().1 {
                                h.lock().unwrap().push(up);
                            }
                        }
                    }
                });
            }
        });
        Forwarder { addr, to: target, cut, refuse, half_open }
    }

    /// Sends the next connections to `to`.
    fn point(&self, to: std::net::SocketAddr) {
        *self.to.lock().unwrap() = to;
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    fn cut(&self, half_open: bool) {
        self.cut.send_modify(|(n, h)| {
            *n += 1;
            *h = half_open;
        });
    }

    fn refuse(&self, yes: bool) {
        self.refuse.store(yes, std::sync::atomic::Ordering::SeqCst);
    }
}

fn fast_reconnect() -> ringwire::hub::ClientOptions {
    ringwire::hub::ClientOptions {
        token: Some(TOKEN.into()),
        reconnection_delay: Duration::from_millis(5),
        reconnection_delay_max: Duration::from_millis(20),
        ..Default::default()
    }
}

/// Waits for the client's next `Connected` state after the current one; returns `recovered`.
async fn reconnected(c: &HubClient) -> bool {
    let mut st = c.state();
    st.wait_for(|s| matches!(s, ringwire::hub::ClientState::Reconnecting { .. })).await.unwrap();
    let s = st.wait_for(|s| matches!(s, ringwire::hub::ClientState::Connected { .. })).await.unwrap().clone();
    matches!(s, ringwire::hub::ClientState::Connected { recovered: true, .. })
}

#[test]
fn backoff_follows_socket_io_formula_within_its_envelope() {
    let o = ringwire::hub::ClientOptions::default();
    assert_eq!(o.backoff(0, 0.0), Duration::from_millis(1000));
    // floor(0.05 * 10) = 0, even: down by floor(0.05 * 0.5 * 1000) = 25.
    assert_eq!(o.backoff(0, 0.05), Duration::from_millis(975));
    // floor(0.15 * 10) = 1, odd: up by 75.
    assert_eq!(o.backoff(0, 0.15), Duration::from_millis(1075));
    assert_eq!(o.backoff(1, 0.15), Duration::from_millis(2150));
    // 8000 ms + 3960, capped at the 5 s maximum.
    assert_eq!(o.backoff(3, 0.99), Duration::from_secs(5));
    for attempt in 0..8 {
        let ms = 1000.0 * 2f64.powi(attempt);
        for i in 0..1000 {
            let d = o.backoff(attempt as u32, i as f64 / 1000.0).as_secs_f64() * 1000.0;
            assert!(d >= (ms * 0.5).min(5000.0).floor() && d <= (ms * 1.5).min(5000.0), "attempt {attempt}: {d} ms");
        }
    }
    // The injected source is what the client draws from.
    let o = ringwire::hub::ClientOptions { random: Some(Arc::new(|| 0.15)), ..Default::default() };
    assert_eq!(o.backoff(0, (o.random.as_ref().unwrap())()), Duration::from_millis(1075));
}

#[test]
fn a_client_reconnects_rejoins_flushes_its_buffer_in_order_and_never_duplicates() {
    run(|| async {
        let hub = Hub::new(config());
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        hub.on("n", move |ev| g.lock().unwrap().push(ev.decode::<u64>().unwrap()));
        hub.on("sync", |ev| {
            ev.ack(&true).unwrap();
        });
        let (_, addr) = start(&hub).await;
        let fwd = Forwarder::start(addr).await;
        let (c, mut rc) =
            HubClient::connect_with(&fwd.url(), ringwire::hub::ClientOptions { send_buffer: 3, ..fast_reconnect() })
                .await
                .unwrap();
        c.join("R").await.unwrap();
        let first = c.id();

        // Disconnected and unable to reconnect: sends wait in the buffer, up to its bound.
        fwd.refuse(true);
        fwd.cut(false);
        let mut st = c.state();
        st.wait_for(|s| matches!(s, ringwire::hub::ClientState::Reconnecting { attempt: 2, .. })).await.unwrap();
        for i in 1..=3 {
            c.emit("n", &i).await.unwrap();
        }
        assert!(matches!(c.emit("n", &4).await, Err(HubError::BufferFull(3))));
        assert_eq!(c.buffered().await, 3);
        fwd.refuse(false);
        st.wait_for(|s| matches!(s, ringwire::hub::ClientState::Connected { .. })).await.unwrap();
        // The ack comes after everything sent before it: the buffer arrived, in order, and the room
        // was re-joined first.
        c.emit_with_ack("sync", &0, Duration::from_secs(10)).await.unwrap();
        assert_eq!(*got.lock().unwrap(), [1, 2, 3]);
        assert_ne!(c.id(), first, "without recovery a reconnection is a new connection");
        assert!(hub.room_members("R").iter().any(|id| **id == *c.id()));

        // Ten more drops; one listener, one receiver: each message once.
        for _ in 0..10 {
            fwd.cut(false);
            assert!(!reconnected(&c).await);
        }
        c.emit_with_ack("sync", &0, Duration::from_secs(10)).await.unwrap();
        hub.to("R").emit("once", &1).unwrap();
        hub.to("R").emit("m", &5).unwrap();
        let evs = until_marker(&mut rc, 5).await;
        assert_eq!(names(&evs), ["once"]);
        assert_eq!(hub.connection_count(), 1);

        // The application's close ends it for good.
        c.close().await;
        assert_eq!(c.closed().await.code, close::NORMAL);
        assert!(matches!(c.emit("n", &9).await, Err(HubError::Closed)));
    });
}

#[test]
fn recovery_replays_what_was_missed_once_in_order_twice_and_over_a_half_open_connection() {
    run(|| async {
        let hub = Hub::new(HubConfig { recovery: Some(ringwire::hub::Recovery::default()), ..config() });
        let (_, addr) = start(&hub).await;
        let fwd = Forwarder::start(addr).await;
        let (x, mut rx) = HubClient::connect_with(&fwd.url(), fast_reconnect()).await.unwrap();
        let (other, _ro) = connect(&format!("ws://{addr}/ws")).await;
        x.join("A").await.unwrap();
        other.join("B").await.unwrap();
        let id = x.id();
        hub.to("A").emit("before", &0).unwrap();
        assert_eq!(rx.recv().await.unwrap().name(), "before");

        for (round, half_open) in [(1u64, false), (2, true), (3, true)] {
            fwd.refuse(true);
            fwd.cut(half_open);
            let mut st = x.state();
            st.wait_for(|s| matches!(s, ringwire::hub::ClientState::Reconnecting { .. })).await.unwrap();
            // While x is away: three to its room, one to itself, one volatile, one elsewhere.
            for i in 0..3 {
                hub.to("A").emit("missed", &(round * 10 + i)).unwrap();
            }
            // To its own room: logged for it whether or not the hub still sees the old connection.
            hub.to(&id).emit("direct", &round).unwrap();
            hub.to("A").emit_volatile("volatile", &round).unwrap();
            hub.to("B").emit("elsewhere", &round).unwrap();
            fwd.refuse(false);
            let s = st.wait_for(|s| matches!(s, ringwire::hub::ClientState::Connected { .. })).await.unwrap().clone();
            assert_eq!(s, ringwire::hub::ClientState::Connected { id: id.clone(), recovered: true }, "round {round}");
            hub.to("A").emit("m", &round).unwrap();
            let evs = until_marker(&mut rx, round).await;
            let mut want: Vec<(String, Value)> = (0..3).map(|i| ("missed".to_owned(), json!(round * 10 + i))).collect();
            want.push(("direct".to_owned(), json!(round)));
            assert_eq!(evs, want, "round {round}");
            assert!(hub.room_members("A").iter().any(|m| **m == *id));
        }
        // A client that closes on its own ends its session.
        x.close().await;
        x.closed().await;
        while hub.connection_count() > 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(hub.stats().kept_sessions, 0);
        drop(fwd.half_open.lock().unwrap().drain(..));
    });
}

#[test]
fn recovery_works_on_a_quiet_room_and_a_kept_session_expires() {
    run(|| async {
        let age = Duration::from_millis(300);
        let rec = ringwire::hub::Recovery { max_messages: 100, max_age: age };
        let hub = Hub::new(HubConfig { recovery: Some(rec), ..config() });
        let (_, addr) = start(&hub).await;
        let fwd = Forwarder::start(addr).await;
        let (x, mut rx) = HubClient::connect_with(&fwd.url(), fast_reconnect()).await.unwrap();
        x.join("quiet").await.unwrap();
        hub.to("quiet").emit("last words", &1).unwrap();
        assert_eq!(rx.recv().await.unwrap().name(), "last words");
        // The room's last event ages out of the window (a time condition: polled, not slept on).
        while hub.stats().replay_window > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fwd.cut(false);
        assert!(reconnected(&x).await, "nothing after its offset was lost: recovered");
        hub.to("quiet").emit("m", &1).unwrap();
        assert!(until_marker(&mut rx, 1).await.is_empty());

        // Sessions are bounded in time as well: once kept past max_age, a reconnect starts clean.
        fwd.refuse(true);
        fwd.cut(false);
        while hub.stats().kept_sessions == 0 {
            tokio::task::yield_now().await;
        }
        while hub.stats().kept_sessions > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut st = x.state();
        fwd.refuse(false);
        let s = st.wait_for(|s| matches!(s, ringwire::hub::ClientState::Connected { .. })).await.unwrap().clone();
        assert!(matches!(s, ringwire::hub::ClientState::Connected { recovered: false, .. }));
        // Not recovered: the client re-joined its room itself.
        while !hub.room_members("quiet").iter().any(|m| **m == *x.id()) {
            tokio::task::yield_now().await;
        }
    });
}

/// Two hubs (each with its own listener and clients) in one cluster: `emit` on either reaches the
/// room's members on both, once, with the exceptions applied on both.
async fn two_hubs_share_rooms(cluster: ringwire::hub::Cluster) {
    let a_hub = Hub::new(config());
    let b_hub = Hub::new(config());
    a_hub.join_cluster(cluster.clone()).unwrap();
    b_hub.join_cluster(cluster).unwrap();
    let (url_a, _) = start(&a_hub).await;
    let (url_b, _) = start(&b_hub).await;
    let (a, mut ra) = connect(&url_a).await;
    let (b, mut rb) = connect(&url_b).await;
    let (c, mut rc) = connect(&url_b).await;
    a.join("R").await.unwrap();
    b.join("R").await.unwrap();
    c.join("S").await.unwrap();
    b_hub.to("R").emit("to R from B", &1).unwrap();
    a_hub.to("R").emit("to R from A", &2).unwrap();
    // socket.to(room): b's room-mates on every hub, not b.
    b_hub.conn(&b.id()).unwrap().to("R").emit("b to R", &3).unwrap();
    a_hub.except("S").emit("all but S", &4).unwrap();
    // The marker comes from hub A: it reaches b and c after A's earlier records (one path, in order).
    a_hub.emit("m", &1).unwrap();
    let got_a = names(&until_marker(&mut ra, 1).await).into_iter().map(str::to_owned).collect::<HashSet<_>>();
    let got_b = until_marker(&mut rb, 1).await;
    let got_c = until_marker(&mut rc, 1).await;
    assert_eq!(names(&got_b), ["to R from B", "to R from A", "all but S"]);
    assert!(got_c.is_empty(), "{got_c:?}");
    // a gets A's own emits at once and B's through the engine, in no fixed order with the marker:
    // compare sets, reading on for what came after it.
    let mut got_a = got_a;
    for want in ["to R from B", "b to R"] {
        while !got_a.contains(want) {
            got_a.insert(ra.recv().await.unwrap().name().to_owned());
        }
    }
    assert_eq!(got_a, ["to R from B", "to R from A", "b to R", "all but S"].into_iter().map(str::to_owned).collect());
    assert_eq!((a_hub.stats().cluster_bad, b_hub.stats().cluster_lost), (0, 0));
}

#[test]
fn hubs_on_one_host_share_rooms_through_a_shared_memory_ring() {
    run(|| async {
        let name = format!("rw-hub-cluster-{}", std::process::id());
        two_hubs_share_rooms(ringwire::hub::Cluster::shm(&name)).await;
        // A record bigger than the ring's slots is refused before anything is sent.
        let small = ringwire::hub::Cluster::Shm { name: format!("{name}-small"), capacity: 1 << 16, max_message: 4096 };
        let hub = Hub::new(config());
        hub.join_cluster(small).unwrap();
        assert!(matches!(hub.all().emit_bytes("big", &vec![b'1'; 8192]), Err(HubError::Oversize { max: 4096, .. })));
        for n in [name.clone(), format!("{name}-small")] {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    });
}

#[test]
fn hubs_share_rooms_through_redis_pubsub_and_streams() {
    run(|| async {
        let server = ringwire_testkit::redis_server::RedisServer::start().unwrap();
        two_hubs_share_rooms(ringwire::hub::Cluster::RedisPubSub { url: server.url(), channel: "hubs".into() }).await;
        two_hubs_share_rooms(ringwire::hub::Cluster::RedisStream {
            url: server.url(),
            key: "hubs".into(),
            max_len: 10_000,
        })
        .await;
    });
}

/// The Streams path across a Redis restart: every record published while Redis was away arrives once
/// it is back (at least once: a record whose reply was lost may come twice).
#[test]
fn a_redis_restart_mid_broadcast_loses_nothing_on_the_streams_path() {
    run(|| async {
        let mut server = ringwire_testkit::redis_server::RedisServer::start_persistent().unwrap();
        let cluster = ringwire::hub::Cluster::RedisStream { url: server.url(), key: "hubs".into(), max_len: 10_000 };
        let (a_hub, b_hub) = (Hub::new(config()), Hub::new(config()));
        a_hub.join_cluster(cluster.clone()).unwrap();
        b_hub.join_cluster(cluster).unwrap();
        let (url_a, _) = start(&a_hub).await;
        let (a, mut ra) = connect(&url_a).await;
        a.join("R").await.unwrap();
        let total = 200u64;
        for i in 0..total {
            if i == total / 2 {
                server.restart().unwrap();
            }
            b_hub.to("R").emit("n", &i).unwrap();
        }
        let mut seen = HashSet::new();
        while (seen.len() as u64) < total {
            let ev = ra.recv().await.unwrap();
            seen.insert(ev.decode::<u64>().unwrap());
        }
        assert_eq!(seen, (0..total).collect::<HashSet<_>>());
        assert_eq!(b_hub.stats().cluster_lost, 0);

        // A receiving hub that finds Redis gone keeps trying, and resumes once it is back: what was
        // published meanwhile (waiting in hub B's outbox) arrives.
        server.kill();
        while a_hub.stats().cluster_outages == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for i in total..total + 10 {
            b_hub.to("R").emit("n", &i).unwrap();
        }
        server.restart().unwrap();
        while (seen.len() as u64) < total + 10 {
            seen.insert(ra.recv().await.unwrap().decode::<u64>().unwrap());
        }
        assert_eq!(seen, (0..total + 10).collect::<HashSet<_>>());
    });
}

/// Recovery across hubs (a Redis Streams cluster with recovery on; ARCHITECTURE.md, "Recovery across
/// hubs"): a client lost on one hub comes back on another and gets what it missed — emitted on
/// either hub, to its rooms and to itself; not volatile emits, not other rooms — once and in order,
/// with `recovered: true`: from hub A to hub B, back to A, then to a hub C that joined after the
/// events (a restarted hub: its own log is empty, the replay is read from the stream). Once the
/// stream no longer holds the client's offset, C starts it clean.
#[test]
fn recovery_works_across_hubs_through_a_redis_stream() {
    run(|| async {
        let server = ringwire_testkit::redis_server::RedisServer::start().unwrap();
        let cluster = ringwire::hub::Cluster::RedisStream { url: server.url(), key: "hubs".into(), max_len: 10_000 };
        let cfg = || HubConfig { recovery: Some(ringwire::hub::Recovery::default()), ..config() };
        let (a_hub, b_hub) = (Hub::new(cfg()), Hub::new(cfg()));
        a_hub.join_cluster(cluster.clone()).unwrap();
        b_hub.join_cluster(cluster.clone()).unwrap();
        let (_, addr_a) = start(&a_hub).await;
        let (_, addr_b) = start(&b_hub).await;
        let fwd = Forwarder::start(addr_a).await;
        let (x, mut rx) = HubClient::connect_with(&fwd.url(), fast_reconnect()).await.unwrap();
        x.join("R").await.unwrap();
        let id = x.id();
        // A recoverable emit reaches even the emitting hub's own clients through the stream.
        a_hub.to("R").emit("before", &0).unwrap();
        assert_eq!(rx.recv().await.unwrap().name(), "before");
        let mut redis = server.connection().unwrap();
        let sessions = move |r: &mut redis::Connection| -> usize {
            redis::cmd("KEYS").arg("hubs:session:*").query::<Vec<String>>(r).unwrap().len()
        };
        // Emits on `hub`, each waited for until it is in the stream, so the stream's order (the order
        // every hub replays in) is the order of this list.
        async fn emit_in_order(hubs: &[&Hub], id: &str, round: u64) -> Vec<(String, Value)> {
            let mut want = Vec::new();
            for (i, hub) in hubs.iter().enumerate() {
                let before = hub.stats().cluster_published;
                let (name, v) =
                    if i == 1 { ("direct", json!(round)) } else { ("missed", json!(round * 10 + i as u64)) };
                if i == 1 {
                    hub.to(id).emit(name, &v).unwrap();
                } else {
                    hub.to("R").emit(name, &v).unwrap();
                }
                want.push((name.to_owned(), v));
                // Not replayed: volatile, and to a room x is not in (neither is published to wait for).
                hub.to("R").emit_volatile("volatile", &round).unwrap();
                hub.to("elsewhere").emit("elsewhere", &round).unwrap();
                while hub.stats().cluster_published < before + 2 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            want
        }
        let c_hub = Hub::new(cfg());
        for round in 1u64..=3 {
            fwd.refuse(true);
            fwd.cut(false);
            let mut st = x.state();
            st.wait_for(|s| matches!(s, ringwire::hub::ClientState::Reconnecting { .. })).await.unwrap();
            // The hub it left has stored its session in Redis (a condition, polled).
            while sessions(&mut redis) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let want = emit_in_order(&[&a_hub, &b_hub, &a_hub], &id, round).await;
            let next = match round {
                1 => addr_b,
                2 => addr_a,
                _ => {
                    // A hub that was not there when the events were emitted: its log is empty.
                    c_hub.join_cluster(cluster.clone()).unwrap();
                    start(&c_hub).await.1
                }
            };
            fwd.point(next);
            fwd.refuse(false);
            let s = st.wait_for(|s| matches!(s, ringwire::hub::ClientState::Connected { .. })).await.unwrap().clone();
            assert_eq!(s, ringwire::hub::ClientState::Connected { id: id.clone(), recovered: true }, "round {round}");
            assert_eq!(sessions(&mut redis), 0, "taken by the hub it came back to");
            // The marker from another hub than the one x is on, after the live emits resumed.
            b_hub.to("R").emit("m", &round).unwrap();
            assert_eq!(until_marker(&mut rx, round).await, want, "round {round}");
        }
        // The stream loses what came after x's offset (trimmed to nothing): hub C, whose log does not
        // reach back either, starts x clean, and x re-joins its room by itself.
        fwd.refuse(true);
        fwd.cut(false);
        while sessions(&mut redis) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut st = x.state();
        let _: () = redis::cmd("XTRIM").arg("hubs").arg("MAXLEN").arg(0).query(&mut redis).unwrap();
        let stopped = Hub::new(cfg());
        stopped.join_cluster(cluster.clone()).unwrap();
        fwd.point(start(&stopped).await.1);
        fwd.refuse(false);
        let s = st.wait_for(|s| matches!(s, ringwire::hub::ClientState::Connected { .. })).await.unwrap().clone();
        assert!(matches!(s, ringwire::hub::ClientState::Connected { recovered: false, .. }), "{s:?}");
        while !stopped.room_members("R").iter().any(|m| **m == *x.id()) {
            tokio::task::yield_now().await;
        }
        a_hub.to("R").emit("after", &1).unwrap();
        loop {
            if rx.recv().await.unwrap().name() == "after" {
                break;
            }
        }
    });
}

/// Recovery across hubs while Redis is away: the hub keeps serving its clients (a volatile emit
/// arrives at once), and its recoverable emits, which take their offsets from the stream, wait in the
/// outbox and arrive once Redis is back: all of them, once each, in order, with offsets.
#[test]
fn recovery_across_hubs_holds_recoverable_emits_through_a_redis_outage() {
    run(|| async {
        let mut server = ringwire_testkit::redis_server::RedisServer::start_persistent().unwrap();
        let cluster = ringwire::hub::Cluster::RedisStream { url: server.url(), key: "hubs".into(), max_len: 10_000 };
        let hub = Hub::new(HubConfig { recovery: Some(ringwire::hub::Recovery::default()), ..config() });
        hub.join_cluster(cluster).unwrap();
        let (url, _) = start(&hub).await;
        let (x, mut rx) = connect(&url).await;
        x.join("R").await.unwrap();
        hub.to("R").emit("n", &0u64).unwrap();
        assert_eq!(rx.recv().await.unwrap().decode::<u64>().unwrap(), 0);
        server.kill();
        while hub.stats().cluster_outages == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for i in 1..=10u64 {
            hub.to("R").emit("n", &i).unwrap();
        }
        hub.to("R").emit_volatile("v", &1).unwrap();
        let ev = rx.recv().await.unwrap();
        assert_eq!(ev.name(), "v", "the hub serves its clients while Redis is away");
        server.restart().unwrap();
        for i in 1..=10u64 {
            let ev = rx.recv().await.unwrap();
            assert_eq!((ev.name(), ev.decode::<u64>().unwrap()), ("n", i));
        }
        hub.to("R").emit("m", &1).unwrap();
        assert!(until_marker(&mut rx, 1).await.is_empty(), "nothing twice");
    });
}

/// One HTTP/1.1 request on its own connection (a raw client: status and body).
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let at = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
    (status, out[at..].to_vec())
}

/// Splits a poll's body into (name, JSON body) events.
fn frames(mut b: &[u8]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
        let ev = protocol::decode(bytes::Bytes::copy_from_slice(&b[..8 + len])).unwrap();
        let body = ev.body();
        out.push((
            ev.name().to_owned(),
            if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() },
        ));
        b = &b[8 + len..];
    }
    out
}

/// The same sequence both ways — the hub emitting `e` 0..20 to the client, the client sending `c`
/// 0..20 — over long-polling, over a WebSocket, and over polling that upgrades to a WebSocket
/// half-way: every run delivers the same sequences, nothing lost or reordered.
#[test]
fn long_polling_carries_the_same_frames_and_upgrades_without_loss_or_reordering() {
    run(|| async {
        let hub = Hub::new(config());
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        hub.on("c", move |ev| g.lock().unwrap().push(ev.decode::<u64>().unwrap()));
        let (url, addr) = start(&hub).await;
        let want: Vec<u64> = (0..20).collect();

        for upgrade_at in [None, Some(0u64), Some(10)] {
            got.lock().unwrap().clear();
            // Open by polling (or straight over a WebSocket for the reference run).
            let (mut ws, id, pid) = if upgrade_at == Some(0) {
                let mut ws = raw(&url).await;
                let Message::Binary(b) = ws.next().await.unwrap().unwrap() else { panic!() };
                let hello: Value = serde_json::from_slice(&protocol::decode(b).unwrap().body()).unwrap();
                (Some(ws), hello["id"].as_str().unwrap().to_owned(), None)
            } else {
                let (status, body) = http(addr, "GET", &format!("/poll?token={TOKEN}"), b"").await;
                assert_eq!(status, 200);
                let evs = frames(&body);
                assert_eq!(evs[0].0, protocol::HELLO);
                let (id, pid) =
                    (evs[0].1["id"].as_str().unwrap().to_owned(), evs[0].1["pid"].as_str().unwrap().to_owned());
                (None, id, Some(pid))
            };
            let mut seen = Vec::new();
            for i in 0..20u64 {
                if upgrade_at == Some(i) && i > 0 {
                    // Upgrade mid-stream: what is still queued goes over the WebSocket.
                    let (w, _) =
                        tokio_tungstenite::connect_async(format!("{url}?token={TOKEN}&pid={}", pid.as_ref().unwrap()))
                            .await
                            .unwrap();
                    ws = Some(w);
                }
                hub.to(&id).emit("e", &i).unwrap();
                let c = protocol::encode("c", i.to_string().as_bytes());
                match &mut ws {
                    Some(w) => w.send(Message::Binary(c)).await.unwrap(),
                    None => {
                        let (status, _) = http(addr, "POST", &format!("/poll?pid={}", pid.as_ref().unwrap()), &c).await;
                        assert_eq!(status, 200);
                        // Poll now and then: some events come several to a poll.
                        if i % 3 == 2 {
                            let (_, body) =
                                http(addr, "GET", &format!("/poll?pid={}", pid.as_ref().unwrap()), b"").await;
                            seen.extend(
                                frames(&body).into_iter().filter(|(n, _)| n == "e").map(|(_, v)| v.as_u64().unwrap()),
                            );
                        }
                    }
                }
            }
            // Collect the rest from wherever they are now.
            while seen.len() < 20 {
                match &mut ws {
                    Some(w) => {
                        if let Message::Binary(b) = w.next().await.unwrap().unwrap() {
                            let ev = protocol::decode(b).unwrap();
                            if ev.name() == "e" {
                                seen.push(serde_json::from_slice(&ev.body()).unwrap());
                            }
                        }
                    }
                    None => {
                        let (_, body) = http(addr, "GET", &format!("/poll?pid={}", pid.as_ref().unwrap()), b"").await;
                        seen.extend(
                            frames(&body).into_iter().filter(|(n, _)| n == "e").map(|(_, v)| v.as_u64().unwrap()),
                        );
                    }
                }
            }
            assert_eq!(seen, want, "hub to client, upgrade at {upgrade_at:?}");
            while got.lock().unwrap().len() < 20 {
                tokio::task::yield_now().await;
            }
            assert_eq!(*got.lock().unwrap(), want, "client to hub, upgrade at {upgrade_at:?}");
        }
        // The same checks guard polling as the WebSocket: no token, no session.
        assert_eq!(http(addr, "GET", "/poll", b"").await.0, 401);
        assert_eq!(http(addr, "GET", "/poll?pid=nope", b"").await.0, 410);
    });
}

#[test]
fn a_polling_client_that_stops_polling_is_dropped_and_garbage_is_refused() {
    run(|| async {
        let hub = Hub::new(HubConfig {
            ping_interval: Duration::from_millis(50),
            ping_timeout: Duration::from_millis(100),
            ..config()
        });
        let ends = Arc::new(Mutex::new(Vec::new()));
        let e = ends.clone();
        hub.on_disconnect(move |_, r| e.lock().unwrap().push(r.code));
        let (_, addr) = start(&hub).await;
        let open = || async {
            let (_, body) = http(addr, "GET", &format!("/poll?token={TOKEN}"), b"").await;
            frames(&body)[0].1["pid"].as_str().unwrap().to_owned()
        };
        // Never polls again, never answers a ping.
        let _silent = open().await;
        // Posts garbage.
        let pid = open().await;
        let (status, body) = http(addr, "POST", &format!("/poll?pid={pid}"), &[1, 2, 3, 4, 5, 6, 7, 8, 9]).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
        // Its next poll says why, once; then the session is gone.
        let (_, body) = http(addr, "GET", &format!("/poll?pid={pid}"), b"").await;
        let last = frames(&body).pop().unwrap();
        assert_eq!((last.0.as_str(), last.1["code"].as_u64()), ("ringwire:close", Some(close::PROTOCOL as u64)));
        assert_eq!(http(addr, "GET", &format!("/poll?pid={pid}"), b"").await.0, 410);
        while ends.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
        let mut codes = ends.lock().unwrap().clone();
        codes.sort();
        assert_eq!(codes, [close::PROTOCOL, close::PING_TIMEOUT]);
    });
}

#[test]
fn a_polling_client_closes_with_ringwire_close_and_its_session_ends() {
    run(|| async {
        let hub = Hub::new(HubConfig { recovery: Some(ringwire::hub::Recovery::default()), ..config() });
        let ends = Arc::new(Mutex::new(Vec::new()));
        let e = ends.clone();
        hub.on_disconnect(move |_, r| e.lock().unwrap().push(r.code));
        let (_, addr) = start(&hub).await;
        let (_, body) = http(addr, "GET", &format!("/poll?token={TOKEN}"), b"").await;
        let pid = frames(&body)[0].1["pid"].as_str().unwrap().to_owned();
        let bye = protocol::encode(protocol::CLOSE, br#"{"code":1000,"reason":""}"#);
        assert_eq!(http(addr, "POST", &format!("/poll?pid={pid}"), &bye).await.0, 200);
        while ends.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(*ends.lock().unwrap(), [close::NORMAL]);
        assert_eq!(hub.stats().kept_sessions, 0, "a client's own close ends its session");
    });
}
