//! `ringwire bench --quick --json` end to end: it runs, and its output has the documented schema. This
//! checks the tool, not any timing.

use serde_json::Value;
use std::process::Command;

/// Every test here runs under a watchdog that fails it (as a hang) after this long.
const TEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

fn run(args: &[&str]) -> Value {
    let out =
        Command::new(env!("CARGO_BIN_EXE_ringwire")).arg("bench").args(args).output().expect("run ringwire bench");
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn number(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = cur.get(p).unwrap_or_else(|| panic!("missing {path:?} in {v}"));
    }
    cur.as_f64().unwrap_or_else(|| panic!("{path:?} is not a number in {v}"))
}

#[test]
fn quick_json_has_the_documented_schema() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let doc = run(&["--quick", "--json"]);
        let machine = doc.get("machine").expect("machine");
        assert!(machine.get("cpu").and_then(Value::as_str).is_some());
        assert!(machine.get("cpus").and_then(Value::as_u64).is_some_and(|n| n >= 1));
        let results = doc.get("results").and_then(Value::as_array).expect("results array");
        let mut seen = Vec::new();
        for r in results {
            let transport = r["transport"].as_str().expect("transport");
            let wait = r["wait"].as_str().expect("wait");
            let size = r["size"].as_u64().expect("size");
            seen.push((transport.to_string(), wait.to_string(), size));
            for k in ["p50", "p90", "p99", "p999", "max"] {
                assert!(number(r, &["rtt_ns", k]) > 0.0, "{transport}: rtt {k}");
            }
            let (p50, p99, max) =
                (number(r, &["rtt_ns", "p50"]), number(r, &["rtt_ns", "p99"]), number(r, &["rtt_ns", "max"]));
            assert!(p50 <= p99 && p99 <= max, "{transport}: percentiles out of order");
            assert!(number(r, &["throughput", "msgs_per_sec"]) > 0.0);
            let bps = number(r, &["throughput", "bytes_per_sec"]);
            assert!((bps / number(r, &["throughput", "msgs_per_sec"]) - size as f64).abs() < 1e-6 * size as f64 + 1e-9);
            assert!(number(r, &["limit_ratio", "rtt_p50"]) > 0.0);
            assert!(number(r, &["limit_ratio", "throughput"]) > 0.0);
        }
        for size in [64, 4096] {
            for (t, w) in [("limit", "spin"), ("shm-spsc", "spin"), ("shm-spsc", "adaptive"), ("crossbeam", "block")] {
                assert!(seen.contains(&(t.into(), w.into(), size)), "missing row {t}/{w}/{size}: {seen:?}");
            }
        }
        // The fan-out group (`hub`) is part of the default run: its sections are there.
        assert!(doc["fanout"].is_array() && doc["fanout_memory"].is_array(), "{doc}");
    });
}

/// Whether the socket.io reference can run here: node, and socket.io installed in tests/js.
fn socketio_available() -> bool {
    let modules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/js/node_modules/socket.io");
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    node && modules.join("package.json").is_file()
}

/// The fields of one fan-out row (no timing is judged: only that the numbers are there and sane).
fn check_fanout_row(r: &Value) {
    let who = format!("{} {}", r["server"], r["clients"]);
    assert_eq!(r["size"], 64, "{who}");
    assert!(r["samples"].as_u64().is_some_and(|n| n > 0), "{who}");
    for k in ["p50", "p90", "p99", "p999", "max"] {
        assert!(number(r, &["latency_ns", k]) > 0.0, "{who}: latency {k}");
    }
    assert!(number(r, &["latency_ns", "p50"]) <= number(r, &["latency_ns", "max"]), "{who}");
    let (dps, bps) =
        (number(r, &["throughput", "deliveries_per_sec"]), number(r, &["throughput", "broadcasts_per_sec"]));
    assert!(dps > 0.0 && bps > 0.0, "{who}");
    let clients = r["clients"].as_f64().unwrap();
    assert!((dps / bps - clients).abs() < 1e-6 * clients, "{who}: deliveries = broadcasts x clients");
    assert!(number(r, &["throughput", "window"]) >= 1.0, "{who}");
    for k in ["server_ns_per_delivery", "client_ns_per_delivery", "server_cores", "client_cores"] {
        assert!(number(r, &["cpu", k]) >= 0.0, "{who}: cpu {k}");
    }
}

#[test]
fn the_hub_group_runs_fanout_rows_against_socketio_and_reports_idle_memory() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let doc = run(&[
            "--quick",
            "--json",
            "--transports",
            "hub",
            "--fanout-clients",
            "1,5",
            "--fanout-secs",
            "0.2",
            "--fanout-idle",
            "20",
        ]);
        assert_eq!(doc["results"].as_array().map(Vec::len), Some(0), "only the fan-out group ran");
        let rows = doc["fanout"].as_array().expect("fanout array");
        let find = |server: &str, n: u64| rows.iter().find(|r| r["server"] == server && r["clients"] == n);
        let memory = doc["fanout_memory"].as_array().expect("fanout_memory array");
        let servers = if socketio_available() { vec!["socket.io", "hub"] } else { vec!["hub"] };
        for server in &servers {
            for n in [1, 5] {
                check_fanout_row(find(server, n).unwrap_or_else(|| panic!("no {server} row for {n} clients: {doc}")));
            }
            let m =
                memory.iter().find(|m| m["server"] == *server).unwrap_or_else(|| panic!("no {server} memory: {doc}"));
            assert_eq!(m["connections"], 20);
            assert!(number(m, &["rss_before"]) > 0.0 && number(m, &["rss_after"]) > 0.0, "{m}");
            assert!(number(m, &["bytes_per_connection"]) >= 0.0, "{m}");
        }
        for n in [1, 5] {
            let hub = find("hub", n).unwrap();
            if socketio_available() {
                for k in ["throughput", "latency_p50", "latency_p99", "p99_to_socketio_p50"] {
                    assert!(number(hub, &["socketio_ratio", k]) > 0.0, "hub {n}: socketio_ratio.{k}");
                }
                assert!(find("socket.io", n).unwrap()["socketio_ratio"].is_null());
            } else {
                // No reference here: its rows are listed as skipped, with the reason.
                assert!(hub["socketio_ratio"].is_null());
                let skipped = doc["skipped"].as_array().unwrap();
                assert!(skipped.iter().any(|s| s["transport"] == "socket.io" && s["clients"] == n), "{doc}");
            }
        }
    });
}

#[test]
fn the_hub_cluster_group_runs_two_process_rows_over_shm_and_redis() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let server = ringwire_testkit::redis_server::RedisServer::start().expect("start a private redis-server");
        let url = server.url();
        let doc = run(&[
            "--quick",
            "--json",
            "--transports",
            "hub-cluster",
            "--fanout-clients",
            "1,4",
            "--fanout-secs",
            "0.2",
            "--fanout-idle",
            "10",
            "--redis",
            &url,
        ]);
        let rows = doc["fanout"].as_array().expect("fanout array");
        let find = |server: &str, n: u64| rows.iter().find(|r| r["server"] == server && r["clients"] == n);
        let mut two = vec!["hub-2-shm", "hub-2-redis-stream", "hub-2-redis-pubsub"];
        if socketio_available() {
            two.push("socket.io-2-redis");
        }
        for server in &two {
            let r = find(server, 4).unwrap_or_else(|| panic!("no {server} row for 4 clients: {doc}"));
            check_fanout_row(r);
            assert_eq!(r["processes"], 2, "{r}");
            // A room of one has nobody on the second process: no such row.
            assert!(find(server, 1).is_none(), "{doc}");
            if server.starts_with("hub") {
                for k in ["throughput", "latency_p50", "latency_p99"] {
                    assert!(number(r, &["one_hub_ratio", k]) > 0.0, "{server}: one_hub_ratio.{k}");
                    if socketio_available() {
                        assert!(
                            number(r, &["socketio_ratio", k]) > 0.0,
                            "{server}: socketio_ratio.{k} (vs socket.io-2-redis)"
                        );
                    }
                }
            }
        }
        // The one-process rows run too, as the baselines.
        check_fanout_row(find("hub", 4).expect("the one-hub row"));
        assert_eq!(find("hub", 4).unwrap()["processes"], 1);
        assert_eq!(find("hub-2-shm", 4).unwrap()["engine"], "shm");
        // What the deployments left is removed: the stream, the shm ring.
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut server.connection().unwrap()).unwrap();
        assert!(keys.is_empty(), "{keys:?}");
        let pid_tag = "ringwire-bench-fanout-";
        let left: Vec<_> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(pid_tag))
            .collect();
        // (Another bench run on this machine may hold one of its own; ours is gone when the run ends.)
        let child_tags: Vec<_> =
            left.iter().filter(|n| !std::path::Path::new("/proc").join(&n[pid_tag.len()..]).exists()).collect();
        assert!(child_tags.is_empty(), "left behind: {child_tags:?}");
    });
}

#[test]
fn without_socketio_the_reference_rows_are_skipped_and_the_hub_rows_still_run() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let args = [
            "--quick",
            "--transports",
            "hub",
            "--fanout-clients",
            "2",
            "--fanout-secs",
            "0.1",
            "--fanout-idle",
            "5",
            "--socketio-dir",
            "/nonexistent/ringwire-js",
        ];
        let doc = run(&[&["--json"][..], &args].concat());
        let skipped = doc["skipped"].as_array().expect("skipped array");
        assert_eq!(skipped.len(), 1, "{doc}");
        assert_eq!(skipped[0]["transport"], "socket.io");
        assert_eq!(skipped[0]["clients"], 2);
        assert!(skipped[0]["reason"].as_str().unwrap().contains("/nonexistent/ringwire-js"), "{doc}");
        let rows = doc["fanout"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{doc}");
        assert_eq!(rows[0]["server"], "hub");
        check_fanout_row(&rows[0]);
        assert!(rows[0]["socketio_ratio"].is_null());
        let memory = doc["fanout_memory"].as_array().unwrap();
        assert_eq!(memory.len(), 1);
        assert_eq!(memory[0]["server"], "hub");
        // The table has the section, the skipped reference and the idle memory.
        let out = Command::new(env!("CARGO_BIN_EXE_ringwire")).arg("bench").args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains("fan-out:"), "{table}");
        assert!(table.lines().any(|l| l.starts_with("hub") && l.contains('|')), "{table}");
        assert!(table.lines().any(|l| l.starts_with("socket.io") && l.contains("skipped")), "{table}");
        assert!(table.contains("idle memory: hub"), "{table}");
    });
}

#[test]
fn transports_and_sizes_select_rows() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let doc = run(&["--quick", "--json", "--transports", "shm-spsc", "--sizes", "100"]);
        let rows = doc["results"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "spin and adaptive");
        assert!(rows.iter().all(|r| r["transport"] == "shm-spsc" && r["size"] == 100));
    });
}

#[test]
fn events_rows_report_their_raw_ratio() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let doc =
            run(&["--quick", "--json", "--transports", "shm-spsc,shm-spsc+events,tcp,tcp+events", "--sizes", "64"]);
        let rows = doc["results"].as_array().unwrap();
        let find = |t: &str, w: &str| rows.iter().find(|r| r["transport"] == t && r["wait"] == w).expect(t);
        for (t, w) in [("shm-spsc+events", "spin"), ("tcp+events", "block")] {
            let r = find(t, w);
            assert!(number(r, &["raw_ratio", "rtt_p50"]) > 0.0, "{t}: raw_ratio");
            assert!(number(r, &["raw_ratio", "throughput"]) > 0.0, "{t}: raw_ratio");
        }
        assert!(find("tcp", "block")["raw_ratio"].is_null(), "raw rows have no raw_ratio");
    });
}

/// A kernel transport brings its raw mechanism (`raw-pipe`, `raw-udp`, block and spin) into the run,
/// and each of its rows reports its ratio to it; a `+batch` row reports its ratio to the plain row.
#[test]
fn kernel_rows_report_their_raw_mechanism_and_batch_rows_their_gain() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let doc = run(&["--quick", "--json", "--transports", "pipe,pipe+batch,udp", "--sizes", "64"]);
        let rows = doc["results"].as_array().unwrap();
        let skipped = doc["skipped"].as_array().unwrap();
        let ran = |t: &str, w: &str| rows.iter().find(|r| r["transport"] == t && r["wait"] == w);
        for w in ["block", "spin"] {
            assert!(ran("raw-pipe", w).is_some(), "raw-pipe {w} added to the run");
            assert!(ran("raw-pipe", w).unwrap()["mechanism"].is_null(), "a raw row has no mechanism");
        }
        for (t, w, raw) in
            [("pipe", "block", "raw-pipe"), ("pipe", "adaptive", "raw-pipe"), ("pipe+batch", "spin", "raw-pipe")]
        {
            let r = ran(t, w).unwrap_or_else(|| panic!("{t} {w} ran"));
            assert_eq!(r["mechanism"], raw, "{t} {w}");
            assert!(number(r, &["mechanism_ratio", "rtt_p50"]) > 0.0, "{t} {w}: mechanism_ratio");
            assert!(number(r, &["mechanism_ratio", "throughput"]) > 0.0, "{t} {w}: mechanism_ratio");
        }
        let b = ran("pipe+batch", "block").expect("pipe+batch block ran");
        assert!(number(b, &["raw_ratio", "throughput"]) > 0.0, "pipe+batch: ratio to pipe");
        // UDP may lose a datagram on a loaded machine (the row is then skipped, not failed): either way
        // raw-udp was part of the run.
        let listed = |t: &str| rows.iter().any(|r| r["transport"] == t) || skipped.iter().any(|r| r["transport"] == t);
        assert!(listed("raw-udp") && listed("udp"));
    });
}

/// The rings' `+batch` rows (buffered publication) run and report their ratio to the plain ring row.
#[test]
fn ring_batch_rows_report_their_ratio_to_the_plain_ring() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let doc = run(&[
            "--quick",
            "--json",
            "--transports",
            "shm-spsc,shm-spsc+batch,shm-mpmc,shm-mpmc+batch,shm-broadcast,shm-broadcast+batch",
            "--sizes",
            "64",
        ]);
        let rows = doc["results"].as_array().unwrap();
        for t in ["shm-spsc+batch", "shm-mpmc+batch", "shm-broadcast+batch"] {
            let r = rows.iter().find(|r| r["transport"] == t && r["wait"] == "spin").expect(t);
            assert!(number(r, &["throughput", "msgs_per_sec"]) > 0.0, "{t}");
            assert!(number(r, &["raw_ratio", "rtt_p50"]) > 0.0, "{t}: ratio to the plain row");
            assert!(number(r, &["raw_ratio", "throughput"]) > 0.0, "{t}: ratio to the plain row");
        }
    });
}

#[test]
fn async_row_reports_its_ratio_to_the_blocking_row() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let doc = run(&["--quick", "--json", "--transports", "shm-spsc,shm-spsc+async", "--sizes", "64"]);
        let rows = doc["results"].as_array().unwrap();
        let r = rows.iter().find(|r| r["transport"] == "shm-spsc+async" && r["wait"] == "adaptive").expect("async row");
        assert!(number(r, &["rtt_ns", "p50"]) > 0.0);
        assert!(number(r, &["raw_ratio", "rtt_p50"]) > 0.0, "ratio to shm-spsc adaptive");
        assert!(number(r, &["raw_ratio", "throughput"]) > 0.0, "ratio to shm-spsc adaptive");
    });
}

#[test]
fn unknown_transport_is_an_error() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let out = Command::new(env!("CARGO_BIN_EXE_ringwire"))
            .args(["bench", "--transports", "carrier-pigeon"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("unknown transport"));
    });
}

#[test]
fn plot_writes_an_svg() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let path = std::env::temp_dir().join(format!("ringwire-plot-{}.svg", std::process::id()));
        run(&[
            "--quick",
            "--json",
            "--transports",
            "limit,shm-spsc",
            "--sizes",
            "64",
            "--plot",
            path.to_str().unwrap(),
        ]);
        let svg = std::fs::read_to_string(&path).expect("plot written");
        let _ = std::fs::remove_file(&path);
        assert!(svg.contains("<svg") && svg.contains("shm-spsc spin 64B") && svg.contains("round trip"));
    });
}

#[test]
fn redis_rows_without_a_server_are_listed_as_skipped_and_the_run_goes_on() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        // Port 1: nothing listens there.
        let doc = run(&[
            "--quick",
            "--json",
            "--transports",
            "redis-pubsub,redis-stream,shm-spsc",
            "--sizes",
            "64",
            "--redis",
            "redis://127.0.0.1:1",
        ]);
        let rows = doc["results"].as_array().unwrap();
        assert!(rows.iter().all(|r| r["transport"] == "shm-spsc"), "{rows:?}");
        assert_eq!(rows.len(), 2, "spin and adaptive still ran");
        let skipped = doc["skipped"].as_array().expect("skipped array");
        let names: Vec<_> =
            skipped.iter().map(|s| (s["transport"].as_str().unwrap(), s["wait"].as_str().unwrap())).collect();
        // Each redis row in both modes: a round trip per send (block), a window in flight (pipelined).
        assert_eq!(
            names,
            [
                ("redis-pubsub", "block"),
                ("redis-pubsub", "pipelined"),
                ("redis-stream", "block"),
                ("redis-stream", "pipelined")
            ]
        );
        for s in skipped {
            assert_eq!(s["size"], 64);
            assert!(s["reason"].as_str().unwrap().contains("127.0.0.1:1"), "{s}");
        }
        // The table lists them too.
        let out = Command::new(env!("CARGO_BIN_EXE_ringwire"))
            .args(["bench", "--quick", "--transports", "redis-pubsub", "--sizes", "64", "--redis", "127.0.0.1:1"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.lines().any(|l| l.starts_with("redis-pubsub") && l.contains("skipped")), "{table}");
    });
}

#[test]
fn a_quick_websocket_row_runs() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let doc = run(&["--quick", "--json", "--transports", "websocket", "--sizes", "64"]);
        let rows = doc["results"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{doc}");
        assert_eq!(rows[0]["transport"], "websocket");
        assert!(number(&rows[0], &["throughput", "msgs_per_sec"]) > 0.0);
        assert_eq!(doc["skipped"].as_array().map(Vec::len), Some(0));
    });
}

/// Every redis row: each mode, and the `send_buffered` ones.
const REDIS_ROWS: &str = "redis-pubsub,redis-pubsub+batch,redis-stream,redis-stream+batch";

#[test]
fn quick_redis_rows_run_against_a_private_server() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let server = ringwire_testkit::redis_server::RedisServer::start().expect("start a private redis-server");
        let url = server.url();
        let doc = run(&["--quick", "--json", "--transports", REDIS_ROWS, "--sizes", "64", "--redis", &url]);
        let rows: Vec<_> = doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["transport"].as_str().unwrap(), r["wait"].as_str().unwrap()))
            .collect();
        let want = [
            ("redis-pubsub", "block"),
            ("redis-pubsub", "pipelined"),
            ("redis-pubsub+batch", "pipelined"),
            ("redis-stream", "block"),
            ("redis-stream", "pipelined"),
            ("redis-stream+batch", "pipelined"),
        ];
        assert_eq!(rows, want, "{doc}");
        // The stream keys were deleted afterwards.
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut server.connection().unwrap()).unwrap();
        assert!(keys.is_empty(), "{keys:?}");
    });
}

#[test]
fn the_amqp_row_without_a_broker_is_listed_as_skipped() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        // Port 1: nothing listens there.
        let doc = run(&["--quick", "--json", "--transports", "amqp", "--sizes", "64", "--amqp", "amqp://127.0.0.1:1"]);
        assert_eq!(doc["results"].as_array().map(Vec::len), Some(0), "{doc}");
        let skipped = doc["skipped"].as_array().expect("skipped array");
        assert_eq!(skipped.len(), 1, "{doc}");
        assert_eq!(skipped[0]["transport"], "amqp");
        assert!(skipped[0]["reason"].as_str().unwrap().contains("127.0.0.1:1"), "{doc}");
    });
}

#[test]
fn a_quick_amqp_row_runs_in_a_private_vhost() {
    ringwire_testkit::watchdog(TEST_LIMIT, || {
        let vhost = ringwire_testkit::rabbitmq::Vhost::create().expect("a private RabbitMQ vhost");
        let broker = format!("{}/{}", ringwire_testkit::rabbitmq::broker(), vhost.name());
        let doc = run(&["--quick", "--json", "--transports", "amqp", "--sizes", "64", "--amqp", &broker]);
        let rows = doc["results"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{doc}");
        assert_eq!(rows[0]["transport"], "amqp");
        assert!(number(&rows[0], &["throughput", "msgs_per_sec"]) > 0.0);
        // The row's queues were deleted afterwards.
        let queues = ringwire_testkit::rabbitmq::rabbitmqctl(&[
            "list_queues",
            "-q",
            "--no-table-headers",
            "-p",
            vhost.name(),
            "name",
        ])
        .unwrap();
        assert!(queues.trim().is_empty(), "{queues}");
    });
}
