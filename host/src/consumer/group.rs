//! One consumer group: a handler's committed offsets over the partitions assigned to it, the
//! batches it processes, its retries (counted durably) and its dead letters, for every kind of
//! handler (projector, policy, saga, relay: see `handler.rs`).
//!
//! Partitions are assigned and revoked explicitly ([`ConsumerGroup::assign`],
//! [`ConsumerGroup::revoke`], between batches); the embedded log assigns every partition of the
//! group's topics at start. A distributed log assigns what the broker's group protocol gives
//! this host: the group's state is per partition, so nothing else changes.
//!
//! A group splits its partitions over `concurrency` lanes (partition i -> lane i % N, over the
//! partitions of all its topics in order). A lane owns one handler instance and its
//! partitions, and runs one batch at a time, interleaving them round-robin, each in offset
//! order. Lanes of one group may run at once (`runner.rs`), and two of them may read-modify-write
//! the same read-model key: every batch commits with the read checks of its session, so the
//! writer refuses a batch whose snapshot reads changed since (`CommitError::ReadConflict`) and
//! the lane re-runs it on a fresh snapshot. Batches of one group are therefore serializable; no
//! update is lost. With one lane (the default) this is the serial group it always was.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::event::{Event, now_millis};
use crate::failure::FailureKind;
use crate::log::{
    AppendError, Attempt, CommitError, DeadLetter, DeadLetterKey, EventLog, HandlerCommit,
    ReadError,
};
use crate::plugin::CallFailure;
use crate::telemetry::BatchInstruments;

use super::commits::CommitPath;
use super::handler::{BatchContext, Effects, Handler, HandlerError, Output, Timers};
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
    /// The group's name (its offsets and dead letters are kept under it).
    pub name: String,
    /// The read-model scope its batches read and write; `None`: the group's name. A projector's
    /// live group writes its live generation's scope, a rebuild group the next one's.
    pub scope: Option<String>,
    pub topics: Vec<String>,
    /// Most events per plugin call.
    pub batch_size: usize,
    /// Most events the group holds in memory at once (backpressure). Each lane holds one batch
    /// at a time, so this caps a lane's batch at its share (at least one event).
    pub max_events_in_memory: usize,
    pub retry: RetryPolicy,
    pub on_dead_letter: DeadLetterPolicy,
    pub start: StartFrom,
    /// Lanes: how many batches of this group may run at once (each lane its own handler
    /// instance and a share of the partitions). 1 = serial. Capped at the partition count.
    pub concurrency: usize,
}

impl GroupConfig {
    pub fn new(name: impl Into<String>, topics: Vec<String>) -> Self {
        GroupConfig {
            name: name.into(),
            scope: None,
            topics,
            batch_size: 256,
            max_events_in_memory: 4096,
            retry: RetryPolicy::default(),
            on_dead_letter: DeadLetterPolicy::default(),
            start: StartFrom::default(),
            concurrency: 1,
        }
    }

    /// The read-model scope its batches read and write.
    pub fn scope(&self) -> &str {
        self.scope.as_deref().unwrap_or(&self.name)
    }

    /// Most events per batch on each of `lanes` lanes.
    fn batch_limit(&self, lanes: usize) -> usize {
        self.batch_size
            .min(self.max_events_in_memory / lanes.max(1))
            .max(1)
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
    /// `concurrency > 1` needs a handler that can make more instances of itself.
    #[error("group {group} wants {lanes} lanes but its handler runs on one lane only")]
    NotReplicable { group: String, lanes: usize },
    /// Making another lane's handler instance failed.
    #[error("instantiating another lane's handler for group {group}: {failure}")]
    Replicate {
        group: String,
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
    /// Batches re-run because another lane changed what they read (not failures).
    pub read_conflicts: AtomicU64,
    /// Hot reload: from the end of a lane's last batch on the old version to the start of its
    /// first batch on the new one, in µs (the latest swap that had work on both sides).
    pub last_swap_pause_us: AtomicU64,
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

/// What a parked event would do under a group's handler ([`ConsumerGroup::replay_dead_letter`]).
#[derive(Debug)]
pub enum Replay {
    /// The effects a retry would commit; a refusal among them is a business outcome.
    Effects(Effects),
    /// The call failed (with the guest's backtrace when it trapped).
    Failed(CallFailure),
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
    /// Metric handles, made on the first batch of the current plugin version.
    instruments: Option<BatchInstruments>,
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

/// A consumer group: its lanes, each one handler instance over a share of the partitions.
/// See the module docs for why lanes may run at once.
pub struct ConsumerGroup {
    log: EventLog,
    /// Where its commits go (the log itself, or a clustered log's partition records).
    commits: Arc<dyn CommitPath>,
    config: Arc<GroupConfig>,
    lanes: Vec<Lane>,
    /// Which lane [`ConsumerGroup::step`] tries first, so one busy lane cannot starve the others.
    cursor: usize,
    metrics: Arc<GroupMetrics>,
}

impl std::fmt::Debug for ConsumerGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerGroup")
            .field("config", &self.config)
            .field("lanes", &self.lanes)
            .finish_non_exhaustive()
    }
}

/// `first` plus `lanes - 1` replicas of it, all made before anything is replaced, so a failure
/// leaves the caller's handlers as they were.
pub(super) fn replicas(
    group: &str,
    first: Box<dyn Handler>,
    lanes: usize,
) -> Result<Vec<Box<dyn Handler>>, ConsumerError> {
    let mut out = Vec::with_capacity(lanes);
    for _ in 1..lanes {
        let replica = first
            .replicate()
            .ok_or_else(|| ConsumerError::NotReplicable {
                group: group.to_owned(),
                lanes,
            })?;
        out.push(replica.map_err(|failure| ConsumerError::Replicate {
            group: group.to_owned(),
            failure: Box::new(failure),
        })?);
    }
    out.insert(0, first);
    Ok(out)
}

impl ConsumerGroup {
    /// Opens the group with every partition of its topics assigned (the embedded log's
    /// assignment): resumes from committed offsets; on partitions without one, commits the
    /// configured start (so a `Latest` start is fixed once, not re-evaluated at each restart).
    /// With `concurrency > 1`, the other lanes run replicas of `handler`.
    pub fn new(
        log: EventLog,
        config: GroupConfig,
        handler: Box<dyn Handler>,
    ) -> Result<Self, ConsumerError> {
        let commits = Arc::new(log.clone());
        Self::open(log, config, handler, commits, true)
    }

    /// Opens the group with no partition assigned, committing through `commits`: a clustered
    /// log assigns it the partitions this host owns ([`ConsumerGroup::assign`]).
    pub fn unassigned(
        log: EventLog,
        config: GroupConfig,
        handler: Box<dyn Handler>,
        commits: Arc<dyn CommitPath>,
    ) -> Result<Self, ConsumerError> {
        Self::open(log, config, handler, commits, false)
    }

    fn open(
        log: EventLog,
        config: GroupConfig,
        handler: Box<dyn Handler>,
        commits: Arc<dyn CommitPath>,
        assign_all: bool,
    ) -> Result<Self, ConsumerError> {
        let mut all = Vec::new();
        for topic in &config.topics {
            let info = log
                .topic(topic)
                .ok_or_else(|| ConsumerError::UnknownTopic(topic.clone()))?;
            all.extend((0..info.partitions).map(|p| (topic.clone(), p)));
        }
        // A lane without partitions would only hold an idle instance.
        let lanes = config.concurrency.clamp(1, all.len().max(1));
        let handlers = replicas(&config.name, handler, lanes)?;
        let batch_limit = config.batch_limit(lanes);
        let config = Arc::new(config);
        let metrics = Arc::<GroupMetrics>::default();
        let lanes: Vec<Lane> = handlers
            .into_iter()
            .map(|handler| Lane {
                log: log.clone(),
                commits: commits.clone(),
                config: config.clone(),
                handler,
                partitions: Vec::new(),
                cursor: 0,
                batch_limit,
                metrics: metrics.clone(),
                next_timer: None,
            })
            .collect();
        let mut group = ConsumerGroup {
            log,
            commits,
            config,
            lanes,
            cursor: 0,
            metrics,
        };
        if assign_all {
            group.assign(&all)?;
        }
        Ok(group)
    }

    /// Takes on `partitions` (of the group's topics), between batches: each resumes from its
    /// committed offset and stored retry count, or from the configured start. A partition
    /// goes to the lane its position among all the group's partitions names (i % lanes), so a
    /// partition keeps its lane across revokes and assigns. Already assigned ones are left.
    pub fn assign(&mut self, partitions: &[(String, u32)]) -> Result<(), ConsumerError> {
        for (topic, partition) in partitions {
            if self.lanes.iter().any(|l| l.owns(topic, *partition)) {
                continue;
            }
            let state = open_partition(&self.log, &*self.commits, &self.config, topic, *partition)?;
            let lane = self.home_lane(topic, *partition)?;
            self.lanes[lane].partitions.push(state);
        }
        Ok(())
    }

    /// Gives `partitions` up, between batches: nothing more of them is processed here. Their
    /// committed offsets, retry counts and dead letters stay in the log for the next owner.
    pub fn revoke(&mut self, partitions: &[(String, u32)]) {
        for lane in &mut self.lanes {
            lane.revoke(partitions);
        }
    }

    /// The partitions assigned to this group: `(topic, partition)`.
    pub fn assigned(&self) -> Vec<(String, u32)> {
        self.lanes.iter().flat_map(Lane::partitions).collect()
    }

    /// The lane of `(topic, partition)`: its index among the group's partitions, modulo lanes.
    fn home_lane(&self, topic: &str, partition: u32) -> Result<usize, ConsumerError> {
        let mut index = 0usize;
        for t in &self.config.topics {
            let info = self
                .log
                .topic(t)
                .ok_or_else(|| ConsumerError::UnknownTopic(t.clone()))?;
            if t == topic {
                if partition >= info.partitions {
                    return Err(ConsumerError::UnknownTopic(format!("{topic}/{partition}")));
                }
                return Ok((index + partition as usize) % self.lanes.len());
            }
            index += info.partitions as usize;
        }
        Err(ConsumerError::UnknownTopic(topic.to_owned()))
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

    /// Counts into `metrics` from now on (a handle keeps its counters across the groups it
    /// runs).
    pub(crate) fn share_metrics(&mut self, metrics: Arc<GroupMetrics>) {
        for lane in &mut self.lanes {
            lane.metrics = metrics.clone();
        }
        self.metrics = metrics;
    }

    /// Replaces the handler (a new plugin version) between batches, on every lane (the
    /// others get replicas of `handler`). Pending retries are due at once, but keep their
    /// counts. Returns the first lane's old handler.
    pub fn swap_handler(
        &mut self,
        handler: Box<dyn Handler>,
    ) -> Result<Box<dyn Handler>, ConsumerError> {
        let handlers = replicas(&self.config.name, handler, self.lanes.len())?;
        let mut old = None;
        for (lane, h) in self.lanes.iter_mut().zip(handlers) {
            let previous = lane.swap_handler(h);
            old.get_or_insert(previous);
        }
        Ok(old.expect("a group has at least one lane"))
    }

    /// Partitions waiting on a dead letter (`block`): `(topic, partition, offset)`.
    pub fn blocked(&self) -> Vec<(String, u32, u64)> {
        self.lanes.iter().flat_map(Lane::blocked).collect()
    }

    /// Consumer lag per partition, from storage.
    pub fn lag(&self) -> Result<Vec<PartitionLag>, ReadError> {
        lag(&self.log, &self.config.name, &self.config.topics)
    }

    /// This group's dead letters.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, ReadError> {
        self.log.dead_letters(Some(&self.config.name))
    }

    /// Processes at most one batch: of the next lane (round-robin) that has work, and there of
    /// its next partition (round-robin) that has work. Lanes run one after another here; a
    /// runner runs them at once.
    pub fn step(&mut self) -> Result<Step, ConsumerError> {
        let mut next_retry: Option<Instant> = None;
        let n = self.lanes.len();
        for i in 0..n {
            let idx = (self.cursor + i) % n;
            match self.lanes[idx].step()? {
                Step::Idle {
                    next_retry: Some(at),
                } => {
                    next_retry = Some(next_retry.map_or(at, |t| t.min(at)));
                }
                Step::Idle { next_retry: None } => {}
                step => {
                    self.cursor = (idx + 1) % n;
                    return Ok(step);
                }
            }
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

    /// [`ConsumerGroup::run_until_idle`] with every lane on its own thread at once, as a
    /// runner runs them (their commits are read-checked, see the module docs): steps each lane
    /// until it is idle (sleeping through its retry backoffs) or `stop` says so, which every
    /// lane asks between its batches. Returns the events consumed. For catch-up runs such as a
    /// rebuild's replay; the threads end with the call.
    pub fn run_lanes_until_idle(
        &mut self,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<u64, ConsumerError> {
        if let [lane] = self.lanes.as_mut_slice() {
            return lane.run_until_idle(stop);
        }
        // A lane that failed stops the others at their next batch boundary.
        let failed = std::sync::atomic::AtomicBool::new(false);
        let stop_all = || failed.load(Ordering::Relaxed) || stop();
        std::thread::scope(|scope| {
            let lanes: Vec<_> = self
                .lanes
                .iter_mut()
                .map(|lane| {
                    let (stop_all, failed) = (&stop_all, &failed);
                    scope.spawn(move || {
                        let r = lane.run_until_idle(stop_all);
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        r
                    })
                })
                .collect();
            let mut total = 0u64;
            let mut error = None;
            for lane in lanes {
                match lane.join().expect("a consumer group lane panicked") {
                    Ok(n) => total += n,
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            }
            error.map_or(Ok(total), Err)
        })
    }

    /// The lane that owns the dead letter's partition.
    fn lane_of(&mut self, key: &DeadLetterKey) -> Result<&mut Lane, ConsumerError> {
        let i = lane_index(&self.config.name, &self.lanes, key)?;
        Ok(&mut self.lanes[i])
    }

    /// Redelivers a parked event to the current handler (of the lane owning its partition).
    /// `skip`: runs that one event and commits its effects with the record's removal in one
    /// transaction (the offset already passed it). `block`: removes the record; the partition
    /// resumes at the event.
    pub fn retry_dead_letter(
        &mut self,
        key: &DeadLetterKey,
    ) -> Result<RetryOutcome, ConsumerError> {
        self.lane_of(key)?.retry_dead_letter(key)
    }

    /// Drops a parked event for good. `block`: the partition moves past it in the same
    /// transaction.
    pub fn discard_dead_letter(&mut self, key: &DeadLetterKey) -> Result<(), ConsumerError> {
        self.lane_of(key)?.discard_dead_letter(key)
    }

    /// Runs a parked event through the group's current handler as a retry would, and returns
    /// what it would do, writing nothing: the event stays parked. Built with a candidate
    /// plugin, this is a fix's dry run.
    pub fn replay_dead_letter(&mut self, key: &DeadLetterKey) -> Result<Replay, ConsumerError> {
        self.lane_of(key)?.replay_dead_letter(key)
    }

    /// [`ConsumerGroup::replay_dead_letter`] of an event given whole rather than read from the
    /// log (`factline replay` of an exported dead letter): what the lane owning its partition
    /// would do with it, writing nothing.
    pub fn replay_event(&mut self, event: Event) -> Result<Replay, ConsumerError> {
        let key = DeadLetterKey {
            group: self.config.name.clone(),
            topic: event.topic.clone(),
            partition: event.partition,
            offset: event.offset,
        };
        self.lane_of(&key)?.replay(event)
    }

    /// Splits the group for a runner: the lanes go to their tasks, the rest (shareable across
    /// threads, unlike a handler) stays with the handle until the lanes come back.
    pub(super) fn into_parts(self) -> (Detached, Vec<Lane>) {
        let detached = Detached {
            log: self.log,
            commits: self.commits,
            config: self.config,
            metrics: self.metrics,
        };
        (detached, self.lanes)
    }

    /// The group again, from [`ConsumerGroup::into_parts`]'s parts (lanes in their order).
    pub(super) fn from_parts(detached: Detached, lanes: Vec<Lane>) -> Self {
        ConsumerGroup {
            log: detached.log,
            commits: detached.commits,
            config: detached.config,
            lanes,
            cursor: 0,
            metrics: detached.metrics,
        }
    }
}

/// A group whose lanes are out running.
#[derive(Debug)]
pub(super) struct Detached {
    log: EventLog,
    commits: Arc<dyn CommitPath>,
    config: Arc<GroupConfig>,
    metrics: Arc<GroupMetrics>,
}

/// Index of the lane owning `key`'s partition, if `key` is one of `group`'s.
fn lane_index(group: &str, lanes: &[Lane], key: &DeadLetterKey) -> Result<usize, ConsumerError> {
    if key.group != group {
        return Err(ConsumerError::NotThisGroup(Box::new(key.clone())));
    }
    lanes
        .iter()
        .position(|l| l.owns(&key.topic, key.partition))
        .ok_or_else(|| ConsumerError::NotThisGroup(Box::new(key.clone())))
}

/// How a commit went.
enum Committed {
    Yes,
    /// The offset fence refused it; the partition's state was re-read.
    Fenced,
    /// What the batch read or planned changed (a read check, a target stream's version, a saga
    /// instance's revision); nothing changed: re-run the batch on fresh state.
    Rerun,
    /// The log refused what the handler produced (an event it would append is invalid): the
    /// handler's fault, retried and parked like a failed call.
    Refused(CallFailure),
}

/// One lane of a group: a handler instance and the partitions it processes, one batch at a
/// time, round-robin, each partition in offset order.
pub(super) struct Lane {
    log: EventLog,
    commits: Arc<dyn CommitPath>,
    config: Arc<GroupConfig>,
    handler: Box<dyn Handler>,
    partitions: Vec<PartitionState>,
    /// Round-robin position, so a busy partition cannot starve the others.
    cursor: usize,
    /// Its share of `max_events_in_memory`, capped by `batch_size`.
    batch_limit: usize,
    metrics: Arc<GroupMetrics>,
    /// When the handler's next durable timer is due (ms since the Unix epoch), as last read.
    next_timer: Option<u64>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

/// A partition's state as stored: committed offset (the configured start committed on first
/// sight), the dead letter it is blocked on, and the failed attempts of its next event.
fn open_partition(
    log: &EventLog,
    commits: &dyn CommitPath,
    config: &GroupConfig,
    topic: &str,
    partition: u32,
) -> Result<PartitionState, ConsumerError> {
    let mut committed = log.group_offset(&config.name, topic, partition)?;
    if committed.is_none() && config.start != StartFrom::Earliest {
        let hwm = log.high_water_mark(topic, partition)?;
        let start = match config.start {
            StartFrom::Offset(o) => o.min(hwm),
            _ => hwm,
        };
        commits.commit(HandlerCommit {
            group: config.name.clone(),
            topic: topic.to_owned(),
            partition,
            expected_offset: None,
            next_offset: start,
            ..Default::default()
        })?;
        committed = Some(start);
    }
    let mut state = PartitionState {
        topic: topic.to_owned(),
        partition,
        committed,
        blocked_at: None,
        isolation: None,
        retry: None,
        instruments: None,
    };
    state.blocked_at = blocking_dead_letter(log, &config.name, &state)?;
    // A restart continues the count of the event it was retrying: a poison event gets its
    // budget once, not once per crash. The first attempt after a restart is due at once.
    if let Some(a) = log.attempt(&config.name, topic, partition)?
        && a.offset == state.next()
    {
        state.retry = Some(Retrying {
            offset: a.offset,
            attempts: a.attempts,
            first_failed_at: a.first_failed_at,
            not_before: Instant::now(),
        });
        state.isolation = Some(Isolation {
            until: a.offset + 1,
            suspect: None,
        });
    }
    Ok(state)
}

impl Lane {
    pub(super) fn name(&self) -> &str {
        &self.config.name
    }

    pub(super) fn log(&self) -> &EventLog {
        &self.log
    }

    pub(super) fn metrics(&self) -> &Arc<GroupMetrics> {
        &self.metrics
    }

    /// The partitions this lane processes: `(topic, partition)`.
    pub(super) fn partitions(&self) -> Vec<(String, u32)> {
        self.partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect()
    }

    fn owns(&self, topic: &str, partition: u32) -> bool {
        self.partitions
            .iter()
            .any(|p| p.topic == topic && p.partition == partition)
    }

    pub(super) fn revoke(&mut self, partitions: &[(String, u32)]) {
        self.partitions.retain(|p| {
            !partitions
                .iter()
                .any(|(t, n)| *t == p.topic && *n == p.partition)
        });
        self.cursor = 0;
    }

    pub(super) fn swap_handler(&mut self, handler: Box<dyn Handler>) -> Box<dyn Handler> {
        for p in &mut self.partitions {
            if let Some(r) = &mut p.retry {
                r.not_before = Instant::now();
            }
            p.instruments = None;
        }
        self.next_timer = None;
        std::mem::replace(&mut self.handler, handler)
    }

    fn blocked(&self) -> Vec<(String, u32, u64)> {
        self.partitions
            .iter()
            .filter_map(|p| Some((p.topic.clone(), p.partition, p.blocked_at?)))
            .collect()
    }

    /// Steps until idle (sleeping through retry backoffs, at most `RETRY_NAP` at a time so
    /// `stop` is asked often) or until `stop` says so; returns the events consumed.
    fn run_until_idle(&mut self, stop: &dyn Fn() -> bool) -> Result<u64, ConsumerError> {
        const RETRY_NAP: std::time::Duration = std::time::Duration::from_millis(100);
        let mut total = 0u64;
        while !stop() {
            match self.step()? {
                Step::Progress { events } => total += events as u64,
                Step::Failed => {}
                Step::Idle { next_retry: None } => break,
                Step::Idle {
                    next_retry: Some(at),
                } => {
                    std::thread::sleep(at.saturating_duration_since(Instant::now()).min(RETRY_NAP))
                }
            }
        }
        Ok(total)
    }

    /// Processes at most one batch of the next partition (round-robin) that has work, or
    /// fires one due timer of the handler.
    pub(super) fn step(&mut self) -> Result<Step, ConsumerError> {
        let now = Instant::now();
        let mut next_retry: Option<Instant> = None;
        if self.handler.has_timers() && !self.partitions.is_empty() {
            if let Some(step) = self.fire_timer()? {
                return Ok(step);
            }
            if let Some(due) = self.next_timer {
                let wait = due.saturating_sub(now_millis());
                next_retry = Some(now + std::time::Duration::from_millis(wait));
            }
        }
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
            let limit = p.batch_limit(self.batch_limit);
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

    /// The log time up to which this lane has handled its events: the `occurred_at` of the
    /// oldest unread event of a partition it can process now, or `now` when it has read them
    /// all. Timers are fired as of this time, so events and timers are handled in time order:
    /// an answer appended before a step's deadline wins over its timeout even when the host
    /// was down at the deadline and a restart finds both due. A partition waiting on a dead
    /// letter or a retry's backoff does not hold timers back.
    fn timer_horizon(&self, now: u64) -> Result<u64, ConsumerError> {
        let mut horizon = now;
        for p in &self.partitions {
            if p.blocked_at.is_some() || p.retry.is_some() {
                continue;
            }
            if let Some(e) = self
                .log
                .read_partition(&p.topic, p.partition, p.next(), 1)?
                .first()
            {
                horizon = horizon.min(e.occurred_at);
            }
        }
        Ok(horizon)
    }

    /// Fires the handler's next due timer on one of this lane's partitions; `None` when none
    /// is due (`next_timer` then says when one will be).
    fn fire_timer(&mut self) -> Result<Option<Step>, ConsumerError> {
        let owned = self.partitions();
        let now = self.timer_horizon(now_millis())?;
        let fired = match self
            .handler
            .timers(ctx(&self.log, &self.config), &owned, now)
        {
            Ok(Timers::Next(due)) => {
                self.next_timer = due;
                return Ok(None);
            }
            Ok(Timers::Fired(f)) => f,
            // A timer's transition is the handler's own (a saga compensates a failing step
            // itself); what reaches here is storage or a lost race: try again next step.
            Err(HandlerError::Conflict) => return Ok(Some(Step::Progress { events: 0 })),
            Err(HandlerError::Read(e)) => return Err(e.into()),
            Err(HandlerError::Failed(f)) => {
                tracing::warn!(group = %self.config.name, error = %f, "a timer's plugin call failed; retrying it later");
                self.metrics.failed_calls.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(Step::Failed));
            }
        };
        let (commit, _) = fired.effects.commit(HandlerCommit {
            group: self.config.name.clone(),
            topic: fired.topic,
            partition: fired.partition,
            keep_offset: true,
            ..Default::default()
        });
        match self.commits.commit(commit) {
            Ok(_) => {}
            Err(e) if rerun(&e) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Some(Step::Progress { events: 0 }))
    }

    /// The partition's metric handles (labelled with the current plugin version).
    fn instruments(&mut self, idx: usize) -> &BatchInstruments {
        let p = &mut self.partitions[idx];
        p.instruments.get_or_insert_with(|| {
            BatchInstruments::new(&self.config.name, &p.topic, self.handler.version())
        })
    }

    fn process(&mut self, idx: usize, events: Vec<Event>) -> Result<Step, ConsumerError> {
        let started = Instant::now();
        let from = self.partitions[idx].next();
        let span = batch_span(&self.config.name, &events);
        let _entered = span.enter();
        // Usually every event is relevant: then the batch goes to the handler without a copy.
        let filtered: Vec<Event>;
        let relevant: &[Event] = if events.iter().all(|e| self.handler.handles(&e.event_type)) {
            &events
        } else {
            filtered = events
                .iter()
                .filter(|e| self.handler.handles(&e.event_type))
                .cloned()
                .collect();
            &filtered
        };
        let batch_end = events.last().map_or(from, |e| e.offset + 1);
        let failure = loop {
            let output = match self.handler.handle(ctx(&self.log, &self.config), relevant) {
                Ok(output) => output,
                Err(HandlerError::Failed(f)) => break f,
                // Not a failure: no attempt is counted.
                Err(HandlerError::Conflict) => {
                    self.metrics.read_conflicts.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(HandlerError::Read(e)) => return Err(e.into()),
            };
            // A handler covers at least the batch's first event.
            let next = output
                .stop_at
                .map_or(batch_end, |s| s.clamp(from + 1, batch_end));
            let consumed = events.iter().take_while(|e| e.offset < next).count();
            let commit = self.batch_commit(idx, next, output);
            match self.commit(idx, commit)? {
                Committed::Yes => {}
                Committed::Fenced => return Ok(Step::Progress { events: 0 }),
                // Another lane or command changed what this batch read: the same events
                // again, on fresh state. Not a failure: no attempt is counted.
                Committed::Rerun => continue,
                Committed::Refused(f) => break f,
            }
            let p = &mut self.partitions[idx];
            p.committed = Some(next);
            p.retry = None;
            if p.isolation.as_ref().is_some_and(|iso| next >= iso.until) {
                p.isolation = None;
            }
            self.metrics
                .events_processed
                .fetch_add(consumed as u64, Ordering::Relaxed);
            self.metrics
                .batches_committed
                .fetch_add(1, Ordering::Relaxed);
            self.instruments(idx).batch(consumed, started.elapsed());
            tracing::debug!(next_offset = next, "batch committed");
            return Ok(Step::Progress { events: consumed });
        };
        self.metrics.failed_calls.fetch_add(1, Ordering::Relaxed);
        // Which event failed: the plugin may say; a batch of one relevant event says itself.
        let suspect = failure
            .event_index
            .and_then(|i| relevant.get(i as usize))
            .or(match relevant {
                [only] => Some(only),
                _ => None,
            })
            .map(|e| e.offset);
        let mut from = from;
        if let Some(s) = suspect
            && s != from
            && relevant.first().map(|e| e.offset) == Some(s)
        {
            // Only events the handler does not take precede the failing one: move past them,
            // so this failure counts as an attempt at it (its budget is its calls).
            let p = &self.partitions[idx];
            let skip = HandlerCommit {
                group: self.config.name.clone(),
                topic: p.topic.clone(),
                partition: p.partition,
                expected_offset: p.committed,
                next_offset: s,
                ..Default::default()
            };
            match self.commit(idx, skip)? {
                Committed::Yes => {}
                Committed::Fenced | Committed::Rerun | Committed::Refused(_) => {
                    return Ok(Step::Progress { events: 0 });
                }
            }
            let p = &mut self.partitions[idx];
            p.committed = Some(s);
            p.retry = p.retry.take().filter(|r| r.offset == s);
            from = s;
        }
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
        let event = relevant
            .iter()
            .find(|e| e.offset == from)
            .expect("the suspect is one of the relevant events");
        match self.config.retry.next(attempts, &error, &mut rand::rng()) {
            NextStep::RetryAfter(delay) => {
                tracing::warn!(group = %self.config.name, topic = %p.topic, partition = p.partition, offset = from, attempts, ?delay, error = %failure, "event failed; retrying");
                // Counted durably, so a crash does not hand the event a fresh budget.
                self.commits.commit(HandlerCommit {
                    group: self.config.name.clone(),
                    topic: p.topic.clone(),
                    partition: p.partition,
                    keep_offset: true,
                    attempt: Some(Attempt {
                        offset: from,
                        attempts,
                        first_failed_at,
                    }),
                    ..Default::default()
                })?;
                let p = &mut self.partitions[idx];
                p.retry = Some(Retrying {
                    offset: from,
                    attempts,
                    first_failed_at,
                    not_before: Instant::now() + delay,
                });
                Ok(Step::Failed)
            }
            NextStep::Park => {
                let record = dead_letter(
                    &self.config,
                    event,
                    Reason::Failed(&failure),
                    &self.handler.version(),
                    attempts,
                    first_failed_at,
                );
                self.park(idx, record)
            }
        }
    }

    /// The commit of a batch's output: its effects, the offset moved to `next`, and a dead
    /// letter for each refused event.
    fn batch_commit(&self, idx: usize, next: u64, output: Output) -> HandlerCommit {
        let p = &self.partitions[idx];
        let (mut commit, refused) = output.effects.commit(HandlerCommit {
            group: self.config.name.clone(),
            topic: p.topic.clone(),
            partition: p.partition,
            expected_offset: p.committed,
            next_offset: next,
            ..Default::default()
        });
        let version = self.handler.version();
        let now = now_millis();
        commit.park = refused
            .iter()
            .filter_map(|r| {
                let event = self.find_relevant(idx, r.offset)?;
                tracing::warn!(group = %self.config.name, offset = r.offset, kind = %r.kind, message = %r.message, "event parked: its outcome was refused");
                let mut d = dead_letter(
                    &self.config,
                    &event,
                    Reason::Refused(r.kind, &r.message),
                    &version,
                    1,
                    now,
                );
                // Refusals are outcomes: the partition goes on whatever the policy.
                d.blocking = false;
                Some(d)
            })
            .collect();
        commit
    }

    /// The stored event at `offset` of partition `idx` (refusals name offsets of the batch).
    fn find_relevant(&self, idx: usize, offset: u64) -> Option<Event> {
        let p = &self.partitions[idx];
        self.log
            .read_partition(&p.topic, p.partition, offset, 1)
            .ok()?
            .into_iter()
            .find(|e| e.offset == offset)
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
        match self.commit(idx, commit)? {
            Committed::Yes => {}
            // Parking reads nothing, so only the fence can refuse it; either way nothing was
            // written and the partition's next step decides again.
            Committed::Fenced | Committed::Rerun | Committed::Refused(_) => {
                return Ok(Step::Progress { events: 0 });
            }
        }
        self.metrics
            .dead_lettered_total
            .fetch_add(1, Ordering::Relaxed);
        self.instruments(idx).parked();
        let p = &mut self.partitions[idx];
        p.committed = Some(next);
        p.retry = None;
        if blocking {
            // The record holds the count now (the commit cleared the stored attempt).
            p.blocked_at = Some(offset);
            return Ok(Step::Progress { events: 0 });
        }
        if p.isolation.as_ref().is_some_and(|iso| next >= iso.until) {
            p.isolation = None;
        }
        Ok(Step::Progress { events: 1 })
    }

    /// Commits. When the offset fence refuses it (another runner moved the partition), the
    /// stored offset is re-read and the partition continues from there.
    fn commit(&mut self, idx: usize, commit: HandlerCommit) -> Result<Committed, ConsumerError> {
        match self.commits.commit(commit) {
            Ok(_) => Ok(Committed::Yes),
            Err(CommitError::OffsetMismatch { actual, .. }) => {
                let p = &mut self.partitions[idx];
                tracing::warn!(group = %self.config.name, topic = %p.topic, partition = p.partition, ?actual, "offset fence: the partition moved under this group; continuing from the stored offset");
                p.committed = actual;
                p.retry = None;
                p.isolation = None;
                Ok(Committed::Fenced)
            }
            Err(e) if rerun(&e) => {
                self.metrics.read_conflicts.fetch_add(1, Ordering::Relaxed);
                Ok(Committed::Rerun)
            }
            Err(e @ (CommitError::Append { .. } | CommitError::Invalid(_))) => Ok(
                Committed::Refused(CallFailure::new(FailureKind::BadOutput, e.to_string())),
            ),
            Err(e) => Err(e.into()),
        }
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

    /// The partition of dead letter `key`, its record, and the commit that removes the record
    /// (fenced by its existence) without moving the offset.
    fn parked(
        &self,
        key: &DeadLetterKey,
    ) -> Result<(usize, DeadLetter, HandlerCommit), ConsumerError> {
        let idx = self.partition_index(key)?;
        let record = self
            .log
            .dead_letter(key)?
            .ok_or_else(|| ConsumerError::NoDeadLetter(Box::new(key.clone())))?;
        let resolve = HandlerCommit {
            group: key.group.clone(),
            topic: key.topic.clone(),
            partition: key.partition,
            keep_offset: true,
            resolve: vec![key.offset],
            ..Default::default()
        };
        Ok((idx, record, resolve))
    }

    /// [`ConsumerGroup::retry_dead_letter`] on the lane owning the partition.
    pub(super) fn replay_dead_letter(
        &mut self,
        key: &DeadLetterKey,
    ) -> Result<Replay, ConsumerError> {
        let (idx, _, _) = self.parked(key)?;
        let event = self
            .find_relevant(idx, key.offset)
            .ok_or_else(|| ConsumerError::MissingEvent(Box::new(key.clone())))?;
        self.replay(event)
    }

    /// `event` through the handler, nothing committed.
    pub(super) fn replay(&mut self, event: Event) -> Result<Replay, ConsumerError> {
        if !self.handler.handles(&event.event_type) {
            return Ok(Replay::Effects(Effects::default()));
        }
        let ran = dry_run(
            self.handler.as_mut(),
            ctx(&self.log, &self.config),
            std::slice::from_ref(&event),
        )?;
        Ok(match ran {
            Ok(output) => Replay::Effects(output.effects),
            Err(f) => Replay::Failed(f),
        })
    }

    pub(super) fn retry_dead_letter(
        &mut self,
        key: &DeadLetterKey,
    ) -> Result<RetryOutcome, ConsumerError> {
        let (idx, record, base) = self.parked(key)?;
        if record.blocking {
            self.commits.commit(base)?;
            let p = &mut self.partitions[idx];
            p.blocked_at = None;
            p.retry = None;
            p.committed = self
                .log
                .group_offset(&key.group, &key.topic, key.partition)?;
            return Ok(RetryOutcome::Unblocked);
        }
        let event = self
            .find_relevant(idx, key.offset)
            .ok_or_else(|| ConsumerError::MissingEvent(Box::new(key.clone())))?;
        let relevant: Vec<Event> = if self.handler.handles(&event.event_type) {
            vec![event.clone()]
        } else {
            Vec::new()
        };
        loop {
            let failure = match self.handler.handle(ctx(&self.log, &self.config), &relevant) {
                Ok(output) => {
                    if let Some(r) = output.effects.refused.first() {
                        CallFailure::new(r.kind, r.message.clone())
                    } else {
                        let (commit, _) = output.effects.commit(base.clone());
                        match self.commits.commit(commit) {
                            Ok(_) => return Ok(RetryOutcome::Reprocessed),
                            // Other lanes run meanwhile: re-run on fresh state, as a batch would.
                            Err(e) if rerun(&e) => {
                                self.metrics.read_conflicts.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            Err(e @ (CommitError::Append { .. } | CommitError::Invalid(_))) => {
                                CallFailure::new(FailureKind::BadOutput, e.to_string())
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Err(HandlerError::Failed(f)) => f,
                Err(HandlerError::Conflict) => continue,
                Err(HandlerError::Read(e)) => return Err(e.into()),
            };
            self.metrics.failed_calls.fetch_add(1, Ordering::Relaxed);
            // Count the attempt on the record (fenced by its existence).
            let mut updated = dead_letter(
                &self.config,
                &event,
                Reason::Failed(&failure),
                &self.handler.version(),
                record.attempts + 1,
                record.first_failed_at,
            );
            updated.blocking = false;
            self.commits.commit(HandlerCommit {
                park: vec![updated],
                ..base
            })?;
            return Err(ConsumerError::RetryFailed {
                key: Box::new(key.clone()),
                failure: Box::new(failure),
            });
        }
    }

    /// [`ConsumerGroup::discard_dead_letter`] on the lane owning the partition.
    pub(super) fn discard_dead_letter(&mut self, key: &DeadLetterKey) -> Result<(), ConsumerError> {
        let (idx, record, mut commit) = self.parked(key)?;
        if record.blocking {
            commit.keep_offset = false;
            commit.expected_offset = Some(key.offset);
            commit.next_offset = key.offset + 1;
        }
        self.commits.commit(commit)?;
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

fn ctx<'a>(log: &'a EventLog, config: &'a GroupConfig) -> BatchContext<'a> {
    BatchContext {
        log,
        scope: config.scope(),
        sandbox: None,
    }
}

/// `events` through `handler`, keeping nothing: the output a commit would carry, or the call's
/// failure. The one path of every dry run (a dead letter's replay, the deploy gate).
pub(crate) fn dry_run(
    handler: &mut dyn Handler,
    ctx: BatchContext<'_>,
    events: &[Event],
) -> Result<Result<Output, CallFailure>, ReadError> {
    loop {
        match handler.handle(ctx, events) {
            Ok(output) => return Ok(Ok(output)),
            Err(HandlerError::Failed(f)) => return Ok(Err(f)),
            // Nothing commits here, but a running host's other lanes may move what it read.
            Err(HandlerError::Conflict) => continue,
            Err(HandlerError::Read(e)) => return Err(e),
        }
    }
}

/// Refusals that fresh state resolves: run the batch again.
fn rerun(e: &CommitError) -> bool {
    matches!(
        e,
        CommitError::ReadConflict { .. }
            | CommitError::SagaRevision { .. }
            | CommitError::Append {
                source: AppendError::WrongExpectedVersion { .. },
                ..
            }
    )
}

/// Why an event is parked.
enum Reason<'a> {
    /// Its last call failed.
    Failed(&'a CallFailure),
    /// Its outcome was refused (a command it caused was rejected).
    Refused(FailureKind, &'a str),
}

/// The dead-letter record of `event`: the one place one is built, for every kind.
fn dead_letter(
    config: &GroupConfig,
    event: &Event,
    reason: Reason<'_>,
    plugin_version: &str,
    attempts: u32,
    first_failed_at: u64,
) -> DeadLetter {
    let (failure_kind, message, backtrace) = match reason {
        Reason::Failed(f) => (f.kind, f.message.clone(), f.backtrace.clone()),
        Reason::Refused(kind, message) => (kind, message.to_owned(), None),
    };
    DeadLetter {
        group: config.name.clone(),
        topic: event.topic.clone(),
        partition: event.partition,
        offset: event.offset,
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        stream: event.stream.clone(),
        failure_kind,
        message,
        backtrace,
        attempts,
        plugin_version: plugin_version.to_owned(),
        first_failed_at,
        last_failed_at: now_millis().max(first_failed_at),
        blocking: config.on_dead_letter == DeadLetterPolicy::Block,
    }
}

/// The span of one batch: where it is, and the ids of its first event (a batch mixes flows; its
/// events' own ids are in the log).
fn batch_span(group: &str, events: &[Event]) -> tracing::Span {
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return tracing::Span::none();
    };
    let span = tracing::info_span!(
        "batch",
        group,
        topic = %first.topic,
        partition = first.partition,
        from_offset = first.offset,
        to_offset = last.offset,
        events = events.len(),
        correlation_id = %first.correlation_id,
        causation_id = %first.causation_id,
    );
    crate::telemetry::adopt_causes(&span, events);
    span
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
