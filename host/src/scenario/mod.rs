//! Runs the guest SDK's language-neutral scenarios (`factline_guest::scenario`) against a built
//! component inside the real engine, so the same given/when/then runs natively (in the SDK's
//! harness) and as `.wasm` (here), for a plugin written in any language.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use factline_host::ScenarioRunner;
//! let runner = ScenarioRunner::new()?;
//! let scenarios: Vec<factline_guest::scenario::Scenario> = vec![/* e.g. order::scenarios::all() */];
//! for s in &scenarios {
//!     runner.run("target/wasm32-wasip2/release/order.wasm".as_ref(), s)?;
//! }
//! # Ok(()) }
//! ```

mod file;

pub use file::{ScenarioFileError, load as load_file};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use factline_guest::scenario::{
    AggregateOutcome, AggregateScenario, BASE_TIME_MS, CallFailed, Judgement, Mismatch, Outcome,
    PolicyOutcome, PolicyScenario, ProjectorOutcome, ProjectorScenario, SagaCalls, SagaOutcome,
    SagaScenario, Scenario, run_consumer,
};
use factline_guest::{RawEvent, RawNewEvent};
use uuid::Uuid;

use crate::event::Event;
use crate::log::{Durability, EventLog, LogOptions};
use crate::plugin::{
    AggregateInstance, CallFailure, CommandInput, Decision, Limits, LoadError, LoadedPlugin,
    PluginKind, PluginRuntime, PolicyInstance, ProjectorInstance, ReadModelSession, RuntimeConfig,
    SagaInstance, Verdict,
};

/// Why a scenario did not pass.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot load {path}: {source}")]
    Load { path: String, source: LoadError },
    #[error("invalid scenario: {0}")]
    Invalid(String),
    #[error("{0}")]
    Mismatch(#[from] Mismatch),
    #[error("scenario setup failed: {0}")]
    Setup(String),
}

/// Loads each component once and runs scenarios against fresh instances of it.
pub struct ScenarioRunner {
    runtime: PluginRuntime,
    loaded: Mutex<HashMap<(PathBuf, PluginKind), Arc<LoadedPlugin>>>,
}

impl std::fmt::Debug for ScenarioRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScenarioRunner").finish_non_exhaustive()
    }
}

impl ScenarioRunner {
    /// A runner that compiles every component it loads (no artifact cache).
    pub fn new() -> Result<Self, LoadError> {
        Self::with_cache(None)
    }

    /// A runner whose compiled components are cached in `cache_dir`: a Python or JavaScript
    /// component takes seconds to compile and milliseconds to load from the cache.
    pub fn with_cache(cache_dir: Option<PathBuf>) -> Result<Self, LoadError> {
        Ok(ScenarioRunner {
            runtime: PluginRuntime::new(RuntimeConfig {
                cache_dir,
                ..RuntimeConfig::default()
            })?,
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// Loads (once) the component at `path` as `kind`, with the default limits, as the host
    /// would; the scenarios then run against fresh instances of it.
    pub fn plugin(
        &self,
        path: &Path,
        kind: PluginKind,
    ) -> Result<Arc<LoadedPlugin>, ScenarioError> {
        let key = (path.to_path_buf(), kind);
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = loaded.get(&key) {
            return Ok(p.clone());
        }
        let name = path
            .file_stem()
            .map_or("plugin".into(), |s| s.to_string_lossy().into_owned());
        let p = self
            .runtime
            .load_file(&name, kind, path, Limits::default(), None)
            .map_err(|source| ScenarioError::Load {
                path: path.display().to_string(),
                source,
            })?;
        loaded.insert(key, p.clone());
        Ok(p)
    }

    /// Runs `scenario` against the component at `wasm` and checks its expectation.
    pub fn run(&self, wasm: &Path, scenario: &Scenario) -> Result<(), ScenarioError> {
        let outcome = self.outcome(wasm, scenario)?;
        factline_guest::scenario::verify(scenario, &outcome)?;
        Ok(())
    }

    /// What the component did for `scenario`, without judging it.
    pub fn outcome(&self, wasm: &Path, scenario: &Scenario) -> Result<Outcome, ScenarioError> {
        Ok(match scenario {
            Scenario::Aggregate(s) => self.aggregate(wasm, s)?.into(),
            Scenario::Projector(s) => self.projector(wasm, s)?.into(),
            Scenario::Policy(s) => self.policy(wasm, s)?.into(),
            Scenario::Saga(s) => self.saga(wasm, s)?.into(),
        })
    }

    fn aggregate(
        &self,
        wasm: &Path,
        s: &AggregateScenario,
    ) -> Result<AggregateOutcome, ScenarioError> {
        let plugin = self.plugin(wasm, PluginKind::Aggregate)?;
        let given = s.given_events().map_err(ScenarioError::Invalid)?;
        let failed = |f: CallFailure| AggregateOutcome::Failed {
            kind: f.kind.to_string(),
            message: f.message,
        };
        let mut instance: AggregateInstance = match plugin.instantiate() {
            Ok(i) => i,
            Err(e) => return Ok(failed(e.into())),
        };
        let state = match instance.initial_state() {
            Ok(s) => s,
            Err(f) => return Ok(failed(f)),
        };
        // As every reader in the host: stored events reach `evolve` in their current schema.
        let mut given_events = envelopes(&given);
        let upcast = instance.upcasts().and_then(|old| {
            crate::evolution::upcast_in_place(&mut instance, &old, &mut given_events)
        });
        if let Err(f) = upcast {
            return Ok(failed(f));
        }
        let state = match instance.evolve(&state, &given_events) {
            Ok(s) => s,
            Err(f) => return Ok(failed(f)),
        };
        let raw = s.command();
        let input = CommandInput {
            command_id: raw.ctx.command_id.clone(),
            command_type: raw.command_type.clone(),
            stream: raw.ctx.stream.clone(),
            payload: raw.payload.clone(),
            correlation_id: raw.ctx.correlation_id.clone(),
            causation_id: raw.ctx.causation_id.clone(),
            issued_at: raw.ctx.issued_at,
            metadata: raw.ctx.metadata.clone(),
        };
        let produced = match instance.decide(&state, &input) {
            Ok(Decision::Accepted(events)) => events,
            Ok(Decision::Rejected(r)) => {
                return Ok(AggregateOutcome::Rejected {
                    code: r.code,
                    message: r.message,
                });
            }
            Err(f) => return Ok(failed(f)),
        };
        let new_events: Vec<RawNewEvent> = produced
            .into_iter()
            .map(|e| RawNewEvent {
                event_type: e.event_type,
                schema_version: e.schema_version,
                payload: e.payload,
                metadata: e.metadata,
            })
            .collect();
        let emitted = s.emitted_events(&new_events);
        let state = match instance.evolve(&state, &envelopes(&emitted)) {
            Ok(s) => s,
            Err(f) => return Ok(failed(f)),
        };
        let version = (given.len() + new_events.len()) as u64;
        Ok(AggregateOutcome::from_msgpack(&new_events, version, &state))
    }

    fn projector(
        &self,
        wasm: &Path,
        s: &ProjectorScenario,
    ) -> Result<ProjectorOutcome, ScenarioError> {
        let plugin = self.plugin(wasm, PluginKind::Projector)?;
        let given = s.given_events().map_err(ScenarioError::Invalid)?;
        // The read model lives in a real (scratch) log, as in the host.
        let dir = tempfile::tempdir().map_err(|e| ScenarioError::Setup(e.to_string()))?;
        let options = LogOptions {
            durability: Durability::NoSyncForTests,
            ..LogOptions::default()
        };
        let log =
            EventLog::open(dir.path(), options).map_err(|e| ScenarioError::Setup(e.to_string()))?;
        let mut setup = None;
        let ran = run_consumer(&given, |events| {
            // Every attempt starts from the empty read model: an attempt's writes are never
            // committed, as a failed batch's are not.
            let view = log.read_models().map_err(|e| {
                setup = Some(e.to_string());
                CallFailed::new("host", e.to_string())
            })?;
            let mut instance: ProjectorInstance = plugin.instantiate().map_err(call_failed)?;
            let session =
                ReadModelSession::new(&plugin.name, view, crate::projector::MAX_VALUE_BYTES);
            let (result, session) = instance.project(&envelopes(events), session);
            result.map_err(call_failed)?;
            Ok(session
                .map(ReadModelSession::into_writes)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|w| w.value.map(|v| (w.key, v)))
                .collect::<Vec<_>>())
        });
        if let Some(e) = setup {
            return Err(ScenarioError::Setup(e));
        }
        Ok(match ran {
            Ok((rows, dead_letters)) => ProjectorOutcome::from_msgpack(rows, dead_letters),
            Err(message) => ProjectorOutcome::Failed { message },
        })
    }
}

/// A host call failure as the scenario format reports it.
fn call_failed(f: impl Into<CallFailure>) -> CallFailed {
    let f = f.into();
    CallFailed {
        kind: f.kind.to_string(),
        message: f.message,
        event_index: f.event_index.map(|i| i as usize),
    }
}

/// The plugin kind a scenario tests.
pub fn kind_of(scenario: &Scenario) -> PluginKind {
    match scenario {
        Scenario::Aggregate(_) => PluginKind::Aggregate,
        Scenario::Projector(_) => PluginKind::Projector,
        Scenario::Policy(_) => PluginKind::Policy,
        Scenario::Saga(_) => PluginKind::Saga,
    }
}

impl ScenarioRunner {
    fn policy(&self, wasm: &Path, s: &PolicyScenario) -> Result<PolicyOutcome, ScenarioError> {
        let plugin = self.plugin(wasm, PluginKind::Policy)?;
        let given = s.given_events().map_err(ScenarioError::Invalid)?;
        let ran = run_consumer(&given, |events| {
            let mut instance: PolicyInstance = plugin.instantiate().map_err(call_failed)?;
            let lists = instance.react(&envelopes(events)).map_err(call_failed)?;
            Ok(lists
                .into_iter()
                .map(|l| l.into_iter().map(Into::into).collect())
                .collect::<Vec<_>>())
        });
        Ok(match ran {
            Ok((lists, dead_letters)) => PolicyOutcome::from_lists(lists, dead_letters),
            Err(message) => PolicyOutcome::Failed { message },
        })
    }
}

impl ScenarioRunner {
    fn saga(&self, wasm: &Path, s: &SagaScenario) -> Result<SagaOutcome, ScenarioError> {
        let plugin = self.plugin(wasm, PluginKind::Saga)?;
        let instance: SagaInstance = match plugin.instantiate() {
            Ok(i) => i,
            Err(f) => {
                return Ok(SagaOutcome::Failed {
                    message: f.to_string(),
                });
            }
        };
        Ok(s.run(&mut WasmSaga(instance)))
    }
}

/// A saga component's exports as the scenario driver calls them.
struct WasmSaga(SagaInstance);

fn envelope(raw: &RawEvent) -> Event {
    envelopes(std::slice::from_ref(raw)).remove(0)
}

impl SagaCalls for WasmSaga {
    fn steps(&mut self) -> Result<Vec<(String, bool)>, CallFailed> {
        let d = self.0.saga_definition().map_err(call_failed)?;
        Ok(d.steps
            .into_iter()
            .map(|s| (s.name, s.compensable))
            .collect())
    }

    fn start(&mut self, trigger: &RawEvent) -> Result<Option<Vec<u8>>, CallFailed> {
        let started = self.0.saga_start(&envelope(trigger)).map_err(call_failed)?;
        Ok(started.map(|(_, data)| data))
    }

    fn execute(
        &mut self,
        step: &str,
        data: &[u8],
    ) -> Result<factline_guest::OutgoingCommand, CallFailed> {
        let c = self
            .0
            .saga_execute(step, data, BASE_TIME_MS)
            .map_err(call_failed)?;
        Ok(c.into())
    }

    fn compensate(
        &mut self,
        step: &str,
        data: &[u8],
    ) -> Result<Option<factline_guest::OutgoingCommand>, CallFailed> {
        let c = self
            .0
            .saga_compensate(step, data, BASE_TIME_MS)
            .map_err(call_failed)?;
        Ok(c.map(Into::into))
    }

    fn judge(
        &mut self,
        step: &str,
        data: &[u8],
        answer: &RawEvent,
    ) -> Result<Judgement, CallFailed> {
        let v = self
            .0
            .saga_judge(step, data, &envelope(answer))
            .map_err(call_failed)?;
        Ok(match v {
            Verdict::Succeeded(d) => Judgement::Succeeded(d),
            Verdict::Failed(r) => Judgement::Failed(r),
            Verdict::NotMine => Judgement::NotMine,
        })
    }
}

/// Host envelopes for the SDK's raw events (ids made into UUIDs deterministically).
fn envelopes(raw: &[RawEvent]) -> Vec<Event> {
    raw.iter()
        .map(|e| Event {
            event_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, e.meta.event_id.as_bytes()),
            event_type: e.event_type.clone(),
            stream: e.meta.stream.clone(),
            stream_version: e.meta.stream_version,
            topic: e.meta.topic.clone(),
            partition: e.meta.partition,
            offset: e.meta.offset,
            occurred_at: e.meta.occurred_at,
            correlation_id: e.meta.correlation_id.clone(),
            causation_id: e.meta.causation_id.clone(),
            schema_version: e.meta.schema_version,
            payload: e.payload.clone(),
            metadata: e.meta.metadata.iter().cloned().collect(),
        })
        .collect()
}
