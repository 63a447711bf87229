//! `ringwire echo` and `ringwire cat` end to end, over each transport they support: cat sends its
//! stdin lines as frames through a real echo process and prints the replies.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

/// Every test here runs under a watchdog that fails it (as a hang) after this long.
const TEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// An `echo` server, killed and reaped on drop.
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_echo(transport: &str, listen: &str) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringwire"))
        .args(["echo", "--transport", transport, "--listen", listen])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn ringwire echo");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).expect("read echo's first line");
    let addr = first.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("echo said {first:?}")).to_string();
    (Server(child), addr)
}

fn cat(transport: &str, addr: &str, input: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringwire"))
        .args(["cat", "--transport", transport, "--connect", addr, "--timeout", "30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn ringwire cat");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "cat failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const INPUT: &str = "hello\nworld, with spaces\n\nlast line\n";

#[test]
fn echo_and_cat_over_tcp() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (_server, addr) = start_echo("tcp", "127.0.0.1:0");
        assert_eq!(cat("tcp", &addr, INPUT), INPUT);
        // The server keeps serving new clients.
        assert_eq!(cat("tcp", &addr, "again\n"), "again\n");
    });
}

#[test]
fn echo_and_cat_over_udp() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (_server, addr) = start_echo("udp", "127.0.0.1:0");
        assert_eq!(cat("udp", &addr, INPUT), INPUT);
    });
}

#[test]
fn echo_and_cat_over_unix() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let path = std::env::temp_dir().join(format!("ringwire-tools-{}.sock", std::process::id()));
        let (_server, addr) = start_echo("unix", path.to_str().unwrap());
        assert_eq!(cat("unix", &addr, INPUT), INPUT);
    });
}

#[test]
fn echo_and_cat_over_shm() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let name = format!("ringwire-tools-{}", std::process::id());
        let (_server, addr) = start_echo("shm", &name);
        assert_eq!(cat("shm", &addr, INPUT), INPUT);
    });
}

#[test]
fn echo_and_cat_over_websocket() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let (_server, addr) = start_echo("websocket", "ws://127.0.0.1:0/echo");
        assert!(addr.starts_with("ws://127.0.0.1:") && addr.ends_with("/echo"), "{addr}");
        assert_eq!(cat("websocket", &addr, INPUT), INPUT);
        assert_eq!(cat("websocket", &addr, "again\n"), "again\n");
    });
}

#[test]
fn echo_and_cat_over_redis_pubsub() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let redis = ringwire_testkit::redis_server::RedisServer::start().expect("start a private redis-server");
        let (_server, addr) = start_echo("redis", &format!("{}/chat", redis.url()));
        assert_eq!(addr, format!("{}/chat", redis.url()));
        assert_eq!(cat("redis", &addr, INPUT), INPUT);
        assert_eq!(cat("redis", &addr, "again\n"), "again\n");
    });
}

#[test]
fn echo_and_cat_over_amqp() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        // A vhost of our own on the machine's RabbitMQ, deleted (queues and all) at the end.
        let vhost = ringwire_testkit::rabbitmq::Vhost::create().expect("a private RabbitMQ vhost");
        let (_server, addr) = start_echo("amqp", &vhost.addr("chat"));
        assert_eq!(addr, vhost.addr("chat"));
        assert_eq!(cat("amqp", &addr, INPUT), INPUT);
        // Each cat acknowledges its replies: the next one gets only its own.
        assert_eq!(cat("amqp", &addr, "again\n"), "again\n");
        // The broker closes every connection of the vhost; echo reconnects and serves again.
        vhost.close_connections().unwrap();
        assert_eq!(cat("amqp", &addr, "after the outage\n"), "after the outage\n");
    });
}

#[test]
fn unknown_transport_or_bad_address_is_an_error() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        for (t, addr) in [
            ("carrier-pigeon", "x"),
            ("redis", "x"),
            ("websocket", "x"),
            ("redis", "redis://127.0.0.1:1/c"),
            ("amqp", "x"),
            ("amqp", "amqp://127.0.0.1:1/q"),
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_ringwire"))
                .args(["cat", "--transport", t, "--connect", addr])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(!out.status.success(), "{t} {addr}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.starts_with("ringwire: "), "{err}");
        }
    });
}
