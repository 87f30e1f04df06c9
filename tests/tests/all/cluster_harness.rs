//! The cluster suite's processes, for real: one tansu broker and N `factline run` hosts with the
//! worked example (6 partitions per topic), each host with its own directory and loopback port.
//! A host can be SIGKILLed, paused (SIGSTOP) and resumed (SIGCONT), restarted, wiped, or added.
//! The same harness runs one host on the embedded log: the suite's baseline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::broker::{Broker, free_port};
use crate::support::RunningHost;

/// Partitions of every topic of the example in the suite (the acceptance setup).
pub const PARTITIONS: u32 = 6;
/// Kafka topic prefix of the suite's hosts.
pub const TOPIC_PREFIX: &str = "factline";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `[log] backend = "redb"`: the embedded log (one host).
    Embedded,
    /// `[log] backend = "kafka"` on the suite's broker.
    Kafka,
}

/// One host of the cluster: its directory (config + data) and port outlive its processes.
pub struct Node {
    pub host_id: String,
    pub port: u16,
    pub dir: PathBuf,
    pub config: PathBuf,
    process: Option<RunningHost>,
    paused: bool,
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some() && !self.paused
    }

    /// What the host wrote on stderr (for failure messages).
    pub fn stderr(&self) -> String {
        self.process
            .as_ref()
            .map(RunningHost::stderr)
            .unwrap_or_default()
    }
}

pub struct Cluster {
    pub broker: Option<Broker>,
    pub nodes: Vec<Node>,
    bin: PathBuf,
    /// Holds every directory; dropped last.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the broker (Kafka) and `hosts` hosts, and waits until each is ready.
    pub fn start(backend: Backend, hosts: usize) -> Cluster {
        assert!(
            backend == Backend::Kafka || hosts == 1,
            "the embedded log is one host"
        );
        let dir = tempfile::tempdir().unwrap();
        let broker = (backend == Backend::Kafka).then(|| Broker::start(&dir.path().join("broker")));
        let mut cluster = Cluster {
            broker,
            nodes: Vec::new(),
            bin: crate::support::factline_binary(),
            dir,
        };
        for _ in 0..hosts {
            cluster.add_host();
        }
        cluster
    }

    /// A new host with its own directory and port, started; returns its index.
    pub fn add_host(&mut self) -> usize {
        let i = self.nodes.len();
        let host_id = format!("h{}", i + 1);
        let dir = self.dir.path().join(&host_id);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let config = dir.join("factline.toml");
        std::fs::write(&config, self.config_text(&dir, &host_id, port)).unwrap();
        self.nodes.push(Node {
            host_id,
            port,
            dir,
            config,
            process: None,
            paused: false,
        });
        self.restart(i);
        i
    }

    fn config_text(&self, dir: &Path, host_id: &str, port: u16) -> String {
        let mut text = String::new();
        for line in crate::worked_example::config(dir).lines() {
            let line = if line.starts_with("data_dir = ") {
                // Shared by the cluster's hosts: each component compiles once.
                format!(
                    "{line}\ncache_dir = {:?}",
                    self.dir.path().join("cache").display().to_string()
                )
            } else if line.starts_with("partitions = ") {
                format!("partitions = {PARTITIONS}")
            } else if line.starts_with("address = ") {
                format!("address = \"127.0.0.1:{port}\"")
            } else {
                line.to_owned()
            };
            text += &line;
            text.push('\n');
        }
        if let Some(broker) = &self.broker {
            text += &format!(
                "\n[log]\nbackend = \"kafka\"\nbootstrap_servers = \"{}\"\nhost_id = \"{host_id}\"\nadvertise_url = \"http://127.0.0.1:{port}\"\ntopic_prefix = \"{TOPIC_PREFIX}\"\n",
                broker.bootstrap()
            );
        }
        text
    }

    /// Starts host `i` again on its directory and port (after a kill, a wipe, or for the
    /// first time) and waits for its ready line.
    pub fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.process.is_none(), "{} is running", node.host_id);
        // FACTLINE_TEST_LOG (e.g. `info,librdkafka=warn`) for a closer look at a failing run.
        let log = std::env::var("FACTLINE_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let mut host =
            RunningHost::spawn_with_env(&self.bin, &node.config, &[], &[("RUST_LOG", &log)]);
        host.wait_ready();
        node.process = Some(host);
        node.paused = false;
    }

    /// SIGKILL: no shutdown, whatever was in flight is lost unless durable.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut host) = self.nodes[i].process.take() {
            if self.nodes[i].paused {
                signal(host.pid(), "CONT");
            }
            host.kill();
        }
        self.nodes[i].paused = false;
    }

    /// SIGTERM and wait: a clean stop (between batches).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut host) = self.nodes[i].process.take() {
            if self.nodes[i].paused {
                signal(host.pid(), "CONT");
            }
            let status = host.terminate();
            assert!(
                status.success(),
                "{} stopped with {status}\n{}",
                self.nodes[i].host_id,
                host.stderr()
            );
        }
        self.nodes[i].paused = false;
    }

    /// Stops every running host cleanly (their data directories stay for the oracle).
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
    }

    /// Base URLs of the hosts that answer (running, not paused).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(Node::url)
            .collect()
    }

    /// Waits until every running host has no lag in any group and all hold the same
    /// high-water marks (replicas caught up), twice in a row (a policy's commit between two
    /// reads must not look idle), within `timeout`.
    pub fn wait_idle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut quiet = 0;
        while quiet < 2 {
            let urls = self.urls();
            let lags: Vec<Option<u64>> = urls.iter().map(|u| total_lag(u)).collect();
            let marks: Vec<Option<Value>> = urls
                .iter()
                .map(|u| match http(u, "GET", "/v1/admin/topics", None) {
                    Ok((200, body)) => Some(body),
                    _ => None,
                })
                .collect();
            let same_marks = marks.iter().all(|m| m.is_some() && *m == marks[0]);
            if lags.iter().all(|l| *l == Some(0)) && same_marks {
                quiet += 1;
            } else {
                quiet = 0;
            }
            assert!(
                Instant::now() < deadline,
                "the hosts did not become idle within {timeout:?}: lags {lags:?}\n{}",
                self.stderr_tails()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last lines each host wrote on stderr.
    pub fn stderr_tails(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let err = n.stderr();
            let lines: Vec<&str> = err.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            out += &format!("--- {} ---\n{}\n", n.host_id, tail.join("\n"));
        }
        out
    }
}

/// Sum of every group's lag on one host; `None` when it does not answer.
fn total_lag(url: &str) -> Option<u64> {
    let (status, body) = http(url, "GET", "/v1/admin/groups", None).ok()?;
    if status != 200 {
        return None;
    }
    let groups = body.get("groups").unwrap_or(&body).as_array()?.clone();
    Some(
        groups
            .iter()
            .flat_map(|g| g["partitions"].as_array().cloned().unwrap_or_default())
            .map(|p| p["lag"].as_u64().unwrap_or(0))
            .sum(),
    )
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}: {status}");
}

/// Why a request got no answer.
#[derive(Debug)]
pub struct NoAnswer(pub String);

/// One HTTP/1.1 request with a 10 s budget; `Err` when the host did not answer (refused,
/// reset, timed out): the load client retries those.
pub fn http(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), NoAnswer> {
    let address = url.strip_prefix("http://").unwrap_or(url);
    let fail = |e: std::io::Error| NoAnswer(format!("{method} {url}{path}: {e}"));
    let mut s = TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(2))
        .map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(fail)?;
    s.write_all(&body).map_err(fail)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(fail)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| NoAnswer(format!("{method} {url}{path}: no status in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}
