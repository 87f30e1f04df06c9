//! Command handling for aggregates (the decider model):
//! load the stream (cached state + newer events) → `evolve` → `decide` → append with the
//! expected version → on a concurrency error, reload and decide again (bounded).
//!
//! Commands carry ids. The ids of the events a command produces are derived from the command id
//! (UUIDv5), so a redelivered command finds its events already stored and returns them instead
//! of deciding twice.

mod cache;
mod history;
mod pool;

pub use history::AsOf;

use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use uuid::Uuid;

use crate::event::{Event, ExpectedVersion, NewEvent, now_millis};
use crate::log::{AppendError, EventLog, ReadError, Snapshot, SnapshotBound};
use crate::plugin::{
    AggregateInstance, CallFailure, CommandInput, Decision, LoadedPlugin, Rejection,
};
use crate::telemetry::{self, CommandInstruments};
use cache::{CachedState, StateCache};
use pool::{InstancePool, Lease};

/// A command for an aggregate instance (serializable: a clustered log forwards a policy's or
/// saga's command to its owner as is).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct CommandRequest {
    /// Id within the aggregate, e.g. `ORD-1` (the stream is `<topic>-<id>`).
    pub id: String,
    pub command_type: String,
    /// MessagePack body.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Makes redelivery safe; a fresh id is used when absent.
    pub command_id: Option<Uuid>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// What the caller believes the stream's version is before the command (`None` or
    /// `Any`: no check, and a concurrent change is decided again). A mismatch is
    /// [`CommandError::WrongVersion`], never retried.
    pub expected_version: Option<ExpectedVersion>,
}

/// What a handled command did.
#[derive(Clone, Debug, Serialize)]
pub struct CommandOutcome {
    pub stream: String,
    pub command_id: Uuid,
    /// The stream's version after the command.
    pub version: u64,
    /// The events the command appended (or had appended, for a redelivered command).
    pub events: Vec<Event>,
    /// True when the command had already been handled.
    pub deduplicated: bool,
    /// Decisions taken (more than one after concurrency conflicts).
    pub attempts: u32,
}

/// Why a command produced no events. Each variant says what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The aggregate said no. Not retried; show it to the user.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The plugin failed (trap, limit, its own failure). Retrying may help if transient.
    #[error("the {plugin} plugin failed: {failure}")]
    Failed {
        plugin: String,
        failure: CallFailure,
    },
    /// Still conflicting after the configured number of attempts: contention on one stream.
    #[error("stream {stream} kept changing; gave up after {attempts} attempts")]
    Conflict { stream: String, attempts: u32 },
    /// The stream is not at the version the command expected. Not retried: the caller decided
    /// on a state that is no longer current; read the stream and decide again.
    #[error("stream {stream} is at version {actual}, the command expected {expected}")]
    WrongVersion {
        stream: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// What [`AggregateHandler::plan`] decided.
#[derive(Debug)]
pub enum Planned {
    /// Nothing to append: the command was already handled (its stored events), or it was
    /// accepted without events.
    Done(CommandOutcome),
    Append(PlannedAppend),
}

/// Events to append at an expected version, decided but not yet written.
#[derive(Debug)]
pub struct PlannedAppend {
    pub stream: String,
    pub command_id: Uuid,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    /// The state the decision saw, to cache the next one after the commit.
    before: CachedState,
}

/// Settings of one aggregate handler.
#[derive(Clone, Debug)]
pub struct AggregateOptions {
    /// Topic (= stream category) of its streams.
    pub topic: String,
    /// Decisions tried before giving up on a contended stream.
    pub max_attempts: u32,
    /// Hot states kept in memory.
    pub cache_capacity: NonZeroUsize,
    /// Write a snapshot of a stream's state every this many events (`None`: never). Loading
    /// then starts from the newest snapshot of the plugin's state schema.
    pub snapshot_every: Option<NonZeroU64>,
}

impl AggregateOptions {
    pub fn new(topic: impl Into<String>) -> Self {
        AggregateOptions {
            topic: topic.into(),
            max_attempts: 5,
            cache_capacity: NonZeroUsize::new(10_000).expect("non-zero"),
            snapshot_every: None,
        }
    }
}

/// Handles commands for one aggregate plugin.
pub struct AggregateHandler {
    name: String,
    log: EventLog,
    options: AggregateOptions,
    /// Up to one instance per core: commands on different streams decide at once.
    instances: InstancePool,
    cache: StateCache,
    /// `commands_total` and `command_duration_seconds` handles, made on the first command.
    instruments: OnceLock<CommandInstruments>,
    /// The state schema of the plugin version (by content hash) last asked.
    state_schema: Mutex<Option<(String, u32)>>,
    /// Where decided events go instead of the local log (a clustered log's owner path).
    append_path: Option<Arc<dyn AppendPath>>,
}

/// Where a command's decided events are appended when not to the local log directly: a
/// clustered log, which stores them in its replica before it answers, so the events read back
/// afterwards from the local log are the ones appended.
pub trait AppendPath: Send + Sync {
    fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<crate::log::AppendResult, AppendError>;
}

impl std::fmt::Debug for AggregateHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateHandler")
            .field("topic", &self.options.topic)
            .finish_non_exhaustive()
    }
}

/// Events read per step while loading a stream.
const LOAD_PAGE: usize = 1000;

impl AggregateHandler {
    pub fn new(
        log: EventLog,
        plugin: Arc<LoadedPlugin>,
        options: AggregateOptions,
    ) -> Result<Self, CallFailure> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let instances = InstancePool::new(plugin.clone(), cores)?;
        Ok(AggregateHandler {
            name: plugin.name.clone(),
            log,
            cache: StateCache::new(options.cache_capacity),
            options,
            instances,
            instruments: OnceLock::new(),
            state_schema: Mutex::new(None),
            append_path: None,
        })
    }

    /// Appends decided events through `path` rather than to the local log.
    pub fn with_append_path(mut self, path: Arc<dyn AppendPath>) -> Self {
        self.append_path = Some(path);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin version deciding commands now.
    pub fn plugin(&self) -> Arc<LoadedPlugin> {
        self.instances.plugin()
    }

    /// Deploys a new plugin version: instantiated first (a failure changes nothing), then
    /// deciding every command that starts after it (one already deciding finishes on the old
    /// version). Cached states of the old version are not reused (they
    /// are keyed by content hash). Returns the version it replaced.
    pub fn swap_plugin(&self, plugin: Arc<LoadedPlugin>) -> Result<Arc<LoadedPlugin>, CallFailure> {
        self.instances.swap(plugin)
    }

    fn lock(&self) -> Result<Lease<'_>, CommandError> {
        self.instances.lease().map_err(|f| self.failed(f))
    }

    /// The stream a command id addresses.
    pub fn stream_of(&self, id: &str) -> String {
        format!("{}-{id}", self.options.topic)
    }

    fn failed(&self, failure: CallFailure) -> CommandError {
        CommandError::Failed {
            plugin: self.name.clone(),
            failure,
        }
    }

    /// Handles one command, in a `command` span carrying its ids; counted and timed.
    pub fn handle(&self, mut request: CommandRequest) -> Result<CommandOutcome, CommandError> {
        let started = std::time::Instant::now();
        let command_id = *request.command_id.get_or_insert_with(Uuid::now_v7);
        // The defaults `decide_and_append` would pick, made here so the span shows them.
        let correlation_id = request
            .correlation_id
            .get_or_insert_with(|| command_id.to_string())
            .clone();
        let causation_id = request
            .causation_id
            .get_or_insert_with(|| command_id.to_string())
            .clone();
        let span = tracing::info_span!(
            "command",
            aggregate = %self.name,
            id = %request.id,
            command_type = %request.command_type,
            %command_id,
            %correlation_id,
            %causation_id,
        );
        let _entered = span.enter();
        let result = self.decide_and_append(request);
        let outcome = match &result {
            Ok(o) if o.deduplicated => telemetry::CommandOutcome::Deduplicated,
            Ok(_) => telemetry::CommandOutcome::Accepted,
            Err(CommandError::Rejected(_)) => telemetry::CommandOutcome::Rejected,
            Err(CommandError::Conflict { .. } | CommandError::WrongVersion { .. }) => {
                telemetry::CommandOutcome::Conflict
            }
            Err(CommandError::Failed { .. }) => telemetry::CommandOutcome::Failed,
            Err(CommandError::Append(_) | CommandError::Read(_)) => {
                telemetry::CommandOutcome::Refused
            }
        };
        tracing::debug!(?outcome, "command handled");
        self.instruments
            .get_or_init(|| {
                let version = self.instances.plugin().version.to_string();
                CommandInstruments::new(&self.name, version)
            })
            .record(outcome, started.elapsed());
        result
    }

    fn decide_and_append(&self, request: CommandRequest) -> Result<CommandOutcome, CommandError> {
        for attempt in 1..=self.options.max_attempts {
            let planned = match self.plan(&request)? {
                Planned::Done(outcome) => return Ok(outcome),
                Planned::Append(p) => p,
            };
            let PlannedAppend {
                stream,
                command_id,
                expected,
                events,
                ..
            } = &planned;
            // Before the append: a consumer may take the events the instant they commit.
            telemetry::appended(events.iter().filter_map(|e| e.event_id));
            let appended = match &self.append_path {
                Some(path) => path.append(stream, *expected, events.clone()),
                None => self.log.append(stream, *expected, events.clone()),
            };
            match appended {
                Ok(r) => {
                    let events = self.log.read_stream(
                        stream,
                        r.first_version,
                        (r.last_version - r.first_version + 1) as usize,
                    )?;
                    let (stream, command_id) = (stream.clone(), *command_id);
                    self.committed(planned, &events);
                    return Ok(CommandOutcome {
                        stream,
                        command_id,
                        version: r.last_version,
                        events,
                        deduplicated: r.deduplicated,
                        attempts: attempt,
                    });
                }
                Err(AppendError::WrongExpectedVersion { .. }) => {
                    tracing::debug!(%stream, attempt, "concurrent change; deciding again");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Conflict {
            stream: self.stream_of(&request.id),
            attempts: self.options.max_attempts,
        })
    }

    /// Decides on a command without appending: the events to append with the expected version,
    /// for a caller that commits them together with other effects (a policy's or saga's offset
    /// and state). After the commit, pass the stored events to [`AggregateHandler::committed`].
    /// The caller must supply `command_id` for the derived event ids to make a redelivery safe.
    pub fn plan(&self, request: &CommandRequest) -> Result<Planned, CommandError> {
        let stream = self.stream_of(&request.id);
        self.log.locate(&stream)?;
        let command_id = request.command_id.unwrap_or_else(Uuid::now_v7);
        if let Some(done) = self.already_handled(&stream, command_id)? {
            return Ok(Planned::Done(done));
        }
        let input = CommandInput {
            command_id: command_id.to_string(),
            command_type: request.command_type.clone(),
            stream: stream.clone(),
            payload: request.payload.clone(),
            correlation_id: request
                .correlation_id
                .clone()
                .unwrap_or_else(|| command_id.to_string()),
            causation_id: request
                .causation_id
                .clone()
                .unwrap_or_else(|| command_id.to_string()),
            issued_at: now_millis(),
            metadata: request.metadata.clone(),
        };
        let (current, decision) = {
            let mut instance = self.lock()?;
            let current = self.load(&mut instance, &stream)?;
            check_expected(&stream, request.expected_version, current.version)?;
            let decision = instance
                .decide(&current.state, &input)
                .map_err(|f| self.failed(f))?;
            (current, decision)
        };
        let produced = match decision {
            Decision::Rejected(r) => return Err(CommandError::Rejected(r)),
            Decision::Accepted(events) => events,
        };
        if produced.is_empty() {
            return Ok(Planned::Done(CommandOutcome {
                stream,
                command_id,
                version: current.version,
                events: Vec::new(),
                deduplicated: false,
                attempts: 1,
            }));
        }
        let events = produced
            .into_iter()
            .enumerate()
            .map(|(i, e)| NewEvent {
                event_id: Some(derived_event_id(command_id, i)),
                event_type: e.event_type,
                schema_version: e.schema_version,
                payload: e.payload,
                metadata: e.metadata.into_iter().collect(),
                correlation_id: Some(input.correlation_id.clone()),
                causation_id: Some(input.causation_id.clone()),
            })
            .collect();
        Ok(Planned::Append(PlannedAppend {
            stream,
            command_id,
            expected: ExpectedVersion::from_current(current.version),
            events,
            before: current,
        }))
    }

    /// Caches the state after a planned append committed, so the next command does not re-read.
    pub fn committed(&self, planned: PlannedAppend, stored: &[Event]) {
        self.remember(&planned.stream, planned.before, stored);
    }

    /// The current state of a stream (cached state plus newer events).
    pub fn state(&self, id: &str) -> Result<(u64, Vec<u8>), CommandError> {
        let stream = self.stream_of(id);
        let mut instance = self.lock()?;
        let s = self.load(&mut instance, &stream)?;
        Ok((s.version, s.state.to_vec()))
    }

    /// Cached state (or else the newest usable snapshot), evolved with whatever the stream has
    /// beyond it.
    fn load(
        &self,
        instance: &mut AggregateInstance,
        stream: &str,
    ) -> Result<CachedState, CommandError> {
        let plugin_hash = instance.plugin().version.content_hash.clone();
        let start = match self.cache.get(stream, &plugin_hash) {
            Some(c) => c,
            None => self.start_state(instance, stream, SnapshotBound::LATEST, true)?,
        };
        let start_version = start.version;
        let (current, last) = self.fold(instance, stream, start, SnapshotBound::LATEST)?;
        if current.version > start_version {
            self.cache.put(stream, current.clone());
        }
        if let Some(last) = last {
            self.maybe_snapshot(instance, stream, start_version, &current, last.occurred_at);
        }
        Ok(current)
    }

    /// Where a rebuild starts: the newest snapshot within `bound` of the plugin's state schema
    /// (when `use_snapshots`), else the initial state at version 0.
    fn start_state(
        &self,
        instance: &mut AggregateInstance,
        stream: &str,
        bound: SnapshotBound,
        use_snapshots: bool,
    ) -> Result<CachedState, CommandError> {
        let plugin_hash = instance.plugin().version.content_hash.clone();
        if use_snapshots && self.options.snapshot_every.is_some() {
            let schema = self.state_schema(instance)?;
            if let Some(snap) = self.log.snapshot(stream, schema, bound)? {
                return Ok(CachedState {
                    version: snap.version,
                    state: Arc::new(snap.state),
                    plugin_hash,
                });
            }
        }
        Ok(CachedState {
            version: 0,
            state: Arc::new(instance.initial_state().map_err(|f| self.failed(f))?),
            plugin_hash,
        })
    }

    /// Evolves `current` with the stream's events after it, up to `bound`; also returns the
    /// last event folded in.
    fn fold(
        &self,
        instance: &mut AggregateInstance,
        stream: &str,
        mut current: CachedState,
        bound: SnapshotBound,
    ) -> Result<(CachedState, Option<Event>), CommandError> {
        let mut last_event = None;
        while current.version < bound.max_version {
            let page = LOAD_PAGE.min((bound.max_version - current.version) as usize);
            let mut events = self.log.read_stream(stream, current.version + 1, page)?;
            let full = events.len() == page;
            // Versions are dense and `occurred_at` never decreases: the first event past the
            // time bound ends the fold.
            let within = events.partition_point(|e| e.occurred_at <= bound.max_occurred_at);
            let cut = within < events.len();
            events.truncate(within);
            let Some(last) = events.last() else { break };
            let state = instance
                .evolve(&current.state, &events)
                .map_err(|f| self.failed(f))?;
            current = CachedState {
                version: last.stream_version,
                state: Arc::new(state),
                plugin_hash: current.plugin_hash,
            };
            last_event = events.pop();
            if cut || !full {
                break;
            }
        }
        Ok((current, last_event))
    }

    /// The plugin's declared state schema (asked once per plugin version).
    fn state_schema(&self, instance: &mut AggregateInstance) -> Result<u32, CommandError> {
        let hash = instance.plugin().version.content_hash.clone();
        let mut known = self.state_schema.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((h, schema)) = known.as_ref()
            && *h == hash
        {
            return Ok(*schema);
        }
        let schema = instance.state_schema().map_err(|f| self.failed(f))?;
        *known = Some((hash, schema));
        Ok(schema)
    }

    /// Writes a snapshot of `current` when the events folded since `since` crossed a multiple
    /// of `snapshot_every`. A snapshot only saves time later: failing to write one is logged,
    /// never an error of the command (its events are already durable).
    fn maybe_snapshot(
        &self,
        instance: &mut AggregateInstance,
        stream: &str,
        since: u64,
        current: &CachedState,
        occurred_at: u64,
    ) {
        let Some(every) = self.options.snapshot_every else {
            return;
        };
        if current.version / every.get() == since / every.get() {
            return;
        }
        let written = self.state_schema(instance).and_then(|state_schema| {
            self.log
                .put_snapshot(Snapshot {
                    stream: stream.to_owned(),
                    state_schema,
                    version: current.version,
                    occurred_at,
                    plugin_version: instance.plugin().version.to_string(),
                    state: current.state.to_vec(),
                })
                .map_err(CommandError::from)
        });
        if let Err(e) = written {
            tracing::warn!(%stream, version = current.version, error = %e, "snapshot not written");
        }
    }

    /// Caches the state after our own append, so the next command does not re-read it.
    fn remember(&self, stream: &str, before: CachedState, events: &[Event]) {
        // Without an instance the state is not cached: the next load reads the events.
        let Ok(mut instance) = self.lock() else {
            return;
        };
        if instance.plugin().version.content_hash != before.plugin_hash {
            // A new version was deployed meanwhile: its evolve must not continue (nor snapshot)
            // a state the old version built. The next load rebuilds from the log.
            return;
        }
        if let Ok(state) = instance.evolve(&before.state, events) {
            let version = events.last().map_or(before.version, |e| e.stream_version);
            let current = CachedState {
                version,
                state: Arc::new(state),
                plugin_hash: before.plugin_hash,
            };
            if let Some(last) = events.last() {
                self.maybe_snapshot(
                    &mut instance,
                    stream,
                    before.version,
                    &current,
                    last.occurred_at,
                );
            }
            self.cache.put(stream, current);
        }
    }

    /// A redelivered command: its first derived event id is already stored.
    fn already_handled(
        &self,
        stream: &str,
        command_id: Uuid,
    ) -> Result<Option<CommandOutcome>, CommandError> {
        let Some((version, _)) = self.log.find_event_id(derived_event_id(command_id, 0))? else {
            return Ok(None);
        };
        let mut events = Vec::new();
        for (i, e) in self
            .log
            .read_stream(stream, version, LOAD_PAGE)?
            .into_iter()
            .enumerate()
        {
            if e.event_id != derived_event_id(command_id, i) {
                break;
            }
            events.push(e);
        }
        if events.is_empty() {
            // Stored under another stream: the same command id was reused for a different target.
            return Err(CommandError::Append(AppendError::IdempotencyConflict {
                detail: format!("command {command_id} was already used for another stream"),
            }));
        }
        Ok(Some(CommandOutcome {
            stream: stream.to_owned(),
            command_id,
            version: events.last().map_or(version, |e| e.stream_version),
            events,
            deduplicated: true,
            attempts: 0,
        }))
    }
}

/// A command's expected version against the stream's current one (0 = no stream).
fn check_expected(
    stream: &str,
    expected: Option<ExpectedVersion>,
    actual: u64,
) -> Result<(), CommandError> {
    let matches = match expected {
        None | Some(ExpectedVersion::Any) => true,
        Some(ExpectedVersion::NoStream) => actual == 0,
        Some(ExpectedVersion::Exact(v)) => actual == v,
    };
    if matches {
        Ok(())
    } else {
        Err(CommandError::WrongVersion {
            stream: stream.to_owned(),
            expected: expected.expect("only an expectation can mismatch"),
            actual,
        })
    }
}

/// The id of the `index`-th event produced by a command: stable across redeliveries.
pub fn derived_event_id(command_id: Uuid, index: usize) -> Uuid {
    Uuid::new_v5(&command_id, &(index as u64).to_be_bytes())
}
