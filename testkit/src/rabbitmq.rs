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
