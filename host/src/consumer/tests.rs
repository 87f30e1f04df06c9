//! Property test: random interleavings of appends, group steps, failing calls and restarts,
//! checked against a model for DESIGN §4 invariants 3 (offset order per partition), 4 (each
//! event's effects applied exactly once) and 5 (failures retried, then parked).

use std::collections::HashMap;
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

fn get_u64(session: &ReadModelSession, key: &str) -> Option<u64> {
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
            let order_ok = get_u64(&session, &seen_key).is_none_or(|last| e.offset > last);
            if !order_ok {
                session.put("violation".into(), b"1".to_vec()).unwrap();
            }
            session
                .put(seen_key, e.offset.to_string().into_bytes())
                .unwrap();
            let n = get_u64(&session, "count").unwrap_or(0);
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
