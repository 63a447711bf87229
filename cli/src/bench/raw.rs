//! The raw mechanism under each kernel transport, measured in the same run: `raw-pipe` (the `pipe` and
//! `stdio` rows), `raw-unix` (`unix`, `fork`), `raw-tcp` (`tcp`, `tcp+events`, `websocket`), `raw-udp`
//! (`udp`), and the `+batch` rows over them. `raw-fifo` is `raw-pipe` over two named FIFOs (as the
//! `pipe` row's) instead of anonymous pipes: run it next to `raw-pipe` to see what the FIFO itself costs
//! in the kernel (the `pipe` row's `mechanism` stays `raw-pipe`; no row brings `raw-fifo` along). What `limit` is to the rings, these are to the kernel transports: no framing, no library,
//! bare `read`/`write` (`send`/`recv` on UDP) of fixed-size messages between this process and a forked
//! child pinned to the other cpu, in two waits:
//!
//! * `block`: blocking descriptors, the syscall sleeps (the "bare C read/write ping-pong");
//! * `spin`: non-blocking descriptors, the syscall retried on `EAGAIN` (busy-poll).
//!
//! The round trip writes one message and reads its echo (a stream read loops until `size` bytes are in,
//! as a bare C program must). The stream writes one message per `write` and the sink reads as much as
//! the kernel has (64 KiB at a time), with the same flow control as the transport rows' sink: an 8-byte
//! acknowledgement every [`sink_ack_every`] messages, at most `transports::window` in flight. A transport row's
//! `mechanism_ratio` is its numbers over its raw row's (`block` over `block`; `spin` and `adaptive` over
//! `spin`).
//!
//! The child is a `fork` without `exec`: it makes raw syscalls on memory allocated before the fork and
//! ends with `_exit`, so it runs no allocator or lock that another thread might have held at the fork.

use super::plan::histogram;
use super::report::Throughput;
use crate::peer::sink_ack_every;
use crate::util::{available_cpus, base_payload, stamp, verify, CliResult};
use hdrhistogram::Histogram;
use std::io;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The raw-mechanism rows, in table order.
pub const NAMES: &[&str] = &["raw-pipe", "raw-fifo", "raw-unix", "raw-tcp", "raw-udp"];

/// The raw row a transport row is compared with, and in which wait: `None` for rows that are not over a
/// kernel byte stream or datagram socket of their own.
pub fn mechanism_of(transport: &str, wait: &str) -> Option<(&'static str, &'static str)> {
    let base = transport.strip_suffix("+batch").unwrap_or(transport);
    let base = base.strip_suffix("+events").unwrap_or(base);
    let raw = match base {
        // The bench's `pipe` row runs over FIFOs, `stdio` over the child's pipes: both pipefs.
        "pipe" | "stdio" => "raw-pipe",
        // `fork` is an inherited socketpair: a Unix stream socket like `unix`.
        "unix" | "fork" => "raw-unix",
        "tcp" | "websocket" => "raw-tcp",
        "udp" => "raw-udp",
        _ => return None,
    };
    let raw_wait = match wait {
        "block" => "block",
        "spin" | "adaptive" => "spin",
        _ => return None,
    };
    Some((raw, raw_wait))
}

/// A peer that does not answer for this long has failed.
const STALL: Duration = Duration::from_secs(10);

/// The sink's read size.
const CHUNK: usize = 64 << 10;

/// One side's descriptors: `r` to read, `w` to write (the same descriptor for sockets).
struct Ends {
    r: OwnedFd,
    w: Option<OwnedFd>,
}

impl Ends {
    fn r(&self) -> RawFd {
        self.r.as_raw_fd()
    }
    fn w(&self) -> RawFd {
        self.w.as_ref().unwrap_or(&self.r).as_raw_fd()
    }
}

/// The medium of a raw row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Medium {
    Pipe,
    Fifo,
    Unix,
    Tcp,
    Udp,
}

impl Medium {
    fn of(name: &str) -> CliResult<Medium> {
        Ok(match name {
            "raw-pipe" => Medium::Pipe,
            "raw-fifo" => Medium::Fifo,
            "raw-unix" => Medium::Unix,
            "raw-tcp" => Medium::Tcp,
            "raw-udp" => Medium::Udp,
            other => return Err(format!("no raw row {other}").into()),
        })
    }

    /// `(ours, theirs)`.
    fn connect(self) -> io::Result<(Ends, Ends)> {
        Ok(match self {
            Medium::Pipe => {
                let (down_r, down_w) = ringwire::transport::pipe::raw_pipe()?;
                let (up_r, up_w) = ringwire::transport::pipe::raw_pipe()?;
                (Ends { r: up_r, w: Some(down_w) }, Ends { r: down_r, w: Some(up_w) })
            }
            Medium::Fifo => {
                // Two FIFOs in a fresh directory (as the `pipe` row's): each opened at both ends here,
                // read end first and non-blocking so that no open waits; open FIFOs outlive their names.
                let dir = std::env::temp_dir().join(format!("ringwire-raw-fifo-{}", std::process::id()));
                std::fs::create_dir(&dir)?;
                let ends = (|| {
                    let open = |name: &str, mode: libc::c_int| -> io::Result<OwnedFd> {
                        let path = std::ffi::CString::new(dir.join(name).into_os_string().into_encoded_bytes())
                            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                        // SAFETY: `path` is a valid NUL-terminated path; open returns a new descriptor or -1.
                        let fd = unsafe { libc::open(path.as_ptr(), mode | libc::O_NONBLOCK | libc::O_CLOEXEC) };
                        if fd < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        // SAFETY: open just returned this descriptor, which nothing else owns.
                        Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
                    };
                    ringwire::transport::pipe::create_fifo(dir.join("down"))?;
                    ringwire::transport::pipe::create_fifo(dir.join("up"))?;
                    let down_r = open("down", libc::O_RDONLY)?;
                    let down_w = open("down", libc::O_WRONLY)?;
                    let up_r = open("up", libc::O_RDONLY)?;
                    let up_w = open("up", libc::O_WRONLY)?;
                    Ok::<_, io::Error>((Ends { r: up_r, w: Some(down_w) }, Ends { r: down_r, w: Some(up_w) }))
                })();
                std::fs::remove_dir_all(&dir)?;
                ends?
            }
            Medium::Unix => {
                let (a, b) = std::os::unix::net::UnixStream::pair()?;
                (Ends { r: a.into(), w: None }, Ends { r: b.into(), w: None })
            }
            Medium::Tcp => {
                let l = TcpListener::bind("127.0.0.1:0")?;
                let a = TcpStream::connect(l.local_addr()?)?;
                let (b, _) = l.accept()?;
                // As the tcp transport: every frame goes out when sent.
                a.set_nodelay(true)?;
                b.set_nodelay(true)?;
                (Ends { r: a.into(), w: None }, Ends { r: b.into(), w: None })
            }
            Medium::Udp => {
                let a = UdpSocket::bind("127.0.0.1:0")?;
                let b = UdpSocket::bind("127.0.0.1:0")?;
                a.connect(b.local_addr()?)?;
                b.connect(a.local_addr()?)?;
                (Ends { r: a.into(), w: None }, Ends { r: b.into(), w: None })
            }
        })
    }
}

fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL / F_SETFL on an open descriptor we own; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        let flags = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What the child does.
#[derive(Clone, Copy)]
enum Job {
    /// Echo every `size`-byte message until end of input (streams) or an empty datagram (UDP).
    Echo,
    /// Take `count` messages, acknowledging every `ack_every`, then wait for the end.
    Sink { count: u64, ack_every: u64 },
}

/// A forked child: killed and reaped when dropped (a normal end reaps it first).
struct Forked {
    pid: libc::pid_t,
}

impl Forked {
    /// Waits for the child's exit; an error unless it exited with 0.
    fn reap(mut self) -> CliResult {
        let mut status = 0;
        // SAFETY: waitpid on our own child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        self.pid = 0;
        if r < 0 {
            return Err(io::Error::last_os_error().into());
        }
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(format!("raw benchmark peer failed (wait status {status:#x})").into());
        }
        Ok(())
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        if self.pid > 0 {
            // SAFETY: kill and waitpid on our own child, which has not been reaped yet.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Forks the child that runs `job` on `theirs`; our copies of its descriptors are closed afterwards.
fn spawn(medium: Medium, theirs: Ends, ours: &Ends, spin: bool, size: usize, job: Job) -> CliResult<Forked> {
    set_nonblocking(theirs.r(), spin)?;
    set_nonblocking(theirs.w(), spin)?;
    // Everything the child touches is allocated here, before the fork.
    let mut buf = vec![0u8; CHUNK.max(size)];
    let cpu = if available_cpus() >= 2 { Some(1) } else { None };
    let close_in_child = [ours.r(), ours.w()];
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the child only makes raw syscalls (close, prctl, sched_setaffinity, read, write, send,
    // recv, poll) on descriptors and memory that exist before the fork, allocates nothing, takes no lock,
    // and ends with `_exit`: all async-signal-safe, so it is sound even if another thread held a lock at
    // the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error().into());
    }
    if pid == 0 {
        // SAFETY: see above; `buf` is this process's own copy.
        unsafe {
            for fd in close_in_child {
                libc::close(fd);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(3);
            }
            if let Some(cpu) = cpu {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            }
            let code = child(medium, theirs.r(), theirs.w(), spin, size, &mut buf, job);
            libc::_exit(code);
        }
    }
    drop(theirs);
    Ok(Forked { pid })
}

/// The child's loop; returns its exit code. No allocation, no panic path (`size <= buf.len()`).
fn child(medium: Medium, r: RawFd, w: RawFd, spin: bool, size: usize, buf: &mut [u8], job: Job) -> i32 {
    let dgram = medium == Medium::Udp;
    match job {
        Job::Echo => loop {
            let n = if dgram { recv_dgram(r, &mut buf[..size], spin) } else { read_exact(r, &mut buf[..size], spin) };
            match n {
                Ok(0) => return 0, // end of input (or the empty end datagram)
                Ok(_) => {}
                Err(_) => return 1,
            }
            if write_all(w, &buf[..size], spin, dgram).is_err() {
                return 1;
            }
        },
        Job::Sink { count, ack_every } => {
            let mut got = 0u64; // messages (UDP) or bytes (streams)
            let mut acked = 0u64;
            let total = if dgram { count } else { count * size as u64 };
            while got < total {
                let n = if dgram { recv_dgram(r, buf, spin) } else { read_some(r, buf, spin) };
                match n {
                    Ok(0) if !dgram => return 1, // the sender went away early
                    Ok(n) => got += if dgram { 1 } else { n as u64 },
                    Err(_) => return 1,
                }
                let msgs = if dgram { got } else { got / size as u64 };
                while acked + ack_every <= msgs || (msgs == count && acked < count) {
                    acked = (acked + ack_every).min(count);
                    if write_all(w, &acked.to_le_bytes(), spin, dgram).is_err() {
                        return 1;
                    }
                }
            }
            // Wait for the sender's end, so that nothing we sent is cut off by our exit.
            loop {
                match if dgram { recv_dgram(r, buf, spin) } else { read_some(r, buf, spin) } {
                    Ok(0) => return 0,
                    Ok(_) => {}
                    Err(_) => return 0,
                }
            }
        }
    }
}

/// Retries a syscall returning `-1`/`EAGAIN` while spinning (non-blocking descriptors), and on `EINTR`.
#[inline]
fn retry(spin: bool, deadline: Option<Instant>, mut f: impl FnMut() -> isize) -> io::Result<usize> {
    let mut tries = 0u32;
    loop {
        let n = f();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock if spin => {
                tries = tries.wrapping_add(1);
                if tries % 4096 == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                std::hint::spin_loop();
            }
            _ => return Err(e),
        }
    }
}

fn read_some(fd: RawFd, buf: &mut [u8], spin: bool) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length during the call.
    retry(spin, None, || unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

fn read_exact(fd: RawFd, buf: &mut [u8], spin: bool) -> io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        let rest = &mut buf[at..];
        // SAFETY: `rest` is valid for writes of its length during the call.
        let n = retry(spin, None, || unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) })?;
        if n == 0 {
            return if at == 0 { Ok(0) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
        at += n;
    }
    Ok(at)
}

fn recv_dgram(fd: RawFd, buf: &mut [u8], spin: bool) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length during the call.
    retry(spin, None, || unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
}

fn write_all(fd: RawFd, buf: &[u8], spin: bool, dgram: bool) -> io::Result<()> {
    if dgram {
        // SAFETY: `buf` is valid for reads of its length during the call.
        retry(spin, None, || unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), 0) })?;
        return Ok(());
    }
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        // SAFETY: `rest` is valid for reads of its length during the call. MSG_NOSIGNAL is not needed:
        // pipes use write(2) (Rust ignores SIGPIPE), and a socket's write(2) is its send(2) with flags 0.
        let n = retry(spin, None, || unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) })?;
        at += n;
    }
    Ok(())
}

/// Reads one whole message (or one datagram) into `buf`: a bare read, bounded by [`STALL`] (the
/// clock when spinning, `SO_RCVTIMEO` on a blocking socket; a blocking pipe sees the child's death as
/// end of input), so a lost datagram or a dead child fails the row instead of hanging it.
fn recv_msg(ours: &Ends, buf: &mut [u8], spin: bool, dgram: bool) -> io::Result<()> {
    let fd = ours.r();
    let deadline = Some(Instant::now() + STALL);
    let mut at = 0;
    while at < buf.len() {
        let rest = &mut buf[at..];
        // SAFETY: `rest` is valid for writes of its length during the call.
        let n = retry(spin, deadline, || unsafe {
            if dgram {
                libc::recv(fd, rest.as_mut_ptr().cast(), rest.len(), 0)
            } else {
                libc::read(fd, rest.as_mut_ptr().cast(), rest.len())
            }
        })?;
        if n == 0 && !dgram {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if dgram {
            if n != buf.len() {
                return Err(io::Error::other("a datagram of the wrong size"));
            }
            return Ok(());
        }
        at += n;
    }
    Ok(())
}

/// Sets up our side: non-blocking for `spin`; a receive timeout of [`STALL`] on a blocking socket.
fn prepare(medium: Medium, ours: &Ends, spin: bool) -> io::Result<()> {
    set_nonblocking(ours.r(), spin)?;
    set_nonblocking(ours.w(), spin)?;
    if !spin && !matches!(medium, Medium::Pipe | Medium::Fifo) {
        let tv = libc::timeval { tv_sec: STALL.as_secs() as libc::time_t, tv_usec: 0 };
        // SAFETY: `tv` is a valid timeval for the duration of the call.
        let r = unsafe {
            libc::setsockopt(
                ours.r(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn parse_wait(wait: &str) -> CliResult<bool> {
    match wait {
        "block" => Ok(false),
        "spin" => Ok(true),
        other => Err(format!("raw rows run in block or spin, not {other}").into()),
    }
}

/// The round trips of a raw row: `warmup + samples` messages of `size` bytes, the last `samples`
/// recorded, each echo checked.
pub fn rtt(transport: &str, wait: &str, size: usize, warmup: u64, samples: u64) -> CliResult<Histogram<u64>> {
    let medium = Medium::of(transport)?;
    let spin = parse_wait(wait)?;
    let (ours, theirs) = medium.connect()?;
    prepare(medium, &ours, spin)?;
    let child = spawn(medium, theirs, &ours, spin, size, Job::Echo)?;
    let dgram = medium == Medium::Udp;
    let base = base_payload(size);
    let mut msg = base.clone();
    let mut reply = vec![0u8; size];
    let mut h = histogram();
    for i in 0..warmup + samples {
        stamp(&mut msg, &base, i);
        let t0 = Instant::now();
        write_all(ours.w(), &msg, spin, dgram)?;
        recv_msg(&ours, &mut reply, spin, dgram)?;
        let dt = t0.elapsed().as_nanos() as u64;
        if !verify(&reply, &base, i) {
            return Err(format!("{transport} echo returned a wrong message at {i}").into());
        }
        if i >= warmup {
            h.saturating_record(dt);
        }
    }
    end(ours, dgram, spin)?;
    child.reap()?;
    Ok(h)
}

/// Tells the child that we are done: close our end (streams) or send an empty datagram (UDP).
fn end(ours: Ends, dgram: bool, spin: bool) -> CliResult {
    if dgram {
        write_all(ours.w(), &[], spin, true)?;
    }
    drop(ours);
    Ok(())
}

/// One-way stream of `count` messages of `size` bytes, one `write` each, into a sink that reads in 64 KiB
/// chunks and acknowledges every [`sink_ack_every`] messages (at most `transports::window` in flight); returns
/// the time from the first write to the last acknowledgement.
pub fn stream(transport: &str, wait: &str, size: usize, count: u64) -> CliResult<Throughput> {
    let medium = Medium::of(transport)?;
    let spin = parse_wait(wait)?;
    let (ours, theirs) = medium.connect()?;
    prepare(medium, &ours, spin)?;
    let ack_every = sink_ack_every(size);
    let child = spawn(medium, theirs, &ours, spin, size, Job::Sink { count, ack_every })?;
    let dgram = medium == Medium::Udp;
    let base = base_payload(size);
    let mut msg = base.clone();
    let window = super::transports::window(size, dgram);
    let mut acked = 0u64;
    let mut ack = [0u8; 8];
    let t0 = Instant::now();
    for i in 0..count {
        while i - acked >= window {
            recv_msg(&ours, &mut ack, spin, dgram)?;
            acked = u64::from_le_bytes(ack);
        }
        stamp(&mut msg, &base, i);
        write_all(ours.w(), &msg, spin, dgram)?;
    }
    while acked < count {
        recv_msg(&ours, &mut ack, spin, dgram)?;
        acked = u64::from_le_bytes(ack);
    }
    let elapsed = t0.elapsed();
    end(ours, dgram, spin)?;
    child.reap()?;
    Ok(Throughput::new(count, size, elapsed))
}
