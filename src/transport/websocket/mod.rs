//! WebSocket (RFC 6455, `ws://` only) over tungstenite's synchronous API: a [`Listener`] that accepts
//! clients on one path, and [`connect`] for a client. Each message is one binary WebSocket message
//! carrying exactly one frame (8-byte header and payload, as in a UDP datagram).
//!
//! # One socket, two halves
//!
//! A connection's [`WsSender`] and [`WsReceiver`] share the tungstenite `WebSocket` behind an
//! `Arc<Mutex<..>>`. The socket is non-blocking: every operation takes the lock, does what the socket
//! allows without waiting, releases the lock, and waits with `poll(2)` on its own duplicate of the
//! descriptor. So a receive blocked for a message never holds up a send on the other half, deadlines are
//! exact (as on the stream adapters), and no thread is needed per connection. (A per-connection I/O
//! thread would also work, but costs a thread and a hand-off per message, and still needs the same
//! deadline and back-pressure rules.) Both halves are `Send`.
//!
//! # Limits
//!
//! * **Message size.** A sender refuses a message larger than [`Options::max_message`] with
//!   [`Oversize`](crate::transport::TransportSendError::Oversize) (nothing sent). tungstenite's `max_message_size` and
//!   `max_frame_size` are set to the frame's size (`max_message + 8`), so a larger incoming WebSocket
//!   message is refused while its header is read, before its payload is buffered: the receive returns
//!   [`BadFrame(Oversize)`](crate::transport::codec::FrameError::Oversize), and the connection is closed with code
//!   1009 (the rest of that message can't be skipped; later calls return `PeerReset`). A WebSocket message
//!   within the limit that is not exactly one valid frame is `BadFrame` for that message alone: each
//!   message stands alone, the receiver stays usable.
//! * **Outgoing queue.** Once the socket's kernel buffer is full, messages queue in tungstenite's write
//!   buffer, bounded by [`Options::max_queued`] bytes. When a message does not fit, `try_send` returns
//!   `WouldBlock`, `send_deadline` waits until its deadline (`Timeout`) and `send` waits — but a peer that
//!   accepts no byte for [`Options::stall_timeout`] is disconnected, and the send returns `PeerReset`.
//!   Memory per connection is therefore bounded whatever the peer does.
//!
//! # Keepalive
//!
//! While a receive waits, it wakes up to keep the connection checked: after [`Options::ping_interval`]
//! without hearing anything from the peer it sends a ping, and if nothing (pong or anything else) arrives
//! within [`Options::ping_timeout`] of that ping, the connection is closed and the receive returns
//! [`PeerReset`](crate::transport::TransportRecvError::PeerReset). A dead or frozen peer is noticed within
//! `ping_interval + ping_timeout` of the last thing it sent. Pings the peer sends are answered by
//! tungstenite as they are read. Nothing checks the peer while no receive is running.
//!
//! # Closing
//!
//! [`Sender::close`](crate::transport::Sender::close) flushes, then sends a Close frame; the peer's receiver sees `PeerGone` after the last
//! message, and our receiver gets every message the peer sent before its Close reply, then `PeerGone`.
//! A Close from the peer (code 1000 "normal", 1001 "going away" or none) is `PeerGone` for our receiver
//! and, from then on, for our sender; a Close with an error code (1009 "too big", 1002 "protocol error",
//! ...) and a connection that ends without a close handshake (a killed peer) are `PeerReset`. When both halves are dropped the
//! connection is closed (a Close frame if none was sent, then the socket).

mod conn;
mod halves;
pub(crate) mod handshake;

pub use halves::{WsReceiver, WsSender};
pub use handshake::{accept, connect, connect_with, Listener};

use crate::transport::DEFAULT_MAX_MESSAGE;
use crate::wire::HEADER_LEN;
use std::io;
use std::time::Duration;
use tungstenite::protocol::WebSocketConfig;

/// Limits and timers of a WebSocket connection.
#[derive(Clone, Debug)]
pub struct Options {
    /// The largest message, not counting the 8-byte frame header. Default [`DEFAULT_MAX_MESSAGE`].
    pub max_message: usize,
    /// Send a ping after this long without hearing from the peer (while a receive waits). `None`: never.
    /// Default 15 s.
    pub ping_interval: Option<Duration>,
    /// Close the connection if nothing arrives within this long of a ping. Default 15 s.
    pub ping_timeout: Duration,
    /// Disconnect a peer that accepts no byte of our queued output for this long. Default 30 s.
    pub stall_timeout: Duration,
    /// The most bytes queued in user space for sending (beyond the kernel's socket buffer). At least one
    /// whole largest message is always allowed. Default 1 MiB.
    pub max_queued: usize,
    /// Longest wait for the opening handshake (both sides). Default 10 s.
    pub handshake_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_message: DEFAULT_MAX_MESSAGE,
            ping_interval: Some(Duration::from_secs(15)),
            ping_timeout: Duration::from_secs(15),
            stall_timeout: crate::transport::DEFAULT_STALL_TIMEOUT,
            max_queued: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Options {
    pub(crate) fn config(&self) -> WebSocketConfig {
        let frame = self.max_message + HEADER_LEN;
        // One WebSocket frame header is at most 14 bytes.
        let queue = self.max_queued.max(frame + 14);
        WebSocketConfig::default()
            .max_message_size(Some(frame))
            .max_frame_size(Some(frame))
            .write_buffer_size(0)
            .max_write_buffer_size(queue)
            .read_buffer_size(64 << 10)
    }
}

/// Splits `ws://host[:port]/path` into `host:port` (port 80 if none) and the path (`/` if none).
pub fn parse_url(url: &str) -> io::Result<(String, String)> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{url:?}: {why}"));
    let uri: tungstenite::http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => return Err(bad("wss:// (TLS) is not supported")),
        _ => return Err(bad("expected ws://host:port/path")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    let hostport =
        if authority.port_u16().is_some() { authority.as_str().to_string() } else { format!("{}:80", authority) };
    let path = match uri.path() {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    Ok((hostport, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("ws://127.0.0.1:9000/x/y").unwrap(), ("127.0.0.1:9000".into(), "/x/y".into()));
        assert_eq!(parse_url("ws://localhost").unwrap(), ("localhost:80".into(), "/".into()));
        assert!(parse_url("wss://h:1/").is_err());
        assert!(parse_url("http://h:1/").is_err());
        assert!(parse_url("nonsense").is_err());
    }
}
