//! The single writer: group commit.
//!
//! Requests queue on a bounded channel. The writer takes the first, then everything else already
//! waiting (up to `max_group`), applies them in arrival order inside ONE write transaction and
//! commits once (one fsync), then answers each request. While it fsyncs, new requests queue up
//! and form the next group, so the number of fsyncs per request falls as load rises.
//!
//! A refused request (wrong version, ...) writes nothing and does not affect the others. A storage
//! failure aborts the transaction: every request of the group gets the error; none was written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use redb::{Database, ReadableTable, ReadableTableMetadata};
use tokio::sync::{oneshot, watch};

use super::append::{self, Fatal, LogTables, Overlay};
use super::effects::{self, CommitError, PreparedCommit};
use super::error::{AppendError, OpenError};
use super::format;
use super::projection::{self, ProjectionChange, ProjectionError, ProjectionRecord};
use super::snapshot::{self, Snapshot};
use super::{AppendRequest, AppendResult, Durability, TopicConfig, TopicInfo};
use crate::event::now_millis;

/// Every kind of write, in one closed enum: the writer's whole dispatch is one `match`.
pub(crate) enum Op {
    Append(
        AppendRequest,
        oneshot::Sender<Result<AppendResult, AppendError>>,
    ),
    /// Boxed: a handler commit is far larger than the other requests.
    Commit(
        Box<PreparedCommit>,
        oneshot::Sender<Result<Vec<AppendResult>, CommitError>>,
    ),
    Snapshot(Snapshot, oneshot::Sender<Result<(), AppendError>>),
    Projection(
        ProjectionChange,
        oneshot::Sender<Result<ProjectionRecord, ProjectionError>>,
    ),
}

enum Outcome {
    Append(Result<AppendResult, AppendError>),
    Commit(Result<Vec<AppendResult>, CommitError>),
    Snapshot,
    Projection(Result<ProjectionRecord, ProjectionError>),
}

/// Checks the format version and registers topics (its own transaction, before any writer).
pub(crate) fn initialize(
    db: &Database,
    topics: &[TopicConfig],
) -> Result<Vec<TopicInfo>, OpenError> {
    let st = |e: &dyn std::fmt::Display| OpenError::Storage(e.to_string());
    let txn = db.begin_write().map_err(|e| st(&e))?;
    let result = {
        let mut meta = txn.open_table(format::META).map_err(|e| st(&e))?;
        let stored = meta
            .get("format_version")
            .map_err(|e| st(&e))?
            .map(|v| v.value());
        match stored {
            None => {
                meta.insert("format_version", format::FORMAT_VERSION)
                    .map_err(|e| st(&e))?;
            }
            Some(v) if v > format::FORMAT_VERSION => {
                return Err(OpenError::FormatTooNew {
                    found: v,
                    supported: format::FORMAT_VERSION,
                });
            }
            Some(v) if (format::OLDEST_UPGRADABLE_VERSION..format::FORMAT_VERSION).contains(&v) => {
                // Every later version only added tables, created just below.
                meta.insert("format_version", format::FORMAT_VERSION)
                    .map_err(|e| st(&e))?;
            }
            Some(v) if v < format::FORMAT_VERSION => {
                return Err(OpenError::FormatUnsupported {
                    found: v,
                    supported: format::FORMAT_VERSION,
                });
            }
            Some(_) => {}
        }
        let mut table = txn.open_table(format::TOPICS).map_err(|e| st(&e))?;
        // Create every table now so readers never meet a missing one.
        txn.open_table(format::EVENTS).map_err(|e| st(&e))?;
        txn.open_table(format::STREAM_INDEX).map_err(|e| st(&e))?;
        txn.open_table(format::EVENT_IDS).map_err(|e| st(&e))?;
        txn.open_table(format::GROUP_OFFSETS).map_err(|e| st(&e))?;
        txn.open_table(format::READ_MODELS).map_err(|e| st(&e))?;
        txn.open_table(format::DEAD_LETTERS).map_err(|e| st(&e))?;
        txn.open_table(format::SNAPSHOTS).map_err(|e| st(&e))?;
        txn.open_table(format::SAGA_INSTANCES).map_err(|e| st(&e))?;
        txn.open_table(format::SAGA_CORRELATIONS)
            .map_err(|e| st(&e))?;
        txn.open_table(format::SAGA_TIMERS).map_err(|e| st(&e))?;
        txn.open_table(format::PROJECTIONS).map_err(|e| st(&e))?;
        txn.open_table(format::RETRIES).map_err(|e| st(&e))?;
        let mut next_id = table.len().map_err(|e| st(&e))? as u32;
        for t in topics {
            if t.partitions == 0 || t.partitions > 4096 {
                return Err(OpenError::InvalidTopic(format!(
                    "topic {:?} needs 1..=4096 partitions, got {}",
                    t.name, t.partitions
                )));
            }
            if t.name.is_empty()
                || t.name.contains('-')
                || !t
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._".contains(&b))
            {
                return Err(OpenError::InvalidTopic(format!(
                    "topic name {:?} must be ASCII letters, digits, . or _ (no '-': it separates category and id in stream ids)",
                    t.name
                )));
            }
            let existing = table
                .get(t.name.as_str())
                .map_err(|e| st(&e))?
                .map(|v| v.value());
            match existing {
                Some((_, stored)) if stored != t.partitions => {
                    return Err(OpenError::PartitionCountChanged {
                        topic: t.name.clone(),
                        stored,
                        configured: t.partitions,
                    });
                }
                Some(_) => {}
                None => {
                    table
                        .insert(t.name.as_str(), (next_id, t.partitions))
                        .map_err(|e| st(&e))?;
                    next_id += 1;
                }
            }
        }
        let mut all = Vec::new();
        for row in table.iter().map_err(|e| st(&e))? {
            let (k, v) = row.map_err(|e| st(&e))?;
            let (id, partitions) = v.value();
            all.push(TopicInfo {
                name: k.value().to_owned(),
                id,
                partitions,
            });
        }
        all.sort_by_key(|t| t.id);
        Ok(all)
    };
    txn.commit().map_err(|e| st(&e))?;
    result
}

/// Counters of the writer, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Committed write transactions (= fsyncs with `Immediate` durability).
    pub transactions: AtomicU64,
    /// Requests answered by those transactions.
    pub requests: AtomicU64,
    /// Time spent applying requests inside transactions, in ns.
    pub apply_nanos: AtomicU64,
    /// Time spent in `commit` (writing pages and fsync), in ns.
    pub commit_nanos: AtomicU64,
}

pub(crate) fn spawn(
    db: Arc<Database>,
    rx: mpsc::Receiver<Op>,
    commits: watch::Sender<u64>,
    stats: Arc<WriterStats>,
    durability: Durability,
    max_group: usize,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("factline-log-writer".into())
        .spawn(move || run(&db, rx, commits, &stats, durability, max_group))
        .expect("spawning the log writer thread")
}

fn run(
    db: &Database,
    rx: mpsc::Receiver<Op>,
    commits: watch::Sender<u64>,
    stats: &WriterStats,
    durability: Durability,
    max_group: usize,
) {
    let mut last_time = 0u64;
    let mut group = Vec::with_capacity(max_group);
    let mut published = crate::telemetry::Published::default();
    while let Ok(first) = rx.recv() {
        group.push(first);
        while group.len() < max_group {
            match rx.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        // The log's clock never goes backwards, even if the system clock does.
        last_time = last_time.max(now_millis());
        match commit_group(db, &group, durability, last_time, stats) {
            Ok(outcomes) => {
                commits.send_modify(|n| *n += 1);
                stats.transactions.fetch_add(1, Ordering::Relaxed);
                stats
                    .requests
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                count_published(&mut published, &outcomes);
                for (op, outcome) in group.drain(..).zip(outcomes) {
                    reply(op, outcome);
                }
            }
            Err(Fatal(msg)) => {
                tracing::error!(error = %msg, requests = group.len(), "log write transaction failed; nothing of it was written");
                for op in group.drain(..) {
                    match op {
                        Op::Append(_, tx) => {
                            let _ = tx.send(Err(AppendError::Storage(msg.clone())));
                        }
                        Op::Commit(_, tx) => {
                            let _ = tx.send(Err(CommitError::Storage(msg.clone())));
                        }
                        Op::Snapshot(_, tx) => {
                            let _ = tx.send(Err(AppendError::Storage(msg.clone())));
                        }
                        Op::Projection(_, tx) => {
                            let _ = tx.send(Err(ProjectionError::Storage(msg.clone())));
                        }
                    }
                }
            }
        }
    }
}

/// `events_published_total`: what the committed transaction newly stored, per topic.
fn count_published(published: &mut crate::telemetry::Published, outcomes: &[Outcome]) {
    let appended = outcomes.iter().flat_map(|o| match o {
        Outcome::Append(Ok(r)) => std::slice::from_ref(r),
        Outcome::Commit(Ok(rs)) => rs.as_slice(),
        _ => &[],
    });
    for r in appended.filter(|r| !r.deduplicated) {
        published.add(&r.topic, r.last_offset - r.first_offset + 1);
    }
}

fn reply(op: Op, outcome: Outcome) {
    match (op, outcome) {
        (Op::Append(_, tx), Outcome::Append(r)) => {
            let _ = tx.send(r);
        }
        (Op::Commit(_, tx), Outcome::Commit(r)) => {
            let _ = tx.send(r);
        }
        (Op::Snapshot(_, tx), Outcome::Snapshot) => {
            let _ = tx.send(Ok(()));
        }
        (Op::Projection(_, tx), Outcome::Projection(r)) => {
            let _ = tx.send(r);
        }
        _ => unreachable!("outcomes are produced in the order and kind of their ops"),
    }
}

fn commit_group(
    db: &Database,
    group: &[Op],
    durability: Durability,
    now: u64,
    stats: &WriterStats,
) -> Result<Vec<Outcome>, Fatal> {
    let started = std::time::Instant::now();
    let mut txn = db.begin_write()?;
    if durability == Durability::NoSyncForTests {
        txn.set_durability(redb::Durability::None)?;
    }
    let mut outcomes = Vec::with_capacity(group.len());
    {
        let mut tables = LogTables::open(&txn)?;
        let mut overlay = Overlay::default();
        let mut handler_tables = None;
        for op in group {
            outcomes.push(match op {
                Op::Append(req, _) => {
                    Outcome::Append(append::apply(&mut tables, &mut overlay, req, now)?)
                }
                Op::Commit(c, _) => {
                    let ht = match &mut handler_tables {
                        Some(t) => t,
                        None => handler_tables.insert(effects::HandlerTables::open(&txn)?),
                    };
                    Outcome::Commit(effects::apply(&mut tables, &mut overlay, ht, c, now)?)
                }
                Op::Snapshot(s, _) => {
                    snapshot::write(&txn, s)?;
                    Outcome::Snapshot
                }
                Op::Projection(change, _) => {
                    // Handler tables hold the same tables open: close them first (a later
                    // commit in this group reopens them).
                    handler_tables = None;
                    Outcome::Projection(projection::apply(&txn, change, now)?)
                }
            });
        }
    }
    let applied = std::time::Instant::now();
    txn.commit()?;
    let nanos = |d: std::time::Duration| d.as_nanos() as u64;
    stats
        .apply_nanos
        .fetch_add(nanos(applied - started), Ordering::Relaxed);
    stats
        .commit_nanos
        .fetch_add(nanos(applied.elapsed()), Ordering::Relaxed);
    Ok(outcomes)
}
