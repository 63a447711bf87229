//! `ringwire hub --cluster shm:NAME`: two hub processes on this host share rooms through a
//! shared-memory broadcast ring; a chat message sent on one reaches the room's members on the other.
//! (The engines themselves, Redis included, are tested in tests/hub.rs.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ringwire::hub::HubClient;
use ringwire_testkit::watchdog;
use serde_json::{json, Value};

struct Hub(Child, String);

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hub(cluster: &str) -> Hub {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringwire"))
        .args(["hub", "--listen", "127.0.0.1:0", "--token", "t", "--quiet", "--cluster", cluster])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("ringwire hub: listening on http://").expect(&line).to_owned();
    Hub(child, format!("ws://{addr}/ws"))
}

#[test]
fn two_hub_processes_share_a_room_through_shared_memory() {
    watchdog(Duration::from_secs(120), || {
        let name = format!("rw-hub-cli-cluster-{}", std::process::id());
        let (h1, h2) = (hub(&format!("shm:{name}")), hub(&format!("shm:{name}")));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let (a, mut ra) = HubClient::connect(&h1.1, Some("t")).await.unwrap();
            let (b, mut rb) = HubClient::connect(&h2.1, Some("t")).await.unwrap();
            a.join("R").await.unwrap();
            b.join("R").await.unwrap();
            let reply = b
                .emit_with_ack("chat message", &json!({"room": "R", "text": "across"}), Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(serde_json::from_slice::<Value>(&reply).unwrap(), json!({"ok": true}));
            for rx in [&mut ra, &mut rb] {
                loop {
                    let ev = rx.recv().await.unwrap();
                    if ev.name() == "chat message" {
                        let v: Value = ev.decode().unwrap();
                        assert_eq!((v["text"].as_str(), v["from"].as_str()), (Some("across"), Some(&*b.id())));
                        break;
                    }
                }
            }
        });
        drop((h1, h2));
        let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    });
}
