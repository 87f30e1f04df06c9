//! One consumer group: a handler's committed offsets over every partition of its topics, the
//! batches it processes, its retries and its dead letters.
//!
//! A group drives ONE projection instance and runs one batch at a time, interleaving its
//! partitions round-robin. That is what keeps read-modify-write on the group's read-model scope
//! safe: every batch reads a snapshot and commits its writes before the next batch of any of the
//! group's partitions reads, so two partitions never race on a shared key. Concurrency comes from
//! running many groups at once (`runner.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::event::{Event, now_millis};
use crate::log::{CommitError, DeadLetter, DeadLetterKey, EventLog, HandlerCommit, ReadError};
use crate::plugin::{CallFailure, ReadModelSession};
use crate::projector::{MAX_VALUE_BYTES, Projection};

use super::retry::{DeadLetterPolicy, DeliveryError, NextStep, RetryPolicy};

/// Where a group with no committed offset on a partition starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// Offset 0: every event ever appended.
    #[default]
    Earliest,
    /// The partition's high-water mark when the group first starts: only new events.
    Latest,
    /// This offset in every partition, clamped to the partition's high-water mark.
    Offset(u64),
}

/// A consumer group's configuration (one per handler).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// The group's name, which is also its read-model scope.
    pub name: String,
    pub topics: Vec<String>,
    /// Most events per plugin call.
    pub batch_size: usize,
    /// Most events the group holds in memory at once (backpressure). The group holds one batch
    /// at a time, so this caps the batch size.
    pub max_events_in_memory: usize,
    pub retry: RetryPolicy,
    pub on_dead_letter: DeadLetterPolicy,
    pub start: StartFrom,
}

impl GroupConfig {
    pub fn new(name: impl Into<String>, topics: Vec<String>) -> Self {
        GroupConfig {
            name: name.into(),
            topics,
            batch_size: 256,
            max_events_in_memory: 4096,
            retry: RetryPolicy::default(),
            on_dead_letter: DeadLetterPolicy::default(),
            start: StartFrom::default(),
        }
    }

    fn batch_limit(&self) -> usize {
        self.batch_size.min(self.max_events_in_memory).max(1)
    }
}

/// Why a group operation failed. A failing plugin call is not an error here (it is retried and
/// then parked); these are storage problems and bad requests.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("no dead letter at {0}")]
    NoDeadLetter(Box<DeadLetterKey>),
    #[error("dead letter {0} belongs to another group or a partition this group does not read")]
    NotThisGroup(Box<DeadLetterKey>),
    #[error("the event of dead letter {0} is missing from the log")]
    MissingEvent(Box<DeadLetterKey>),
    /// The group's task stopped (its handle outlived it).
    #[error("the consumer group is not running")]
    Stopped,
    /// The redelivered event failed again; its record now counts the attempt.
    #[error("dead letter {key} failed again: {failure}")]
    RetryFailed {
        key: Box<DeadLetterKey>,
        failure: Box<CallFailure>,
    },
}

/// Counters for metrics; shared with whoever reports them.
#[derive(Debug, Default)]
pub struct GroupMetrics {
    pub events_processed: AtomicU64,
    pub batches_committed: AtomicU64,
    /// Failed plugin calls (each retry counts).
    pub failed_calls: AtomicU64,
    /// Events parked in the dead-letter queue (`dlq_messages_total`).
    pub dead_lettered_total: AtomicU64,
}

/// One partition's consumer lag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: u32,
    /// The next offset the group will process (0 when it has none).
    pub committed: u64,
    pub high_water_mark: u64,
    /// `high_water_mark - committed`.
    pub lag: u64,
}

/// What one [`ConsumerGroup::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A batch committed, or an event was parked; `events` offsets were consumed.
    Progress { events: usize },
    /// A call failed; the partition retries (at once with smaller batches, or after a backoff).
    Failed,
    /// Nothing to do now. With `next_retry`, a partition is waiting for a retry at that instant.
    Idle { next_retry: Option<Instant> },
}

/// The outcome of [`ConsumerGroup::retry_dead_letter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryOutcome {
    /// `skip`: the event was re-run; its effects committed with the record's removal.
    Reprocessed,
    /// `block`: the record was removed; the partition resumes at the event with fresh attempts.
    Unblocked,
}

/// Failed attempts of the event at `offset`.
#[derive(Debug)]
struct Retrying {
    offset: u64,
    attempts: u32,
    first_failed_at: u64,
    not_before: Instant,
}

/// After a multi-event batch failed: deliver events one at a time until `until`, except that
/// the events before a `suspect` the plugin named go as one batch.
#[derive(Debug)]
struct Isolation {
    until: u64,
    suspect: Option<u64>,
}

#[derive(Debug)]
struct PartitionState {
    topic: String,
    partition: u32,
    /// As stored; kept equal to storage by our own commits (re-read after a fence refusal).
    committed: Option<u64>,
    /// `block`: the offset of the dead letter the partition waits on.
    blocked_at: Option<u64>,
    isolation: Option<Isolation>,
    retry: Option<Retrying>,
}

impl PartitionState {
    fn next(&self) -> u64 {
        self.committed.unwrap_or(0)
    }

    fn batch_limit(&self, config_limit: usize) -> usize {
        let Some(iso) = &self.isolation else {
            return config_limit;
        };
        match iso.suspect {
            Some(s) if s > self.next() => ((s - self.next()) as usize).min(config_limit),
            _ => 1,
        }
    }
}

/// A consumer group running one projection. See the module docs for why it is serial.
pub struct ConsumerGroup {
    log: EventLog,
    config: GroupConfig,
    projection: Box<dyn Projection>,
    partitions: Vec<PartitionState>,
    /// Round-robin position, so a busy partition cannot starve the others.
    cursor: usize,
    metrics: Arc<GroupMetrics>,
}

impl std::fmt::Debug for ConsumerGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerGroup")
            .field("config", &self.config)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl ConsumerGroup {
    /// Opens the group: resumes from committed offsets; on partitions without one, commits the
    /// configured start (so a `Latest` start is fixed once, not re-evaluated at each restart).
    pub fn new(
        log: EventLog,
        config: GroupConfig,
        projection: Box<dyn Projection>,
    ) -> Result<Self, ConsumerError> {
        let mut partitions = Vec::new();
        for topic in &config.topics {
            let info = log
                .topic(topic)
                .ok_or_else(|| ConsumerError::UnknownTopic(topic.clone()))?;
            for partition in 0..info.partitions {
                let mut committed = log.group_offset(&config.name, topic, partition)?;
                if committed.is_none() && config.start != StartFrom::Earliest {
                    let hwm = log.high_water_mark(topic, partition)?;
                    let start = match config.start {
                        StartFrom::Offset(o) => o.min(hwm),
                        _ => hwm,
                    };
                    log.commit_handler(HandlerCommit {
                        group: config.name.clone(),
                        topic: topic.clone(),
                        partition,
                        expected_offset: None,
                        next_offset: start,
                        ..Default::default()
                    })?;
                    committed = Some(start);
                }
                let mut state = PartitionState {
                    topic: topic.clone(),
                    partition,
                    committed,
                    blocked_at: None,
                    isolation: None,
                    retry: None,
                };
                state.blocked_at = blocking_dead_letter(&log, &config.name, &state)?;
                partitions.push(state);
            }
        }
        Ok(ConsumerGroup {
            log,
            config,
            projection,
            partitions,
            cursor: 0,
            metrics: Arc::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn metrics(&self) -> &Arc<GroupMetrics> {
        &self.metrics
    }

    /// Replaces the projection (a new plugin version) between batches. Pending retries are due
    /// at once: the new version deserves its own attempts.
    pub fn swap_projection(&mut self, projection: Box<dyn Projection>) -> Box<dyn Projection> {
        for p in &mut self.partitions {
            p.retry = None;
        }
        std::mem::replace(&mut self.projection, projection)
    }

    /// Partitions waiting on a dead letter (`block`): `(topic, partition, offset)`.
    pub fn blocked(&self) -> Vec<(String, u32, u64)> {
        self.partitions
            .iter()
            .filter_map(|p| Some((p.topic.clone(), p.partition, p.blocked_at?)))
            .collect()
    }

    /// Consumer lag per partition, from storage.
    pub fn lag(&self) -> Result<Vec<PartitionLag>, ReadError> {
        lag(&self.log, &self.config.name, &self.config.topics)
    }

    /// This group's dead letters.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, ReadError> {
        self.log.dead_letters(Some(&self.config.name))
    }

    /// Processes at most one batch of the next partition (round-robin) that has work.
    pub fn step(&mut self) -> Result<Step, ConsumerError> {
        let now = Instant::now();
        let mut next_retry: Option<Instant> = None;
        let n = self.partitions.len();
        for i in 0..n {
            let idx = (self.cursor + i) % n;
            let p = &mut self.partitions[idx];
            if p.blocked_at.is_some() {
                // Someone may have retried or discarded it through another group handle.
                p.blocked_at = blocking_dead_letter(&self.log, &self.config.name, p)?;
                if p.blocked_at.is_some() {
                    continue;
                }
                p.committed = self
                    .log
                    .group_offset(&self.config.name, &p.topic, p.partition)?;
            }
            if let Some(r) = &p.retry
                && r.not_before > now
            {
                next_retry = Some(next_retry.map_or(r.not_before, |t| t.min(r.not_before)));
                continue;
            }
            let limit = p.batch_limit(self.config.batch_limit());
            let events = self
                .log
                .read_partition(&p.topic, p.partition, p.next(), limit)?;
            if events.is_empty() {
                continue;
            }
            self.cursor = (idx + 1) % n;
            return self.process(idx, events);
        }
        Ok(Step::Idle { next_retry })
    }

    /// Steps until nothing is left to do, sleeping through retry backoffs; returns the events
    /// consumed. Blocked partitions stay blocked. For tests, tools and catch-up runs.
    pub fn run_until_idle(&mut self) -> Result<u64, ConsumerError> {
        let mut total = 0u64;
        loop {
            match self.step()? {
                Step::Progress { events } => total += events as u64,
                Step::Failed => {}
                Step::Idle { next_retry: None } => return Ok(total),
                Step::Idle {
                    next_retry: Some(at),
                } => std::thread::sleep(at.saturating_duration_since(Instant::now())),
            }
        }
    }

    fn process(&mut self, idx: usize, events: Vec<Event>) -> Result<Step, ConsumerError> {
        let from = self.partitions[idx].next();
        let relevant: Vec<Event> = events
            .iter()
            .filter(|e| self.projection.handles(&e.event_type))
            .cloned()
            .collect();
        let (result, writes) = self.project(&relevant)?;
        let failure = match result {
            Ok(()) => {
                let next = events.last().map_or(from, |e| e.offset + 1);
                let p = &self.partitions[idx];
                let commit = HandlerCommit {
                    group: self.config.name.clone(),
                    topic: p.topic.clone(),
                    partition: p.partition,
                    expected_offset: p.committed,
                    next_offset: next,
                    read_model_writes: writes,
                    ..Default::default()
                };
                if !self.commit(idx, commit)? {
                    return Ok(Step::Progress { events: 0 });
                }
                let p = &mut self.partitions[idx];
                p.committed = Some(next);
                p.retry = None;
                if p.isolation.as_ref().is_some_and(|iso| next >= iso.until) {
                    p.isolation = None;
                }
                self.metrics
                    .events_processed
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                self.metrics
                    .batches_committed
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(Step::Progress {
                    events: events.len(),
                });
            }
            Err(f) => f,
        };
        self.metrics.failed_calls.fetch_add(1, Ordering::Relaxed);
        // Which event failed: the plugin may say; a batch of one relevant event says itself.
        let suspect = failure
            .event_index
            .and_then(|i| relevant.get(i as usize))
            .or(match relevant.as_slice() {
                [only] => Some(only),
                _ => None,
            })
            .map(|e| e.offset);
        let p = &mut self.partitions[idx];
        if suspect != Some(from) {
            // Find the poison event: commit what precedes it, deliver the rest one by one.
            let until = events.last().map_or(from, |e| e.offset + 1);
            p.isolation = Some(Isolation { until, suspect });
            tracing::debug!(group = %self.config.name, topic = %p.topic, partition = p.partition, from, until, "batch failed; isolating the failing event");
            return Ok(Step::Failed);
        }
        // The event at `from` failed: one more attempt for it.
        let until = p.isolation.as_ref().map_or(from + 1, |iso| iso.until);
        p.isolation = Some(Isolation {
            until: until.max(from + 1),
            suspect: None,
        });
        let now_ms = now_millis();
        let (attempts, first_failed_at) = match p.retry.take() {
            Some(r) if r.offset == from => (r.attempts + 1, r.first_failed_at),
            _ => (1, now_ms),
        };
        let error = DeliveryError::Failed(failure.clone());
        match self.config.retry.next(attempts, &error, &mut rand::rng()) {
            NextStep::RetryAfter(delay) => {
                tracing::warn!(group = %self.config.name, topic = %p.topic, partition = p.partition, offset = from, attempts, ?delay, error = %failure, "event failed; retrying");
                p.retry = Some(Retrying {
                    offset: from,
                    attempts,
                    first_failed_at,
                    not_before: Instant::now() + delay,
                });
                Ok(Step::Failed)
            }
            NextStep::Park => {
                let event = relevant
                    .iter()
                    .find(|e| e.offset == from)
                    .expect("the suspect is one of the relevant events");
                let record = self.dead_letter(event, &failure, attempts, first_failed_at);
                self.park(idx, record)
            }
        }
    }

    fn dead_letter(
        &self,
        event: &Event,
        failure: &CallFailure,
        attempts: u32,
        first_failed_at: u64,
    ) -> DeadLetter {
        DeadLetter {
            group: self.config.name.clone(),
            topic: event.topic.clone(),
            partition: event.partition,
            offset: event.offset,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            stream: event.stream.clone(),
            failure_kind: kind_name(failure),
            message: failure.message.clone(),
            backtrace: failure.backtrace.clone(),
            attempts,
            plugin_version: self.projection.version(),
            first_failed_at,
            last_failed_at: now_millis().max(first_failed_at),
            blocking: self.config.on_dead_letter == DeadLetterPolicy::Block,
        }
    }

    /// Parks the event in the same transaction as the offset: past it (`skip`) or at it
    /// (`block`).
    fn park(&mut self, idx: usize, record: DeadLetter) -> Result<Step, ConsumerError> {
        let p = &self.partitions[idx];
        let offset = record.offset;
        let blocking = record.blocking;
        let next = if blocking { offset } else { offset + 1 };
        tracing::error!(group = %self.config.name, topic = %p.topic, partition = p.partition, offset, attempts = record.attempts, error = %record.message, blocking, "event parked in the dead-letter queue");
        let commit = HandlerCommit {
            group: self.config.name.clone(),
            topic: p.topic.clone(),
            partition: p.partition,
            expected_offset: p.committed,
            next_offset: next,
            park: vec![record],
            ..Default::default()
        };
        if !self.commit(idx, commit)? {
            return Ok(Step::Progress { events: 0 });
        }
        self.metrics
            .dead_lettered_total
            .fetch_add(1, Ordering::Relaxed);
        let p = &mut self.partitions[idx];
        p.committed = Some(next);
        p.retry = None;
        if blocking {
            p.blocked_at = Some(offset);
            return Ok(Step::Progress { events: 0 });
        }
        if p.isolation.as_ref().is_some_and(|iso| next >= iso.until) {
            p.isolation = None;
        }
        Ok(Step::Progress { events: 1 })
    }

    /// Commits; `false` when the offset fence refused it (another runner moved the partition):
    /// the stored offset is re-read and the partition continues from there.
    fn commit(&mut self, idx: usize, commit: HandlerCommit) -> Result<bool, ConsumerError> {
        match self.log.commit_handler(commit) {
            Ok(_) => Ok(true),
            Err(CommitError::OffsetMismatch { actual, .. }) => {
                let p = &mut self.partitions[idx];
                tracing::warn!(group = %self.config.name, topic = %p.topic, partition = p.partition, ?actual, "offset fence: the partition moved under this group; continuing from the stored offset");
                p.committed = actual;
                p.retry = None;
                p.isolation = None;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn project(
        &mut self,
        events: &[Event],
    ) -> Result<(Result<(), CallFailure>, Vec<crate::log::ReadModelWrite>), ReadError> {
        let session =
            ReadModelSession::new(&self.config.name, self.log.read_models()?, MAX_VALUE_BYTES);
        let (result, session) = self.projection.project(events, session);
        let writes = match (&result, session) {
            (Ok(()), Some(s)) => s.into_writes(),
            _ => Vec::new(),
        };
        Ok((result, writes))
    }

    fn partition_index(&self, key: &DeadLetterKey) -> Result<usize, ConsumerError> {
        if key.group != self.config.name {
            return Err(ConsumerError::NotThisGroup(Box::new(key.clone())));
        }
        self.partitions
            .iter()
            .position(|p| p.topic == key.topic && p.partition == key.partition)
            .ok_or_else(|| ConsumerError::NotThisGroup(Box::new(key.clone())))
    }

    /// Redelivers a parked event to the current projection. `skip`: runs that one event and
    /// commits its effects with the record's removal in one transaction (the offset already
    /// passed it). `block`: removes the record; the partition resumes at the event.
    pub fn retry_dead_letter(
        &mut self,
        key: &DeadLetterKey,
    ) -> Result<RetryOutcome, ConsumerError> {
        let idx = self.partition_index(key)?;
        let record = self
            .log
            .dead_letter(key)?
            .ok_or_else(|| ConsumerError::NoDeadLetter(Box::new(key.clone())))?;
        let base = HandlerCommit {
            group: key.group.clone(),
            topic: key.topic.clone(),
            partition: key.partition,
            keep_offset: true,
            resolve: vec![key.offset],
            ..Default::default()
        };
        if record.blocking {
            self.log.commit_handler(base)?;
            let p = &mut self.partitions[idx];
            p.blocked_at = None;
            p.retry = None;
            p.committed = self
                .log
                .group_offset(&key.group, &key.topic, key.partition)?;
            return Ok(RetryOutcome::Unblocked);
        }
        let event = self
            .log
            .read_partition(&key.topic, key.partition, key.offset, 1)?
            .into_iter()
            .find(|e| e.offset == key.offset)
            .ok_or_else(|| ConsumerError::MissingEvent(Box::new(key.clone())))?;
        let relevant: Vec<Event> = if self.projection.handles(&event.event_type) {
            vec![event.clone()]
        } else {
            Vec::new()
        };
        let (result, writes) = self.project(&relevant)?;
        match result {
            Ok(()) => {
                self.log.commit_handler(HandlerCommit {
                    read_model_writes: writes,
                    ..base
                })?;
                Ok(RetryOutcome::Reprocessed)
            }
            Err(failure) => {
                self.metrics.failed_calls.fetch_add(1, Ordering::Relaxed);
                // Count the attempt on the record (fenced by its existence).
                let mut updated = self.dead_letter(
                    &event,
                    &failure,
                    record.attempts + 1,
                    record.first_failed_at,
                );
                updated.blocking = false;
                self.log.commit_handler(HandlerCommit {
                    park: vec![updated],
                    ..base
                })?;
                Err(ConsumerError::RetryFailed {
                    key: Box::new(key.clone()),
                    failure: Box::new(failure),
                })
            }
        }
    }

    /// Drops a parked event for good. `block`: the partition moves past it in the same
    /// transaction.
    pub fn discard_dead_letter(&mut self, key: &DeadLetterKey) -> Result<(), ConsumerError> {
        let idx = self.partition_index(key)?;
        let record = self
            .log
            .dead_letter(key)?
            .ok_or_else(|| ConsumerError::NoDeadLetter(Box::new(key.clone())))?;
        let mut commit = HandlerCommit {
            group: key.group.clone(),
            topic: key.topic.clone(),
            partition: key.partition,
            keep_offset: true,
            resolve: vec![key.offset],
            ..Default::default()
        };
        if record.blocking {
            commit.keep_offset = false;
            commit.expected_offset = Some(key.offset);
            commit.next_offset = key.offset + 1;
        }
        self.log.commit_handler(commit)?;
        let p = &mut self.partitions[idx];
        if record.blocking {
            p.blocked_at = None;
            p.retry = None;
            p.isolation = None;
            p.committed = Some(key.offset + 1);
        }
        Ok(())
    }
}

/// The offset a partition is blocked at: a blocking dead letter at its committed offset.
fn blocking_dead_letter(
    log: &EventLog,
    group: &str,
    p: &PartitionState,
) -> Result<Option<u64>, ReadError> {
    let Some(offset) = log.group_offset(group, &p.topic, p.partition)? else {
        return Ok(None);
    };
    let key = DeadLetterKey {
        group: group.to_owned(),
        topic: p.topic.clone(),
        partition: p.partition,
        offset,
    };
    Ok(log
        .dead_letter(&key)?
        .filter(|d| d.blocking)
        .map(|d| d.offset))
}

fn kind_name(failure: &CallFailure) -> String {
    // The serde (kebab-case) name, stable for tools; the log keeps it as a string.
    serde_json::to_value(failure.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| failure.kind.to_string())
}

/// Consumer lag of `group` on every partition of `topics`: `high_water_mark - committed`.
pub fn lag(log: &EventLog, group: &str, topics: &[String]) -> Result<Vec<PartitionLag>, ReadError> {
    let mut out = Vec::new();
    for topic in topics {
        let info = log
            .topic(topic)
            .ok_or_else(|| ReadError::UnknownTopic(topic.clone()))?;
        for partition in 0..info.partitions {
            let committed = log.group_offset(group, topic, partition)?.unwrap_or(0);
            let high_water_mark = log.high_water_mark(topic, partition)?;
            out.push(PartitionLag {
                topic: topic.clone(),
                partition,
                committed,
                high_water_mark,
                lag: high_water_mark.saturating_sub(committed),
            });
        }
    }
    Ok(out)
}
