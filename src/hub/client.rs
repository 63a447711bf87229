//! [`HubClient`]: the hub's async Rust client (tokio-tungstenite), the same protocol as the JavaScript
//! client: hello, heartbeat answers, rooms, acks both ways, and socket.io's reconnection (backoff with
//! jitter, rooms re-joined, sends buffered while disconnected, connection-state recovery).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::protocol::{self, close};
use super::{DisconnectReason, HubError, OFFSET_PREFIX};

/// Events queued for the receiver before the reader waits for it to be read (backpressure: a client
/// that stops reading is eventually dropped by the hub's heartbeat).
const INBOX: usize = 1024;

/// How a [`HubClient`] connects and reconnects. `Default` is socket.io's client defaults.
#[derive(Clone)]
pub struct ClientOptions {
    /// Presented as `Authorization: Bearer`.
    pub token: Option<String>,
    /// Reconnect after a lost connection (socket.io's `reconnection`, true).
    pub reconnection: bool,
    /// The first delay (socket.io's `reconnectionDelay`, 1 s); doubles each attempt.
    pub reconnection_delay: Duration,
    /// The longest delay (socket.io's `reconnectionDelayMax`, 5 s).
    pub reconnection_delay_max: Duration,
    /// Jitter, 0..=1 (socket.io's `randomizationFactor`, 0.5).
    pub randomization_factor: f64,
    /// Attempts before giving up (`None`: never, socket.io's `Infinity`).
    pub reconnection_attempts: Option<u32>,
    /// Messages kept while disconnected, at most; beyond, `emit` fails with [`HubError::BufferFull`].
    pub send_buffer: usize,
    /// The random source of the jitter, values in `[0, 1)` (tests inject one). `None`: std's
    /// randomly keyed hasher.
    pub random: Option<Arc<dyn Fn() -> f64 + Send + Sync>>,
    /// How long a connection attempt may take, from the TCP connect to the hub's hello (socket.io's
    /// `timeout`, 20 s): a server that upgrades and then says nothing is given up on
    /// ([`HubError::Timeout`]; a reconnection tries again).
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            token: None,
            reconnection: true,
            reconnection_delay: Duration::from_secs(1),
            reconnection_delay_max: Duration::from_secs(5),
            randomization_factor: 0.5,
            reconnection_attempts: None,
            send_buffer: 1000,
            random: None,
            timeout: Duration::from_secs(20),
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("reconnection", &self.reconnection)
            .field("reconnection_delay", &self.reconnection_delay)
            .field("reconnection_delay_max", &self.reconnection_delay_max)
            .field("randomization_factor", &self.randomization_factor)
            .field("reconnection_attempts", &self.reconnection_attempts)
            .field("send_buffer", &self.send_buffer)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ClientOptions {
    /// The delay before reconnection attempt `attempt` (0-based) given a random draw `r` in `[0, 1)`:
    /// socket.io's backoff, `ms = delay * 2^attempt`, moved by `floor(r * factor * ms)` down when
    /// `floor(r * 10)` is even and up when odd, then capped at `reconnection_delay_max`.
    pub fn backoff(&self, attempt: u32, r: f64) -> Duration {
        let base = self.reconnection_delay.as_secs_f64() * 1000.0;
        let mut ms = base * 2f64.powi(attempt.min(62) as i32);
        let jitter = self.randomization_factor.clamp(0.0, 1.0);
        if jitter > 0.0 {
            let deviation = (r * jitter * ms).floor();
            ms = if ((r * 10.0).floor() as u64) & 1 == 0 { ms - deviation } else { ms + deviation };
        }
        let max = self.reconnection_delay_max.as_secs_f64() * 1000.0;
        Duration::from_millis(ms.min(max).max(0.0) as u64)
    }

    fn draw(&self) -> f64 {
        match &self.random {
            Some(f) => f(),
            None => (protocol::random_u64() >> 11) as f64 / (1u64 << 53) as f64,
        }
    }
}

/// Where a [`HubClient`] stands ([`HubClient::state`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// Connected; `recovered`: this connection resumed the previous one's session.
    Connected {
        /// The connection id.
        id: String,
        /// Whether the session was recovered (same id and rooms, missed events replayed).
        recovered: bool,
    },
    /// Waiting `delay` before reconnection attempt `attempt` (1-based).
    Reconnecting {
        /// The attempt about to be made.
        attempt: u32,
        /// The backoff delay before it.
        delay: Duration,
        /// How the last connection ended.
        reason: DisconnectReason,
    },
    /// For good: closed by the application, refused, kicked or replaced, or out of attempts.
    Closed(DisconnectReason),
}

/// One event from the hub, as [`HubClient`]'s receiver yields it.
#[derive(Debug)]
pub struct ClientEvent {
    name: String,
    body: Bytes,
    ack: Option<String>,
    out: mpsc::Sender<Message>,
}

impl ClientEvent {
    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The body as sent (JSON bytes; empty for no payload).
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body decoded from JSON (empty decodes as `null`).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, HubError> {
        Ok(serde_json::from_slice(if self.body.is_empty() { b"null" } else { &self.body })?)
    }

    /// Whether the hub asked for an acknowledgement.
    pub fn wants_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// Sends the acknowledgement (once; later calls return `Ok(false)`), on the connection the request
    /// came on.
    pub async fn ack<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<bool, HubError> {
        let Some(name) = self.ack.take() else { return Ok(false) };
        let msg = protocol::encode(&name, &serde_json::to_vec(value)?);
        self.out.send(Message::Binary(msg)).await.map_err(|_| HubError::Closed)?;
        Ok(true)
    }
}

/// What is sent where: the current connection's writer, or the buffer while there is none.
struct Link {
    writer: Option<mpsc::Sender<Message>>,
    buffer: VecDeque<Bytes>,
    /// No more connections: sends fail.
    done: bool,
}

struct Inner {
    url: String,
    opts: ClientOptions,
    link: tokio::sync::Mutex<Link>,
    /// This client's ack token (the `<token>` of its requests), the same across reconnections.
    token: u64,
    next: AtomicU64,
    acks: Mutex<Option<HashMap<u64, oneshot::Sender<Bytes>>>>,
    /// The rooms joined (re-joined after a reconnection that did not recover).
    rooms: Mutex<HashSet<String>>,
    /// Recovery: the session id and the last offset received.
    sid: Mutex<Option<String>>,
    offset: AtomicU64,
    /// The current connection's pingInterval + pingTimeout (from its hello).
    heartbeat: Mutex<Option<Duration>>,
    state: watch::Sender<ClientState>,
    /// The id of the current or last connection.
    last_id: Mutex<String>,
    /// The application closed the client.
    closing: AtomicBool,
    wake: tokio::sync::Notify,
}

/// A connection to a hub that reconnects by itself (socket.io's client). Cheap to clone.
///
/// ```no_run
/// # async fn f() -> Result<(), ringwire::hub::HubError> {
/// use ringwire::hub::HubClient;
/// let (client, mut events) = HubClient::connect("ws://127.0.0.1:8080/ws", Some("secret")).await?;
/// client.join("lobby").await?;
/// client.emit("chat message", &serde_json::json!({"room": "lobby", "text": "hi"})).await?;
/// while let Some(ev) = events.recv().await {
///     println!("{}: {}", ev.name(), String::from_utf8_lossy(ev.bytes()));
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HubClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HubClient").field(&self.id()).finish()
    }
}

/// A connection's hello.
struct Hello {
    id: String,
    sid: Option<String>,
    recovered: bool,
    offset: u64,
    /// pingInterval + pingTimeout: without a ping for this long the hub is taken for gone.
    heartbeat: Option<Duration>,
}

type Stream = futures_util::stream::SplitStream<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
>;

impl HubClient {
    /// Connects to `url` (`ws://host:port/ws`) with `token` and socket.io's reconnection defaults; see
    /// [`connect_with`](Self::connect_with).
    pub async fn connect(url: &str, token: Option<&str>) -> Result<(HubClient, mpsc::Receiver<ClientEvent>), HubError> {
        Self::connect_with(url, ClientOptions { token: token.map(str::to_owned), ..ClientOptions::default() }).await
    }

    /// Connects and waits for the hub's hello. Returns the client and the receiver of every user event
    /// the hub sends, across reconnections (heartbeats, ack replies and `ringwire:` events are handled
    /// inside). The receiver ends when the client is closed for good ([`state`](Self::state)).
    ///
    /// Errors (of this first connection; later ones are retried): [`HubError::Refused`] with the HTTP
    /// status and the hub's reason (401 token, 403 origin, 503 full), [`HubError::Io`] when nothing
    /// answers, [`HubError::Closed`] when the connection ends before the hello.
    pub async fn connect_with(
        url: &str,
        opts: ClientOptions,
    ) -> Result<(HubClient, mpsc::Receiver<ClientEvent>), HubError> {
        let (stream, writer, hello) = open(url, opts.token.as_deref(), None, opts.timeout).await?;
        let inner = Arc::new(Inner {
            url: url.to_owned(),
            opts,
            link: tokio::sync::Mutex::new(Link { writer: Some(writer.clone()), buffer: VecDeque::new(), done: false }),
            token: protocol::random_u64(),
            next: AtomicU64::new(1),
            acks: Mutex::new(Some(HashMap::new())),
            rooms: Mutex::default(),
            sid: Mutex::new(hello.sid.clone()),
            offset: AtomicU64::new(hello.offset),
            heartbeat: Mutex::new(hello.heartbeat),
            last_id: Mutex::new(hello.id.clone()),
            state: watch::channel(ClientState::Connected { id: hello.id, recovered: false }).0,
            closing: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        });
        let (events_tx, events_rx) = mpsc::channel(INBOX);
        tokio::spawn(supervise(inner.clone(), stream, writer, events_tx));
        Ok((HubClient { inner }, events_rx))
    }

    /// The id of the current (or last) connection; a reconnection that did not recover gets a new one.
    pub fn id(&self) -> String {
        self.inner.last_id.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Watches where the client stands (connected, reconnecting, closed for good).
    pub fn state(&self) -> watch::Receiver<ClientState> {
        self.inner.state.subscribe()
    }

    /// Emits `value` (JSON) as event `name`. While disconnected the message waits in the send buffer
    /// (flushed in order on reconnection); errors: [`HubError::BufferFull`] when that is full,
    /// [`HubError::Closed`] once the client is closed for good.
    pub async fn emit<T: serde::Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), HubError> {
        super::check_user_name(name)?;
        self.send(name, &serde_json::to_vec(value)?).await
    }

    async fn send(&self, name: &str, body: &[u8]) -> Result<(), HubError> {
        let msg = protocol::encode_checked(name, body, usize::MAX)?;
        let mut link = self.inner.link.lock().await;
        if link.done {
            return Err(HubError::Closed);
        }
        if let Some(w) = &link.writer {
            if w.send(Message::Binary(msg.clone())).await.is_ok() {
                return Ok(());
            }
            link.writer = None;
        }
        if link.buffer.len() >= self.inner.opts.send_buffer {
            return Err(HubError::BufferFull(self.inner.opts.send_buffer));
        }
        link.buffer.push_back(msg);
        Ok(())
    }

    /// Emits and waits up to `timeout` for the hub's reply (socket.io's `emitWithAck`). Errors:
    /// [`HubError::Timeout`] (bookkeeping freed), [`HubError::Closed`], [`HubError::BufferFull`].
    pub async fn emit_with_ack<T: serde::Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<Bytes, HubError> {
        super::check_user_name(name)?;
        self.request(name, &serde_json::to_vec(value)?, timeout).await
    }

    async fn request(&self, name: &str, body: &[u8], timeout: Duration) -> Result<Bytes, HubError> {
        // Relaxed: only uniqueness of the id matters.
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match &mut *self.inner.acks.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(m) => m.insert(id, tx),
            None => return Err(HubError::Closed),
        };
        let r = match self.send(&protocol::ack_name(self.inner.token, id, name), body).await {
            Ok(()) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(b)) => Ok(b),
                Ok(Err(_)) => Err(HubError::Closed),
                Err(_) => Err(HubError::Timeout),
            },
            Err(e) => Err(e),
        };
        if let Some(m) = &mut *self.inner.acks.lock().unwrap_or_else(PoisonError::into_inner) {
            m.remove(&id);
        }
        r
    }

    /// Joins `room` (a `ringwire:join` request, acknowledged; re-joined after a reconnection that did
    /// not recover). Errors: [`HubError::Refused`] with the hub's reason (status 0),
    /// [`HubError::Timeout`] after 10 s, [`HubError::Closed`].
    pub async fn join(&self, room: &str) -> Result<(), HubError> {
        self.room_request(protocol::JOIN, room).await?;
        self.inner.rooms.lock().unwrap_or_else(PoisonError::into_inner).insert(room.to_owned());
        Ok(())
    }

    /// Leaves `room` (a `ringwire:leave` request, acknowledged).
    pub async fn leave(&self, room: &str) -> Result<(), HubError> {
        self.room_request(protocol::LEAVE, room).await?;
        self.inner.rooms.lock().unwrap_or_else(PoisonError::into_inner).remove(room);
        Ok(())
    }

    async fn room_request(&self, what: &str, room: &str) -> Result<(), HubError> {
        let reply = self.request(what, &serde_json::to_vec(room)?, Duration::from_secs(10)).await?;
        let v: serde_json::Value = serde_json::from_slice(&reply)?;
        if v["ok"] == true {
            return Ok(());
        }
        Err(HubError::Refused { status: 0, reason: v["error"].as_str().unwrap_or("refused").to_owned() })
    }

    /// How many acks this client is waiting for.
    pub fn pending_acks(&self) -> usize {
        self.inner.acks.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map_or(0, HashMap::len)
    }

    /// Messages waiting in the send buffer for a connection.
    pub async fn buffered(&self) -> usize {
        self.inner.link.lock().await.buffer.len()
    }

    /// Waits until the client is closed for good, and says why (the hub's close code and reason, or
    /// the refusal).
    pub async fn closed(&self) -> DisconnectReason {
        let mut rx = self.inner.state.subscribe();
        let r = rx.wait_for(|s| matches!(s, ClientState::Closed(_))).await.ok().map(|s| s.clone());
        match r {
            Some(ClientState::Closed(r)) => r,
            _ => DisconnectReason { code: 1006, reason: String::new() },
        }
    }

    /// Closes the connection (close code 1000) and stops reconnecting.
    pub async fn close(&self) {
        self.inner.closing.store(true, Ordering::Relaxed);
        let writer = self.inner.link.lock().await.writer.clone();
        if let Some(w) = writer {
            let _ = w.send(Message::Close(Some(CloseFrame { code: 1000.into(), reason: "".into() }))).await;
        }
        self.inner.wake.notify_one();
    }
}

fn ws_io(e: WsError) -> HubError {
    match e {
        WsError::Io(e) => HubError::Io(e),
        e => HubError::Io(std::io::Error::other(e)),
    }
}

/// One connection: the handshake (with the session to resume, if any), the hello, the writer task;
/// all within `timeout`.
async fn open(
    url: &str,
    token: Option<&str>,
    resume: Option<(&str, u64)>,
    timeout: Duration,
) -> Result<(Stream, mpsc::Sender<Message>, Hello), HubError> {
    tokio::time::timeout(timeout, open_unbounded(url, token, resume)).await.map_err(|_| HubError::Timeout)?
}

async fn open_unbounded(
    url: &str,
    token: Option<&str>,
    resume: Option<(&str, u64)>,
) -> Result<(Stream, mpsc::Sender<Message>, Hello), HubError> {
    let url = match resume {
        Some((sid, offset)) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}sid={sid}&offset={offset}")
        }
        None => url.to_owned(),
    };
    let mut req = url.as_str().into_client_request().map_err(ws_io)?;
    if let Some(t) = token {
        let v = format!("Bearer {t}")
            .parse()
            .map_err(|_| HubError::Io(std::io::Error::other("token is not a valid header value")))?;
        req.headers_mut().insert("authorization", v);
    }
    let (ws, _) = match tokio_tungstenite::connect_async(req).await {
        Ok(x) => x,
        Err(WsError::Http(resp)) => {
            let reason = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).trim().to_owned()).unwrap_or_default();
            return Err(HubError::Refused { status: resp.status().as_u16(), reason });
        }
        Err(e) => return Err(ws_io(e)),
    };
    let (mut sink, mut stream) = ws.split();
    let hello = loop {
        match stream.next().await {
            Some(Ok(Message::Binary(b))) => {
                let ev = protocol::decode(b).map_err(|e| HubError::Io(std::io::Error::other(e)))?;
                if ev.name() != protocol::HELLO {
                    return Err(HubError::Io(std::io::Error::other(format!("expected the hello, got {}", ev.name()))));
                }
                let h: serde_json::Value = serde_json::from_slice(&ev.body())?;
                break Hello {
                    id: h["id"].as_str().unwrap_or_default().to_owned(),
                    sid: h["sid"].as_str().map(str::to_owned),
                    recovered: h["recovered"] == true,
                    // A number, or (above 2^53 - 1: recovery across hubs) a decimal string.
                    offset: h["offset"].as_u64().or_else(|| h["offset"].as_str()?.parse().ok()).unwrap_or(0),
                    heartbeat: match (h["pingInterval"].as_u64(), h["pingTimeout"].as_u64()) {
                        (Some(i), Some(t)) => Some(Duration::from_millis(i.saturating_add(t))),
                        _ => None,
                    },
                };
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ws_io(e)),
            None => return Err(HubError::Closed),
        }
    };
    let (writer, mut out_rx) = mpsc::channel::<Message>(INBOX);
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let is_close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || is_close {
                break;
            }
        }
    });
    Ok((stream, writer, hello))
}

/// Whether a connection that ended with `code` may be reconnected (socket.io: not after the server
/// disconnected the client on purpose).
fn may_reconnect(code: u16) -> bool {
    !matches!(code, close::KICKED | close::REPLACED)
}

/// Runs the connections one after the other: read until the end, back off, reconnect (resuming the
/// session when the hub keeps one), re-join, flush the buffer; until closed for good.
async fn supervise(
    inner: Arc<Inner>,
    mut stream: Stream,
    mut writer: mpsc::Sender<Message>,
    events: mpsc::Sender<ClientEvent>,
) {
    let mut last = loop {
        let reason = read_loop(&inner, &mut stream, &writer, &events).await;
        inner.link.lock().await.writer = None;
        let opts = &inner.opts;
        if inner.closing.load(Ordering::Relaxed) || !opts.reconnection || !may_reconnect(reason.code) {
            break reason;
        }
        let mut attempt = 0u32;
        let reconnected = loop {
            if opts.reconnection_attempts.is_some_and(|n| attempt >= n) {
                break Err(DisconnectReason { code: reason.code, reason: format!("gave up after {attempt} attempts") });
            }
            let delay = opts.backoff(attempt, opts.draw());
            attempt += 1;
            inner.state.send_replace(ClientState::Reconnecting { attempt, delay, reason: reason.clone() });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = inner.wake.notified() => {}
            }
            if inner.closing.load(Ordering::Relaxed) {
                break Err(DisconnectReason { code: 1000, reason: "closed by the application".into() });
            }
            let sid = inner.sid.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let offset = inner.offset.load(Ordering::Relaxed);
            match open(&inner.url, opts.token.as_deref(), sid.as_deref().map(|s| (s, offset)), opts.timeout).await {
                Ok(x) => break Ok(x),
                Err(HubError::Refused { status: status @ (401 | 403), reason }) => {
                    break Err(DisconnectReason { code: 1008, reason: format!("refused ({status}): {reason}") })
                }
                Err(_) => continue,
            }
        };
        let (s, w, hello) = match reconnected {
            Ok(x) => x,
            Err(r) => break r,
        };
        stream = s;
        writer = w;
        *inner.sid.lock().unwrap_or_else(PoisonError::into_inner) = hello.sid.clone();
        inner.offset.store(hello.offset, Ordering::Relaxed);
        *inner.heartbeat.lock().unwrap_or_else(PoisonError::into_inner) = hello.heartbeat;
        // Under the link's lock: the re-joins go first, then the buffer in order, then new sends.
        let mut link = inner.link.lock().await;
        if !hello.recovered {
            let rooms: Vec<String> =
                inner.rooms.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect();
            for room in rooms {
                let body = serde_json::to_vec(&room).unwrap_or_default();
                let _ = writer.send(Message::Binary(protocol::encode(protocol::JOIN, &body))).await;
            }
        }
        while let Some(m) = link.buffer.pop_front() {
            let _ = writer.send(Message::Binary(m)).await;
        }
        link.writer = Some(writer.clone());
        drop(link);
        *inner.last_id.lock().unwrap_or_else(PoisonError::into_inner) = hello.id.clone();
        inner.state.send_replace(ClientState::Connected { id: hello.id, recovered: hello.recovered });
    };
    if inner.closing.load(Ordering::Relaxed) && last.code == 1006 {
        last = DisconnectReason { code: 1000, reason: "closed by the application".into() };
    }
    let mut link = inner.link.lock().await;
    link.done = true;
    link.writer = None;
    link.buffer.clear();
    drop(link);
    inner.acks.lock().unwrap_or_else(PoisonError::into_inner).take();
    inner.state.send_replace(ClientState::Closed(last));
}

async fn read_loop(
    inner: &Inner,
    stream: &mut Stream,
    writer: &mpsc::Sender<Message>,
    events: &mpsc::Sender<ClientEvent>,
) -> DisconnectReason {
    let pong = protocol::encode(protocol::PONG, b"");
    // The hub's heartbeat, watched as socket.io's client does: no ping for pingInterval + pingTimeout
    // (a dead path without a FIN, a hub gone silent) and the connection is taken for lost (4000).
    let heartbeat = *inner.heartbeat.lock().unwrap_or_else(PoisonError::into_inner);
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let next_deadline = || heartbeat.map_or(far, |h| tokio::time::Instant::now() + h);
    let mut ping_due = next_deadline();
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            // The application closed while the hub does not answer: stop reading.
            _ = inner.wake.notified(), if inner.closing.load(Ordering::Relaxed) => None,
            _ = tokio::time::sleep_until(ping_due) => {
                return DisconnectReason {
                    code: close::PING_TIMEOUT,
                    reason: "no ping from the hub within pingInterval + pingTimeout".into(),
                };
            }
        };
        let msg = match msg {
            None => return DisconnectReason { code: 1006, reason: "the connection dropped".into() },
            Some(Err(e)) => return DisconnectReason { code: 1006, reason: e.to_string() },
            Some(Ok(m)) => m,
        };
        let b = match msg {
            Message::Binary(b) => b,
            Message::Close(f) => {
                return f.map_or(DisconnectReason { code: 1005, reason: String::new() }, |f| DisconnectReason {
                    code: f.code.into(),
                    reason: f.reason.to_string(),
                })
            }
            _ => continue,
        };
        let Ok(ev) = protocol::decode(b) else { continue };
        let mut name = ev.name();
        if name == protocol::PING {
            ping_due = next_deadline();
            let _ = writer.send(Message::Binary(pong.clone())).await;
            continue;
        }
        // A recoverable event: `ringwire:o:<offset>:<event>`.
        if let Some((offset, event)) = name.strip_prefix(OFFSET_PREFIX).and_then(|r| r.split_once(':')) {
            if let Ok(o) = offset.parse::<u64>() {
                inner.offset.fetch_max(o, Ordering::Relaxed);
            }
            name = event;
        }
        let (event, ack) = match name.strip_prefix(protocol::ACK_PREFIX).and_then(protocol::parse_ack) {
            Some((token, id, _)) if token == inner.token => {
                let w = inner.acks.lock().unwrap_or_else(PoisonError::into_inner).as_mut().and_then(|m| m.remove(&id));
                if let Some(w) = w {
                    let _ = w.send(ev.body());
                }
                continue;
            }
            Some((_, _, event)) => (event.to_owned(), Some(name.to_owned())),
            None => (name.to_owned(), None),
        };
        if event.starts_with(crate::socket::RESERVED_PREFIX) && event != protocol::ERROR {
            continue;
        }
        let ev = ClientEvent { name: event, body: ev.body(), ack, out: writer.clone() };
        // A dropped receiver: the application does not want events; keep answering pings.
        let _ = events.send(ev).await;
    }
}
