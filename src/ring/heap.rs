//! Heap storage: a ring shared by threads of one process (the SharedArrayBuffer + worker_threads case).
//!
//! Built normally, the control block and the data area sit in one zeroed, 4096-aligned allocation laid out
//! exactly like a shared region. Built for loom, the control block is an ordinary value of loom atomics,
//! every 8-byte slot of the data area has its own loom atomic (for record headers) and loom cell (to catch
//! unsynchronised payload accesses), and a payload write also scribbles over the atomic of every slot it
//! covers, so that an algorithm that trusted a stale header would read garbage and fail the model.

use super::{Control, RingConfig, RingKind, Role, RoleToken, Storage, DATA_OFFSET};
use crate::sync::Ordering;

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
        config: RingConfig,
    }

    // SAFETY: the allocation is owned by this value and only touched through atomics (control block,
    // record headers) and through the ring protocol, which hands each payload byte to one side at a time.
    unsafe impl Send for HeapStorage {}
    // SAFETY: as above; all shared mutation goes through atomics or the SPSC ownership protocol.
    unsafe impl Sync for HeapStorage {}

    impl HeapStorage {
        /// Allocates and initialises a ring of `config` (already validated).
        pub(crate) fn new(kind: RingKind, config: RingConfig) -> Self {
            let total = DATA_OFFSET + config.capacity;
            let layout = Layout::from_size_align(total, 4096).expect("validated config fits a Layout");
            // SAFETY: the layout has a non-zero size.
            let base = unsafe { alloc_zeroed(layout) };
            let Some(base) = NonNull::new(base) else { std::alloc::handle_alloc_error(layout) };
            let control = Control::new(kind, config, total as u64, DATA_OFFSET as u64, fence_flags());
            // SAFETY: `base` is valid for `total` >= DATA_OFFSET >= size_of::<Control>() bytes and 4096-aligned,
            // more than Control's 128-byte alignment; nothing else references it yet.
            unsafe { base.as_ptr().cast::<Control>().write(control) };
            let s = HeapStorage { base, layout, config };
            s.control().publish();
            s
        }
    }

    impl Drop for HeapStorage {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout; Control holds only atomics (no Drop to run).
            unsafe { dealloc(self.base.as_ptr(), self.layout) }
        }
    }

    // SAFETY: `base` holds an initialised Control followed, at DATA_OFFSET, by `capacity` bytes (the
    // capacity recorded in that Control), aligned to 4096; both live as long as `self`.
    unsafe impl Storage for HeapStorage {
        #[inline(always)]
        fn control(&self) -> &Control {
            // SAFETY: initialised in `new`, lives as long as self.
            unsafe { &*self.base.as_ptr().cast::<Control>() }
        }
        #[inline(always)]
        fn config(&self) -> RingConfig {
            self.config
        }
        fn asymmetric_fences(&self) -> bool {
            fence_flags() != 0
        }
        fn data(&self) -> *mut u8 {
            // SAFETY: DATA_OFFSET is within the allocation.
            unsafe { self.base.as_ptr().add(DATA_OFFSET) }
        }
        fn claim(&self, role: Role) -> Result<RoleToken, crate::OpenError> {
            claim_in_process(self.control(), role)
        }
        fn alive(&self, role: Role) -> bool {
            self.control().state(role).load(Ordering::Acquire) == super::super::endpoint::ATTACHED
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
        config: RingConfig,
        control: Box<Control>,
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
        /// Allocates and initialises a ring of `config` (already validated).
        pub fn new(kind: RingKind, config: RingConfig) -> Self {
            let cap = config.capacity;
            let s = HeapStorage {
                config,
                control: Box::new(Control::new(
                    kind,
                    config,
                    (DATA_OFFSET + cap) as u64,
                    DATA_OFFSET as u64,
                    fence_flags(),
                )),
                bytes: (0..cap).map(|_| std::cell::UnsafeCell::new(0)).collect(),
                words: (0..cap / 8).map(|_| AtomicU64::new(0)).collect(),
                cells: (0..cap / 8).map(|_| UnsafeCell::new(())).collect(),
            };
            s.control.publish();
            s
        }
    }

    // SAFETY: `bytes` has `capacity` bytes, `words` one atomic per 8-byte slot.
    unsafe impl Storage for HeapStorage {
        fn control(&self) -> &Control {
            &self.control
        }
        fn config(&self) -> RingConfig {
            self.config
        }
        fn asymmetric_fences(&self) -> bool {
            fence_flags() != 0
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
        fn claim(&self, role: Role) -> Result<RoleToken, crate::OpenError> {
            claim_in_process(self.control(), role)
        }
        fn alive(&self, role: Role) -> bool {
            self.control().state(role).load(Ordering::Acquire) == super::super::endpoint::ATTACHED
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

/// In one process, a role is claimed by moving its state from VACANT to ATTACHED.
fn claim_in_process(control: &Control, role: Role) -> Result<RoleToken, crate::OpenError> {
    use super::endpoint::{ATTACHED, VACANT};
    // Relaxed: the CAS only arbitrates ownership; the endpoint then synchronises through the cursors.
    control
        .state(role)
        .compare_exchange(VACANT, ATTACHED, Ordering::Relaxed, Ordering::Relaxed)
        .map(|_| RoleToken(None))
        .map_err(|_| crate::OpenError::RoleTaken(role))
}
