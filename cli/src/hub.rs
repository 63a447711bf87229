//! `ringwire hub`: the socket.io-style hub ([`ringwire::hub`]) as a chat server — the page at `/`, the
//! JavaScript client at `/client.js`, WebSocket at `/ws` — with the seed's server push as an option.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use ringwire::hub::{Cluster, Hub, HubConfig, HubEvent, Origins, Recovery};
use serde::Deserialize;

use crate::util::CliResult;

/// `ringwire hub` options.
#[derive(Args, Debug)]
pub struct HubArgs {
    /// Address to listen on (port 0: any free port; the line printed on start says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// The token clients must present (`?token=` or `Authorization: Bearer`); without it anyone may
    /// connect.
    #[arg(long)]
    pub token: Option<String>,
    /// An origin allowed to open a WebSocket (`scheme://host[:port]`; repeatable; `*` for any).
    /// Without it only pages the hub served itself may connect.
    #[arg(long = "origin")]
    pub origins: Vec<String>,
    /// Server push: emit a `notification` event to every connection every SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub notify_every: Option<f64>,
    /// Heartbeat: ping each client every MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 25_000)]
    pub ping_interval: u64,
    /// Heartbeat: drop a client that has not answered a ping within MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 20_000)]
    pub ping_timeout: u64,
    /// Largest message a client may send, in bytes (the connection is closed with 1009 over it).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_message: usize,
    /// Messages queued for one client before it is dropped as a slow client (close 4001).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub send_queue: usize,
    /// Open WebSocket connections at most (further handshakes get HTTP 503).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Seconds a client has to send its HTTP request.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub handshake_timeout: f64,
    /// Connection-state recovery: a client that lost its connection and comes back within
    /// --recovery-age gets its id, rooms and every event it missed, once and in order. With
    /// `--cluster redis-stream:...` it works across hubs: the client may come back to any hub of the
    /// cluster, or to this one restarted (sessions are kept in Redis, the stream is the replay log).
    #[arg(long)]
    pub recovery: bool,
    /// Recovery: events kept for replay, at most.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub recovery_window: usize,
    /// Recovery: how long events stay replayable and lost sessions are kept, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    pub recovery_age: f64,
    /// Share rooms with other hubs: `shm:NAME` (hubs on this host, a shared-memory broadcast ring),
    /// `redis-pubsub:redis://HOST:PORT/CHANNEL` (at most once) or `redis-stream:redis://HOST:PORT/KEY`
    /// (at least once, resumes after a Redis outage; with --recovery, recovery across hubs).
    #[arg(long, value_name = "ENGINE:ADDRESS")]
    pub cluster: Option<String>,
    /// Worker threads of the runtime (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Quiet: no line per connection on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn secs(s: f64, what: &str) -> CliResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{what} {s}: not a duration in seconds").into())
}

/// A chat line from a client.
#[derive(Deserialize)]
struct ChatIn {
    #[serde(default)]
    room: Option<String>,
    text: String,
}

/// Builds the hub with the chat behaviour (see ARCHITECTURE.md, "Hub protocol": `chat message`,
/// `presence`, `notification`).
pub fn chat_hub(config: HubConfig, quiet: bool) -> Hub {
    let hub = Hub::new(config);
    hub.on("chat message", {
        let hub = hub.clone();
        move |ev: &HubEvent| {
            let msg: ChatIn = match ev.decode() {
                Ok(m) => m,
                Err(e) => {
                    let _ = ev.ack(&serde_json::json!({"ok": false, "error": e.to_string()}));
                    return;
                }
            };
            let out =
                serde_json::json!({"room": msg.room, "text": msg.text, "from": &**ev.conn().id(), "at": now_ms()});
            let sent = match &msg.room {
                Some(room) if !ev.conn().rooms().iter().any(|r| r == room) => {
                    Err(format!("not in room {room:?}: join it first"))
                }
                Some(room) => hub.to(room).emit("chat message", &out).map_err(|e| e.to_string()),
                None => hub.emit("chat message", &out).map_err(|e| e.to_string()),
            };
            match sent {
                Ok(_) => {
                    let _ = ev.ack(&serde_json::json!({"ok": true}));
                }
                Err(e) => {
                    let _ = ev.ack(&serde_json::json!({"ok": false, "error": e}));
                    ev.conn().send_error("chat_refused", &e);
                }
            }
        }
    });
    // Presence: a room's other members hear of joins and leaves (the hub's default join check already
    // refuses another connection's own room).
    hub.on_join_room(|conn, room| {
        let _ = conn.to(room).emit("presence", &serde_json::json!({"room": room, "id": &**conn.id(), "event": "join"}));
    });
    hub.on_leave_room(|conn, room| {
        let _ =
            conn.to(room).emit("presence", &serde_json::json!({"room": room, "id": &**conn.id(), "event": "leave"}));
    });
    hub.on_disconnecting(move |conn, reason| {
        for room in conn.rooms() {
            if room != **conn.id() {
                let _ = conn
                    .to(&room)
                    .emit("presence", &serde_json::json!({"room": room, "id": &**conn.id(), "event": "leave"}));
            }
        }
        if !quiet {
            eprintln!("ringwire hub: {} disconnected ({} {})", conn.id(), reason.code, reason.reason);
        }
    });
    if !quiet {
        hub.on_connection(|conn| eprintln!("ringwire hub: {} connected", conn.id()));
    }
    hub
}

/// Parses `--cluster`.
fn parse_cluster(s: &str) -> CliResult<Cluster> {
    let split = |rest: &str| -> CliResult<(String, String)> {
        let (url, name) = rest
            .rsplit_once('/')
            .filter(|(u, n)| u.contains("://") && !n.is_empty())
            .ok_or_else(|| format!("--cluster {s}: expected redis://HOST:PORT/NAME after the engine"))?;
        Ok((url.to_owned(), name.to_owned()))
    };
    match s.split_once(':') {
        Some(("shm", name)) if !name.is_empty() => Ok(Cluster::shm(name)),
        Some(("redis-pubsub", rest)) => {
            let (url, channel) = split(rest)?;
            Ok(Cluster::RedisPubSub { url, channel })
        }
        Some(("redis-stream", rest)) => {
            let (url, key) = split(rest)?;
            Ok(Cluster::RedisStream { url, key, max_len: 100_000 })
        }
        _ => Err(format!("--cluster {s}: expected shm:NAME, redis-pubsub:URL/CHANNEL or redis-stream:URL/KEY").into()),
    }
}

/// Runs `ringwire hub` until SIGINT / SIGTERM.
pub fn run(args: HubArgs) -> CliResult {
    let origins = match args.origins.as_slice() {
        [] => Origins::SameHost,
        list if list.iter().any(|o| o == "*") => Origins::Any,
        list => Origins::List(list.to_vec()),
    };
    let config = HubConfig {
        token: args.token.clone(),
        origins,
        ping_interval: Duration::from_millis(args.ping_interval.max(1)),
        ping_timeout: Duration::from_millis(args.ping_timeout.max(1)),
        max_message: args.max_message,
        send_queue: args.send_queue,
        max_connections: args.max_connections,
        handshake_timeout: secs(args.handshake_timeout, "handshake-timeout")?,
        recovery: match args.recovery {
            true => {
                Some(Recovery { max_messages: args.recovery_window, max_age: secs(args.recovery_age, "recovery-age")? })
            }
            false => None,
        },
    };
    let cluster = args.cluster.as_deref().map(parse_cluster).transpose()?;
    let notify = args.notify_every.map(|s| secs(s, "notify-every")).transpose()?;
    if notify.is_some_and(|d| d.is_zero()) {
        return Err("--notify-every 0: the interval must be above zero".into());
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        let hub = chat_hub(config, args.quiet);
        if let Some(c) = cluster {
            hub.join_cluster(c).map_err(std::io::Error::other)?;
        }
        println!("ringwire hub: listening on http://{}", listener.local_addr()?);
        use std::io::Write;
        std::io::stdout().flush()?;
        if let Some(every) = notify {
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let text = format!("server push: {} connections", hub.connection_count());
                    let _ = hub.emit("notification", &serde_json::json!({"text": text, "at": now_ms()}));
                }
            });
        }
        let stop = hub.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return;
            };
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            stop.shutdown();
        });
        hub.serve(listener).await
    })?;
    Ok(())
}
