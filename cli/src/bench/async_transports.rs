//! `tcp+async`, `unix+async`, `udp+async`, `websocket+async`: the `tcp`, `unix`, `udp` and `websocket`
//! rows with this side on the async transports (`ringwire::transport::tokio`, a current-thread tokio
//! runtime) instead of the blocking ones; the peer is the same blocking echo or sink process, with
//! the `block` wait, reached by [`crate::peer::connect_async`]. What awaiting costs: each reply is
//! awaited (the task parks; epoll wakes the runtime's thread), where the blocking row sleeps in
//! `poll(2)`. The row's `raw_ratio` is its ratio to the blocking row of the same wait in the same run.

use super::plan::peer_process;
use super::transports::window;
use crate::peer::connect_async::{self, AsyncPeerConn};
use crate::peer::{Adapter, PeerArgs, PeerMode};
use crate::util::{base_payload, stamp, verify, CliResult};
use hdrhistogram::Histogram;
use ringwire::transport::tokio::{AsyncReceiver, AsyncSender};
use std::time::{Duration, Instant};
use tokio::time::timeout;

/// The rows measured here, in table order.
pub const NAMES: &[&str] = &["unix+async", "tcp+async", "udp+async", "websocket+async"];

/// A peer that does not answer for this long has failed (no row waits forever).
const STALL: Duration = Duration::from_secs(10);

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

async fn connect(transport: &str, mode: PeerMode, size: usize, count: u64) -> CliResult<AsyncPeerConn> {
    let adapter = match transport {
        "unix+async" => Adapter::Unix,
        "tcp+async" => Adapter::Tcp,
        "udp+async" => Adapter::Udp,
        "websocket+async" => Adapter::Websocket,
        other => return Err(format!("no async transport row {other}").into()),
    };
    let args =
        PeerArgs { size, count, max_message: size + 64, wait: "block".into(), ..PeerArgs::transport(mode, adapter) };
    Ok(timeout(STALL, connect_async::connect(peer_process(&args)?, adapter))
        .await
        .map_err(|_| "peer did not connect")??)
}

/// Round trips through an echo peer: `warmup + samples` messages, the last `samples` recorded.
pub fn rtt(transport: &str, size: usize, warmup: u64, samples: u64, h: &mut Histogram<u64>) -> CliResult {
    runtime()?.block_on(async {
        let mut c = connect(transport, PeerMode::Echo, size, 0).await?;
        let base = base_payload(size);
        let mut msg = base.clone();
        for i in 0..warmup + samples {
            stamp(&mut msg, &base, i);
            let t0 = Instant::now();
            let round = async {
                c.tx.send(&msg).await?;
                CliResult::Ok(c.rx.recv().await?)
            };
            let reply = timeout(STALL, round).await.map_err(|_| format!("{transport}: the echo peer stalled"))??;
            let dt = t0.elapsed().as_nanos() as u64;
            if !verify(&reply, &base, i) {
                return Err(format!("{transport} echo returned a wrong message at {i}").into());
            }
            if i >= warmup {
                h.saturating_record(dt);
            }
        }
        c.tx.close().await?;
        Ok(())
    })
}

/// One-way stream of `count` messages into a sink peer, at most `window` unacknowledged, as the
/// blocking rows do (`transports::stream`); returns the time from the first send to the sink's verdict.
pub fn stream(transport: &str, size: usize, count: u64) -> CliResult<Duration> {
    runtime()?.block_on(async {
        let mut c = connect(transport, PeerMode::Sink, size, count).await?;
        let base = base_payload(size);
        let mut msg = base.clone();
        let mut acked = 0u64;
        let window = window(size, c.datagram);
        let t0 = Instant::now();
        let run = async {
            for i in 0..count {
                while i - acked >= window {
                    let ack = c.rx.recv().await?;
                    acked = u64::from_le_bytes(ack.as_slice().try_into().map_err(|_| "bad acknowledgement")?);
                }
                stamp(&mut msg, &base, i);
                c.tx.send(&msg).await?;
            }
            loop {
                let m = c.rx.recv().await?;
                if m.len() != 8 {
                    break CliResult::Ok(m);
                }
            }
        };
        // The whole run is bounded: a lost datagram or a dead sink is an error, not a hang.
        let limit = STALL + Duration::from_micros(count.saturating_mul(100));
        let verdict = timeout(limit, run).await.map_err(|_| format!("{transport}: the sink stalled"))??;
        let elapsed = t0.elapsed();
        c.tx.close().await?;
        if verdict != b"ok" {
            return Err(format!("{transport} sink saw a wrong message").into());
        }
        Ok(elapsed)
    })
}
