//! The seed's socket.io chat, embedded: a hub with the application's own handlers (a `chat message`
//! relayed to the sender's room, `/nick` renames, server push every 5 s), served with its browser page.
//!
//! ```sh
//! cargo run --example hub_chat --features hub            # then open the printed URL in two tabs
//! cargo run --example hub_chat --features hub -- --demo  # two Rust clients talk, then it exits
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringwire::hub::{Hub, HubClient, HubConfig, HubEvent};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let demo = std::env::args().any(|a| a == "--demo");
    let token = "let-me-in";
    let hub = Hub::new(HubConfig { token: Some(token.into()), ..HubConfig::default() });
    let nicks: Arc<Mutex<HashMap<String, String>>> = Arc::default();

    // socket.io: socket.on('chat message', (msg) => io.to(room).emit('chat message', msg))
    hub.on("chat message", {
        let (hub, nicks) = (hub.clone(), nicks.clone());
        move |ev: &HubEvent| {
            let Ok(msg) = ev.decode::<serde_json::Value>() else { return };
            let text = msg["text"].as_str().unwrap_or_default();
            let room = msg["room"].as_str().unwrap_or("lobby");
            let id = ev.conn().id().to_string();
            if let Some(nick) = text.strip_prefix("/nick ") {
                nicks.lock().unwrap().insert(id, nick.trim().to_owned());
                let _ = ev.ack(&json!({"ok": true}));
                return;
            }
            let from = nicks.lock().unwrap().get(&id).cloned().unwrap_or(id);
            let _ = hub.to(room).emit("chat message", &json!({"room": room, "text": text, "from": from}));
            let _ = ev.ack(&json!({"ok": true}));
        }
    });
    // Every connection starts in the lobby (the page lets a user join others).
    hub.on_connection(|conn| {
        conn.join("lobby");
    });
    hub.on_disconnect({
        let nicks = nicks.clone();
        move |conn, _| {
            nicks.lock().unwrap().remove(&**conn.id());
        }
    });

    let listener = tokio::net::TcpListener::bind(std::env::var("HUB_ADDR").unwrap_or("127.0.0.1:0".into())).await?;
    let addr = listener.local_addr()?;
    println!("chat on http://{addr}/?token={token}");
    let server = tokio::spawn({
        let hub = hub.clone();
        async move { hub.serve(listener).await }
    });

    // Server push, as the seed's "a notification every 5 seconds".
    tokio::spawn({
        let hub = hub.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(if demo { 0 } else { 5 }.max(1)));
            loop {
                tick.tick().await;
                let _ = hub.emit("notification", &json!({"text": format!("{} online", hub.connection_count())}));
            }
        }
    });

    if demo {
        let url = format!("ws://{addr}/ws");
        let (alice, _) = HubClient::connect(&url, Some(token)).await?;
        let (bob, mut bob_events) = HubClient::connect(&url, Some(token)).await?;
        alice.emit_with_ack("chat message", &json!({"text": "/nick alice"}), Duration::from_secs(5)).await?;
        alice.emit_with_ack("chat message", &json!({"text": "hello, bob"}), Duration::from_secs(5)).await?;
        while let Some(ev) = bob_events.recv().await {
            let v: serde_json::Value = ev.decode()?;
            println!("bob got {}: {v}", ev.name());
            if ev.name() == "chat message" && v["from"] == "alice" {
                break;
            }
        }
        bob.close().await;
        hub.shutdown();
    }
    server.await??;
    Ok(())
}
