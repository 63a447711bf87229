//! A private RabbitMQ virtual host on the machine's broker (127.0.0.1:5672, or `$RINGWIRE_AMQP_URL`),
//! made with `rabbitmqctl` and deleted (with its queues and connections) when dropped, so that tests
//! neither see nor disturb each other or anyone else using the broker.

use std::io;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The broker the tests use: `$RINGWIRE_AMQP_URL` or `amqp://127.0.0.1:5672`.
pub fn broker() -> String {
    std::env::var("RINGWIRE_AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672".into())
}

/// Runs `rabbitmqctl ARGS`; an error carries its output.
pub fn rabbitmqctl(args: &[&str]) -> io::Result<String> {
    let out = Command::new("rabbitmqctl").args(args).stdin(Stdio::null()).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "rabbitmqctl {}: {}{}",
            args.join(" "),
            text,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(text)
}

/// A virtual host of our own, `ringwire-test-PID-N`, which the user `guest` may use.
pub struct Vhost {
    name: String,
}

impl Vhost {
    /// Creates the vhost and gives `guest` every permission on it.
    pub fn create() -> io::Result<Vhost> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("ringwire-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        rabbitmqctl(&["add_vhost", &name])?;
        let v = Vhost { name };
        rabbitmqctl(&["set_permissions", "-p", &v.name, "guest", ".*", ".*", ".*"])?;
        Ok(v)
    }

    /// The vhost's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ringwire address of `queue` in this vhost.
    pub fn addr(&self, queue: &str) -> String {
        format!("{}/{}/{queue}", broker(), self.name)
    }

    /// Closes every client connection to this vhost (what a broker restart or a network failure does to
    /// them), and returns once the broker has done it.
    pub fn close_connections(&self) -> io::Result<()> {
        rabbitmqctl(&["close_all_connections", "--vhost", &self.name, "ringwire test: connection loss"]).map(drop)
    }

    /// Messages in `queue` (ready and unacknowledged), as the queue process says now.
    pub fn queue_len(&self, queue: &str) -> io::Result<u64> {
        let out = rabbitmqctl(&["list_queues", "-q", "--no-table-headers", "-p", &self.name, "name", "messages"])?;
        for line in out.lines() {
            let mut f = line.split_whitespace();
            if f.next() == Some(queue) {
                return f.next().and_then(|n| n.parse().ok()).ok_or_else(|| io::Error::other(line.to_string()));
            }
        }
        Err(io::Error::other(format!("no queue {queue} in {out}")))
    }

    /// Client connections the broker has open to this vhost now.
    pub fn connections(&self) -> io::Result<usize> {
        let out = rabbitmqctl(&["list_connections", "-q", "--no-table-headers", "vhost"])?;
        Ok(out.lines().filter(|l| l.trim() == self.name).count())
    }

    /// Deletes `queue`.
    pub fn delete_queue(&self, queue: &str) -> io::Result<()> {
        rabbitmqctl(&["delete_queue", "-p", &self.name, queue]).map(drop)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.name]);
    }
}

/// A RabbitMQ node of our own (`rwtest-PID@localhost`, its own AMQP port, data and logs in a temporary
/// directory, no plugins), for what can't be done to the machine's broker without disturbing every
/// other test: restarting it. Stopped (and its directory removed) when dropped.
pub struct PrivateBroker {
    node: String,
    port: u16,
    dir: std::path::PathBuf,
}

impl PrivateBroker {
    /// Starts the node and waits for it to boot (`rabbitmqctl await_startup`).
    pub fn start() -> io::Result<PrivateBroker> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dist = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let node = format!("rwtest-{}-{port}@localhost", std::process::id());
        let dir = std::env::temp_dir().join(format!("rw-rabbit-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("log"))?;
        let plugins = dir.join("enabled_plugins");
        std::fs::write(&plugins, "[].\n")?;
        // Its own configuration (the machine's pins the listener to 5672) and environment file.
        let conf = dir.join("rabbitmq.conf");
        std::fs::write(&conf, format!("listeners.tcp.local = 127.0.0.1:{port}\nloopback_users = none\n"))?;
        let env_file = dir.join("rabbitmq-env.conf");
        std::fs::write(&env_file, "ERL_EPMD_ADDRESS=127.0.0.1\n")?;
        // rabbitmq-server runs as the `rabbitmq` user: the directory must be its to write.
        let _ = Command::new("chown").args(["-R", "rabbitmq:rabbitmq"]).arg(&dir).status();
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_CONFIG_FILE", &conf)
            .env("RABBITMQ_CONF_ENV_FILE", &env_file)
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(io::Error::other(format!("rabbitmq-server -detached for {node}: {status}")));
        }
        let b = PrivateBroker { node, port, dir };
        // `-detached` returns before the node has registered; `await_startup` needs it registered.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            match b.ctl(&["await_startup", "--timeout", "120"]) {
                Ok(_) => return Ok(b),
                Err(e) if std::time::Instant::now() > until => return Err(e),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(250)),
            }
        }
    }

    fn ctl(&self, args: &[&str]) -> io::Result<String> {
        let mut all = vec!["-n", &self.node];
        all.extend_from_slice(args);
        rabbitmqctl(&all)
    }

    /// The AMQP address of `queue` on this node (vhost `/`).
    pub fn addr(&self, queue: &str) -> String {
        format!("amqp://127.0.0.1:{}/{queue}", self.port)
    }

    /// Stops the broker application (every connection drops; durable queues and persistent messages
    /// stay on disk).
    pub fn stop_app(&self) -> io::Result<()> {
        self.ctl(&["stop_app"]).map(drop)
    }

    /// Starts it again and waits until it serves.
    pub fn start_app(&self) -> io::Result<()> {
        self.ctl(&["start_app"])?;
        self.ctl(&["await_startup", "--timeout", "120"]).map(drop)
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
