//! The duplex [`Socket`]: events out through an [`EventSender`], events in through an [`EventReceiver`]
//! dispatched to an [`EventEmitter`], and acknowledgements (wire format in the [module docs](super)).

use super::channel::{Event, EventReceiver, EventSender};
use super::frames::{FrameSink, FrameSource};
use super::{check_name, Codec, CodecError, EmitError, EventRecvError, ACK_PREFIX};
use crate::events::{EventEmitter, ListenerId};
use crate::transport::{TransportRecvError, TransportSendError, Wait};
use std::collections::HashMap;
use std::fmt;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

/// How often a blocked [`Socket::run`], or an [`Socket::emit_with_ack`] that polls for its own reply,
/// looks whether the socket was closed meanwhile. Longer than the rings' liveness interval (50 ms): a
/// ring receive that always gives up before one interval has passed never checks that its producer is
/// alive, so shorter slices would hide a dead peer on the shm transport.
const CLOSE_CHECK: Duration = Duration::from_millis(250);

/// Why [`Socket::emit_with_ack`] got no reply.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// The request could not be sent (bad or reserved name, payload, transport error).
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// No reply within the timeout. The pending entry is gone; a late reply is dropped and counted.
    #[error("no acknowledgement within the timeout")]
    Timeout,
    /// The connection ended (the peer closed or died, or [`Socket::close`] was called) before the reply,
    /// or before the request could be sent.
    #[error("the connection closed before the acknowledgement arrived")]
    Closed,
}

/// What a socket has counted since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Events dispatched to at least one listener.
    pub dispatched: u64,
    /// Events dropped because no listener was registered for their name (not an error, as in Node).
    pub dropped: u64,
    /// Frames that were no valid event (no name, a name that is not UTF-8, a malformed ack name, a
    /// skipped bad frame); each skipped, the socket went on.
    pub malformed: u64,
    /// Acknowledgement replies that arrived after their request timed out (or for no request).
    pub stale_acks: u64,
}

type Replier = Box<dyn FnOnce(&[u8]) -> Result<(), EmitError> + Send>;

/// An event as a [`Socket`]'s listeners get it: name, body, and (for an ack request) the means to
/// answer.
pub struct Incoming {
    name: String,
    body: Vec<u8>,
    codec: Codec,
    reply: Mutex<Option<Replier>>,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("name", &self.name)
            .field("body", &self.body.len())
            .field("wants_ack", &self.wants_ack())
            .finish()
    }
}

impl Incoming {
    /// The event's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The body as it arrived.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body decoded with the socket's codec.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, CodecError> {
        self.codec.decode(&self.body)
    }

    /// Whether the sender waits for an acknowledgement that has not been sent yet.
    pub fn wants_ack(&self) -> bool {
        lock(&self.reply).is_some()
    }

    /// Answers the sender's [`emit_with_ack`](Socket::emit_with_ack) with `value` (encoded with the
    /// socket's codec). `Ok(false)`: nothing to answer (no ack was asked, or it was answered already).
    pub fn ack<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<bool, EmitError> {
        let mut body = Vec::new();
        self.codec.encode(value, &mut body)?;
        self.ack_bytes(&body)
    }

    /// Answers with raw bytes as the reply's body.
    pub fn ack_bytes(&self, body: &[u8]) -> Result<bool, EmitError> {
        let Some(reply) = lock(&self.reply).take() else { return Ok(false) };
        reply(body).map(|()| true)
    }
}

/// Pending acknowledgements: each has exactly one owner that removes it (the reply, the timeout, or the
/// close), so the table never holds more than the requests still waiting.
struct Acks {
    pending: HashMap<u64, mpsc::SyncSender<Event>>,
    next: u64,
    closed: bool,
}

/// A duplex event connection: emit events (with or without an acknowledgement) and dispatch incoming
/// ones to an [`EventEmitter`] of [`Incoming`].
///
/// Drive the receiving side with [`run`](Self::run) on a thread of its own (it returns when the
/// connection ends), or with [`poll_once`](Self::poll_once) from your own loop. Everything else may be
/// called from any thread; listeners run on the thread that polls. [`emit_with_ack`](Self::emit_with_ack)
/// works either way: when no other thread is polling, it polls itself (dispatching whatever arrives
/// meanwhile) until its reply comes.
///
/// ```
/// use ringwire::socket::{Ring, Socket};
/// let (a_tx, b_rx) = ringwire::spsc::channel(ringwire::RingConfig::default())?;
/// let (b_tx, a_rx) = ringwire::spsc::channel(ringwire::RingConfig::default())?;
/// let a = Socket::new(Ring(a_tx), Ring(a_rx));
/// let b = Socket::new(Ring(b_tx), Ring(b_rx));
/// b.on("add", |ev| {
///     let (x, y): (i64, i64) = ev.decode().unwrap();
///     ev.ack(&(x + y)).unwrap();
/// });
/// let server = std::thread::spawn(move || b.run());
/// let sum: i64 = a.emit_with_ack("add", &(2, 3), std::time::Duration::from_secs(10))?.decode()?;
/// assert_eq!(sum, 5);
/// a.close();
/// drop(a);
/// server.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Socket<S: FrameSink + 'static, R: FrameSource + 'static> {
    tx: Mutex<Option<EventSender<S>>>,
    rx: Mutex<Option<EventReceiver<R>>>,
    emitter: EventEmitter<Incoming>,
    acks: Mutex<Acks>,
    stats: Mutex<SocketStats>,
    /// Drawn per socket: tells our ack requests (coming back as replies) from the peer's.
    token: u64,
    codec: Codec,
    me: Weak<Self>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking listener never holds one of these locks; recover anyway rather than cascade.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A random non-zero token.
fn new_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish() | 1
}

/// Splits an ack name's rest (`<token>.<id>:<event>`).
fn parse_ack(rest: &str) -> Option<(u64, u64, &str)> {
    let (tag, event) = rest.split_once(':')?;
    let (token, id) = tag.split_once('.')?;
    if token.len() != 16 || event.is_empty() {
        return None;
    }
    Some((u64::from_str_radix(token, 16).ok()?, id.parse().ok()?, event))
}

impl<S: FrameSink + 'static, R: FrameSource + 'static> Socket<S, R> {
    /// A socket over a sending and a receiving half (JSON bodies).
    pub fn new(tx: S, rx: R) -> Arc<Self> {
        Self::with_codec(tx, rx, Codec::Json)
    }

    /// A socket with bodies in `codec`.
    pub fn with_codec(tx: S, rx: R, codec: Codec) -> Arc<Self> {
        Arc::new_cyclic(|me| Socket {
            tx: Mutex::new(Some(EventSender::with_codec(tx, codec))),
            rx: Mutex::new(Some(EventReceiver::with_codec(rx, codec))),
            emitter: EventEmitter::new(),
            acks: Mutex::new(Acks { pending: HashMap::new(), next: 0, closed: false }),
            stats: Mutex::new(SocketStats::default()),
            token: new_token(),
            codec,
            me: me.clone(),
        })
    }

    /// The emitter incoming events are dispatched to (for `once`, `off`, `prepend_listener`, ...).
    pub fn emitter(&self) -> &EventEmitter<Incoming> {
        &self.emitter
    }

    /// Adds a listener for incoming events called `name` (as [`EventEmitter::on`]).
    pub fn on(&self, name: &str, listener: impl Fn(&Incoming) + Send + Sync + 'static) -> ListenerId {
        self.emitter.on(name, listener)
    }

    /// What the socket has counted.
    pub fn stats(&self) -> SocketStats {
        *lock(&self.stats)
    }

    /// Acknowledgements still waiting for their reply.
    pub fn pending_acks(&self) -> usize {
        lock(&self.acks).pending.len()
    }

    /// Whether the connection has ended (seen by the receive loop, or [`close`](Self::close)).
    pub fn is_closed(&self) -> bool {
        lock(&self.acks).closed
    }

    fn with_tx<T>(&self, f: impl FnOnce(&mut EventSender<S>) -> Result<T, EmitError>) -> Result<T, EmitError> {
        match lock(&self.tx).as_mut() {
            Some(tx) => f(tx),
            None => Err(EmitError::Send(TransportSendError::Closed)),
        }
    }

    /// Emits `name` with `value`, blocking until the transport took it.
    pub fn emit<T: serde::Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), EmitError> {
        self.with_tx(|tx| tx.emit(name, value))
    }

    /// Emits `name` with a raw body.
    pub fn emit_bytes(&self, name: &str, bytes: &[u8]) -> Result<(), EmitError> {
        self.with_tx(|tx| tx.emit_bytes(name, bytes))
    }

    /// Emits `name` with `value` and waits up to `timeout` for the peer's acknowledgement: its reply as
    /// an [`Event`] named `name` (decode it with [`Event::decode`]). [`AckError::Timeout`] frees the
    /// request's bookkeeping; [`AckError::Closed`] comes as soon as the connection ends.
    pub fn emit_with_ack<T: serde::Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<Event, AckError> {
        let deadline = Instant::now().checked_add(timeout);
        check_name(name)?;
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let id = {
            let mut acks = lock(&self.acks);
            if acks.closed {
                return Err(AckError::Closed);
            }
            let id = acks.next;
            acks.next += 1;
            acks.pending.insert(id, reply_tx);
            id
        };
        let ack_name = format!("{ACK_PREFIX}{:016x}.{id}:{name}", self.token);
        let wait = deadline.map_or(Wait::Forever, Wait::Until);
        // A zero timeout still makes one attempt to send (as a `try_` send), then times out.
        let send_wait = if timeout.is_zero() { Wait::Never } else { wait };
        if let Err(e) = self.with_tx(|tx| tx.send_named_value(&ack_name, value, send_wait)) {
            lock(&self.acks).pending.remove(&id);
            return Err(match e {
                EmitError::Send(TransportSendError::Timeout | TransportSendError::WouldBlock) => AckError::Timeout,
                // The connection is gone (the peer closed or died, or `close` from another thread
                // between our check and the send): as for a request already waiting.
                EmitError::Send(
                    TransportSendError::Closed | TransportSendError::PeerGone | TransportSendError::PeerReset,
                ) => AckError::Closed,
                e => AckError::Emit(e),
            });
        }
        loop {
            match reply_rx.try_recv() {
                Ok(ev) => return Ok(ev),
                Err(mpsc::TryRecvError::Disconnected) => return Err(AckError::Closed),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                let removed = lock(&self.acks).pending.remove(&id).is_some();
                // The reply may have landed between the look above and the removal.
                return match reply_rx.try_recv() {
                    Ok(ev) => Ok(ev),
                    Err(_) if removed => Err(AckError::Timeout),
                    Err(_) => Err(AckError::Closed),
                };
            }
            // Nobody else polling? Then poll ourselves, until the reply or the deadline.
            // In slices, so that a close from another thread is seen promptly.
            let slice = Wait::Until(deadline.map_or(now + CLOSE_CHECK, |d| d.min(now + CLOSE_CHECK)));
            let polled = match self.rx.try_lock() {
                Ok(guard) => Some(self.poll_locked(guard, slice)),
                Err(std::sync::TryLockError::Poisoned(p)) => Some(self.poll_locked(p.into_inner(), slice)),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            match polled {
                Some(Err(e)) if e.is_fatal() => {}
                Some(_) => {}
                // Another thread polls and will hand us the reply (or close the table).
                None => {
                    let r = match deadline {
                        Some(d) => reply_rx.recv_timeout(d.saturating_duration_since(now).min(CLOSE_CHECK)),
                        None => reply_rx.recv_timeout(CLOSE_CHECK),
                    };
                    match r {
                        Ok(ev) => return Ok(ev),
                        Err(mpsc::RecvTimeoutError::Disconnected) => return Err(AckError::Closed),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                    }
                }
            }
        }
    }

    /// Receives (waiting as `wait` allows) and dispatches one frame. `Ok(())` once something was
    /// handled (dispatched, dropped for want of a listener, or an ack reply); errors are the receiver's:
    /// `Empty`/`Timeout` when nothing came, a skipped malformed frame (counted), or the end of the
    /// connection (fatal: every pending ack fails with [`AckError::Closed`]).
    pub fn poll_once(&self, wait: Wait) -> Result<(), EventRecvError> {
        self.poll_locked(lock(&self.rx), wait)
    }

    /// Dispatches incoming events until the connection ends: `Ok(())` for a clean end (the peer closed,
    /// or this socket was closed: seen within 250 ms), else the error that ended it. Skipped malformed
    /// frames are counted, not returned.
    pub fn run(&self) -> Result<(), EventRecvError> {
        loop {
            if self.is_closed() {
                return Ok(());
            }
            match self.poll_once(Wait::Until(Instant::now() + CLOSE_CHECK)) {
                Ok(()) => {}
                Err(EventRecvError::Transport(TransportRecvError::PeerGone | TransportRecvError::Closed)) => {
                    return Ok(())
                }
                Err(e) if e.is_fatal() => return Err(e),
                Err(_) => {}
            }
        }
    }

    fn poll_locked(
        &self,
        mut guard: MutexGuard<'_, Option<EventReceiver<R>>>,
        wait: Wait,
    ) -> Result<(), EventRecvError> {
        let Some(rx) = guard.as_mut() else {
            return Err(EventRecvError::Transport(TransportRecvError::Closed));
        };
        let r = rx.recv_wait(wait);
        // Listeners run without the receive lock, so that they may emit_with_ack themselves.
        drop(guard);
        match r {
            Ok(ev) => {
                self.dispatch(ev);
                Ok(())
            }
            Err(e) => {
                if e.is_fatal() {
                    self.shut_down();
                } else if matches!(
                    e,
                    EventRecvError::NotAnEvent(_)
                        | EventRecvError::BadName
                        | EventRecvError::Transport(TransportRecvError::BadFrame(_))
                ) {
                    lock(&self.stats).malformed += 1;
                }
                Err(e)
            }
        }
    }

    fn dispatch(&self, ev: Event) {
        let name = ev.name();
        let Some(rest) = name.strip_prefix(ACK_PREFIX) else {
            let incoming = Incoming {
                name: name.to_owned(),
                body: ev.bytes().to_vec(),
                codec: self.codec,
                reply: Mutex::new(None),
            };
            return self.deliver(incoming);
        };
        let Some((token, id, event)) = parse_ack(rest) else {
            lock(&self.stats).malformed += 1;
            return;
        };
        if token == self.token {
            // A reply to one of ours (from a socket, or an echo of our request).
            let waiting = lock(&self.acks).pending.remove(&id);
            match waiting {
                Some(tx) => {
                    let _ = tx.try_send(Event::new(event, ev.bytes(), self.codec));
                }
                None => lock(&self.stats).stale_acks += 1,
            }
            return;
        }
        // The peer asks: dispatch with the means to answer under the same name.
        let me = self.me.clone();
        let ack_name = name.to_owned();
        let reply: Replier = Box::new(move |body: &[u8]| {
            let Some(me) = me.upgrade() else { return Err(EmitError::Send(TransportSendError::Closed)) };
            me.with_tx(|tx| tx.send_named(&ack_name, body, Wait::Forever).map_err(EmitError::from))
        });
        let incoming = Incoming {
            name: event.to_owned(),
            body: ev.bytes().to_vec(),
            codec: self.codec,
            reply: Mutex::new(Some(reply)),
        };
        self.deliver(incoming);
    }

    fn deliver(&self, incoming: Incoming) {
        if self.emitter.listener_count(incoming.name.as_str(), None) == 0 {
            lock(&self.stats).dropped += 1;
            return;
        }
        lock(&self.stats).dispatched += 1;
        let name = incoming.name.clone();
        // Only "error" without a listener is an Err, and there is a listener.
        let _ = self.emitter.emit(name, incoming);
    }

    /// Marks the connection ended and fails every pending ack.
    fn shut_down(&self) {
        let mut acks = lock(&self.acks);
        acks.closed = true;
        // Dropping the senders wakes every waiter with `Closed`.
        acks.pending.clear();
    }

    /// Closes the connection: pending acks fail at once with [`AckError::Closed`], later emits fail,
    /// the peer sees the end after what was sent. A thread in [`run`](Self::run) returns within 250 ms.
    pub fn close(&self) {
        self.shut_down();
        if let Some(mut tx) = lock(&self.tx).take() {
            let _ = tx.close();
        }
        if let Ok(mut rx) = self.rx.try_lock() {
            if let Some(mut r) = rx.take() {
                r.close();
            }
        }
    }
}

impl<S: FrameSink + 'static, R: FrameSource + 'static> fmt::Debug for Socket<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("stats", &self.stats()).field("pending_acks", &self.pending_acks()).finish()
    }
}
