//! One instance type per world, each with only its world's calls, over the shared store
//! machinery (`instance::Core`). A loaded plugin becomes one of them through
//! [`LoadedPlugin::instantiate`], which refuses a plugin of another kind with a typed error.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmtime::{Engine, Store};

use super::bindings::{
    aggregate, json_projector, policy, projector, read_model_evolution, saga, schema_evolution,
    types,
};
use super::boundary::{Boundary, events_json, to_json};
use super::capabilities::seed_of;
use super::error::{CallFailure, FailureKind, InstantiateError};
use super::host::read_model::ReadModelSession;
use super::instance::{
    Core, Instantiate, Sealed, WorldPre, batch_seed, check_msgpack, instantiate_as, to_wit_event,
};
use super::limits::bound_message;
use super::state::HostState;
use super::{KindPre, LoadedPlugin, PluginKind};
use crate::event::Event;
use saga::exports::factline::plugin::saga_handler;

/// The shared accessors and the kind-checked constructor of one world's instance type.
macro_rules! world_instance {
    ($name:ident, $pre:ty, $kind:ident) => {
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt_debug(stringify!($name), f)
            }
        }

        impl Sealed for $name {}

        impl Instantiate for $name {
            const KIND: PluginKind = PluginKind::$kind;

            fn from_loaded(plugin: &Arc<LoadedPlugin>) -> Result<Self, InstantiateError> {
                let pre = match &plugin.pre {
                    KindPre::$kind(pre) => Some(pre),
                    _ => None,
                };
                instantiate_as::<$pre>(plugin, Self::KIND, pre).map($name)
            }
        }

        impl $name {
            pub fn plugin(&self) -> &Arc<LoadedPlugin> {
                &self.0.plugin
            }

            /// Fresh stores built after a poisoned one, for tests and metrics.
            pub fn rebuilds(&self) -> u64 {
                self.0.rebuilds
            }
        }
    };
}

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
// ---- commands and saga definitions ------------------------------------------------------

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

// ---- aggregate ----------------------------------------------------------------------------

/// An aggregate's pre-instance, with the optional `schema-evolution` export's indices.
pub(crate) struct AggregatePre {
    pub(crate) handler: aggregate::AggregatePre<HostState>,
    pub(crate) evolution: Option<schema_evolution::GuestIndices>,
}

pub(crate) struct AggregateExports {
    handler: aggregate::Aggregate,
    evolution: Option<schema_evolution::Guest>,
}

impl WorldPre for AggregatePre {
    type Exports = AggregateExports;

    fn engine(&self) -> &Engine {
        self.handler.engine()
    }

    fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<AggregateExports> {
        let instance = self.handler.instance_pre().instantiate(&mut *store)?;
        let handler = aggregate::Aggregate::new(&mut *store, &instance)?;
        let evolution = self
            .evolution
            .as_ref()
            .map(|indices| indices.load(&mut *store, &instance))
            .transpose()?;
        Ok(AggregateExports { handler, evolution })
    }
}

/// An instance of an aggregate plugin: `decide`, `evolve` and its optional schema evolution.
pub struct AggregateInstance(Core<AggregatePre>);

world_instance!(AggregateInstance, AggregatePre, Aggregate);

impl AggregateInstance {
    /// Event types the aggregate handles; empty means all.
    pub fn event_types(&mut self) -> Result<Vec<String>, CallFailure> {
        self.0.call("event-types", 0, 0, |store, ex| {
            ex.handler
                .factline_plugin_aggregate_handler()
                .call_event_types(store)
        })
    }

    pub fn initial_state(&mut self) -> Result<Vec<u8>, CallFailure> {
        let state = self.0.call("initial-state", 0, 0, |store, ex| {
            ex.handler
                .factline_plugin_aggregate_handler()
                .call_initial_state(store)
        })?;
        self.0.check_output("initial state", state.len())?;
        Ok(state)
    }

    /// Folds `events` into `state`.
    pub fn evolve(&mut self, state: &[u8], events: &[Event]) -> Result<Vec<u8>, CallFailure> {
        if events.is_empty() {
            return Ok(state.to_vec());
        }
        let wit = self.0.wit_events(events);
        let now = events.last().map(|e| e.occurred_at).unwrap_or(0);
        let r = self.0.call("evolve", now, batch_seed(events), |store, ex| {
            ex.handler
                .factline_plugin_aggregate_handler()
                .call_evolve(store, state, &wit)
        });
        self.0.keep_scratch(wit);
        match r? {
            Ok(state) => {
                self.0.check_output("evolved state", state.len())?;
                Ok(state)
            }
            Err(f) => Err(self.0.guest_failure(f)),
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
        let r = self
            .0
            .call("decide", command.issued_at, seed, |store, ex| {
                ex.handler
                    .factline_plugin_aggregate_handler()
                    .call_decide(store, state, &cmd)
            })?;
        match r {
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
                let max_code = self.0.limits().max_rejection_code_bytes;
                if r.code.len() > max_code {
                    return Err(self.0.bad_output(format!(
                        "the rejection code is {} bytes, over the limit of {max_code} (max_rejection_code_bytes)",
                        r.code.len()
                    )));
                }
                Ok(Decision::Rejected(Rejection {
                    code: r.code,
                    message: bound_message(r.message, self.0.limits().max_message_bytes),
                }))
            }
            Err(types::DecideError::Failed(f)) => Err(self.0.guest_failure(f)),
        }
    }

    /// A decision's budget (event count; bytes of payloads, metadata and types together) and
    /// that each payload is one MessagePack value with valid UTF-8 strings, before anything is
    /// stored or copied further.
    fn check_decided(&self, events: &[types::NewEvent]) -> Result<(), CallFailure> {
        let limits = self.0.limits();
        if events.len() > limits.max_events_per_decide {
            return Err(self.0.bad_output(format!(
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
        self.0
            .check_output("decided events (types, payloads and metadata)", total)?;
        for (i, e) in events.iter().enumerate() {
            check_msgpack(&e.payload).map_err(|why| {
                self.0.bad_output(format!(
                    "decided event {i} ({}) has a payload that is not one MessagePack value: {why}",
                    bound_message(e.event_type.clone(), 200)
                ))
            })?;
        }
        Ok(())
    }

    // ---- schema evolution (optional exports) ----

    /// The declared state schema; 1 for a component without the `schema-evolution` export.
    pub fn state_schema(&mut self) -> Result<u32, CallFailure> {
        self.0
            .call("state-schema", 0, 0, |store, ex| match &ex.evolution {
                Some(e) => e.call_state_schema(store),
                None => Ok(1),
            })
    }

    /// The old `(event type, schema version)` pairs the plugin upcasts; none without the export.
    pub fn upcasts(&mut self) -> Result<Vec<(String, u32)>, CallFailure> {
        self.0
            .call("upcasts", 0, 0, |store, ex| match &ex.evolution {
                Some(e) => e.call_upcasts(store),
                None => Ok(Vec::new()),
            })
    }

    /// Rewrites `events` into their current schema, in place. Only type, schema version and
    /// payload may change; an answer of another length is bad output.
    pub fn upcast(&mut self, events: &mut [Event]) -> Result<(), CallFailure> {
        if events.is_empty() {
            return Ok(());
        }
        let wit = self.0.wit_events(events);
        let now = events.last().map(|e| e.occurred_at).unwrap_or(0);
        let r = self.0.call("upcast", now, batch_seed(events), |store, ex| {
            ex.evolution
                .as_ref()
                .map(|e| e.call_upcast(store, &wit))
                .transpose()
        });
        self.0.keep_scratch(wit);
        // Without the export the plugin declares no upcasts (`upcasts`), so it is never
        // registered as an upcaster; asked anyway, it refuses rather than pass events through.
        let upcast = match r? {
            Some(Ok(upcast)) => upcast,
            Some(Err(f)) => return Err(self.0.guest_failure(f)),
            None => {
                return Err(CallFailure::new(
                    FailureKind::Host,
                    format!(
                        "plugin {} does not export schema-evolution, so it upcasts nothing",
                        self.0.plugin.name
                    ),
                ));
            }
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
        self.0.check_output("upcast events", total)?;
        for (i, e) in upcast.iter().enumerate() {
            check_msgpack(&e.payload).map_err(|why| {
                self.0.bad_output(format!(
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
}

// ---- projector ----------------------------------------------------------------------------

/// A projector's pre-instance: its world's (bytes or JSON text at the boundary), with the
/// optional `read-model-evolution` export's indices.
pub(crate) struct ProjectorPre {
    pub(crate) handler: ProjectorWorldPre,
    pub(crate) evolution: Option<read_model_evolution::GuestIndices>,
}

/// The two projector worlds: `projector` (values as bytes) and `json-projector` (JSON text).
pub(crate) enum ProjectorWorldPre {
    Bytes(projector::ProjectorPre<HostState>),
    Json(json_projector::JsonProjectorPre<HostState>),
}

enum ProjectorHandler {
    Bytes(projector::Projector),
    Json(json_projector::JsonProjector),
}

pub(crate) struct ProjectorExports {
    handler: ProjectorHandler,
    evolution: Option<read_model_evolution::Guest>,
}

impl WorldPre for ProjectorPre {
    type Exports = ProjectorExports;

    fn engine(&self) -> &Engine {
        match &self.handler {
            ProjectorWorldPre::Bytes(pre) => pre.engine(),
            ProjectorWorldPre::Json(pre) => pre.engine(),
        }
    }

    fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<ProjectorExports> {
        let (instance, handler) = match &self.handler {
            ProjectorWorldPre::Bytes(pre) => {
                let instance = pre.instance_pre().instantiate(&mut *store)?;
                let handler = projector::Projector::new(&mut *store, &instance)?;
                (instance, ProjectorHandler::Bytes(handler))
            }
            ProjectorWorldPre::Json(pre) => {
                let instance = pre.instance_pre().instantiate(&mut *store)?;
                let handler = json_projector::JsonProjector::new(&mut *store, &instance)?;
                (instance, ProjectorHandler::Json(handler))
            }
        };
        let evolution = self
            .evolution
            .as_ref()
            .map(|indices| indices.load(&mut *store, &instance))
            .transpose()?;
        Ok(ProjectorExports { handler, evolution })
    }
}

/// An instance of a projector plugin: `project` through a read-model session.
pub struct ProjectorInstance(Core<ProjectorPre>);

world_instance!(ProjectorInstance, ProjectorPre, Projector);

impl ProjectorInstance {
    /// Event types the projector handles; empty means all.
    pub fn event_types(&mut self) -> Result<Vec<String>, CallFailure> {
        self.0
            .call("event-types", 0, 0, |store, ex| match &ex.handler {
                ProjectorHandler::Bytes(h) => h
                    .factline_plugin_projector_handler()
                    .call_event_types(store),
                ProjectorHandler::Json(h) => h
                    .factline_plugin_json_projector_handler()
                    .call_event_types(store),
            })
    }

    /// The declared read-model version; 1 for a component without the `read-model-evolution`
    /// export.
    pub fn read_model_version(&mut self) -> Result<u32, CallFailure> {
        self.0.call("read-model-version", 0, 0, |store, ex| {
            match &ex.evolution {
                Some(e) => e.call_read_model_version(store),
                None => Ok(1),
            }
        })
    }

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
        let json_world = matches!(self.0.pre().handler, ProjectorWorldPre::Json(_));
        let input = if json_world {
            match events_json(events) {
                Ok(text) => ProjectInput::Text(text),
                Err((i, e)) => return (Err(untranscodable(i, e)), Some(session)),
            }
        } else {
            let mut wit = self.0.wit_events(events);
            if self.0.plugin.boundary == Boundary::Json {
                for (i, event) in wit.iter_mut().enumerate() {
                    match to_json(&event.payload) {
                        Ok(json) => event.payload = json,
                        Err(e) => {
                            self.0.keep_scratch(wit);
                            return (Err(untranscodable(i, e)), Some(session));
                        }
                    }
                }
            }
            ProjectInput::Records(wit)
        };
        let now = events.last().map(|e| e.occurred_at).unwrap_or(0);
        let mut session = session;
        session.apply_limits(self.0.limits());
        let mut session = Some(session);
        let r = self
            .0
            .call("project", now, batch_seed(events), |store, ex| {
                store.data_mut().read_model = session.take();
                let r = match (&ex.handler, &input) {
                    (ProjectorHandler::Bytes(h), ProjectInput::Records(wit)) => h
                        .factline_plugin_projector_handler()
                        .call_project(&mut *store, wit),
                    (ProjectorHandler::Json(h), ProjectInput::Text(text)) => h
                        .factline_plugin_json_projector_handler()
                        .call_project(&mut *store, text),
                    _ => unreachable!("the input is built for the instance's world"),
                };
                session = store.data_mut().read_model.take();
                r
            });
        if let ProjectInput::Records(wit) = input {
            self.0.keep_scratch(wit);
        }
        let outcome = match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(f)) => Err(self.0.guest_failure(f)),
            Err(f) => Err(f),
        };
        (outcome, session)
    }
}

/// A batch as the projector's world takes it.
enum ProjectInput {
    Records(Vec<types::Event>),
    Text(String),
}

/// Event `i`'s stored payload has no JSON form (a NaN, say): the host cannot hand it over.
fn untranscodable(i: usize, e: super::boundary::TranscodeError) -> CallFailure {
    let message = format!("the payload cannot be handed over as JSON: {e}");
    let mut failure = CallFailure::new(FailureKind::Host, message);
    failure.event_index = u32::try_from(i).ok();
    failure
}

// ---- policy -------------------------------------------------------------------------------

impl WorldPre for policy::PolicyPre<HostState> {
    type Exports = policy::Policy;

    fn engine(&self) -> &Engine {
        policy::PolicyPre::engine(self)
    }

    fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<policy::Policy> {
        policy::PolicyPre::instantiate(self, store)
    }
}

/// An instance of a policy plugin: `react` to events with commands.
pub struct PolicyInstance(Core<policy::PolicyPre<HostState>>);

world_instance!(PolicyInstance, policy::PolicyPre<HostState>, Policy);

impl PolicyInstance {
    /// Event types the policy handles; empty means all.
    pub fn event_types(&mut self) -> Result<Vec<String>, CallFailure> {
        self.0.call("event-types", 0, 0, |store, p| {
            p.factline_plugin_policy_handler().call_event_types(store)
        })
    }

    /// For each event of the batch, in order, the commands the policy sends.
    pub fn react(&mut self, events: &[Event]) -> Result<Vec<Vec<OutgoingCommand>>, CallFailure> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let wit = self.0.wit_events(events);
        let now = events.last().map(|e| e.occurred_at).unwrap_or(0);
        let r = self.0.call("react", now, batch_seed(events), |store, p| {
            p.factline_plugin_policy_handler().call_react(store, &wit)
        });
        self.0.keep_scratch(wit);
        match r? {
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
                self.0
                    .check_output("the commands of one react call", total)?;
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
            Err(f) => Err(self.0.guest_failure(f)),
        }
    }
}

// ---- saga ---------------------------------------------------------------------------------

impl WorldPre for saga::SagaPre<HostState> {
    type Exports = saga::Saga;

    fn engine(&self) -> &Engine {
        saga::SagaPre::engine(self)
    }

    fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<saga::Saga> {
        saga::SagaPre::instantiate(self, store)
    }
}

/// An instance of a saga plugin: its definition, and starting, executing, compensating and
/// judging steps.
pub struct SagaInstance(Core<saga::SagaPre<HostState>>);

world_instance!(SagaInstance, saga::SagaPre<HostState>, Saga);

impl SagaInstance {
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
            saga_handler::Verdict::Succeeded(data) => {
                self.0.check_output("saga data", data.len())?;
                Verdict::Succeeded(data)
            }
            saga_handler::Verdict::Failed(reason) => {
                Verdict::Failed(bound_message(reason, self.0.limits().max_message_bytes))
            }
            saga_handler::Verdict::NotMine => Verdict::NotMine,
        })
    }

    fn saga_call<R>(
        &mut self,
        function: &'static str,
        now_ms: u64,
        f: impl FnOnce(
            &saga_handler::Guest,
            &mut Store<HostState>,
        ) -> wasmtime::Result<Result<R, types::Failure>>,
    ) -> Result<R, CallFailure> {
        // Saga calls are keyed by the event time they run at: replays of one instance see
        // the same numbers.
        self.0
            .call(function, now_ms, now_ms, |store, s| {
                f(s.factline_plugin_saga_handler(), store)
            })?
            .map_err(|f| self.0.guest_failure(f))
    }
}
