//! Transport test peers that misbehave in one specific way each (`ringwire-testpeer misbehave MODE`).

use super::{park_forever, say, PeerResult};
use ringwire::transport::amqp;
use ringwire::transport::redis::{split_addr, StreamConsumer};
use ringwire::transport::{fork, recv_json, send_json, stdio, JsonError, Receiver, Sender};
use ringwire::transport::{TransportRecvError, TransportSendError};
use ringwire::wire::FrameHeader;
use std::io::Write;

/// What a misbehaving peer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// stdio: one good frame, then bytes that are no frame header, then waits for the end of input.
    GarbageStdio,
    /// stdio: one frame, then a header announcing 100 bytes with only 10 of them, and exits.
    MidframeExit,
    /// stdio: sends until the parent goes away; exit code 3 says it saw EPIPE as an error (not a
    /// SIGPIPE death).
    FloodStdio,
    /// stdio: one frame, then closes stdout while staying alive until stdin ends.
    CloseStdout,
    /// redis: takes one message from stream `--addr` as consumer `--name` of group `ringwire` (claiming
    /// nothing), prints `got MSG`, and waits to be killed without acknowledging it.
    TakeRedisStream,
    /// amqp: takes `--count` messages from queue `--addr` (prefetch `--count`) without acknowledging
    /// them, prints `got N`, and waits to be killed.
    TakeAmqp,
    /// fork: answers every JSON value `v` with `{"got": v}` until the parent closes.
    EchoJsonFork,
}

/// Options of the misbehaving peers.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What the peer does.
    #[arg(value_enum)]
    pub mode: Mode,
    /// take-redis-stream: redis://host:port/KEY; take-amqp: amqp://host:port/[VHOST/]QUEUE.
    #[arg(long)]
    pub addr: Option<String>,
    /// take-redis-stream: the consumer name.
    #[arg(long)]
    pub name: Option<String>,
    /// take-amqp: how many messages to take.
    #[arg(long)]
    pub count: Option<u16>,
    /// The largest message each half accepts.
    #[arg(long, default_value_t = ringwire::transport::DEFAULT_MAX_MESSAGE)]
    pub max_message: usize,
}

/// Runs the peer.
pub fn run(args: Args) -> PeerResult {
    match args.mode {
        Mode::GarbageStdio => {
            let (mut tx, mut rx) = stdio::from_process_stdio()?;
            tx.send(b"good")?;
            let mut raw = tx.get_ref().ok_or("closed")?;
            raw.write_all(b"\xde\xad\xbe\xef\x99\x99\x99\x99garbage")?;
            while rx.recv().is_ok() {}
            Ok(())
        }
        Mode::MidframeExit => {
            let (mut tx, _rx) = stdio::from_process_stdio()?;
            tx.send(b"whole")?;
            let mut raw = tx.get_ref().ok_or("closed")?;
            let mut partial = FrameHeader::data(100).to_bytes().to_vec();
            partial.extend_from_slice(&[7; 10]);
            raw.write_all(&partial)?;
            std::process::exit(0);
        }
        Mode::FloodStdio => {
            let (mut tx, _rx) = stdio::from_process_stdio()?;
            let msg = vec![0x5a; 4096];
            loop {
                match tx.send(&msg) {
                    Ok(()) => {}
                    Err(TransportSendError::PeerReset) => std::process::exit(3),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Mode::CloseStdout => {
            let (mut tx, mut rx) = stdio::from_process_stdio()?;
            tx.send(b"bye")?;
            tx.close()?;
            drop(tx);
            while rx.recv().is_ok() {}
            Ok(())
        }
        Mode::TakeRedisStream => {
            let addr = args.addr.as_deref().ok_or("this mode needs --addr")?;
            let (url, key) = split_addr(addr).ok_or("--addr must be redis://host:port/KEY")?;
            let name = args.name.as_deref().ok_or("this mode needs --name")?;
            let opts = ringwire::transport::redis::Options { max_message: args.max_message, ..Default::default() };
            let mut rx = StreamConsumer::with_options(&url, &key, "ringwire", name, opts)?;
            rx.set_claim_idle(None);
            let msg = rx.recv()?;
            say(&format!("got {}", String::from_utf8_lossy(&msg)));
            park_forever()
        }
        Mode::TakeAmqp => {
            let addr = args.addr.as_deref().ok_or("this mode needs --addr")?;
            let count = args.count.ok_or("this mode needs --count")?;
            let opts = amqp::Options { max_message: args.max_message, prefetch: count, ..Default::default() };
            let mut rx = amqp::Consumer::with_options(addr, opts)?;
            rx.set_ack_mode(amqp::AckMode::Manual);
            for _ in 0..count {
                rx.recv()?;
            }
            say(&format!("got {count}"));
            park_forever()
        }
        Mode::EchoJsonFork => {
            let (mut tx, mut rx) = fork::from_env()?;
            loop {
                let v: serde_json::Value = match recv_json(&mut rx) {
                    Err(JsonError::Recv(TransportRecvError::PeerGone)) => return Ok(()),
                    r => r?,
                };
                send_json(&mut tx, &serde_json::json!({ "got": v }))?;
            }
        }
    }
}
