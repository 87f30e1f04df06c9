//! The cluster suite (issue 19's acceptance): the worked example with the order-placement saga
//! on 6 partitions, load from `cluster_load`, faults from `cluster_harness`, judged by
//! `cluster_oracle` (effects, never deliveries). Each test prints its figures.
//!
//! The embedded-log tests run the same load and oracle through one host: the baseline, and the
//! proof that the harness and the oracle pass on a log known to be right.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster_harness::{Backend, Cluster, PARTITIONS};
use crate::cluster_load::{Acked, LoadReport, Targets, open_shop, place_orders, send};
use crate::cluster_oracle::{HostState, Verdict, check};

/// Orders per run: 3 commands each from the client, 4 saga steps (and compensations) each.
const ORDERS: usize = 240;
/// Orders of a run on the Kafka backend: every saga transition there waits for two records to
/// come back from the broker (the step's command on its owner, then the transition's commit),
/// about 150 ms each on tansu here.
const KAFKA_ORDERS: usize = 24;
const THREADS: usize = 4;
struct Run {
    report: LoadReport,
    verdict: Verdict,
}

/// Load in the background: the test acts at a share of it.
struct Background {
    orders: usize,
    progress: Arc<AtomicUsize>,
    load: std::thread::JoinHandle<LoadReport>,
}

impl Background {
    fn start(targets: &Targets, orders: usize) -> Background {
        open_shop(targets, orders, orders / 2);
        let progress = Arc::new(AtomicUsize::new(0));
        let (t, p) = (targets.clone(), progress.clone());
        let load = std::thread::spawn(move || place_orders(&t, 0, orders, THREADS, &p));
        Background {
            orders,
            progress,
            load,
        }
    }

    /// Blocks until `share` of the orders are placed.
    fn wait_for(&self, share: f64, cluster: &Cluster) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while (self.progress.load(Ordering::Relaxed) as f64) < share * self.orders as f64 {
            assert!(
                Instant::now() < deadline,
                "the load did not reach {:.0}% in 180 s\n{}",
                share * 100.0,
                cluster.stderr_tails()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn join(self) -> (usize, LoadReport) {
        (self.orders, self.load.join().expect("the load panicked"))
    }
}

/// After the load: no failure, every order placed, the hosts idle and stopped, the oracle.
fn judge(cluster: &mut Cluster, (orders, report): (usize, LoadReport)) -> Run {
    assert!(
        report.failures.is_empty(),
        "{} commands without an outcome, e.g. {:?}\n{}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(5)],
        cluster.stderr_tails()
    );
    assert_eq!(report.placed.len(), orders);
    cluster.wait_idle(Duration::from_secs(180));
    cluster.stop_all();
    let states = read_states(cluster);
    let verdict = check(&states, &report.acked, &report.placed);
    assert_eq!(verdict.shipped + verdict.refunded, orders);
    Run { report, verdict }
}

fn figures(name: &str, run: &Run) {
    eprintln!(
        "{name}: {} commands, {:.0} commands/s, p50 {:.1?}, p99 {:.1?}, {} retries; oracle: {} events in {} streams, {} shipped, {} refunded, 0 lost, 0 doubled",
        run.report.latencies.len(),
        run.report.commands_per_second(),
        run.report.percentile(0.5),
        run.report.percentile(0.99),
        run.report.retries,
        run.verdict.events,
        run.verdict.streams,
        run.verdict.shipped,
        run.verdict.refunded
    );
}

fn targets(cluster: &Cluster) -> Targets {
    Arc::new(Mutex::new(cluster.urls()))
}

/// Kill -9 host `victim` at 40% of the load and restart it 2 s later; with several hosts,
/// also the failover time (until every partition accepts a command again on the others).
fn kill_at_40_percent(backend: Backend, hosts: usize, victim: usize) -> (Run, Option<Duration>) {
    let mut cluster = Cluster::start(backend, hosts);
    let targets = targets(&cluster);
    let load = Background::start(&targets, ORDERS);
    load.wait_for(0.4, &cluster);
    // A load balancer's health check takes the dead host out; its requests in flight fail
    // and are retried (same command id) on another.
    cluster.kill(victim);
    let killed = Instant::now();
    *targets.lock().unwrap() = cluster.urls();
    let failover = (hosts > 1).then(|| {
        accept_on_every_partition(&targets, "failover", &cluster);
        killed.elapsed()
    });
    std::thread::sleep(Duration::from_secs(2));
    cluster.restart(victim);
    *targets.lock().unwrap() = cluster.urls();
    let report = load.join();
    (judge(&mut cluster, report), failover)
}

/// Returns once a command on a stream of each `order` partition was accepted through the
/// targets (each retried until it gets its outcome).
fn accept_on_every_partition(targets: &Targets, tag: &str, cluster: &Cluster) {
    for p in 0..PARTITIONS {
        create_order(targets, &probe_stream(p, tag), "PROBE")
            .unwrap_or_else(|e| panic!("partition {p}: {e}\n{}", cluster.stderr_tails()))
            .unwrap_or_else(|| panic!("partition {p}: probe rejected"));
    }
}

/// `create` of order `id`, retried until its outcome.
fn create_order(targets: &Targets, id: &str, customer: &str) -> Result<Option<Acked>, String> {
    let mut retries = 0;
    send(
        targets,
        "order",
        id,
        "create",
        json!({"customer_id": customer}),
        &mut retries,
    )
}

/// Every host's log and read model, read from its data directory (the hosts stopped).
fn read_states(cluster: &Cluster) -> Vec<HostState> {
    cluster
        .nodes
        .iter()
        .map(|n| HostState::read(&n.host_id, &n.data_dir()))
        .collect()
}

/// An order id whose stream `order-<id>` lives in `partition`.
fn probe_stream(partition: u32, tag: &str) -> String {
    (0..)
        .map(|n| format!("PROBE-{tag}-{n}"))
        .find(|id| factline_host::partition_for(&format!("order-{id}"), PARTITIONS) == partition)
        .unwrap()
}

#[test]
fn cluster_embedded_kill_9_at_40_percent_loses_and_doubles_nothing() {
    let (run, _) = kill_at_40_percent(Backend::Embedded, 1, 0);
    assert!(
        run.report.retries > 0,
        "the kill interrupted no command: it did not land mid-load"
    );
    figures("embedded log, kill -9 at 40% and restart", &run);
}

/// The worked example on three hosts of the Kafka backend, each order's commands sent to any
/// host: the saga runs on the owner of its home partition and the policy on the owners of its
/// partitions, their commands cross to the hosts that own the target streams, and every host
/// ends with the same log and read model and each reservation, payment and refund once. The
/// same load on the embedded log in the same run gives the figures' baseline.
#[test]
fn cluster_three_hosts_run_the_saga_and_the_policy_exactly_once() {
    let mut runs = Vec::new();
    for (backend, hosts) in [(Backend::Embedded, 1), (Backend::Kafka, 3)] {
        let mut cluster = Cluster::start(backend, hosts);
        let targets = targets(&cluster);
        let load = Background::start(&targets, KAFKA_ORDERS);
        let report = load.join();
        let forwarded: f64 = cluster
            .urls()
            .iter()
            .map(|u| metric(u, "factline_cluster_forwarded_commands_total"))
            .sum();
        let run = judge(&mut cluster, report);
        figures(&format!("{backend:?}, {hosts} host(s)"), &run);
        if backend == Backend::Kafka {
            assert!(
                forwarded > 0.0,
                "no command crossed to another host: the test did not exercise routing"
            );
        }
        runs.push(run);
    }
    eprintln!(
        "kafka/embedded: {:.2}x commands/s, {:.2}x p99",
        runs[1].report.commands_per_second() / runs[0].report.commands_per_second(),
        runs[1].report.percentile(0.99).as_secs_f64()
            / runs[0].report.percentile(0.99).as_secs_f64()
    );
}

/// A counter's value summed over a host's `/metrics` lines (0 when absent).
fn metric(url: &str, name: &str) -> f64 {
    let address = url.strip_prefix("http://").unwrap();
    let Ok(mut s) = std::net::TcpStream::connect(address) else {
        return 0.0;
    };
    use std::io::{Read, Write};
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
