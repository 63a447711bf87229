//! Heap storage: a ring shared by threads of one process (the SharedArrayBuffer + worker_threads case).
//!
//! Built normally, the control block and the data area sit in one zeroed, 4096-aligned allocation laid out
//! exactly like a shared region. Built for loom, the control block is an ordinary value of loom atomics,
//! every 8-byte slot of the data area has its own loom atomic (for record headers) and loom cell (to catch
//! unsynchronised payload accesses), and a payload write also scribbles over the atomic of every slot it
//! covers, so that an algorithm that trusted a stale header would read garbage and fail the model.

use super::error::AttachError;
use super::{ControlBlock, Header, RingConfig, RingKind, RoleToken, Storage};
use crate::sync::{AtomicU32, Ordering};

#[cfg(not(ringwire_loom))]
mod imp {
    use super::*;
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    use std::ptr::NonNull;

    /// A ring's memory on the heap.
    #[derive(Debug)]
    pub struct HeapStorage {
        base: NonNull<u8>,
        layout: Layout,
        kind: RingKind,
        config: RingConfig,
        flags: u32,
    }

    // SAFETY: the allocation is owned by this value and only touched through atomics (control block,
    // record headers) and through the ring protocol, which hands each payload byte to one side at a time.
    unsafe impl Send for HeapStorage {}
    // SAFETY: as above; all shared mutation goes through atomics or the SPSC ownership protocol.
    unsafe impl Sync for HeapStorage {}

    impl HeapStorage {
        /// Allocates and initialises a ring of kind `C` and `config` (already validated for that kind).
        pub fn new<C: ControlBlock>(config: RingConfig) -> Self {
            Self::with_flags::<C>(config, 0)
        }

        /// As [`new`](Self::new), with extra header flags (on top of the fence mode).
        pub fn with_flags<C: ControlBlock>(config: RingConfig, flags: u32) -> Self {
            let flags = flags | fence_flags();
            let data_offset = C::KIND.data_offset();
            let total = data_offset + config.capacity;
            let layout = Layout::from_size_align(total, 4096).expect("validated config fits a Layout");
            // SAFETY: the layout has a non-zero size.
            let base = unsafe { alloc_zeroed(layout) };
            let Some(base) = NonNull::new(base) else { std::alloc::handle_alloc_error(layout) };
            let control = C::new(Header::new(C::KIND, config, flags), config);
            // SAFETY: `base` is valid for `total` >= data_offset >= size_of::<C>() bytes (ControlBlock's
            // contract) and 4096-aligned, more than C's alignment; nothing else references it yet.
            unsafe { base.as_ptr().cast::<C>().write(control) };
            let s = HeapStorage { base, layout, kind: C::KIND, config, flags };
            super::super::publish(s.control::<C>());
            s
        }
    }

    impl Drop for HeapStorage {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout; control blocks hold only atomics (no Drop to run).
            unsafe { dealloc(self.base.as_ptr(), self.layout) }
        }
    }

    // SAFETY: `base` holds an initialised control block of `kind` followed, at the kind's data offset, by
    // `capacity` bytes (the capacity recorded in its header), aligned to 4096; both live as long as `self`.
    unsafe impl Storage for HeapStorage {
        #[inline(always)]
        fn kind(&self) -> RingKind {
            self.kind
        }
        #[inline(always)]
        fn control_page(&self) -> *const u8 {
            self.base.as_ptr()
        }
        #[inline(always)]
        fn config(&self) -> RingConfig {
            self.config
        }
        fn flags(&self) -> u32 {
            self.flags
        }
        #[inline(always)]
        fn data(&self) -> *mut u8 {
            // SAFETY: the data offset is within the allocation.
            unsafe { self.base.as_ptr().add(self.kind.data_offset()) }
        }
        fn claim(&self, _lock: u32, state: &AtomicU32) -> Result<Option<RoleToken>, AttachError> {
            claim_in_process(state)
        }
        fn alive(&self, _lock: u32, state: &AtomicU32) -> bool {
            state.load(Ordering::Acquire) == super::super::endpoint::ATTACHED
        }
    }
}

#[cfg(ringwire_loom)]
mod imp {
    use super::*;
    use crate::sync::AtomicU64;
    use loom::cell::UnsafeCell;

    /// A ring's memory, instrumented for loom.
    pub struct HeapStorage {
        kind: RingKind,
        config: RingConfig,
        flags: u32,
        /// A leaked `Box<C>` for the kind's control block `C`, freed by `drop_control`.
        control: *mut u8,
        drop_control: unsafe fn(*mut u8),
        bytes: Box<[std::cell::UnsafeCell<u8>]>,
        words: Box<[AtomicU64]>,
        cells: Box<[UnsafeCell<()>]>,
    }

    // SAFETY: loom checks every access to `bytes` through `cells`; the rest are loom atomics.
    unsafe impl Send for HeapStorage {}
    // SAFETY: as above.
    unsafe impl Sync for HeapStorage {}

    /// Payload bytes scribbled over header slots that payload overwrites.
    const SCRIBBLE: u64 = 0xdead_beef_dead_beef;

    impl HeapStorage {
        /// Allocates and initialises a ring of kind `C` and `config` (already validated for that kind).
        pub fn new<C: ControlBlock>(config: RingConfig) -> Self {
            Self::with_flags::<C>(config, 0)
        }

        /// As [`new`](Self::new), with extra header flags (on top of the fence mode).
        pub fn with_flags<C: ControlBlock>(config: RingConfig, flags: u32) -> Self {
            let flags = flags | fence_flags();
            let cap = config.capacity;
            /// Frees the control block leaked in `new`.
            ///
            /// # Safety
            ///
            /// `p` came from `Box::<C>::into_raw` and is freed once.
            unsafe fn drop_box<C>(p: *mut u8) {
                // SAFETY: the caller's contract.
                drop(unsafe { Box::from_raw(p.cast::<C>()) });
            }
            let control = Box::new(C::new(Header::new(C::KIND, config, flags), config));
            let s = HeapStorage {
                kind: C::KIND,
                config,
                flags,
                control: Box::into_raw(control).cast::<u8>(),
                drop_control: drop_box::<C>,
                bytes: (0..cap).map(|_| std::cell::UnsafeCell::new(0)).collect(),
                words: (0..cap / 8).map(|_| AtomicU64::new(0)).collect(),
                cells: (0..cap / 8).map(|_| UnsafeCell::new(())).collect(),
            };
            super::super::publish(s.control::<C>());
            s
        }
    }

    impl Drop for HeapStorage {
        fn drop(&mut self) {
            // SAFETY: `control` came from Box::into_raw of the type `drop_control` was made for; once.
            unsafe { (self.drop_control)(self.control) }
        }
    }

    // SAFETY: `control` is the kind's block (a live Box), `bytes` has `capacity` bytes, `words` one atomic
    // per 8-byte slot.
    unsafe impl Storage for HeapStorage {
        fn kind(&self) -> RingKind {
            self.kind
        }
        fn control_page(&self) -> *const u8 {
            self.control
        }
        fn config(&self) -> RingConfig {
            self.config
        }
        fn flags(&self) -> u32 {
            self.flags
        }
        fn data(&self) -> *mut u8 {
            std::cell::UnsafeCell::raw_get(self.bytes.as_ptr())
        }
        fn word(&self, off: usize) -> &AtomicU64 {
            &self.words[off / 8]
        }
        fn note_write(&self, off: usize, len: usize) {
            for slot in off / 8..(off + len).div_ceil(8) {
                self.cells[slot].with_mut(|_| ());
                self.words[slot].store(SCRIBBLE, Ordering::Relaxed);
            }
        }
        fn note_read(&self, off: usize, len: usize) {
            for slot in off / 8..(off + len).div_ceil(8) {
                self.cells[slot].with(|_| ());
            }
        }
        fn claim(&self, _lock: u32, state: &AtomicU32) -> Result<Option<RoleToken>, AttachError> {
            claim_in_process(state)
        }
        fn alive(&self, _lock: u32, state: &AtomicU32) -> bool {
            state.load(Ordering::Acquire) == super::super::endpoint::ATTACHED
        }
    }
}

pub use imp::HeapStorage;

/// An in-process ring uses asymmetric fences whenever this process can (decided once per process).
fn fence_flags() -> u32 {
    if crate::sync::asymmetric_barrier_available() {
        super::FLAG_ASYMMETRIC_FENCES
    } else {
        0
    }
}

/// In one process, an endpoint slot is claimed by moving its state from VACANT (never used) or CLOSED
/// (left cleanly) to ATTACHED.
fn claim_in_process(state: &AtomicU32) -> Result<Option<RoleToken>, AttachError> {
    use super::endpoint::{ATTACHED, CLOSED, VACANT};
    // Acquire on success: a slot reused after a clean close sees everything its last owner did before
    // the Release store of CLOSED. Relaxed on failure: nothing is read.
    for from in [VACANT, CLOSED] {
        if state.compare_exchange(from, ATTACHED, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return Ok(Some(RoleToken(None)));
        }
    }
    Ok(None)
}
