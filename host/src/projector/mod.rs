//! Projectors: read a topic's partitions from the group's committed offsets, in batches, hand
//! the events to the projection, and commit its read-model writes together with the new offset
//! in one transaction (DESIGN §4 invariant 4).
//!
//! A [`Projection`] is either a WASM plugin ([`WasmProjection`]) or native Rust code (used by
//! benchmarks to measure the plugin boundary on the same path).

use std::collections::HashSet;

use crate::event::Event;
use crate::log::{CommitError, EventLog, HandlerCommit, ReadError};
use crate::plugin::{CallFailure, PluginInstance, ReadModelSession};

/// Largest read-model value a projection may write.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Something that turns events into read-model writes.
pub trait Projection: Send {
    /// Whether events of this type should be delivered at all (others are skipped, but their
    /// offsets still advance).
    fn handles(&self, event_type: &str) -> bool;

    /// Applies a batch through `session`; returns the session with the batch's writes.
    fn project(
        &mut self,
        events: &[Event],
        session: ReadModelSession,
    ) -> (Result<(), CallFailure>, Option<ReadModelSession>);

    /// The version recorded with failures (the plugin's content hash, or "native").
    fn version(&self) -> String;

    /// The shape of the read model it writes (see `read-model-evolution` in the WIT). Another
    /// version than the stored read model's is built beside it, never in place.
    fn read_model_version(&self) -> u32 {
        1
    }

    /// Another instance of the same projection (same version, fresh state), for the other lanes
    /// of a consumer group with `concurrency > 1`. `None` (the default): this projection runs on
    /// one lane only, and a group asking for more is refused.
    fn replicate(&self) -> Option<Result<Box<dyn Projection>, CallFailure>> {
        None
    }
}

/// A projector plugin instance.
pub struct WasmProjection {
    instance: PluginInstance,
    /// Empty = every type.
    types: HashSet<String>,
    read_model_version: u32,
}

impl std::fmt::Debug for WasmProjection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmProjection")
            .field("instance", &self.instance)
            .finish()
    }
}

impl WasmProjection {
    pub fn new(mut instance: PluginInstance) -> Result<Self, CallFailure> {
        let types = instance.event_types()?.into_iter().collect();
        let read_model_version = instance.read_model_version()?;
        Ok(WasmProjection {
            instance,
            types,
            read_model_version,
        })
    }
}

impl Projection for WasmProjection {
    fn handles(&self, event_type: &str) -> bool {
        self.types.is_empty() || self.types.contains(event_type)
    }

    fn project(
        &mut self,
        events: &[Event],
        session: ReadModelSession,
    ) -> (Result<(), CallFailure>, Option<ReadModelSession>) {
        self.instance.project(events, session)
    }

    fn version(&self) -> String {
        self.instance.plugin().version.to_string()
    }

    fn read_model_version(&self) -> u32 {
        self.read_model_version
    }

    fn replicate(&self) -> Option<Result<Box<dyn Projection>, CallFailure>> {
        let instance = self.instance.plugin().instantiate();
        Some(instance.and_then(|i| Ok(Box::new(WasmProjection::new(i)?) as Box<dyn Projection>)))
    }
}

/// Why a projector batch did not commit.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("projector {projector} failed at {topic}/{partition}@{offset}: {failure}")]
    Failed {
        projector: String,
        topic: String,
        partition: u32,
        /// Offset of the failing event, when known, else of the batch's first event.
        offset: u64,
        failure: CallFailure,
    },
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// One projector: its consumer group and read-model scope share its name.
pub struct ProjectorHandler {
    log: EventLog,
    name: String,
    topics: Vec<String>,
    batch_size: usize,
    projection: Box<dyn Projection>,
}

impl std::fmt::Debug for ProjectorHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectorHandler")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl ProjectorHandler {
    pub fn new(
        log: EventLog,
        name: impl Into<String>,
        topics: Vec<String>,
        batch_size: usize,
        projection: Box<dyn Projection>,
    ) -> Self {
        ProjectorHandler {
            log,
            name: name.into(),
            topics,
            batch_size: batch_size.max(1),
            projection,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Processes at most one batch of one partition; returns how many events it consumed.
    pub fn poll_partition(&mut self, topic: &str, partition: u32) -> Result<usize, ProjectorError> {
        let committed = self.log.group_offset(&self.name, topic, partition)?;
        let from = committed.unwrap_or(0);
        let events = self
            .log
            .read_partition(topic, partition, from, self.batch_size)?;
        let Some(last) = events.last() else {
            return Ok(0);
        };
        let next_offset = last.offset + 1;
        // Usually every event is relevant: then hand the batch over without copying it.
        let skipped = events
            .iter()
            .any(|e| !self.projection.handles(&e.event_type));
        let filtered: Vec<Event>;
        let relevant: &[Event] = if skipped {
            filtered = events
                .iter()
                .filter(|e| self.projection.handles(&e.event_type))
                .cloned()
                .collect();
            &filtered
        } else {
            &events
        };
        let view = self.log.read_models()?;
        let scope = view.live_scope(&self.name)?;
        let session = ReadModelSession::new(scope, view, MAX_VALUE_BYTES);
        let (result, session) = self.projection.project(relevant, session);
        if let Err(failure) = result {
            let offset = failure
                .event_index
                .and_then(|i| relevant.get(i as usize))
                .map_or(from, |e| e.offset);
            return Err(ProjectorError::Failed {
                projector: self.name.clone(),
                topic: topic.to_owned(),
                partition,
                offset,
                failure,
            });
        }
        let writes = session
            .map(ReadModelSession::into_writes)
            .unwrap_or_default();
        self.log.commit_handler(HandlerCommit {
            group: self.name.clone(),
            topic: topic.to_owned(),
            partition,
            expected_offset: committed,
            next_offset,
            read_model_writes: writes,
            appends: Vec::new(),
            ..Default::default()
        })?;
        Ok(events.len())
    }

    /// Processes every partition of every topic until none has anything left.
    pub fn catch_up(&mut self) -> Result<u64, ProjectorError> {
        let mut total = 0u64;
        loop {
            let mut round = 0usize;
            for topic in self.topics.clone() {
                let partitions = self.log.topic(&topic).map_or(0, |t| t.partitions);
                for p in 0..partitions {
                    round += self.poll_partition(&topic, p)?;
                }
            }
            if round == 0 {
                return Ok(total);
            }
            total += round as u64;
        }
    }
}

/// A projector's row, as stored (MessagePack), from its live read model. The live generation
/// and the row come from one snapshot, so a rebuild's switch is never seen half-done.
pub fn query(log: &EventLog, projector: &str, key: &str) -> Result<Option<Vec<u8>>, ReadError> {
    let view = log.read_models()?;
    view.get(&view.live_scope(projector)?, key)
}

/// A projector's rows whose key starts with `prefix`.
pub fn query_prefix(
    log: &EventLog,
    projector: &str,
    prefix: &str,
    limit: usize,
) -> Result<Vec<(String, Vec<u8>)>, ReadError> {
    let view = log.read_models()?;
    view.scan_prefix(&view.live_scope(projector)?, prefix, None, limit)
}
