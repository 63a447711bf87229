//! The private runtime and one connection with its channel: connecting (with backoff, as a wait allows)
//! and running a future against a deadline.

use super::*;
use crate::transport::Wait;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use std::future::Future;
use std::io;
use std::sync::OnceLock;
use std::time::Instant;

/// The runtime every AMQP half of the process shares: one worker thread (`ringwire-amqp`) that runs
/// lapin's tasks (heartbeats, internal requests) while callers are away; each caller drives its own
/// futures with `block_on` on its own thread. lapin adds one I/O thread per connection.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ringwire-amqp")
            .enable_all()
            .build()
            .expect("ringwire amqp: can't start the tokio runtime")
    })
}

/// Runs `fut` to completion on the caller's thread, or until `deadline`: `None` if the deadline came
/// first. A deadline in the past still polls `fut` once (so what is ready is taken).
pub(super) fn block_on<F: Future>(deadline: Option<Instant>, fut: F) -> Option<F::Output> {
    runtime().block_on(async move {
        match deadline {
            None => Some(fut.await),
            Some(d) => tokio::time::timeout_at(d.into(), fut).await.ok(),
        }
    })
}

/// What a half does with a fresh channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Publisher confirms on.
    Producer,
    /// `basic.qos` with this prefetch, then `basic.consume` (manual acknowledgements).
    Consumer(u16),
}

/// A connection, its channel and, for a consumer, the delivery stream.
pub(super) struct Session {
    pub(super) conn: Connection,
    pub(super) channel: Channel,
    pub(super) deliveries: Option<lapin::Consumer>,
}

impl Session {
    /// Whether lapin still takes the connection and channel as usable.
    pub(super) fn alive(&self) -> bool {
        self.conn.status().connected() && self.channel.status().connected()
    }
}

/// Why a link could not be (re)established.
#[derive(Debug)]
pub(super) enum LinkError {
    /// The wait ran out (`Wait::Until`).
    Timeout,
    /// The broker could not be reached within what the wait allows (`give_up`, or the one try of a
    /// `try_` call).
    Gone,
}

/// One half's connection, made again whenever it is lost.
pub(super) struct Link {
    pub(super) addr: Address,
    pub(super) opts: Options,
    pub(super) role: Role,
    pub(super) session: Option<Session>,
    /// Connections made after the first.
    pub(super) reconnects: u64,
    connected_once: bool,
}

impl Link {
    /// Connects once (bounded by `connect_timeout`).
    pub(super) fn open(addr: &str, opts: Options, role: Role) -> io::Result<Link> {
        let addr = parse_addr(addr).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not an amqp address (amqp://host:port/[VHOST/]QUEUE): {addr}"),
            )
        })?;
        let mut link = Link { addr, opts, role, session: None, reconnects: 0, connected_once: false };
        let deadline = Instant::now() + link.opts.connect_timeout;
        let s = link.connect(deadline).map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e))?;
        link.session = Some(s);
        link.connected_once = true;
        Ok(link)
    }

    /// One connection attempt: connection, channel, queue declaration and the role's set-up.
    fn connect(&self, deadline: Instant) -> Result<Session, String> {
        let deadline = deadline.min(Instant::now() + self.opts.connect_timeout);
        let uri = format!("{}?heartbeat={}", self.addr.broker, self.opts.heartbeat);
        let queue = self.addr.queue.as_str();
        let role = self.role;
        let what =
            format!("amqp: {} (vhost {:?}, queue {queue:?})", strip_password(&self.addr.broker), self.addr.vhost);
        let fut = async move {
            let conn = Connection::connect(&uri, ConnectionProperties::default()).await?;
            let channel = conn.create_channel().await?;
            let mut deliveries = None;
            match role {
                Role::Producer => channel.confirm_select(ConfirmSelectOptions::default()).await?,
                Role::Consumer(prefetch) => channel.basic_qos(prefetch, BasicQosOptions::default()).await?,
            }
            let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
            channel.queue_declare(queue.into(), durable, FieldTable::default()).await?;
            if let Role::Consumer(_) = role {
                let c = channel
                    .basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
                    .await?;
                deliveries = Some(c);
            }
            Ok::<_, lapin::Error>(Session { conn, channel, deliveries })
        };
        match block_on(Some(deadline), fut) {
            None => Err(format!("{what}: no answer within the connect timeout")),
            Some(Err(e)) => Err(format!("{what}: {e}")),
            Some(Ok(s)) => Ok(s),
        }
    }

    /// Makes sure there is a live session, reconnecting as `wait` allows: `Never` tries once, `Until`
    /// until the deadline, `Forever` for `give_up`. Returns whether a new connection was made.
    pub(super) fn ensure(&mut self, wait: Wait) -> Result<bool, LinkError> {
        if self.session.as_ref().is_some_and(Session::alive) {
            return Ok(false);
        }
        self.drop_session();
        let start = Instant::now();
        let limit = match wait {
            Wait::Never => Some(start),
            Wait::Until(d) => Some(d),
            Wait::Forever => self.opts.give_up.map(|g| start + g),
        };
        let mut pause = Duration::from_millis(5);
        loop {
            let attempt_deadline = match (wait, limit) {
                (Wait::Never, _) => start + self.opts.connect_timeout,
                (_, Some(l)) => l.max(Instant::now()),
                (_, None) => Instant::now() + self.opts.connect_timeout,
            };
            // Why an attempt failed is not kept: the caller's error (PeerReset, Timeout) can't carry it.
            if let Ok(s) = self.connect(attempt_deadline) {
                self.session = Some(s);
                if self.connected_once {
                    self.reconnects += 1;
                }
                self.connected_once = true;
                return Ok(true);
            }
            let now = Instant::now();
            match (wait, limit) {
                (Wait::Never, _) => return Err(LinkError::Gone),
                (Wait::Until(_), Some(l)) if now + pause >= l => return Err(LinkError::Timeout),
                (Wait::Forever, Some(l)) if now + pause >= l => return Err(LinkError::Gone),
                _ => {}
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// Forgets the session (lapin closes what is left of it in the background).
    pub(super) fn drop_session(&mut self) {
        self.session = None;
    }

    /// Closes the connection politely, waiting at most `io_timeout`.
    pub(super) fn close(&mut self) {
        if let Some(s) = self.session.take() {
            let deadline = Instant::now() + self.opts.io_timeout;
            let _ = block_on(Some(deadline), async move { s.conn.close(200, "OK".into()).await });
        }
    }
}

/// The broker URI without its password, for messages.
fn strip_password(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = uri[s + 3..at].split(':').next().unwrap_or("");
            format!("amqp://{user}@{}", &uri[at + 1..])
        }
        _ => uri.to_string(),
    }
}

/// Deletes the queue `addr` names (`amqp://host:port/[VHOST/]QUEUE`) with whatever it holds; returns how
/// many messages were in it. For clean-up of test and benchmark queues: the adapter itself never deletes
/// a queue.
pub fn delete_queue(addr: &str, opts: &Options) -> io::Result<u32> {
    let a = parse_addr(addr)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("not an amqp address: {addr}")))?;
    let uri = format!("{}?heartbeat={}", a.broker, opts.heartbeat);
    let fut = async move {
        let conn = Connection::connect(&uri, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        let n = channel.queue_delete(a.queue.as_str().into(), Default::default()).await?;
        let _ = conn.close(200, "OK".into()).await;
        Ok::<_, lapin::Error>(n)
    };
    match block_on(Some(Instant::now() + opts.connect_timeout + opts.io_timeout), fut) {
        None => Err(io::Error::new(io::ErrorKind::TimedOut, "amqp: no answer from the broker")),
        Some(r) => r.map_err(io::Error::other),
    }
}

/// Whether a broker answers at `url` (`amqp://[user:password@]host:port[/VHOST]`): connects (the whole
/// AMQP handshake, bounded by `opts.connect_timeout`) and closes again. The error says why not.
pub fn check_broker(url: &str, opts: &Options) -> io::Result<()> {
    let addr = format!("{}/{}", url.trim_end_matches('/'), "-");
    let a = parse_addr(&addr)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("not an amqp URL: {url}")))?;
    let uri = a.broker;
    let fut = async move {
        let conn = Connection::connect(&uri, ConnectionProperties::default()).await?;
        let _ = conn.close(200, "OK".into()).await;
        Ok::<_, lapin::Error>(())
    };
    match block_on(Some(Instant::now() + opts.connect_timeout), fut) {
        None => Err(io::Error::new(io::ErrorKind::TimedOut, format!("no AMQP broker answers at {url} in time"))),
        Some(r) => r.map_err(|e| io::Error::other(format!("no AMQP broker answers at {url} ({e})"))),
    }
}
