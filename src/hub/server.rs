//! The hub's server: the accept loop, HTTP routing and the checks before the WebSocket upgrade (hyper),
//! and each connection's reader and writer tasks (tokio-tungstenite).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::conn::{ConnShared, DisconnectReason, Push, Slot};
use super::handle::HubEvent;
use super::polling::PollSession;
use super::protocol::{self, close};
use super::{Conn, Hub, HubStats, Origins};

/// The chat page served at `/`.
const INDEX_HTML: &str = include_str!("assets/index.html");
/// The ES-module client served at `/client.js`.
const CLIENT_JS: &str = include_str!("assets/client.js");

/// TCP connections still in their HTTP phase, beyond `max_connections`, before new ones are shed at
/// accept: bounds the descriptors and tasks slow or idle HTTP clients can hold.
const HTTP_SLACK: usize = 256;
/// What [`Hub::admit`] lets in: the slot taken under the cap (if asked for) and the query's pairs.
type Admitted = (Option<Slot>, Vec<(String, String)>);

/// How long a poll waits for the first frame before answering empty (below the 25 s ping interval,
/// as socket.io's polls).
const POLL_WAIT: Duration = Duration::from_secs(20);
/// How long the writer may take to send the close frame to a client that may not be reading.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Messages the writer hands to the socket before one flush.
const WRITE_BATCH: usize = 256;

/// A WebSocket handshake as [`Hub::auth`] sees it.
#[derive(Debug)]
pub struct Handshake {
    /// The token from `?token=` or `Authorization: Bearer` (the query wins when both are present).
    pub token: Option<String>,
    /// The `Origin` header (already allowed by the origin policy).
    pub origin: Option<String>,
    /// All request headers.
    pub headers: hyper::HeaderMap,
    /// The query string's pairs.
    pub query: Vec<(String, String)>,
    /// The client's address.
    pub peer: SocketAddr,
}

#[derive(Default)]
pub(crate) struct Stats {
    connections: AtomicU64,
    refused: AtomicU64,
    shed: AtomicU64,
    slow_clients: AtomicU64,
    unhandled: AtomicU64,
    stale_acks: AtomicU64,
}

// Relaxed everywhere: independent counters, read as a snapshot that need not be consistent.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    pub fn slow_client(&self) {
        bump(&self.slow_clients)
    }

    pub fn snapshot(&self) -> HubStats {
        HubStats {
            connections: self.connections.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
            slow_clients: self.slow_clients.load(Ordering::Relaxed),
            unhandled: self.unhandled.load(Ordering::Relaxed),
            stale_acks: self.stale_acks.load(Ordering::Relaxed),
            replay_window: 0,
            kept_sessions: 0,
            cluster_published: 0,
            cluster_received: 0,
            cluster_lost: 0,
            cluster_bad: 0,
            cluster_outages: 0,
        }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn asset(content_type: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Compares in time independent of where the first difference is (a token check must not say how
/// many leading bytes were right).
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a header's comma-separated tokens include `token` (case-insensitive), as `Connection:
/// keep-alive, Upgrade`.
fn has_token(headers: &hyper::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Where the connection came in (a request extension set by `serve_http`).
#[derive(Clone, Copy)]
struct Listening {
    loopback: bool,
}

/// Whether a `Host` header names this machine's loopback: `localhost` (and its subdomains),
/// `127.0.0.0/8` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn origin_allowed(policy: &Origins, origin: &str, host: Option<&str>) -> bool {
    match policy {
        Origins::Any => true,
        Origins::List(list) => {
            list.iter().any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin.trim_end_matches('/')))
        }
        Origins::SameHost => {
            let Some(host) = host else { return false };
            let authority = origin.split_once("://").map_or("", |(_, a)| a);
            authority.eq_ignore_ascii_case(host)
        }
    }
}

/// An offset in JSON: a number while JavaScript's `Number` holds it exactly (up to 2^53 - 1), else a
/// decimal string (recovery across hubs: offsets are stream entry ids, `MS << 20 | SEQ`).
fn offset_json(offset: u64) -> serde_json::Value {
    if offset < 1 << 53 {
        offset.into()
    } else {
        offset.to_string().into()
    }
}

/// Recovery across hubs, a client this hub's log can't replay for (it was on another hub, or this
/// one restarted): the stream's `entries` after `offset` up to what this hub has delivered, then its
/// log after the last one read. `None` when the log no longer holds what came after that.
fn replay_from_stream(
    log: &super::recovery::Log,
    entries: super::cluster::Records,
    offset: u64,
    id: &super::conn::ConnId,
    rooms: &std::collections::HashSet<Arc<str>>,
    floors: &super::conn::Floors,
    max_message: usize,
) -> Option<Vec<Bytes>> {
    let last_read = entries.last().map_or(offset, |e| e.0).max(offset);
    if log.last > last_read && log.trimmed > last_read {
        return None;
    }
    let mut out = Vec::new();
    for (at, rec) in entries {
        if at > log.last {
            break; // not delivered here yet: it comes through the receiver, after the replay
        }
        let Ok((_, target, name, body)) = super::cluster::decode(&rec) else { continue };
        if !target.replays(at, id, rooms, floors) {
            continue;
        }
        let wire = format!("{}{at}:{name}", super::OFFSET_PREFIX);
        if let Ok(m) = protocol::encode_checked(&wire, body, max_message) {
            out.push(m);
        }
    }
    out.extend(log.replay(last_read, id, rooms, floors));
    Some(out)
}

impl Hub {
    /// Accepts connections on `listener` until [`shutdown`](Self::shutdown); each is served on its own
    /// tasks on the current tokio runtime (which needs the `net` and `time` drivers). Returns after
    /// shutdown, or an accept error that is not about one connection.
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        let mut shutdown = self.shared.shutdown.subscribe();
        let http_slots = Arc::new(Semaphore::new(self.shared.config.max_connections.saturating_add(HTTP_SLACK)));
        loop {
            tokio::select! {
                // (In its own block: the guard `wait_for` returns must not live in the select's output.)
                _ = async { drop(shutdown.wait_for(|s| *s).await) } => {
                    // Every connection was asked to close; wait for them (each takes at most a few
                    // close graces) so their close frames go out before the caller exits.
                    let drained = self.shared.drained.notified();
                    if self.shared.open.load(Ordering::Relaxed) > 0 {
                        let _ = tokio::time::timeout(4 * CLOSE_GRACE, drained).await;
                    }
                    // Recovery across hubs: the sessions of the connections just closed are stored
                    // before the caller exits (a restarted hub, or another, can take them).
                    #[cfg(feature = "redis")]
                    if let Some(log) = self.shared.shared_log() {
                        let _ = tokio::task::spawn_blocking(move || log.flush(Duration::from_secs(5))).await;
                    }
                    return Ok(());
                }
                r = listener.accept() => {
                    let (stream, peer) = match r {
                        Ok(x) => x,
                        Err(e) if is_per_connection(&e) => continue,
                        Err(e) if is_out_of_descriptors(&e) => {
                            // Out of descriptors: the only way on is for some to close; retry shortly
                            // rather than spin on the error.
                            log::warn!("hub: accept: {e}; retrying in 50 ms");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let Ok(permit) = http_slots.clone().try_acquire_owned() else {
                        bump(&self.shared.stats.shed);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let hub = self.clone();
                    tokio::spawn(async move { hub.serve_http(stream, peer, permit).await });
                }
            }
        }
    }

    /// One TCP connection's HTTP phase: requests until an upgrade hands the stream over, bounded in
    /// time by the handshake deadline.
    async fn serve_http(self, stream: TcpStream, peer: SocketAddr, _permit: OwnedSemaphorePermit) {
        let hub = self.clone();
        let loopback = stream.local_addr().is_ok_and(|a| a.ip().is_loopback());
        let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let hub = hub.clone();
            req.extensions_mut().insert(Listening { loopback });
            async move { Ok::<_, Infallible>(hub.route(req, peer).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.shared.config.handshake_timeout)
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        // hyper's header-read timeout runs whenever the connection waits for a request head, idle
        // keep-alive included: a client that sends nothing, or too slowly, is closed after it. (A whole-
        // connection deadline would cut a long poll.) A POST body has its own deadline (`poll_post`).
        let _ = conn.await;
    }

    async fn route(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        if req.uri().path() == "/poll" {
            let mut r = self.poll(req, peer).await;
            if r.status() == StatusCode::UNAUTHORIZED || r.status() == StatusCode::FORBIDDEN {
                bump(&self.shared.stats.refused);
            }
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return r;
        }
        if req.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
        }
        match req.uri().path() {
            "/" | "/index.html" => asset("text/html; charset=utf-8", INDEX_HTML),
            "/client.js" => asset("text/javascript; charset=utf-8", CLIENT_JS),
            "/ws" => {
                let mut r = self.upgrade(req, peer);
                if r.status() != StatusCode::SWITCHING_PROTOCOLS {
                    bump(&self.shared.stats.refused);
                    // A page on another origin may read why it was refused (the reason only; nothing
                    // else is served cross-origin).
                    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
                }
                r
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// The checks every new connection passes (WebSocket or polling), in the documented order: origin
    /// 403, token 401, and, when `reserve`, the cap (503), taking a slot. Returns the slot and the query.
    #[allow(clippy::result_large_err)]
    fn admit(
        &self,
        req: &Request<Incoming>,
        peer: SocketAddr,
        reserve: bool,
    ) -> Result<Admitted, Response<Full<Bytes>>> {
        let shared = &self.shared;
        let headers = req.headers();
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Some(o) = &origin {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
            let loopback = req.extensions().get::<Listening>().is_some_and(|l| l.loopback);
            // DNS rebinding: a page on any name rebound to 127.0.0.1 sends an Origin and a Host that
            // match each other. A hub listening on loopback with the default policy takes only
            // loopback names (as webpack-dev-server's and Vite's `allowedHosts` do).
            let rebound = loopback && shared.config.origins == Origins::SameHost && !host.is_some_and(is_loopback_host);
            if rebound || !origin_allowed(&shared.config.origins, o, host) {
                return Err(text(StatusCode::FORBIDDEN, format!("origin {o} is not allowed\n")));
            }
        }
        let query: Vec<(String, String)> = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme is case-insensitive (RFC 9110, 11.1).
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_owned());
        let token = query.iter().find(|(k, _)| k == "token").map(|(_, v)| v.clone()).or(bearer);
        let auth = shared.hooks.read().unwrap_or_else(PoisonError::into_inner).auth.clone();
        let verdict = match auth {
            Some(check) => {
                let hs = Handshake { token, origin, headers: headers.clone(), query: query.clone(), peer };
                check(&hs)
            }
            None => match (&shared.config.token, &token) {
                (None, _) => Ok(()),
                (Some(_), None) => Err("a token is required (?token= or Authorization: Bearer)".to_owned()),
                (Some(want), Some(got)) if same_secret(want, got) => Ok(()),
                (Some(_), Some(_)) => Err("wrong token".to_owned()),
            },
        };
        if let Err(why) = verdict {
            let mut r = text(StatusCode::UNAUTHORIZED, format!("{why}\n"));
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Err(r);
        }
        if !reserve {
            return Ok((None, query));
        }
        // Relaxed: a counter for the cap (no data published through it); the fetch_add reserves.
        if shared.open.fetch_add(1, Ordering::Relaxed) >= shared.config.max_connections {
            shared.open.fetch_sub(1, Ordering::Relaxed);
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "too many connections\n");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(r);
        }
        Ok((Some(Slot(shared.clone())), query))
    }

    /// The checks of the handshake, in the documented order (origin 403, token 401, cap 503, upgrade
    /// 426), then the 101 response and the connection's task. `?pid=P` moves polling session P onto
    /// this WebSocket (no new slot, no new hello).
    fn upgrade(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let pid = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "pid")
            .map(|(_, v)| v.into_owned());
        let (slot, query) = match self.admit(&req, peer, pid.is_none()) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let session = match &pid {
            Some(p) => match self.shared.polls.lock().unwrap_or_else(PoisonError::into_inner).get(p.as_str()) {
                // A session whose connection has ended only waits to hand out its close: not upgraded.
                Some(s) if s.conn.closing.borrow().is_some() => {
                    return text(StatusCode::GONE, "this polling session's connection is closed\n")
                }
                Some(s) => Some(s.clone()),
                None => return text(StatusCode::GONE, "no such polling session\n"),
            },
            None => None,
        };
        let headers = req.headers();
        let key = headers.get(header::SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes()));
        let is_upgrade = has_token(headers, header::CONNECTION, "upgrade")
            && has_token(headers, header::UPGRADE, "websocket")
            && headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
        let (Some(accept), true) = (key, is_upgrade) else {
            let mut r =
                text(StatusCode::UPGRADE_REQUIRED, "this is the WebSocket endpoint: send a WebSocket upgrade\n");
            r.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            r.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            return r;
        };
        // A reconnect asking to resume its session (recovery): `?sid=S&offset=N`.
        let resume = match (query.iter().find(|(k, _)| k == "sid"), query.iter().find(|(k, _)| k == "offset")) {
            (Some((_, sid)), Some((_, off))) => off.parse().ok().map(|o| (sid.clone(), o)),
            _ => None,
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        let hub = self.clone();
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let mut cfg = WebSocketConfig::default();
            // Small eager read buffer: an idle connection's memory is mostly this (tungstenite's default
            // is 128 KiB); messages larger than it are read in several steps.
            cfg.read_buffer_size = 4096;
            // Frames gather up to 16 KiB before a write; the writer flushes after each batch, so a lone
            // message still goes out at once. (0 made one send() per frame: 4x fewer deliveries/s at a
            // room of 1,000 on the 2-vCPU machine.)
            cfg.write_buffer_size = 16 << 10;
            cfg.max_message_size = Some(hub.shared.config.max_message);
            cfg.max_frame_size = Some(hub.shared.config.max_message);
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(cfg)).await;
            match (session, slot) {
                (Some(session), _) => hub.run_upgraded(ws, session).await,
                (None, Some(slot)) => hub.run_conn(ws, slot, resume).await,
                (None, None) => {}
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        r
    }

    /// One WebSocket connection, from hello to the `disconnect` hooks.
    async fn run_conn(
        &self,
        ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
        _slot: Slot,
        resume: Option<(String, u64)>,
    ) {
        let shared = &self.shared;
        let (sink, stream) = ws.split();
        let remote = self.remote_session(&resume).await;
        let (conn, qrx) = self.open_conn(resume, remote, serde_json::Value::Null);
        bump(&shared.stats.connections);
        let hooks = shared.hooks.read().unwrap_or_else(PoisonError::into_inner).connection.clone();
        for h in &hooks {
            h(&Conn(conn.clone()));
        }
        // The writer starts after the connection hooks: the client's hello (queued first) goes out
        // only once what they did (joins, emits) is done, so a client that has its hello is in the
        // rooms the application put it in.
        self.run_ws(sink, stream, qrx, conn).await;
    }

    /// A polling session's connection moved onto a WebSocket: the waiting poll returns, and this
    /// socket drains the same queue from where the polls left it (nothing lost or reordered).
    async fn run_upgraded(&self, ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, session: Arc<PollSession>) {
        let (sink, stream) = ws.split();
        session.upgraded.store(true, Ordering::Relaxed);
        session.upgrading.notify_waiters();
        let Some(qrx) = session.rx.lock().await.take() else { return };
        let _slot = session.slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        // The session stays known until the WebSocket ends: a POST the client sent before it saw the
        // socket open is still taken, in order, before what it sends on the socket.
        self.run_ws(sink, stream, qrx, session.conn.clone()).await;
        self.shared.polls.lock().unwrap_or_else(PoisonError::into_inner).remove(&session.pid);
    }

    /// `/poll`: `GET` without `pid` opens a polling connection (the same checks as `/ws`; the response
    /// holds the hello, whose `pid` names the session); `GET ?pid=P` waits up to [`POLL_WAIT`] for
    /// frames; `POST ?pid=P` sends frames.
    async fn poll(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let pid = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "pid")
            .map(|(_, v)| v.into_owned());
        let session = match &pid {
            Some(p) => match self.shared.polls.lock().unwrap_or_else(PoisonError::into_inner).get(p.as_str()) {
                Some(s) => Some(s.clone()),
                None => return text(StatusCode::GONE, "no such polling session (closed, upgraded or unknown)\n"),
            },
            None => None,
        };
        match (req.method(), session) {
            (&Method::GET, None) => self.poll_open(req, peer).await,
            (&Method::GET, Some(s)) => self.poll_drain(&s, true).await,
            (&Method::POST, Some(s)) => self.poll_post(&s, req).await,
            _ => text(StatusCode::BAD_REQUEST, "GET /poll opens a session; GET and POST /poll?pid=P use it\n"),
        }
    }

    async fn poll_open(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        if *self.shared.shutdown.borrow() {
            return text(StatusCode::SERVICE_UNAVAILABLE, "the hub is shutting down\n");
        }
        let (slot, query) = match self.admit(&req, peer, true) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let resume = match (query.iter().find(|(k, _)| k == "sid"), query.iter().find(|(k, _)| k == "offset")) {
            (Some((_, sid)), Some((_, off))) => off.parse().ok().map(|o| (sid.clone(), o)),
            _ => None,
        };
        let pid: Arc<str> = format!("{:016x}{:016x}", protocol::random_u64(), protocol::random_u64()).into();
        let remote = self.remote_session(&resume).await;
        let (conn, qrx) = self.open_conn(resume, remote, serde_json::json!({"pid": &*pid}));
        bump(&self.shared.stats.connections);
        let hooks = self.shared.hooks.read().unwrap_or_else(PoisonError::into_inner).connection.clone();
        for h in &hooks {
            h(&Conn(conn.clone()));
        }
        let session = Arc::new(PollSession {
            pid: pid.clone(),
            conn,
            slot: std::sync::Mutex::new(slot),
            rx: tokio::sync::Mutex::new(Some(qrx)),
            upgrading: tokio::sync::Notify::new(),
            upgraded: std::sync::atomic::AtomicBool::new(false),
            pong: tokio::sync::Notify::new(),
            posting: tokio::sync::Mutex::new(()),
        });
        self.shared.polls.lock().unwrap_or_else(PoisonError::into_inner).insert(pid, session.clone());
        tokio::spawn(self.clone().poll_supervise(session.clone()));
        self.poll_drain(&session, false).await
    }

    /// Answers a poll with what is queued (waiting for the first frame when `wait`), up to about
    /// `max_message` bytes; once the connection has closed and its queue is empty, with the
    /// `ringwire:close` frame, and the session is gone.
    async fn poll_drain(&self, session: &Arc<PollSession>, wait: bool) -> Response<Full<Bytes>> {
        let Ok(mut guard) = session.rx.try_lock() else {
            return text(StatusCode::CONFLICT, "another poll of this session is pending\n");
        };
        let Some(rx) = guard.as_mut() else {
            return text(StatusCode::GONE, "this session moved to a WebSocket\n");
        };
        let conn = &session.conn;
        let mut out = bytes::BytesMut::new();
        let mut closing = conn.closing.subscribe();
        let closed_now = closing.borrow_and_update().is_some();
        // Registered before the flag is read: an upgrade between the two still wakes this poll.
        let upgrading = session.upgrading.notified();
        tokio::pin!(upgrading);
        upgrading.as_mut().enable();
        let moving = session.upgraded.load(Ordering::Relaxed);
        let first = if wait && !closed_now && !moving {
            tokio::select! {
                m = rx.recv() => m,
                _ = upgrading => None,
                _ = closing.changed() => None,
                _ = tokio::time::sleep(POLL_WAIT) => None,
            }
        } else {
            rx.try_recv().ok()
        };
        let mut next = first;
        while let Some(Push::Frame(b)) = next {
            out.extend_from_slice(&b);
            if out.len() >= self.shared.config.max_message {
                break;
            }
            next = rx.try_recv().ok();
        }
        if out.is_empty() && !session.upgraded.load(Ordering::Relaxed) {
            if let Some(r) = conn.closing.borrow().clone() {
                let body = serde_json::json!({"code": r.code, "reason": r.reason}).to_string();
                out.extend_from_slice(&protocol::encode(protocol::CLOSE, body.as_bytes()));
                *guard = None;
                self.shared.polls.lock().unwrap_or_else(PoisonError::into_inner).remove(&session.pid);
            }
        }
        let mut r = Response::new(Full::new(out.freeze()));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        r
    }

    /// A POST of frames: each decoded and dispatched in order, as if read from a WebSocket.
    async fn poll_post(&self, session: &Arc<PollSession>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        use http_body_util::BodyExt;
        // One post at a time per session (as one poll): frames are dispatched in the order sent, and a
        // client can't make the hub buffer many bodies at once.
        let Ok(_posting) = session.posting.try_lock() else {
            return text(StatusCode::CONFLICT, "another post of this session is pending\n");
        };
        let conn = &session.conn;
        let limit = self.shared.config.max_message.saturating_mul(4);
        let read = tokio::time::timeout(
            self.shared.config.handshake_timeout,
            http_body_util::Limited::new(req.into_body(), limit).collect(),
        );
        let body = match read.await {
            Ok(Ok(b)) => b.to_bytes(),
            Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time\n"),
            Ok(Err(_)) => {
                let why = format!("a post of more than {limit} bytes");
                conn.close(close::TOO_BIG, &why);
                return text(StatusCode::PAYLOAD_TOO_LARGE, format!("{why}\n"));
            }
        };
        let events = match super::polling::split(body) {
            Ok(e) => e,
            Err(e) => {
                conn.close(close::PROTOCOL, &e.to_string());
                return text(StatusCode::BAD_REQUEST, format!("{e}\n"));
            }
        };
        for ev in events {
            if conn.closing.borrow().is_some() {
                return text(StatusCode::GONE, "the connection is closed\n");
            }
            if ev.len() > self.shared.config.max_message {
                let why =
                    format!("message of {} bytes exceeds the limit of {}", ev.len(), self.shared.config.max_message);
                conn.close(close::TOO_BIG, &why);
                return text(StatusCode::PAYLOAD_TOO_LARGE, format!("{why}\n"));
            }
            if self.dispatch(conn, ev) {
                session.pong.notify_one();
            }
        }
        text(StatusCode::OK, "ok\n")
    }

    /// A polling connection's heartbeat (pings go out with the polls, pongs come in posts) and end.
    async fn poll_supervise(self, session: Arc<PollSession>) {
        let conn = &session.conn;
        let cfg = &self.shared.config;
        let ping = protocol::encode(protocol::PING, b"");
        let mut closing = conn.closing.subscribe();
        let upgraded = || session.upgraded.load(Ordering::Relaxed);
        loop {
            if closing.borrow_and_update().is_some() {
                break;
            }
            tokio::select! {
                _ = closing.changed() => break,
                _ = session.upgrading.notified() => {}
                _ = tokio::time::sleep(cfg.ping_interval) => {
                    if upgraded() || !conn.push(Push::Frame(ping.clone())) {
                        break;
                    }
                    tokio::select! {
                        _ = session.pong.notified() => {}
                        _ = session.upgrading.notified() => {}
                        _ = closing.changed() => break,
                        _ = tokio::time::sleep(cfg.ping_timeout) => {
                            if !upgraded() {
                                conn.close(close::PING_TIMEOUT, "no pong within the ping timeout");
                            }
                        }
                    }
                }
            }
            if upgraded() {
                return;
            }
        }
        if upgraded() {
            return;
        }
        self.finish(conn);
        // Its slot under max_connections goes back now (the session only waits to hand out its close).
        drop(session.slot.lock().unwrap_or_else(PoisonError::into_inner).take());
        // The client's next poll collects the close frame; a client that never polls again leaves the
        // session to be dropped here.
        tokio::time::sleep(cfg.ping_timeout).await;
        self.shared.polls.lock().unwrap_or_else(PoisonError::into_inner).remove(&session.pid);
        let _slot = session.slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    /// A connection's life on a WebSocket: the writer task, the reader, the close, the end.
    async fn run_ws<K, S>(&self, sink: K, mut stream: S, qrx: mpsc::Receiver<Push>, conn: Arc<ConnShared>)
    where
        K: futures_util::Sink<Message, Error = WsError> + Unpin + Send + 'static,
        S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
    {
        let writer = tokio::spawn(write_loop(sink, qrx, conn.clone()));
        let shutting_down = *self.shared.shutdown.borrow();
        if shutting_down {
            conn.close(close::GOING_AWAY, "the hub is shutting down");
        }
        self.read_loop(&conn, &mut stream).await;
        // Let the writer send the close frame (bounded: it gives up on a client that does not read),
        // then read what the client still sends until its close or the grace ends, so that closing the
        // socket with unread input does not reset the connection before the close frame arrives.
        let _ = writer.await;
        let _ = tokio::time::timeout(CLOSE_GRACE, async { while let Some(Ok(_)) = stream.next().await {} }).await;
        self.finish(&conn);
    }

    /// The end of a connection, whatever carried it: `disconnecting`, out of the registry (the
    /// session kept for recovery if it may be), pending acks dropped, `disconnect`.
    fn finish(&self, conn: &Arc<ConnShared>) {
        // Relaxed: only the swap's atomicity matters (one caller wins).
        if conn.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        let shared = &self.shared;
        let reason = conn.closing.borrow().clone().unwrap_or(DisconnectReason { code: 1006, reason: String::new() });
        let hooks = shared.hooks.read().unwrap_or_else(PoisonError::into_inner).disconnecting.clone();
        let handle = Conn(conn.clone());
        for h in &hooks {
            h(&handle, &reason);
        }
        self.close_session(conn);
        conn.end_acks();
        let hooks = shared.hooks.read().unwrap_or_else(PoisonError::into_inner).disconnect.clone();
        for h in &hooks {
            h(&handle, &reason);
        }
    }

    /// Recovery across hubs: a reconnect's session, taken from Redis (with the stream's records to
    /// replay when this hub's log can't), unless its old connection is still open here (then the
    /// takeover in [`open_conn`](Self::open_conn) applies).
    async fn remote_session(&self, resume: &Option<(String, u64)>) -> Option<super::cluster::RemoteSession> {
        #[cfg(feature = "redis")]
        {
            let (sid, offset) = resume.clone()?;
            let shared_log = self.shared.shared_log()?;
            let max = self.shared.config.recovery.as_ref()?.max_messages;
            let local_covers = {
                let log = self.shared.log.lock().unwrap_or_else(PoisonError::into_inner);
                if log.live.contains_key(sid.as_str()) {
                    return None;
                }
                log.can_resume(offset)
            };
            shared_log.take(sid, offset, max, local_covers).await
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = resume;
            None
        }
    }

    /// Registers a new connection and queues its hello: a fresh session, or with recovery on and a
    /// resumable `(sid, offset)`, the lost connection's id, rooms and missed events (queued right after
    /// the hello, under the log's mutex, so no later emit can overtake them). `remote`: the session
    /// as recovery across hubs kept it in Redis.
    fn open_conn(
        &self,
        resume: Option<(String, u64)>,
        remote: Option<super::cluster::RemoteSession>,
        more: serde_json::Value,
    ) -> (Arc<ConnShared>, mpsc::Receiver<Push>) {
        let shared = &self.shared;
        let cfg = &shared.config;
        let new_id = || -> Arc<str> { format!("{:016x}", protocol::random_u64()).into() };
        let hello = |id: &str, extra: serde_json::Value| {
            let mut h = serde_json::json!({
                "id": id,
                "pingInterval": cfg.ping_interval.as_millis() as u64,
                "pingTimeout": cfg.ping_timeout.as_millis() as u64,
                "maxMessage": cfg.max_message,
                "recovered": false,
            });
            for extra in [extra, more.clone()] {
                if let (Some(h), serde_json::Value::Object(extra)) = (h.as_object_mut(), extra) {
                    h.extend(extra);
                }
            }
            Push::Frame(protocol::encode(protocol::HELLO, h.to_string().as_bytes()))
        };
        let Some(rec) = &cfg.recovery else {
            let id = new_id();
            let (qtx, qrx) = mpsc::channel(cfg.send_queue.max(1));
            let conn = Arc::new(ConnShared::new(id.clone(), None, false, shared.clone(), qtx));
            conn.push(hello(&id, serde_json::Value::Null));
            shared.registry.write().unwrap_or_else(PoisonError::into_inner).insert(conn.clone(), []);
            return (conn, qrx);
        };
        let mut log = shared.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.expire(rec);
        let mut resumed = None;
        let ordered = shared.ordered();
        let mut remote_entries = None;
        if let Some((sid, offset)) = resume {
            let found = match log.live.remove(sid.as_str()) {
                // The old connection is still open here (half-open: its client is gone or about to
                // be): this one takes its session over.
                Some(old) => {
                    old.replaced.store(true, Ordering::Relaxed);
                    old.close(close::REPLACED, "replaced by a newer connection of the same session");
                    let mut reg = shared.registry.write().unwrap_or_else(PoisonError::into_inner);
                    let rooms = reg.remove_if_current(&old).map(|m| m.rooms).unwrap_or_default();
                    let floors = old.floors.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    old.sid.clone().map(|sid| (sid, old.id.clone(), rooms, floors))
                }
                // Recovery across hubs: kept in Redis, not here.
                None if ordered => remote
                    .filter(|r| {
                        // Never an id that is open here (a stored value names it only if tampered with).
                        let reg = shared.registry.read().unwrap_or_else(PoisonError::into_inner);
                        protocol::is_conn_id(&r.id) && !reg.conns.contains_key(&r.id)
                    })
                    .map(|r| {
                        remote_entries = r.entries;
                        // Rooms shaped like connection ids are dropped, but its own.
                        let rooms = r.rooms.into_iter().filter(|x| *x == r.id || !protocol::is_conn_id(x)).collect();
                        (Arc::<str>::from(sid), r.id, rooms, r.floors)
                    }),
                None => log.take_kept(&sid).map(|k| (Arc::<str>::from(sid), k.id, k.rooms, k.floors)),
            };
            resumed = found.and_then(|(sid, id, rooms, floors)| {
                let replay = if log.can_resume(offset) {
                    Some(log.replay(offset, &id, &rooms, &floors))
                } else {
                    let entries = remote_entries.take()?;
                    replay_from_stream(&log, entries, offset, &id, &rooms, &floors, cfg.max_message)
                };
                replay.map(|r| (sid, id, rooms, floors, offset, r))
            });
        }
        let recovered = resumed.is_some();
        let (sid, id, rooms, floors, offset, replay) = resumed.unwrap_or_else(|| {
            let sid: Arc<str> = format!("{:016x}{:016x}", protocol::random_u64(), protocol::random_u64()).into();
            let floors = super::conn::Floors { start: log.last, rooms: Default::default() };
            (sid, new_id(), Default::default(), floors, log.last, Vec::new())
        });
        let (qtx, qrx) = mpsc::channel(cfg.send_queue.max(1) + replay.len() + 1);
        let conn = Arc::new(ConnShared::new(id.clone(), Some(sid.clone()), recovered, shared.clone(), qtx));
        *conn.floors.lock().unwrap_or_else(PoisonError::into_inner) = floors;
        conn.push(hello(&id, serde_json::json!({"sid": &*sid, "recovered": recovered, "offset": offset_json(offset)})));
        for m in replay {
            conn.push(Push::Frame(m));
        }
        shared.registry.write().unwrap_or_else(PoisonError::into_inner).insert(conn.clone(), rooms);
        log.live.insert(sid, conn.clone());
        (conn, qrx)
    }

    /// Takes an ended connection out of the registry (unless a newer one of its session took its id
    /// over) and, with recovery on, keeps its session unless the client closed it or it was replaced.
    fn close_session(&self, conn: &Arc<ConnShared>) {
        let shared = &self.shared;
        let (Some(rec), Some(sid)) = (&shared.config.recovery, &conn.sid) else {
            shared.registry.write().unwrap_or_else(PoisonError::into_inner).remove_if_current(conn);
            return;
        };
        let mut log = shared.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.live.get(sid).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            log.live.remove(sid);
        }
        let member = shared.registry.write().unwrap_or_else(PoisonError::into_inner).remove_if_current(conn);
        let ended_by_client = conn.client_closed.load(Ordering::Relaxed);
        if let (Some(m), false, false) = (member, ended_by_client, conn.replaced.load(Ordering::Relaxed)) {
            let floors = conn.floors.lock().unwrap_or_else(PoisonError::into_inner).clone();
            #[cfg(feature = "redis")]
            if let Some(shared_log) = shared.shared_log() {
                // Recovery across hubs: kept in Redis, for whichever hub the client comes back to.
                shared_log.keep(sid.clone(), conn.id.clone(), m.rooms.into_iter().collect(), floors, rec.max_age);
                log.expire(rec);
                return;
            }
            let bound = shared.config.max_connections.saturating_mul(4);
            log.keep(sid.clone(), conn.id.clone(), m.rooms, floors, bound);
        }
        log.expire(rec);
    }

    /// Reads and dispatches until a close is asked for (by either side, a limit, the heartbeat);
    /// returns with `conn.closing` set.
    async fn read_loop<S>(&self, conn: &Arc<ConnShared>, stream: &mut S)
    where
        S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
    {
        let cfg = &self.shared.config;
        let ping = protocol::encode(protocol::PING, b"");
        let mut closing = conn.closing.subscribe();
        let mut ping_due = Instant::now() + cfg.ping_interval;
        let mut pong_due: Option<Instant> = None;
        loop {
            // A receiver sees changes after it subscribed only: a close asked for before (by a
            // connection hook, say) is read here.
            if closing.borrow_and_update().is_some() {
                return;
            }
            let wake = pong_due.unwrap_or(ping_due);
            tokio::select! {
                _ = closing.changed() => return,
                _ = tokio::time::sleep_until(wake) => {
                    if pong_due.is_some() {
                        conn.close(close::PING_TIMEOUT, "no pong within the ping timeout");
                        return;
                    }
                    if !conn.push(Push::Frame(ping.clone())) {
                        return;
                    }
                    pong_due = Some(Instant::now() + cfg.ping_timeout);
                }
                m = stream.next() => {
                    let msg = match m {
                        None => {
                            conn.close(1006, "the connection dropped without a close frame");
                            return;
                        }
                        Some(Err(e)) => {
                            let (code, why) = match e {
                                WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => (
                                    close::TOO_BIG,
                                    format!("message of {size} bytes exceeds the limit of {max_size}"),
                                ),
                                WsError::Capacity(e) => (close::TOO_BIG, e.to_string()),
                                WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                                    (1006, "the connection dropped without a close frame".to_owned())
                                }
                                WsError::Protocol(e) => (close::PROTOCOL, e.to_string()),
                                e => (1006, e.to_string()),
                            };
                            conn.close(code, &why);
                            return;
                        }
                        Some(Ok(msg)) => msg,
                    };
                    match msg {
                        Message::Binary(b) => match protocol::decode(b) {
                            Ok(ev) => {
                                if self.dispatch(conn, ev) {
                                    pong_due = None;
                                    ping_due = Instant::now() + cfg.ping_interval;
                                }
                            }
                            Err(e) => {
                                conn.close(close::PROTOCOL, &e.to_string());
                                return;
                            }
                        },
                        Message::Text(_) => {
                            conn.close(close::UNSUPPORTED, "text messages are not part of the protocol: send binary frames");
                            return;
                        }
                        Message::Close(frame) => {
                            let (code, why) = frame.map_or((1005, String::new()), |f| (f.code.into(), f.reason.to_string()));
                            // A normal close asked for by the client (the application's own `disconnect`)
                            // ends its session; any other code (a client giving up on our pings, 4000,
                            // say) keeps it recoverable, as socket.io does.
                            if conn.close(code, &why) && code == close::NORMAL {
                                conn.client_closed.store(true, Ordering::Relaxed);
                            }
                            return;
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
            }
        }
    }

    /// Handles one client event; true when it was the heartbeat's pong.
    fn dispatch(&self, conn: &Arc<ConnShared>, ev: protocol::WireEvent) -> bool {
        let shared = &self.shared;
        let name = ev.name();
        let (event, ack) = match name.strip_prefix(protocol::ACK_PREFIX) {
            Some(rest) => match protocol::parse_ack(rest) {
                Some((token, id, _)) if token == shared.token => {
                    if !conn.resolve_ack(id, ev.body()) {
                        bump(&shared.stats.stale_acks);
                    }
                    return false;
                }
                Some((_, _, event)) => (event, Some(name.to_owned())),
                None => {
                    complain(conn, "bad_ack", &format!("malformed ack name {name:?}"));
                    return false;
                }
            },
            None => (name, None),
        };
        let reply = |value: serde_json::Value| {
            if let Some(ack) = &ack {
                conn.push(Push::Frame(protocol::encode(ack, value.to_string().as_bytes())));
            }
        };
        match event {
            protocol::PONG => return true,
            // A client's own close (what a polling client has instead of a close frame): its session
            // ends, as with a WebSocket close 1000.
            protocol::CLOSE => {
                if conn.close(close::NORMAL, "closed by the client") {
                    conn.client_closed.store(true, Ordering::Relaxed);
                }
            }
            protocol::JOIN | protocol::LEAVE => {
                let room = match serde_json::from_slice::<String>(&ev.body()) {
                    Ok(r) if !r.is_empty() && r.len() <= crate::socket::MAX_NAME => r,
                    _ => {
                        let why = "the body of ringwire:join / ringwire:leave is a room name, a JSON string of 1 to 255 bytes";
                        reply(serde_json::json!({"ok": false, "error": why}));
                        if ack.is_none() {
                            complain(conn, "bad_room", why);
                        }
                        return false;
                    }
                };
                let handle = Conn(conn.clone());
                let verdict = if event == protocol::JOIN {
                    self.check_join(&handle, &room).map(|()| {
                        handle.join(&room);
                    })
                } else if room == *conn.id {
                    Err("a connection can't leave its own room".to_owned())
                } else {
                    handle.leave(&room);
                    Ok(())
                };
                match verdict {
                    Ok(()) => reply(serde_json::json!({"ok": true})),
                    Err(why) => {
                        reply(serde_json::json!({"ok": false, "error": why}));
                        if ack.is_none() {
                            complain(conn, "join_refused", &why);
                        }
                    }
                }
            }
            e if e.starts_with(crate::socket::RESERVED_PREFIX) => {
                conn.close(close::POLICY, &format!("{e} is reserved to the server"));
            }
            user => {
                let hev = HubEvent {
                    conn: Conn(conn.clone()),
                    name: Arc::from(user),
                    body: ev.body(),
                    ack: std::sync::Mutex::new(ack),
                };
                // A listener that panics ends its connection (1011) instead of its reader task alone,
                // which would leave the connection registered, unread and never closed.
                let emitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.events.emit(user, hev)));
                match emitted {
                    Ok(Ok(true)) => {}
                    Ok(_) => bump(&shared.stats.unhandled),
                    Err(_) => {
                        log::warn!("hub: a listener of {user:?} panicked; closing its connection");
                        conn.close(close::INTERNAL, "a listener failed");
                    }
                }
            }
        }
        false
    }

    /// A client's join request: never another connection's own room (open, kept for recovery, or on
    /// another hub: any room shaped like a connection id but its own), at most
    /// [`MAX_ROOMS_PER_CONNECTION`](super::MAX_ROOMS_PER_CONNECTION), then the application's policy.
    fn check_join(&self, conn: &Conn, room: &str) -> Result<(), String> {
        if room != &**conn.id() && protocol::is_conn_id(room) {
            return Err("that room is a connection's own (16 hex digits are reserved to connection ids)".to_owned());
        }
        let joined = {
            let reg = self.shared.registry.read().unwrap_or_else(PoisonError::into_inner);
            reg.conns.get(conn.id()).map_or(0, |m| m.rooms.len())
        };
        if joined >= super::MAX_ROOMS_PER_CONNECTION {
            return Err(format!("a connection may be in at most {} rooms", super::MAX_ROOMS_PER_CONNECTION));
        }
        let check = self.shared.hooks.read().unwrap_or_else(PoisonError::into_inner).join.clone();
        match check {
            Some(f) => f(conn, room),
            None => {
                let reg = self.shared.registry.read().unwrap_or_else(PoisonError::into_inner);
                if room != &**conn.id() && reg.conns.contains_key(room) {
                    return Err("that room is another connection's own".to_owned());
                }
                Ok(())
            }
        }
    }
}

/// Sends `ringwire:error` (non-fatal) to one connection.
fn complain(conn: &ConnShared, code: &str, message: &str) {
    let body = serde_json::json!({"code": code, "message": message}).to_string();
    conn.push(Push::Frame(protocol::encode(protocol::ERROR, body.as_bytes())));
}

/// Drains the connection's queue into the socket, batching what is already queued into one flush;
/// on a close request sends the close frame (bounded by [`CLOSE_GRACE`]).
async fn write_loop<S>(mut sink: S, mut rx: mpsc::Receiver<Push>, conn: Arc<ConnShared>)
where
    S: futures_util::Sink<Message, Error = WsError> + Unpin,
{
    let mut closing = conn.closing.subscribe();
    loop {
        // The task may start after a close was asked for; `changed` would not report that one.
        if closing.borrow_and_update().is_some() {
            break;
        }
        tokio::select! {
            biased;
            _ = closing.changed() => break,
            m = rx.recv() => {
                let Some(Push::Frame(first)) = m else { break };
                let write = async {
                    sink.feed(Message::Binary(first)).await?;
                    for _ in 1..WRITE_BATCH {
                        match rx.try_recv() {
                            Ok(Push::Frame(b)) => sink.feed(Message::Binary(b)).await?,
                            Err(_) => break,
                        }
                    }
                    sink.flush().await
                };
                tokio::select! {
                    r = write => if let Err(e) = r {
                        // The socket is gone: no close frame can be sent either.
                        conn.close(1006, &format!("write failed: {e}"));
                        return;
                    },
                    // A close asked for while the socket does not take our bytes (a client that does
                    // not read): give up the write.
                    _ = closing.changed() => break,
                }
            }
        }
    }
    rx.close();
    let reason = closing.borrow().clone();
    if let Some(r) = reason {
        if r.code != 1006 && r.code != 1005 {
            let frame = CloseFrame { code: r.code.into(), reason: r.reason.into() };
            let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await;
        }
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock)
}

fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM))
}
