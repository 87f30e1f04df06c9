//! Policies (choreography): events in, commands out, no state of their own.
//!
//! A [`PolicyRunner`] consumes its topics like a consumer group named after the policy. For a
//! batch it asks the plugin which commands each event causes and plans them on the target
//! (local) aggregates with correlation id = the event's correlation id and causation id = the
//! event's id; the commands' events and the offset advance commit in ONE transaction. Two
//! commands of a batch on the same stream cannot share a commit (the second was decided without
//! the first's events), so the batch is cut before the event that would do that; the rest goes
//! in the next commit.
//!
//! A failing plugin call is retried with backoff ([`RetryPolicy`]) and then parked in the
//! dead-letter queue (`skip`). A command its aggregate rejects is a business outcome: the event
//! is parked at once with failure kind `rejected` (never retried) and the partition goes on;
//! the event's other commands still commit.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use crate::aggregate::{CommandError, Planned};
use crate::consumer::RetryPolicy;
use crate::dispatch::{DispatchError, Dispatcher, Pass, Runner};
use crate::event::{Event, now_millis};
use crate::log::{CommitError, DeadLetter, EventLog, HandlerCommit, ReadError};
use crate::plugin::{CallFailure, LoadedPlugin, PluginInstance};

/// Why a policy pass failed (storage; plugin failures are retried and parked instead).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("instantiating policy {plugin}: {failure}")]
    Instantiate {
        plugin: String,
        failure: CallFailure,
    },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("sending a command: {0}")]
    Dispatch(DispatchError),
}

/// A failing event's retries.
#[derive(Debug)]
struct Retrying {
    offset: u64,
    attempts: u32,
    first_failed_at: u64,
    not_before: Instant,
}

struct State {
    instance: PluginInstance,
    /// Empty = every type.
    types: HashSet<String>,
    retrying: HashMap<(String, u32), Retrying>,
}

/// A fresh instance of `plugin` and the event types it handles.
fn instantiate(
    plugin: &std::sync::Arc<LoadedPlugin>,
) -> Result<(PluginInstance, HashSet<String>), PolicyError> {
    let failed = |failure| PolicyError::Instantiate {
        plugin: plugin.name.clone(),
        failure,
    };
    let mut instance = plugin.instantiate().map_err(failed)?;
    let types = instance
        .event_types()
        .map_err(failed)?
        .into_iter()
        .collect();
    Ok((instance, types))
}

/// Runs one policy plugin.
pub struct PolicyRunner {
    name: String,
    log: EventLog,
    dispatcher: Dispatcher,
    topics: Vec<String>,
    batch_size: usize,
    retry: RetryPolicy,
    state: Mutex<State>,
}

impl std::fmt::Debug for PolicyRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRunner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What planning a batch produced.
struct BatchPlan {
    /// Events handled (a prefix of the batch).
    handled: usize,
    appends: Vec<(
        String,
        crate::event::ExpectedVersion,
        Vec<crate::event::NewEvent>,
    )>,
    park: Vec<DeadLetter>,
}

impl PolicyRunner {
    pub fn new(
        name: impl Into<String>,
        log: EventLog,
        dispatcher: Dispatcher,
        plugin: &std::sync::Arc<LoadedPlugin>,
        topics: Vec<String>,
        batch_size: usize,
        retry: RetryPolicy,
    ) -> Result<Self, PolicyError> {
        let (instance, types) = instantiate(plugin)?;
        Ok(PolicyRunner {
            name: name.into(),
            log,
            dispatcher,
            topics,
            batch_size: batch_size.max(1),
            retry,
            state: Mutex::new(State {
                instance,
                types,
                retrying: HashMap::new(),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deploys a new plugin version: instantiated first (a failure changes nothing), then
    /// swapped in between two batches (a batch holds the state lock). Pending retries start
    /// over: the new version deserves its own attempts.
    pub fn swap_plugin(&self, plugin: &std::sync::Arc<LoadedPlugin>) -> Result<(), PolicyError> {
        let (instance, types) = instantiate(plugin)?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.instance = instance;
        state.types = types;
        state.retrying.clear();
        Ok(())
    }

    /// One pass over every partition; `progress` when anything committed.
    pub fn run_pass(&self) -> Result<Pass, PolicyError> {
        let mut progress = false;
        for topic in &self.topics {
            let partitions = self.log.topic(topic).map_or(0, |t| t.partitions);
            for p in 0..partitions {
                progress |= self.poll(topic, p)?;
            }
        }
        Ok(Pass {
            progress,
            next_timer: None,
        })
    }

    /// Runs passes until nothing is left.
    pub fn run_until_idle(&self) -> Result<(), PolicyError> {
        while self.run_pass()?.progress {}
        Ok(())
    }

    fn poll(&self, topic: &str, partition: u32) -> Result<bool, PolicyError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let key = (topic.to_owned(), partition);
        let committed = self.log.group_offset(&self.name, topic, partition)?;
        let from = committed.unwrap_or(0);
        // A failing event is retried alone, after its backoff.
        let retrying = state.retrying.get(&key).filter(|r| r.offset == from);
        if retrying.is_some_and(|r| r.not_before > Instant::now()) {
            return Ok(false);
        }
        let mut limit = if retrying.is_some() {
            1
        } else {
            self.batch_size
        };
        let (events, relevant, lists) = loop {
            let events = self.log.read_partition(topic, partition, from, limit)?;
            if events.is_empty() {
                return Ok(false);
            }
            let relevant: Vec<Event> = events
                .iter()
                .filter(|e| state.types.is_empty() || state.types.contains(&e.event_type))
                .cloned()
                .collect();
            match state.instance.react(&relevant) {
                Ok(lists) => break (events, relevant, lists),
                Err(failure) => {
                    let at = failure
                        .event_index
                        .and_then(|i| relevant.get(i as usize))
                        .map_or(from, |e| e.offset);
                    if at > from {
                        // The events before the failing one go as a batch of their own.
                        limit = events.iter().take_while(|e| e.offset < at).count();
                        continue;
                    }
                    return self.failed(&mut state, key, committed, &events[0], failure);
                }
            }
        };
        let version = state.instance.plugin().version.to_string();
        drop(state);
        let plan = self.plan(&relevant, &lists, &events, &version)?;
        let next_offset = match events.get(plan.handled) {
            Some(e) => e.offset,
            None => events.last().map_or(from, |e| e.offset + 1),
        };
        match self.log.commit_handler(HandlerCommit {
            group: self.name.clone(),
            topic: topic.to_owned(),
            partition,
            expected_offset: committed,
            next_offset,
            appends: plan.appends,
            park: plan.park,
            ..Default::default()
        }) {
            Ok(_) => {}
            // Another command moved a target stream (or the batch already committed): redo.
            Err(CommitError::Append { .. } | CommitError::OffsetMismatch { .. }) => {
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.retrying.remove(&key);
        Ok(true)
    }

    /// Plans each relevant event's commands in order; stops before an event whose command
    /// targets a stream an earlier command of the batch already changed.
    fn plan(
        &self,
        relevant: &[Event],
        lists: &[Vec<crate::plugin::OutgoingCommand>],
        events: &[Event],
        version: &str,
    ) -> Result<BatchPlan, PolicyError> {
        let mut touched = BTreeSet::new();
        let mut out = BatchPlan {
            handled: events.len(),
            appends: Vec::new(),
            park: Vec::new(),
        };
        for (event, commands) in relevant.iter().zip(lists) {
            if commands.iter().any(|c| touched.contains(&c.stream)) {
                out.handled = events
                    .iter()
                    .position(|e| e.offset == event.offset)
                    .expect("relevant events come from the batch");
                break;
            }
            let origin = format!("policy\u{0}{}\u{0}{}", self.name, event.event_id);
            let (mut rejections, mut all_rejected) = (Vec::new(), true);
            for c in commands {
                match self.dispatcher.plan(
                    &origin,
                    c,
                    &event.correlation_id,
                    &event.event_id.to_string(),
                ) {
                    Ok(Planned::Append(p)) => {
                        touched.insert(c.stream.clone());
                        out.appends.push((p.stream, p.expected, p.events));
                    }
                    Ok(Planned::Done(_)) => {}
                    Err(e) if e.is_outcome() => {
                        all_rejected &=
                            matches!(e, DispatchError::Command(CommandError::Rejected(_)));
                        rejections.push(format!(
                            "{} {} on {}: {e}",
                            c.aggregate, c.command_type, c.stream
                        ));
                    }
                    Err(e) => return Err(PolicyError::Dispatch(e)),
                }
            }
            if !rejections.is_empty() {
                tracing::warn!(policy = %self.name, event = %event.event_id, rejections = ?rejections, "policy commands refused; event parked");
                let now = now_millis();
                out.park.push(DeadLetter {
                    group: self.name.clone(),
                    topic: event.topic.clone(),
                    partition: event.partition,
                    offset: event.offset,
                    event_id: event.event_id,
                    event_type: event.event_type.clone(),
                    stream: event.stream.clone(),
                    // A rejection is a business outcome, kept apart from failures.
                    failure_kind: if all_rejected {
                        "rejected".into()
                    } else {
                        "host".into()
                    },
                    message: rejections.join("; "),
                    backtrace: None,
                    attempts: 1,
                    plugin_version: version.to_owned(),
                    first_failed_at: now,
                    last_failed_at: now,
                    blocking: false,
                });
            }
        }
        Ok(out)
    }

    /// Counts a failed attempt at `event`; parks it (`skip`) after the last one.
    fn failed(
        &self,
        state: &mut State,
        key: (String, u32),
        committed: Option<u64>,
        event: &Event,
        failure: CallFailure,
    ) -> Result<bool, PolicyError> {
        let now = now_millis();
        let r = state.retrying.entry(key.clone()).or_insert(Retrying {
            offset: event.offset,
            attempts: 0,
            first_failed_at: now,
            not_before: Instant::now(),
        });
        if r.offset != event.offset {
            *r = Retrying {
                offset: event.offset,
                attempts: 0,
                first_failed_at: now,
                not_before: Instant::now(),
            };
        }
        r.attempts += 1;
        if r.attempts < self.retry.max_attempts.max(1) {
            r.not_before = Instant::now() + self.retry.backoff(r.attempts, &mut rand::rng());
            tracing::warn!(policy = %self.name, offset = event.offset, attempts = r.attempts, error = %failure, "policy call failed; retrying");
            return Ok(false);
        }
        let dead = DeadLetter {
            group: self.name.clone(),
            topic: key.0.clone(),
            partition: key.1,
            offset: event.offset,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            stream: event.stream.clone(),
            failure_kind: failure.kind.to_string(),
            message: failure.message.clone(),
            backtrace: failure.backtrace.clone(),
            attempts: r.attempts,
            plugin_version: state.instance.plugin().version.to_string(),
            first_failed_at: r.first_failed_at,
            last_failed_at: now,
            blocking: false,
        };
        tracing::error!(policy = %self.name, offset = event.offset, error = %failure, "policy call kept failing; event parked");
        self.log.commit_handler(HandlerCommit {
            group: self.name.clone(),
            topic: key.0.clone(),
            partition: key.1,
            expected_offset: committed,
            next_offset: event.offset + 1,
            park: vec![dead],
            ..Default::default()
        })?;
        state.retrying.remove(&key);
        Ok(true)
    }
}

impl Runner for PolicyRunner {
    fn name(&self) -> &str {
        &self.name
    }

    fn pass(&self) -> Result<Pass, String> {
        self.run_pass().map_err(|e| e.to_string())
    }
}
