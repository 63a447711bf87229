//! ringwire: lock-free shared-memory rings for latency-sensitive programs.
//!
//! The crate is layered; each layer uses only those before it (checked by `scripts/layers.py`; see
//! ARCHITECTURE.md, "Layers"):
//!
//! 1. `sync` (private): the atomics / futex facade, swapped for loom under `cfg(ringwire_loom)`.
//! 2. [`wire`] (the 8-byte frame header), [`process`] (child processes, descriptor passing) and [`wait`]
//!    (spin / yield / futex strategies and the sleep-wake protocol).
//! 3. [`ring`]: the ring algorithms ([`spsc`], [`mpmc`], [`broadcast`]), generic over a
//!    [`Storage`](ring::Storage), and their attach errors.
//! 4. [`shm`]: memory regions (named `/dev/shm` files, sealed memfds, role locks) and [`OpenError`].
//! 5. `transport` (feature `transport`; `websocket`, `redis`, `json` add to it): one `Sender` /
//!    `Receiver` interface over the ring, pipes, sockets, UDP, child stdio, inherited socketpairs,
//!    WebSocket and Redis, and the stream codec; with feature `tokio`, `transport::tokio`: the stream,
//!    UDP and (feature `tokio-websocket`) WebSocket adapters as async halves on tokio's I/O types.
//!
//! Beside them, `events` (feature `events`): Node's `EventEmitter` in one process, a leaf that uses
//! no other layer; and above the transports and rings, `socket` (feature `events`): named events on
//! the wire (the frame header's `ext`), typed payloads, a duplex `Socket` that dispatches to an
//! `EventEmitter`, acknowledgements. Above that, `hub` (feature `hub`): socket.io's model (rooms,
//! broadcasts, acks, server push) over WebSocket, on tokio.
//!
//! With default features the crate is the rings and nothing else (its dependencies: crossbeam-utils,
//! libc, memmap2, thiserror). The `ringwire` command is the separate `ringwire-cli` crate.
//!
//! # In one process (threads)
//!
//! ```
//! let (mut tx, mut rx) = ringwire::spsc::channel(ringwire::RingConfig::default())?;
//! std::thread::spawn(move || tx.send(b"hello").unwrap());
//! assert_eq!(&*rx.recv()?, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Across processes
//!
//! See [`ShmRing`]: create a named ring (or an anonymous memfd one that a child inherits), attach a
//! producer on one side and a consumer on the other.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

pub(crate) mod sync;

#[cfg(feature = "events")]
pub mod events;
#[cfg(feature = "hub")]
pub mod hub;

pub mod process;
#[cfg(feature = "tokio")]
pub mod reactor;
pub mod ring;
pub mod shm;
#[cfg(feature = "events")]
pub mod socket;
#[cfg(feature = "transport")]
pub mod transport;
pub mod wait;
pub mod wire;

pub use ring::{broadcast, mpmc, spsc};
pub use ring::{AttachError, Commit, ErrorKind, RingError, RingReceiver, RingSender};
pub use ring::{ConfigError, RingConfig, RingKind, Role};
pub use shm::{ShmBroadcast, ShmOptions, ShmQueue, ShmRing};
pub use wait::WaitStrategy;

pub use shm::OpenError;
