//! The durable event log on redb: topics, partitions, streams, consumer offsets and read models.
//!
//! **Architecture invariant:** this is the only module that imports `redb`. Everything durable
//! goes through here, and every write goes through one writer thread (`writer.rs`) that groups
//! concurrent requests into shared transactions (group commit).
//!
//! Data flow: `append` validates in the caller's thread, queues an [`writer::Op`], and waits for
//! the writer to commit the transaction that holds it (DESIGN §4 invariant 1).

mod append;
mod dead_letter;
mod effects;
mod error;
mod format;
mod inspect;
mod partition;
mod projection;
mod read;
mod saga_state;
mod snapshot;
mod upcast;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;

use redb::Database;
use tokio::sync::{oneshot, watch};

pub use dead_letter::{DeadLetter, DeadLetterKey};
pub use effects::{
    Attempt, CommitError, HandlerCommit, ReadCheck, ReadModelView, ReadModelWrite, ValueDigest,
};
pub use error::{AppendError, OpenError, ReadError};
pub use format::FORMAT_VERSION;
pub use inspect::{
    DeadLetterCount, GroupPosition, InspectError, Inspection, TopicSummary, inspect,
};
pub use partition::{murmur2, partition_for};
pub use projection::{
    ProjectionChange, ProjectionError, ProjectionRecord, ReadModelGeneration, rebuild_group,
    scope as read_model_scope,
};
pub use saga_state::{SagaWrite, StoredSaga, TimerChange};
pub use snapshot::{Snapshot, SnapshotBound};
pub use upcast::{Upcast, UpcastError};
pub use writer::{StorageHealth, WriterStats};

use crate::event::{Event, ExpectedVersion, NewEvent, StreamId};

/// Default limit on one event's payload.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// A topic and its fixed partition count.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfig {
    pub name: String,
    pub partitions: u32,
}

impl TopicConfig {
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        TopicConfig {
            name: name.into(),
            partitions,
        }
    }
}

/// How commits reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync before a commit returns. The only setting for real data.
    #[default]
    Immediate,
    /// No fsync: a crash may lose recent commits. For tests and benchmarks of logic only.
    NoSyncForTests,
}

/// Options for [`EventLog::open`].
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Topics to create if missing; existing topics must keep their partition count.
    pub topics: Vec<TopicConfig>,
    pub max_payload_bytes: usize,
    pub durability: Durability,
    /// Most operations grouped into one write transaction.
    pub max_group: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            topics: Vec::new(),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            durability: Durability::Immediate,
            max_group: 4096,
        }
    }
}

impl LogOptions {
    pub fn with_topics(topics: impl IntoIterator<Item = TopicConfig>) -> Self {
        LogOptions {
            topics: topics.into_iter().collect(),
            ..Default::default()
        }
    }
}

/// Where an append put its events. All events of one append are contiguous in one partition.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppendResult {
    pub stream: String,
    pub topic: String,
    pub partition: u32,
    pub first_version: u64,
    pub last_version: u64,
    pub first_offset: u64,
    pub last_offset: u64,
    pub event_ids: Vec<uuid::Uuid>,
    /// True when every event was already stored by an earlier identical append.
    pub deduplicated: bool,
}

/// A topic's metadata.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub id: u32,
    pub partitions: u32,
}

/// A validated append, ready for the writer.
#[derive(Debug)]
pub(crate) struct AppendRequest {
    pub stream: StreamId,
    pub topic: TopicInfo,
    pub partition: u32,
    pub expected: ExpectedVersion,
    pub events: Vec<PreparedEvent>,
    /// The events' recorded time ([`EventLog::restore`]); `None`: the writer's clock.
    pub occurred_at: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct PreparedEvent {
    pub id: uuid::Uuid,
    /// Ids the log generated (UUIDv7) cannot be stored yet: no idempotency lookup needed.
    pub caller_id: bool,
    pub new: NewEvent,
}

struct Shared {
    /// The database, reopened by the writer after a failed write (disk full, I/O error).
    store: Arc<writer::Store>,
    path: PathBuf,
    topics: HashMap<String, TopicInfo>,
    topics_by_id: Vec<TopicInfo>,
    max_payload_bytes: usize,
    ops: Mutex<Option<mpsc::SyncSender<writer::Op>>>,
    commits: watch::Receiver<u64>,
    stats: Arc<WriterStats>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Applied to every event read out (schema evolution); `None` costs nothing.
    upcaster: RwLock<Option<Arc<dyn Upcast>>>,
}

impl Shared {
    /// The open database, or a storage error while the writer waits to reopen it.
    fn db(&self) -> Result<Arc<Database>, ReadError> {
        self.store.current().ok_or_else(|| {
            ReadError::Storage(format!(
                "storage unavailable, reopening: {}",
                self.store.health().last_error.unwrap_or_default()
            ))
        })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the queue ends the writer after it drains; joining releases its database
        // handle, so the directory can be reopened right after.
        self.ops.lock().map(|mut o| o.take()).ok();
        if let Some(h) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }
}

/// The event log. Cheap to clone; all clones share one database and one writer.
#[derive(Clone)]
pub struct EventLog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

/// File name of the database inside a data directory.
pub const DB_FILE: &str = "factline.redb";

impl EventLog {
    /// Opens (or creates) the log in `dir`, checking the stored format version and topics.
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<Self, OpenError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => OpenError::AlreadyOpen {
                path: path.display().to_string(),
            },
            other => OpenError::Storage(other.to_string()),
        })?;
        let topics_by_id = writer::initialize(&db, &options.topics)?;
        let topics = topics_by_id
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect();
        let store = Arc::new(writer::Store::new(db, path.clone()));
        let (tx, rx) = mpsc::sync_channel(options.max_group.max(1) * 2);
        let (commit_tx, commit_rx) = watch::channel(0u64);
        let stats = Arc::new(WriterStats::default());
        let handle = writer::spawn(
            store.clone(),
            rx,
            commit_tx,
            stats.clone(),
            options.durability,
            options.max_group.max(1),
        );
        Ok(EventLog {
            shared: Arc::new(Shared {
                store,
                path: dir.to_path_buf(),
                topics,
                topics_by_id,
                max_payload_bytes: options.max_payload_bytes,
                ops: Mutex::new(Some(tx)),
                commits: commit_rx,
                stats,
                writer: Mutex::new(Some(handle)),
                upcaster: RwLock::new(None),
            }),
        })
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// All topics, by id.
    pub fn topics(&self) -> &[TopicInfo] {
        &self.shared.topics_by_id
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.shared.topics.get(name)
    }

    /// The topic and partition a stream lives in.
    pub fn locate(&self, stream: &str) -> Result<(TopicInfo, u32), AppendError> {
        let id = StreamId::parse(stream)?;
        let topic = self.topic_of(&id)?;
        let partition = partition_for(id.as_str(), topic.partitions);
        Ok((topic, partition))
    }

    fn topic_of(&self, id: &StreamId) -> Result<TopicInfo, AppendError> {
        self.shared
            .topics
            .get(id.category())
            .cloned()
            .ok_or_else(|| AppendError::UnknownTopic {
                topic: id.category().to_owned(),
                stream: id.to_string(),
            })
    }

    /// Whether the store accepts writes now, and its failures and reopens so far.
    pub fn storage_health(&self) -> StorageHealth {
        self.shared.store.health()
    }

    /// The writer's counters (transactions, requests): requests per transaction shows how well
    /// group commit works.
    pub fn writer_stats(&self) -> &WriterStats {
        &self.shared.stats
    }

    /// A watch that changes after every commit; consumers wait on it for new events.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.shared.commits.clone()
    }

    /// Appends `events` to `stream` atomically, if the stream is at `expected`. Returns once the
    /// events are durable. Blocks the calling thread; see [`EventLog::append_async`].
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        let rx = self.submit_append(stream, expected, events)?;
        rx.blocking_recv().map_err(|_| AppendError::Closed)?
    }

    /// [`EventLog::append`] for async callers.
    pub async fn append_async(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        let rx = self.submit_append(stream, expected, events)?;
        rx.await.map_err(|_| AppendError::Closed)?
    }

    fn submit_append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<oneshot::Receiver<Result<AppendResult, AppendError>>, AppendError> {
        let request = self.prepare_append(stream, expected, events)?;
        let (tx, rx) = oneshot::channel();
        self.send(writer::Op::Append(request, tx))?;
        Ok(rx)
    }

    /// Validates an append without touching storage.
    pub(crate) fn prepare_append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendRequest, AppendError> {
        let id = StreamId::parse(stream)?;
        let topic = self.topic_of(&id)?;
        let events = append::validate(events, self.shared.max_payload_bytes)?;
        let partition = partition_for(id.as_str(), topic.partitions);
        Ok(AppendRequest {
            stream: id,
            topic,
            partition,
            expected,
            events,
            occurred_at: None,
        })
    }

    /// Stores recorded events again with their envelopes (ids, stream versions, time,
    /// correlation and causation), each stream's from its first version on; offsets are this
    /// log's. For a fresh log that replays an exported context (`factline replay`): the
    /// writer's clock is not consulted, so times may go backwards across streams. Returns once
    /// durable.
    pub fn restore(&self, events: &[Event]) -> Result<(), AppendError> {
        let mut replies = Vec::with_capacity(events.len());
        for e in events {
            let expected = match e.stream_version {
                0 | 1 => ExpectedVersion::NoStream,
                v => ExpectedVersion::Exact(v - 1),
            };
            let mut request = self.prepare_append(&e.stream, expected, vec![e.to_new()])?;
            request.occurred_at = Some(e.occurred_at);
            let (tx, rx) = oneshot::channel();
            self.send(writer::Op::Append(request, tx))?;
            replies.push(rx);
        }
        for rx in replies {
            rx.blocking_recv().map_err(|_| AppendError::Closed)??;
        }
        Ok(())
    }

    fn send(&self, op: writer::Op) -> Result<(), AppendError> {
        let sender = self
            .shared
            .ops
            .lock()
            .map_err(|_| AppendError::Closed)?
            .clone()
            .ok_or(AppendError::Closed)?;
        sender.send(op).map_err(|_| AppendError::Closed)
    }

    /// Commits a handler's batch: its effects and its offset advance, in one transaction
    /// (DESIGN §4 invariant 4). Blocks until durable.
    pub fn commit_handler(&self, commit: HandlerCommit) -> Result<Vec<AppendResult>, CommitError> {
        let rx = self.submit_commit(commit, None)?;
        rx.blocking_recv().map_err(|_| CommitError::Closed)?
    }

    /// [`EventLog::commit_handler`] for async callers.
    pub async fn commit_handler_async(
        &self,
        commit: HandlerCommit,
    ) -> Result<Vec<AppendResult>, CommitError> {
        let rx = self.submit_commit(commit, None)?;
        rx.await.map_err(|_| CommitError::Closed)?
    }

    /// [`EventLog::commit_handler`] for a replica of a clustered log: every append is stored
    /// with the time its owner decided it (`occurred_at[i]` for `commit.appends[i]`), so every
    /// host stores the same envelopes.
    #[cfg(feature = "kafka")]
    pub(crate) fn commit_replica(
        &self,
        commit: HandlerCommit,
        occurred_at: &[u64],
    ) -> Result<Vec<AppendResult>, CommitError> {
        let rx = self.submit_commit(commit, Some(occurred_at))?;
        rx.blocking_recv().map_err(|_| CommitError::Closed)?
    }

    fn submit_commit(
        &self,
        commit: HandlerCommit,
        occurred_at: Option<&[u64]>,
    ) -> Result<oneshot::Receiver<Result<Vec<AppendResult>, CommitError>>, CommitError> {
        let topic = self
            .topic(&commit.topic)
            .cloned()
            .ok_or_else(|| CommitError::UnknownTopic(commit.topic.clone()))?;
        if let Some(d) = commit.park.iter().find(|d| {
            d.group != commit.group || d.topic != commit.topic || d.partition != commit.partition
        }) {
            return Err(CommitError::ForeignDeadLetter(d.key().to_string()));
        }
        let appends = commit
            .appends
            .iter()
            .enumerate()
            .map(|(i, (stream, expected, events))| {
                let mut request = self.prepare_append(stream, *expected, events.clone())?;
                request.occurred_at = occurred_at.and_then(|t| t.get(i).copied());
                Ok(request)
            })
            .collect::<Result<Vec<_>, AppendError>>()?;
        let (tx, rx) = oneshot::channel();
        self.send(writer::Op::Commit(
            Box::new(effects::PreparedCommit {
                topic,
                commit,
                appends,
            }),
            tx,
        ))
        .map_err(|_| CommitError::Closed)?;
        Ok(rx)
    }

    /// Stores a snapshot (replacing one of the same stream, schema and version). Returns once
    /// durable.
    pub fn put_snapshot(&self, snapshot: Snapshot) -> Result<(), AppendError> {
        StreamId::parse(&snapshot.stream)?;
        let (tx, rx) = oneshot::channel();
        self.send(writer::Op::Snapshot(snapshot, tx))?;
        rx.blocking_recv().map_err(|_| AppendError::Closed)?
    }

    /// The newest snapshot of `stream` under `state_schema` within `bound`.
    pub fn snapshot(
        &self,
        stream: &str,
        state_schema: u32,
        bound: SnapshotBound,
    ) -> Result<Option<Snapshot>, ReadError> {
        snapshot::find(&*self.shared.db()?, stream, state_schema, bound)
    }

    /// Installs (or, with `None`, removes) the upcaster every later read goes through.
    pub fn set_upcaster(&self, upcaster: Option<Arc<dyn Upcast>>) {
        *self
            .shared
            .upcaster
            .write()
            .unwrap_or_else(|p| p.into_inner()) = upcaster;
    }

    /// Brings `events` (all of `topic`) to their current schema.
    fn upcast(&self, topic: &str, mut events: Vec<Event>) -> Result<Vec<Event>, ReadError> {
        let upcaster = self
            .shared
            .upcaster
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(u) = upcaster {
            u.upcast(topic, &mut events)
                .map_err(|e| ReadError::Upcast {
                    topic: topic.to_owned(),
                    detail: e.to_string(),
                })?;
        }
        Ok(events)
    }

    /// Events of `stream` with version ≥ `from_version`, at most `limit`, in their current
    /// schema.
    pub fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<Event>, ReadError> {
        let events = self.read_stream_as_stored(stream, from_version, limit)?;
        match events.first() {
            Some(first) => {
                let topic = first.topic.clone();
                self.upcast(&topic, events)
            }
            None => Ok(events),
        }
    }

    /// Like [`EventLog::read_stream`], but exactly as stored (no upcasting).
    pub fn read_stream_as_stored(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<Event>, ReadError> {
        let id = StreamId::parse(stream)?;
        let topic = self
            .shared
            .topics
            .get(id.category())
            .ok_or_else(|| ReadError::UnknownTopic(id.category().to_owned()))?;
        read::stream(&*self.shared.db()?, topic, &id, from_version, limit)
    }

    /// Where an event with a caller-chosen id is stored: `(stream version, offset)`.
    pub fn find_event_id(&self, id: uuid::Uuid) -> Result<Option<(u64, u64)>, ReadError> {
        read::event_id(&*self.shared.db()?, id)
    }

    /// The stream's current version; 0 when it does not exist.
    pub fn stream_version(&self, stream: &str) -> Result<u64, ReadError> {
        let id = StreamId::parse(stream)?;
        read::stream_version(&*self.shared.db()?, id.as_str())
    }

    /// Events of a partition with offset ≥ `from_offset`, at most `limit`, in offset order, in
    /// their current schema.
    pub fn read_partition(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
        limit: usize,
    ) -> Result<Vec<Event>, ReadError> {
        let t = self.checked_partition(topic, partition)?;
        let events = read::partition(&*self.shared.db()?, t, partition, from_offset, limit)?;
        self.upcast(topic, events)
    }

    /// The next offset to be written in a partition (= number of events in it).
    pub fn high_water_mark(&self, topic: &str, partition: u32) -> Result<u64, ReadError> {
        let t = self.checked_partition(topic, partition)?;
        read::high_water_mark(&*self.shared.db()?, t.id, partition)
    }

    /// The committed offset of `group` on a partition: the next offset it will process.
    pub fn group_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, ReadError> {
        let t = self.checked_partition(topic, partition)?;
        read::group_offset(&*self.shared.db()?, group, t.id, partition)
    }

    /// The failed attempts of the event `group` is retrying on a partition, as last counted.
    pub fn attempt(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Attempt>, ReadError> {
        let t = self.checked_partition(topic, partition)?;
        read::attempt(&*self.shared.db()?, group, t.id, partition)
    }

    /// Every committed group offset: `(group, topic, partition, next offset)`.
    pub fn group_offsets(&self) -> Result<Vec<(String, String, u32, u64)>, ReadError> {
        let rows = read::all_group_offsets(&*self.shared.db()?)?;
        Ok(rows
            .into_iter()
            .filter_map(|(g, tid, p, o)| {
                let t = self.shared.topics_by_id.get(tid as usize)?;
                Some((g, t.name.clone(), p, o))
            })
            .collect())
    }

    /// Parked events of `group` (of every group when `None`), in (group, topic, partition,
    /// offset) order.
    pub fn dead_letters(&self, group: Option<&str>) -> Result<Vec<DeadLetter>, ReadError> {
        dead_letter::list(&*self.shared.db()?, &self.shared.topics_by_id, group)
    }

    /// One parked event, if it is (still) parked.
    pub fn dead_letter(&self, key: &DeadLetterKey) -> Result<Option<DeadLetter>, ReadError> {
        let t = self.checked_partition(&key.topic, key.partition)?;
        dead_letter::get(
            &*self.shared.db()?,
            &key.group,
            t,
            key.partition,
            key.offset,
        )
    }

    /// How many events are parked over all groups (the `dlq_messages` gauge).
    pub fn dead_letter_count(&self) -> Result<u64, ReadError> {
        dead_letter::count(&*self.shared.db()?)
    }

    /// One saga instance's stored record.
    pub fn saga_instance(
        &self,
        saga: &str,
        instance_id: &str,
    ) -> Result<Option<StoredSaga>, ReadError> {
        saga_state::instance(&*self.shared.db()?, saga, instance_id)
    }

    /// Every instance of `saga` (of every saga when `None`).
    pub fn saga_instances(&self, saga: Option<&str>) -> Result<Vec<StoredSaga>, ReadError> {
        saga_state::instances(&*self.shared.db()?, saga)
    }

    /// Ids of the instances of `saga` that answers with `correlation_id` may concern.
    pub fn saga_correlated(
        &self,
        saga: &str,
        correlation_id: &str,
    ) -> Result<Vec<String>, ReadError> {
        saga_state::correlated(&*self.shared.db()?, saga, correlation_id)
    }

    /// The durable timers of `saga`: `(instance id, due ms since the Unix epoch)`.
    pub fn saga_timers(&self, saga: &str) -> Result<Vec<(String, u64)>, ReadError> {
        saga_state::timers(&*self.shared.db()?, saga)
    }

    /// Changes a projector's read-model record (blue/green rebuilds). Blocks until durable.
    pub fn change_projection(
        &self,
        change: ProjectionChange,
    ) -> Result<ProjectionRecord, ProjectionError> {
        let rx = self.submit_projection(change)?;
        rx.blocking_recv().map_err(|_| ProjectionError::Closed)?
    }

    /// [`EventLog::change_projection`] for async callers.
    pub async fn change_projection_async(
        &self,
        change: ProjectionChange,
    ) -> Result<ProjectionRecord, ProjectionError> {
        let rx = self.submit_projection(change)?;
        rx.await.map_err(|_| ProjectionError::Closed)?
    }

    fn submit_projection(
        &self,
        change: ProjectionChange,
    ) -> Result<oneshot::Receiver<Result<ProjectionRecord, ProjectionError>>, ProjectionError> {
        let (tx, rx) = oneshot::channel();
        self.send(writer::Op::Projection(change, tx))
            .map_err(|_| ProjectionError::Closed)?;
        Ok(rx)
    }

    /// The read-model record of `projector` (none before its first start).
    pub fn projection(&self, projector: &str) -> Result<Option<ProjectionRecord>, ReadError> {
        projection::record(&*self.shared.db()?, projector)
    }

    /// A consistent snapshot of read models, for queries and for a handler's batch.
    pub fn read_models(&self) -> Result<ReadModelView, ReadError> {
        ReadModelView::begin(&*self.shared.db()?)
    }

    fn checked_partition(&self, topic: &str, partition: u32) -> Result<&TopicInfo, ReadError> {
        let t = self
            .shared
            .topics
            .get(topic)
            .ok_or_else(|| ReadError::UnknownTopic(topic.to_owned()))?;
        if partition >= t.partitions {
            return Err(ReadError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            });
        }
        Ok(t)
    }
}
