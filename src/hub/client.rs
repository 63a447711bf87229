//! [`HubClient`]: the hub's async Rust client (tokio-tungstenite), the same protocol as the JavaScript
//! client: hello, heartbeat answers, rooms, acks both ways.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::protocol;
use super::{DisconnectReason, HubError};

/// Events queued for [`HubClient::connect`]'s receiver before the reader waits for it to be read
/// (backpressure: a client that stops reading is eventually dropped by the hub's heartbeat).
const INBOX: usize = 1024;

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

    /// Sends the acknowledgement (once; later calls return `Ok(false)`).
    pub async fn ack<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<bool, HubError> {
        let Some(name) = self.ack.take() else { return Ok(false) };
        let msg = protocol::encode(&name, &serde_json::to_vec(value)?);
        self.out.send(Message::Binary(msg)).await.map_err(|_| HubError::Closed)?;
        Ok(true)
    }
}

struct Inner {
    id: String,
    out: mpsc::Sender<Message>,
    token: u64,
    next: AtomicU64,
    acks: Mutex<Option<HashMap<u64, oneshot::Sender<Bytes>>>>,
    closed: watch::Sender<Option<DisconnectReason>>,
}

/// A connection to a hub. Cheap to clone (one connection).
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
        f.debug_tuple("HubClient").field(&self.inner.id).finish()
    }
}

impl HubClient {
    /// Connects to `url` (`ws://host:port/ws`), presenting `token` as `Authorization: Bearer`, and
    /// waits for the hub's hello. Returns the client and the receiver of every user event the hub
    /// sends (heartbeats, ack replies and `ringwire:` events are handled inside).
    ///
    /// Errors: [`HubError::Refused`] with the HTTP status and the hub's reason (401 token, 403 origin,
    /// 503 full), [`HubError::Io`] when nothing answers, [`HubError::Closed`] when the connection ends
    /// before the hello.
    pub async fn connect(url: &str, token: Option<&str>) -> Result<(HubClient, mpsc::Receiver<ClientEvent>), HubError> {
        let mut req = url.into_client_request().map_err(ws_io)?;
        if let Some(t) = token {
            let v = format!("Bearer {t}")
                .parse()
                .map_err(|_| HubError::Io(std::io::Error::other("token is not a valid header value")))?;
            req.headers_mut().insert("authorization", v);
        }
        let (ws, _) = match tokio_tungstenite::connect_async(req).await {
            Ok(x) => x,
            Err(WsError::Http(resp)) => {
                let reason =
                    resp.body().as_ref().map(|b| String::from_utf8_lossy(b).trim().to_owned()).unwrap_or_default();
                return Err(HubError::Refused { status: resp.status().as_u16(), reason });
            }
            Err(e) => return Err(ws_io(e)),
        };
        let (mut sink, mut stream) = ws.split();
        // The hello comes first.
        let id = loop {
            match stream.next().await {
                Some(Ok(Message::Binary(b))) => {
                    let ev = protocol::decode(b).map_err(|e| HubError::Io(std::io::Error::other(e)))?;
                    if ev.name() != protocol::HELLO {
                        return Err(HubError::Io(std::io::Error::other(format!(
                            "expected the hello, got {}",
                            ev.name()
                        ))));
                    }
                    let hello: serde_json::Value = serde_json::from_slice(&ev.body())?;
                    break hello["id"].as_str().unwrap_or_default().to_owned();
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ws_io(e)),
                None => return Err(HubError::Closed),
            }
        };
        let (out, mut out_rx) = mpsc::channel::<Message>(INBOX);
        let inner = Arc::new(Inner {
            id,
            out: out.clone(),
            token: protocol::random_u64(),
            next: AtomicU64::new(1),
            acks: Mutex::new(Some(HashMap::new())),
            closed: watch::channel(None).0,
        });
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let is_close = matches!(m, Message::Close(_));
                if sink.send(m).await.is_err() || is_close {
                    break;
                }
            }
        });
        let (events_tx, events_rx) = mpsc::channel(INBOX);
        let reader = inner.clone();
        tokio::spawn(async move {
            let reason = read_loop(&reader, &mut stream, events_tx).await;
            reader.acks.lock().unwrap_or_else(PoisonError::into_inner).take();
            reader.closed.send_replace(Some(reason));
        });
        Ok((HubClient { inner }, events_rx))
    }

    /// The connection id the hub gave (its hello).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Emits `value` (JSON) as event `name`. Waits only while the outgoing queue is full.
    pub async fn emit<T: serde::Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), HubError> {
        super::check_user_name(name)?;
        self.send(name, &serde_json::to_vec(value)?).await
    }

    async fn send(&self, name: &str, body: &[u8]) -> Result<(), HubError> {
        let msg = protocol::encode_checked(name, body, usize::MAX)?;
        self.inner.out.send(Message::Binary(msg)).await.map_err(|_| HubError::Closed)
    }

    /// Emits and waits up to `timeout` for the hub's reply (socket.io's `emitWithAck`). Errors:
    /// [`HubError::Timeout`] (bookkeeping freed), [`HubError::Closed`].
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
        let sent = self.send(&protocol::ack_name(self.inner.token, id, name), body).await;
        let r = match sent {
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

    /// Joins `room` (a `ringwire:join` request, acknowledged). Errors: [`HubError::Refused`] with the
    /// hub's reason (status 0), [`HubError::Timeout`] after 10 s, [`HubError::Closed`].
    pub async fn join(&self, room: &str) -> Result<(), HubError> {
        self.room_request(protocol::JOIN, room).await
    }

    /// Leaves `room` (a `ringwire:leave` request, acknowledged).
    pub async fn leave(&self, room: &str) -> Result<(), HubError> {
        self.room_request(protocol::LEAVE, room).await
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

    /// Waits until the connection has ended, and says why (the hub's close code and reason).
    pub async fn closed(&self) -> DisconnectReason {
        let mut rx = self.inner.closed.subscribe();
        let r = rx.wait_for(Option::is_some).await.ok().and_then(|r| r.clone());
        r.unwrap_or(DisconnectReason { code: 1006, reason: String::new() })
    }

    /// Closes the connection (close code 1000).
    pub async fn close(&self) {
        let frame = CloseFrame { code: 1000.into(), reason: "".into() };
        let _ = self.inner.out.send(Message::Close(Some(frame))).await;
    }
}

fn ws_io(e: WsError) -> HubError {
    match e {
        WsError::Io(e) => HubError::Io(e),
        e => HubError::Io(std::io::Error::other(e)),
    }
}

async fn read_loop<S>(inner: &Inner, stream: &mut S, events: mpsc::Sender<ClientEvent>) -> DisconnectReason
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    let pong = protocol::encode(protocol::PONG, b"");
    loop {
        let msg = match stream.next().await {
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
        let name = ev.name();
        if name == protocol::PING {
            let _ = inner.out.send(Message::Binary(pong.clone())).await;
            continue;
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
        let ev = ClientEvent { name: event, body: ev.body(), ack, out: inner.out.clone() };
        // A dropped receiver: the application does not want events; keep answering pings.
        let _ = events.send(ev).await;
    }
}
