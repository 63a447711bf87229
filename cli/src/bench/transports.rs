//! `ringwire bench` rows for the transports of `ringwire::transport`: each row talks to a
//! `ringwire __peer echo --adapter T` (round trips) or `sink` (one-way stream) process, connected by
//! [`crate::peer::connect`], the same code the conformance tests use. The redis rows meet their peer
//! at the server `--redis` names, the amqp row at the broker `--amqp` names.

use super::plan::peer_process;
use crate::peer::connect::{self as peers, PeerConn};
use crate::peer::{sink_ack_every, Adapter, PeerArgs, PeerMode};
use crate::util::{base_payload, stamp, verify, CliResult};
use hdrhistogram::Histogram;
use ringwire::socket::{EventReceiver, EventSender};
use std::time::{Duration, Instant};

/// The transports measured here, in table order.
pub const NAMES: &[&str] =
    &["pipe", "stdio", "fork", "unix", "tcp", "udp", "websocket", "redis-pubsub", "redis-stream", "amqp"];

/// Whether a row goes through a Redis server.
pub fn is_redis(transport: &str) -> bool {
    transport.starts_with("redis-")
}

/// Normalises `--redis`: `host:port` or `redis://host:port`.
pub fn redis_url(arg: &str) -> String {
    if arg.starts_with("redis://") {
        arg.trim_end_matches('/').to_string()
    } else {
        format!("redis://{arg}")
    }
}

/// Checks that a Redis server answers PING at `url`; the reason it does not, if not.
pub fn redis_check(url: &str) -> Result<(), String> {
    let answer = redis::Client::open(url).and_then(|c| {
        let mut con = c.get_connection_with_timeout(Duration::from_secs(2))?;
        con.set_read_timeout(Some(Duration::from_secs(2)))?;
        redis::cmd("PING").query::<String>(&mut con)
    });
    answer.map(|_| ()).map_err(|e| format!("no Redis server answers at {url} ({e}); pass --redis URL"))
}

/// Checks that an AMQP broker answers at `url` (the AMQP handshake); the reason it does not, if not.
pub fn amqp_check(url: &str) -> Result<(), String> {
    ringwire::transport::amqp::check_broker(url, &Default::default()).map_err(|e| format!("{e}; pass --amqp URL"))
}

/// A peer that does not answer for this long has failed (no row waits forever).
const STALL: Duration = Duration::from_secs(10);

/// The `pipelined` redis rows' window (`ringwire::transport::redis::Options::window`).
pub const REDIS_WINDOW: usize = 128;

/// Connects to a fresh echo or sink peer over the transport of row `transport`.
fn connect(transport: &str, wait: &str, mode: PeerMode, size: usize, count: u64, redis: &str) -> CliResult<PeerConn> {
    let adapter = match transport {
        // The bench's `pipe` row runs over named FIFOs (the peer's stdio is the `stdio` row).
        "pipe" => Adapter::Fifo,
        "stdio" => Adapter::Stdio,
        "fork" => Adapter::Fork,
        "unix" => Adapter::Unix,
        "tcp" => Adapter::Tcp,
        "udp" => Adapter::Udp,
        "websocket" => Adapter::Websocket,
        "redis-pubsub" => Adapter::RedisPubsub,
        "redis-stream" => Adapter::RedisStream,
        "amqp" => Adapter::Amqp,
        other => return Err(format!("no transport row {other}").into()),
    };
    // The redis rows' modes: `block`, each send waits for the server's reply; `pipelined`, our sender
    // keeps up to REDIS_WINDOW commands unacknowledged. Either way the peer's halves block.
    let (redis_window, wait) = if wait == "pipelined" { (REDIS_WINDOW, "block") } else { (1, wait) };
    let args =
        PeerArgs { size, count, max_message: size + 64, wait: wait.into(), ..PeerArgs::transport(mode, adapter) };
    let mut c = peers::connect_via_window(peer_process(&args)?, adapter, redis, redis_window)?;
    let io_wait = crate::util::parse_io_wait(wait)?;
    c.tx.set_io_wait(io_wait);
    c.rx.set_io_wait(io_wait);
    Ok(c)
}

/// The event name of the `+events` rows: short, as most event names are.
pub const EVENT_NAME: &str = "msg";

/// Splits `tcp+events` into the raw transport and whether the row goes through the event layer (a
/// `+batch` suffix is taken off first: see [`is_batch`]).
pub fn base_of(transport: &str) -> (&str, bool) {
    let t = transport.strip_suffix("+batch").unwrap_or(transport);
    t.strip_suffix("+events").map_or((t, false), |t| (t, true))
}

/// Whether a row sends with write coalescing: `pipe+batch` is `pipe` with every message of the stream
/// queued by `Sender::send_buffered` and the queue flushed only before waiting for an acknowledgement
/// (and at the end), so that a burst goes out in one `write` (`sendmmsg` on UDP); its round trip is
/// `send_buffered` + `flush` per message (a lone message: no added latency). Compared with the plain
/// row of the same run in `raw_ratio` (before / after).
pub fn is_batch(transport: &str) -> bool {
    transport.ends_with("+batch")
}

/// Round trips through an echo peer: `warmup + samples` messages, the last `samples` recorded. A
/// `+events` row sends each message as an event (`EventSender::emit_bytes`, name [`EVENT_NAME`]) and
/// receives it as one (`EventReceiver`), through the same echo peer.
#[allow(clippy::too_many_arguments)]
pub fn rtt(
    transport: &str,
    wait: &str,
    size: usize,
    warmup: u64,
    samples: u64,
    redis: &str,
    h: &mut Histogram<u64>,
) -> CliResult {
    let (base_t, events) = base_of(transport);
    let c = connect(base_t, wait, PeerMode::Echo, size, 0, redis)?;
    if events {
        return rtt_events(c, transport, size, warmup, samples, h);
    }
    let mut c = c;
    let batch = is_batch(transport);
    let base = base_payload(size);
    let mut msg = base.clone();
    // One reply buffer for the whole row (`recv_frame_into_vec`), as the raw rows read into one.
    let mut reply = Vec::with_capacity(size);
    for i in 0..warmup + samples {
        stamp(&mut msg, &base, i);
        let t0 = Instant::now();
        if batch {
            c.tx.send_buffered(&msg, ringwire::transport::Wait::Until(t0 + STALL))?;
            c.tx.flush()?;
        } else {
            c.tx.send_deadline(&msg, t0 + STALL)?;
        }
        c.rx.recv_frame_into_vec(&mut reply, ringwire::transport::Wait::Until(t0 + STALL))?;
        let dt = t0.elapsed().as_nanos() as u64;
        if !verify(&reply, &base, i) {
            return Err(format!("{transport} echo returned a wrong message at {i}").into());
        }
        if i >= warmup {
            h.saturating_record(dt);
        }
    }
    c.tx.close()?;
    Ok(())
}

fn rtt_events(
    mut c: PeerConn,
    transport: &str,
    size: usize,
    warmup: u64,
    samples: u64,
    h: &mut Histogram<u64>,
) -> CliResult {
    // Borrowed halves: `c` (and with it the peer process) lives to the end.
    let (mut tx, mut rx) = (EventSender::new(&mut c.tx), EventReceiver::new(&mut c.rx));
    let base = base_payload(size);
    let mut msg = base.clone();
    for i in 0..warmup + samples {
        stamp(&mut msg, &base, i);
        let t0 = Instant::now();
        tx.emit_bytes_deadline(EVENT_NAME, &msg, t0 + STALL)?;
        let reply = rx.recv_ref_wait(ringwire::transport::Wait::Until(t0 + STALL))?;
        let dt = t0.elapsed().as_nanos() as u64;
        if reply.name() != EVENT_NAME || !verify(reply.bytes(), &base, i) {
            return Err(format!("{transport} echo returned a wrong event at {i}").into());
        }
        if i >= warmup {
            h.saturating_record(dt);
        }
    }
    tx.close()?;
    Ok(())
}

/// Messages a stream row keeps unacknowledged: four acknowledgement intervals (about 64 KiB), two on UDP
/// (`udp`, `udp+batch`, `raw-udp` alike), whose small datagrams cost the receive buffer far more than
/// their bytes (about 1 KiB each, 212,992 bytes by default): a sender that keeps up with its sink (the
/// raw and coalesced ones do) would otherwise overflow it and lose datagrams.
pub fn window(size: usize, datagram: bool) -> u64 {
    if datagram {
        2 * sink_ack_every(size)
    } else {
        4 * sink_ack_every(size)
    }
}

/// One-way stream of `count` messages into a sink peer that checks each one, with at most
/// [`window`] messages unacknowledged; returns the time from the first send to the sink's verdict.
pub fn stream(transport: &str, wait: &str, size: usize, count: u64, redis: &str) -> CliResult<Duration> {
    let (base_t, events) = base_of(transport);
    let mut c = connect(base_t, wait, PeerMode::Sink, size, count, redis)?;
    // A `+events` row emits each message as an event; the sink's acknowledgements stay plain frames.
    // (Borrowed halves: `c`, and with it the peer process, lives to the end.)
    let (mut tx, rx) = (EventSender::new(&mut c.tx), &mut c.rx);
    let batch = is_batch(transport);
    let base = base_payload(size);
    let mut msg = base.clone();
    let mut acked = 0u64;
    let window = window(size, c.datagram);
    let t0 = Instant::now();
    // The sends' stall bound, renewed with each acknowledgement (the sink's progress) rather than read
    // from the clock for every message (the raw rows read no clock per message either).
    let mut deadline = t0 + STALL;
    for i in 0..count {
        if batch && i - acked >= window {
            // About to wait for the sink: what is queued must be on the wire first.
            tx.get_mut().flush()?;
        }
        while i - acked >= window {
            let ack = rx.recv_deadline(Instant::now() + STALL)?;
            acked = u64::from_le_bytes(ack.as_slice().try_into().map_err(|_| "bad acknowledgement")?);
            deadline = Instant::now() + STALL;
        }
        stamp(&mut msg, &base, i);
        if events {
            tx.emit_bytes_deadline(EVENT_NAME, &msg, deadline)?;
        } else if batch {
            tx.get_mut().send_buffered(&msg, ringwire::transport::Wait::Until(deadline))?;
        } else {
            tx.get_mut().send_deadline(&msg, deadline)?;
        }
    }
    // Everything sent is taken (a pipelined redis sender: acknowledged) within the timed run.
    tx.get_mut().flush()?;
    if batch {
        tx.get_mut().flush()?;
    }
    let verdict = loop {
        let m = rx.recv_deadline(Instant::now() + STALL)?;
        if m.len() != 8 {
            break m;
        }
    };
    let elapsed = t0.elapsed();
    tx.close()?;
    if verdict != b"ok" {
        return Err(format!("{transport} sink saw a wrong message").into());
    }
    Ok(elapsed)
}
