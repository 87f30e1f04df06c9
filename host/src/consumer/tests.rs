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
use crate::projector::{Projection, ProjectionHandler};

const PARTITIONS: u32 = 3;
const MAX_ATTEMPTS: u32 = 3;

/// What the native projection observed outside the transaction (survives restarts).
#[derive(Default)]
struct Shared {
    /// Calls still to fail per flaky event id.
    flaky: HashMap<uuid::Uuid, u32>,
    /// Calls that reached each poison event, over restarts.
    poison_calls: HashMap<uuid::Uuid, u32>,
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
                if events.len() == 1 {
                    *self
                        .shared
                        .lock()
                        .unwrap()
                        .poison_calls
                        .entry(e.event_id)
                        .or_default() += 1;
                }
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
    let mut o = LogOptions::with_topics([
        TopicConfig::new("t", PARTITIONS),
        TopicConfig::new("out", 2),
    ]);
    o.durability = Durability::NoSyncForTests;
    EventLog::open(dir, o).unwrap()
}

/// Group `g` on topic `t`, retrying at once up to `MAX_ATTEMPTS`.
fn group_config(batch: usize) -> GroupConfig {
    GroupConfig {
        batch_size: batch,
        retry: RetryPolicy {
            base: Duration::ZERO,
            cap: Duration::ZERO,
            max_attempts: MAX_ATTEMPTS,
        },
        ..GroupConfig::new("g", vec!["t".into()])
    }
}

fn group(log: &EventLog, shared: &Arc<Mutex<Shared>>, batch: usize) -> ConsumerGroup {
    let projection = Counting {
        shared: shared.clone(),
    };
    ConsumerGroup::new(
        log.clone(),
        group_config(batch),
        ProjectionHandler::boxed(projection),
    )
    .unwrap()
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
        // Attempts are counted durably: a restart never hands a poison event a fresh budget.
        prop_assert!(parked.iter().all(|d| d.attempts == MAX_ATTEMPTS && d.failure_kind == FailureKind::Trap));
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
    let group =
        ConsumerGroup::new(log.clone(), config, ProjectionHandler::boxed(SharedCount)).unwrap();
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
    let err = ConsumerGroup::new(
        log.clone(),
        config.clone(),
        ProjectionHandler::boxed(projection),
    )
    .unwrap_err();
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
        ProjectionHandler::boxed(SharedCount),
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
    g.swap_handler(ProjectionHandler::boxed(SharedCount))
        .unwrap();
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
    let mut g = ConsumerGroup::new(
        log.clone(),
        config,
        ProjectionHandler::boxed(Counting { shared }),
    )
    .unwrap();
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

/// The handler kinds of the model test below, natively: what each contributes to a commit.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Read-model writes (`Counting`).
    Projector,
    /// Appends a command's event per event (to `out-<event id>`); refuses `reject` events.
    Policy,
    /// Moves an instance record per event (one transition per commit) and fires its timer.
    Saga,
}

/// Fails like `Counting`: `poison` always (no index), a flaky event while it has failures left.
fn injected(shared: &Mutex<Shared>, events: &[Event]) -> Result<(), CallFailure> {
    for (i, e) in events.iter().enumerate() {
        if e.event_type == "poison" {
            // An attempt of the event's own (the engine counts only those).
            if events.len() == 1 {
                *shared
                    .lock()
                    .unwrap()
                    .poison_calls
                    .entry(e.event_id)
                    .or_default() += 1;
            }
            return Err(failure(FailureKind::Trap, None));
        }
        if let Some(left) = shared.lock().unwrap().flaky.get_mut(&e.event_id)
            && *left > 0
        {
            *left -= 1;
            return Err(failure(FailureKind::Host, Some(i as u32)));
        }
    }
    Ok(())
}

struct NativePolicy {
    shared: Arc<Mutex<Shared>>,
}

impl Handler for NativePolicy {
    fn handles(&self, event_type: &str) -> bool {
        event_type != "ignored"
    }

    fn handle(&mut self, _: BatchContext<'_>, events: &[Event]) -> Result<Output, HandlerError> {
        injected(&self.shared, events)?;
        let mut out = Output::default();
        let mut sources = std::collections::HashSet::new();
        for e in events {
            // Two events of one source stream in a batch: cut before the second (as a policy
            // cuts before a second command on one target stream).
            if !sources.insert(e.stream.clone()) {
                out.stop_at = Some(e.offset);
                break;
            }
            if e.event_type == "reject" {
                out.effects.refused.push(Refusal {
                    offset: e.offset,
                    kind: FailureKind::Rejected,
                    message: "no".into(),
                });
                continue;
            }
            out.effects.appends.push((
                format!("out-{}", e.event_id),
                ExpectedVersion::Any,
                vec![NewEvent::new("done", vec![0x80])],
            ));
        }
        Ok(out)
    }

    fn version(&self) -> String {
        "native-policy".into()
    }

    fn replicate(&self) -> Option<Result<Box<dyn Handler>, CallFailure>> {
        Some(Ok(Box::new(NativePolicy {
            shared: self.shared.clone(),
        })))
    }
}

struct NativeSaga {
    shared: Arc<Mutex<Shared>>,
}

/// An instance record: events applied, timers fired, home partition.
fn instance(log: &EventLog, id: &str) -> (Option<u64>, [u64; 3]) {
    match log.saga_instance("g", id).unwrap() {
        Some(s) => (Some(s.revision), serde_json::from_slice(&s.record).unwrap()),
        None => (None, [0, 0, 0]),
    }
}

fn saga_write(id: &str, rev: Option<u64>, record: [u64; 3], timer: TimerChange) -> SagaWrite {
    SagaWrite {
        saga: "g".into(),
        instance_id: id.into(),
        expected_revision: rev,
        record: serde_json::to_vec(&record).unwrap(),
        correlations: Vec::new(),
        timer,
    }
}

impl Handler for NativeSaga {
    fn handles(&self, event_type: &str) -> bool {
        event_type != "ignored"
    }

    fn handle(&mut self, ctx: BatchContext<'_>, events: &[Event]) -> Result<Output, HandlerError> {
        injected(&self.shared, events)?;
        let Some(e) = events.first() else {
            return Ok(Output::default());
        };
        // Instances span partitions: lanes contend for them.
        let id = format!("i{}", e.stream.as_bytes().last().copied().unwrap_or(0) % 3);
        let (rev, [n, fired, _]) = instance(ctx.log, &id);
        let mut out = Output {
            stop_at: Some(e.offset + 1),
            ..Output::default()
        };
        let now = crate::event::now_millis();
        out.effects.saga_writes.push(saga_write(
            &id,
            rev,
            [n + 1, fired, u64::from(e.partition)],
            TimerChange::Set(now),
        ));
        Ok(out)
    }

    fn version(&self) -> String {
        "native-saga".into()
    }

    fn replicate(&self) -> Option<Result<Box<dyn Handler>, CallFailure>> {
        Some(Ok(Box::new(NativeSaga {
            shared: self.shared.clone(),
        })))
    }

    fn has_timers(&self) -> bool {
        true
    }

    fn timers(
        &mut self,
        ctx: BatchContext<'_>,
        owned: &[(String, u32)],
        now: u64,
    ) -> Result<Timers, HandlerError> {
        let mut next = None;
        for (id, due) in ctx.log.saga_timers("g")? {
            if due > now {
                next = Some(next.map_or(due, |n: u64| n.min(due)));
                continue;
            }
            let (rev, [n, fired, home]) = instance(ctx.log, &id);
            if !owned.contains(&("t".to_owned(), home as u32)) {
                continue;
            }
            let mut effects = Effects::default();
            effects.saga_writes.push(saga_write(
                &id,
                rev,
                [n, fired + 1, home],
                TimerChange::Clear,
            ));
            return Ok(Timers::Fired(Fired {
                topic: "t".into(),
                partition: home as u32,
                effects,
            }));
        }
        Ok(Timers::Next(next))
    }
}

fn kind_group(
    log: &EventLog,
    shared: &Arc<Mutex<Shared>>,
    kind: Kind,
    batch: usize,
    lanes: usize,
) -> ConsumerGroup {
    let config = GroupConfig {
        batch_size: batch,
        concurrency: lanes,
        retry: RetryPolicy {
            base: Duration::ZERO,
            cap: Duration::ZERO,
            max_attempts: MAX_ATTEMPTS,
        },
        ..GroupConfig::new("g", vec!["t".into()])
    };
    let shared = shared.clone();
    let handler: Box<dyn Handler> = match kind {
        Kind::Projector => {
            // One lane: `Counting` keeps per-partition order in one key set.
            return ConsumerGroup::new(
                log.clone(),
                GroupConfig {
                    concurrency: 1,
                    ..config
                },
                ProjectionHandler::boxed(Counting { shared }),
            )
            .unwrap();
        }
        Kind::Policy => Box::new(NativePolicy { shared }),
        Kind::Saga => Box::new(NativeSaga { shared }),
    };
    ConsumerGroup::new(log.clone(), config, handler).unwrap()
}

use crate::log::{SagaWrite, TimerChange};

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Every kind on the one engine: random failures (poison, flaky), rejections, restarts
    /// (the log reopened) and lanes; afterwards each event's effects exist exactly once.
    #[test]
    fn every_kind_applies_each_event_exactly_once(
        ops in prop::collection::vec(op(), 1..50),
        batch in 1usize..6,
        lanes in 1usize..4,
        kind in prop_oneof![Just(Kind::Projector), Just(Kind::Policy), Just(Kind::Saga)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut log = open(dir.path());
        let mut g = kind_group(&log, &shared, kind, batch, lanes);
        let (mut applied, mut poison, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
        for op in ops {
            match op {
                Op::Append { stream, kind: k } => {
                    let event_type = match k {
                        0 => "poison",
                        3 => "ignored",
                        4 => "reject",
                        _ => "ok",
                    };
                    let r = log
                        .append(
                            &format!("t-{stream}"),
                            ExpectedVersion::Any,
                            vec![NewEvent::new(event_type, vec![0x80])],
                        )
                        .unwrap();
                    let id = r.event_ids[0];
                    match (k, kind) {
                        (0, _) => poison.push((r.partition, r.first_offset)),
                        (3, _) => {}
                        (4, Kind::Policy) => rejected.push((r.partition, r.first_offset)),
                        _ => applied.push((id, format!("t-{stream}"))),
                    }
                    if (1..=2).contains(&k) {
                        shared.lock().unwrap().flaky.insert(id, u32::from(k));
                    }
                }
                Op::Step(n) => {
                    for _ in 0..n {
                        g.step().unwrap();
                    }
                }
                Op::Restart => {
                    drop(g);
                    drop(log);
                    log = open(dir.path());
                    g = kind_group(&log, &shared, kind, batch, lanes);
                }
            }
        }
        g.run_until_idle().unwrap();
        match kind {
            Kind::Projector => {
                let view = log.read_models().unwrap();
                let count = view.get("g", "count").unwrap()
                    .map_or(0, |b| String::from_utf8(b).unwrap().parse::<u64>().unwrap());
                prop_assert_eq!(view.get("g", "violation").unwrap(), None);
                prop_assert_eq!(count, applied.len() as u64);
            }
            Kind::Policy => {
                for (id, _) in &applied {
                    let out = log.read_stream(&format!("out-{id}"), 1, 10).unwrap();
                    prop_assert_eq!(out.len(), 1, "one command's event per event");
                }
            }
            Kind::Saga => {
                let mut total = 0;
                for i in 0..3 {
                    let (_, [n, fired, _]) = instance(&log, &format!("i{i}"));
                    total += n;
                    // Every transition set a timer due at once; each was fired (or replaced by
                    // a later transition's) before the group went idle.
                    prop_assert!(n == 0 || fired >= 1);
                }
                prop_assert_eq!(total, applied.len() as u64, "one transition per event");
                prop_assert!(log.saga_timers("g").unwrap().is_empty());
            }
        }
        let parked = g.dead_letters().unwrap();
        let failed: Vec<(u32, u64)> = {
            let mut v: Vec<_> = parked.iter()
                .filter(|d| d.failure_kind == FailureKind::Trap)
                .map(|d| (d.partition, d.offset)).collect();
            v.sort();
            v
        };
        poison.sort();
        prop_assert_eq!(failed, poison, "exactly the poison events are parked as failures");
        let mut refused: Vec<(u32, u64)> = parked.iter()
            .filter(|d| d.failure_kind == FailureKind::Rejected)
            .map(|d| (d.partition, d.offset)).collect();
        refused.sort();
        rejected.sort();
        prop_assert_eq!(refused, rejected, "exactly the rejected events are parked as refusals");
        let counted = |d: &crate::log::DeadLetter| match d.failure_kind {
            FailureKind::Trap => d.attempts == MAX_ATTEMPTS,
            _ => d.attempts == 1,
        };
        prop_assert!(parked.iter().all(counted), "attempts counted durably: {:?}", parked);
        // Restarts included: a poison event is called its budget and no more.
        for d in parked.iter().filter(|d| d.failure_kind == FailureKind::Trap) {
            let calls = shared.lock().unwrap().poison_calls.get(&d.event_id).copied();
            prop_assert_eq!(calls, Some(MAX_ATTEMPTS), "calls of poison event {}", d.event_id);
        }
        prop_assert!(g.lag().unwrap().iter().all(|l| l.lag == 0));
    }
}

/// The seam a distributed log drives: a revoked partition is not processed here, and assigned
/// again it resumes from its committed offset and its stored attempt count.
#[test]
fn revoked_partitions_rest_and_resume_where_they_were_when_assigned_again() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let log = open(dir.path());
    let mut g = group(&log, &shared, 4);
    assert_eq!(g.assigned().len(), PARTITIONS as usize);
    let mut by_partition: HashMap<u32, Vec<u64>> = HashMap::new();
    for s in 0..12 {
        let r = log
            .append(
                &format!("t-{s}"),
                ExpectedVersion::Any,
                vec![NewEvent::new("ok", vec![0x80])],
            )
            .unwrap();
        by_partition
            .entry(r.partition)
            .or_default()
            .push(r.first_offset);
    }
    let (&gone, offsets) = by_partition.iter().max_by_key(|(_, o)| o.len()).unwrap();
    let kept: u64 = by_partition
        .iter()
        .filter(|(p, _)| **p != gone)
        .map(|(_, o)| o.len() as u64)
        .sum();
    let revoked = vec![("t".to_owned(), gone)];
    g.revoke(&revoked);
    assert!(!g.assigned().contains(&revoked[0]));
    assert_eq!(
        g.run_until_idle().unwrap(),
        kept,
        "only the assigned partitions run"
    );
    let lag = g.lag().unwrap();
    let rest = lag.iter().find(|l| l.partition == gone).unwrap();
    assert_eq!((rest.committed, rest.lag), (0, offsets.len() as u64));

    // A poison event on the revoked partition's stream, counted once before the next owner.
    let stream = (0..12)
        .map(|s| format!("t-{s}"))
        .find(|s| log.locate(s).unwrap().1 == gone)
        .unwrap();
    log.append(
        &stream,
        ExpectedVersion::Any,
        vec![NewEvent::new("poison", vec![0x80])],
    )
    .unwrap();
    g.assign(&revoked).unwrap();
    assert_eq!(g.assigned().len(), PARTITIONS as usize);
    g.run_until_idle().unwrap();
    let view = log.read_models().unwrap();
    let count = view.get("g", "count").unwrap().unwrap();
    assert_eq!(
        String::from_utf8(count).unwrap(),
        "12",
        "the revoked partition caught up"
    );
    let parked = g.dead_letters().unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attempts, MAX_ATTEMPTS);
    // Assigning what is assigned changes nothing; a partition the topic lacks is refused.
    g.assign(&revoked).unwrap();
    assert!(g.assign(&[("t".to_owned(), PARTITIONS)]).is_err());
}

/// A revoked partition's stored attempt count goes with it: the next owner (here the same
/// group, opened again after the revoke) continues it instead of starting over.
#[test]
fn a_stored_attempt_count_survives_a_revoke_and_a_new_owner() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let log = open(dir.path());
    let r = log
        .append(
            "t-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("poison", vec![0x80])],
        )
        .unwrap();
    let mut g = group(&log, &shared, 1);
    assert_eq!(g.step().unwrap(), Step::Failed, "attempt 1");
    let stored = log.attempt("g", "t", r.partition).unwrap().unwrap();
    assert_eq!((stored.offset, stored.attempts), (r.first_offset, 1));
    g.revoke(&[("t".to_owned(), r.partition)]);
    drop(g);
    // The next owner: two more calls (the budget is 3), then parked.
    let mut next = group(&log, &shared, 1);
    next.run_until_idle().unwrap();
    assert_eq!(
        shared.lock().unwrap().poison_calls.get(&r.event_ids[0]),
        Some(&MAX_ATTEMPTS),
        "one budget over both owners"
    );
    assert_eq!(next.dead_letters().unwrap()[0].attempts, MAX_ATTEMPTS);
    assert_eq!(
        log.attempt("g", "t", r.partition).unwrap(),
        None,
        "cleared by the park"
    );
}

/// The same on a running group: its handle applies a revoke and an assign between batches.
#[test]
fn a_running_group_is_revoked_and_assigned_through_its_handle() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let log = open(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let revoked = ("t".to_owned(), 0u32);
    let on = |stream: &str| log.locate(stream).unwrap().1;
    let (in_revoked, elsewhere) = {
        let streams: Vec<String> = (0..16).map(|s| format!("t-{s}")).collect();
        let a = streams.iter().find(|s| on(s) == 0).unwrap().clone();
        let b = streams.iter().find(|s| on(s) != 0).unwrap().clone();
        (a, b)
    };
    let lag_of = |p: u32| {
        lag(&log, "g", &["t".into()])
            .unwrap()
            .into_iter()
            .find(|l| l.partition == p)
            .unwrap()
            .lag
    };
    rt.block_on(async {
        let handle = ConsumerPool::new(2).spawn(group(&log, &shared, 8));
        handle.revoke(vec![revoked.clone()]).await.unwrap();
        // The writer answers through a channel a runtime thread must not block on.
        tokio::task::block_in_place(|| {
            for s in [&in_revoked, &elsewhere] {
                log.append(
                    s,
                    ExpectedVersion::Any,
                    vec![NewEvent::new("ok", vec![0x80])],
                )
                .unwrap();
            }
        });
        let other = on(&elsewhere);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while lag_of(other) > 0 {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(lag_of(0), 1, "the revoked partition rests");
        handle.assign(vec![revoked.clone()]).await.unwrap();
        while lag_of(0) > 0 {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        handle.stop().await.expect("the group was running");
    });
    let count = log
        .read_models()
        .unwrap()
        .get("g", "count")
        .unwrap()
        .unwrap();
    assert_eq!(count, b"2");
}

/// Applies commits to the log and keeps a copy of each; `refuse` makes it answer as a clustered
/// log that lost the partition.
#[derive(Debug)]
struct RecordingPath {
    log: EventLog,
    seen: Mutex<Vec<crate::log::HandlerCommit>>,
    refuse: std::sync::atomic::AtomicBool,
}

impl CommitPath for RecordingPath {
    fn commit(
        &self,
        commit: crate::log::HandlerCommit,
    ) -> Result<Vec<crate::log::AppendResult>, crate::log::CommitError> {
        if self.refuse.load(Ordering::Relaxed) {
            return Err(crate::log::CommitError::Unavailable("not the owner".into()));
        }
        self.seen.lock().unwrap().push(commit.clone());
        self.log.commit_handler(commit)
    }
}

/// A group opened unassigned processes nothing until it is assigned partitions, and then every
/// commit (batches, a retry's attempt count, a dead letter) goes through its commit path; a path
/// that refuses leaves the offset where it was and the batch comes again.
#[test]
fn an_unassigned_group_commits_only_through_its_commit_path() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let log = open(dir.path());
    let stream = "t-a";
    let (_, partition) = log.locate(stream).unwrap();
    log.append(
        stream,
        ExpectedVersion::Any,
        vec![NewEvent::new("ok", vec![0x80])],
    )
    .unwrap();
    let path = Arc::new(RecordingPath {
        log: log.clone(),
        seen: Mutex::default(),
        refuse: Default::default(),
    });
    let projection = Counting {
        shared: shared.clone(),
    };
    let mut g = ConsumerGroup::unassigned(
        log.clone(),
        group_config(8),
        ProjectionHandler::boxed(projection),
        path.clone(),
    )
    .unwrap();
    assert!(g.assigned().is_empty());
    assert_eq!(g.run_until_idle().unwrap(), 0, "nothing is assigned");
    assert!(path.seen.lock().unwrap().is_empty());

    let mine = vec![("t".to_owned(), partition)];
    g.assign(&mine).unwrap();
    path.refuse.store(true, Ordering::Relaxed);
    assert!(matches!(
        g.step(),
        Err(ConsumerError::Commit(crate::log::CommitError::Unavailable(
            _
        )))
    ));
    assert_eq!(log.group_offset("g", "t", partition).unwrap(), None);
    path.refuse.store(false, Ordering::Relaxed);
    log.append(
        stream,
        ExpectedVersion::Any,
        vec![
            NewEvent::new("poison", vec![0x80]),
            NewEvent::new("ok", vec![0x80]),
        ],
    )
    .unwrap();
    g.run_until_idle().unwrap();
    assert_eq!(log.group_offset("g", "t", partition).unwrap(), Some(3));
    let seen = path.seen.lock().unwrap();
    assert!(
        seen.iter().any(|c| c.attempt.is_some()),
        "the poison event's attempts were counted through the path"
    );
    assert_eq!(
        seen.iter().map(|c| c.park.len()).sum::<usize>(),
        1,
        "the poison event was parked through the path"
    );
    assert_eq!(seen.last().unwrap().next_offset, 3);
    let view = log.read_models().unwrap();
    assert_eq!(view.get("g", "count").unwrap().unwrap(), b"2");
}
