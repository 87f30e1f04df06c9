//! One plugin instance in its own `Store`, and the typed calls of each kind.
//!
//! Every call sets a fresh deadline and clears the limiter's record. Any error from wasmtime
//! (trap, deadline, limit, host function error) poisons the `Store`: the instance is dropped and
//! the next call builds a fresh `Store` and instance (DESIGN §4 invariant 6).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use wasmtime::Store;

use super::bindings::{
    aggregate, policy, projector, read_model_evolution, saga, schema_evolution, types,
};
use super::capabilities::seed_of;
use super::error::{CallFailure, FailureKind};
use super::host::read_model::ReadModelSession;
use super::limits::{Breach, bound_message};
use super::state::HostState;
use super::{KindPre, LoadedPlugin};
use crate::event::Event;
use crate::telemetry::PluginCalls;

/// A command as an aggregate's `decide` sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInput {
    pub command_id: String,
    pub command_type: String,
    pub stream: String,
    pub payload: Vec<u8>,
    pub correlation_id: String,
    pub causation_id: String,
    /// Milliseconds since the epoch, set by the host on receipt.
    pub issued_at: u64,
    pub metadata: Vec<(String, String)>,
}

/// An event a plugin produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedEvent {
    pub event_type: String,
    pub schema_version: u32,
    pub payload: Vec<u8>,
    pub metadata: Vec<(String, String)>,
}

/// The plugin said no: a business outcome, never retried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("rejected ({code}): {message}")]
pub struct Rejection {
    pub code: String,
    pub message: String,
}

/// The outcome of `decide` that is not a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Accepted(Vec<ProducedEvent>),
    Rejected(Rejection),
}

enum Exports {
    Aggregate(aggregate::Aggregate, Option<schema_evolution::Guest>),
    Projector(projector::Projector, Option<read_model_evolution::Guest>),
    Policy(policy::Policy),
    Saga(saga::Saga),
}

struct Live {
    store: Store<HostState>,
    exports: Exports,
}

/// A plugin instance. Not shared: a handler owns one (or a pool) and calls it serially.
pub struct PluginInstance {
    plugin: Arc<LoadedPlugin>,
    live: Option<Live>,
    /// Fresh stores built after a poisoned one, for tests and metrics.
    pub rebuilds: u64,
    /// WIT-shaped copies of the last batch, reused so steady-state batches allocate nothing on
    /// the host side (strings are overwritten in place).
    scratch: Vec<types::Event>,
    /// Call-time histograms and failure counters (`plugin_call_*`).
    calls: PluginCalls,
}

impl std::fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance")
            .field("plugin", &self.plugin.name)
            .field("live", &self.live.is_some())
            .finish()
    }
}

impl PluginInstance {
    pub(crate) fn new(plugin: Arc<LoadedPlugin>) -> Result<Self, CallFailure> {
        let calls = PluginCalls::new(&plugin.name, plugin.version.to_string());
        let mut me = PluginInstance {
            plugin,
            live: None,
            rebuilds: 0,
            scratch: Vec::new(),
            calls,
        };
        me.live()?;
        Ok(me)
    }

    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        &self.plugin
    }

    fn deadline_ticks(&self) -> u64 {
        let tick = self.plugin.epoch_tick.as_millis().max(1);
        (self.plugin.limits.call_timeout.as_millis() / tick).max(1) as u64 + 1
    }

    fn live(&mut self) -> Result<&mut Live, CallFailure> {
        if self.live.is_none() {
            let p = &self.plugin;
            let mut store = Store::new(
                p.pre.engine(),
                HostState::new(
                    p.name.as_str().into(),
                    p.limits.clone(),
                    &p.capabilities,
                    p.log_budget.clone(),
                ),
            );
            store.limiter(|s| &mut s.limiter);
            store.epoch_deadline_trap();
            store.set_epoch_deadline(self.deadline_ticks());
            if p.fuel_enabled {
                // Start functions get the same budget as a call.
                store
                    .set_fuel(p.limits.fuel.unwrap_or(u64::MAX))
                    .expect("fuel is enabled in this engine");
            }
            let exports = match &p.pre {
                KindPre::Aggregate(pre, evolution) => {
                    instantiate_aggregate(&mut store, pre, evolution.as_ref())
                }
                KindPre::Projector(pre, evolution) => {
                    instantiate_projector(&mut store, pre, evolution.as_ref())
                }
                KindPre::Policy(pre) => pre.instantiate(&mut store).map(Exports::Policy),
                KindPre::Saga(pre) => pre.instantiate(&mut store).map(Exports::Saga),
            };
            let exports = exports.map_err(|e| {
                let mut f = classify(e, &store);
                f.message = format!("instantiation failed: {}", f.message);
                f
            })?;
            self.live = Some(Live { store, exports });
        }
        Ok(self.live.as_mut().expect("just built"))
    }

    /// Runs one call with a fresh deadline (and fuel), the guest clock at `now_ms` and its
    /// randomness seeded with `seed`; on any error the store is dropped so a trapped instance
    /// is never reused.
    fn call<R>(
        &mut self,
        function: &'static str,
        now_ms: u64,
        seed: u64,
        f: impl FnOnce(&mut Store<HostState>, &Exports) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let ticks = self.deadline_ticks();
        let fuel = self
            .plugin
            .fuel_enabled
            .then(|| self.plugin.limits.fuel.unwrap_or(u64::MAX));
        let live = self.live()?;
        live.store.set_epoch_deadline(ticks);
        if let Some(fuel) = fuel {
            live.store
                .set_fuel(fuel)
                .expect("fuel is enabled in this engine");
        }
        live.store.data().random.reseed(seed);
        live.store.data_mut().limiter.breach = None;
        live.store.data_mut().output_breach = None;
        live.store.data().stderr_tail.clear();
        live.store.data().clock.store(now_ms, Ordering::Relaxed);
        let Live { store, exports } = live;
        let started = std::time::Instant::now();
        let result = f(store, exports).map_err(|e| classify(e, store));
        self.calls.record(function, started.elapsed());
        match result {
            Ok(r) => Ok(r),
            Err(failure) => {
                self.calls.failed(failure.kind);
                tracing::warn!(plugin = %self.plugin.name, version = %self.plugin.version, kind = %failure.kind, error = %failure.message, "plugin call failed; rebuilding its store");
                self.live = None;
                self.rebuilds += 1;
                Err(failure)
            }
        }
    }

    fn check_output(&self, what: &str, len: usize) -> Result<(), CallFailure> {
        let max = self.plugin.limits.max_output_bytes;
        if len > max {
            return Err(self.bad_output(format!(
                "{what} is {len} bytes, over the limit of {max} (max_output_bytes)"
            )));
        }
        Ok(())
    }

    /// The guest handed back something the host refuses (counted like any failed call).
    fn bad_output(&self, message: String) -> CallFailure {
        self.calls.failed(FailureKind::BadOutput);
        CallFailure::new(FailureKind::BadOutput, message)
    }

    /// A decision's budget (event count; bytes of payloads, metadata and types together) and
    /// that each payload is one MessagePack value with valid UTF-8 strings, before anything is
    /// stored or copied further.
    fn check_decided(&self, events: &[types::NewEvent]) -> Result<(), CallFailure> {
        let limits = &self.plugin.limits;
        if events.len() > limits.max_events_per_decide {
            return Err(self.bad_output(format!(
                "decide returned {} events, over the limit of {} (max_events_per_decide)",
                events.len(),
                limits.max_events_per_decide
            )));
        }
        let total: usize = events
            .iter()
            .map(|e| {
                e.event_type.len()
                    + e.payload.len()
                    + e.metadata
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>()
            })
            .sum();
        self.check_output("decided events (types, payloads and metadata)", total)?;
        for (i, e) in events.iter().enumerate() {
            check_msgpack(&e.payload).map_err(|why| {
                self.bad_output(format!(
                    "decided event {i} ({}) has a payload that is not one MessagePack value: {why}",
                    bound_message(e.event_type.clone(), 200)
                ))
            })?;
        }
        Ok(())
    }

    fn wrong_kind(&self, wanted: &str) -> CallFailure {
        CallFailure::new(
            FailureKind::Host,
            format!(
                "plugin {} is a {}, not a {wanted}",
                self.plugin.name, self.plugin.kind
            ),
        )
    }

    // ---- aggregate -----------------------------------------------------------------------

    /// Event types the plugin handles (aggregates, projectors, policies); empty means all.
    pub fn event_types(&mut self) -> Result<Vec<String>, CallFailure> {
        self.call("event-types", 0, 0, |store, ex| match ex {
            Exports::Aggregate(a, _) => a
                .factline_plugin_aggregate_handler()
                .call_event_types(store),
            Exports::Projector(p, _) => p
                .factline_plugin_projector_handler()
                .call_event_types(store),
            Exports::Policy(p) => p.factline_plugin_policy_handler().call_event_types(store),
            Exports::Saga(s) => s
                .factline_plugin_saga_handler()
                .call_definition(store)
                .map(|d| d.trigger_types.into_iter().chain(d.answer_types).collect()),
        })
    }

    pub fn initial_state(&mut self) -> Result<Vec<u8>, CallFailure> {
        let state = self.call("initial-state", 0, 0, |store, ex| match ex {
            Exports::Aggregate(a, _) => a
                .factline_plugin_aggregate_handler()
                .call_initial_state(store)
                .map(Some),
            _ => Ok(None),
        })?;
        let state = state.ok_or_else(|| self.wrong_kind("aggregate"))?;
        self.check_output("initial state", state.len())?;
        Ok(state)
    }

    /// Folds `events` into `state`.
    pub fn evolve(&mut self, state: &[u8], events: &[Event]) -> Result<Vec<u8>, CallFailure> {
        if events.is_empty() {
            return Ok(state.to_vec());
        }
        let wit = self.wit_events(events);
        let now = events.last().map(|e| e.occurred_at).unwrap_or(0);
        let r = self.call("evolve", now, batch_seed(events), |store, ex| match ex {
            Exports::Aggregate(a, _) => a
                .factline_plugin_aggregate_handler()
                .call_evolve(store, state, &wit)
                .map(Some),
            _ => Ok(None),
        });
        self.scratch = wit;
        let r = r?;
        match r.ok_or_else(|| self.wrong_kind("aggregate"))? {
            Ok(state) => {
                self.check_output("evolved state", state.len())?;
                Ok(state)
            }
            Err(f) => Err(self.guest_failure(f)),
        }
    }

    /// Decides on a command given `state`.
    pub fn decide(
        &mut self,
        state: &[u8],
        command: &CommandInput,
    ) -> Result<Decision, CallFailure> {
        let cmd = types::Command {
            command_id: command.command_id.clone(),
            command_type: command.command_type.clone(),
            stream: command.stream.clone(),
            payload: command.payload.clone(),
            correlation_id: command.correlation_id.clone(),
            causation_id: command.causation_id.clone(),
            issued_at: command.issued_at,
            metadata: command.metadata.clone(),
        };
        let seed = seed_of([command.command_id.as_bytes()]);
        let r = self.call("decide", command.issued_at, seed, |store, ex| match ex {
            Exports::Aggregate(a, _) => a
                .factline_plugin_aggregate_handler()
                .call_decide(store, state, &cmd)
                .map(Some),
            _ => Ok(None),
        })?;
        match r.ok_or_else(|| self.wrong_kind("aggregate"))? {
            Ok(events) => {
                self.check_decided(&events)?;
                Ok(Decision::Accepted(
                    events
                        .into_iter()
                        .map(|e| ProducedEvent {
                            event_type: e.event_type,
                            schema_version: e.schema_version,
                            payload: e.payload,
                            metadata: e.metadata,
                        })
                        .collect(),
                ))
            }
            Err(types::DecideError::Rejected(r)) => {
                let max_code = self.plugin.limits.max_rejection_code_bytes;
                if r.code.len() > max_code {
                    return Err(self.bad_output(format!(
                        "the rejection code is {} bytes, over the limit of {max_code} (max_rejection_code_bytes)",
                        r.code.len()
                    )));
                }
                Ok(Decision::Rejected(Rejection {
                    code: r.code,
                    message: bound_message(r.message, self.plugin.limits.max_message_bytes),
                }))
            }
            Err(types::DecideError::Failed(f)) => Err(self.guest_failure(f)),
        }
    }

    // ---- read-model evolution (optional projector export) ----------------------------------

    /// The declared read-model version; 1 for a component without the `read-model-evolution`
    /// export.
    pub fn read_model_version(&mut self) -> Result<u32, CallFailure> {
        let r = self.call("read-model-version", 0, 0, |store, ex| match ex {
            Exports::Projector(_, Some(e)) => e.call_read_model_version(store).map(Some),
            Exports::Projector(_, None) => Ok(Some(1)),
            _ => Ok(None),
        })?;
        r.ok_or_else(|| self.wrong_kind("projector"))
    }

    // ---- schema evolution (optional aggregate exports) ------------------------------------

    /// The declared state schema; 1 for a component without the `schema-evolution` export.
    pub fn state_schema(&mut self) -> Result<u32, CallFailure> {
        let r = self.call("state-schema", 0, 0, |store, ex| match ex {
            Exports::Aggregate(_, Some(e)) => e.call_state_schema(store).map(Some),
            Exports::Aggregate(_, None) => Ok(Some(1)),
            _ => Ok(None),
        })?;
        r.ok_or_else(|| self.wrong_kind("aggregate"))
    }

    /// The old `(event type, schema version)` pairs the plugin upcasts; none without the export.
    pub fn upcasts(&mut self) -> Result<Vec<(String, u32)>, CallFailure> {
        let r = self.call("upcasts", 0, 0, |store, ex| match ex {
            Exports::Aggregate(_, Some(e)) => e.call_upcasts(store).map(Some),
            Exports::Aggregate(_, None) => Ok(Some(Vec::new())),
            _ => Ok(None),
        })?;
        r.ok_or_else(|| self.wrong_kind("aggregate"))
    }

    /// Rewrites `events` into their current schema, in place. Only type, schema version and
    /// payload may change; an answer of another length is bad output.
    pub fn upcast(&mut self, events: &mut [Event]) -> Result<(), CallFailure> {
        if events.is_empty() {
            return Ok(());
        }
        let wit = self.wit_events(events);
        let now = events.last().map(|e| e.occurred_at).unwrap_or(0);
        let r = self.call("upcast", now, batch_seed(events), |store, ex| match ex {
            Exports::Aggregate(_, Some(e)) => e.call_upcast(store, &wit).map(Some),
            _ => Ok(None),
        });
        self.scratch = wit;
        let upcast = match r?.ok_or_else(|| self.wrong_kind("aggregate with upcasters"))? {
            Ok(upcast) => upcast,
            Err(f) => return Err(self.guest_failure(f)),
        };
        if upcast.len() != events.len() {
            return Err(CallFailure::new(
                FailureKind::BadOutput,
                format!(
                    "upcast returned {} events for {}",
                    upcast.len(),
                    events.len()
                ),
            ));
        }
        let total: usize = upcast.iter().map(|e| e.payload.len()).sum();
        self.check_output("upcast events", total)?;
        for (i, e) in upcast.iter().enumerate() {
            check_msgpack(&e.payload).map_err(|why| {
                self.bad_output(format!(
                    "upcast event {i} has a payload that is not one MessagePack value: {why}"
                ))
            })?;
        }
        for (event, new) in events.iter_mut().zip(upcast) {
            event.event_type = new.event_type;
            event.schema_version = new.schema_version;
            event.payload = new.payload;
        }
        Ok(())
    }

    // ---- projector -----------------------------------------------------------------------

    /// Projects a batch through the read-model `session`; returns the session with the batch's
    /// writes (to commit with the offset) or the failure (the writes are then discarded).
    pub fn project(
        &mut self,
        events: &[Event],
        session: ReadModelSession,
    ) -> (Result<(), CallFailure>, Option<ReadModelSession>) {
        if events.is_empty() {
            return (Ok(()), Some(session));
        }
        let wit = self.wit_events(events);
        let now = events.last().map(|e| e.occurred_at).unwrap_or(0);
        let mut session = session;
        session.apply_limits(&self.plugin.limits);
        let mut session = Some(session);
        let r = self.call("project", now, batch_seed(events), |store, ex| {
            store.data_mut().read_model = session.take();
            let r = match ex {
                Exports::Projector(p, _) => p
                    .factline_plugin_projector_handler()
                    .call_project(&mut *store, &wit)
                    .map(Some),
                _ => Ok(None),
            };
            session = store.data_mut().read_model.take();
            r
        });
        self.scratch = wit;
        let outcome = match r {
            Ok(Some(Ok(()))) => Ok(()),
            Ok(Some(Err(f))) => Err(self.guest_failure(f)),
            Ok(None) => Err(self.wrong_kind("projector")),
            Err(f) => Err(f),
        };
        (outcome, session)
    }
}

/// Most scratch events kept between calls (bounds the memory a huge batch leaves behind).
const MAX_SCRATCH: usize = 4096;

impl PluginInstance {
    /// The batch in WIT form, written over the scratch copies of the previous batch.
    fn wit_events(&mut self, events: &[Event]) -> Vec<types::Event> {
        let mut wit = std::mem::take(&mut self.scratch);
        wit.truncate(events.len().min(MAX_SCRATCH));
        for (i, e) in events.iter().enumerate() {
            match wit.get_mut(i) {
                Some(d) => assign_wit_event(d, e),
                None => wit.push(to_wit_event(e)),
            }
        }
        wit
    }
}

fn instantiate_aggregate(
    store: &mut Store<HostState>,
    pre: &aggregate::AggregatePre<HostState>,
    evolution: Option<&schema_evolution::GuestIndices>,
) -> wasmtime::Result<Exports> {
    let instance = pre.instance_pre().instantiate(&mut *store)?;
    let handler = aggregate::Aggregate::new(&mut *store, &instance)?;
    let evolution = evolution
        .map(|indices| indices.load(&mut *store, &instance))
        .transpose()?;
    Ok(Exports::Aggregate(handler, evolution))
}

fn instantiate_projector(
    store: &mut Store<HostState>,
    pre: &projector::ProjectorPre<HostState>,
    evolution: Option<&read_model_evolution::GuestIndices>,
) -> wasmtime::Result<Exports> {
    let instance = pre.instance_pre().instantiate(&mut *store)?;
    let handler = projector::Projector::new(&mut *store, &instance)?;
    let evolution = evolution
        .map(|indices| indices.load(&mut *store, &instance))
        .transpose()?;
    Ok(Exports::Projector(handler, evolution))
}

fn assign_wit_event(d: &mut types::Event, e: &Event) {
    d.event_id.clear();
    d.event_id.push_str(
        e.event_id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    d.event_type.clone_from(&e.event_type);
    d.stream.clone_from(&e.stream);
    d.stream_version = e.stream_version;
    d.topic.clone_from(&e.topic);
    d.partition = e.partition;
    d.offset = e.offset;
    d.occurred_at = e.occurred_at;
    d.correlation_id.clone_from(&e.correlation_id);
    d.causation_id.clone_from(&e.causation_id);
    d.schema_version = e.schema_version;
    d.payload.clone_from(&e.payload);
    d.metadata.clear();
    d.metadata
        .extend(e.metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
}

fn to_wit_event(e: &Event) -> types::Event {
    types::Event {
        event_id: e
            .event_id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .to_owned(),
        event_type: e.event_type.clone(),
        stream: e.stream.clone(),
        stream_version: e.stream_version,
        topic: e.topic.clone(),
        partition: e.partition,
        offset: e.offset,
        occurred_at: e.occurred_at,
        correlation_id: e.correlation_id.clone(),
        causation_id: e.causation_id.clone(),
        schema_version: e.schema_version,
        payload: e.payload.clone(),
        metadata: e
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Payloads are stored as MessagePack and every consumer decodes them: refuse anything that is
/// not exactly one well-formed value before it reaches the log.
pub(crate) fn check_msgpack(bytes: &[u8]) -> Result<(), String> {
    let mut rest = bytes;
    let value = rmpv::decode::read_value_ref(&mut rest).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the value", rest.len()));
    }
    check_strings(&value)
}

/// Every string (map keys too) is valid UTF-8: a reader decoding the payload as JSON would
/// otherwise fail on it (or show `null`). Depth is bounded by the decoder.
fn check_strings(value: &rmpv::ValueRef<'_>) -> Result<(), String> {
    use rmpv::ValueRef;
    match value {
        ValueRef::String(s) if s.as_str().is_none() => {
            Err("a string is not valid UTF-8".to_owned())
        }
        ValueRef::Array(items) => items.iter().try_for_each(check_strings),
        ValueRef::Map(entries) => entries.iter().try_for_each(|(k, v)| {
            check_strings(k)?;
            check_strings(v)
        }),
        _ => Ok(()),
    }
}

/// A batch's randomness seed: its event ids, so a redelivered batch draws the same numbers.
fn batch_seed(events: &[Event]) -> u64 {
    seed_of(events.iter().map(|e| e.event_id.as_bytes().as_slice()))
}

impl PluginInstance {
    /// The plugin's own failure (counted like a trap: the call did not succeed).
    fn guest_failure(&self, f: types::Failure) -> CallFailure {
        self.calls.failed(FailureKind::Guest);
        CallFailure {
            kind: FailureKind::Guest,
            message: bound_message(f.message, self.plugin.limits.max_message_bytes),
            backtrace: None,
            event_index: f.event_index,
        }
    }
}

/// Turns a wasmtime error into a typed failure, with the guest backtrace when there is one.
fn classify(err: wasmtime::Error, store: &Store<HostState>) -> CallFailure {
    let backtrace = err
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(|bt| bt.to_string())
        .filter(|s| !s.trim().is_empty());
    let trap = err.downcast_ref::<wasmtime::Trap>().copied();
    if let Some(breach) = &store.data().output_breach {
        // The host refused what the guest handed it (a read-model write over its budget): the
        // guest's output, not the host, is at fault.
        return CallFailure {
            kind: FailureKind::BadOutput,
            message: bound_message(
                breach.0.clone(),
                store.data().limiter.limits().max_message_bytes,
            ),
            backtrace,
            event_index: None,
        };
    }
    let (kind, message) = match (store.data().limiter.breach, trap) {
        (Some(Breach::Memory { desired, limit }), _) => (
            FailureKind::MemoryLimit,
            format!(
                "memory limit: the plugin tried to grow a memory to {desired} bytes (limit {limit}); then: {}",
                trap.map(|t| t.to_string())
                    .unwrap_or_else(|| root_message(&err))
            ),
        ),
        (Some(Breach::Table { desired, limit }), _) => (
            FailureKind::MemoryLimit,
            format!(
                "table limit: the plugin tried to grow a table to {desired} elements (limit {limit})"
            ),
        ),
        (None, Some(wasmtime::Trap::Interrupt)) => (
            FailureKind::Deadline,
            "deadline: the call ran past its time limit and was interrupted".to_owned(),
        ),
        (None, Some(wasmtime::Trap::OutOfFuel)) => (
            FailureKind::Fuel,
            "fuel limit: the call used up its fuel (instructions budget) and was stopped"
                .to_owned(),
        ),
        (None, Some(t)) => (FailureKind::Trap, t.to_string()),
        (None, None) => (FailureKind::Host, root_message(&err)),
    };
    // A Rust guest's panic message goes to stderr just before the trap: keep it with the failure.
    let message = match store.data().stderr_tail.text() {
        Some(stderr) => format!("{message}; guest stderr: {stderr}"),
        None => message,
    };
    // Bounded where it is built from guest output, so every dead letter, log line and answer
    // made from it is bounded.
    let message = bound_message(message, store.data().limiter.limits().max_message_bytes);
    CallFailure {
        kind,
        message,
        backtrace,
        event_index: None,
    }
}

fn root_message(err: &wasmtime::Error) -> String {
    err.chain()
        .map(|c| c.to_string())
        .filter(|s| !s.contains("wasm backtrace"))
        .collect::<Vec<_>>()
        .join(": ")
}

// ---- policy and saga ----------------------------------------------------------------------

/// A command a policy or saga wants sent to an aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingCommand {
    /// The target aggregate plugin's name.
    pub aggregate: String,
    pub stream: String,
    pub command_type: String,
    /// The plugin's deterministic id for it (the host derives the command's UUID from it).
    pub command_id: String,
    pub payload: Vec<u8>,
}

impl From<OutgoingCommand> for factline_guest::OutgoingCommand {
    fn from(c: OutgoingCommand) -> Self {
        factline_guest::OutgoingCommand {
            aggregate: c.aggregate,
            stream: c.stream,
            command_type: c.command_type,
            command_id: c.command_id,
            payload: c.payload,
        }
    }
}

impl From<types::OutgoingCommand> for OutgoingCommand {
    fn from(c: types::OutgoingCommand) -> Self {
        OutgoingCommand {
            aggregate: c.aggregate,
            stream: c.stream,
            command_type: c.command_type,
            command_id: c.command_id,
            payload: c.payload,
        }
    }
}

/// One step as a saga plugin defines it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaStep {
    pub name: String,
    pub timeout_ms: u64,
    pub compensable: bool,
}

/// A saga plugin's definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaDefinition {
    pub name: String,
    pub trigger_types: Vec<String>,
    pub answer_types: Vec<String>,
    pub steps: Vec<SagaStep>,
}

/// A saga plugin's judgement of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The step completed; the instance's new data.
    Succeeded(Vec<u8>),
    /// The step failed, with the reason.
    Failed(String),
    NotMine,
}

impl PluginInstance {
    /// For each event of the batch, in order, the commands the policy sends.
    pub fn react(&mut self, events: &[Event]) -> Result<Vec<Vec<OutgoingCommand>>, CallFailure> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let wit = self.wit_events(events);
        let now = events.last().map(|e| e.occurred_at).unwrap_or(0);
        let r = self.call("react", now, batch_seed(events), |store, ex| match ex {
            Exports::Policy(p) => p
                .factline_plugin_policy_handler()
                .call_react(store, &wit)
                .map(Some),
            _ => Ok(None),
        });
        self.scratch = wit;
        match r?.ok_or_else(|| self.wrong_kind("policy"))? {
            Ok(lists) if lists.len() == events.len() => {
                let total: usize = lists
                    .iter()
                    .flatten()
                    .map(|c| {
                        c.aggregate.len()
                            + c.stream.len()
                            + c.command_type.len()
                            + c.command_id.len()
                            + c.payload.len()
                    })
                    .sum();
                self.check_output("the commands of one react call", total)?;
                Ok(lists
                    .into_iter()
                    .map(|l| l.into_iter().map(OutgoingCommand::from).collect())
                    .collect())
            }
            Ok(lists) => Err(CallFailure::new(
                FailureKind::BadOutput,
                format!(
                    "react returned {} command lists for {} events",
                    lists.len(),
                    events.len()
                ),
            )),
            Err(f) => Err(self.guest_failure(f)),
        }
    }

    /// The saga's name, trigger and answer types and steps.
    pub fn saga_definition(&mut self) -> Result<SagaDefinition, CallFailure> {
        let d = self.saga_call("definition", 0, |s, store| s.call_definition(store).map(Ok))?;
        Ok(SagaDefinition {
            name: d.name,
            trigger_types: d.trigger_types,
            answer_types: d.answer_types,
            steps: d
                .steps
                .into_iter()
                .map(|s| SagaStep {
                    name: s.name,
                    timeout_ms: s.timeout_ms,
                    compensable: s.compensable,
                })
                .collect(),
        })
    }

    /// Starts an instance for `trigger`: `(instance id, data)`, or `None` to ignore it.
    pub fn saga_start(
        &mut self,
        trigger: &Event,
    ) -> Result<Option<(String, Vec<u8>)>, CallFailure> {
        let wit = to_wit_event(trigger);
        let started = self.saga_call("start", trigger.occurred_at, |s, store| {
            s.call_start(store, &wit)
        })?;
        Ok(started.map(|s| (s.instance_id, s.data)))
    }

    /// The command that performs `step`.
    pub fn saga_execute(
        &mut self,
        step: &str,
        data: &[u8],
        now_ms: u64,
    ) -> Result<OutgoingCommand, CallFailure> {
        let c = self.saga_call("execute", now_ms, |s, store| {
            s.call_execute(store, step, data)
        })?;
        Ok(c.into())
    }

    /// The command that undoes `step`, if any.
    pub fn saga_compensate(
        &mut self,
        step: &str,
        data: &[u8],
        now_ms: u64,
    ) -> Result<Option<OutgoingCommand>, CallFailure> {
        let c = self.saga_call("compensate", now_ms, |s, store| {
            s.call_compensate(store, step, data)
        })?;
        Ok(c.map(Into::into))
    }

    /// Judges an event that may answer `step`.
    pub fn saga_judge(
        &mut self,
        step: &str,
        data: &[u8],
        answer: &Event,
    ) -> Result<Verdict, CallFailure> {
        let wit = to_wit_event(answer);
        let v = self.saga_call("judge", answer.occurred_at, |s, store| {
            s.call_judge(store, step, data, &wit)
        })?;
        Ok(match v {
            saga::exports::factline::plugin::saga_handler::Verdict::Succeeded(data) => {
                self.check_output("saga data", data.len())?;
                Verdict::Succeeded(data)
            }
            saga::exports::factline::plugin::saga_handler::Verdict::Failed(reason) => {
                Verdict::Failed(bound_message(reason, self.plugin.limits.max_message_bytes))
            }
            saga::exports::factline::plugin::saga_handler::Verdict::NotMine => Verdict::NotMine,
        })
    }

    fn saga_call<R>(
        &mut self,
        function: &'static str,
        now_ms: u64,
        f: impl FnOnce(
            &saga::exports::factline::plugin::saga_handler::Guest,
            &mut Store<HostState>,
        ) -> wasmtime::Result<Result<R, types::Failure>>,
    ) -> Result<R, CallFailure> {
        // Saga calls are keyed by the event time they run at: replays of one instance see
        // the same numbers.
        let r = self.call(function, now_ms, now_ms, |store, ex| match ex {
            Exports::Saga(s) => f(s.factline_plugin_saga_handler(), store).map(Some),
            _ => Ok(None),
        })?;
        r.ok_or_else(|| self.wrong_kind("saga"))?
            .map_err(|f| self.guest_failure(f))
    }
}
