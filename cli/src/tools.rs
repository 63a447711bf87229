//! `ringwire echo` and `ringwire cat`: a transport user's nc / websocat / redis-cli, speaking ringwire
//! frames.
//!
//! ADDR is `host:port` for tcp and udp, a socket path for unix, a ring name for shm (the rings
//! `NAME.down` and `NAME.up` under /dev/shm, made by `echo`), `ws://host:port/path` for websocket, and
//! `redis://host:port/CHANNEL` for redis (pub/sub). Over redis, `echo` subscribes to CHANNEL and publishes
//! each reply on `CHANNEL.reply`; `cat` subscribes to `CHANNEL.reply` before it sends anything, then
//! publishes on CHANNEL. Pub/sub is at most once: messages lost while a connection was down are
//! reported on stderr.

use crate::util::CliResult;
use ringwire::transport::codec::{decode_datagram, encode_into};
use ringwire::transport::redis::{self as redis_transport, Publisher, Subscriber};
use ringwire::transport::{shm, tcp, udp, unix, websocket, Receiver, Sender, TransportRecvError};
use ringwire::wire::Kind;
use ringwire::RingConfig;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct EchoArgs {
    /// tcp | unix | udp | shm | websocket | redis
    #[arg(long)]
    transport: String,
    /// Where to listen: host:port (tcp, udp; port 0 picks one), a socket path (unix), a ring name (shm),
    /// ws://host:port/path (websocket; port 0 picks one), redis://host:port/CHANNEL (redis: serves
    /// CHANNEL, replies on CHANNEL.reply).
    #[arg(long)]
    listen: String,
    /// Largest message accepted.
    #[arg(long, default_value_t = ringwire::transport::DEFAULT_MAX_MESSAGE)]
    max_message: usize,
}

#[derive(clap::Args, Debug)]
pub struct CatArgs {
    /// tcp | unix | udp | shm | websocket | redis
    #[arg(long)]
    transport: String,
    /// What to connect to: host:port (tcp, udp), a socket path (unix), a ring name (shm),
    /// ws://host:port/path (websocket), redis://host:port/CHANNEL (redis: sends on CHANNEL, reads
    /// CHANNEL.reply).
    #[arg(long)]
    connect: String,
    /// Give up waiting for replies after this many seconds once stdin has ended.
    #[arg(long)]
    timeout: Option<f64>,
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Echoes every frame back until the peer closes.
fn serve(mut tx: impl Sender, mut rx: impl Receiver) {
    loop {
        match rx.recv() {
            Ok(msg) => {
                if tx.send(&msg).is_err() {
                    return;
                }
            }
            Err(TransportRecvError::BadFrame(e)) => eprintln!("ringwire echo: skipped a bad frame: {e}"),
            Err(_) => {
                let _ = tx.close();
                return;
            }
        }
    }
}

/// `ringwire echo`: prints `listening on ADDR` once ready, then serves until killed (shm: until its one
/// client closes).
pub fn echo(args: EchoArgs) -> CliResult {
    let max = args.max_message;
    match args.transport.as_str() {
        "tcp" => {
            let listener = tcp::Listener::bind(&args.listen)?;
            say(&format!("listening on {}", listener.local_addr()?));
            loop {
                let (mut tx, mut rx, _) = listener.accept()?;
                tx.set_max_message(max);
                rx.set_max_message(max);
                std::thread::spawn(move || serve(tx, rx));
            }
        }
        "unix" => {
            let listener = unix::Listener::bind(&args.listen)?;
            say(&format!("listening on {}", args.listen));
            loop {
                let (mut tx, mut rx) = listener.accept()?;
                tx.set_max_message(max);
                rx.set_max_message(max);
                std::thread::spawn(move || serve(tx, rx));
            }
        }
        "udp" => {
            // One frame per datagram, answered to whoever sent it.
            let sock = std::net::UdpSocket::bind(&args.listen)?;
            say(&format!("listening on {}", sock.local_addr()?));
            let mut buf = vec![0u8; 65536];
            let mut out = Vec::new();
            loop {
                let (n, from) = sock.recv_from(&mut buf)?;
                match decode_datagram(&buf[..n], max) {
                    Ok(frame) => {
                        out.clear();
                        encode_into(&mut out, Kind::Data, frame.payload)?;
                        sock.send_to(&out, from)?;
                    }
                    Err(e) => eprintln!("ringwire echo: skipped a bad datagram from {from}: {e}"),
                }
            }
        }
        "shm" => {
            let (tx, rx) = shm::create(&args.listen, RingConfig::default())?;
            say(&format!("listening on {}", args.listen));
            serve(tx, rx);
            Ok(())
        }
        "websocket" => {
            let mut listener = websocket::Listener::bind_url(&args.listen)?;
            listener.set_options(websocket::Options { max_message: max, ..Default::default() });
            say(&format!("listening on {}", listener.url()?));
            loop {
                // The handshake happens on the connection's own thread: a slow client holds up no one.
                let (stream, peer) = listener.accept_tcp()?;
                let (path, opts) = (listener.path().to_string(), listener.options().clone());
                std::thread::spawn(move || match websocket::accept(stream, &path, &opts) {
                    Ok((tx, rx)) => serve(tx, rx),
                    Err(e) => eprintln!("ringwire echo: {peer}: {e}"),
                });
            }
        }
        "redis" => {
            let (url, channel) = redis_addr(&args.listen)?;
            let opts = redis_transport::Options { max_message: max, ..Default::default() };
            let mut rx = Subscriber::with_options(&url, &channel, opts.clone())?;
            let mut tx = Publisher::with_options(&url, &format!("{channel}.reply"), opts)?;
            say(&format!("listening on {url}/{channel}"));
            loop {
                let r = rx.recv();
                if let Some(report) = rx.take_report() {
                    eprintln!("ringwire echo: {}", describe(&report));
                }
                match r {
                    Ok(msg) => tx.send(&msg)?,
                    Err(TransportRecvError::BadFrame(e)) => eprintln!("ringwire echo: skipped a bad frame: {e}"),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        other => Err(unsupported(other)),
    }
}

fn unsupported(t: &str) -> Box<dyn std::error::Error + Send + Sync> {
    format!("unknown transport {t:?} (tcp, unix, udp, shm, websocket, redis)").into()
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
    parts.join("; ")
}

/// A pub/sub receiver that reports losses on stderr as it goes.
struct Reporting(Subscriber);

impl Receiver for Reporting {
    fn recv_wait(&mut self, wait: ringwire::transport::Wait) -> Result<Vec<u8>, TransportRecvError> {
        let r = self.0.recv_wait(wait);
        if let Some(report) = self.0.take_report() {
            eprintln!("ringwire cat: {}", describe(&report));
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

/// `ringwire cat`: each stdin line goes out as one frame; each frame received is printed as a line. Exits
/// once stdin has ended and a reply has arrived for every line sent, or `--timeout` seconds after stdin
/// ended.
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
        other => return Err(unsupported(other)),
    };
    let sent = Arc::new(AtomicU64::new(0));
    let stdin_done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (sent, stdin_done) = (sent.clone(), stdin_done.clone());
        let mut tx = tx;
        std::thread::spawn(move || -> CliResult {
            for line in std::io::stdin().lock().lines() {
                tx.send(line?.as_bytes())?;
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
    loop {
        if stdin_done.load(Ordering::Acquire) {
            let ended = *stdin_ended_at.get_or_insert_with(Instant::now);
            if received >= sent.load(Ordering::Acquire) {
                break;
            }
            if args.timeout.is_some_and(|t| ended.elapsed() >= Duration::from_secs_f64(t)) {
                break;
            }
        }
        match rx.recv_deadline(Instant::now() + Duration::from_millis(50)) {
            Ok(msg) => {
                say(&String::from_utf8_lossy(&msg));
                received += 1;
            }
            Err(TransportRecvError::Timeout) => {}
            Err(TransportRecvError::PeerGone) => break,
            Err(e) => return Err(e.into()),
        }
        if writer.is_finished() && !stdin_done.load(Ordering::Acquire) {
            // The writer failed before stdin ended.
            break;
        }
    }
    match writer.join() {
        Ok(r) => r,
        Err(_) => Err("stdin reader panicked".into()),
    }
}
