//! Saga orchestration: the plugin defines steps and judges answers; the host runs instances.
//!
//! A [`SagaHandler`] is the engine's orchestration kind: it runs in a consumer group named after
//! the saga (`consumer/`), which also wakes it for its durable timers. A trigger
//! event starts an instance and sends the first step's command; an answer (an event carrying the
//! instance's correlation id) is judged by the plugin: success sends the next step's command,
//! failure compensates the completed steps in reverse order. Every transition commits in ONE
//! transaction with the step command's events (the target aggregate is planned, not appended
//! to), the instance record and the consumer offset, so a crash at any point resumes each
//! instance exactly where it was and no command takes effect twice (their ids are derived from
//! the instance and step, and aggregates dedupe them anyway).
//!
//! On a clustered log the saga runs on one host (the owner of its home partition, see
//! `host::cluster_groups`): a step's command is sent to its stream's owner and answered before
//! the transition commits (the instance record, timer and offset, as one record of the home
//! partition that every replica applies); a crash in between runs the transition again and the
//! resent command is deduplicated by its id.
//!
//! Timers are durable (`saga_timers`): a sent step's timeout, a compensation's next retry, and
//! "continue compensating" (due at once, so a compensation interrupted by a crash resumes).
//! A compensation that keeps failing is retried with exponential backoff, then the instance is
//! marked `needs-attention` ([`retry`] sends it back to compensating). A plugin call that keeps
//! failing on an event (a trigger it cannot start, an answer it cannot judge) is retried and
//! parked by the engine with the group's `retry` and `dead_letter` settings; with `skip`, its
//! step then times out.
//!
//! Version pinning: each instance records the content hash of the plugin version it started
//! on and every call for it goes to that version. New instances use the current version.
//! [`SagaVersions::add_version`] loads another one (hot reload); old versions stay loaded while
//! any in-flight instance names them ([`SagaVersions::retire_unused_versions`]). Every lane's
//! handler instantiates the versions of the shared [`SagaVersions`] it needs.

mod record;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::aggregate::{CommandError, Planned, PlannedAppend};
use crate::consumer::{self, BatchContext, Fired, Handler, HandlerError, Output, Timers};
use crate::dispatch::{DispatchError, Dispatched, Dispatcher};
use crate::event::{Event, now_millis};
use crate::failure::FailureKind;
use crate::log::{CommitError, EventLog, HandlerCommit, ReadError, SagaWrite, TimerChange};
use crate::plugin::{CallFailure, LoadedPlugin, SagaDefinition, Verdict};
// `SagaInstance` here is a running saga (its record); this is the plugin's instance.
use crate::plugin::SagaInstance as SagaPlugin;

pub use record::{
    CorruptRecord, HistoryEntry, SagaInstance, SagaLogError, SagaStatus, StepRecord, StepStatus,
    find, list,
};

/// Settings of one saga's compensations (its events' retries are the group's).
#[derive(Clone, Debug)]
pub struct SagaOptions {
    /// Compensation attempts before the instance needs attention.
    pub compensation_attempts: u32,
    /// First retry delay of a failed compensation; doubles per attempt up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for SagaOptions {
    fn default() -> Self {
        SagaOptions {
            compensation_attempts: 5,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(60),
        }
    }
}

impl SagaOptions {
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

/// One loaded plugin version, instantiated on one lane.
struct Version {
    instance: SagaPlugin,
    definition: SagaDefinition,
}

/// The plugin versions a saga runs: the one new instances start on and the ones in-flight
/// instances are pinned to. Shared by every lane of the saga's group and by the host, which
/// adds versions on deploy.
pub struct SagaVersions {
    name: String,
    /// The saga the plugin defines (every version must define the same one).
    saga: String,
    state: Mutex<VersionSet>,
}

struct VersionSet {
    /// Content hash of the version new instances start on.
    current: String,
    loaded: HashMap<String, Arc<LoadedPlugin>>,
    /// Bumped on every change, so lanes know to look again.
    generation: u64,
}

impl std::fmt::Debug for SagaVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaVersions")
            .field("name", &self.name)
            .field("saga", &self.saga)
            .finish_non_exhaustive()
    }
}

fn load_version(plugin: &Arc<LoadedPlugin>) -> Result<Version, SagaError> {
    let failed = |failure| SagaError::Plugin {
        plugin: plugin.name.clone(),
        failure,
    };
    let mut instance: SagaPlugin = plugin
        .instantiate()
        .map_err(|e| failed(CallFailure::from(e)))?;
    let definition = instance.saga_definition().map_err(failed)?;
    Ok(Version {
        instance,
        definition,
    })
}

impl SagaVersions {
    /// The versions of saga plugin `name`, starting new instances on `plugin`.
    pub fn new(name: impl Into<String>, plugin: Arc<LoadedPlugin>) -> Result<Arc<Self>, SagaError> {
        let version = load_version(&plugin)?;
        let hash = plugin.version.content_hash.clone();
        Ok(Arc::new(SagaVersions {
            name: name.into(),
            saga: version.definition.name,
            state: Mutex::new(VersionSet {
                current: hash.clone(),
                loaded: HashMap::from([(hash, plugin)]),
                generation: 0,
            }),
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn state(&self) -> std::sync::MutexGuard<'_, VersionSet> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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

    fn insert_version(
        &self,
        plugin: &Arc<LoadedPlugin>,
        make_current: bool,
    ) -> Result<(), SagaError> {
        let version = load_version(plugin)?;
        if version.definition.name != self.saga {
            return Err(SagaError::WrongSaga {
                plugin: plugin.name.clone(),
                expected: self.saga.clone(),
                defined: version.definition.name,
            });
        }
        let hash = plugin.version.content_hash.clone();
        let mut state = self.state();
        state.loaded.insert(hash.clone(), plugin.clone());
        if make_current {
            state.current = hash;
        }
        state.generation += 1;
        Ok(())
    }

    /// Content hashes that in-flight instances are pinned to but that are not loaded.
    pub fn missing_versions(&self, log: &EventLog) -> Result<BTreeSet<String>, SagaError> {
        let pinned = pinned_versions(log, &self.name)?;
        let state = self.state();
        Ok(pinned
            .into_iter()
            .filter(|h| !state.loaded.contains_key(h))
            .collect())
    }

    /// Content hashes of the loaded versions, the current one first.
    pub fn loaded_versions(&self) -> Vec<String> {
        let state = self.state();
        let mut out = vec![state.current.clone()];
        out.extend(
            state
                .loaded
                .keys()
                .filter(|h| **h != state.current)
                .cloned(),
        );
        out
    }

    /// Unloads every version that is neither current nor named by an in-flight instance;
    /// returns the unloaded hashes.
    pub fn retire_unused_versions(&self, log: &EventLog) -> Result<Vec<String>, SagaError> {
        let in_use = pinned_versions(log, &self.name)?;
        let mut state = self.state();
        let current = state.current.clone();
        let retired: Vec<String> = state
            .loaded
            .keys()
            .filter(|h| **h != current && !in_use.contains(*h))
            .cloned()
            .collect();
        for h in &retired {
            state.loaded.remove(h);
        }
        state.generation += 1;
        Ok(retired)
    }
}

fn pinned_versions(log: &EventLog, saga: &str) -> Result<BTreeSet<String>, SagaError> {
    Ok(list(log, Some(saga))?
        .into_iter()
        .filter(|i| i.status.in_flight())
        .map(|i| i.plugin_version)
        .collect())
}

/// One lane's instances of the loaded versions.
struct Versions {
    /// Content hash of the version new instances start on.
    current: String,
    loaded: HashMap<String, Version>,
    /// The [`VersionSet::generation`] these were made for.
    generation: u64,
}

/// A saga as a consumer group's handler (one per lane).
pub struct SagaHandler {
    /// The saga's name: its consumer group and the key of its instances.
    name: String,
    log: EventLog,
    dispatcher: Dispatcher,
    options: SagaOptions,
    shared: Arc<SagaVersions>,
    versions: Mutex<Versions>,
    /// The batch or timer being handled is a dry run (the deploy gate): commands are planned,
    /// never sent, even on a clustered log.
    dry_run: AtomicBool,
}

impl std::fmt::Debug for SagaHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaHandler")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The effects of one transition, committed together.
#[derive(Default)]
struct Effects {
    writes: Vec<SagaWrite>,
    appends: Vec<PlannedAppend>,
}

impl Effects {
    fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.appends.is_empty()
    }

    fn into_engine(self) -> consumer::Effects {
        consumer::Effects {
            appends: self
                .appends
                .into_iter()
                .map(|p| (p.stream, p.expected, p.events))
                .collect(),
            saga_writes: self.writes,
            ..consumer::Effects::default()
        }
    }
}

impl SagaError {
    /// How the engine treats it: a plugin failure is retried and parked; storage pauses the
    /// lane; contention re-runs.
    fn into_handler(self) -> HandlerError {
        match self {
            SagaError::Plugin { failure, .. } => HandlerError::Failed(failure),
            SagaError::Read(e) => HandlerError::Read(e),
            SagaError::Dispatch(DispatchError::Command(CommandError::Read(e))) => {
                HandlerError::Read(e)
            }
            SagaError::Dispatch(DispatchError::Command(CommandError::Append(e))) => {
                HandlerError::Read(ReadError::Storage(e.to_string()))
            }
            SagaError::Dispatch(_) | SagaError::Commit(_) => HandlerError::Conflict,
            other => HandlerError::Failed(CallFailure::new(FailureKind::Host, other.to_string())),
        }
    }
}

impl SagaHandler {
    /// A handler of saga `versions` on one lane.
    pub fn new(
        log: EventLog,
        dispatcher: Dispatcher,
        versions: Arc<SagaVersions>,
        options: SagaOptions,
    ) -> Result<Self, SagaError> {
        let handler = SagaHandler {
            name: versions.name.clone(),
            log,
            dispatcher,
            options,
            shared: versions,
            versions: Mutex::new(Versions {
                current: String::new(),
                loaded: HashMap::new(),
                generation: u64::MAX,
            }),
            dry_run: AtomicBool::new(false),
        };
        handler.sync()?;
        Ok(handler)
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, Versions> {
        self.versions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Instantiates the shared set's versions this lane lacks (after a deploy), drops the
    /// retired ones.
    fn sync(&self) -> Result<(), SagaError> {
        let (generation, current, plugins) = {
            let shared = self.shared.state();
            if shared.generation == self.versions().generation {
                return Ok(());
            }
            (
                shared.generation,
                shared.current.clone(),
                shared.loaded.clone(),
            )
        };
        let mut versions = self.versions();
        versions.loaded.retain(|h, _| plugins.contains_key(h));
        for (hash, plugin) in &plugins {
            if !versions.loaded.contains_key(hash) {
                versions.loaded.insert(hash.clone(), load_version(plugin)?);
            }
        }
        versions.current = current;
        versions.generation = generation;
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
                None => self.version_missing(Some(rev), inst, step, now, fx),
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
                    self.advance(Some(rev), inst, &event.event_id.to_string(), now, fx)?;
                }
                Some(Ok(Verdict::Failed(reason))) => {
                    self.fail_step(Some(rev), inst, step, reason, now, fx);
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
        self.advance(None, inst, &trigger.event_id.to_string(), now, fx)
    }

    /// Sends the next pending step's command, or completes the instance.
    fn advance(
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
                self.version_missing(rev, inst, step, now, fx);
                return Ok(());
            }
            Some(Err(failure)) => {
                let reason = format!("the saga could not build the command: {failure}");
                self.fail_step(rev, inst, step, reason, now, fx);
                return Ok(());
            }
            Some(Ok(c)) => c,
        };
        let origin = format!(
            "saga\u{0}{}\u{0}{}\u{0}execute\u{0}{name}",
            self.name, inst.instance_id
        );
        match self.dispatcher.dispatch(
            &origin,
            &command,
            &inst.correlation_id,
            causation,
            self.dry_run.load(Ordering::Relaxed),
        ) {
            Ok(dispatched) => {
                inst.steps[step].sent_at = Some(now);
                inst.steps[step].command_id = Some(Dispatcher::command_id(&origin, &command));
                inst.note(
                    now,
                    step,
                    format!("sent {} to {}", command.command_type, command.stream),
                );
                let due = now.saturating_add(inst.steps[step].timeout_ms);
                self.write(fx, rev, &inst, TimerChange::Set(due));
                if let Dispatched::Planned(Planned::Append(p)) = dispatched {
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
                self.fail_step(rev, inst, step, reason, now, fx);
                Ok(())
            }
            Err(e) => Err(SagaError::Dispatch(e)),
        }
    }

    /// Marks `step` failed and starts compensating (driven by a timer due at once).
    fn fail_step(
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

    /// The instance's pinned version is not loaded: it cannot go on without an operator.
    fn version_missing(
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
                        self.fail_step(Some(rev), inst, step, reason, now, fx);
                    }
                    Some(sent) => {
                        let due = sent.saturating_add(s.timeout_ms);
                        self.write(fx, Some(rev), &inst, TimerChange::Set(due));
                    }
                    None => {
                        let cause = inst.trigger_event_id.to_string();
                        return self.advance(Some(rev), inst, &cause, now, fx);
                    }
                }
                Ok(())
            }
            SagaStatus::Compensating => self.compensate_next(rev, &mut inst, now, fx),
            SagaStatus::Completed | SagaStatus::Failed | SagaStatus::NeedsAttention => {
                self.write(fx, Some(rev), &inst, TimerChange::Clear);
                Ok(())
            }
        }
    }

    /// Compensates the last completed step (reverse order), one per transition. A command that
    /// could not reach its aggregate (storage, no owner during a failover) is no attempt: the
    /// error goes to the engine, which tries the timer again after a pause.
    fn compensate_next(
        &self,
        rev: u64,
        inst: &mut SagaInstance,
        now: u64,
        fx: &mut Effects,
    ) -> Result<(), SagaError> {
        let next = inst
            .steps
            .iter()
            .rposition(|s| s.status == StepStatus::Completed && s.compensable);
        let Some(step) = next else {
            inst.status = SagaStatus::Failed;
            inst.updated_at = now;
            tracing::info!(saga = %self.name, instance = %inst.instance_id, failed_step = ?inst.failed_step, "saga instance failed; compensations done");
            self.write(fx, Some(rev), inst, TimerChange::Clear);
            return Ok(());
        };
        let name = inst.steps[step].name.clone();
        let command = self.with_version(&inst.plugin_version, |v| {
            v.instance.saga_compensate(&name, &inst.data, now)
        });
        let outcome: Result<Option<(String, Option<PlannedAppend>)>, String> = match command {
            None => {
                self.version_missing(Some(rev), inst.clone(), step, now, fx);
                return Ok(());
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
                match self.dispatcher.dispatch(
                    &origin,
                    &command,
                    &inst.correlation_id,
                    &causation,
                    self.dry_run.load(Ordering::Relaxed),
                ) {
                    Ok(Dispatched::Planned(Planned::Append(p))) => Ok(Some((
                        format!(
                            "compensated: sent {} to {}",
                            command.command_type, command.stream
                        ),
                        Some(p),
                    ))),
                    Ok(Dispatched::Planned(Planned::Done(_))) => Ok(Some((
                        format!(
                            "compensated: {} to {} (no new events)",
                            command.command_type, command.stream
                        ),
                        None,
                    ))),
                    Ok(Dispatched::Sent(sent)) => Ok(Some((
                        format!(
                            "compensated: sent {} to {}{}",
                            command.command_type,
                            command.stream,
                            if sent.deduplicated {
                                " (already handled)"
                            } else {
                                ""
                            }
                        ),
                        None,
                    ))),
                    Err(e) if !e.is_outcome() => return Err(SagaError::Dispatch(e)),
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
        Ok(())
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

impl Handler for SagaHandler {
    fn handles(&self, _event_type: &str) -> bool {
        // Trigger and answer types may change with a deploy; `on_event` looks them up.
        true
    }

    /// Each event's transition commits on its own (the next event's may read the instance it
    /// wrote): the batch stops after the first event with effects.
    fn handle(&mut self, ctx: BatchContext<'_>, events: &[Event]) -> Result<Output, HandlerError> {
        self.sync().map_err(SagaError::into_handler)?;
        self.dry_run.store(ctx.sandbox.is_some(), Ordering::Relaxed);
        for (i, event) in events.iter().enumerate() {
            let mut fx = Effects::default();
            match self.on_event(event, &mut fx) {
                Ok(()) => {}
                Err(SagaError::Plugin { mut failure, .. }) => {
                    failure.event_index = Some(i as u32);
                    return Err(HandlerError::Failed(failure));
                }
                Err(e) => return Err(e.into_handler()),
            }
            if !fx.is_empty() {
                return Ok(Output {
                    stop_at: Some(event.offset + 1),
                    effects: fx.into_engine(),
                });
            }
        }
        Ok(Output::default())
    }

    fn version(&self) -> String {
        let shared = self.shared.state();
        shared
            .loaded
            .get(&shared.current)
            .map_or_else(|| shared.current.clone(), |p| p.version.to_string())
    }

    fn replicate(&self) -> Option<Result<Box<dyn Handler>, CallFailure>> {
        let replica = SagaHandler::new(
            self.log.clone(),
            self.dispatcher.clone(),
            self.shared.clone(),
            self.options.clone(),
        );
        Some(
            replica
                .map(|h| Box::new(h) as Box<dyn Handler>)
                .map_err(|e| CallFailure::new(FailureKind::Host, e.to_string())),
        )
    }

    fn has_timers(&self) -> bool {
        true
    }

    /// Fires the first due timer of an instance whose trigger partition this lane owns.
    fn timers(
        &mut self,
        ctx: BatchContext<'_>,
        owned: &[(String, u32)],
        now: u64,
    ) -> Result<Timers, HandlerError> {
        self.sync().map_err(SagaError::into_handler)?;
        self.dry_run.store(ctx.sandbox.is_some(), Ordering::Relaxed);
        let mut next: Option<u64> = None;
        let timers = self.log.saga_timers(&self.name)?;
        for (id, due) in timers {
            if due > now {
                // Without loading the instance: a lane may wake for another lane's timer.
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            let Some((rev, inst)) = self.load(&id).map_err(SagaError::into_handler)? else {
                continue;
            };
            let home = (inst.trigger_topic.clone(), inst.trigger_partition);
            if !owned.contains(&home) {
                continue;
            }
            let mut fx = Effects::default();
            self.on_timer(rev, inst, now, &mut fx)
                .map_err(SagaError::into_handler)?;
            return Ok(Timers::Fired(Fired {
                topic: home.0,
                partition: home.1,
                effects: fx.into_engine(),
            }));
        }
        Ok(Timers::Next(next))
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
