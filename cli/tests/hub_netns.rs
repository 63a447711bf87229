//! Hubs on separate hosts, for real: two network namespaces made by the test (`ip netns`, veth pairs),
//! a hub in each, one Redis in the host namespace that both reach over their links, clients in the
//! host namespace. A chat message sent on hub B reaches a room member on hub A; hub B's link to Redis
//! is cut (its veth taken down) and restored: hub B keeps answering its own client meanwhile, and
//! nothing sent during the cut is lost on the Streams path. Traffic stays on these links.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ringwire::hub::HubClient;
use ringwire_testkit::watchdog;
use serde_json::{json, Value};

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The namespaces and links; removed on drop (deleting a namespace deletes its veth ends and peers).
struct Net {
    names: Vec<String>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// A veth pair from the host to namespace `ns`: host side `h` with `10.S.N.1/24`, namespace side with
/// `10.S.N.2/24`; returns (host address, namespace address).
fn link(ns: &str, h: &str, s: u8, n: u8) -> (Ipv4Addr, Ipv4Addr) {
    let peer = format!("{h}p");
    sh(&["ip", "link", "add", h, "type", "veth", "peer", "name", &peer]);
    sh(&["ip", "link", "set", &peer, "netns", ns]);
    let (host, inside) = (Ipv4Addr::new(10, s, n, 1), Ipv4Addr::new(10, s, n, 2));
    sh(&["ip", "addr", "add", &format!("{host}/24"), "dev", h]);
    sh(&["ip", "link", "set", h, "up"]);
    sh(&["ip", "netns", "exec", ns, "ip", "addr", "add", &format!("{inside}/24"), "dev", &peer]);
    sh(&["ip", "netns", "exec", ns, "ip", "link", "set", &peer, "up"]);
    (host, inside)
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hub_in(ns: &str, listen: Ipv4Addr, cluster: &str) -> (Proc, String) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_ringwire"), "hub", "--token", "t", "--quiet"])
        .args(["--listen", &format!("{listen}:0"), "--cluster", cluster])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("ringwire hub: listening on http://").expect(&line).to_owned();
    (Proc(child), format!("ws://{addr}/ws"))
}

#[test]
fn hubs_in_two_network_namespaces_share_a_room_through_redis_streams_across_a_cut_link() {
    watchdog(Duration::from_secs(180), || {
        let pid = std::process::id();
        // Subnets and names private to this run.
        let s = 100 + (pid % 100) as u8;
        let (na, nb) = (format!("rwa{pid}"), format!("rwb{pid}"));
        let mut net = Net { names: Vec::new() };
        for n in [&na, &nb] {
            sh(&["ip", "netns", "add", n]);
            net.names.push(n.clone());
        }
        // Hub A: one link (clients and Redis). Hub B: a link for its clients, another for Redis.
        let (a_host, a_ns) = link(&na, &format!("rwa{pid}h"), s, 1);
        let (_, b_ns) = link(&nb, &format!("rwb{pid}h"), s, 2);
        let (br_host, _) = link(&nb, &format!("rwr{pid}h"), s, 3);

        // One Redis in the host namespace, listening on the two links to it only, with an
        // append-only file (Streams keep their data across what follows).
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("rw-netns-redis-{pid}"));
        std::fs::create_dir_all(&dir).unwrap();
        let _redis = Proc(
            Command::new("redis-server")
                .args(["--bind", &a_host.to_string(), &br_host.to_string(), "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "yes", "--protected-mode", "no", "--dir"])
                .arg(&dir)
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let ready = |host: Ipv4Addr| std::net::TcpStream::connect((host, port)).is_ok();
        while !ready(a_host) {
            std::thread::yield_now();
        }
        let (_ha, url_a) = hub_in(&na, a_ns, &format!("redis-stream:redis://{a_host}:{port}/hubs"));
        let (_hb, url_b) = hub_in(&nb, b_ns, &format!("redis-stream:redis://{br_host}:{port}/hubs"));

        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let (a, mut ra) = HubClient::connect(&url_a, Some("t")).await.unwrap();
            let (b, _rb) = HubClient::connect(&url_b, Some("t")).await.unwrap();
            a.join("R").await.unwrap();
            b.join("R").await.unwrap();
            let say = |text: String| {
                let b = b.clone();
                async move {
                    let reply = b
                        .emit_with_ack("chat message", &json!({"room": "R", "text": text}), Duration::from_secs(30))
                        .await
                        .unwrap();
                    assert_eq!(serde_json::from_slice::<Value>(&reply).unwrap(), json!({"ok": true}));
                }
            };
            let mut want = Vec::new();
            say("before the cut".into()).await;
            want.push("before the cut".to_owned());
            // Cut hub B's link to Redis; hub B still serves its own client (the acks come back).
            sh(&["ip", "netns", "exec", &nb, "ip", "link", "set", &format!("rwr{pid}hp"), "down"]);
            for i in 0..20 {
                say(format!("during the cut {i}")).await;
                want.push(format!("during the cut {i}"));
            }
            // The cut lasts past the redis halves' 5 s I/O timeout, so hub B's connections are given
            // up and re-made, not merely stalled: the scenario's depth, not a wait for a result.
            tokio::time::sleep(Duration::from_secs(6)).await;
            sh(&["ip", "netns", "exec", &nb, "ip", "link", "set", &format!("rwr{pid}hp"), "up"]);
            say("after the cut".into()).await;
            want.push("after the cut".to_owned());
            // a gets every one (at least once; in order of sending, duplicates aside).
            let mut got: Vec<String> = Vec::new();
            while got.len() < want.len() {
                let ev = ra.recv().await.unwrap();
                if ev.name() != "chat message" {
                    continue;
                }
                let t = ev.decode::<Value>().unwrap()["text"].as_str().unwrap().to_owned();
                if got.last() != Some(&t) && !got.contains(&t) {
                    got.push(t);
                }
            }
            assert_eq!(got, want);
        });
        drop(net);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
