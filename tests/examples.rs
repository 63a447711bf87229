//! Smoke tests of `examples/`: each example (and each pair, started in order) runs as a real process
//! and prints what its docs say, under a watchdog. The binaries are the ones `cargo test --workspace
//! --all-targets` builds (target/PROFILE/examples/NAME); the redis ones use a private redis-server, the
//! amqp one a private vhost on the machine's RabbitMQ.

use ringwire_testkit::redis_server::RedisServer;
use ringwire_testkit::watchdog;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// target/PROFILE/examples/NAME, next to this test's own directory (target/PROFILE/deps).
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().join("examples");
    let path: PathBuf = dir.join(name);
    assert!(path.exists(), "{} is missing: build the examples (cargo build --workspace --examples)", path.display());
    Command::new(path)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `cmd` and waits for its first stdout line (the "ready" line of a server or subscriber).
fn start(cmd: &mut Command) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (child, line.trim().to_string(), out)
}

fn rest(mut out: BufReader<std::process::ChildStdout>) -> String {
    let mut s = String::new();
    out.read_to_string(&mut s).unwrap();
    s
}

#[test]
fn event_emitter() {
    watchdog(LIMIT, || {
        assert!(stdout(&run(&mut example("event_emitter"))).contains("接收到消息: Hello, EventEmitter!"));
    });
}

#[test]
fn fork_events() {
    watchdog(LIMIT, || {
        let o = stdout(&run(&mut example("fork_events")));
        assert!(o.contains("Hello from parent") && o.contains("Hello from child"), "{o}");
    });
}

#[test]
fn child_stdio() {
    watchdog(LIMIT, || {
        let out = run(&mut example("child_stdio"));
        let (o, e) = (stdout(&out), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(o.contains("Received from child: Hello from child"), "{o}");
        assert!(o.contains("Received from child: Parent closed stdin"), "{o}");
        assert!(o.contains("Child process exited with code 0"), "{o}");
        assert!(e.contains("Child stderr: Received from parent: Hello from parent"), "{e}");
    });
}

#[test]
fn fork_json() {
    watchdog(LIMIT, || {
        let o = stdout(&run(&mut example("fork_json")));
        assert!(o.contains(r#"Received from parent: {"n":1,"text":"Hello from parent"}"#), "{o}");
        assert!(o.contains("Received from child:") && o.contains("Hello from child"), "{o}");
        assert!(o.contains("Child process exited with code 0"), "{o}");
    });
}

#[test]
fn shared_memory_threads_and_processes() {
    watchdog(LIMIT, || {
        let o = stdout(&run(&mut example("shared_memory_threads")));
        assert!(
            o.contains("Received from parent: Hello from parent")
                && o.contains("Received from child: Hello from child")
        );
        run(&mut example("parent_child"));
    });
}

#[test]
fn tcp_server_and_client() {
    watchdog(LIMIT, || {
        let (mut server, ready, out) = start(example("tcp_server").arg("127.0.0.1:0"));
        let addr = ready.strip_prefix("Server listening on ").expect("a listening line").to_string();
        let o = stdout(&run(example("tcp_client").arg(&addr)));
        assert!(o.contains("Connected to server") && o.contains("Received from server: Hello from server"), "{o}");
        let _ = server.kill();
        let _ = server.wait();
        assert!(rest(out).contains("Received from client: Hello from client"));
    });
}

#[test]
fn async_tcp() {
    watchdog(LIMIT, || {
        let o = stdout(&run(&mut example("async_tcp")));
        for i in 0..3 {
            assert!(o.contains(&format!("echo: async message {i}")), "{o}");
            assert!(o.contains(&format!("echo: blocking message {i}")), "{o}");
        }
    });
}

#[test]
fn udp() {
    watchdog(LIMIT, || {
        let o = stdout(&run(&mut example("udp")));
        for i in 0..3 {
            assert!(o.contains(&format!("echo: datagram {i}")), "{o}");
        }
    });
}

#[test]
fn redis_pubsub_pair_and_work_queue() {
    watchdog(LIMIT, || {
        let server = RedisServer::start().expect("start a private redis-server");
        let (mut consumer, ready, out) = start(example("redis_consumer").env("REDIS_URL", server.url()));
        assert_eq!(ready, "subscribed to channel");
        let o = stdout(&run(example("redis_producer").env("REDIS_URL", server.url())));
        assert!(o.contains("published to 1 subscriber(s)"), "{o}");
        assert!(consumer.wait().unwrap().success());
        assert!(rest(out).contains("Received from channel: Hello from producer"));
        let o = stdout(&run(example("redis_work_queue").env("REDIS_URL", server.url())));
        assert!(o.contains("12 of 12 jobs handled"), "{o}");
    });
}

#[test]
fn amqp_work_queue() {
    watchdog(LIMIT, || {
        let vhost = ringwire_testkit::rabbitmq::Vhost::create().expect("a private RabbitMQ vhost");
        let url = format!("{}/{}", ringwire_testkit::rabbitmq::broker(), vhost.name());
        let o = stdout(&run(example("amqp_work_queue").env("AMQP_URL", url)));
        assert!(o.contains("12 of 12 jobs handled"), "{o}");
    });
}

/// The two named-ring pairs use fixed names: one test runs both, one after the other.
#[test]
fn hub_chat() {
    watchdog(LIMIT, || {
        let out = stdout(&run(example("hub_chat").arg("--demo")));
        assert!(out.starts_with("chat on http://127.0.0.1:"), "{out}");
        assert!(out.contains(r#"bob got chat message: {"from":"alice","room":"lobby","text":"hello, bob"}"#), "{out}");
    });
}

#[test]
fn spsc_and_broadcast_pairs() {
    watchdog(LIMIT, || {
        let (mut producer, ready, _out) = start(&mut example("spsc_producer"));
        assert!(ready.starts_with("created"), "{ready}");
        let o = stdout(&run(&mut example("spsc_consumer")));
        assert!(o.contains("got: message 0") && o.contains("got: message 9") && o.contains("producer closed"), "{o}");
        assert!(producer.wait().unwrap().success());

        let (mut publisher, ready, pub_out) = start(&mut example("broadcast_publisher"));
        assert!(ready.starts_with("created"), "{ready}");
        let o = stdout(&run(&mut example("broadcast_subscriber")));
        for i in 0..5 {
            assert!(o.contains(&format!("got: tick {i}")), "{o}");
        }
        assert!(o.contains("publisher gone"));
        assert!(publisher.wait().unwrap().success());
        assert!(rest(pub_out).contains("published 5 ticks"));
    });
}

#[test]
fn work_queue() {
    watchdog(LIMIT, || {
        run(&mut example("work_queue"));
    });
}
