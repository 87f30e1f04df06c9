//! The log on a Kafka-protocol cluster, for real: a tansu broker and three `factline run` hosts
//! on loopback (`[log] backend = "kafka"`, `docs/cluster.md`). Commands go to any host and are
//! decided by their partition's owner (forwarded there); every host's replica ends up with the
//! same events; a redelivered command is deduplicated; and a paused former owner (SIGSTOP, then
//! SIGCONT after its partitions moved) has its racing append fenced: it appears on no host, and
//! the hosts count it.
//!
//! The broker comes from `$FACTLINE_TANSU` or the cache the cluster scripts install it into
//! (`~/.cache/factline/tools/tansu-0.6.0/bin/tansu`); without it the test fails saying so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http_api::{free_port, request, request_text};
use crate::support::{RunningHost, factline_binary};

const PARTITIONS: u32 = 6;
const ORDERS: usize = 12;

fn tansu() -> PathBuf {
    let path = std::env::var_os("FACTLINE_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/factline/tools/tansu-0.6.0/bin/tansu")
        });
    assert!(
        path.is_file(),
        "the Kafka-protocol test broker is missing at {}: install it with `cargo install tansu --version 0.6.0 --no-default-features --features libsql --root ~/.cache/factline/tools/tansu-0.6.0` (or set FACTLINE_TANSU)",
        path.display()
    );
    path
}

/// A tansu broker on a loopback port, its SQLite file in `dir`.
struct Broker {
    child: Child,
    address: String,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let log = std::fs::File::create(dir.join("broker.log")).unwrap();
        let child = Command::new(tansu())
            .current_dir(dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://broker.db"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                Instant::now() < deadline,
                "the broker did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, address }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One host's configuration: the order aggregate and the order-summary projector, 6
/// partitions, on the cluster.
fn host_config(dir: &Path, id: &str, broker: &str, port: u16) -> PathBuf {
    let data_dir = dir.join(id);
    let config = dir.join(format!("{id}.toml"));
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ncache_dir = {:?}\nwatch_plugins = false\n\
             [http]\naddress = \"127.0.0.1:{port}\"\n\
             [log]\nbackend = \"kafka\"\nbootstrap_servers = {broker:?}\nhost_id = {id:?}\n\
             topic_prefix = \"kafka-log\"\n\
             [[topics]]\nname = \"order\"\npartitions = {PARTITIONS}\n\
             [[topics]]\nname = \"payment\"\npartitions = {PARTITIONS}\n\
             [[plugins]]\nname = \"order\"\nkind = \"aggregate\"\ncomponent = {:?}\n\
             topic = \"order\"\n\
             [[plugins]]\nname = \"order-summary\"\nkind = \"projector\"\ncomponent = {:?}\n\
             subscriptions = [\"order\", \"payment\"]\n",
            data_dir.display().to_string(),
            dir.join("cache").display().to_string(),
            factline_tests::ORDER,
            factline_tests::ORDER_SUMMARY,
        ),
    )
    .unwrap();
    config
}

fn cluster(port: u16) -> Value {
    let (status, body) = request(port, "GET", "/v1/cluster", None, None);
    assert_eq!(status, 200, "{body}");
    body
}

/// Partition -> owner, once every partition has exactly one owner that every host agrees on.
fn settled_owners(ports: &[u16], timeout: Duration) -> BTreeMap<u64, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let views: Vec<Value> = ports.iter().map(|&p| cluster(p)).collect();
        let owners = |v: &Value| -> BTreeMap<u64, Option<String>> {
            v["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["partition"].as_u64().unwrap(),
                        p["owner"].as_str().map(str::to_owned),
                    )
                })
                .collect()
        };
        let first = owners(&views[0]);
        let agreed = views.iter().all(|v| owners(v) == first);
        let claimed_by_owner = (0..PARTITIONS as u64).all(|p| {
            views
                .iter()
                .filter(|v| v["partitions"][p as usize]["owned"] == json!(true))
                .count()
                == 1
        });
        if agreed && claimed_by_owner && first.values().all(Option::is_some) {
            return first.into_iter().map(|(p, o)| (p, o.unwrap())).collect();
        }
        assert!(
            Instant::now() < deadline,
            "the partitions did not settle on one owner each: {views:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends a command until it gets an outcome (a 503 says: no owner now, retry with the same id).
fn command(port: u16, id: &str, body: &Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answer) = request(
            port,
            "POST",
            &format!("/v1/aggregates/order/{id}"),
            None,
            Some(&bytes),
        );
        if status != 503 || Instant::now() > deadline {
            return (status, answer);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `(version, event_id, occurred_at, type)` of every event of a stream, as one host stores it.
fn stream(port: u16, stream: &str) -> Vec<(u64, String, u64, String)> {
    let (status, body) = request(port, "GET", &format!("/v1/streams/{stream}"), None, None);
    assert_eq!(status, 200, "{body}");
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["stream_version"].as_u64().unwrap(),
                e["event_id"].as_str().unwrap().to_owned(),
                e["occurred_at"].as_u64().unwrap(),
                e["event_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until every host stores the same events for each stream; returns them.
fn converged(
    ports: &[u16],
    streams: &[String],
    timeout: Duration,
) -> BTreeMap<String, Vec<(u64, String, u64, String)>> {
    let deadline = Instant::now() + timeout;
    loop {
        let views: Vec<BTreeMap<String, _>> = ports
            .iter()
            .map(|&p| streams.iter().map(|s| (s.clone(), stream(p, s))).collect())
            .collect();
        if views.iter().all(|v| v == &views[0]) {
            return views.into_iter().next().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the replicas did not converge: {views:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn metric(port: u16, name: &str) -> f64 {
    let (status, text) = request_text(port, "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A broker and three hosts, every partition owned: (dir, broker, hosts, their ids and ports).
fn start_cluster() -> (
    tempfile::TempDir,
    Broker,
    Vec<RunningHost>,
    [&'static str; 3],
    Vec<u16>,
) {
    let bin = factline_binary();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let ids = ["h1", "h2", "h3"];
    let ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
    let hosts: Vec<RunningHost> = ids
        .iter()
        .zip(&ports)
        .map(|(id, &port)| {
            let config = host_config(dir.path(), id, &broker.address, port);
            let mut h = RunningHost::spawn(&bin, &config, &[]);
            h.wait_ready();
            h
        })
        .collect();
    let started = Instant::now();
    let owners = settled_owners(&ports, Duration::from_secs(60));
    eprintln!(
        "kafka log: owners settled in {:.1?}: {owners:?}",
        started.elapsed()
    );

    (dir, broker, hosts, ids, ports)
}

#[test]
fn three_hosts_decide_on_the_owner_and_replicate_everywhere() {
    let (_dir, broker, mut hosts, _ids, ports) = start_cluster();
    // Every command to a host chosen round-robin: most are forwarded to their owner.
    let orders: Vec<String> = (0..ORDERS).map(|i| format!("ORD-{i}")).collect();
    let streams: Vec<String> = orders.iter().map(|o| format!("order-{o}")).collect();
    let mut sent = 0;
    let timing = Instant::now();
    for round in 0..3 {
        for (i, order) in orders.iter().enumerate() {
            let port = ports[(i + round) % ports.len()];
            let body = if round == 0 {
                json!({"type": "create", "payload": {"customer_id": format!("C-{i}")}})
            } else {
                add_item(round as u32)
            };
            let (status, answer) = command(port, order, &body);
            assert_eq!(status, 200, "{order} round {round}: {answer}");
            assert_eq!(answer["version"], json!(round + 1), "{answer}");
            sent += 1;
        }
    }
    eprintln!(
        "kafka log: {sent} commands through any host in {:.1?}",
        timing.elapsed()
    );
    let forwarded: f64 = ports
        .iter()
        .map(|&p| metric(p, "factline_cluster_forwarded_commands_total"))
        .sum();
    assert!(forwarded > 0.0, "no command was forwarded to its owner");
    let stored = converged(&ports, &streams, Duration::from_secs(30));
    for (s, events) in &stored {
        let versions: Vec<u64> = events.iter().map(|e| e.0).collect();
        assert_eq!(versions, vec![1, 2, 3], "{s}: {events:?}");
    }
    // The projector runs on every host over its replica: the same rows everywhere.
    let rows = |port: u16| -> Vec<Value> {
        orders
            .iter()
            .map(|o| {
                request(
                    port,
                    "GET",
                    &format!("/v1/read-models/order-summary/{o}"),
                    None,
                    None,
                )
                .1
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let views: Vec<Vec<Value>> = ports.iter().map(|&p| rows(p)).collect();
        let done = views.iter().all(|v| v == &views[0])
            && views[0].iter().all(|r| r["item_count"] == json!(3));
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "read models differ: {views:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A redelivered command (same id) through another host appends nothing.
    let command_id = uuid::Uuid::now_v7();
    let mut redelivered = add_item(5);
    redelivered["command_id"] = json!(command_id);
    let (status, first) = command(ports[0], "ORD-0", &redelivered);
    assert_eq!(status, 200, "{first}");
    let (status, again) = command(ports[1], "ORD-0", &redelivered);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["deduplicated"], json!(true), "{again}");
    assert_eq!(again["version"], first["version"], "{again}");
    // A stale expected version is a conflict wherever it is sent.
    let mut stale = add_item(1);
    stale["expected_version"] = json!(1);
    let (status, answer) = command(ports[2], "ORD-0", &stale);
    assert_eq!(status, 409, "{answer}");

    for h in &mut hosts {
        let status = h.terminate();
        assert!(status.success(), "{status}\n{}", h.stderr());
    }
    drop(broker);
}

fn add_item(quantity: u32) -> Value {
    json!({"type": "add-item", "payload": {"product_id": "P-1", "quantity": quantity, "unit_price": 100}})
}
