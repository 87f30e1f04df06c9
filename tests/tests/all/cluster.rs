//! The cluster suite (issue 19's acceptance): the worked example with the order-placement saga
//! on 6 partitions, load from `cluster_load`, faults from `cluster_harness`, judged by
//! `cluster_oracle` (effects, never deliveries). Each test prints its figures.
//!
//! The embedded-log tests run the same load and oracle through one host: the baseline, and the
//! proof that the harness and the oracle pass on a log known to be right.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster_harness::{Backend, Cluster, PARTITIONS, http};
use crate::cluster_load::{Acked, LoadReport, Targets, open_shop, place_orders, send};
use crate::cluster_oracle::{HostState, Verdict, check};

/// Orders per run: 3 commands each from the client, 4 saga steps (and compensations) each.
const ORDERS: usize = 240;
const THREADS: usize = 4;
struct Run {
    report: LoadReport,
    verdict: Verdict,
}

/// Load in the background: the test acts at a share of it.
struct Background {
    progress: Arc<AtomicUsize>,
    load: std::thread::JoinHandle<LoadReport>,
}

impl Background {
    fn start(targets: &Targets) -> Background {
        open_shop(targets, ORDERS, ORDERS / 2);
        let progress = Arc::new(AtomicUsize::new(0));
        let (t, p) = (targets.clone(), progress.clone());
        let load = std::thread::spawn(move || place_orders(&t, 0, ORDERS, THREADS, &p));
        Background { progress, load }
    }

    /// Blocks until `share` of the orders are placed.
    fn wait_for(&self, share: f64, cluster: &Cluster) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while (self.progress.load(Ordering::Relaxed) as f64) < share * ORDERS as f64 {
            assert!(
                Instant::now() < deadline,
                "the load did not reach {:.0}% in 180 s\n{}",
                share * 100.0,
                cluster.stderr_tails()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn join(self) -> LoadReport {
        self.load.join().expect("the load panicked")
    }
}

/// After the load: no failure, every order placed, the hosts idle and stopped, the oracle.
fn judge(cluster: &mut Cluster, report: LoadReport) -> Run {
    assert!(
        report.failures.is_empty(),
        "{} commands without an outcome, e.g. {:?}\n{}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(5)],
        cluster.stderr_tails()
    );
    assert_eq!(report.placed.len(), ORDERS);
    cluster.wait_idle(Duration::from_secs(180));
    cluster.stop_all();
    let states = read_states(cluster);
    let verdict = check(&states, &report.acked, &report.placed);
    assert_eq!(verdict.shipped + verdict.refunded, ORDERS);
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
    let load = Background::start(&targets);
    load.wait_for(0.4, &cluster);
    // A load balancer's health check takes the dead host out; its requests in flight fail
    // and are retried (same command id) on another.
    cluster.kill(victim);
    let killed = Instant::now();
    *targets.lock().unwrap() = cluster.urls();
    let failover = (hosts > 1).then(|| {
        accept_on_every_partition(&targets, "failover");
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
fn accept_on_every_partition(targets: &Targets, tag: &str) {
    for p in 0..PARTITIONS {
        create_order(targets, &probe_stream(p, tag), "PROBE")
            .unwrap_or_else(|e| panic!("partition {p}: {e}"))
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

#[test]
#[ignore = "host side: the Kafka backend refuses policies and sagas (ClusterError::UnsupportedKind), which the order example needs"]
fn cluster_kill_9_a_host_at_40_percent() {
    let (run, failover) = kill_at_40_percent(Backend::Kafka, 3, 1);
    let failover = failover.unwrap();
    assert!(
        failover <= Duration::from_secs(15),
        "the killed host's partitions accepted commands elsewhere only after {failover:?}"
    );
    figures(
        &format!("3 hosts, kill -9 h2 at 40% (failover {failover:.1?})"),
        &run,
    );
}

/// Commands/s and p99 through one host, embedded log vs the Kafka backend, in one run.
#[test]
#[ignore = "host side: the Kafka backend refuses policies and sagas (ClusterError::UnsupportedKind), which the order example needs"]
fn cluster_one_host_figures_embedded_vs_kafka() {
    let mut runs = Vec::new();
    for (backend, hosts) in [(Backend::Embedded, 1), (Backend::Kafka, 3)] {
        let mut cluster = Cluster::start(backend, hosts);
        // Through one host: the others take part in the cluster, not in the client's list.
        let targets: Targets = Arc::new(Mutex::new(vec![cluster.nodes[0].url()]));
        let load = Background::start(&targets);
        let report = load.join();
        let run = judge(&mut cluster, report);
        figures(&format!("{backend:?}, through one host"), &run);
        runs.push(run);
    }
    eprintln!(
        "kafka/embedded: {:.2}x commands/s, {:.2}x p99",
        runs[1].report.commands_per_second() / runs[0].report.commands_per_second(),
        runs[1].report.percentile(0.99).as_secs_f64()
            / runs[0].report.percentile(0.99).as_secs_f64()
    );
}

/// `GET /v1/cluster` of a host: partition `order/p` -> owner.
fn owners(url: &str) -> Option<Vec<(u32, Option<String>)>> {
    let (status, body) = http(url, "GET", "/v1/cluster", None).ok()?;
    (status == 200).then(|| {
        body["partitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["topic"] == "order")
            .map(|p| {
                (
                    p["partition"].as_u64().unwrap() as u32,
                    p["owner"].as_str().map(str::to_owned),
                )
            })
            .collect()
    })
}

/// Add a host and stop another while commands flow: nothing lost or doubled, and a partition
/// whose owner did not change never pauses more than 1 s.
#[test]
#[ignore = "host side: the Kafka backend refuses policies and sagas (ClusterError::UnsupportedKind), which the order example needs"]
fn cluster_add_a_host_and_stop_another_under_load() {
    let mut cluster = Cluster::start(Backend::Kafka, 3);
    let targets = targets(&cluster);
    let before = owners(&cluster.nodes[0].url()).expect("cluster status");
    let load = Background::start(&targets);
    // One probe per partition, a command every 50 ms: the longest gap between two accepted.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probes: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let (targets, stop) = (targets.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut gap = Duration::ZERO;
                let mut last = Instant::now();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("{}-{n}", probe_stream(p, "gap"));
                    let _ = create_order(&targets, &id, "PROBE");
                    gap = gap.max(last.elapsed());
                    last = Instant::now();
                    std::thread::sleep(Duration::from_millis(50));
                }
                (p, gap)
            })
        })
        .collect();
    load.wait_for(0.3, &cluster);
    let added = cluster.add_host();
    *targets.lock().unwrap() = cluster.urls();
    load.wait_for(0.6, &cluster);
    cluster.stop(0);
    *targets.lock().unwrap() = cluster.urls();
    let report = load.join();
    stop.store(true, Ordering::Relaxed);
    let after = owners(&cluster.nodes[added].url()).expect("cluster status");
    for probe in probes {
        let (p, gap) = probe.join().unwrap();
        let moved = before.iter().find(|(q, _)| *q == p) != after.iter().find(|(q, _)| *q == p);
        eprintln!("partition {p}: longest pause {gap:.1?} (moved: {moved})");
        if !moved {
            assert!(
                gap <= Duration::from_secs(1),
                "partition {p} kept its owner but paused {gap:?}"
            );
        }
    }
    let run = judge(&mut cluster, report);
    figures("3 hosts, +h4, stop h1", &run);
}

/// A paused former owner (SIGSTOP until its partitions moved, then SIGCONT) and two commands
/// with one expected version, one to the old owner and one to the new: exactly one accepted,
/// the zombie's write appears nowhere, and the fenced-append metric counts it.
#[test]
#[ignore = "host side: the Kafka backend refuses policies and sagas (ClusterError::UnsupportedKind), which the order example needs"]
fn cluster_zombie_owner_is_fenced() {
    let mut cluster = Cluster::start(Backend::Kafka, 3);
    let targets = targets(&cluster);
    open_shop(&targets, 1, 1);
    let stream_id = probe_stream(0, "zombie");
    create_order(&targets, &stream_id, "CUST-0")
        .unwrap()
        .unwrap();
    let old = owner_of(&cluster, 0);
    let old_url = cluster.nodes[old].url();
    cluster.pause(old);
    *targets.lock().unwrap() = cluster.urls();
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        let other = (old + 1) % cluster.nodes.len();
        if let Some(list) = owners(&cluster.nodes[other].url())
            && let Some((_, Some(owner))) = list.iter().find(|(p, _)| *p == 0)
            && *owner != cluster.nodes[old].host_id
        {
            break cluster
                .nodes
                .iter()
                .position(|n| n.host_id == *owner)
                .unwrap();
        }
        assert!(Instant::now() < deadline, "partition 0 never moved");
        std::thread::sleep(Duration::from_millis(100));
    };
    let body = |item: &str| {
        json!({"type": "add-item", "expected_version": 1,
               "payload": {"product_id": item, "quantity": 1, "unit_price": 1}})
    };
    let path = format!("/v1/aggregates/order/{stream_id}");
    let zombie = {
        let (path, body) = (path.clone(), body("ZOMBIE"));
        std::thread::spawn(move || http(&old_url, "POST", &path, Some(&body)))
    };
    std::thread::sleep(Duration::from_millis(200));
    cluster.resume(old);
    let fresh = http(
        &cluster.nodes[new].url(),
        "POST",
        &path,
        Some(&body("FRESH")),
    );
    let zombie = zombie.join().unwrap();
    let accepted = [&zombie, &fresh]
        .iter()
        .filter(|r| matches!(r, Ok((200..=299, _))))
        .count();
    assert_eq!(accepted, 1, "zombie {zombie:?}, new owner {fresh:?}");
    let fenced: f64 = cluster
        .urls()
        .iter()
        .map(|u| metric(u, "factline_cluster_fenced_appends_total"))
        .sum();
    assert!(fenced >= 1.0, "no host counted the zombie's fenced append");
    cluster.wait_idle(Duration::from_secs(60));
    cluster.stop_all();
    let states = read_states(&cluster);
    check(&states, &[], &[]);
    let stream = &states[0].streams[&format!("order-{stream_id}")];
    assert_eq!(stream.len(), 2, "one create and exactly one add-item");
    let item: Value = rmp_serde::from_slice(&stream[1].payload).unwrap();
    assert_ne!(
        item["product_id"], "ZOMBIE",
        "the zombie's write reached the log while its new owner's was accepted"
    );
}

fn owner_of(cluster: &Cluster, partition: u32) -> usize {
    let list = owners(&cluster.nodes[0].url()).expect("cluster status");
    let owner = list
        .iter()
        .find(|(p, _)| *p == partition)
        .and_then(|(_, o)| o.clone())
        .expect("partition 0 has an owner");
    cluster
        .nodes
        .iter()
        .position(|n| n.host_id == owner)
        .unwrap()
}

/// A counter's value in a host's `/metrics` (0 when absent).
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

/// Kill -9 the broker mid-load and restart it: no acknowledged command lost, the hosts
/// resume by themselves.
#[test]
#[ignore = "host side: the Kafka backend refuses policies and sagas (ClusterError::UnsupportedKind), which the order example needs"]
fn cluster_kill_9_the_broker_mid_load() {
    let mut cluster = Cluster::start(Backend::Kafka, 3);
    let targets = targets(&cluster);
    let load = Background::start(&targets);
    load.wait_for(0.4, &cluster);
    let broker = cluster.broker.as_mut().unwrap();
    broker.kill();
    std::thread::sleep(Duration::from_secs(3));
    broker.restart();
    let report = load.join();
    let run = judge(&mut cluster, report);
    figures("3 hosts, kill -9 the broker at 40%", &run);
}

/// Wipe one host's data directory: it rebuilds from the cluster to the same content as the
/// others; the rebuild rate is reported.
#[test]
#[ignore = "host side: the Kafka backend refuses policies and sagas (ClusterError::UnsupportedKind), which the order example needs"]
fn cluster_wiped_host_rebuilds_from_the_cluster() {
    let mut cluster = Cluster::start(Backend::Kafka, 3);
    let targets = targets(&cluster);
    let load = Background::start(&targets);
    let report = load.join();
    cluster.wait_idle(Duration::from_secs(180));
    cluster.wipe(2);
    let started = Instant::now();
    cluster.restart(2);
    *targets.lock().unwrap() = cluster.urls();
    cluster.wait_idle(Duration::from_secs(180));
    let took = started.elapsed();
    let run = judge(&mut cluster, report);
    eprintln!(
        "rebuild of a wiped host: {} events in {took:.1?}, {:.0} events/s (start and catch-up)",
        run.verdict.events,
        run.verdict.events as f64 / took.as_secs_f64()
    );
    figures("3 hosts, wipe h3 and rebuild", &run);
}
