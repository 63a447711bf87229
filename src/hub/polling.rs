//! HTTP long-polling (the WebSocket-less fallback): what a polling session holds, and how a request
//! body of several frames is split. The HTTP handlers are in `server.rs`.
//!
//! A poll carries the same frames as a WebSocket message, concatenated (each frame says its length).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use super::conn::{ConnShared, Push};
use super::protocol::{self, FrameError, WireEvent};
use crate::wire::HEADER_LEN;

/// A polling connection's state between its requests.
pub(crate) struct PollSession {
    /// The polling session's id (secret: it is what a poll or a post presents).
    pub pid: Arc<str>,
    pub conn: Arc<ConnShared>,
    /// The connection's slot under the cap, held while polling, handed to the WebSocket on upgrade.
    pub slot: std::sync::Mutex<Option<super::conn::Slot>>,
    /// The connection's queue; a GET drains it (one GET at a time holds it). `None` once a WebSocket
    /// took it over.
    pub rx: tokio::sync::Mutex<Option<mpsc::Receiver<Push>>>,
    /// Asked to upgrade: a waiting GET returns at once.
    pub upgrading: Notify,
    /// A WebSocket took the connection over: the polling side no longer ends it.
    pub upgraded: AtomicBool,
    /// The heartbeat's pong arrived in a POST.
    pub pong: Notify,
    /// Held while a POST of this session is read and dispatched (a second one gets 409).
    pub posting: tokio::sync::Mutex<()>,
}

/// Splits a POST body into frames and decodes each; every length is read once and checked against
/// what is left.
pub(crate) fn split(body: Bytes) -> Result<Vec<WireEvent>, FrameError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let rest = body.len() - at;
        if rest < HEADER_LEN {
            return Err(FrameError::Short(rest));
        }
        let len = u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]) as usize;
        if len > rest - HEADER_LEN {
            return Err(FrameError::Length { header: len as u32, actual: rest - HEADER_LEN });
        }
        out.push(protocol::decode(body.slice(at..at + HEADER_LEN + len))?);
        at += HEADER_LEN + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_takes_frames_in_order_and_refuses_any_damage_without_panicking() {
        let mut body = Vec::new();
        for (n, b) in [("a", &b"1"[..]), ("bb", b""), ("c", b"{\"x\":2}")] {
            body.extend_from_slice(&protocol::encode(n, b));
        }
        let evs = split(Bytes::from(body.clone())).unwrap();
        assert_eq!(evs.iter().map(|e| e.name().to_owned()).collect::<Vec<_>>(), ["a", "bb", "c"]);
        // Every truncation and every single-byte change: an error or frames, never a panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for cut in 0..body.len() {
            let _ = split(Bytes::copy_from_slice(&body[..cut]));
        }
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = body.clone();
            let at = (x as usize) % b.len();
            b[at] = (x >> 32) as u8;
            let _ = split(Bytes::from(b));
        }
    }
}
