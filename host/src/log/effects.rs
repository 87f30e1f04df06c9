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

use redb::{ReadTransaction, ReadableDatabase, ReadableTable, Table};

use super::append::{self, Fatal, LogTables, Overlay};
use super::dead_letter::DeadLetter;
use super::error::{AppendError, ReadError, storage};
use super::format;
use super::{AppendRequest, AppendResult, TopicInfo};
use crate::event::{ExpectedVersion, NewEvent};

/// One read-model change; `value: None` deletes the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadModelWrite {
    pub scope: String,
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// Everything one handler batch changes, committed atomically with its offset.
#[derive(Clone, Debug, Default)]
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
    #[error("storage error, nothing was written: {0}")]
    Storage(String),
    #[error("the event log is closed")]
    Closed,
}

impl CommitError {
    /// Whether retrying the same commit later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, CommitError::Storage(_) | CommitError::Closed)
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
}

impl<'txn> HandlerTables<'txn> {
    pub fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, Fatal> {
        Ok(HandlerTables {
            offsets: txn.open_table(format::GROUP_OFFSETS)?,
            read_models: txn.open_table(format::READ_MODELS)?,
            dead_letters: txn.open_table(format::DEAD_LETTERS)?,
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
        results.push(append::write(log, req, plan, now)?);
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
    }
    Ok(Ok(results))
}

/// A consistent, read-only snapshot of all read models.
pub struct ReadModelView {
    table: redb::ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
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
        Ok(ReadModelView { table })
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
        let start = match start_after {
            Some(s) if s >= prefix => s,
            _ => prefix,
        };
        let mut out = Vec::new();
        let range = self
            .table
            .range((scope, start)..)
            .map_err(|e| ReadError::Storage(storage(e)))?;
        for row in range {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row.map_err(|e| ReadError::Storage(storage(e)))?;
            let (s, key) = k.value();
            if s != scope || !key.starts_with(prefix) {
                break;
            }
            if start_after == Some(key) {
                continue;
            }
            out.push((key.to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }
}
