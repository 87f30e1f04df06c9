//! The suite's oracle: it counts effects, never deliveries. Read from every host's data
//! directory once the hosts stopped: per stream, versions contiguous and the same
//! `(version, event id)` list on every host; no event id twice (a command id's events are
//! derived from it, so a command that took effect twice shows as a repeated id); every
//! acknowledged command's events present; per order, each reservation, payment, refund and
//! release at most once and exactly as the saga's outcome requires; and the order-summary rows
//! equal a fold of the log by the projector's own code, run natively.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use factline_guest::scenario::{GivenEvent, ProjectorOutcome, ProjectorScenario};
use factline_host::{Event, EventLog, LogOptions, TopicConfig};
use serde_json::Value;

use crate::cluster_harness::PARTITIONS;
use crate::cluster_load::Acked;

/// The example's topics, as the suite configures them.
const TOPICS: [&str; 11] = [
    "order",
    "inventory",
    "payment",
    "shipping",
    "notification",
    "review",
    "trip",
    "flight",
    "hotel",
    "car",
    "account",
];

/// One host's log and read model.
pub struct HostState {
    pub host: String,
    /// Every stream's events in version order.
    pub streams: BTreeMap<String, Vec<Event>>,
    /// order-summary's live rows, decoded.
    pub summary: BTreeMap<String, Value>,
    pub events: usize,
}

impl HostState {
    /// Reads a stopped host's data directory.
    pub fn read(host: &str, data_dir: &Path) -> HostState {
        let log = EventLog::open(
            data_dir,
            LogOptions::with_topics(TOPICS.map(|t| TopicConfig::new(t, PARTITIONS))),
        )
        .unwrap_or_else(|e| panic!("{host}: opening {}: {e}", data_dir.display()));
        let mut streams: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        let mut events = 0;
        for topic in TOPICS {
            for p in 0..PARTITIONS {
                let mut from = 0;
                loop {
                    let batch = log.read_partition(topic, p, from, 4096).unwrap();
                    let Some(last) = batch.last() else { break };
                    from = last.offset + 1;
                    events += batch.len();
                    for e in batch {
                        streams.entry(e.stream.clone()).or_default().push(e);
                    }
                }
            }
        }
        for list in streams.values_mut() {
            list.sort_by_key(|e| e.stream_version);
        }
        let summary = factline_host::query_read_model_prefix(&log, "order-summary", "", usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, rmp_serde::from_slice::<Value>(&v).unwrap()))
            .collect();
        HostState {
            host: host.to_owned(),
            streams,
            summary,
            events,
        }
    }

    fn of_type<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = (&'a Event, Value)> {
        self.streams
            .values()
            .flatten()
            .filter(move |e| e.event_type == event_type)
            .map(|e| (e, rmp_serde::from_slice::<Value>(&e.payload).unwrap()))
    }
}

/// What the oracle counted, for the test's report line.
#[derive(Debug)]
pub struct Verdict {
    pub events: usize,
    pub streams: usize,
    pub shipped: usize,
    pub refunded: usize,
}

/// Checks every invariant over the hosts' states; panics naming the first violation.
pub fn check(hosts: &[HostState], acked: &[Acked], placed: &[String]) -> Verdict {
    let first = &hosts[0];
    for h in hosts {
        check_one(h);
        // Identical on every host: the same streams with the same (version, event id).
        for (stream, events) in &first.streams {
            let ids = |list: &[Event]| -> Vec<(u64, uuid::Uuid)> {
                list.iter()
                    .map(|e| (e.stream_version, e.event_id))
                    .collect()
            };
            let other = h.streams.get(stream).map(|l| ids(l)).unwrap_or_default();
            assert_eq!(
                ids(events),
                other,
                "stream {stream} differs between {} and {}",
                first.host,
                h.host
            );
        }
        assert_eq!(
            first.streams.len(),
            h.streams.len(),
            "{} and {} hold different streams",
            first.host,
            h.host
        );
    }

    // Every acknowledged command's events are in the log, where its answer said.
    let by_id: HashMap<String, (&str, u64)> = first
        .streams
        .values()
        .flatten()
        .map(|e| {
            (
                e.event_id.to_string(),
                (e.stream.as_str(), e.stream_version),
            )
        })
        .collect();
    for a in acked {
        assert!(
            !a.events.is_empty() || a.deduplicated,
            "command {} on {} was acknowledged without events",
            a.command_id,
            a.stream
        );
        for (version, id) in &a.events {
            assert_eq!(
                by_id.get(id),
                Some(&(a.stream.as_str(), *version)),
                "acknowledged event {id} of command {} ({} v{version}) is not in the log",
                a.command_id,
                a.stream
            );
        }
    }

    // Effects per order: each at most once, and as the saga's outcome requires.
    let count = |event_type: &str| {
        let mut n: HashMap<String, usize> = HashMap::new();
        for (_, payload) in first.of_type(event_type) {
            let order = payload["order_id"].as_str().unwrap_or_default().to_owned();
            *n.entry(order).or_default() += 1;
        }
        n
    };
    let reserved = count("inventory.reserved");
    let released = count("inventory.released");
    let charged = count("payment.charged");
    let refunded = count("payment.refunded");
    let scheduled = count("shipping.scheduled");
    let (mut shipped, mut refunds) = (0, 0);
    for (name, counts) in [
        ("reservation", &reserved),
        ("release", &released),
        ("payment", &charged),
        ("refund", &refunded),
        ("shipping", &scheduled),
    ] {
        if let Some((order, n)) = counts.iter().find(|(_, n)| **n > 1) {
            panic!("order {order}: {n} of its {name}, the saga asked once");
        }
    }
    for order in placed {
        let get = |m: &HashMap<String, usize>| m.get(order).copied().unwrap_or(0);
        assert_eq!(
            (get(&reserved), get(&charged)),
            (1, 1),
            "order {order}: stock and money are plenty, so reserved and paid exactly once"
        );
        match (get(&scheduled), get(&refunded), get(&released)) {
            (1, 0, 0) => shipped += 1,
            (0, 1, 1) => refunds += 1,
            other => panic!(
                "order {order}: (shipped, refunded, released) = {other:?}, neither a completed nor a compensated saga"
            ),
        }
    }

    // The read model equals a fold of the log by the projector's own code.
    for h in hosts {
        let folded = fold_summary(h);
        assert_eq!(
            h.summary.len(),
            folded.len(),
            "{}: order-summary has {} rows, a fold of its log {}",
            h.host,
            h.summary.len(),
            folded.len()
        );
        for (key, row) in &folded {
            assert_eq!(
                h.summary.get(key),
                Some(row),
                "{}: order-summary row {key} differs from a fold of the log",
                h.host
            );
        }
    }
    Verdict {
        events: first.events,
        streams: first.streams.len(),
        shipped,
        refunded: refunds,
    }
}

/// One host alone: versions contiguous from 1, no event id twice.
fn check_one(h: &HostState) {
    let mut seen = HashMap::new();
    for (stream, events) in &h.streams {
        for (i, e) in events.iter().enumerate() {
            assert_eq!(
                e.stream_version,
                i as u64 + 1,
                "{}: stream {stream} is not contiguous at {}",
                h.host,
                e.stream_version
            );
            if let Some(other) = seen.insert(e.event_id, (stream.clone(), e.stream_version)) {
                panic!(
                    "{}: event id {} twice ({other:?} and {stream} v{}): a command took effect twice",
                    h.host, e.event_id, e.stream_version
                );
            }
        }
    }
}

/// order-summary over the host's `order` and `payment` events, natively, in each
/// partition's order (the projector is order-independent across topics by design).
fn fold_summary(h: &HostState) -> BTreeMap<String, Value> {
    let mut events: Vec<&Event> = h
        .streams
        .values()
        .flatten()
        .filter(|e| e.topic == "order" || e.topic == "payment")
        .collect();
    events.sort_by_key(|e| (e.topic.clone(), e.partition, e.offset));
    let given = events
        .into_iter()
        .map(|e| GivenEvent {
            event_type: e.event_type.clone(),
            stream: Some(e.stream.clone()),
            schema_version: e.schema_version,
            payload: rmp_serde::from_slice(&e.payload).unwrap(),
            occurred_at: Some(e.occurred_at),
        })
        .collect();
    let scenario = ProjectorScenario {
        name: format!("fold of {}", h.host),
        given,
        then: Vec::new(),
        dead_letters: Vec::new(),
    };
    match factline_guest::testing::run_projector::<order_summary::OrderSummary>(&scenario) {
        ProjectorOutcome::Rows { rows, dead_letters } => {
            assert!(
                dead_letters.is_empty(),
                "{}: the fold parked events: {dead_letters:?}",
                h.host
            );
            rows
        }
        ProjectorOutcome::Failed { message } => panic!("{}: the fold failed: {message}", h.host),
    }
}
