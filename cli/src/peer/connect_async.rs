//! The parent side of [`connect`](super::connect) for the async transports (`ringwire::transport::tokio`):
//! starts the same peer processes (blocking `ringwire __peer` / `ringwire-testpeer` echo and sink
//! peers, reached exactly as the blocking adapters reach them) and connects to them with the async
//! halves. Used by `ringwire bench`'s `+async` rows and `tests/async_conformance.rs`. Needs a tokio
//! runtime with I/O and time enabled.

use super::args::Adapter;
use super::connect::{PeerProcess, WS_PATH};
use ringwire::transport::tokio::{pipe, stdio, tcp, udp, unix, websocket, AsyncReceiver, AsyncSender};
use ringwire::transport::{RecvFrame, TransportRecvError, TransportSendError};
use std::io;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long a UDP peer may take to announce its address.
const HELLO: Duration = Duration::from_secs(30);

/// Any async sending half, so that one test body or bench row serves every adapter.
#[derive(Debug)]
pub enum AnySender {
    /// TCP.
    Tcp(tcp::TcpSender),
    /// A Unix stream socket.
    Unix(unix::UnixSender),
    /// A pipe: a FIFO, or the child's stdin.
    Pipe(pipe::PipeSender),
    /// UDP.
    Udp(udp::AsyncUdpSender),
    /// WebSocket.
    Ws(websocket::AsyncWsSender),
}

/// Any async receiving half.
#[derive(Debug)]
pub enum AnyReceiver {
    /// TCP.
    Tcp(tcp::TcpReceiver),
    /// A Unix stream socket.
    Unix(unix::UnixReceiver),
    /// A pipe: a FIFO, or the child's stdout.
    Pipe(pipe::PipeReceiver),
    /// UDP.
    Udp(udp::AsyncUdpReceiver),
    /// WebSocket.
    Ws(websocket::AsyncWsReceiver),
}

macro_rules! each {
    ($e:expr, $h:ident => $body:expr) => {
        match $e {
            AnySender::Tcp($h) => $body,
            AnySender::Unix($h) => $body,
            AnySender::Pipe($h) => $body,
            AnySender::Udp($h) => $body,
            AnySender::Ws($h) => $body,
        }
    };
}

macro_rules! each_rx {
    ($e:expr, $h:ident => $body:expr) => {
        match $e {
            AnyReceiver::Tcp($h) => $body,
            AnyReceiver::Unix($h) => $body,
            AnyReceiver::Pipe($h) => $body,
            AnyReceiver::Udp($h) => $body,
            AnyReceiver::Ws($h) => $body,
        }
    };
}

impl AsyncSender for AnySender {
    async fn send_frame(&mut self, ext: u16, parts: &[&[u8]]) -> Result<(), TransportSendError> {
        each!(self, h => h.send_frame(ext, parts).await)
    }
    async fn send_buffered(&mut self, msg: &[u8]) -> Result<(), TransportSendError> {
        each!(self, h => h.send_buffered(msg).await)
    }
    async fn flush(&mut self) -> Result<(), TransportSendError> {
        each!(self, h => h.flush().await)
    }
    async fn close(&mut self) -> Result<(), TransportSendError> {
        each!(self, h => h.close().await)
    }
    fn max_message(&self) -> usize {
        each!(self, h => h.max_message())
    }
}

impl AsyncReceiver for AnyReceiver {
    async fn recv_frame(&mut self) -> Result<RecvFrame, TransportRecvError> {
        each_rx!(self, h => h.recv_frame().await)
    }
    async fn recv_frame_into_vec(&mut self, buf: &mut Vec<u8>) -> Result<u16, TransportRecvError> {
        each_rx!(self, h => h.recv_frame_into_vec(buf).await)
    }
    fn close(&mut self) {
        each_rx!(self, h => h.close())
    }
    fn max_message(&self) -> usize {
        each_rx!(self, h => h.max_message())
    }
}

/// An async transport connected to a peer process.
pub struct AsyncPeerConn {
    /// Our sending half.
    pub tx: AnySender,
    /// Our receiving half.
    pub rx: AnyReceiver,
    /// The peer.
    pub peer: PeerProcess,
    /// UDP: no clean close, no connection to lose.
    pub datagram: bool,
}

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("ringwire-apeer-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Whether the async transports have a form of `adapter` (stream, datagram and WebSocket ones).
pub fn supports(adapter: Adapter) -> bool {
    matches!(
        adapter,
        Adapter::Stdio
            | Adapter::Fifo
            | Adapter::Unix
            | Adapter::UnixAbstract
            | Adapter::Tcp
            | Adapter::Udp
            | Adapter::Websocket
    )
}

/// Starts `cmd` (a peer command line whose `PeerArgs` name `adapter`, without `--addr`) and connects to
/// it over the async form of `adapter`, as [`connect`](super::connect::connect) does with the blocking
/// one (the peer is the same and blocks).
pub async fn connect(mut cmd: Command, adapter: Adapter) -> io::Result<AsyncPeerConn> {
    let spawn_at = |cmd: &mut Command, addr: &str| -> io::Result<PeerProcess> {
        Ok(PeerProcess::Std(cmd.args(["--addr", addr]).stdin(Stdio::null()).spawn()?))
    };
    let conn = |tx, rx, peer| AsyncPeerConn { tx, rx, peer, datagram: false };
    Ok(match adapter {
        Adapter::Stdio => {
            let (tx, rx, child) = stdio::spawn(&mut cmd)?;
            conn(AnySender::Pipe(tx), AnyReceiver::Pipe(rx), PeerProcess::Ours(child))
        }
        Adapter::Fifo => {
            let dir = std::env::temp_dir().join(unique("fifo"));
            std::fs::create_dir(&dir)?;
            ringwire::transport::pipe::create_fifo(dir.join("down"))?;
            ringwire::transport::pipe::create_fifo(dir.join("up"))?;
            let peer = spawn_at(&mut cmd, dir.to_str().ok_or_else(|| io::Error::other("temp dir is not UTF-8"))?)?;
            // The peer opens down for reading, then up for writing: the same order here. Opening a FIFO
            // waits for the other end: blocking opens, off the runtime's thread.
            let d = dir.clone();
            let (down, up) = tokio::task::spawn_blocking(move || -> io::Result<_> {
                let down = std::fs::OpenOptions::new().write(true).open(d.join("down"))?;
                let up = std::fs::OpenOptions::new().read(true).open(d.join("up"))?;
                Ok((down, up))
            })
            .await
            .map_err(io::Error::other)??;
            std::fs::remove_dir_all(&dir)?; // open FIFOs outlive their names
            let (tx, rx) = (pipe::sender_from_fd(down)?, pipe::receiver_from_fd(up)?);
            conn(AnySender::Pipe(tx), AnyReceiver::Pipe(rx), peer)
        }
        Adapter::Unix => {
            let path = std::env::temp_dir().join(unique("sock"));
            let listener = unix::Listener::bind(&path)?;
            let peer = spawn_at(&mut cmd, path.to_str().ok_or_else(|| io::Error::other("temp dir is not UTF-8"))?)?;
            let (tx, rx) = listener.accept().await?;
            conn(AnySender::Unix(tx), AnyReceiver::Unix(rx), peer)
        }
        Adapter::UnixAbstract => {
            let name = unique("abstract");
            let listener = unix::Listener::bind_abstract(name.as_bytes())?;
            let peer = spawn_at(&mut cmd, &name)?;
            let (tx, rx) = listener.accept().await?;
            conn(AnySender::Unix(tx), AnyReceiver::Unix(rx), peer)
        }
        Adapter::Tcp => {
            let listener = tcp::Listener::bind("127.0.0.1:0").await?;
            let peer = spawn_at(&mut cmd, &listener.local_addr()?.to_string())?;
            let (tx, rx, _) = listener.accept().await?;
            conn(AnySender::Tcp(tx), AnyReceiver::Tcp(rx), peer)
        }
        Adapter::Udp => {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            let peer = spawn_at(&mut cmd, &sock.local_addr()?.to_string())?;
            // The peer's first datagram tells us its address.
            let mut hello = [0u8; 64];
            let (_, from) = tokio::time::timeout(HELLO, sock.recv_from(&mut hello))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the UDP peer did not say hello"))??;
            sock.connect(from).await?;
            let (tx, rx) = udp::from_socket(sock)?;
            AsyncPeerConn { datagram: true, ..conn(AnySender::Udp(tx), AnyReceiver::Udp(rx), peer) }
        }
        Adapter::Websocket => {
            let listener = websocket::Listener::bind("127.0.0.1:0", WS_PATH).await?;
            let peer = spawn_at(&mut cmd, &listener.url()?)?;
            let (tx, rx, _) = listener.accept().await?;
            conn(AnySender::Ws(tx), AnyReceiver::Ws(rx), peer)
        }
        other => return Err(io::Error::new(io::ErrorKind::Unsupported, format!("no async form of {other:?}"))),
    })
}
