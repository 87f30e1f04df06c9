//! The single writer: group commit.
//!
//! Requests queue on a bounded channel. The writer takes the first, then everything else already
//! waiting (up to `max_group`), applies them in arrival order inside ONE write transaction and
//! commits once (one fsync), then answers each request. While it fsyncs, new requests queue up
//! and form the next group, so the number of fsyncs per request falls as load rises.
//!
//! The batching rule ([`Batching`]): a group waits for the requesters the previous transaction
//! just answered, who mostly come straight back with their next request, until as many requests
//! as that transaction answered are in, and at most a quarter of its duration. Without the wait
//! the writer starts the next transaction while those replies are still waking their callers:
//! it takes whoever queued during the fsync, then the others queue during the next one, and
//! closed-loop appenders split into two cohorts that each fill half a transaction. A request
//! that misses a group waits a whole transaction (apply + fsync) for the next, so a wait of a
//! fraction of one for it is cheap; one appender alone never waits (its one request is all that
//! is expected), and a writer that was idle longer than the wait expects nobody.
//!
//! A refused request (wrong version, ...) writes nothing and does not affect the others. A storage
//! failure aborts the transaction: every request of the group gets the error; none was written.
//!
//! After an I/O failure (a full disk, say) redb fails every later operation until the database
//! is closed and opened again. The writer does that itself ([`Store`]): it drops the database,
//! answers requests with a storage error at once while it waits, and reopens it with backoff
//! (50 ms doubling to 1 s) until it opens and a write succeeds; readers get a storage error in
//! between, so consumer groups and runners pause and resume on their own.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// A write applied in the open transaction: its outcome travels with the sender it is answered
/// on once the transaction commits, so an outcome cannot meet another op's reply.
enum Applied {
    Append(
        Result<AppendResult, AppendError>,
        oneshot::Sender<Result<AppendResult, AppendError>>,
    ),
    Commit(
        Result<Vec<AppendResult>, CommitError>,
        oneshot::Sender<Result<Vec<AppendResult>, CommitError>>,
    ),
    Snapshot(oneshot::Sender<Result<(), AppendError>>),
    Projection(
        Result<ProjectionRecord, ProjectionError>,
        oneshot::Sender<Result<ProjectionRecord, ProjectionError>>,
    ),
}

impl Applied {
    /// The transaction committed: the outcome stands.
    fn reply(self) {
        match self {
            Applied::Append(r, tx) => {
                let _ = tx.send(r);
            }
            Applied::Commit(r, tx) => {
                let _ = tx.send(r);
            }
            Applied::Snapshot(tx) => {
                let _ = tx.send(Ok(()));
            }
            Applied::Projection(r, tx) => {
                let _ = tx.send(r);
            }
        }
    }

    /// The transaction failed after this write was applied: nothing of it was written.
    fn fail(self, msg: &str) {
        match self {
            Applied::Append(_, tx) => Op::fail_append(tx, msg),
            Applied::Commit(_, tx) => Op::fail_commit(tx, msg),
            Applied::Snapshot(tx) => Op::fail_snapshot(tx, msg),
            Applied::Projection(_, tx) => Op::fail_projection(tx, msg),
        }
    }
}

impl Op {
    fn fail(self, msg: &str) {
        match self {
            Op::Append(_, tx) => Op::fail_append(tx, msg),
            Op::Commit(_, tx) => Op::fail_commit(tx, msg),
            Op::Snapshot(_, tx) => Op::fail_snapshot(tx, msg),
            Op::Projection(_, tx) => Op::fail_projection(tx, msg),
        }
    }

    fn fail_append(tx: oneshot::Sender<Result<AppendResult, AppendError>>, msg: &str) {
        let _ = tx.send(Err(AppendError::Storage(msg.to_owned())));
    }

    fn fail_commit(tx: oneshot::Sender<Result<Vec<AppendResult>, CommitError>>, msg: &str) {
        let _ = tx.send(Err(CommitError::Storage(msg.to_owned())));
    }

    fn fail_snapshot(tx: oneshot::Sender<Result<(), AppendError>>, msg: &str) {
        let _ = tx.send(Err(AppendError::Storage(msg.to_owned())));
    }

    fn fail_projection(tx: oneshot::Sender<Result<ProjectionRecord, ProjectionError>>, msg: &str) {
        let _ = tx.send(Err(ProjectionError::Storage(msg.to_owned())));
    }
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

/// The database handle every reader and the writer share, which the writer closes and reopens
/// after an I/O failure.
pub(crate) struct Store {
    slot: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    available: AtomicBool,
    failures: AtomicU64,
    reopens: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Whether the store accepts writes, for `/healthz`, `/readyz` and metrics.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StorageHealth {
    /// The database is open and its last write succeeded.
    pub available: bool,
    /// Write transactions that failed in the store since start.
    pub failures: u64,
    /// Times the database was reopened after one.
    pub reopens: u64,
    /// The last storage failure, if any.
    pub last_error: Option<String>,
}

impl Store {
    pub fn new(db: Database, path: PathBuf) -> Self {
        Store {
            slot: RwLock::new(Some(Arc::new(db))),
            path,
            available: AtomicBool::new(true),
            failures: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// The open database; `None` while it waits to be reopened.
    pub fn current(&self) -> Option<Arc<Database>> {
        self.slot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn health(&self) -> StorageHealth {
        StorageHealth {
            available: self.available.load(Ordering::Acquire),
            failures: self.failures.load(Ordering::Relaxed),
            reopens: self.reopens.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// A write failed: unavailable until a write succeeds again. After an I/O failure the
    /// database is dropped (redb refuses everything until it is reopened); the file is closed
    /// once the last reader lets go of it.
    fn failed(&self, message: &str, io: bool) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.available.store(false, Ordering::Release);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.to_owned());
        crate::telemetry::storage_failed();
        if io {
            self.slot.write().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    /// Opens the database again; `Err` while the file cannot be opened (still full, or a
    /// reader still holds the old handle).
    fn reopen(&self) -> Result<Arc<Database>, String> {
        let db = Database::create(&self.path).map_err(|e| e.to_string())?;
        let db = Arc::new(db);
        *self.slot.write().unwrap_or_else(|p| p.into_inner()) = Some(db.clone());
        self.reopens.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(path = %self.path.display(), "log database reopened after a storage failure");
        Ok(db)
    }

    /// A write succeeded: available again.
    fn succeeded(&self) {
        if !self.available.swap(true, Ordering::AcqRel) {
            crate::telemetry::storage_reopened();
            tracing::warn!("log storage accepts writes again");
        }
    }
}

/// Whether a failed transaction poisoned the database (redb then wants it reopened) rather
/// than failing on something in it. redb's errors are flattened to text by `Fatal`, so this
/// reads its I/O messages ("I/O error: ...", "Previous I/O error occurred ...").
fn is_io_failure(message: &str) -> bool {
    message.contains("I/O error") || message.contains("Database has been closed")
}

/// Backoff between reopen attempts.
const REOPEN_FIRST: Duration = Duration::from_millis(50);
const REOPEN_MAX: Duration = Duration::from_secs(1);

pub(crate) fn spawn(
    store: Arc<Store>,
    rx: mpsc::Receiver<Op>,
    commits: watch::Sender<u64>,
    stats: Arc<WriterStats>,
    durability: Durability,
    max_group: usize,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("factline-log-writer".into())
        .spawn(move || run(&store, rx, commits, &stats, durability, max_group))
        .expect("spawning the log writer thread")
}

fn run(
    store: &Store,
    rx: mpsc::Receiver<Op>,
    commits: watch::Sender<u64>,
    stats: &WriterStats,
    durability: Durability,
    max_group: usize,
) {
    let mut last_time = 0u64;
    let mut group = Vec::with_capacity(max_group);
    let mut applied = Vec::with_capacity(max_group);
    let mut published = crate::telemetry::Published::default();
    let mut batching = Batching::default();
    // While the database is closed after a failure: when to try to reopen it, and the delay.
    let mut reopen_at: Option<(Instant, Duration)> = None;
    loop {
        let waited_since = Instant::now();
        // While waiting to reopen, wake up for it even when no request comes.
        let first = match reopen_at {
            None => match rx.recv() {
                Ok(op) => Some(op),
                Err(_) => break,
            },
            Some((at, _)) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(op) => Some(op),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
        };
        let db = match (store.current(), reopen_at) {
            (Some(db), _) => Some(db),
            (None, Some((at, delay))) if Instant::now() >= at => match store.reopen() {
                Ok(db) => {
                    reopen_at = None;
                    Some(db)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "reopening the log database failed; retrying");
                    let delay = (delay * 2).min(REOPEN_MAX);
                    reopen_at = Some((Instant::now() + delay, delay));
                    None
                }
            },
            (None, _) => None,
        };
        let Some(first) = first else { continue };
        group.push(first);
        drain(&rx, &mut group, max_group);
        if db.is_some() {
            batching.fill(&rx, &mut group, max_group, waited_since.elapsed());
        }
        let Some(db) = db else {
            // Nothing can be written until the database is back: answer at once.
            let msg = format!(
                "storage unavailable, reopening the database: {}",
                store.health().last_error.unwrap_or_default()
            );
            fail_all(&mut group, &msg);
            continue;
        };
        // The log's clock never goes backwards, even if the system clock does.
        last_time = last_time.max(now_millis());
        let started = Instant::now();
        match commit_group(&db, &mut group, &mut applied, durability, last_time, stats) {
            Ok(()) => {
                batching.committed(applied.len(), started.elapsed());
                store.succeeded();
                commits.send_modify(|n| *n += 1);
                stats.transactions.fetch_add(1, Ordering::Relaxed);
                stats
                    .requests
                    .fetch_add(applied.len() as u64, Ordering::Relaxed);
                count_published(&mut published, &applied);
                for a in applied.drain(..) {
                    a.reply();
                }
            }
            Err(Fatal(msg)) => {
                tracing::error!(error = %msg, requests = group.len(), "log write transaction failed; nothing of it was written");
                let io = is_io_failure(&msg);
                store.failed(&msg, io);
                if io {
                    drop(db);
                    let delay = match reopen_at {
                        Some((_, d)) => (d * 2).min(REOPEN_MAX),
                        None => REOPEN_FIRST,
                    };
                    reopen_at = Some((Instant::now() + delay, delay));
                }
                for a in applied.drain(..) {
                    a.fail(&msg);
                }
                fail_all(&mut group, &msg);
            }
        }
    }
}

/// Moves what is queued into `group`, without waiting, up to `max_group`.
fn drain(rx: &mpsc::Receiver<Op>, group: &mut Vec<Op>, max_group: usize) {
    while group.len() < max_group {
        match rx.try_recv() {
            Ok(op) => group.push(op),
            Err(_) => break,
        }
    }
}

/// The batching rule (see the module docs): how many requests the next group expects, and how
/// long it may wait for them.
#[derive(Debug, Default)]
struct Batching {
    /// Requests the last transaction answered: the callers that may be about to come back.
    answered: usize,
    /// How long the last transaction took (apply + commit).
    last: Duration,
}

/// The longest a group waits for its expected requests, whatever the transactions take.
const MAX_GROUP_WAIT: Duration = Duration::from_millis(2);

impl Batching {
    fn committed(&mut self, answered: usize, took: Duration) {
        self.answered = answered;
        self.last = took;
    }

    /// The longest wait for the expected requests: a quarter of a transaction, which a request
    /// that misses this group would wait four times over for the next.
    fn budget(&self) -> Duration {
        (self.last / 4).min(MAX_GROUP_WAIT)
    }

    /// Waits for more requests until `group` holds as many as the last transaction answered (or
    /// `max_group`), or the budget is spent. `idle`: how long the writer waited for the group's
    /// first request; longer than the budget means the answered callers did not come back.
    fn fill(&self, rx: &mpsc::Receiver<Op>, group: &mut Vec<Op>, max_group: usize, idle: Duration) {
        let budget = self.budget();
        let expected = self.answered.min(max_group);
        if group.len() >= expected || idle > budget {
            return;
        }
        let deadline = Instant::now() + budget;
        while group.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match rx.recv_timeout(left) {
                Ok(op) => {
                    group.push(op);
                    drain(rx, group, max_group);
                }
                // Closed: what is in `group` is still written; the next `recv` ends the writer.
                Err(_) => return,
            }
        }
    }
}

/// Answers every request of `group` with a storage error (nothing of it was written).
fn fail_all(group: &mut Vec<Op>, msg: &str) {
    for op in group.drain(..) {
        op.fail(msg);
    }
}

/// `events_published_total`: what the committed transaction newly stored, per topic.
fn count_published(published: &mut crate::telemetry::Published, applied: &[Applied]) {
    let appended = applied.iter().flat_map(|a| match a {
        Applied::Append(Ok(r), _) => std::slice::from_ref(r),
        Applied::Commit(Ok(rs), _) => rs.as_slice(),
        _ => &[],
    });
    for r in appended.filter(|r| !r.deduplicated) {
        published.add(&r.topic, r.last_offset - r.first_offset + 1);
    }
}

/// Applies `group` in one transaction and commits it. Each applied op moves from `group` to
/// `applied`; on a failure both keep what is left to answer (nothing of it was written).
fn commit_group(
    db: &Database,
    group: &mut Vec<Op>,
    applied: &mut Vec<Applied>,
    durability: Durability,
    now: u64,
    stats: &WriterStats,
) -> Result<(), Fatal> {
    let started = std::time::Instant::now();
    let mut txn = db.begin_write()?;
    if durability == Durability::NoSyncForTests {
        txn.set_durability(redb::Durability::None)?;
    }
    {
        let mut open = OpenTxn {
            txn: &txn,
            tables: LogTables::open(&txn)?,
            overlay: Overlay::default(),
            handler_tables: None,
            now,
        };
        let mut ops = group.drain(..);
        while let Some(op) = ops.next() {
            match open.apply(op) {
                Ok(a) => applied.push(a),
                Err((fatal, op)) => {
                    let rest: Vec<Op> = std::iter::once(op).chain(ops).collect();
                    group.extend(rest);
                    return Err(fatal);
                }
            }
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
    Ok(())
}

/// The write transaction of one group while its ops are applied.
struct OpenTxn<'txn> {
    txn: &'txn redb::WriteTransaction,
    tables: LogTables<'txn>,
    overlay: Overlay,
    /// Opened by the group's first handler commit.
    handler_tables: Option<effects::HandlerTables<'txn>>,
    now: u64,
}

impl OpenTxn<'_> {
    /// Applies one op; on a fatal error hands the op back, unanswered.
    // The op is moved back whole on the (cold) failure path; boxing it would not save a copy.
    #[allow(clippy::result_large_err)]
    fn apply(&mut self, op: Op) -> Result<Applied, (Fatal, Op)> {
        let now = self.now;
        match op {
            Op::Append(req, tx) => {
                match append::apply(&mut self.tables, &mut self.overlay, &req, now) {
                    Ok(r) => Ok(Applied::Append(r, tx)),
                    Err(f) => Err((f, Op::Append(req, tx))),
                }
            }
            Op::Commit(c, tx) => {
                let ht = match &mut self.handler_tables {
                    Some(t) => t,
                    None => match effects::HandlerTables::open(self.txn) {
                        Ok(t) => self.handler_tables.insert(t),
                        Err(e) => return Err((e, Op::Commit(c, tx))),
                    },
                };
                match effects::apply(&mut self.tables, &mut self.overlay, ht, &c, now) {
                    Ok(r) => Ok(Applied::Commit(r, tx)),
                    Err(f) => Err((f, Op::Commit(c, tx))),
                }
            }
            Op::Snapshot(s, tx) => match snapshot::write(self.txn, &s) {
                Ok(()) => Ok(Applied::Snapshot(tx)),
                Err(e) => Err((e.into(), Op::Snapshot(s, tx))),
            },
            Op::Projection(change, tx) => {
                // Handler tables hold the same tables open: close them first (a later commit
                // in this group reopens them).
                self.handler_tables = None;
                match projection::apply(self.txn, &change, now) {
                    Ok(r) => Ok(Applied::Projection(r, tx)),
                    Err(f) => Err((f, Op::Projection(change, tx))),
                }
            }
        }
    }
}
