//! Property test: random interleavings of appends, group steps, failing calls and restarts,
//! checked against a model for DESIGN §4 invariants 3 (offset order per partition), 4 (each
//! event's effects applied exactly once) and 5 (failures retried, then parked).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::event::{Event, ExpectedVersion, NewEvent};
use crate::log::{Durability, EventLog, LogOptions, TopicConfig};
use crate::plugin::{CallFailure, FailureKind, ReadModelSession};
use crate::projector::Projection;

const PARTITIONS: u32 = 3;
const MAX_ATTEMPTS: u32 = 3;

/// What the native projection observed outside the transaction (survives restarts).
#[derive(Default)]
struct Shared {
    /// Calls still to fail per flaky event id.
    flaky: HashMap<uuid::Uuid, u32>,
}

/// Counts applied events and tracks, in the read model itself, the last offset applied per
/// partition, so an out-of-order or repeated delivery that commits shows up as a violation.
struct Counting {
    shared: Arc<Mutex<Shared>>,
}

fn get_u64(session: &mut ReadModelSession, key: &str) -> Option<u64> {
    session
        .get(key)
        .unwrap()
        .map(|b| String::from_utf8(b).unwrap().parse().unwrap())
}

fn failure(kind: FailureKind, event_index: Option<u32>) -> CallFailure {
    CallFailure {
        kind,
        message: "injected".into(),
        backtrace: Some("0: injected".into()),
        event_index,
    }
}

impl Projection for Counting {
    fn handles(&self, event_type: &str) -> bool {
        event_type != "ignored"
    }

    fn project(
        &mut self,
        events: &[Event],
        mut session: ReadModelSession,
    ) -> (Result<(), CallFailure>, Option<ReadModelSession>) {
        for (i, e) in events.iter().enumerate() {
            if e.event_type == "poison" {
                // No index: the group has to find it by itself.
                return (Err(failure(FailureKind::Trap, None)), Some(session));
            }
            if let Some(left) = self.shared.lock().unwrap().flaky.get_mut(&e.event_id)
                && *left > 0
            {
                *left -= 1;
                return (
                    Err(failure(FailureKind::Host, Some(i as u32))),
                    Some(session),
                );
            }
            let seen_key = format!("seen/{}", e.partition);
            let order_ok = get_u64(&mut session, &seen_key).is_none_or(|last| e.offset > last);
            if !order_ok {
                session.put("violation".into(), b"1".to_vec()).unwrap();
            }
            session
                .put(seen_key, e.offset.to_string().into_bytes())
                .unwrap();
            let n = get_u64(&mut session, "count").unwrap_or(0);
            session
                .put("count".into(), (n + 1).to_string().into_bytes())
                .unwrap();
        }
        (Ok(()), Some(session))
    }

    fn version(&self) -> String {
        "native-test".into()
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Append to stream `t-<stream>`: 0 = poison, 1..=2 = flaky (fails that many times),
    /// 3 = a type the projection ignores, else a normal event.
    Append {
        stream: u8,
        kind: u8,
    },
    Step(u8),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, 0u8..12).prop_map(|(stream, kind)| Op::Append { stream, kind }),
        3 => (1u8..6).prop_map(Op::Step),
        1 => Just(Op::Restart),
    ]
}

fn open(dir: &std::path::Path) -> EventLog {
    let mut o = LogOptions::with_topics([TopicConfig::new("t", PARTITIONS)]);
    o.durability = Durability::NoSyncForTests;
    EventLog::open(dir, o).unwrap()
}

fn group(log: &EventLog, shared: &Arc<Mutex<Shared>>, batch: usize) -> ConsumerGroup {
    let config = GroupConfig {
        batch_size: batch,
        retry: RetryPolicy {
            base: Duration::ZERO,
            cap: Duration::ZERO,
            max_attempts: MAX_ATTEMPTS,
        },
        ..GroupConfig::new("g", vec!["t".into()])
    };
    let projection = Counting {
        shared: shared.clone(),
    };
    ConsumerGroup::new(log.clone(), config, Box::new(projection)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn interleavings_keep_order_exactly_once_and_park_only_poison(
        ops in prop::collection::vec(op(), 1..60),
        batch in 1usize..6,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut log = open(dir.path());
        let mut g = group(&log, &shared, batch);
        // The model: how many events must be applied, and where the poison ones are.
        let (mut applied, mut poison) = (0u64, Vec::new());
        for op in ops {
            match op {
                Op::Append { stream, kind } => {
                    let event_type = match kind {
                        0 => "poison",
                        3 => "ignored",
                        _ => "ok",
                    };
                    let r = log
                        .append(
                            &format!("t-{stream}"),
                            ExpectedVersion::Any,
                            vec![NewEvent::new(event_type, vec![0x80])],
                        )
                        .unwrap();
                    match kind {
                        0 => poison.push((r.partition, r.first_offset)),
                        3 => {}
                        _ => applied += 1,
                    }
                    if (1..=2).contains(&kind) {
                        shared.lock().unwrap().flaky.insert(r.event_ids[0], u32::from(kind));
                    }
                }
                Op::Step(n) => {
                    for _ in 0..n {
                        g.step().unwrap();
                    }
                }
                Op::Restart => {
                    // Drop everything in memory (retry state included) and reopen the log.
                    drop(g);
                    drop(log);
                    log = open(dir.path());
                    g = group(&log, &shared, batch);
                }
            }
        }
        g.run_until_idle().unwrap();
        let view = log.read_models().unwrap();
        let count = view.get("g", "count").unwrap()
            .map_or(0, |b| String::from_utf8(b).unwrap().parse::<u64>().unwrap());
        prop_assert_eq!(view.get("g", "violation").unwrap(), None, "offset order broken");
        prop_assert_eq!(count, applied, "every non-poison event applied exactly once");
        let parked = g.dead_letters().unwrap();
        let mut at: Vec<(u32, u64)> = parked.iter().map(|d| (d.partition, d.offset)).collect();
        at.sort();
        poison.sort();
        prop_assert_eq!(at, poison, "exactly the poison events are parked");
        // A restart resets in-memory attempts, so a parked event has at least the configured
        // attempts of its last run.
        prop_assert!(parked.iter().all(|d| d.attempts == MAX_ATTEMPTS && d.failure_kind == "trap"));
        prop_assert!(g.lag().unwrap().iter().all(|l| l.lag == 0));
    }
}

/// Counts every event into ONE shared key: a read-modify-write that lanes of one group race on.
struct SharedCount;

impl Projection for SharedCount {
    fn handles(&self, _: &str) -> bool {
        true
    }

    fn project(
        &mut self,
        events: &[Event],
        mut session: ReadModelSession,
    ) -> (Result<(), CallFailure>, Option<ReadModelSession>) {
        let n = get_u64(&mut session, "count").unwrap_or(0) + events.len() as u64;
        session
            .put("count".into(), n.to_string().into_bytes())
            .unwrap();
        (Ok(()), Some(session))
    }

    fn version(&self) -> String {
        "native-test".into()
    }

    fn replicate(&self) -> Option<Result<Box<dyn Projection>, CallFailure>> {
        Some(Ok(Box::new(SharedCount)))
    }
}

#[test]
fn concurrent_lanes_lose_no_update_on_a_shared_key() {
    const STREAMS: usize = 64;
    const PER_STREAM: usize = 80;
    let dir = tempfile::tempdir().unwrap();
    let mut o = LogOptions::with_topics([TopicConfig::new("c", 8)]);
    o.durability = Durability::NoSyncForTests;
    let log = EventLog::open(dir.path(), o).unwrap();
    for s in 0..STREAMS {
        let events = (0..PER_STREAM)
            .map(|_| NewEvent::new("tick", vec![0x80]))
            .collect();
        log.append(&format!("c-{s}"), ExpectedVersion::Any, events)
            .unwrap();
    }
    let total = (STREAMS * PER_STREAM) as u64;
    let config = GroupConfig {
        batch_size: 8,
        concurrency: 4,
        ..GroupConfig::new("shared", vec!["c".into()])
    };
    let group = ConsumerGroup::new(log.clone(), config, Box::new(SharedCount)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let group = rt.block_on(async {
        let handle = ConsumerPool::new(4).spawn(group);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while lag(&log, "shared", &["c".into()])
            .unwrap()
            .iter()
            .any(|l| l.lag > 0)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the group did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        handle.stop().await.expect("the group was running")
    });
    let count = log
        .read_models()
        .unwrap()
        .get("shared", "count")
        .unwrap()
        .map(|b| String::from_utf8(b).unwrap().parse::<u64>().unwrap());
    assert_eq!(count, Some(total), "every event counted exactly once");
    let m = group.metrics();
    assert_eq!(m.events_processed.load(Ordering::Relaxed), total);
    // The lanes did overlap (else this test proves nothing): some batches were re-run.
    assert!(m.read_conflicts.load(Ordering::Relaxed) > 0);
    assert_eq!(m.failed_calls.load(Ordering::Relaxed), 0);
}

#[test]
fn lanes_split_partitions_and_need_a_replicable_projection() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let log = open(dir.path());
    let config = GroupConfig {
        concurrency: 2,
        ..GroupConfig::new("g", vec!["t".into()])
    };
    let projection = Counting {
        shared: shared.clone(),
    };
    let err = ConsumerGroup::new(log.clone(), config.clone(), Box::new(projection)).unwrap_err();
    assert!(
        matches!(err, ConsumerError::NotReplicable { lanes: 2, .. }),
        "{err}"
    );
    // More lanes than partitions: one per partition, run serially by `step` here.
    let mut g = ConsumerGroup::new(
        log.clone(),
        GroupConfig {
            concurrency: 16,
            ..GroupConfig::new("s", vec!["t".into()])
        },
        Box::new(SharedCount),
    )
    .unwrap();
    for s in 0..12 {
        log.append(
            &format!("t-{s}"),
            ExpectedVersion::Any,
            vec![NewEvent::new("ok", vec![0x80])],
        )
        .unwrap();
    }
    assert_eq!(g.run_until_idle().unwrap(), 12);
    assert_eq!(
        log.read_models().unwrap().get("s", "count").unwrap(),
        Some(b"12".to_vec())
    );
    assert_eq!(g.metrics().read_conflicts.load(Ordering::Relaxed), 0);
    g.swap_projection(Box::new(SharedCount)).unwrap();
}

#[test]
fn consumed_and_parked_events_are_counted_with_group_topic_and_version() {
    let metrics = crate::telemetry::install().expect("the only recorder in this binary");
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let config = GroupConfig {
        retry: RetryPolicy {
            base: Duration::ZERO,
            cap: Duration::ZERO,
            max_attempts: 1,
        },
        // Its own name: the other tests of this binary count under theirs at the same time.
        ..GroupConfig::new("g-metered", vec!["t".into()])
    };
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut g = ConsumerGroup::new(log.clone(), config, Box::new(Counting { shared })).unwrap();
    for (s, t) in [(0, "ok"), (1, "ok"), (2, "poison"), (3, "ok")] {
        log.append(
            &format!("t-{s}"),
            ExpectedVersion::Any,
            vec![NewEvent::new(t, vec![0x80])],
        )
        .unwrap();
    }
    assert_eq!(g.run_until_idle().unwrap(), 4);
    let text = crate::telemetry::render(metrics, || {});
    let labels = r#"{group="g-metered",topic="t",plugin_version="native-test"}"#;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{labels} ")))
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(value("events_consumed_total"), Some(3.0), "{text}");
    assert_eq!(value("dlq_messages_total"), Some(1.0), "{text}");
    assert!(
        value("event_processing_duration_seconds_count").is_some_and(|n| n >= 1.0),
        "{text}"
    );
}
