//! The deploy gate: before a new version of a plugin is swapped in, the recent history is
//! replayed through the running version and the candidate side by side, nothing written, and
//! their effects are compared. The deploy goes on only when they agree (or the operator
//! accepts the changes); a candidate that fails where the running version did not is refused.
//!
//! - Consumers (projectors, policies, sagas): the last N events of the group's topics (newest
//!   by `occurred_at` over all partitions), per partition in offset order, in the group's batch
//!   size, through [`crate::consumer::dry_run`] (the path a dead letter's replay takes). Each
//!   version reads the read model from ONE snapshot taken when the gate starts, under its own
//!   overlay of what it wrote earlier in the gate ([`Sandbox`]): both start from the same rows
//!   however the live group moves meanwhile, and each then sees its own writes, as it would
//!   live. (An empty model would make every projector that reads its rows, such as a counter or
//!   a row built over several topics, look different from how it runs.)
//! - Aggregates: the commands are not stored (only their ids, in the derived event ids), so
//!   nothing can be decided again; the gate folds the stored history of the last N streams
//!   through both versions' `evolve` and compares the states.
//!
//! Both versions run at once, one thread each, with the plugin's own limits.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::consumer::{BatchContext, Effects, Handler, Sandbox, dry_run};
use crate::event::Event;
use crate::failure::FailureKind;
use crate::log::{EventLog, ReadError, ReadModelView};
use crate::plugin::{AggregateInstance, CallFailure};

/// Most events (or streams) one gate replays.
pub const MAX_GATE_EVENTS: usize = 100_000;
/// Events (or streams) replayed when the caller names no number.
pub const DEFAULT_GATE_EVENTS: usize = 1_000;
/// Differing cases a report shows (the counts cover all of them).
const MAX_CASES: usize = 10;
/// Differing fields shown per case.
const MAX_FIELDS: usize = 10;
/// Longest backtrace kept in a report, in bytes.
const MAX_BACKTRACE: usize = 4096;
/// Events per read of one stream (aggregates).
const STREAM_PAGE: usize = 1_000;

/// How a deploy is gated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateOptions {
    /// Events (consumers) or streams (aggregates) to replay.
    pub last: usize,
    /// Deploy even when effects differ (never when the candidate fails).
    pub accept_changes: bool,
}

impl GateOptions {
    /// Checks `last` (1..=[`MAX_GATE_EVENTS`]; [`DEFAULT_GATE_EVENTS`] when `None`).
    pub fn new(last: Option<usize>, accept_changes: bool) -> Result<Self, GateError> {
        let last = last.unwrap_or(DEFAULT_GATE_EVENTS);
        if last == 0 || last > MAX_GATE_EVENTS {
            return Err(GateError::Last(last));
        }
        Ok(GateOptions {
            last,
            accept_changes,
        })
    }
}

/// Why a gate could not judge (the running version stays; nothing was deployed).
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("the gate replays 1..={MAX_GATE_EVENTS} events or streams, not {0}")]
    Last(usize),
    #[error("reading the history to replay: {0}")]
    Read(#[from] ReadError),
}

/// The gate's judgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateVerdict {
    Passed,
    Refused,
    AcceptedWithChanges,
}

impl fmt::Display for GateVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GateVerdict::Passed => "passed",
            GateVerdict::Refused => "refused",
            GateVerdict::AcceptedWithChanges => "accepted-with-changes",
        })
    }
}

/// Differing effects, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GateCounts {
    pub read_model_writes: u64,
    pub commands: u64,
    pub events: u64,
    pub rejections: u64,
    pub failures: u64,
    /// Aggregates: streams whose folded state differs.
    pub states: u64,
}

impl GateCounts {
    pub fn total(&self) -> u64 {
        self.read_model_writes
            + self.commands
            + self.events
            + self.rejections
            + self.failures
            + self.states
    }

    fn count(&mut self, effect: EffectKind) {
        *match effect {
            EffectKind::ReadModelWrite => &mut self.read_model_writes,
            EffectKind::Command => &mut self.commands,
            EffectKind::Event => &mut self.events,
            EffectKind::Rejection => &mut self.rejections,
            EffectKind::Failure => &mut self.failures,
            EffectKind::State => &mut self.states,
        } += 1;
    }
}

/// What kind of effect differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EffectKind {
    ReadModelWrite,
    Command,
    Event,
    Rejection,
    Failure,
    State,
}

impl fmt::Display for EffectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EffectKind::ReadModelWrite => "read-model write",
            EffectKind::Command => "command",
            EffectKind::Event => "event",
            EffectKind::Rejection => "rejection",
            EffectKind::Failure => "failure",
            EffectKind::State => "state",
        })
    }
}

/// One effect the two versions disagree on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateCase {
    /// Where in the history: `topic/partition offsets A..=B` (a batch), `... offset A` (one
    /// event) or `stream S`.
    pub at: String,
    pub effect: EffectKind,
    /// The row key, `#i` of the batch's commands or events, the offset of a rejection.
    pub key: String,
    /// What the running version did (`null`: nothing), decoded from MessagePack when it is.
    pub running: Value,
    pub candidate: Value,
    /// The differing fields (dotted paths) when both are maps.
    pub fields: Vec<FieldDiff>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldDiff {
    pub path: String,
    pub running: Value,
    pub candidate: Value,
}

/// The candidate's first failure where the running version succeeded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateFailure {
    pub at: String,
    pub kind: FailureKind,
    pub message: String,
    pub backtrace: Option<String>,
}

/// What a gate replayed and found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateReport {
    pub verdict: GateVerdict,
    /// `events` (consumers) or `streams` (aggregates).
    pub unit: &'static str,
    pub replayed: u64,
    pub differing: u64,
    pub counts: GateCounts,
    /// The first differing cases, in history order.
    pub cases: Vec<GateCase>,
    pub candidate_failure: Option<GateFailure>,
    /// Wall time of the replay (both versions).
    pub elapsed_ms: f64,
}

impl fmt::Display for GateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "gate {}: {} {} replayed through both versions in {:.1} ms; {} differing (read-model writes {}, commands {}, events {}, rejections {}, failures {}, states {})",
            self.verdict,
            self.replayed,
            self.unit,
            self.elapsed_ms,
            self.differing,
            c.read_model_writes,
            c.commands,
            c.events,
            c.rejections,
            c.failures,
            c.states
        )?;
        if let Some(fail) = &self.candidate_failure {
            write!(
                f,
                "\n  the candidate failed at {} ({}): {}",
                fail.at, fail.kind, fail.message
            )?;
        }
        for case in &self.cases {
            write!(f, "\n  {} at {} {}:", case.effect, case.at, case.key)?;
            if case.fields.is_empty() {
                write!(f, " {} -> {}", case.running, case.candidate)?;
            }
            for d in &case.fields {
                write!(f, " {}: {} -> {};", d.path, d.running, d.candidate)?;
            }
        }
        if self.differing > self.cases.len() as u64 {
            write!(f, "\n  ({} more)", self.differing - self.cases.len() as u64)?;
        }
        Ok(())
    }
}

/// What the gate runs: both versions, fresh instances with the plugin's limits.
pub(crate) enum Subject {
    Consumer {
        name: String,
        topics: Vec<String>,
        batch: usize,
        running: Box<dyn Handler>,
        candidate: Box<dyn Handler>,
    },
    Aggregate {
        topic: String,
        running: Box<AggregateInstance>,
        candidate: Box<AggregateInstance>,
    },
}

/// Replays the history `options` names through both versions of `subject` and judges.
pub(crate) fn run(
    log: &EventLog,
    subject: Subject,
    options: GateOptions,
) -> Result<GateReport, GateError> {
    let started = Instant::now();
    let mut diff = Diff::default();
    let (unit, replayed) = match subject {
        Subject::Consumer {
            name,
            topics,
            batch,
            running,
            candidate,
        } => {
            let events = last_events(log, &topics, options.last)?;
            let batches: Vec<&[Event]> = events
                .iter()
                .flat_map(|slice| slice.chunks(batch.max(1)))
                .collect();
            // One snapshot for both, taken once: the same rows whatever commits meanwhile.
            let view = Arc::new(log.read_models()?);
            let scope = view.live_scope(&name)?;
            let (a, b) = both(
                || replay(running, log, &scope, &view, &batches),
                || replay(candidate, log, &scope, &view, &batches),
            );
            let (a, b) = (a?, b?);
            for ((events, a), b) in batches.iter().zip(a).zip(b) {
                diff.batch(events, a, b);
            }
            ("events", events.iter().map(Vec::len).sum::<usize>())
        }
        Subject::Aggregate {
            topic,
            running,
            candidate,
        } => {
            let streams = last_streams(log, &topic, options.last)?;
            let (a, b) = both(
                || fold(running, log, &streams),
                || fold(candidate, log, &streams),
            );
            let (a, b) = (a?, b?);
            for ((stream, a), b) in streams.iter().zip(a).zip(b) {
                diff.state(stream, a, b);
            }
            ("streams", streams.len())
        }
    };
    let differing = diff.counts.total();
    let verdict = if diff.failure.is_some() || (differing > 0 && !options.accept_changes) {
        GateVerdict::Refused
    } else if differing > 0 {
        GateVerdict::AcceptedWithChanges
    } else {
        GateVerdict::Passed
    };
    Ok(GateReport {
        verdict,
        unit,
        replayed: replayed as u64,
        differing,
        counts: diff.counts,
        cases: diff.cases,
        candidate_failure: diff.failure,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// `a` and `b` at once (the running version and the candidate: 2 cores, 2 threads).
fn both<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    std::thread::scope(|s| {
        let b = s.spawn(b);
        let a = a();
        (a, b.join().expect("a gate replay panicked"))
    })
}

/// The newest `n` events of `topics` (by `occurred_at`, then position), grouped per partition
/// in offset order: every partition is read backwards a page at a time and the newest unread
/// event of all is taken next, so about `n` events are read, however they are spread.
fn last_events(log: &EventLog, topics: &[String], n: usize) -> Result<Vec<Vec<Event>>, ReadError> {
    /// One partition read backwards: `buf` holds the page being taken from (its end first),
    /// `end` the first offset already read.
    struct Cursor {
        topic: String,
        partition: u32,
        end: u64,
        buf: Vec<Event>,
        taken: Vec<Event>,
    }
    let mut cursors = Vec::new();
    for topic in topics {
        let Some(info) = log.topic(topic) else {
            continue;
        };
        for partition in 0..info.partitions {
            cursors.push(Cursor {
                topic: topic.clone(),
                partition,
                end: log.high_water_mark(topic, partition)?,
                buf: Vec::new(),
                taken: Vec::new(),
            });
        }
    }
    // A partition's share of `n`, so the pages of a balanced log add up to about `n`.
    let page = (n / cursors.len().max(1) + 1).clamp(64, 4096) as u64;
    let mut taken = 0;
    while taken < n {
        for c in &mut cursors {
            if c.buf.is_empty() && c.end > 0 {
                let from = c.end.saturating_sub(page);
                c.buf = log.read_partition(&c.topic, c.partition, from, (c.end - from) as usize)?;
                c.end = from;
            }
        }
        let newest = cursors
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.buf.last().map(|e| (i, e)))
            .max_by(|(_, a), (_, b)| {
                (a.occurred_at, &a.topic, a.partition, a.offset).cmp(&(
                    b.occurred_at,
                    &b.topic,
                    b.partition,
                    b.offset,
                ))
            })
            .map(|(i, _)| i);
        let Some(i) = newest else { break };
        let c = &mut cursors[i];
        c.taken.extend(c.buf.pop());
        taken += 1;
    }
    Ok(cursors
        .into_iter()
        .filter(|c| !c.taken.is_empty())
        .map(|mut c| {
            c.taken.reverse();
            c.taken
        })
        .collect())
}

/// Most events read per partition while looking for the streams to fold (a hot stream can
/// fill the tail of a partition).
const MAX_SCANNED: u64 = 1_000_000;

/// The `n` streams of `topic` written to most recently, newest first: each partition is read
/// backwards from its end until it gave `n` streams (or [`MAX_SCANNED`] events).
fn last_streams(log: &EventLog, topic: &str, n: usize) -> Result<Vec<String>, ReadError> {
    let Some(info) = log.topic(topic) else {
        return Ok(Vec::new());
    };
    let page = n.clamp(256, STREAM_PAGE * 10) as u64;
    // Stream -> (occurred_at, offset) of its newest event.
    let mut newest: std::collections::HashMap<String, (u64, u64)> = Default::default();
    for p in 0..info.partitions {
        let hw = log.high_water_mark(topic, p)?;
        let (mut end, mut found) = (hw, 0);
        while end > 0 && found < n && hw - end < MAX_SCANNED {
            let from = end.saturating_sub(page);
            let events = log.read_partition(topic, p, from, (end - from) as usize)?;
            for e in events.iter().rev() {
                if found < n && !newest.contains_key(&e.stream) {
                    newest.insert(e.stream.clone(), (e.occurred_at, e.offset));
                    found += 1;
                }
            }
            end = from;
        }
    }
    let mut streams: Vec<(String, (u64, u64))> = newest.into_iter().collect();
    streams.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(streams.into_iter().take(n).map(|(s, _)| s).collect())
}

/// What one version did with one batch.
enum Outcome {
    /// The whole batch succeeded.
    Whole(Effects),
    /// The batch failed; then each event alone: its offset and outcome.
    Split(Vec<(u64, Result<Effects, CallFailure>)>),
}

/// Every batch through `handler`, in order, over the snapshot and its own overlay.
fn replay(
    mut handler: Box<dyn Handler>,
    log: &EventLog,
    scope: &str,
    view: &Arc<ReadModelView>,
    batches: &[&[Event]],
) -> Result<Vec<Outcome>, ReadError> {
    let mut sandbox = Sandbox::new(view.clone());
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        // Usually every event is relevant: then the batch goes as it is, without a copy.
        let filtered: Vec<Event>;
        let relevant: &[Event] = if batch.iter().all(|e| handler.handles(&e.event_type)) {
            batch
        } else {
            filtered = batch
                .iter()
                .filter(|e| handler.handles(&e.event_type))
                .cloned()
                .collect();
            &filtered
        };
        let whole = run_batch(handler.as_mut(), log, scope, &mut sandbox, relevant)?;
        out.push(match whole {
            Ok(effects) => Outcome::Whole(effects),
            // Which event: each alone, as the engine isolates a poison event.
            Err(_) => {
                let mut each = Vec::with_capacity(relevant.len());
                for e in relevant {
                    let one = run_batch(
                        handler.as_mut(),
                        log,
                        scope,
                        &mut sandbox,
                        std::slice::from_ref(e),
                    )?;
                    each.push((e.offset, one));
                }
                Outcome::Split(each)
            }
        });
    }
    Ok(out)
}

/// One batch as the engine would run it (a handler that covers a prefix gets the rest next),
/// its read-model writes kept in the sandbox when it succeeds.
fn run_batch(
    handler: &mut dyn Handler,
    log: &EventLog,
    scope: &str,
    sandbox: &mut Sandbox,
    events: &[Event],
) -> Result<Result<Effects, CallFailure>, ReadError> {
    let mut all = Effects::default();
    let mut rest = events;
    while !rest.is_empty() {
        let ctx = BatchContext {
            log,
            scope,
            sandbox: Some(sandbox),
        };
        let output = match dry_run(handler, ctx, rest)? {
            Ok(output) => output,
            Err(f) => return Ok(Err(f)),
        };
        let e = output.effects;
        all.read_model_writes.extend(e.read_model_writes);
        all.appends.extend(e.appends);
        all.saga_writes.extend(e.saga_writes);
        all.refused.extend(e.refused);
        all.commands.extend(e.commands);
        let covered = match output.stop_at {
            None => rest.len(),
            Some(s) => rest.iter().take_while(|e| e.offset < s).count().max(1),
        };
        rest = &rest[covered..];
    }
    // Applied once the batch is whole: only policies cut batches short, and they write no rows.
    sandbox.apply(&all.read_model_writes);
    Ok(Ok(all))
}

/// Each stream's stored history folded through `instance`'s `evolve`.
fn fold(
    mut instance: Box<AggregateInstance>,
    log: &EventLog,
    streams: &[String],
) -> Result<Vec<Result<Vec<u8>, CallFailure>>, ReadError> {
    let mut out = Vec::with_capacity(streams.len());
    'streams: for stream in streams {
        let mut state = match instance.initial_state() {
            Ok(s) => s,
            Err(f) => {
                out.push(Err(f));
                continue;
            }
        };
        let mut from = 1;
        loop {
            let page = log.read_stream(stream, from, STREAM_PAGE)?;
            let Some(last) = page.last() else { break };
            from = last.stream_version + 1;
            match instance.evolve(&state, &page) {
                Ok(s) => state = s,
                Err(f) => {
                    out.push(Err(f));
                    continue 'streams;
                }
            }
        }
        out.push(Ok(state));
    }
    Ok(out)
}

/// The comparison so far.
#[derive(Default)]
struct Diff {
    counts: GateCounts,
    cases: Vec<GateCase>,
    failure: Option<GateFailure>,
}

impl Diff {
    fn differs(
        &mut self,
        at: &str,
        effect: EffectKind,
        key: String,
        running: Value,
        candidate: Value,
    ) {
        self.counts.count(effect);
        if self.cases.len() < MAX_CASES {
            let mut fields = Vec::new();
            field_diffs("", &running, &candidate, &mut fields);
            if fields.len() == 1 && fields[0].path.is_empty() {
                fields.clear();
            }
            self.cases.push(GateCase {
                at: at.to_owned(),
                effect,
                key,
                running,
                candidate,
                fields,
            });
        }
    }

    fn failed(
        &mut self,
        at: String,
        running: Option<&CallFailure>,
        candidate: Option<&CallFailure>,
    ) {
        let shown = |f: Option<&CallFailure>| {
            f.map_or(
                Value::Null,
                |f| serde_json::json!({ "kind": f.kind, "message": f.message }),
            )
        };
        match (running, candidate) {
            (None, None) => return,
            (Some(a), Some(b)) if a.kind == b.kind => return,
            _ => {}
        }
        if let (None, Some(f)) = (running, candidate)
            && self.failure.is_none()
        {
            self.failure = Some(GateFailure {
                at: at.clone(),
                kind: f.kind,
                message: f.message.clone(),
                backtrace: f.backtrace.as_deref().map(|b| bounded(b, MAX_BACKTRACE)),
            });
        }
        self.differs(
            &at,
            EffectKind::Failure,
            String::new(),
            shown(running),
            shown(candidate),
        );
    }

    /// One batch under both versions.
    fn batch(&mut self, events: &[Event], a: Outcome, b: Outcome) {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return;
        };
        let place = format!("{}/{}", first.topic, first.partition);
        let at = if first.offset == last.offset {
            format!("{place} offset {}", first.offset)
        } else {
            format!("{place} offsets {}..={}", first.offset, last.offset)
        };
        let (a, a_failed) = flatten(a);
        let (b, b_failed) = flatten(b);
        let offsets: std::collections::BTreeSet<u64> =
            a_failed.keys().chain(b_failed.keys()).copied().collect();
        for offset in offsets {
            self.failed(
                format!("{place} offset {offset}"),
                a_failed.get(&offset),
                b_failed.get(&offset),
            );
        }
        self.effects(&at, &a, &b);
    }

    fn effects(&mut self, at: &str, a: &Effects, b: &Effects) {
        fn rows(e: &Effects) -> BTreeMap<&str, Option<&[u8]>> {
            e.read_model_writes
                .iter()
                .map(|w| (w.key.as_str(), w.value.as_deref()))
                .collect()
        }
        self.maps(
            at,
            EffectKind::ReadModelWrite,
            &rows(a),
            &rows(b),
            |k| k.to_string(),
            write_json,
        );
        let commands = |e: &Effects| -> Vec<Value> {
            e.commands
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "aggregate": c.aggregate, "stream": c.stream, "type": c.command_type,
                        "command_id": c.command_id, "payload": decode(&c.payload),
                    })
                })
                .collect()
        };
        self.lists(at, EffectKind::Command, commands(a), commands(b));
        let events = |e: &Effects| -> Vec<Value> {
            e.appends
                .iter()
                .flat_map(|(stream, _, events)| {
                    events.iter().map(move |n| {
                        serde_json::json!({
                            "stream": stream, "type": n.event_type, "payload": decode(&n.payload),
                        })
                    })
                })
                .collect()
        };
        self.lists(at, EffectKind::Event, events(a), events(b));
        let refused = |e: &Effects| -> BTreeMap<u64, Value> {
            e.refused
                .iter()
                .map(|r| {
                    (
                        r.offset,
                        serde_json::json!({ "kind": r.kind, "message": r.message }),
                    )
                })
                .collect()
        };
        self.maps(
            at,
            EffectKind::Rejection,
            &refused(a),
            &refused(b),
            |offset| format!("offset {offset}"),
            |v| v.cloned().unwrap_or(Value::Null),
        );
    }

    /// Two maps compared key by key (`show` renders a side's value, `None`: absent).
    fn maps<K: Ord, V: PartialEq>(
        &mut self,
        at: &str,
        effect: EffectKind,
        a: &BTreeMap<K, V>,
        b: &BTreeMap<K, V>,
        key: impl Fn(&K) -> String,
        show: impl Fn(Option<&V>) -> Value,
    ) {
        let keys: std::collections::BTreeSet<&K> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let (va, vb) = (a.get(k), b.get(k));
            if va != vb {
                self.differs(at, effect, key(k), show(va), show(vb));
            }
        }
    }

    /// Two ordered lists compared position by position.
    fn lists(&mut self, at: &str, effect: EffectKind, a: Vec<Value>, b: Vec<Value>) {
        for i in 0..a.len().max(b.len()) {
            let (va, vb) = (a.get(i), b.get(i));
            if va != vb {
                self.differs(
                    at,
                    effect,
                    format!("#{i}"),
                    va.cloned().unwrap_or(Value::Null),
                    vb.cloned().unwrap_or(Value::Null),
                );
            }
        }
    }

    /// One aggregate stream's folded state under both versions.
    fn state(
        &mut self,
        stream: &str,
        a: Result<Vec<u8>, CallFailure>,
        b: Result<Vec<u8>, CallFailure>,
    ) {
        let at = format!("stream {stream}");
        match (&a, &b) {
            (Ok(sa), Ok(sb)) if sa != sb => {
                self.differs(
                    &at,
                    EffectKind::State,
                    String::new(),
                    decode(sa),
                    decode(sb),
                );
            }
            (Ok(_), Ok(_)) => {}
            _ => self.failed(at, a.as_ref().err(), b.as_ref().err()),
        }
    }
}

/// A batch's effects (those of the events that succeeded when it was split) and its failures
/// by offset.
fn flatten(o: Outcome) -> (Effects, BTreeMap<u64, CallFailure>) {
    match o {
        Outcome::Whole(e) => (e, BTreeMap::new()),
        Outcome::Split(each) => {
            let mut all = Effects::default();
            let mut failed = BTreeMap::new();
            for (offset, r) in each {
                match r {
                    Ok(e) => {
                        all.read_model_writes.extend(e.read_model_writes);
                        all.appends.extend(e.appends);
                        all.refused.extend(e.refused);
                        all.commands.extend(e.commands);
                    }
                    Err(f) => {
                        failed.insert(offset, f);
                    }
                }
            }
            (all, failed)
        }
    }
}

fn write_json(v: Option<&Option<&[u8]>>) -> Value {
    match v {
        None => Value::Null,
        Some(None) => serde_json::json!({ "deleted": true }),
        Some(Some(bytes)) => decode(bytes),
    }
}

/// A stored value as JSON: MessagePack decoded, anything else as its size.
fn decode(bytes: &[u8]) -> Value {
    match factline_guest::codec::msgpack_to_json(bytes) {
        Ok(v) => bound_value(v),
        Err(_) => Value::String(format!("<{} bytes, not MessagePack>", bytes.len())),
    }
}

/// Longest string shown in a case, in bytes; longer ones are cut.
const MAX_SHOWN: usize = 256;
/// Most elements of a list or entries of a map shown in a case.
const MAX_ITEMS: usize = 32;

/// `v` with long strings, lists and maps cut, so a report stays small whatever a plugin writes.
fn bound_value(v: Value) -> Value {
    match v {
        Value::String(s) if s.len() > MAX_SHOWN => Value::String(bounded(&s, MAX_SHOWN)),
        Value::Array(items) => {
            let n = items.len();
            let mut shown: Vec<Value> =
                items.into_iter().take(MAX_ITEMS).map(bound_value).collect();
            if n > MAX_ITEMS {
                shown.push(Value::String(format!("… {} more", n - MAX_ITEMS)));
            }
            Value::Array(shown)
        }
        Value::Object(map) => {
            let n = map.len();
            let mut shown: serde_json::Map<String, Value> = map
                .into_iter()
                .take(MAX_ITEMS)
                .map(|(k, v)| (bounded(&k, MAX_SHOWN), bound_value(v)))
                .collect();
            if n > MAX_ITEMS {
                shown.insert("…".into(), Value::String(format!("{} more", n - MAX_ITEMS)));
            }
            Value::Object(shown)
        }
        other => other,
    }
}

fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The paths where `a` and `b` differ (maps field by field; anything else whole).
fn field_diffs(path: &str, a: &Value, b: &Value, out: &mut Vec<FieldDiff>) {
    if a == b || out.len() >= MAX_FIELDS {
        return;
    }
    if let (Value::Object(ma), Value::Object(mb)) = (a, b) {
        let keys: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
        for k in keys {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let null = Value::Null;
            field_diffs(
                &sub,
                ma.get(k).unwrap_or(&null),
                mb.get(k).unwrap_or(&null),
                out,
            );
        }
        return;
    }
    out.push(FieldDiff {
        path: path.to_owned(),
        running: a.clone(),
        candidate: b.clone(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_diffs_name_the_differing_paths() {
        let mut out = Vec::new();
        field_diffs(
            "",
            &json!({"a": 1, "b": {"c": 2, "d": 3}}),
            &json!({"a": 1, "b": {"c": 5, "d": 3}, "e": true}),
            &mut out,
        );
        let paths: Vec<&str> = out.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["b.c", "e"]);
        assert_eq!(out[0].candidate, json!(5));
    }

    #[test]
    fn options_bound_the_history() {
        assert_eq!(
            GateOptions::new(None, false).unwrap().last,
            DEFAULT_GATE_EVENTS
        );
        assert!(matches!(
            GateOptions::new(Some(0), false),
            Err(GateError::Last(0))
        ));
        assert!(GateOptions::new(Some(MAX_GATE_EVENTS + 1), true).is_err());
    }

    #[test]
    fn long_values_are_cut() {
        let v = bound_value(json!({"s": "é".repeat(400), "l": vec![1; 100]}));
        assert!(v["s"].as_str().unwrap().len() <= MAX_SHOWN + "…".len());
        assert_eq!(v["l"].as_array().unwrap().len(), MAX_ITEMS + 1);
        assert_eq!(v["l"][MAX_ITEMS], json!("… 68 more"));
    }
}
