//! The writing end of an SPSC ring: reservation, commit, the terminator and the cached head.

use super::*;
use crate::ring::error::{AttachError, Corruption};
use crate::ring::fence_mode;
use crate::ring::{check_kind, endpoint, Role, RoleToken, Storage};
use crate::sync::Ordering;
use crate::wait::DEFAULT_LIVENESS;
use crate::wait::{wait_for, Poll, WaitStrategy};
use crate::wire::{record_len, FrameHeader, Kind, HEADER_LEN};
use std::time::{Duration, Instant};

/// The writing end of an SPSC ring.
///
/// ```
/// let (mut tx, mut rx) = ringwire::spsc::channel(ringwire::RingConfig::default())?;
/// // Zero-copy: reserve, write in place, commit.
/// let mut slot = tx.try_reserve(5)?;
/// slot.copy_from_slice(b"hello");
/// slot.commit();
/// // Copying convenience.
/// tx.send(b"world")?;
/// assert_eq!(&*rx.recv()?, b"hello");
/// assert_eq!(rx.recv_vec()?, b"world");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Producer<S: Storage> {
    storage: S,
    st: ProducerState,
    wait: WaitStrategy,
    liveness: Duration,
    _token: RoleToken,
}

/// The producer's process-local state (kept apart from `storage` so that a wait loop can borrow both).
struct ProducerState {
    data: *mut u8,
    /// `storage.control()`, taken at attach (see `control_at`).
    control: *const Control,
    capacity: u64,
    mask: usize,
    max_message: usize,
    /// Our write position: the end of the last committed record. Authoritative (only we write it).
    tail: u64,
    /// The consumer's head as last read: free space is at least `capacity - (tail - cached_head)`.
    cached_head: u64,
    asymmetric: bool,
    /// Buffered publication ([`WriteGuard::commit_buffered`]): the position of the first record
    /// committed but withheld, or [`NOTHING_PENDING`]. Its header slot still reads zero in the ring (it is
    /// the previous record's terminator), so the consumer stops there; the records after it already
    /// carry their headers. [`Producer::flush`] stores `pending_word` there and so publishes them all.
    pending: u64,
    /// The header word of the record at `pending`.
    pending_word: u64,
    /// Withheld bytes after which a buffered commit publishes by itself ([`Producer::set_batch_bytes`]).
    batch_bytes: u64,
}

/// `ProducerState::pending` when nothing is withheld.
const NOTHING_PENDING: u64 = u64::MAX;

/// How far past a reservation (bytes) the producer asks for the lines it will write next (see
/// `try_reserve_at`), and the largest record it does that for. 512 bytes: seven 72-byte records, as
/// MPMC's four 128-byte slots.
const PREFETCH_AHEAD: usize = 512;

/// The default bound on withheld bytes ([`Producer::set_batch_bytes`]): 4 KiB, 56 records of 64-byte
/// messages, 64 cache lines. Small enough that the consumer works on one batch while the producer
/// writes the next; large enough that the line the consumer polls changes hands once per batch.
pub const DEFAULT_BATCH_BYTES: usize = 4096;

// SAFETY: `data` points into memory owned by `storage` (Send), and the producer is the only writer of the
// bytes it reserves; moving the handle to another thread moves that exclusive right with it.
unsafe impl<S: Storage> Send for Producer<S> {}

impl<S: Storage> Producer<S> {
    /// Attaches as the producer of the ring in `storage`. Fails if another producer is attached and
    /// alive. A producer that re-attaches after a crash resumes after the last committed record.
    pub fn attach(storage: S) -> Result<Self, AttachError> {
        let asymmetric = fence_mode(&storage)?;
        let token = {
            check_kind::<Control, _>(&storage)?;
            claim(&storage, Role::Producer)?
        };
        let cfg = storage.config();
        let control = storage.control::<Control>();
        let capacity = cfg.capacity as u64;
        let mask = cfg.capacity - 1;
        // The previous producer (if any) is gone, so nobody else sleeps on the space cell.
        control.space_ready.reset_sleepers();
        // Acquire: pairs with the consumer's Release publication; we must not overwrite what it reads.
        let head = control.head.load(Ordering::Acquire);
        // Relaxed: only a starting hint, validated and then confirmed by walking committed headers below.
        let hint = control.tail.load(Ordering::Relaxed);
        let corrupt = |at, what| AttachError::Corrupt(Corruption { at, what });
        // The hint can lag the committed records (a producer dies between committing a header, or a PAD,
        // and storing the hint), and the consumer may already have read past it; everything before `head`
        // was committed, so the walk starts at whichever is further.
        let start = hint.max(head);
        if head % 8 != 0 || hint % 8 != 0 || start - head > capacity {
            return Err(corrupt(hint, "tail hint and head are inconsistent"));
        }
        // Walk the committed records from there to the zero terminator after the last one.
        let mut tail = start;
        loop {
            let off = (tail as usize) & mask;
            // Acquire: pairs with the Release store that committed this header.
            let word = storage.word(off).load(Ordering::Acquire);
            if word == 0 {
                break;
            }
            let hdr = FrameHeader::from_word(word).map_err(|_| corrupt(tail, "bad record header"))?;
            let to_end = capacity - off as u64;
            let rec = match hdr.kind {
                Kind::Pad if hdr.len as u64 + HEADER_LEN as u64 == to_end => to_end,
                Kind::Data if hdr.len as usize <= cfg.max_message && record_len(hdr.len as usize) as u64 <= to_end => {
                    record_len(hdr.len as usize) as u64
                }
                _ => return Err(corrupt(tail, "bad record header")),
            };
            tail += rec;
            if tail - head > capacity {
                return Err(corrupt(tail, "committed records overrun the consumer"));
            }
        }
        control.tail.store(tail, Ordering::Relaxed);
        control.pid(Role::Producer).store(std::process::id(), Ordering::Relaxed);
        // Release: a consumer that sees ATTACHED also sees the pid.
        control.state(Role::Producer).store(endpoint::ATTACHED, Ordering::Release);
        Ok(Producer {
            st: ProducerState {
                data: storage.data(),
                control: std::ptr::from_ref(control),
                capacity,
                mask,
                max_message: cfg.max_message,
                tail,
                cached_head: head,
                asymmetric,
                pending: NOTHING_PENDING,
                pending_word: 0,
                batch_bytes: (DEFAULT_BATCH_BYTES as u64).min(capacity / 4),
            },
            storage,
            wait: WaitStrategy::default(),
            liveness: DEFAULT_LIVENESS,
            _token: token,
        })
    }

    /// Chooses how blocking calls wait for space.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }

    /// How often a blocked call checks that the consumer is still alive (default 50 ms).
    pub fn set_liveness_interval(&mut self, every: Duration) {
        self.liveness = every;
    }

    /// The largest payload this ring accepts.
    pub fn max_message(&self) -> usize {
        self.st.max_message
    }

    /// Copies `msg` into the ring like [`send`](Self::send), but withholds its publication (see
    /// [`WriteGuard::commit_buffered`]): the consumer sees it after [`flush`](Self::flush), a plain
    /// commit, a full batch, a wait for space, or the producer's close or drop.
    ///
    /// ```
    /// let (mut tx, mut rx) = ringwire::spsc::channel(ringwire::RingConfig::default())?;
    /// for i in 0..10u8 {
    ///     tx.send_buffered(&[i])?;
    /// }
    /// assert!(rx.try_recv().is_err()); // withheld until the flush
    /// tx.flush();
    /// for i in 0..10u8 {
    ///     assert_eq!(*rx.recv()?, [i]);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn send_buffered(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut slot = self.reserve_deadline_opt(msg.len(), None)?;
        slot.copy_from_slice(msg);
        slot.commit_buffered();
        Ok(())
    }

    /// Publishes every record committed with [`WriteGuard::commit_buffered`] and not yet published, in
    /// one store, and wakes a sleeping consumer. Cheap when nothing is withheld (one comparison). Never
    /// blocks.
    #[inline]
    pub fn flush(&mut self) {
        if self.st.pending != NOTHING_PENDING {
            self.st.publish_pending(&self.storage);
        }
    }

    /// Bytes of buffered records committed and not yet published (0 after [`flush`](Self::flush)).
    pub fn buffered_bytes(&self) -> usize {
        match self.st.pending {
            NOTHING_PENDING => 0,
            p => (self.st.tail - p) as usize,
        }
    }

    /// Sets how many withheld bytes (records with their 8-byte headers and padding) make a buffered
    /// commit publish the batch by itself: default [`DEFAULT_BATCH_BYTES`] (or a quarter of the
    /// capacity if that is less); at most the capacity (a full ring publishes anyway); 0 publishes every
    /// commit, as a plain one.
    pub fn set_batch_bytes(&mut self, bytes: usize) {
        self.st.batch_bytes = (bytes as u64).min(self.st.capacity);
    }

    /// Reserves room for a `len`-byte message without blocking. Write the payload into the returned
    /// guard and [`commit`](WriteGuard::commit) it; dropping the guard abandons the message.
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGuard<'_, S>, SendError> {
        let off = self.st.try_reserve_at(&self.storage, len)?;
        Ok(WriteGuard { off, len, producer: self })
    }

    /// Reserves room for a `len`-byte message, waiting for space as long as it takes.
    pub fn reserve(&mut self, len: usize) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_deadline_opt(len, None)
    }

    /// Reserves room for a `len`-byte message, waiting for space at most `timeout`.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_deadline_opt(len, Instant::now().checked_add(timeout))
    }

    /// Reserves room for a `len`-byte message, waiting for space until `deadline`.
    pub fn reserve_deadline(&mut self, len: usize, deadline: Instant) -> Result<WriteGuard<'_, S>, SendError> {
        self.reserve_deadline_opt(len, Some(deadline))
    }

    /// Copies `msg` into the ring without blocking.
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut slot = self.try_reserve(msg.len())?;
        slot.copy_from_slice(msg);
        slot.commit();
        Ok(())
    }

    /// Copies `msg` into the ring, waiting for space as long as it takes.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_deadline_opt(msg, None)
    }

    /// Copies `msg` into the ring, waiting for space at most `timeout`.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_deadline_opt(msg, Instant::now().checked_add(timeout))
    }

    /// Copies `msg` into the ring, waiting for space until `deadline`.
    pub fn send_deadline(&mut self, msg: &[u8], deadline: Instant) -> Result<(), SendError> {
        self.send_deadline_opt(msg, Some(deadline))
    }

    /// Closes the producing end: the consumer receives what was committed, then [`RecvError::PeerGone`].
    /// Dropping the producer does the same.
    pub fn close(self) {}

    #[inline]
    fn send_deadline_opt(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<(), SendError> {
        let mut slot = self.reserve_deadline_opt(msg.len(), deadline)?;
        slot.copy_from_slice(msg);
        slot.commit();
        Ok(())
    }

    fn reserve_deadline_opt(&mut self, len: usize, deadline: Option<Instant>) -> Result<WriteGuard<'_, S>, SendError> {
        let off = match self.st.try_reserve_at(&self.storage, len) {
            Ok(off) => off,
            Err(SendError::WouldBlock) => wait_for(
                &self.storage.control::<Control>().space_ready,
                None,
                params(self.wait, self.liveness, deadline, self.st.asymmetric),
                || match self.st.try_reserve_at(&self.storage, len) {
                    Err(SendError::WouldBlock) => Poll::Pending,
                    r => Poll::Ready(r),
                },
                || consumer_gone(&self.storage),
                || SendError::Timeout,
            )?,
            Err(e) => return Err(e),
        };
        Ok(WriteGuard { off, len, producer: self })
    }
}

#[cfg(feature = "tokio")]
impl<S: Storage> Producer<S> {
    /// Reserves room for a `len`-byte message, waiting for space without blocking the thread: the
    /// future completes when the consumer frees enough room (woken through the ring's own wake-up,
    /// see `ringwire::reactor`), or with the error a blocking [`reserve`](Self::reserve) would return
    /// (`PeerGone` for a closed consumer, `PeerReset` for a dead one, `Oversize`).
    ///
    /// Cancel-safe: the space is reserved in the poll that completes the future, so dropping the
    /// future before that reserves nothing; a reservation dropped uncommitted publishes nothing, as
    /// with [`try_reserve`](Self::try_reserve).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let (mut tx, mut rx) = ringwire::spsc::channel(ringwire::RingConfig::default())?;
    /// let mut slot = tx.reserve_async(5).await?;
    /// slot.copy_from_slice(b"hello");
    /// slot.commit();
    /// assert_eq!(&*rx.recv_async().await?, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn reserve_async(&mut self, len: usize) -> Result<WriteGuard<'_, S>, SendError> {
        let off = match self.st.try_reserve_at(&self.storage, len) {
            Ok(off) => off,
            Err(SendError::WouldBlock) => {
                let storage = &self.storage;
                let st = &mut self.st;
                let cell = &storage.control::<Control>().space_ready;
                let mut w = crate::reactor::AsyncWait::new(cell, None, st.asymmetric, self.liveness);
                std::future::poll_fn(|cx| {
                    w.poll(
                        cx,
                        &mut *st,
                        |st| match st.try_reserve_at(storage, len) {
                            Err(SendError::WouldBlock) => Poll::Pending,
                            r => Poll::Ready(r),
                        },
                        |_| consumer_gone(storage),
                    )
                })
                .await?
            }
            Err(e) => return Err(e),
        };
        Ok(WriteGuard { off, len, producer: self })
    }

    /// Copies `msg` into the ring, waiting for space without blocking the thread (see
    /// [`reserve_async`](Self::reserve_async)). Cancel-safe: `msg` is copied and committed in the
    /// poll that completes the future; a future dropped before that sent nothing.
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut slot = self.reserve_async(msg.len()).await?;
        slot.copy_from_slice(msg);
        slot.commit();
        Ok(())
    }
}

// SAFETY: `data` points into the producer's storage; the state moves with its handle (see `Producer`'s
// Send), and the async futures hold it only through that handle's `&mut` borrow.
unsafe impl Send for ProducerState {}

impl ProducerState {
    /// The reservation itself: returns the data offset of the record header slot.
    #[inline]
    fn try_reserve_at<S: Storage>(&mut self, storage: &S, len: usize) -> Result<usize, SendError> {
        if len > self.max_message {
            return Err(SendError::Oversize { len, max: self.max_message });
        }
        let control = control_at(storage, self.control);
        // Relaxed: a hint that lets a send fail early once the consumer has closed; nothing is read on its
        // strength. The authoritative check is on the slow path (`consumer_gone`).
        if control.states.consumer.load(Ordering::Relaxed) == endpoint::CLOSED {
            return Err(SendError::PeerGone);
        }
        let rec = record_len(len) as u64;
        let off = (self.tail as usize) & self.mask;
        let to_end = self.capacity - off as u64;
        let pad = if rec <= to_end { 0 } else { to_end };
        // Room for the pad, the record, and the 8-byte terminator slot after it.
        let need = pad + rec + HEADER_LEN as u64;
        if self.tail + need - self.cached_head > self.capacity {
            // SYNC POINT: Acquire pairs with the consumer's Release store of `head` (publish_head): the
            // consumer is done reading everything before it, so we may overwrite it.
            let head = control.head.load(Ordering::Acquire);
            if head % 8 != 0 || head < self.cached_head || head > self.tail {
                return Err(SendError::Corrupt(Corruption { at: head, what: "consumer head out of range" }));
            }
            self.cached_head = head;
            if self.tail + need - head > self.capacity {
                // A full ring publishes what it withholds: the consumer may be waiting for exactly those
                // records to free the space we wait for.
                if self.pending != NOTHING_PENDING {
                    self.publish_pending(storage);
                }
                return Err(SendError::WouldBlock);
            }
        }
        let mut off = off;
        if pad != 0 {
            // Terminator for the pad: offset 0 reads "nothing yet" until our record there commits.
            word_at(storage, self.data, 0).store(0, Ordering::Relaxed);
            let pad_hdr = FrameHeader { len: (pad - HEADER_LEN as u64) as u32, kind: Kind::Pad, ext: 0 };
            // SYNC POINT: Release publishes the zeroed slot at offset 0 before the pad that leads there;
            // pairs with the consumer's Acquire load of this header in `poll`.
            word_at(storage, self.data, off).store(pad_hdr.to_word(), Ordering::Release);
            self.tail += pad;
            off = 0;
        }
        // Terminator after the record (published with the record's own header, by Release).
        let next = (off + rec as usize) & self.mask;
        word_at(storage, self.data, next).store(0, Ordering::Relaxed);
        if rec as usize <= PREFETCH_AHEAD {
            // The lines a record written a few messages from now will cover, asked for in the exclusive
            // state now: the consumer read them a lap ago, and a store that finds one still in its
            // cache waits for the transfer. Fetched here, the transfer overlaps the messages between
            // (64-byte streaming 14-15 -> 33-37 M msgs/s, Intel host; README, seventh session). Not
            // the lines of this record or the next: in a stream that has caught up the consumer polls
            // them, and taking them early only makes them cross twice. Both ends of a small record's
            // span (a 72-byte record covers two lines); larger records have the hardware's own
            // sequential prefetch. A hint only: no ordering rests on it, loom builds compile it out.
            let ahead = off + PREFETCH_AHEAD;
            crate::sync::prefetch_write(self.data.wrapping_add(ahead & self.mask));
            crate::sync::prefetch_write(self.data.wrapping_add((ahead + rec as usize - 1) & self.mask));
        }
        Ok(off)
    }

    /// Commits the record reserved at `off` with a `len`-byte payload whose first `ext` bytes are an
    /// event name (`ext <= len`, checked by the callers): publishes it, and every withheld record before
    /// it, unless `buffered`, in which case it is withheld too until the batch is full.
    #[inline]
    fn commit_at<S: Storage>(
        &mut self,
        storage: &S,
        off: usize,
        reserved: usize,
        len: usize,
        ext: u16,
        buffered: bool,
    ) {
        debug_assert!(len <= reserved && off == (self.tail as usize) & self.mask);
        debug_assert!(ext as usize <= len);
        let rec = record_len(len);
        if rec != record_len(reserved) {
            // The record shrank: move the terminator to its new end (still inside the reserved space).
            word_at(storage, self.data, (off + rec) & self.mask).store(0, Ordering::Relaxed);
        }
        storage.note_write(off + HEADER_LEN, len);
        let word = FrameHeader { len: len as u32, kind: Kind::Data, ext }.to_word();
        if !buffered && self.pending == NOTHING_PENDING {
            // SYNC POINT: Release publishes the payload and the terminator after it; pairs with the
            // consumer's Acquire load of this header word in `poll`.
            word_at(storage, self.data, off).store(word, Ordering::Release);
            self.tail += rec as u64;
            self.published(storage);
            return;
        }
        let at = self.tail;
        self.tail += rec as u64;
        if self.pending == NOTHING_PENDING {
            // Withheld: the slot keeps reading zero (the terminator the previous record left), so the
            // consumer stops here until `publish_pending` stores the word.
            self.pending = at;
            self.pending_word = word;
        } else {
            // Relaxed: this header lies behind the withheld one at `pending`, which the consumer can't
            // pass before `publish_pending` stores it with Release, after this store in program order;
            // the consumer's Acquire load of that header makes this one (and this payload) visible.
            word_at(storage, self.data, off).store(word, Ordering::Relaxed);
        }
        if !buffered || self.tail - self.pending >= self.batch_bytes {
            self.publish_pending(storage);
        }
    }

    /// Publishes the withheld records (`pending` is set).
    #[inline]
    fn publish_pending<S: Storage>(&mut self, storage: &S) {
        debug_assert!(self.pending != NOTHING_PENDING);
        let off = (self.pending as usize) & self.mask;
        // SYNC POINT: Release publishes every record from `pending` to `tail` (payloads, the Relaxed
        // headers after the first, the terminator after the last); pairs with the consumer's Acquire load
        // of this header word in `poll`, as for an unbuffered commit.
        word_at(storage, self.data, off).store(self.pending_word, Ordering::Release);
        self.pending = NOTHING_PENDING;
        self.published(storage);
    }

    /// After a publication that reached `tail`: stores the `tail` hint and wakes a sleeping consumer.
    #[inline(always)]
    fn published<S: Storage>(&self, storage: &S) {
        let control = control_at(storage, self.control);
        // Relaxed: the hint is only read by a re-attaching producer, which re-validates it. Stored only
        // after a publication, so it never points past a withheld record: a producer that re-attaches
        // after we die walks from at most `pending` and stops at its zero.
        control.tail.store(self.tail, Ordering::Relaxed);
        control.data_ready.notify(self.asymmetric);
    }
}

impl<S: Storage> Drop for Producer<S> {
    fn drop(&mut self) {
        // A clean close publishes what was withheld, as a stream sender's close flushes.
        self.flush();
        let control = self.storage.control::<Control>();
        // SYNC POINT: Release orders every commit before CLOSED; pairs with the consumer's Acquire load of
        // the state before its last poll, so "closed and empty" really means drained.
        control.state(Role::Producer).store(endpoint::CLOSED, Ordering::Release);
        control.data_ready.wake();
    }
}

/// A reserved, not yet published message. Dereferences to its payload bytes (which hold stale data
/// until written). [`commit`](Self::commit) publishes it; dropping the guard abandons it.
pub struct WriteGuard<'a, S: Storage> {
    producer: &'a mut Producer<S>,
    off: usize,
    len: usize,
}

impl<S: Storage> WriteGuard<'_, S> {
    /// Publishes the message with its full reserved length (and every record withheld before it).
    #[inline]
    pub fn commit(self) {
        let len = self.len;
        self.commit_len(len);
    }

    /// Commits the message with its full reserved length but withholds its publication, so that a burst
    /// reaches the consumer in one store instead of one per message: the cache line the consumer polls
    /// changes hands once per batch. The batch is published by [`Producer::flush`], by the next plain
    /// commit, when it holds [`Producer::set_batch_bytes`] bytes (4 KiB by default), when a reservation
    /// finds the ring full (before waiting), and when the producer closes or is dropped. A producer
    /// that dies (SIGKILL) with a batch withheld loses that batch, and only it: the consumer never sees
    /// any of it, and a producer that re-attaches writes over it. **Flush before waiting for an answer.**
    ///
    /// A lone message costs what [`commit`](Self::commit) does once it is flushed: the same one
    /// Release store, made by `flush`.
    #[inline]
    pub fn commit_buffered(self) {
        self.producer.st.commit_at(&self.producer.storage, self.off, self.len, self.len, 0, true);
    }

    /// Publishes only the first `len` bytes (at most the reserved length) as the message.
    ///
    /// # Panics
    /// If `len` exceeds the reserved length.
    #[inline]
    pub fn commit_len(self, len: usize) {
        assert!(len <= self.len, "commit_len({len}) exceeds the reserved {} bytes", self.len);
        self.producer.st.commit_at(&self.producer.storage, self.off, self.len, len, 0, false);
    }

    /// Publishes the first `len` bytes as the message, of which the first `ext` are an event name (the
    /// frame header's `ext` field, see [`crate::wire`]).
    ///
    /// # Panics
    /// If `len` exceeds the reserved length or `ext` exceeds `len`.
    #[inline]
    pub fn commit_ext(self, len: usize, ext: u16) {
        assert!(len <= self.len, "commit_ext({len}) exceeds the reserved {} bytes", self.len);
        assert!(ext as usize <= len, "an ext of {ext} bytes in a {len}-byte message");
        self.producer.st.commit_at(&self.producer.storage, self.off, self.len, len, ext, false);
    }
}

impl<S: Storage> std::ops::Deref for WriteGuard<'_, S> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: try_reserve_at checked that [off + 8, off + 8 + len) lies inside the data area (a record
        // never crosses its end) and in free space, which only this producer touches until commit.
        unsafe { std::slice::from_raw_parts(self.producer.st.data.add(self.off + HEADER_LEN), self.len) }
    }
}

impl<S: Storage> std::ops::DerefMut for WriteGuard<'_, S> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only live view.
        unsafe { std::slice::from_raw_parts_mut(self.producer.st.data.add(self.off + HEADER_LEN), self.len) }
    }
}
