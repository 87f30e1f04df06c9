//! The dead-letter queue as stored: one record per parked event, keyed by where the event sits.
//!
//! Records are written and removed only inside handler commits (`effects.rs`), so parking an
//! event and moving the offset past it (`skip`) is one transaction, and so is re-running a
//! parked event and removing its record. Reads here are snapshot reads like `read.rs`.

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use super::TopicInfo;
use super::error::{ReadError, storage};
use super::format;

/// One parked event and why it was parked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub stream: String,
    /// Stored as its kebab-case name (`trap`, `memory-limit`, `rejected`, ...); records of
    /// earlier builds, which spelled some kinds with spaces, read as the same kinds.
    pub failure_kind: crate::failure::FailureKind,
    pub message: String,
    /// The guest's stack at the last failure, when there was one.
    pub backtrace: Option<String>,
    pub attempts: u32,
    /// The plugin version that failed last.
    pub plugin_version: String,
    /// Milliseconds since the Unix epoch.
    pub first_failed_at: u64,
    pub last_failed_at: u64,
    /// `block` policy: the partition's offset stays at this event until it is retried or
    /// discarded. `false` (`skip`): the offset already moved past it.
    pub blocking: bool,
}

/// Where a dead letter is: its group and the event's position.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeadLetterKey {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

impl DeadLetter {
    pub fn key(&self) -> DeadLetterKey {
        DeadLetterKey {
            group: self.group.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

impl std::fmt::Display for DeadLetterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}/{}@{}",
            self.group, self.topic, self.partition, self.offset
        )
    }
}

fn st<E: std::fmt::Display>(e: E) -> ReadError {
    ReadError::Storage(storage(e))
}

fn decode(bytes: &[u8], topic: &str, partition: u32, offset: u64) -> Result<DeadLetter, ReadError> {
    rmp_serde::from_slice(bytes).map_err(|e| ReadError::Corrupt {
        topic: topic.to_owned(),
        partition,
        offset,
        detail: format!("dead letter does not decode: {e}"),
    })
}

/// Dead letters of `group` (all groups when `None`), in key order.
pub(crate) fn list(
    db: &Database,
    topics_by_id: &[TopicInfo],
    group: Option<&str>,
) -> Result<Vec<DeadLetter>, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::DEAD_LETTERS).map_err(st)?;
    let rows = match group {
        Some(g) => table.range((g, 0, 0, 0)..=(g, u32::MAX, u32::MAX, u64::MAX)),
        None => table.iter(),
    }
    .map_err(st)?;
    let mut out = Vec::new();
    for row in rows {
        let (k, v) = row.map_err(st)?;
        let (_, tid, p, o) = k.value();
        let topic = topics_by_id
            .get(tid as usize)
            .map_or("?", |t| t.name.as_str());
        out.push(decode(v.value(), topic, p, o)?);
    }
    Ok(out)
}

pub(crate) fn get(
    db: &Database,
    group: &str,
    topic: &TopicInfo,
    partition: u32,
    offset: u64,
) -> Result<Option<DeadLetter>, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::DEAD_LETTERS).map_err(st)?;
    table
        .get((group, topic.id, partition, offset))
        .map_err(st)?
        .map(|v| decode(v.value(), &topic.name, partition, offset))
        .transpose()
}

/// How many events are parked, over all groups (a gauge for metrics).
pub(crate) fn count(db: &Database) -> Result<u64, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::DEAD_LETTERS).map_err(st)?;
    table.len().map_err(st)
}
