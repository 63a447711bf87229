//! criterion: one group per transport (`pipe`, `stdio`, `fork`, `unix`, `tcp`, `udp`, and the `shm` ring
//! transport for reference), each timing round trips of 64 B and 4 KiB messages through a
//! `ringwire __peer echo-<t>` process, the peers `ringwire bench` uses. Each reply is checked.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringwire::transport::{fork, pipe, shm, stdio, tcp, udp, unix, Receiver, Sender};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Conn {
    tx: Box<dyn Sender>,
    rx: Box<dyn Receiver>,
    _child: Option<Child>,
    _ours: Option<stdio::ChildProcess>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.tx.close();
        if let Some(c) = &mut self._child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn peer(mode: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringwire"));
    cmd.args(["__peer", mode, "--max-message", "8192"]).stdin(Stdio::null());
    cmd
}

fn conn(
    tx: impl Sender + 'static,
    rx: impl Receiver + 'static,
    child: Option<Child>,
    ours: Option<stdio::ChildProcess>,
) -> Conn {
    Conn { tx: Box::new(tx), rx: Box::new(rx), _child: child, _ours: ours }
}

fn connect(transport: &str) -> Conn {
    let tmp = std::env::temp_dir().join(format!("ringwire-crit-{transport}-{}", std::process::id()));
    match transport {
        "stdio" => {
            let (tx, rx, c) = stdio::spawn(&mut peer("echo-stdio")).unwrap();
            conn(tx, rx, None, Some(c))
        }
        "fork" => {
            let (tx, rx, c) = fork::spawn(&mut peer("echo-fork")).unwrap();
            conn(tx, rx, None, Some(c))
        }
        "pipe" => {
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir(&tmp).unwrap();
            pipe::create_fifo(tmp.join("down")).unwrap();
            pipe::create_fifo(tmp.join("up")).unwrap();
            let child = peer("echo-fifo").args(["--addr", tmp.to_str().unwrap()]).spawn().unwrap();
            let tx = pipe::open_fifo_sender(tmp.join("down")).unwrap();
            let rx = pipe::open_fifo_receiver(tmp.join("up")).unwrap();
            std::fs::remove_dir_all(&tmp).unwrap();
            conn(tx, rx, Some(child), None)
        }
        "unix" => {
            let _ = std::fs::remove_file(&tmp);
            let listener = unix::Listener::bind(&tmp).unwrap();
            let child = peer("echo-unix").args(["--addr", tmp.to_str().unwrap()]).spawn().unwrap();
            let (tx, rx) = listener.accept().unwrap();
            conn(tx, rx, Some(child), None)
        }
        "tcp" => {
            let listener = tcp::Listener::bind("127.0.0.1:0").unwrap();
            let child = peer("echo-tcp").args(["--addr", &listener.local_addr().unwrap().to_string()]).spawn().unwrap();
            let (tx, rx, _) = listener.accept().unwrap();
            conn(tx, rx, Some(child), None)
        }
        "udp" => {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let child = peer("echo-udp").args(["--addr", &sock.local_addr().unwrap().to_string()]).spawn().unwrap();
            let mut hello = [0u8; 64];
            let (_, from) = sock.recv_from(&mut hello).unwrap();
            sock.connect(from).unwrap();
            let (tx, rx) = udp::from_socket(sock).unwrap();
            conn(tx, rx, Some(child), None)
        }
        "shm" => {
            let duplex = shm::Duplex::anonymous(ringwire::RingConfig::default()).unwrap();
            let mut cmd = peer("echo-shm");
            duplex.share_with(&mut cmd);
            let child = cmd.spawn().unwrap();
            let (tx, rx) = duplex.parent().unwrap();
            conn(tx, rx, Some(child), None)
        }
        other => panic!("no transport {other}"),
    }
}

fn transports(c: &mut Criterion) {
    for transport in ["shm", "pipe", "stdio", "fork", "unix", "tcp", "udp"] {
        let mut g = c.benchmark_group(format!("rtt/{transport}"));
        for size in [64usize, 4096] {
            g.bench_function(BenchmarkId::from_parameter(size), |b| {
                let mut conn = connect(transport);
                let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
                b.iter_custom(|iters| {
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        conn.tx.send(&msg).unwrap();
                        let reply = conn.rx.recv_deadline(Instant::now() + Duration::from_secs(30)).unwrap();
                        assert_eq!(reply, msg);
                    }
                    t0.elapsed()
                });
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = transports
}
criterion_main!(benches);
