//! The reading end of an SPSC ring: polling the record header at the head, head publication in batches,
//! read guards.

use super::*;
use crate::ring::error::{AttachError, Corruption};
use crate::ring::fence_mode;
use crate::ring::{check_kind, endpoint, Role, RoleToken, Storage};
use crate::sync::Ordering;
use crate::wait::DEFAULT_LIVENESS;
use crate::wait::{wait_for, Poll, WaitStrategy};
use crate::wire::{record_len, FrameHeader, Kind, HEADER_LEN};
use std::time::{Duration, Instant};

/// The reading end of an SPSC ring.
pub struct Consumer<S: Storage> {
    storage: S,
    st: ConsumerState,
    wait: WaitStrategy,
    liveness: Duration,
    _token: RoleToken,
}

/// The consumer's process-local state.
struct ConsumerState {
    data: *mut u8,
    /// `storage.control()`, taken at attach (see `control_at`).
    control: *const Control,
    capacity: u64,
    mask: usize,
    max_message: usize,
    /// Our read position (start of the next record to read).
    head: u64,
    /// The head value last stored to shared memory; the producer may write up to `published + capacity`.
    published: u64,
    /// Publish `head` once it is this many bytes past `published`.
    batch: u64,
    poisoned: Option<Corruption>,
    asymmetric: bool,
}

// SAFETY: as for Producer: the consumer only reads bytes that the protocol hands to it.
unsafe impl<S: Storage> Send for Consumer<S> {}

impl<S: Storage> Consumer<S> {
    /// Attaches as the consumer of the ring in `storage`. Fails if another consumer is attached and alive.
    /// A consumer that re-attaches after a crash resumes at the last published head: a message that the
    /// dead consumer was reading (or had read but not yet published) is delivered again.
    pub fn attach(storage: S) -> Result<Self, AttachError> {
        let asymmetric = fence_mode(&storage)?;
        let token = {
            check_kind::<Control, _>(&storage)?;
            claim(&storage, Role::Consumer)?
        };
        let cfg = storage.config();
        let control = storage.control::<Control>();
        control.data_ready.reset_sleepers();
        // Relaxed: we are the only writer of head; this just reads back the last published value.
        let head = control.head.load(Ordering::Relaxed);
        if head % 8 != 0 {
            return Err(AttachError::Corrupt(Corruption { at: head, what: "misaligned head" }));
        }
        control.pid(Role::Consumer).store(std::process::id(), Ordering::Relaxed);
        // Release: a producer that sees ATTACHED also sees the pid.
        control.state(Role::Consumer).store(endpoint::ATTACHED, Ordering::Release);
        Ok(Consumer {
            st: ConsumerState {
                data: storage.data(),
                control: std::ptr::from_ref(control),
                capacity: cfg.capacity as u64,
                mask: cfg.capacity - 1,
                max_message: cfg.max_message,
                head,
                published: head,
                batch: (cfg.capacity / 16) as u64,
                poisoned: None,
                asymmetric,
            },
            storage,
            wait: WaitStrategy::default(),
            liveness: DEFAULT_LIVENESS,
            _token: token,
        })
    }

    /// Chooses how blocking calls wait for messages.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }

    /// How often a blocked call checks that the producer is still alive (default 50 ms).
    pub fn set_liveness_interval(&mut self, every: Duration) {
        self.liveness = every;
    }

    /// The largest payload this ring carries.
    pub fn max_message(&self) -> usize {
        self.st.max_message
    }

    /// Takes the next message without blocking. The message stays in the ring (zero-copy) until the
    /// guard is dropped.
    #[inline]
    pub fn try_recv(&mut self) -> Result<ReadGuard<'_, S>, RecvError> {
        let (off, len) = self.try_recv_at()?;
        Ok(self.guard(off, len))
    }

    /// Takes the next message, waiting as long as it takes.
    #[inline]
    pub fn recv(&mut self) -> Result<ReadGuard<'_, S>, RecvError> {
        let (off, len) = self.recv_at(None)?;
        Ok(self.guard(off, len))
    }

    /// Takes the next message, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_, S>, RecvError> {
        let (off, len) = self.recv_at(Instant::now().checked_add(timeout))?;
        Ok(self.guard(off, len))
    }

    /// Takes the next message, waiting until `deadline`.
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<ReadGuard<'_, S>, RecvError> {
        let (off, len) = self.recv_at(Some(deadline))?;
        Ok(self.guard(off, len))
    }

    /// Copies the next message into `buf` (waiting as long as it takes) and returns its length. If `buf`
    /// is too small the message stays in the ring and [`RecvError::BufferTooSmall`] says how much is needed.
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let (off, len) = self.recv_at(None)?;
        if len > buf.len() {
            return Err(RecvError::BufferTooSmall { needed: len });
        }
        let msg = self.guard(off, len);
        buf[..len].copy_from_slice(&msg);
        Ok(len)
    }

    /// Like [`recv_into`](Self::recv_into) without blocking.
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let (off, len) = self.try_recv_at()?;
        if len > buf.len() {
            return Err(RecvError::BufferTooSmall { needed: len });
        }
        let msg = self.guard(off, len);
        buf[..len].copy_from_slice(&msg);
        Ok(len)
    }

    /// Receives the next message into a new `Vec` (waiting as long as it takes).
    pub fn recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        Ok(self.recv()?.to_vec())
    }

    /// Closes the consuming end: the producer's next send fails with [`SendError::PeerGone`].
    /// Dropping the consumer does the same.
    pub fn close(self) {}

    #[inline]
    fn guard(&mut self, off: usize, len: usize) -> ReadGuard<'_, S> {
        self.storage.note_read(off + HEADER_LEN, len);
        ReadGuard { consumer: self, off, len }
    }

    #[inline]
    fn try_recv_at(&mut self) -> Result<(usize, usize), RecvError> {
        try_recv_at(&self.storage, &mut self.st)
    }

    fn recv_at(&mut self, deadline: Option<Instant>) -> Result<(usize, usize), RecvError> {
        match self.try_recv_at() {
            Err(RecvError::Empty) => {}
            r => return r,
        }
        wait_for(
            &self.storage.control::<Control>().data_ready,
            None,
            params(self.wait, self.liveness, deadline, self.st.asymmetric),
            || match try_recv_at(&self.storage, &mut self.st) {
                Err(RecvError::Empty) => Poll::Pending,
                r => Poll::Ready(r),
            },
            || producer_gone(&self.storage),
            || RecvError::Timeout,
        )
    }
}

#[cfg(feature = "tokio")]
impl<S: Storage> Consumer<S> {
    /// Takes the next message, waiting without blocking the thread: the future completes when the
    /// producer commits one (woken through the ring's own wake-up, see `ringwire::reactor`), or with
    /// the error a blocking [`recv`](Self::recv) would return: `PeerGone` once the producer has closed
    /// and everything it sent was read, `PeerReset` if its process died, `Corrupt`.
    ///
    /// Cancel-safe: a message is taken only in the poll that completes the future, so a future
    /// dropped before that (a `select!` branch that lost, a `timeout`) loses no message; the next
    /// receive gets it.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (mut tx, mut rx) = ringwire::spsc::channel(ringwire::RingConfig::default())?;
    /// let producer = tokio::task::spawn_blocking(move || tx.send(b"hello"));
    /// assert_eq!(&*rx.recv_async().await?, b"hello");
    /// producer.await??;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn recv_async(&mut self) -> Result<ReadGuard<'_, S>, RecvError> {
        let (off, len) = self.recv_at_async().await?;
        Ok(self.guard(off, len))
    }

    /// Receives the next message into a new `Vec`, waiting without blocking the thread (see
    /// [`recv_async`](Self::recv_async); cancel-safe likewise).
    pub async fn recv_vec_async(&mut self) -> Result<Vec<u8>, RecvError> {
        Ok(self.recv_async().await?.to_vec())
    }

    /// Copies the next message into `buf`, waiting without blocking the thread (see
    /// [`recv_async`](Self::recv_async); cancel-safe likewise). A message longer than `buf` stays in
    /// the ring ([`RecvError::BufferTooSmall`]).
    pub async fn recv_into_async(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let (off, len) = self.recv_at_async().await?;
        if len > buf.len() {
            return Err(RecvError::BufferTooSmall { needed: len });
        }
        let msg = self.guard(off, len);
        buf[..len].copy_from_slice(&msg);
        Ok(len)
    }

    async fn recv_at_async(&mut self) -> Result<(usize, usize), RecvError> {
        match self.try_recv_at() {
            Err(RecvError::Empty) => {}
            r => return r,
        }
        let storage = &self.storage;
        let st = &mut self.st;
        let cell = &storage.control::<Control>().data_ready;
        let mut w = crate::reactor::AsyncWait::new(cell, None, st.asymmetric, self.liveness);
        std::future::poll_fn(|cx| {
            w.poll(
                cx,
                &mut *st,
                |st| match try_recv_at(storage, st) {
                    Err(RecvError::Empty) => Poll::Pending,
                    r => Poll::Ready(r),
                },
                |_| producer_gone(storage),
            )
        })
        .await
    }
}

// SAFETY: `data` points into the consumer's storage; the state moves with its handle (see `Consumer`'s
// Send), and the async futures hold it only through that handle's `&mut` borrow.
unsafe impl Send for ConsumerState {}

impl ConsumerState {
    /// Finds the next message: `Some((header offset, payload length))`, or `None` if nothing is committed
    /// at our position (after publishing our head, so that a producer waiting for space can go on).
    #[inline]
    fn poll<S: Storage>(&mut self, storage: &S) -> Result<Option<(usize, usize)>, RecvError> {
        if let Some(c) = self.poisoned {
            return Err(RecvError::Corrupt(c));
        }
        loop {
            let off = (self.head as usize) & self.mask;
            // SYNC POINT: Acquire pairs with the producer's Release store of this header (commit_at, or the
            // pad in try_reserve_at): the payload and the terminator after the record are visible.
            let word = word_at(storage, self.data, off).load(Ordering::Acquire);
            if word == 0 {
                if self.head != self.published {
                    self.publish_head(storage);
                }
                return Ok(None);
            }
            let to_end = self.capacity - off as u64;
            let hdr = match FrameHeader::from_word(word) {
                Ok(h) => h,
                Err(_) => return Err(self.poison("bad record header")),
            };
            let rec = match hdr.kind {
                Kind::Pad if hdr.len as u64 + HEADER_LEN as u64 == to_end => to_end,
                Kind::Pad => return Err(self.poison("padding record does not end at the end of the ring")),
                Kind::Data if hdr.len as usize > self.max_message => {
                    return Err(self.poison("message length exceeds the ring maximum"))
                }
                Kind::Data => record_len(hdr.len as usize) as u64,
            };
            if rec > to_end {
                return Err(self.poison("record crosses the end of the ring"));
            }
            // The producer can't have written more than one capacity past what we published.
            if self.head + rec - self.published > self.capacity {
                return Err(self.poison("records overrun the published head"));
            }
            if hdr.kind == Kind::Pad {
                self.head += rec;
                continue;
            }
            return Ok(Some((off, hdr.len as usize)));
        }
    }

    #[cold]
    fn poison(&mut self, what: &'static str) -> RecvError {
        let c = Corruption { at: self.head, what };
        self.poisoned = Some(c);
        RecvError::Corrupt(c)
    }

    #[inline]
    fn release<S: Storage>(&mut self, storage: &S, len: usize) {
        self.head += record_len(len) as u64;
        if self.head - self.published >= self.batch {
            self.publish_head(storage);
        }
    }

    fn publish_head<S: Storage>(&mut self, storage: &S) {
        let control = control_at(storage, self.control);
        // SYNC POINT: Release: our reads of everything before `head` happen-before the producer's Acquire
        // load of it (try_reserve_at), after which it overwrites that space.
        control.head.store(self.head, Ordering::Release);
        self.published = self.head;
        control.space_ready.notify(self.asymmetric);
    }
}

/// One non-blocking receive attempt: `(header offset, payload length)` of the next message.
#[inline]
fn try_recv_at<S: Storage>(storage: &S, st: &mut ConsumerState) -> Result<(usize, usize), RecvError> {
    match st.poll(storage)? {
        Some(r) => Ok(r),
        None => match producer_closed_flag(storage) {
            // Look again after seeing CLOSED: its Acquire load makes every commit visible.
            true => st.poll(storage)?.ok_or(RecvError::PeerGone),
            false => Err(RecvError::Empty),
        },
    }
}

/// Relaxed-free look at the producer's state: `true` once it has closed cleanly.
#[inline]
fn producer_closed_flag<S: Storage>(storage: &S) -> bool {
    // Acquire: pairs with the Release store of CLOSED in Producer::drop, so a poll after this sees every
    // commit the producer made.
    storage.control::<Control>().state(Role::Producer).load(Ordering::Acquire) == endpoint::CLOSED
}

impl<S: Storage> Drop for Consumer<S> {
    fn drop(&mut self) {
        if self.st.head != self.st.published {
            self.st.publish_head(&self.storage);
        }
        let control = self.storage.control::<Control>();
        // Release: orders our last head publication before CLOSED.
        control.state(Role::Consumer).store(endpoint::CLOSED, Ordering::Release);
        control.space_ready.wake();
    }
}

/// A received message, still in the ring. Dereferences to the payload; dropping it frees the space.
pub struct ReadGuard<'a, S: Storage> {
    consumer: &'a mut Consumer<S>,
    off: usize,
    len: usize,
}

impl<S: Storage> std::ops::Deref for ReadGuard<'_, S> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: poll checked that the record [off, off + record_len(len)) lies inside the data area and
        // is committed; the producer does not write it again until we publish a head past it, which only
        // happens after this guard is dropped.
        unsafe { std::slice::from_raw_parts(self.consumer.st.data.add(self.off + HEADER_LEN), self.len) }
    }
}

impl<S: Storage> ReadGuard<'_, S> {
    /// How many of the message's first bytes are an event name (the frame header's `ext`; 0 for a plain
    /// message). Read from the record header, which `poll` validated (`ext <= len`); clamped to the
    /// length in case a hostile peer rewrote it since. Costs nothing unless called.
    #[inline]
    pub fn ext(&self) -> u16 {
        // Relaxed: the Acquire load of this same word in `poll` ordered everything we need.
        let word = self.consumer.storage.word(self.off).load(Ordering::Relaxed);
        ((word >> 48) as usize).min(self.len) as u16
    }
}

impl<S: Storage> Drop for ReadGuard<'_, S> {
    #[inline]
    fn drop(&mut self) {
        self.consumer.st.release(&self.consumer.storage, self.len);
    }
}

impl<S: Storage> std::fmt::Debug for ReadGuard<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGuard").field("len", &self.len).finish()
    }
}
