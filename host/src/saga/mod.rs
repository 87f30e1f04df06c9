//! Saga orchestration: the plugin defines steps and judges answers; the host runs instances.
//!
//! A [`SagaRunner`] consumes its topics like a consumer group named after the saga. A trigger
//! event starts an instance and sends the first step's command; an answer (an event carrying the
//! instance's correlation id) is judged by the plugin: success sends the next step's command,
//! failure compensates the completed steps in reverse order. Every transition commits in ONE
//! transaction with the step command's events (the target aggregate is planned, not appended
//! to), the instance record and the consumer offset, so a crash at any point resumes each
//! instance exactly where it was and no command takes effect twice (their ids are derived from
//! the instance and step, and aggregates dedupe them anyway).
//!
//! Timers are durable (`saga_timers`): a sent step's timeout, a compensation's next retry, and
//! "continue compensating" (due at once, so a compensation interrupted by a crash resumes).
//! A compensation that keeps failing is retried with exponential backoff, then the instance is
//! marked `needs-attention` ([`retry`] sends it back to compensating). A plugin call that keeps
//! failing on an event (a trigger it cannot start, an answer it cannot judge) is retried, then
//! the event is parked in the dead-letter queue (`skip`); its step then times out.
//!
//! Version pinning: each instance records the content hash of the plugin version it started
//! on and every call for it goes to that version. New instances use the current version.
//! [`SagaRunner::add_version`] loads another one (hot reload); old versions stay loaded while
//! any in-flight instance names them ([`SagaRunner::retire_unused_versions`]).

mod record;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::aggregate::{Planned, PlannedAppend};
use crate::dispatch::{DispatchError, Dispatcher, Pass, Runner};
use crate::event::{Event, now_millis};
use crate::log::{
    CommitError, DeadLetter, EventLog, HandlerCommit, ReadError, SagaWrite, TimerChange,
};
use crate::plugin::{CallFailure, LoadedPlugin, PluginInstance, SagaDefinition, Verdict};

pub use record::{
    CorruptRecord, HistoryEntry, SagaInstance, SagaLogError, SagaStatus, StepRecord, StepStatus,
    find, list,
};

/// Settings of one saga runner.
#[derive(Clone, Debug)]
pub struct SagaOptions {
    /// Topics holding its trigger and answer events.
    pub topics: Vec<String>,
    /// Most events read per partition and pass.
    pub batch_size: usize,
    /// Compensation attempts before the instance needs attention.
    pub compensation_attempts: u32,
    /// First retry delay of a failed compensation; doubles per attempt up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl SagaOptions {
    pub fn new(topics: Vec<String>) -> Self {
        SagaOptions {
            topics,
            batch_size: 256,
            compensation_attempts: 5,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(60),
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(31);
        self.backoff_base
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_cap)
    }
}

/// Why a saga operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("saga plugin {plugin}: {failure}")]
    Plugin {
        plugin: String,
        failure: CallFailure,
    },
    #[error("plugin {plugin} defines saga {defined:?}, but the runner runs {expected:?}")]
    WrongSaga {
        plugin: String,
        expected: String,
        defined: String,
    },
    #[error("no instance {0:?}")]
    NoInstance(String),
    #[error(
        "instance {instance_id} is {status}; only an instance that needs attention can be retried"
    )]
    NotRetryable {
        instance_id: String,
        status: SagaStatus,
    },
    #[error(transparent)]
    Log(#[from] SagaLogError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("sending a command: {0}")]
    Dispatch(DispatchError),
}

impl From<CorruptRecord> for SagaError {
    fn from(e: CorruptRecord) -> Self {
        SagaError::Log(e.into())
    }
}

/// One loaded plugin version.
struct Version {
    instance: PluginInstance,
    definition: SagaDefinition,
}

struct Versions {
    /// Content hash of the version new instances start on.
    current: String,
    loaded: HashMap<String, Version>,
}

/// Runs the instances of one saga plugin.
pub struct SagaRunner {
    /// The saga's name: its consumer group and the key of its instances.
    name: String,
    log: EventLog,
    dispatcher: Dispatcher,
    options: SagaOptions,
    versions: Mutex<Versions>,
    failing: Mutex<HashMap<EventKey, Failing>>,
}

impl std::fmt::Debug for SagaRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaRunner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The effects of one transition, committed together.
#[derive(Default)]
struct Effects {
    writes: Vec<SagaWrite>,
    appends: Vec<PlannedAppend>,
    park: Vec<DeadLetter>,
}

/// Calls of the saga plugin for one event before the event is parked (`skip`): an answer that
/// cannot be judged then leaves its step to time out and compensate, never to block the saga.
const EVENT_ATTEMPTS: u32 = 5;

/// Where an event sits: `(topic, partition, offset)`.
type EventKey = (String, u32, u64);
/// Failed plugin calls on one event: (attempts, first failure in ms since the Unix epoch).
type Failing = (u32, u64);

/// Commit attempts of one transition when a concurrent command moved the target stream.
const COMMIT_ATTEMPTS: u32 = 5;

impl SagaRunner {
    /// A runner named after the saga plugin, starting new instances on `plugin`.
    pub fn new(
        name: impl Into<String>,
        log: EventLog,
        dispatcher: Dispatcher,
        plugin: Arc<LoadedPlugin>,
        options: SagaOptions,
    ) -> Result<Self, SagaError> {
        let (hash, version) = Self::load_version(&plugin)?;
        Ok(SagaRunner {
            name: name.into(),
            log,
            dispatcher,
            options,
            versions: Mutex::new(Versions {
                current: hash.clone(),
                loaded: HashMap::from([(hash, version)]),
            }),
            failing: Mutex::new(HashMap::new()),
        })
    }

    fn load_version(plugin: &Arc<LoadedPlugin>) -> Result<(String, Version), SagaError> {
        let failed = |failure| SagaError::Plugin {
            plugin: plugin.name.clone(),
            failure,
        };
        let mut instance = plugin.instantiate().map_err(failed)?;
        let definition = instance.saga_definition().map_err(failed)?;
        Ok((
            plugin.version.content_hash.clone(),
            Version {
                instance,
                definition,
            },
        ))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, Versions> {
        self.versions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads another version of the plugin and starts new instances on it; in-flight instances
    /// keep theirs. The new version must define the same saga.
    pub fn add_version(&self, plugin: &Arc<LoadedPlugin>) -> Result<(), SagaError> {
        self.insert_version(plugin, true)
    }

    /// Loads an older version for the in-flight instances pinned to it (after a restart, from
    /// the artifact cache); new instances keep starting on the current one.
    pub fn restore_version(&self, plugin: &Arc<LoadedPlugin>) -> Result<(), SagaError> {
        self.insert_version(plugin, false)
    }

    /// Content hashes that in-flight instances are pinned to but that are not loaded.
    pub fn missing_versions(&self) -> Result<BTreeSet<String>, SagaError> {
        let pinned: BTreeSet<String> = list(&self.log, Some(&self.name))?
            .into_iter()
            .filter(|i| i.status.in_flight())
            .map(|i| i.plugin_version)
            .collect();
        let versions = self.versions();
        Ok(pinned
            .into_iter()
            .filter(|h| !versions.loaded.contains_key(h))
            .collect())
    }

    fn insert_version(
        &self,
        plugin: &Arc<LoadedPlugin>,
        make_current: bool,
    ) -> Result<(), SagaError> {
        let (hash, version) = Self::load_version(plugin)?;
        let mut versions = self.versions();
        let current = &versions.loaded[&versions.current].definition.name;
        if *current != version.definition.name {
            return Err(SagaError::WrongSaga {
                plugin: plugin.name.clone(),
                expected: current.clone(),
                defined: version.definition.name,
            });
        }
        versions.loaded.insert(hash.clone(), version);
        if make_current {
            versions.current = hash;
        }
        Ok(())
    }

    /// Content hashes of the loaded versions, the current one first.
    pub fn loaded_versions(&self) -> Vec<String> {
        let versions = self.versions();
        let mut out = vec![versions.current.clone()];
        out.extend(
            versions
                .loaded
                .keys()
                .filter(|h| **h != versions.current)
                .cloned(),
        );
        out
    }

    /// Unloads every version that is neither current nor named by an in-flight instance;
    /// returns the unloaded hashes.
    pub fn retire_unused_versions(&self) -> Result<Vec<String>, SagaError> {
        let in_use: BTreeSet<String> = list(&self.log, Some(&self.name))?
            .into_iter()
            .filter(|i| i.status.in_flight())
            .map(|i| i.plugin_version)
            .collect();
        let mut versions = self.versions();
        let current = versions.current.clone();
        let retired: Vec<String> = versions
            .loaded
            .keys()
            .filter(|h| **h != current && !in_use.contains(*h))
            .cloned()
            .collect();
        for h in &retired {
            versions.loaded.remove(h);
        }
        Ok(retired)
    }

    /// One pass: fire due timers, then consume what is new on every partition.
    pub fn run_pass(&self) -> Result<Pass, SagaError> {
        let mut progress = self.fire_timers()?;
        for topic in &self.options.topics {
            let partitions = self.log.topic(topic).map_or(0, |t| t.partitions);
            for p in 0..partitions {
                progress |= self.consume(topic, p)?;
            }
        }
        let next_timer = self
            .log
            .saga_timers(&self.name)?
            .into_iter()
            .map(|(_, due)| due)
            .min();
        Ok(Pass {
            progress,
            next_timer,
        })
    }

    /// Runs passes until nothing is left to do now (timers due later are left).
    pub fn run_until_idle(&self) -> Result<(), SagaError> {
        while self.run_pass()?.progress {}
        Ok(())
    }

    fn fire_timers(&self) -> Result<bool, SagaError> {
        let now = now_millis();
        let mut fired = false;
        for (id, due) in self.log.saga_timers(&self.name)? {
            if due > now {
                continue;
            }
            fired = true;
            self.transition(|| {
                let Some((rev, inst)) = self.load(&id)? else {
                    return Ok(None);
                };
                let mut fx = Effects::default();
                self.on_timer(rev, inst.clone(), now, &mut fx)?;
                Ok(Some((inst.trigger_topic, inst.trigger_partition, fx)))
            })?;
        }
        Ok(fired)
    }

    /// Runs `make` and commits its effects without moving any offset; redone from scratch
    /// when a concurrent change refused the commit.
    fn transition(
        &self,
        make: impl Fn() -> Result<Option<(String, u32, Effects)>, SagaError>,
    ) -> Result<(), SagaError> {
        for attempt in 1..=COMMIT_ATTEMPTS {
            let Some((topic, partition, fx)) = make()? else {
                return Ok(());
            };
            match self.commit(&topic, partition, None, fx) {
                Err(e) if retryable(&e) && attempt < COMMIT_ATTEMPTS => continue,
                r => return r,
            }
        }
        Ok(())
    }

    fn consume(&self, topic: &str, partition: u32) -> Result<bool, SagaError> {
        let committed = self.log.group_offset(&self.name, topic, partition)?;
        let events = self.log.read_partition(
            topic,
            partition,
            committed.unwrap_or(0),
            self.options.batch_size,
        )?;
        let Some(last) = events.last() else {
            return Ok(false);
        };
        let last_offset = last.offset;
        let mut expected = committed;
        for event in &events {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut fx = Effects::default();
                match self.on_event(event, &mut fx) {
                    Ok(()) => {}
                    Err(SagaError::Plugin { failure, .. }) => {
                        fx = Effects::default();
                        fx.park.push(self.failed_event(event, failure)?);
                    }
                    Err(e) => return Err(e),
                }
                if fx.writes.is_empty() && fx.park.is_empty() && event.offset != last_offset {
                    break; // nothing to do: the next commit moves the offset past it
                }
                match self.commit(topic, partition, Some((expected, event.offset + 1)), fx) {
                    Ok(()) => {
                        expected = Some(event.offset + 1);
                        break;
                    }
                    Err(e) if retryable(&e) && attempt < COMMIT_ATTEMPTS => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(true)
    }

    /// Counts a failed plugin call for `event`: an error (the pass is retried) until the last
    /// attempt, then the dead letter to park it with.
    fn failed_event(&self, event: &Event, failure: CallFailure) -> Result<DeadLetter, SagaError> {
        let now = now_millis();
        let key = (event.topic.clone(), event.partition, event.offset);
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        let (attempts, first) = {
            let entry = failing.entry(key.clone()).or_insert((0, now));
            entry.0 += 1;
            *entry
        };
        if attempts < EVENT_ATTEMPTS {
            return Err(SagaError::Plugin {
                plugin: self.name.clone(),
                failure,
            });
        }
        failing.remove(&key);
        tracing::error!(saga = %self.name, offset = event.offset, error = %failure, "saga plugin kept failing on an event; parked");
        Ok(DeadLetter {
            group: self.name.clone(),
            topic: event.topic.clone(),
            partition: event.partition,
            offset: event.offset,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            stream: event.stream.clone(),
            failure_kind: failure.kind.to_string(),
            message: failure.message,
            backtrace: failure.backtrace,
            attempts,
            plugin_version: self.versions().current.clone(),
            first_failed_at: first,
            last_failed_at: now,
            blocking: false,
        })
    }

    fn commit(
        &self,
        topic: &str,
        partition: u32,
        offset: Option<(Option<u64>, u64)>,
        fx: Effects,
    ) -> Result<(), SagaError> {
        let (expected_offset, next_offset, keep_offset) = match offset {
            Some((from, to)) => (from, to, false),
            None => (None, 0, true),
        };
        self.log.commit_handler(HandlerCommit {
            group: self.name.clone(),
            topic: topic.to_owned(),
            partition,
            expected_offset,
            next_offset,
            keep_offset,
            appends: fx
                .appends
                .into_iter()
                .map(|p| (p.stream, p.expected, p.events))
                .collect(),
            saga_writes: fx.writes,
            park: fx.park,
            ..Default::default()
        })?;
        Ok(())
    }

    fn load(&self, id: &str) -> Result<Option<(u64, SagaInstance)>, SagaError> {
        match self.log.saga_instance(&self.name, id)? {
            Some(stored) => Ok(Some(record::decode(&stored)?)),
            None => Ok(None),
        }
    }

    /// Runs `f` on the plugin version `hash`; `None` when that version is not loaded.
    fn with_version<R>(&self, hash: &str, f: impl FnOnce(&mut Version) -> R) -> Option<R> {
        let mut versions = self.versions();
        versions.loaded.get_mut(hash).map(f)
    }

    fn on_event(&self, event: &Event, fx: &mut Effects) -> Result<(), SagaError> {
        let now = now_millis();
        let (current, is_trigger) = {
            let versions = self.versions();
            let v = &versions.loaded[&versions.current];
            (
                versions.current.clone(),
                v.definition.trigger_types.contains(&event.event_type),
            )
        };
        if is_trigger {
            self.start(&current, event, now, fx)?;
        }
        if !self.is_answer_type(&event.event_type) {
            return Ok(());
        }
        for id in self
            .log
            .saga_correlated(&self.name, &event.correlation_id)?
        {
            let Some((rev, inst)) = self.load(&id)? else {
                continue;
            };
            let Some(step) = inst.current_step() else {
                continue;
            };
            if inst.status != SagaStatus::Running || inst.steps[step].sent_at.is_none() {
                continue;
            }
            let verdict = self.with_version(&inst.plugin_version, |v| {
                v.instance
                    .saga_judge(&inst.steps[step].name, &inst.data, event)
            });
            let mut inst = inst;
            match verdict {
                None => self.version_missing(rev, inst, step, now, fx),
                Some(Err(failure)) => {
                    return Err(SagaError::Plugin {
                        plugin: self.name.clone(),
                        failure,
                    });
                }
                Some(Ok(Verdict::NotMine)) => {}
                Some(Ok(Verdict::Succeeded(data))) => {
                    inst.data = data;
                    inst.steps[step].status = StepStatus::Completed;
                    inst.note(now, step, format!("completed by {}", event.event_type));
                    self.advance(rev, inst, &event.event_id.to_string(), now, fx)?;
                }
                Some(Ok(Verdict::Failed(reason))) => {
                    self.fail_step(rev, inst, step, reason, now, fx);
                }
            }
        }
        Ok(())
    }

    fn is_answer_type(&self, event_type: &str) -> bool {
        self.versions()
            .loaded
            .values()
            .any(|v| v.definition.answer_types.iter().any(|t| t == event_type))
    }

    fn start(
        &self,
        version: &str,
        trigger: &Event,
        now: u64,
        fx: &mut Effects,
    ) -> Result<(), SagaError> {
        let (started, steps) = self
            .with_version(version, |v| {
                (v.instance.saga_start(trigger), v.definition.steps.clone())
            })
            .expect("the current version is loaded");
        let plugin_failed = |failure| SagaError::Plugin {
            plugin: self.name.clone(),
            failure,
        };
        let Some((instance_id, data)) = started.map_err(plugin_failed)? else {
            return Ok(());
        };
        if self.load(&instance_id)?.is_some() {
            tracing::debug!(saga = %self.name, instance = %instance_id, "trigger for an existing instance ignored");
            return Ok(());
        }
        let inst = SagaInstance {
            saga: self.name.clone(),
            instance_id,
            plugin_version: version.to_owned(),
            status: SagaStatus::Running,
            correlation_id: trigger.correlation_id.clone(),
            trigger_event_id: trigger.event_id,
            trigger_topic: trigger.topic.clone(),
            trigger_partition: trigger.partition,
            data,
            steps: steps
                .into_iter()
                .map(|s| StepRecord {
                    name: s.name,
                    status: StepStatus::Pending,
                    timeout_ms: s.timeout_ms,
                    compensable: s.compensable,
                    sent_at: None,
                    updated_at: None,
                    command_id: None,
                    compensation_attempts: 0,
                    compensation_error: None,
                })
                .collect(),
            failed_step: None,
            failure_reason: None,
            attention: None,
            history: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        tracing::info!(saga = %self.name, instance = %inst.instance_id, version = %&version[..12.min(version.len())], "saga instance started");
        self.advance_from(None, inst, &trigger.event_id.to_string(), now, fx)
    }

    fn advance(
        &self,
        rev: u64,
        inst: SagaInstance,
        causation: &str,
        now: u64,
        fx: &mut Effects,
    ) -> Result<(), SagaError> {
        self.advance_from(Some(rev), inst, causation, now, fx)
    }

    /// Sends the next pending step's command, or completes the instance.
    fn advance_from(
        &self,
        rev: Option<u64>,
        mut inst: SagaInstance,
        causation: &str,
        now: u64,
        fx: &mut Effects,
    ) -> Result<(), SagaError> {
        let Some(step) = inst.current_step() else {
            inst.status = SagaStatus::Completed;
            inst.updated_at = now;
            tracing::info!(saga = %self.name, instance = %inst.instance_id, "saga instance completed");
            self.write(fx, rev, &inst, TimerChange::Clear);
            return Ok(());
        };
        let name = inst.steps[step].name.clone();
        let command = self.with_version(&inst.plugin_version, |v| {
            v.instance.saga_execute(&name, &inst.data, now)
        });
        let command = match command {
            None => {
                self.version_missing_from(rev, inst, step, now, fx);
                return Ok(());
            }
            Some(Err(failure)) => {
                let reason = format!("the saga could not build the command: {failure}");
                self.fail_step_from(rev, inst, step, reason, now, fx);
                return Ok(());
            }
            Some(Ok(c)) => c,
        };
        let origin = format!(
            "saga\u{0}{}\u{0}{}\u{0}execute\u{0}{name}",
            self.name, inst.instance_id
        );
        match self
            .dispatcher
            .plan(&origin, &command, &inst.correlation_id, causation)
        {
            Ok(planned) => {
                inst.steps[step].sent_at = Some(now);
                inst.steps[step].command_id = Some(Dispatcher::command_id(&origin, &command));
                inst.note(
                    now,
                    step,
                    format!("sent {} to {}", command.command_type, command.stream),
                );
                let due = now.saturating_add(inst.steps[step].timeout_ms);
                self.write(fx, rev, &inst, TimerChange::Set(due));
                if let Planned::Append(p) = planned {
                    fx.appends.push(p);
                }
                Ok(())
            }
            Err(e) if e.is_outcome() => {
                // A command rejected by its aggregate is a failed step.
                let reason = match &e {
                    DispatchError::Command(crate::aggregate::CommandError::Rejected(r)) => {
                        format!(
                            "{} rejected {}: {}",
                            command.aggregate, command.command_type, r
                        )
                    }
                    other => other.to_string(),
                };
                self.fail_step_from(rev, inst, step, reason, now, fx);
                Ok(())
            }
            Err(e) => Err(SagaError::Dispatch(e)),
        }
    }

    fn fail_step(
        &self,
        rev: u64,
        inst: SagaInstance,
        step: usize,
        reason: String,
        now: u64,
        fx: &mut Effects,
    ) {
        self.fail_step_from(Some(rev), inst, step, reason, now, fx);
    }

    /// Marks `step` failed and starts compensating (driven by a timer due at once).
    fn fail_step_from(
        &self,
        rev: Option<u64>,
        mut inst: SagaInstance,
        step: usize,
        reason: String,
        now: u64,
        fx: &mut Effects,
    ) {
        tracing::info!(saga = %self.name, instance = %inst.instance_id, step = %inst.steps[step].name, %reason, "saga step failed; compensating");
        inst.steps[step].status = StepStatus::Failed;
        inst.note(now, step, format!("failed: {reason}"));
        inst.failed_step = Some(inst.steps[step].name.clone());
        inst.failure_reason = Some(reason);
        inst.status = SagaStatus::Compensating;
        self.write(fx, rev, &inst, TimerChange::Set(now));
    }

    fn version_missing(
        &self,
        rev: u64,
        inst: SagaInstance,
        step: usize,
        now: u64,
        fx: &mut Effects,
    ) {
        self.version_missing_from(Some(rev), inst, step, now, fx);
    }

    /// The instance's pinned version is not loaded: it cannot go on without an operator.
    fn version_missing_from(
        &self,
        rev: Option<u64>,
        mut inst: SagaInstance,
        step: usize,
        now: u64,
        fx: &mut Effects,
    ) {
        let why = format!(
            "plugin version {} is not loaded in this host",
            inst.plugin_version
        );
        tracing::error!(saga = %self.name, instance = %inst.instance_id, %why, "saga instance needs attention");
        inst.note(now, step, why.clone());
        inst.attention = Some(why);
        inst.status = SagaStatus::NeedsAttention;
        self.write(fx, rev, &inst, TimerChange::Clear);
    }

    fn on_timer(
        &self,
        rev: u64,
        mut inst: SagaInstance,
        now: u64,
        fx: &mut Effects,
    ) -> Result<(), SagaError> {
        match inst.status {
            SagaStatus::Running => {
                let Some(step) = inst.current_step() else {
                    self.write(fx, Some(rev), &inst, TimerChange::Clear);
                    return Ok(());
                };
                let s = &inst.steps[step];
                match s.sent_at {
                    Some(sent) if now >= sent.saturating_add(s.timeout_ms) => {
                        let reason = format!("no answer within {} ms (timed out)", s.timeout_ms);
                        self.fail_step(rev, inst, step, reason, now, fx);
                    }
                    Some(sent) => {
                        let due = sent.saturating_add(s.timeout_ms);
                        self.write(fx, Some(rev), &inst, TimerChange::Set(due));
                    }
                    None => {
                        let cause = inst.trigger_event_id.to_string();
                        return self.advance(rev, inst, &cause, now, fx);
                    }
                }
                Ok(())
            }
            SagaStatus::Compensating => {
                self.compensate_next(rev, &mut inst, now, fx);
                Ok(())
            }
            SagaStatus::Completed | SagaStatus::Failed | SagaStatus::NeedsAttention => {
                self.write(fx, Some(rev), &inst, TimerChange::Clear);
                Ok(())
            }
        }
    }

    /// Compensates the last completed step (reverse order), one per transition.
    fn compensate_next(&self, rev: u64, inst: &mut SagaInstance, now: u64, fx: &mut Effects) {
        let next = inst
            .steps
            .iter()
            .rposition(|s| s.status == StepStatus::Completed && s.compensable);
        let Some(step) = next else {
            inst.status = SagaStatus::Failed;
            inst.updated_at = now;
            tracing::info!(saga = %self.name, instance = %inst.instance_id, failed_step = ?inst.failed_step, "saga instance failed; compensations done");
            self.write(fx, Some(rev), inst, TimerChange::Clear);
            return;
        };
        let name = inst.steps[step].name.clone();
        let command = self.with_version(&inst.plugin_version, |v| {
            v.instance.saga_compensate(&name, &inst.data, now)
        });
        let outcome: Result<Option<(String, Option<PlannedAppend>)>, String> = match command {
            None => {
                self.version_missing(rev, inst.clone(), step, now, fx);
                return;
            }
            Some(Err(failure)) => Err(format!(
                "the saga could not build the compensation: {failure}"
            )),
            Some(Ok(None)) => Ok(None),
            Some(Ok(Some(command))) => {
                let origin = format!(
                    "saga\u{0}{}\u{0}{}\u{0}compensate\u{0}{name}",
                    self.name, inst.instance_id
                );
                let causation = inst.trigger_event_id.to_string();
                match self
                    .dispatcher
                    .plan(&origin, &command, &inst.correlation_id, &causation)
                {
                    Ok(Planned::Append(p)) => Ok(Some((
                        format!(
                            "compensated: sent {} to {}",
                            command.command_type, command.stream
                        ),
                        Some(p),
                    ))),
                    Ok(Planned::Done(_)) => Ok(Some((
                        format!(
                            "compensated: {} to {} (no new events)",
                            command.command_type, command.stream
                        ),
                        None,
                    ))),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match outcome {
            Ok(done) => {
                inst.steps[step].status = StepStatus::Compensated;
                inst.steps[step].compensation_error = None;
                let what = done.as_ref().map_or_else(
                    || "compensated (nothing to undo)".to_owned(),
                    |(w, _)| w.clone(),
                );
                inst.note(now, step, what);
                if let Some((_, Some(p))) = done {
                    fx.appends.push(p);
                }
                // The next compensation (or the final status) in its own transition.
                self.write(fx, Some(rev), inst, TimerChange::Set(now));
            }
            Err(error) => {
                let s = &mut inst.steps[step];
                s.compensation_attempts += 1;
                s.compensation_error = Some(error.clone());
                let attempts = s.compensation_attempts;
                inst.note(
                    now,
                    step,
                    format!("compensation attempt {attempts} failed: {error}"),
                );
                if attempts >= self.options.compensation_attempts {
                    inst.status = SagaStatus::NeedsAttention;
                    inst.attention = Some(format!(
                        "compensating {name} failed {attempts} times: {error}"
                    ));
                    tracing::error!(saga = %self.name, instance = %inst.instance_id, step = %name, %error, "compensation keeps failing; the instance needs attention");
                    self.write(fx, Some(rev), inst, TimerChange::Clear);
                } else {
                    let delay = self.options.backoff(attempts).as_millis() as u64;
                    tracing::warn!(saga = %self.name, instance = %inst.instance_id, step = %name, %error, attempts, delay_ms = delay, "compensation failed; retrying");
                    self.write(
                        fx,
                        Some(rev),
                        inst,
                        TimerChange::Set(now.saturating_add(delay)),
                    );
                }
            }
        }
    }

    fn write(&self, fx: &mut Effects, rev: Option<u64>, inst: &SagaInstance, timer: TimerChange) {
        fx.writes.push(SagaWrite {
            saga: self.name.clone(),
            instance_id: inst.instance_id.clone(),
            expected_revision: rev,
            record: inst.encode(),
            correlations: if rev.is_none() {
                vec![inst.correlation_id.clone()]
            } else {
                Vec::new()
            },
            timer,
        });
    }
}

/// Refusals that a fresh read and a redo resolve.
fn retryable(e: &SagaError) -> bool {
    matches!(
        e,
        SagaError::Commit(
            CommitError::SagaRevision { .. }
                | CommitError::Append { .. }
                | CommitError::OffsetMismatch { .. }
        )
    )
}

impl Runner for SagaRunner {
    fn name(&self) -> &str {
        &self.name
    }

    fn pass(&self) -> Result<Pass, String> {
        self.run_pass().map_err(|e| e.to_string())
    }
}

/// Sends an instance that needs attention back to compensating, with fresh attempts. Works on
/// a running host's log (the runner picks it up at once) and on a stopped host's.
pub fn retry(log: &EventLog, saga: &str, instance_id: &str) -> Result<(), SagaError> {
    let stored = log
        .saga_instance(saga, instance_id)?
        .ok_or_else(|| SagaError::NoInstance(instance_id.to_owned()))?;
    let (rev, mut inst) = record::decode(&stored)?;
    if inst.status != SagaStatus::NeedsAttention {
        return Err(SagaError::NotRetryable {
            instance_id: instance_id.to_owned(),
            status: inst.status,
        });
    }
    let now = now_millis();
    for s in &mut inst.steps {
        s.compensation_attempts = 0;
    }
    // An instance stopped for a missing version resumes where it was; one whose compensation
    // failed resumes compensating.
    inst.status = if inst.failed_step.is_some() {
        SagaStatus::Compensating
    } else {
        SagaStatus::Running
    };
    inst.attention = None;
    inst.updated_at = now;
    inst.history.push(HistoryEntry {
        at: now,
        step: String::new(),
        what: "retried by an operator".into(),
    });
    log.commit_handler(HandlerCommit {
        group: saga.to_owned(),
        topic: inst.trigger_topic.clone(),
        partition: inst.trigger_partition,
        keep_offset: true,
        saga_writes: vec![SagaWrite {
            saga: saga.to_owned(),
            instance_id: instance_id.to_owned(),
            expected_revision: Some(rev),
            record: inst.encode(),
            correlations: Vec::new(),
            timer: TimerChange::Set(now),
        }],
        ..Default::default()
    })?;
    Ok(())
}

/// Instances per status, for a summary line.
pub fn count_by_status(instances: &[SagaInstance]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for i in instances {
        *out.entry(i.status.to_string()).or_default() += 1;
    }
    out
}
