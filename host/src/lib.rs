//! factline's host: the durable event log, the plugin runtime and the handlers that connect them.
//!
//! Data flow, visible in the module names: `event` (the envelope) → `log` (append, partitions,
//! offsets, effects commit) → `consumer` (the engine: groups over assigned partitions) →
//! `projector` / `policy` / `saga` (what each kind contributes) and `aggregate` (commands) →
//! `plugin` (wasmtime); `config` (the `factline.toml` file) and `host` (all of it assembled and
//! running) sit on top, `http` and the `factline` binary in front.
//!
//! Every module is private; this one `pub use` block is the library's surface: what an
//! embedder, the `factline` binary, the benchmarks and the tests use.

mod aggregate;
mod cluster;
mod config;
mod consumer;
mod dispatch;
mod event;
mod evolution;
mod export;
mod failure;
mod gate;
mod host;
mod http;
mod log;
mod outbox;
mod plugin;
mod policy;
mod projector;
mod rebuild;
mod reload;
mod saga;
mod scenario;
mod telemetry;

pub use aggregate::{
    AggregateHandler, AggregateOptions, AppendPath, AsOf, CommandError, CommandOutcome,
    CommandRequest,
};
pub use cluster::{ClusterError, ClusterStatus, PartitionStatus, Route as ClusterRoute};
pub use config::{
    Config, ConfigError, KafkaConfig, LogBackend, OutboxConfig, PluginConfig, Role, TelemetryConfig,
};
pub use consumer::{
    BatchContext, ConsumerError, ConsumerGroup, ConsumerPool, DeadLetterPolicy, DeliveryError,
    Effects, Fired, GroupConfig, GroupHandle, GroupMetrics, Handler, HandlerError, NextStep,
    Output, PartitionLag, Paused, Refusal, Replay, RetryOutcome, RetryPolicy, StartFrom, Step,
    Timers, lag as group_lag,
};
pub use dispatch::{DispatchError, Dispatcher};
pub use event::{Event, ExpectedVersion, NewEvent, now_millis};
pub use evolution::Upcasters;
pub use export::{
    EXPORT_FORMAT, EXPORT_VERSION, Export, ExportError, MAX_EXPORT_BYTES, MAX_STATE_BYTES,
    ReplayError, Replayed, export as export_dead_letter, read as read_export,
    replay as replay_export,
};
pub use failure::FailureKind;
pub use gate::{
    DEFAULT_GATE_EVENTS, EffectKind, FieldDiff, GateCase, GateCounts, GateError, GateFailure,
    GateOptions, GateReport, GateVerdict, MAX_GATE_EVENTS,
};
pub use host::{
    Busy, GroupReport, Host, HostError, ProjectorStatus, RebuildRequestError, SendError, open_group,
};
pub use http::{route_list as http_routes, router as http_router, serve as serve_http};
pub use log::{
    AppendError, AppendResult, CommitError, DB_FILE, DeadLetter, DeadLetterCount, DeadLetterKey,
    Durability, EventLog, FORMAT_VERSION, GroupPosition, InspectError, Inspection, LogOptions,
    OpenError, ReadError, Snapshot, SnapshotBound, TopicConfig, TopicInfo, TopicSummary, inspect,
    murmur2, partition_for, rebuild_group,
};
#[cfg(feature = "kafka")]
pub use outbox::{KafkaRelay, KafkaRelayConfig, MAX_RECORD_BYTES as MAX_KAFKA_RECORD_BYTES};
pub use outbox::{LogRelay, Relay, RelayError, RelayProjection};
pub use plugin::content_hash;
pub use plugin::{
    AggregateInstance, Boundary, CacheOutcome, CallFailure, Capabilities, CommandInput, Decision,
    Instantiate, InstantiateError, Limits, LoadError, LoadSpec, LoadedPlugin, OutgoingCommand,
    PluginKind, PluginRuntime, PolicyInstance, ProducedEvent, ProjectorInstance, ReadModelSession,
    Rejection, RuntimeConfig, SagaDefinition, SagaInstance as SagaPluginInstance, SagaStep,
    Verdict,
};
pub use policy::PolicyHandler;
pub use projector::{
    Projection, ProjectionHandler, WasmProjection, query as query_read_model,
    query_prefix as query_read_model_prefix,
};
pub use rebuild::{RebuildPhase, RebuildReason, RebuildStatus};
pub use reload::{
    DeployError, DeployOrigin, DeployReport, GateRecord, PluginWatcher, VersionHistory,
    VersionInfo, WatchError,
};
pub use saga::{
    SagaError, SagaHandler, SagaInstance, SagaOptions, SagaStatus, SagaVersions, StepStatus,
    count_by_status as count_sagas_by_status, find as find_saga_instance, list as saga_instances,
    retry as retry_saga_instance,
};
pub use scenario::{
    ScenarioError, ScenarioFileError, ScenarioRunner, kind_of as scenario_kind_of,
    load_file as load_scenario_file,
};
pub use telemetry::{
    TraceError, Tracing, handle as metrics_handle, install as install_metrics, otlp_endpoint,
    otlp_layer, render as render_metrics,
};
