//! The suite's load client: places orders of the worked example (create, add-item, confirm;
//! the order-placement saga does the rest) from several threads against whichever hosts
//! answer. Every command has a deterministic id and is retried with that id, on any host,
//! until it gets an outcome (2xx or a business rejection); each 2xx-acknowledged command is
//! recorded with the events its answer names, for the oracle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::cluster_harness::http;

/// Longest one command may go without an outcome before the load fails: covers a failover
/// (≤ 15 s) and a broker restart with room to spare.
const OUTCOME_DEADLINE: Duration = Duration::from_secs(90);
/// Customers the orders are spread over (their payment accounts are streams).
pub const CUSTOMERS: usize = 8;
/// Price of the one item of every order.
pub const PRICE: u64 = 100;

/// A command the load acknowledged with 2xx.
#[derive(Clone, Debug)]
pub struct Acked {
    pub command_id: Uuid,
    pub stream: String,
    /// `(version, event id)` of the events its answer names.
    pub events: Vec<(u64, String)>,
    /// Whether the answer was a deduplicated retry.
    pub deduplicated: bool,
}

/// What a load run did.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub acked: Vec<Acked>,
    /// Orders whose three commands were all acknowledged.
    pub placed: Vec<String>,
    /// First attempt to outcome, per command.
    pub latencies: Vec<Duration>,
    /// Attempts that got no outcome (refused connection, 5xx, busy) and were retried.
    pub retries: usize,
    /// Commands that got no outcome within the deadline, or an unexpected status.
    pub failures: Vec<String>,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn commands_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(((l.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    }
}

/// The hosts the client may talk to, changed by the test while the load runs.
pub type Targets = Arc<Mutex<Vec<String>>>;

/// Sends a command until it gets an outcome; `Ok(Some(acked))` for 2xx, `Ok(None)` for a
/// business rejection (422), `Err` past the deadline or on an answer the suite never expects.
pub fn send(
    targets: &Targets,
    aggregate: &str,
    id: &str,
    command: &str,
    payload: Value,
    retries: &mut usize,
) -> Result<Option<Acked>, String> {
    let command_id = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("{aggregate}/{id}/{command}").as_bytes(),
    );
    let body = json!({"type": command, "payload": payload, "command_id": command_id});
    let path = format!("/v1/aggregates/{aggregate}/{id}");
    let started = Instant::now();
    let mut attempt = 0usize;
    let mut last = String::new();
    while started.elapsed() < OUTCOME_DEADLINE {
        let hosts = targets.lock().unwrap().clone();
        if hosts.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        // Round-robin from a per-command start, moving on at every retry.
        let url = &hosts[(command_id.as_u128() as usize + attempt) % hosts.len()];
        attempt += 1;
        match http(url, "POST", &path, Some(&body)) {
            Ok((200..=299, answer)) => {
                let events = answer["events"]
                    .as_array()
                    .map(|events| {
                        events
                            .iter()
                            .map(|e| {
                                (
                                    e["stream_version"].as_u64().unwrap_or(0),
                                    e["event_id"].as_str().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                return Ok(Some(Acked {
                    command_id,
                    stream: format!("{aggregate}-{id}"),
                    events,
                    deduplicated: answer["deduplicated"].as_bool().unwrap_or(false),
                }));
            }
            Ok((422, _)) => return Ok(None),
            // No owner yet, storage or broker unavailable, forwarding failed, busy: no outcome.
            Ok((status @ (429 | 500..=599), answer)) => {
                last = format!("{status} {answer}");
            }
            Ok((status, answer)) => {
                return Err(format!("{command} {path}: unexpected {status} {answer}"));
            }
            Err(e) => last = e.0,
        }
        *retries += 1;
        std::thread::sleep(Duration::from_millis((20 * attempt as u64).min(500)));
    }
    Err(format!(
        "{command} {path}: no outcome within {OUTCOME_DEADLINE:?}; last: {last}"
    ))
}

/// Stock, payment limits and shipping capacity for `orders` orders: every order can be
/// reserved and paid, the first `shipped` get a shipping slot, the rest are refunded.
pub fn open_shop(targets: &Targets, orders: usize, shipped: usize) {
    let mut retries = 0;
    let mut setup = |aggregate: &str, id: &str, command: &str, payload: Value| {
        send(targets, aggregate, id, command, payload, &mut retries)
            .unwrap_or_else(|e| panic!("setup: {e}"))
            .unwrap_or_else(|| panic!("setup: {aggregate} {id} {command} rejected"));
    };
    setup(
        "inventory",
        "main",
        "restock",
        json!({"product_id": "SKU-1", "quantity": orders}),
    );
    for c in 0..CUSTOMERS {
        setup(
            "payment",
            &format!("CUST-{c}"),
            "set-limit",
            json!({"limit": PRICE * orders as u64}),
        );
    }
    setup(
        "shipping",
        "main",
        "set-capacity",
        json!({"slots": shipped}),
    );
}

/// Places orders `ORD-{first}..ORD-{first + orders}` from `threads` threads; `progress` counts
/// the orders placed so far (tests act at a share of the load).
pub fn place_orders(
    targets: &Targets,
    first: usize,
    orders: usize,
    threads: usize,
    progress: &Arc<AtomicUsize>,
) -> LoadReport {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(first));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (targets, next, progress) = (targets.clone(), next.clone(), progress.clone());
            std::thread::spawn(move || {
                let mut report = LoadReport::default();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= first + orders {
                        return report;
                    }
                    let order = format!("ORD-{n}");
                    let customer = format!("CUST-{}", n % CUSTOMERS);
                    let commands = [
                        ("create", json!({"customer_id": customer})),
                        (
                            "add-item",
                            json!({"product_id": "SKU-1", "quantity": 1, "unit_price": PRICE}),
                        ),
                        ("confirm", json!({})),
                    ];
                    let mut placed = true;
                    for (command, payload) in commands {
                        let t = Instant::now();
                        match send(
                            &targets,
                            "order",
                            &order,
                            command,
                            payload,
                            &mut report.retries,
                        ) {
                            Ok(Some(acked)) => report.acked.push(acked),
                            Ok(None) => {
                                report.failures.push(format!("{order} {command}: rejected"));
                                placed = false;
                            }
                            Err(e) => {
                                report.failures.push(e);
                                placed = false;
                            }
                        }
                        report.latencies.push(t.elapsed());
                        if !placed {
                            break;
                        }
                    }
                    if placed {
                        report.placed.push(order);
                    }
                    progress.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut total = LoadReport::default();
    for w in workers {
        let r = w.join().expect("a load thread panicked");
        total.acked.extend(r.acked);
        total.placed.extend(r.placed);
        total.latencies.extend(r.latencies);
        total.retries += r.retries;
        total.failures.extend(r.failures);
    }
    total.elapsed = started.elapsed();
    total.placed.sort();
    total
}
