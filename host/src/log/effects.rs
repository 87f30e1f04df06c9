//! A handler's batch commit: read-model writes, appended events (the outbox) and the group's
//! offset advance, all in one transaction (DESIGN §4 invariant 4).
//!
//! The offset check is the fence that makes effects apply exactly once: a commit names the
//! offset its batch started from, and is refused if the stored offset differs (the batch was
//! already committed, or another runner owns the partition). Since effects and offset share the
//! transaction, "offset advanced" and "effects applied" are the same fact after any crash.
//!
//! Dead letters ride in the same commit: parking an event with `skip` moves the offset past it
//! in the transaction that stores the record, and re-running a parked event commits its effects
//! with the record's removal. A commit that resolves a record is refused if the record is gone,
//! which fences two retries of one dead letter the way the offset fences two runs of a batch.
//!
//! Read checks make concurrent batches of one group serializable (optimistic concurrency): a
//! batch reads a snapshot, so the commit carries what it read and is refused with
//! [`CommitError::ReadConflict`] if any of it changed since. The writer re-reads inside its
//! transaction, which sees every earlier commit (including earlier ones of the same group commit).

use redb::{ReadTransaction, ReadableDatabase, ReadableTable, Table};
use sha2::{Digest, Sha256};

use super::append::{self, Fatal, LogTables, Overlay};
use super::dead_letter::DeadLetter;
use super::error::{AppendError, ReadError, storage};
use super::format;
use super::saga_state::{SagaTables, SagaWrite};
use super::{AppendRequest, AppendResult, TopicInfo};
use crate::event::{ExpectedVersion, NewEvent};

/// One read-model change; `value: None` deletes the key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReadModelWrite {
    pub scope: String,
    pub key: String,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// SHA-256 of a read-model value: what a read check compares instead of keeping the value
/// (values go up to 1 MiB).
#[derive(Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValueDigest([u8; 32]);

impl ValueDigest {
    pub fn of(value: &[u8]) -> Self {
        ValueDigest(Sha256::digest(value).into())
    }
}

impl std::fmt::Debug for ValueDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// Something a batch read from its committed snapshot; the commit is refused unless a re-read
/// inside the write transaction gives the same answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReadCheck {
    /// `get(scope, key)` saw this value (`None`: absent).
    Get {
        scope: String,
        key: String,
        seen: Option<ValueDigest>,
    },
    /// `scan_prefix(scope, prefix, start_after, limit)` returned exactly these rows.
    Scan {
        scope: String,
        prefix: String,
        start_after: Option<String>,
        limit: usize,
        seen: Vec<(String, ValueDigest)>,
    },
}

impl ReadCheck {
    fn describe(&self) -> String {
        match self {
            ReadCheck::Get { key, .. } => format!("key {key:?}"),
            ReadCheck::Scan {
                prefix,
                start_after,
                ..
            } => format!("scan of prefix {prefix:?} after {start_after:?}"),
        }
    }

    fn scope(&self) -> &str {
        match self {
            ReadCheck::Get { scope, .. } | ReadCheck::Scan { scope, .. } => scope,
        }
    }
}

/// Everything one handler batch changes, committed atomically with its offset (serializable: a
/// clustered log carries it in a partition's record, `cluster::record`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HandlerCommit {
    /// The consumer group (= handler name).
    pub group: String,
    pub topic: String,
    pub partition: u32,
    /// The committed offset the batch started from (`None`: the group had none yet).
    pub expected_offset: Option<u64>,
    /// The next offset to process after this batch.
    pub next_offset: u64,
    pub read_model_writes: Vec<ReadModelWrite>,
    /// Events the handler appends: `(stream, expected version, events)`.
    pub appends: Vec<(String, ExpectedVersion, Vec<NewEvent>)>,
    /// Dead letters to store (or overwrite), all of this commit's group, topic and partition.
    pub park: Vec<DeadLetter>,
    /// Offsets (same group, topic, partition) whose dead letters this commit removes. Each must
    /// exist, else the whole commit is refused.
    pub resolve: Vec<u64>,
    /// Leave the group's offset alone: `expected_offset` and `next_offset` are ignored (a DLQ
    /// operation on an event the offset already passed; `resolve` is then the fence).
    pub keep_offset: bool,
    /// What the batch read from its snapshot; any difference refuses the commit.
    pub read_checks: Vec<ReadCheck>,
    /// Saga instances this commit moves (the saga runner's state and timers), each fenced by
    /// its expected revision.
    pub saga_writes: Vec<SagaWrite>,
    /// A failed attempt at the partition's next event, stored so that a restart continues its
    /// count (with `keep_offset`). A commit that moves the offset clears the stored one.
    pub attempt: Option<Attempt>,
}

/// The failed attempts of the event a partition is retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attempt {
    pub offset: u64,
    pub attempts: u32,
    /// Milliseconds since the Unix epoch.
    pub first_failed_at: u64,
}

/// A handler commit was refused or failed; nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// Another runner committed this partition first (or the batch was already committed):
    /// re-read the committed offset and continue from there.
    #[error(
        "offset fence: group {group} on {topic}/{partition} is at {actual:?}, the batch expected {expected:?}"
    )]
    OffsetMismatch {
        group: String,
        topic: String,
        partition: u32,
        expected: Option<u64>,
        actual: Option<u64>,
    },
    #[error("the batch's offset must move forward: {from:?} -> {to}")]
    OffsetBackwards { from: Option<u64>, to: u64 },
    #[error("append {index} of the batch was refused: {source}")]
    Append { index: usize, source: AppendError },
    #[error(transparent)]
    Invalid(#[from] AppendError),
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// The dead letter was already retried or discarded (or never parked).
    #[error("no dead letter of group {group} at {topic}/{partition}@{offset}")]
    DeadLetterMissing {
        group: String,
        topic: String,
        partition: u32,
        offset: u64,
    },
    /// A parked record names another group, topic or partition than its commit.
    #[error("dead letter {0} does not belong to this commit's group, topic and partition")]
    ForeignDeadLetter(String),
    /// Something the batch read changed since its snapshot (another batch of the group
    /// committed first): re-run the batch on a fresh snapshot.
    #[error(
        "read conflict: group {group} read {read} of scope {scope}, which changed since its snapshot"
    )]
    ReadConflict {
        group: String,
        scope: String,
        read: String,
    },
    /// A saga instance changed since it was read (or already exists): re-read it.
    #[error(
        "saga {saga} instance {instance_id} is at revision {actual:?}, the commit expected {expected:?}"
    )]
    SagaRevision {
        saga: String,
        instance_id: String,
        expected: Option<u64>,
        actual: Option<u64>,
    },
    #[error("storage error, nothing was written: {0}")]
    Storage(String),
    #[error("the event log is closed")]
    Closed,
    /// A clustered log could not take the commit now (this host lost the partition, the
    /// cluster is unreachable, the record was not read back in time); nothing of it counts
    /// unless it was applied, which a retry finds out through the commit's fences.
    #[error("the clustered log cannot take this commit now: {0}")]
    Unavailable(String),
}

impl CommitError {
    /// Whether retrying the same commit later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CommitError::Storage(_) | CommitError::Closed | CommitError::Unavailable(_)
        )
    }
}

pub(crate) struct PreparedCommit {
    pub topic: TopicInfo,
    pub commit: HandlerCommit,
    pub appends: Vec<AppendRequest>,
}

pub(crate) struct HandlerTables<'txn> {
    offsets: Table<'txn, (&'static str, u32, u32), u64>,
    read_models: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    dead_letters: Table<'txn, (&'static str, u32, u32, u64), &'static [u8]>,
    retries: Table<'txn, (&'static str, u32, u32), (u64, u32, u64)>,
    sagas: SagaTables<'txn>,
}

impl<'txn> HandlerTables<'txn> {
    pub fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, Fatal> {
        Ok(HandlerTables {
            offsets: txn.open_table(format::GROUP_OFFSETS)?,
            read_models: txn.open_table(format::READ_MODELS)?,
            dead_letters: txn.open_table(format::DEAD_LETTERS)?,
            retries: txn.open_table(format::RETRIES)?,
            sagas: SagaTables::open(txn)?,
        })
    }
}

pub(crate) fn apply(
    log: &mut LogTables<'_>,
    txn_overlay: &mut Overlay,
    tables: &mut HandlerTables<'_>,
    prepared: &PreparedCommit,
    now: u64,
) -> Result<Result<Vec<AppendResult>, CommitError>, Fatal> {
    let c = &prepared.commit;
    let key = (c.group.as_str(), prepared.topic.id, c.partition);
    let actual = tables.offsets.get(key)?.map(|v| v.value());
    if !c.keep_offset && actual != c.expected_offset {
        return Ok(Err(CommitError::OffsetMismatch {
            group: c.group.clone(),
            topic: c.topic.clone(),
            partition: c.partition,
            expected: c.expected_offset,
            actual,
        }));
    }
    if !c.keep_offset && c.expected_offset.is_some_and(|from| c.next_offset < from) {
        return Ok(Err(CommitError::OffsetBackwards {
            from: c.expected_offset,
            to: c.next_offset,
        }));
    }
    for &offset in &c.resolve {
        let dl_key = (c.group.as_str(), prepared.topic.id, c.partition, offset);
        if tables.dead_letters.get(dl_key)?.is_none() {
            return Ok(Err(CommitError::DeadLetterMissing {
                group: c.group.clone(),
                topic: c.topic.clone(),
                partition: c.partition,
                offset,
            }));
        }
    }
    for check in &c.read_checks {
        if !check_holds(&tables.read_models, check)? {
            return Ok(Err(CommitError::ReadConflict {
                group: c.group.clone(),
                scope: check.scope().to_owned(),
                read: check.describe(),
            }));
        }
    }
    for w in &c.saga_writes {
        if let Err(actual) = tables.sagas.check(w)? {
            return Ok(Err(CommitError::SagaRevision {
                saga: w.saga.clone(),
                instance_id: w.instance_id.clone(),
                expected: w.expected_revision,
                actual,
            }));
        }
    }
    // Plan every append before writing any, so a refusal leaves the transaction untouched.
    let mut overlay = Overlay::default();
    let mut plans = Vec::with_capacity(prepared.appends.len());
    for (index, req) in prepared.appends.iter().enumerate() {
        match append::plan(log, req, &mut overlay, Some(txn_overlay))? {
            Ok(p) => plans.push(p),
            Err(source) => return Ok(Err(CommitError::Append { index, source })),
        }
    }
    txn_overlay.absorb(overlay);
    let mut results = Vec::with_capacity(plans.len());
    for (req, plan) in prepared.appends.iter().zip(plans) {
        results.push(append::write(
            log,
            req,
            plan,
            req.occurred_at.unwrap_or(now),
        )?);
    }
    for w in &c.read_model_writes {
        let k = (w.scope.as_str(), w.key.as_str());
        match &w.value {
            Some(v) => {
                tables.read_models.insert(k, v.as_slice())?;
            }
            None => {
                tables.read_models.remove(k)?;
            }
        }
    }
    for w in &c.saga_writes {
        tables.sagas.write(w)?;
    }
    for &offset in &c.resolve {
        tables
            .dead_letters
            .remove((c.group.as_str(), prepared.topic.id, c.partition, offset))?;
    }
    for d in &c.park {
        let bytes = rmp_serde::to_vec_named(d)?;
        tables.dead_letters.insert(
            (c.group.as_str(), prepared.topic.id, c.partition, d.offset),
            bytes.as_slice(),
        )?;
    }
    if !c.keep_offset {
        tables.offsets.insert(key, c.next_offset)?;
        tables.retries.remove(key)?;
    }
    if let Some(a) = &c.attempt {
        tables
            .retries
            .insert(key, (a.offset, a.attempts, a.first_failed_at))?;
    }
    Ok(Ok(results))
}

type ReadModelKey = (&'static str, &'static str);

/// Whether `check` gives the same answer against `table` as it did against the batch's snapshot.
fn check_holds(
    table: &impl ReadableTable<ReadModelKey, &'static [u8]>,
    check: &ReadCheck,
) -> Result<bool, redb::StorageError> {
    match check {
        ReadCheck::Get { scope, key, seen } => {
            let now = table
                .get((scope.as_str(), key.as_str()))?
                .map(|v| ValueDigest::of(v.value()));
            Ok(now == *seen)
        }
        ReadCheck::Scan {
            scope,
            prefix,
            start_after,
            limit,
            seen,
        } => {
            let mut rows = seen.iter();
            let mut same = true;
            scan(
                table,
                scope,
                prefix,
                start_after.as_deref(),
                *limit,
                |k, v| {
                    same = rows
                        .next()
                        .is_some_and(|(sk, sd)| sk == k && *sd == ValueDigest::of(v));
                    same
                },
            )?;
            Ok(same && rows.next().is_none())
        }
    }
}

/// Visits the rows of `scope` whose key starts with `prefix`, in key order, after `start_after`,
/// at most `limit`, until `visit` returns false. One implementation for snapshot scans and
/// their re-run in the writer, so a read check compares like with like.
fn scan(
    table: &impl ReadableTable<ReadModelKey, &'static [u8]>,
    scope: &str,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    mut visit: impl FnMut(&str, &[u8]) -> bool,
) -> Result<(), redb::StorageError> {
    let start = match start_after {
        Some(s) if s >= prefix => s,
        _ => prefix,
    };
    let mut n = 0;
    for row in table.range((scope, start)..)? {
        if n >= limit {
            break;
        }
        let (k, v) = row?;
        let (s, key) = k.value();
        if s != scope || !key.starts_with(prefix) {
            break;
        }
        if start_after == Some(key) {
            continue;
        }
        n += 1;
        if !visit(key, v.value()) {
            break;
        }
    }
    Ok(())
}

/// A consistent, read-only snapshot of all read models (and of which generation of each
/// projector's read model is live).
pub struct ReadModelView {
    table: redb::ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
    projections: redb::ReadOnlyTable<&'static str, &'static [u8]>,
}

impl std::fmt::Debug for ReadModelView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadModelView")
    }
}

impl ReadModelView {
    pub(crate) fn begin(db: &redb::Database) -> Result<Self, ReadError> {
        let txn: ReadTransaction = db
            .begin_read()
            .map_err(|e| ReadError::Storage(storage(e)))?;
        let table = txn
            .open_table(format::READ_MODELS)
            .map_err(|e| ReadError::Storage(storage(e)))?;
        let projections = txn
            .open_table(format::PROJECTIONS)
            .map_err(|e| ReadError::Storage(storage(e)))?;
        Ok(ReadModelView { table, projections })
    }

    /// The scope of `projector`'s live read model in this snapshot (its name until a rebuild
    /// switched it to another generation).
    pub fn live_scope(&self, projector: &str) -> Result<String, ReadError> {
        Ok(
            super::projection::read_record(&self.projections, projector)?
                .map_or_else(|| projector.to_owned(), |r| r.active.scope(projector)),
        )
    }

    pub fn get(&self, scope: &str, key: &str) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(self
            .table
            .get((scope, key))
            .map_err(|e| ReadError::Storage(storage(e)))?
            .map(|v| v.value().to_vec()))
    }

    /// Entries of `scope` whose key starts with `prefix`, in key order, after `start_after`.
    pub fn scan_prefix(
        &self,
        scope: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, ReadError> {
        let mut out = Vec::new();
        scan(&self.table, scope, prefix, start_after, limit, |k, v| {
            out.push((k.to_owned(), v.to_vec()));
            true
        })
        .map_err(|e| ReadError::Storage(storage(e)))?;
        Ok(out)
    }

    /// How many keys of `scope` start with `prefix`, counting at most `cap` (keys only: the
    /// values are not copied).
    pub fn count_prefix(&self, scope: &str, prefix: &str, cap: usize) -> Result<usize, ReadError> {
        let mut n = 0;
        scan(&self.table, scope, prefix, None, cap, |_, _| {
            n += 1;
            true
        })
        .map_err(|e| ReadError::Storage(storage(e)))?;
        Ok(n)
    }
}
