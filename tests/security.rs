//! Creating and opening shared-memory rings: permissions, names, pre-existing files and symlinks, stale
//! rings, and files whose header or size is wrong (each must give its typed error, never a panic).

use ringwire::ring::AttachError;
use ringwire::{OpenError, RingConfig, ShmOptions, ShmRing};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("ringwire-sec-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn path(name: &str) -> PathBuf {
    PathBuf::from("/dev/shm").join(name)
}

fn cfg() -> RingConfig {
    RingConfig::new(4096, 1000)
}

/// Removes a test file however the test ends.
struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn created_file_is_0600_whatever_the_umask() {
    for mask in [0o000, 0o022, 0o277] {
        // SAFETY: umask has no memory-safety preconditions (it is process-wide; this test restores it).
        let old = unsafe { libc::umask(mask) };
        let name = unique("mode");
        let ring = ShmRing::create(&name, cfg());
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let ring = ring.unwrap();
        let meta = std::fs::metadata(path(&name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "umask {mask:o}");
        // SAFETY: geteuid has no preconditions.
        assert_eq!(meta.uid(), unsafe { libc::geteuid() });
        drop(ring);
        assert!(!path(&name).exists(), "unlinked on drop");
    }
}

#[test]
fn refuses_existing_file_and_symlink() {
    let name = unique("exists");
    let _c = Cleanup(path(&name));
    std::fs::write(path(&name), b"someone else's data").unwrap();
    assert!(matches!(ShmRing::create(&name, cfg()), Err(OpenError::AlreadyExists(_))));
    assert_eq!(std::fs::read(path(&name)).unwrap(), b"someone else's data", "untouched");

    let target = unique("target");
    let _t = Cleanup(path(&target));
    std::fs::write(path(&target), b"precious").unwrap();
    let link = unique("link");
    let _l = Cleanup(path(&link));
    std::os::unix::fs::symlink(path(&target), path(&link)).unwrap();
    assert!(matches!(ShmRing::create(&link, cfg()), Err(OpenError::Symlink(_))));
    assert!(matches!(ShmOptions::new(cfg()).reuse_stale(true).create(&link), Err(OpenError::Symlink(_))));
    assert!(matches!(ShmRing::open(&link), Err(OpenError::Symlink(_))));
    assert_eq!(std::fs::read(path(&target)).unwrap(), b"precious", "never written through a link");
}

#[test]
fn rejects_bad_names() {
    for bad in ["", ".", "..", "a/b", "../etc", "x\0y", "sp ace", &"x".repeat(201)] {
        assert!(matches!(ShmRing::create(bad, cfg()), Err(OpenError::InvalidName { .. })), "{bad:?}");
        assert!(matches!(ShmRing::open(bad), Err(OpenError::InvalidName { .. })), "{bad:?}");
    }
}

#[test]
fn reuse_stale_ring_but_not_one_in_use() {
    let name = unique("stale");
    let _c = Cleanup(path(&name));
    // A ring left behind (persist), with nobody attached: reusable.
    let ring = ShmOptions::new(cfg()).persist(true).create(&name).unwrap();
    let mut tx = ring.producer().unwrap();
    tx.send(b"old").unwrap();
    drop(tx);
    drop(ring);
    assert!(path(&name).exists());
    assert!(matches!(ShmRing::create(&name, cfg()), Err(OpenError::AlreadyExists(_))));
    let ring = ShmOptions::new(cfg()).reuse_stale(true).create(&name).unwrap();
    let mut rx = ring.consumer().unwrap();
    assert_eq!(rx.try_recv().unwrap_err(), ringwire::spsc::RecvError::Empty, "re-initialised");
    // While an endpoint holds a role, reuse is refused.
    assert!(matches!(ShmOptions::new(cfg()).reuse_stale(true).create(&name), Err(OpenError::Busy(_))));
    drop(rx);
}

#[test]
fn open_validates_header_and_size() {
    let name = unique("garbage");
    let _c = Cleanup(path(&name));
    std::fs::write(path(&name), vec![0xAB; 8192]).unwrap();
    std::fs::set_permissions(path(&name), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(ShmRing::open(&name), Err(OpenError::BadMagic(_))));

    std::fs::write(path(&name), vec![0; 8192]).unwrap();
    assert!(matches!(ShmRing::open(&name), Err(OpenError::Uninitialized)));

    std::fs::write(path(&name), b"short").unwrap();
    assert!(matches!(ShmRing::open(&name), Err(OpenError::Truncated { .. })));

    std::fs::remove_file(path(&name)).unwrap();
    assert!(matches!(ShmRing::open(&name), Err(OpenError::NotFound(_))));
}

/// Creates a persistent ring, lets `edit` change its file, and returns what opening it says.
fn open_after(edit: impl FnOnce(&mut Vec<u8>)) -> Result<ShmRing, OpenError> {
    let name = unique("edit");
    let _c = Cleanup(path(&name));
    drop(ShmOptions::new(RingConfig::new(16384, 1000)).persist(true).create(&name).unwrap());
    let mut bytes = std::fs::read(path(&name)).unwrap();
    edit(&mut bytes);
    std::fs::write(path(&name), &bytes).unwrap();
    ShmRing::open(&name)
}

#[test]
fn open_rejects_each_bad_header_field() {
    // Offsets in the header: magic 0, version 8, kind 12, total_len 16, data_offset 24, capacity 32,
    // max_message 40 (see ARCHITECTURE.md).
    let put32 = |b: &mut Vec<u8>, off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    let put64 = |b: &mut Vec<u8>, off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    assert!(open_after(|_| {}).is_ok());
    assert!(matches!(open_after(|b| put32(b, 8, 1)), Err(OpenError::Version { found: 1, expected: 2 })));
    assert!(matches!(open_after(|b| put32(b, 12, 9)), Err(OpenError::WrongKind(9))));
    assert!(matches!(open_after(|b| put64(b, 16, 1 << 20)), Err(OpenError::SizeMismatch { .. })));
    assert!(matches!(open_after(|b| put64(b, 24, 0)), Err(OpenError::BadHeader(_))));
    assert!(matches!(open_after(|b| put64(b, 32, 3000)), Err(OpenError::BadHeader(_))));
    assert!(matches!(open_after(|b| put64(b, 32, 8192)), Err(OpenError::SizeMismatch { .. })));
    assert!(matches!(open_after(|b| put32(b, 40, 9000)), Err(OpenError::BadHeader(_))));
    // A file that grew or shrank after creation.
    assert!(matches!(open_after(|b| b.truncate(100)), Err(OpenError::Truncated { .. })));
    assert!(matches!(open_after(|b| b.truncate(b.len() - 4096)), Err(OpenError::SizeMismatch { .. })));
    assert!(matches!(open_after(|b| b.truncate(b.len() - 8)), Err(OpenError::SizeMismatch { .. })));
    assert!(matches!(open_after(|b| b.extend_from_slice(&[0; 4096])), Err(OpenError::SizeMismatch { .. })));
}

#[test]
fn memfd_without_seals_is_refused() {
    // SAFETY: plain memfd_create with a valid name.
    let fd = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    assert!(matches!(ShmRing::from_fd(fd), Err(OpenError::MissingSeals { .. })));
    assert!(matches!(ShmRing::from_env("RINGWIRE_NO_SUCH_VAR"), Err(OpenError::NoInheritedFd(_))));
}

#[test]
fn two_endpoints_of_one_role_in_one_process_are_refused() {
    let name = unique("dup-role");
    let ring = ShmRing::create(&name, cfg()).unwrap();
    let tx = ring.producer().unwrap();
    assert!(matches!(ring.producer(), Err(OpenError::Attach(AttachError::RoleTaken(ringwire::Role::Producer)))));
    assert!(matches!(ShmRing::open(&name).unwrap().producer(), Err(OpenError::Attach(AttachError::RoleTaken(_)))));
    drop(tx);
    ring.producer().expect("free after drop");
}

/// A record header whose `ext` (event-name length) exceeds its `len` is corruption: the consumer
/// reports `Corrupt` instead of handing out a name longer than the message.
#[test]
fn record_with_ext_beyond_len_is_corrupt() {
    use std::os::unix::fs::FileExt;
    let name = unique("ext");
    let ring = ShmRing::create(&name, cfg()).unwrap();
    let mut rx = ring.consumer().unwrap();
    // The first record sits at the start of the data area (offset 0x1000): len 2, kind 1, ext 3.
    let word: u64 = 2 | 1 << 32 | 3 << 48;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path(&name)).unwrap();
    file.write_all_at(b"ab\0\0\0\0\0\0", 0x1008).unwrap();
    file.write_all_at(&word.to_le_bytes(), 0x1000).unwrap();
    let r = rx.try_recv().map(|m| m.to_vec());
    assert!(matches!(r, Err(ringwire::spsc::RecvError::Corrupt(_))), "expected Corrupt, got {r:?}");
}
