//! `ringwire echo` and `ringwire cat`: a transport user's nc / websocat / redis-cli, speaking ringwire
//! frames.
//!
//! ADDR is `host:port` for tcp and udp, a socket path for unix, a ring name for shm (the rings
//! `NAME.down` and `NAME.up` under /dev/shm, made by `echo`), `ws://host:port/path` for websocket, and
//! `redis://host:port/CHANNEL` for redis (pub/sub). Over redis, `echo` subscribes to CHANNEL and publishes
//! each reply on `CHANNEL.reply`; `cat` subscribes to `CHANNEL.reply` before it sends anything, then
//! publishes on CHANNEL. Pub/sub is at most once: messages lost while a connection was down are
//! reported on stderr. Over amqp (`amqp://host:port/[VHOST/]QUEUE`, a RabbitMQ work queue), `echo`
//! consumes QUEUE and publishes each reply on `QUEUE.reply`; `cat` consumes `QUEUE.reply` and publishes
//! on QUEUE. Both queues are durable: replies nobody took wait there for the next `cat`.

use crate::util::CliResult;
use ringwire::transport::amqp;
use ringwire::transport::codec::{decode_datagram, encode_parts_into};
use ringwire::transport::redis::{self as redis_transport, Publisher, Subscriber};
use ringwire::transport::{
    shm, tcp, udp, unix, websocket, Receiver, Sender, TransportRecvError, TransportSendError, Wait,
};
use ringwire::wire::Kind;
use ringwire::RingConfig;
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct EchoArgs {
    /// tcp | unix | udp | shm | websocket | redis | amqp
    #[arg(long)]
    transport: String,
    /// Where to listen: host:port (tcp, udp; port 0 picks one), a socket path (unix), a ring name (shm),
    /// ws://host:port/path (websocket; port 0 picks one), redis://host:port/CHANNEL (redis: serves
    /// CHANNEL, replies on CHANNEL.reply), amqp://host:port/[VHOST/]QUEUE (amqp: consumes QUEUE,
    /// replies on QUEUE.reply).
    #[arg(long)]
    listen: String,
    /// Largest message accepted.
    #[arg(long, default_value_t = ringwire::transport::DEFAULT_MAX_MESSAGE)]
    max_message: usize,
    /// Connections served at once (tcp, unix, websocket: one thread each). Past it a new connection is
    /// accepted and closed at once, and stderr says why.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Exit status: 0 when stdin has ended and every line has its reply; 1 on an error \
(cannot connect, the server closed or reset the connection, a broken stream); 3 when --timeout ran out \
with replies missing (stderr says how many).")]
pub struct CatArgs {
    /// tcp | unix | udp | shm | websocket | redis | amqp
    #[arg(long)]
    transport: String,
    /// What to connect to: host:port (tcp, udp), a socket path (unix), a ring name (shm),
    /// ws://host:port/path (websocket), redis://host:port/CHANNEL (redis: sends on CHANNEL, reads
    /// CHANNEL.reply), amqp://host:port/[VHOST/]QUEUE (amqp: publishes on QUEUE, consumes QUEUE.reply).
    #[arg(long)]
    connect: String,
    /// Give up waiting for replies after this many seconds once stdin has ended (exit status 3 if some
    /// are missing).
    #[arg(long)]
    timeout: Option<f64>,
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Echoes every frame back until the peer closes. `Err`: why the connection ended otherwise (a reset
/// peer is not an error: clients come and go).
fn serve(mut tx: impl Sender, mut rx: impl Receiver, who: &str) -> Result<(), String> {
    loop {
        match rx.recv_frame_wait(Wait::Forever) {
            Ok(f) => {
                if let Err(e) = tx.send_frame_wait(f.ext, &[&f.bytes], Wait::Forever) {
                    return match e {
                        TransportSendError::PeerReset | TransportSendError::PeerGone => Ok(()),
                        e => Err(format!("{who}: {e}")),
                    };
                }
            }
            // One message skipped; the connection goes on. (One line per bad message the peer sent.)
            Err(TransportRecvError::BadFrame(e)) => eprintln!("ringwire echo: {who}: skipped a bad frame: {e}"),
            Err(TransportRecvError::PeerGone | TransportRecvError::PeerReset) => {
                let _ = tx.close();
                return Ok(());
            }
            // A broken stream, a corrupted ring, an I/O error: said once, and the connection ends.
            Err(e) => {
                let _ = tx.close();
                return Err(format!("{who}: {e}; closing the connection"));
            }
        }
    }
}

/// Accepts connections forever, each served on its own thread, at most `cap` at once. An accept error
/// (out of descriptors, memory, an aborted connection) is logged and survived: the loop backs off (10 ms
/// doubling to 1 s) and keeps serving the connections it has. A connection past the cap is closed at
/// once, and said so on stderr (at most once a second, with a count).
fn serve_connections<C: Send + 'static>(
    cap: usize,
    mut accept: impl FnMut() -> io::Result<(C, String)>,
    handle: impl Fn(C, &str) + Send + Sync + 'static,
) -> CliResult {
    let active = Arc::new(AtomicUsize::new(0));
    let handle = Arc::new(handle);
    let mut backoff = Duration::from_millis(10);
    let (mut refused, mut said_at) = (0u64, None::<Instant>);
    loop {
        let (conn, who) = match accept() {
            Ok(c) => {
                backoff = Duration::from_millis(10);
                c
            }
            Err(e) => {
                eprintln!("ringwire echo: accept failed: {e}; still serving, retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // Relaxed: a count, not a synchronisation.
        if active.load(Ordering::Relaxed) >= cap {
            refused += 1;
            if said_at.map_or(true, |t| t.elapsed() >= Duration::from_secs(1)) {
                eprintln!(
                    "ringwire echo: refused {who} and {} more: {cap} connections open (--max-connections)",
                    refused - 1
                );
                (refused, said_at) = (0, Some(Instant::now()));
            }
            drop(conn);
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (active2, handle2) = (active.clone(), handle.clone());
        let spawned = std::thread::Builder::new().name(format!("echo {who}")).spawn(move || {
            handle2(conn, &who);
            active2.fetch_sub(1, Ordering::Relaxed);
        });
        if let Err(e) = spawned {
            // The connection was moved into the closure, which is dropped with the error: it is closed.
            active.fetch_sub(1, Ordering::Relaxed);
            eprintln!("ringwire echo: no thread for a connection ({e}); closed it");
        }
    }
}

/// Removes `paths` and exits when SIGINT or SIGTERM arrives (status 128 + signal), so that a server
/// stopped by Ctrl-C or `kill` leaves no socket file or ring behind.
fn clean_up_on_signals(paths: Vec<std::path::PathBuf>) -> CliResult {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(sig) = signals.forever().next() {
            for p in &paths {
                let _ = std::fs::remove_file(p);
            }
            std::process::exit(128 + sig);
        }
    })?;
    Ok(())
}

/// `ringwire echo`: prints `listening on ADDR` once ready, then serves until killed (shm: until its one
/// client closes). A name (unix socket file, shm rings) left behind by a server that died is taken over;
/// one in use is refused.
pub fn echo(args: EchoArgs) -> CliResult {
    let max = args.max_message;
    let cap = args.max_connections.max(1);
    match args.transport.as_str() {
        "tcp" => {
            let listener = tcp::Listener::bind(&args.listen)?;
            say(&format!("listening on {}", listener.local_addr()?));
            serve_connections(
                cap,
                || listener.accept().map(|(tx, rx, addr)| ((tx, rx), addr.to_string())),
                move |(mut tx, mut rx), who| {
                    tx.set_max_message(max);
                    rx.set_max_message(max);
                    if let Err(e) = serve(tx, rx, who) {
                        eprintln!("ringwire echo: {e}");
                    }
                },
            )
        }
        "unix" => {
            let listener = unix::Listener::bind_reclaiming(&args.listen)?;
            clean_up_on_signals(vec![args.listen.clone().into()])?;
            say(&format!("listening on {}", args.listen));
            let mut n = 0u64;
            serve_connections(
                cap,
                || {
                    n += 1;
                    listener.accept().map(|c| (c, format!("client {n}")))
                },
                move |(mut tx, mut rx), who| {
                    tx.set_max_message(max);
                    rx.set_max_message(max);
                    if let Err(e) = serve(tx, rx, who) {
                        eprintln!("ringwire echo: {e}");
                    }
                },
            )
        }
        "udp" => {
            // One frame per datagram, answered to whoever sent it. A datagram or a peer's error is that
            // peer's problem: said (at most once a second) and the server goes on.
            let sock = std::net::UdpSocket::bind(&args.listen)?;
            say(&format!("listening on {}", sock.local_addr()?));
            let mut buf = vec![0u8; 65536];
            let mut out = Vec::new();
            let mut said_at = None::<Instant>;
            let mut complain = |what: String| {
                if said_at.map_or(true, |t: Instant| t.elapsed() >= Duration::from_secs(1)) {
                    eprintln!("ringwire echo: {what}");
                    said_at = Some(Instant::now());
                }
            };
            loop {
                let (n, from) = match sock.recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e) => {
                        // ICMP errors for earlier replies surface here (ECONNREFUSED): not ours to stop for.
                        complain(format!("receive: {e}"));
                        continue;
                    }
                };
                match decode_datagram(&buf[..n], max) {
                    Ok(frame) => {
                        out.clear();
                        encode_parts_into(&mut out, Kind::Data, frame.ext, &[frame.payload])?;
                        if let Err(e) = sock.send_to(&out, from) {
                            complain(format!("reply to {from}: {e}"));
                        }
                    }
                    Err(e) => complain(format!("skipped a bad datagram from {from}: {e}")),
                }
            }
        }
        "shm" => {
            // Rings left by an echo that died are taken over; rings in use are refused (Busy).
            let opts = ringwire::ShmOptions::new(RingConfig::default()).reuse_stale(true);
            let (tx, rx) = shm::create_with(&args.listen, &opts)?;
            let dir = std::path::Path::new(ringwire::shm::DEFAULT_DIR);
            clean_up_on_signals(vec![
                dir.join(format!("{}.down", args.listen)),
                dir.join(format!("{}.up", args.listen)),
            ])?;
            say(&format!("listening on {}", args.listen));
            // One client; its end (or a corrupted ring: an error and a non-zero exit) ends the server.
            serve(tx, rx, "client").map_err(Into::into)
        }
        "websocket" => {
            let mut listener = websocket::Listener::bind_url(&args.listen)?;
            listener.set_options(websocket::Options { max_message: max, ..Default::default() });
            say(&format!("listening on {}", listener.url()?));
            let (path, opts) = (listener.path().to_string(), listener.options().clone());
            serve_connections(
                cap,
                // The handshake happens on the connection's own thread: a slow client holds up no one.
                || listener.accept_tcp().map(|(stream, peer)| (stream, peer.to_string())),
                move |stream, who| match websocket::accept(stream, &path, &opts) {
                    Ok((tx, rx)) => {
                        if let Err(e) = serve(tx, rx, who) {
                            eprintln!("ringwire echo: {e}");
                        }
                    }
                    Err(e) => eprintln!("ringwire echo: {who}: {e}"),
                },
            )
        }
        "redis" => {
            let (url, channel) = redis_addr(&args.listen)?;
            // A server keeps going through a Redis outage: each wait gives up after 5 s (said on stderr),
            // and the next one reconnects.
            let opts = redis_transport::Options {
                max_message: max,
                give_up: Some(Duration::from_secs(5)),
                ..Default::default()
            };
            let rx = Subscriber::with_options(&url, &channel, opts.clone())?;
            let tx = Publisher::with_options(&url, &format!("{channel}.reply"), opts)?;
            say(&format!("listening on {url}/{channel}"));
            echo_brokered(rx, tx, &format!("Redis at {url}"))
        }
        "amqp" => echo_amqp(&args.listen, max),
        other => Err(unsupported(other)),
    }
}

/// `ringwire echo --transport amqp`: consumes QUEUE, publishes each reply on `QUEUE.reply`; a message is
/// acknowledged once its reply is confirmed (when the next one is asked for). Keeps going through a
/// broker outage.
fn echo_amqp(listen: &str, max: usize) -> CliResult {
    let reply = format!("{listen}.reply");
    let opts = amqp::Options { max_message: max, give_up: Some(Duration::from_secs(5)), ..Default::default() };
    let rx = amqp::Consumer::with_options(listen, opts.clone())?;
    let tx = amqp::Producer::with_options(&reply, opts)?;
    say(&format!("listening on {listen}"));
    echo_brokered(rx, tx, "the AMQP broker")
}

/// The echo loop of the brokered transports (redis, amqp): every frame goes back as it came (an event
/// with its name), delivery reports go to stderr, and an outage of `broker` is waited out (each wait
/// gives up after the receiver's `give_up`, which says so on stderr; other errors back off 100 ms
/// doubling to 5 s). Never returns.
fn echo_brokered(mut rx: impl Receiver + Reports, mut tx: impl Sender, broker: &str) -> CliResult {
    let mut backoff = Duration::from_millis(100);
    loop {
        let r = rx.recv_frame_wait(Wait::Forever);
        if let Some(report) = rx.report() {
            eprintln!("ringwire echo: {report}");
        }
        match r {
            Ok(f) => {
                backoff = Duration::from_millis(100);
                if let Err(e) = tx.send_frame_wait(f.ext, &[&f.bytes], Wait::Forever) {
                    eprintln!("ringwire echo: a reply is lost: {e}");
                }
            }
            Err(TransportRecvError::BadFrame(e)) => eprintln!("ringwire echo: skipped a bad frame: {e}"),
            Err(TransportRecvError::PeerReset) => eprintln!("ringwire echo: {broker} does not answer; still trying"),
            Err(e) => {
                eprintln!("ringwire echo: {e}; retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A receiver through a broker that keeps a delivery report: what it noticed since the last call, as
/// one line for stderr.
trait Reports {
    fn report(&mut self) -> Option<String>;
}

impl Reports for Subscriber {
    fn report(&mut self) -> Option<String> {
        self.take_report().map(|r| describe(&r))
    }
}

impl Reports for amqp::Consumer {
    fn report(&mut self) -> Option<String> {
        self.take_report().map(|r| describe_amqp(&r))
    }
}

/// An amqp delivery report as one line for stderr.
fn describe_amqp(r: &amqp::DeliveryReport) -> String {
    let mut parts = Vec::new();
    if r.reconnects > 0 {
        parts.push(format!("reconnected {} time(s); unacknowledged messages come again", r.reconnects));
    }
    if r.redelivered > 0 {
        parts.push(format!("{} message(s) redelivered", r.redelivered));
    }
    let rest = describe(&amqp::DeliveryReport { reconnects: 0, ..r.clone() });
    if !rest.is_empty() {
        parts.push(rest);
    }
    parts.join("; ")
}

/// A brokered receiver (redis pub/sub, amqp) that reports losses and redeliveries on stderr as it goes,
/// and closes when dropped (for amqp: acknowledges what it delivered, so that the last reply is not
/// delivered again to the next `cat`).
struct Reporting<R: Receiver + Reports>(R);

impl<R: Receiver + Reports> Receiver for Reporting<R> {
    fn recv_frame_wait(
        &mut self,
        wait: ringwire::transport::Wait,
    ) -> Result<ringwire::transport::RecvFrame, TransportRecvError> {
        let r = self.0.recv_frame_wait(wait);
        if let Some(report) = self.0.report() {
            eprintln!("ringwire cat: {report}");
        }
        r
    }
    fn close(&mut self) {
        self.0.close()
    }
    fn max_message(&self) -> usize {
        self.0.max_message()
    }
}

impl<R: Receiver + Reports> Drop for Reporting<R> {
    fn drop(&mut self) {
        self.0.close()
    }
}

fn unsupported(t: &str) -> Box<dyn std::error::Error + Send + Sync> {
    format!("unknown transport {t:?} (tcp, unix, udp, shm, websocket, redis, amqp)").into()
}

fn redis_addr(addr: &str) -> CliResult<(String, String)> {
    redis_transport::split_addr(addr)
        .ok_or_else(|| format!("redis transport: {addr:?} is not redis://host:port/CHANNEL").into())
}

/// A delivery report as one line for stderr.
fn describe(r: &redis_transport::DeliveryReport) -> String {
    let mut parts = Vec::new();
    if r.reconnects > 0 {
        parts.push(format!("reconnected {} time(s), messages published meanwhile are lost", r.reconnects));
    }
    for g in &r.gaps {
        parts.push(format!("{} message(s) lost from publisher {:016x} (from #{})", g.count, g.publisher, g.first));
    }
    if r.duplicates > 0 {
        parts.push(format!("{} duplicate(s)", r.duplicates));
    }
    if r.resets > 0 {
        parts.push(format!("{} implausible sequence jump(s) taken as publisher resets", r.resets));
    }
    if r.forgotten > 0 {
        parts.push(format!("{} publisher(s) forgotten to bound memory", r.forgotten));
    }
    parts.join("; ")
}

/// `ringwire cat`: each stdin line goes out as one frame (split on `\n` only: the bytes between are sent
/// unchanged, `\r` and invalid UTF-8 included); each frame received is written to stdout unchanged,
/// followed by `\n`. Exits once stdin has ended and a reply has arrived for every line sent (status 0),
/// as soon as the server closes or resets the connection (status 1), or `--timeout` seconds after stdin
/// ended with replies missing (status 3).
pub fn cat(args: CatArgs) -> CliResult {
    let (tx, rx): (Box<dyn Sender>, Box<dyn Receiver>) = match args.transport.as_str() {
        "tcp" => {
            let (tx, rx) = tcp::connect(&args.connect)?;
            (Box::new(tx), Box::new(rx))
        }
        "unix" => {
            let (tx, rx) = unix::connect(&args.connect)?;
            (Box::new(tx), Box::new(rx))
        }
        "udp" => {
            let (tx, rx) = udp::connect("0.0.0.0:0", &args.connect)?;
            (Box::new(tx), Box::new(rx))
        }
        "shm" => {
            let (tx, rx) = shm::open(&args.connect)?;
            (Box::new(tx), Box::new(rx))
        }
        "websocket" => {
            let (tx, rx) = websocket::connect(&args.connect)?;
            (Box::new(tx), Box::new(rx))
        }
        "redis" => {
            let (url, channel) = redis_addr(&args.connect)?;
            // Subscribed to the replies before the first message goes out.
            let rx = Subscriber::connect(&url, &format!("{channel}.reply"))?;
            let tx = Publisher::connect(&url, &channel)?;
            (Box::new(tx), Box::new(Reporting(rx)))
        }
        "amqp" => {
            // Consuming the replies before the first message goes out.
            let rx = amqp::Consumer::connect(&format!("{}.reply", args.connect))?;
            let tx = amqp::Producer::connect(&args.connect)?;
            (Box::new(tx), Box::new(Reporting(rx)))
        }
        other => return Err(unsupported(other)),
    };
    let sent = Arc::new(AtomicU64::new(0));
    let stdin_done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (sent, stdin_done) = (sent.clone(), stdin_done.clone());
        let mut tx = tx;
        std::thread::spawn(move || -> CliResult {
            let mut stdin = std::io::stdin().lock();
            let mut line = Vec::new();
            loop {
                line.clear();
                if stdin.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                tx.send(&line)?;
                // Release: the reader's Acquire load sees the count only after the send happened.
                sent.fetch_add(1, Ordering::Release);
            }
            stdin_done.store(true, Ordering::Release);
            tx.flush()?;
            Ok(())
        })
    };
    let mut rx = rx;
    let mut received = 0u64;
    let mut stdin_ended_at = None;
    let mut out = std::io::stdout().lock();
    loop {
        if stdin_done.load(Ordering::Acquire) {
            let ended = *stdin_ended_at.get_or_insert_with(Instant::now);
            let sent = sent.load(Ordering::Acquire);
            if received >= sent {
                break;
            }
            if let Some(t) = args.timeout.filter(|&t| ended.elapsed() >= Duration::from_secs_f64(t)) {
                eprintln!("ringwire cat: {} of {sent} replies missing after {t} s", sent - received);
                out.flush()?;
                std::process::exit(3);
            }
        }
        match rx.recv_deadline(Instant::now() + Duration::from_millis(50)) {
            Ok(msg) => {
                out.write_all(&msg)?;
                out.write_all(b"\n")?;
                out.flush()?;
                received += 1;
            }
            Err(TransportRecvError::Timeout) => {}
            Err(TransportRecvError::BadFrame(e)) => eprintln!("ringwire cat: skipped a bad frame: {e}"),
            // The server went away (cleanly or not) before every reply came: an error, at once, whatever
            // stdin is still doing.
            Err(e) => {
                // Unless that was the server closing after the last reply, once stdin had ended.
                let sent = sent.load(Ordering::Acquire);
                if stdin_done.load(Ordering::Acquire) && received >= sent {
                    break;
                }
                return Err(format!("{e} ({} replies missing)", sent.saturating_sub(received)).into());
            }
        }
        if writer.is_finished() && !stdin_done.load(Ordering::Acquire) {
            // The writer failed before stdin ended: its error is the answer.
            break;
        }
    }
    match writer.join() {
        Ok(r) => r,
        Err(_) => Err("stdin reader panicked".into()),
    }
}
