//! Errors at the log's boundary, each saying how a caller should react.

use crate::event::{ExpectedVersion, InvalidStreamId};

/// Opening a data directory failed. Fatal: fix the configuration or the directory.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create data directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the data directory {path} is already open in another factline process (or this one)")]
    AlreadyOpen { path: String },
    #[error(
        "the data directory was written by a newer factline (format {found}; this build reads up to {supported}): upgrade factline"
    )]
    FormatTooNew { found: u64, supported: u64 },
    #[error(
        "the data directory has format {found}, which this build cannot read (expects {supported})"
    )]
    FormatUnsupported { found: u64, supported: u64 },
    #[error(
        "topic {topic:?} has {stored} partitions in the data directory but {configured} in the configuration; partition counts cannot change"
    )]
    PartitionCountChanged {
        topic: String,
        stored: u32,
        configured: u32,
    },
    #[error("invalid topic configuration: {0}")]
    InvalidTopic(String),
    #[error("storage error while opening: {0}")]
    Storage(String),
}

/// An append was refused or failed. Nothing of the append was written in any case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// Optimistic concurrency: reload the stream and decide again.
    #[error(
        "wrong expected version for stream {stream}: expected {expected}, actual version {actual}"
    )]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedVersion,
        /// 0 when the stream does not exist.
        actual: u64,
    },
    /// Bad input: a caller bug, do not retry.
    #[error(transparent)]
    InvalidStream(#[from] InvalidStreamId),
    #[error("unknown topic {topic:?} (stream {stream}); configure it first")]
    UnknownTopic { topic: String, stream: String },
    #[error("event {index}: event type must be 1..=200 bytes without control characters")]
    InvalidEventType { index: usize },
    #[error("event {index}: payload is {size} bytes, over the limit of {limit}")]
    PayloadTooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },
    #[error("an append needs at least one event")]
    Empty,
    #[error("event id {event_id} appears twice in one append")]
    DuplicateInRequest { event_id: String },
    /// Some, not all, of the event ids are already stored, or stored elsewhere: not a retry.
    #[error(
        "event ids overlap with already stored events in a way that is not a retry of one append: {detail}"
    )]
    IdempotencyConflict { detail: String },
    /// The store failed (disk full, I/O): nothing was written; retry later.
    #[error("storage error, nothing was written: {0}")]
    Storage(String),
    /// The log was closed.
    #[error("the event log is closed")]
    Closed,
    /// A clustered log cannot take the append now (no owner for its partition, this host was
    /// fenced by a newer owner, the broker did not answer): nothing was acknowledged; retry the
    /// same command (id) later, on any host.
    #[error("the log cannot take this append now: {0}")]
    Unavailable(String),
}

impl AppendError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AppendError::Storage(_) | AppendError::Closed | AppendError::Unavailable(_)
        )
    }
}

/// A read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    InvalidStream(#[from] InvalidStreamId),
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("storage error: {0}")]
    Storage(String),
    #[error("stored event at {topic}/{partition}@{offset} does not decode: {detail}")]
    Corrupt {
        topic: String,
        partition: u32,
        offset: u64,
        detail: String,
    },
    /// An event of `topic` could not be brought to its current schema (the owning aggregate's
    /// upcaster failed). Nothing is lost: the stored event is unchanged.
    #[error("stored snapshot of {stream}@{version} does not decode: {detail}")]
    CorruptSnapshot {
        stream: String,
        version: u64,
        detail: String,
    },
    #[error("cannot upcast events of topic {topic:?}: {detail}")]
    Upcast { topic: String, detail: String },
}

pub(crate) fn storage<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}
