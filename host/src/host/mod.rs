//! The long-running host: everything a [`Config`] names, assembled and running.
//!
//! [`Host::start`] opens the log, builds one plugin runtime (compiled artifacts cached in
//! `cache_dir`, by default `<data_dir>/cache`), loads and validates every plugin, creates an
//! [`AggregateHandler`] per aggregate and starts one consumer group per projector, policy and
//! saga on a shared [`ConsumerPool`]. [`Host::shutdown`] stops every group after its in-flight
//! batch and closes the log. A crash instead of a shutdown loses nothing: each batch commits its
//! effects with its offset (ARCHITECTURE.md, "Effects and offset commit in one transaction").

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::aggregate::{AggregateHandler, CommandError, CommandOutcome, CommandRequest};
use crate::config::{Config, Role};
use crate::consumer::{
    ConsumerError, ConsumerGroup, ConsumerPool, GroupHandle, Handler, PartitionLag,
};
use crate::dispatch::Dispatcher;
use crate::evolution::Upcasters;
use crate::gate::{GateOptions, GateReport, GateVerdict, Subject};
use crate::log::{
    DeadLetterKey, EventLog, LogOptions, OpenError, ProjectionChange, ProjectionError, ReadError,
    ReadModelGeneration,
};
use crate::plugin::{
    CallFailure, LoadError, LoadedPlugin, PluginKind, PluginRuntime, RuntimeConfig, read_component,
};
use crate::policy::PolicyHandler;
use crate::projector::{Projection, ProjectionHandler, WasmProjection};
use crate::rebuild::{
    Hook, RebuildHooks, RebuildJob, RebuildProgress, RebuildReason, RebuildStatus,
};
use crate::reload::{
    DeployError, DeployOrigin, DeployReport, Deployed, GateRecord, Registry, VersionHistory,
};
use crate::saga::{SagaError, SagaHandler, SagaOptions, SagaVersions};
pub use queue::Busy;
use queue::StreamQueue;

/// How often [`Host::wait_until_idle`] re-checks when no commit wakes it (retry backoffs end
/// without a commit).
const IDLE_RECHECK: Duration = Duration::from_millis(200);

/// Why the host did not start. Each names the plugin or directory at fault.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// `Host::start` spawns the consumer groups on the current tokio runtime.
    #[error("the host must be started inside a tokio runtime")]
    NoRuntime,
    #[error("opening the event log in {}: {source}", dir.display())]
    Open {
        dir: std::path::PathBuf,
        source: OpenError,
    },
    #[error("creating the plugin runtime: {0}")]
    Runtime(LoadError),
    #[error("loading plugin {name:?} from {}: {source}", path.display())]
    Load {
        name: String,
        path: std::path::PathBuf,
        source: LoadError,
    },
    #[error("instantiating plugin {name:?}: {source}")]
    Instantiate { name: String, source: CallFailure },
    #[error("starting the consumer group of plugin {name:?}: {source}")]
    Group { name: String, source: ConsumerError },
    #[error("starting saga {name:?}: {source}")]
    Saga { name: String, source: SagaError },
    #[error("starting outbox {name:?}: {source}")]
    Outbox {
        name: String,
        source: crate::outbox::RelayError,
    },
    #[error("no plugin named {0:?} consumes partitions in this configuration")]
    NotAConsumer(String),
    #[error("reading the read-model record of projector {name:?}: {source}")]
    Projection {
        name: String,
        source: ProjectionError,
    },
    #[error("joining the cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
}

#[cfg(feature = "kafka")]
type ClusterHandle = Option<Arc<crate::cluster::Cluster>>;
#[cfg(not(feature = "kafka"))]
type ClusterHandle = ();

/// Joins the cluster when `[log] backend = "kafka"` (refused by a build without the feature).
fn start_cluster(config: &Config, log: &EventLog) -> Result<ClusterHandle, HostError> {
    use crate::config::LogBackend;
    match &config.log {
        LogBackend::Redb => Ok(ClusterHandle::default()),
        #[cfg(feature = "kafka")]
        LogBackend::Kafka(k) => {
            // Joining blocks on the runtime (metadata, topic checks): from a thread outside it.
            let runtime = tokio::runtime::Handle::current();
            let joined = std::thread::scope(|s| {
                s.spawn(|| crate::cluster::Cluster::start(k, log, runtime))
                    .join()
                    .expect("joining the cluster panicked")
            })?;
            Ok(Some(joined))
        }
        #[cfg(not(feature = "kafka"))]
        LogBackend::Kafka(_) => {
            let _ = log;
            Err(crate::cluster::ClusterError::NotBuilt.into())
        }
    }
}

/// Why a rebuild was not started.
#[derive(Debug, thiserror::Error)]
pub enum RebuildRequestError {
    #[error("no projector named {0:?} is configured")]
    UnknownProjector(String),
    #[error("the read model of {0:?} is already being rebuilt")]
    AlreadyRunning(String),
}

/// Why [`Host::command`] produced no events.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no aggregate named {0:?}")]
    UnknownAggregate(String),
    /// Refused before deciding: too many commands wait for the stream (or for all of them).
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// A projector's read models, as the API reports them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProjectorStatus {
    pub projector: String,
    /// The generation queries read (none before the projector's first start).
    pub live: Option<ReadModelGeneration>,
    /// Its read-model scope.
    pub scope: String,
    /// Whether its consumer group runs (not while a start-up rebuild must finish first).
    pub processing: bool,
    /// The running or last rebuild since this host started.
    pub rebuild: Option<RebuildStatus>,
}

/// What one consumer group did while this host ran it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupReport {
    pub name: String,
    pub events_processed: u64,
    pub batches_committed: u64,
    pub failed_calls: u64,
    pub dead_lettered: u64,
}

/// A running host. Dropping it without [`Host::shutdown`] aborts nothing durable but leaves the
/// groups' tasks to the runtime; shut down to stop them between batches.
pub struct Host {
    config: Config,
    log: EventLog,
    /// Held for the host's life: it owns the epoch ticker that enforces call deadlines.
    runtime: Arc<PluginRuntime>,
    /// The running version of every plugin and the ones before it.
    registry: Arc<Registry>,
    /// Deploys and rollbacks run one at a time.
    deploy_lock: tokio::sync::Mutex<()>,
    aggregates: BTreeMap<String, Arc<AggregateHandler>>,
    groups: Vec<Arc<GroupHandle>>,
    /// Each projector's running or last rebuild, and the rebuild tasks.
    rebuilds: Mutex<BTreeMap<String, Arc<RebuildProgress>>>,
    rebuild_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Commands of policies and sagas go to the local aggregates through it.
    dispatcher: Dispatcher,
    /// The plugin versions of each saga, shared with its group's lanes.
    sagas: BTreeMap<String, Arc<SagaVersions>>,
    /// Commands sent to [`Host::command`] take turns per stream.
    commands: StreamQueue,
    /// The clustered log's replica, ownership and owner path (`[log] backend = "kafka"`).
    #[cfg(feature = "kafka")]
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Moves the policy, saga and relay groups' partitions with this host's ownership.
    #[cfg(feature = "kafka")]
    ownership: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("data_dir", &self.config.data_dir)
            .field("plugins", &self.plugins())
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Opens, loads and starts everything `config` names. Call it inside a tokio runtime (the
    /// consumer groups are spawned on it); it blocks while plugins compile, so call it before
    /// serving anything.
    pub fn start(config: Config) -> Result<Host, HostError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(HostError::NoRuntime);
        }
        // Before anything makes metric handles (handles made earlier would stay no-ops).
        crate::telemetry::install();
        let log = EventLog::open(
            &config.data_dir,
            LogOptions::with_topics(config.topics.iter().cloned()),
        )
        .map_err(|source| HostError::Open {
            dir: config.data_dir.clone(),
            source,
        })?;
        let runtime = Arc::new(
            PluginRuntime::new(RuntimeConfig {
                cache_dir: Some(config.cache_dir.clone()),
                fuel: config.plugins.iter().any(|p| p.limits.fuel.is_some()),
                ..RuntimeConfig::default()
            })
            .map_err(HostError::Runtime)?,
        );

        // Load (and validate) every plugin before starting anything, so a bad one refuses the
        // whole start instead of leaving a half-running host.
        let registry = Arc::new(Registry::default());
        let mut plugins = Vec::new();
        for p in &config.plugins {
            let (loaded, bytes) = read_component(&p.component)
                .and_then(|bytes| {
                    let loaded = runtime.load_spec(&p.name, p.kind(), &bytes, p.load_spec())?;
                    Ok((loaded, bytes))
                })
                .map_err(|source| HostError::Load {
                    name: p.name.clone(),
                    path: p.component.clone(),
                    source,
                })?;
            registry.insert(Deployed {
                plugin: loaded.clone(),
                bytes: bytes.into(),
                deployed_at_ms: crate::event::now_millis(),
            });
            tracing::info!(plugin = %p.name, kind = %p.kind(), version = %loaded.version, cache = ?loaded.cache_outcome, load_ms = loaded.load_time.as_millis() as u64, "plugin loaded");
            plugins.push(loaded);
        }

        #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
        let cluster = start_cluster(&config, &log)?;
        let mut aggregates = BTreeMap::new();
        let mut upcasters = Upcasters::default();
        for (p, loaded) in config.plugins.iter().zip(&plugins) {
            let Some(options) = p.role.aggregate_options() else {
                continue;
            };
            let instantiate = |source| HostError::Instantiate {
                name: p.name.clone(),
                source,
            };
            // Every read of a topic goes through the upcaster of the aggregate that owns it.
            upcasters.add(&options.topic, loaded).map_err(instantiate)?;
            let handler =
                AggregateHandler::new(log.clone(), loaded.clone(), options).map_err(instantiate)?;
            #[cfg(feature = "kafka")]
            let handler = match &cluster {
                Some(c) => handler.with_append_path(c.clone()),
                None => handler,
            };
            aggregates.insert(p.name.clone(), Arc::new(handler));
        }
        if !upcasters.is_empty() {
            tracing::info!(?upcasters, "upcasters installed");
            log.set_upcaster(Some(Arc::new(upcasters)));
        }
        // Consumers once every aggregate exists: policies and sagas send commands to them (on a
        // clustered log, to whichever host owns the target stream).
        let dispatcher = Dispatcher::new(aggregates.clone());
        #[cfg(feature = "kafka")]
        let dispatcher = match &cluster {
            Some(c) => dispatcher.with_sender(Arc::new(crate::cluster::ClusterCommands::new(
                c.clone(),
                aggregates.clone(),
            ))),
            None => dispatcher,
        };
        let mut sagas = BTreeMap::new();
        let mut groups = Vec::new();
        let mut pending_rebuilds = Vec::new();
        for (p, loaded) in config.plugins.iter().zip(&plugins) {
            let instantiate = |source| HostError::Instantiate {
                name: p.name.clone(),
                source,
            };
            let open = |group: crate::consumer::GroupConfig, handler| {
                ConsumerGroup::new(log.clone(), group, handler).map_err(|source| HostError::Group {
                    name: p.name.clone(),
                    source,
                })
            };
            // Policies and sagas on a clustered log run where their partitions are owned and
            // commit through the cluster (`cluster_groups`).
            let open_owned = |group: crate::consumer::GroupConfig,
                              handler: Box<dyn Handler>,
                              saga: bool| {
                #[cfg(feature = "kafka")]
                if let Some(c) = &cluster {
                    let mut group = group;
                    if saga && group.concurrency > 1 {
                        // One lane: a step's answer must not be read before the record that
                        // marks the step sent (they are two records here, not one commit).
                        tracing::warn!(saga = %group.name, concurrency = group.concurrency, "a saga runs on one lane on the Kafka backend");
                        group.concurrency = 1;
                    }
                    let home = saga.then(|| saga_home(&group));
                    let commits = c.commit_path(home.as_ref().map(|(t, p)| (t.as_str(), *p)));
                    return ConsumerGroup::unassigned(log.clone(), group, handler, commits)
                        .map_err(|source| HostError::Group {
                            name: p.name.clone(),
                            source,
                        });
                }
                let _ = saga;
                open(group, handler)
            };
            let group = match &p.role {
                Role::Aggregate { .. } => continue,
                Role::Projector(group) => {
                    // With `concurrency > 1` the group replicates this instance for its other
                    // lanes (`Projection::replicate`: one more instance of the same plugin each).
                    let projection = WasmProjection::new(
                        loaded.instantiate().map_err(|e| instantiate(e.into()))?,
                    )
                    .map_err(instantiate)?;
                    let (config, rebuild) = projector_start(&log, group, loaded, &projection)
                        .map_err(|source| HostError::Projection {
                            name: p.name.clone(),
                            source,
                        })?;
                    let live = !matches!(rebuild, Some(PendingRebuild { live: false }));
                    if let Some(r) = rebuild {
                        pending_rebuilds.push((p.name.clone(), loaded.clone(), r));
                    }
                    // Its read model has another version: nothing runs until it is rebuilt.
                    live.then(|| open(config, ProjectionHandler::boxed(projection)))
                        .transpose()?
                }
                Role::Policy(group) => {
                    let handler = PolicyHandler::new(p.name.clone(), dispatcher.clone(), loaded)
                        .map_err(instantiate)?;
                    Some(open_owned(group.clone(), Box::new(handler), false)?)
                }
                Role::Saga(group) => {
                    let (handler, versions) = saga_handler(&log, &runtime, &dispatcher, p, loaded)?;
                    sagas.insert(p.name.clone(), versions);
                    Some(open_owned(group.clone(), Box::new(handler), true)?)
                }
            };
            groups.push((p.name.clone(), group));
        }
        // Relays need no plugin; building one connects to nothing yet (a broker that is down
        // delays publishing, not the start).
        #[cfg(feature = "kafka")]
        for o in &config.outboxes {
            let name = o.group.name.clone();
            let relay = crate::outbox::KafkaRelay::new(crate::outbox::KafkaRelayConfig {
                name: name.clone(),
                bootstrap_servers: o.bootstrap_servers.clone(),
                kafka_topic: o.kafka_topic.clone(),
                partitions: o.kafka_partitions,
            })
            .map_err(|source| HostError::Outbox {
                name: name.clone(),
                source,
            })?;
            let projection = crate::outbox::RelayProjection::new(relay, o.event_types.clone());
            let handler = ProjectionHandler::boxed(projection);
            // On a clustered log a relay publishes from the owner of each partition only.
            let group = match &cluster {
                Some(c) => ConsumerGroup::unassigned(
                    log.clone(),
                    o.group.clone(),
                    handler,
                    c.commit_path(None),
                ),
                None => ConsumerGroup::new(log.clone(), o.group.clone(), handler),
            }
            .map_err(|source| HostError::Group {
                name: name.clone(),
                source,
            })?;
            groups.push((name, Some(group)));
        }
        // Groups start last: every plugin is loaded by now, so nothing below can fail.
        let pool = ConsumerPool::new(config.workers);
        let groups: Vec<Arc<GroupHandle>> = groups
            .into_iter()
            .map(|(name, g)| {
                Arc::new(match g {
                    Some(g) => {
                        tracing::info!(group = %g.name(), scope = %g.config().scope(), topics = ?g.config().topics, batch_size = g.config().batch_size, concurrency = g.config().concurrency, "consumer group started");
                        pool.spawn(g)
                    }
                    None => pool.idle(name),
                })
            })
            .collect();
        #[cfg(feature = "kafka")]
        let ownership = cluster
            .as_ref()
            .map(|c| cluster_groups(c.clone(), &config, &log, &groups));
        let host = Host {
            config,
            log,
            runtime,
            registry,
            deploy_lock: tokio::sync::Mutex::new(()),
            aggregates,
            groups,
            rebuilds: Mutex::default(),
            rebuild_tasks: Mutex::default(),
            dispatcher,
            commands: StreamQueue::new(),
            sagas,
            #[cfg(feature = "kafka")]
            cluster,
            #[cfg(feature = "kafka")]
            ownership: Mutex::new(ownership),
        };
        for (name, plugin, _) in pending_rebuilds {
            host.spawn_rebuild(
                &name,
                plugin,
                RebuildReason::Startup,
                true,
                RebuildHooks::default(),
            );
        }
        // Old read models a crash kept from being dropped after their switch.
        for p in host
            .config
            .plugins
            .iter()
            .filter(|p| p.kind() == PluginKind::Projector)
        {
            if host
                .log
                .projection(&p.name)
                .ok()
                .flatten()
                .is_some_and(|r| !r.retired.is_empty())
            {
                let (log, name) = (host.log.clone(), p.name.clone());
                let task =
                    tokio::spawn(async move { crate::rebuild::drop_retired(&log, &name).await });
                lock(&host.rebuild_tasks).push(task);
            }
        }
        Ok(host)
    }

    /// Starts rebuilding `name`'s read model with `plugin` in the background (the caller made
    /// sure none runs).
    fn spawn_rebuild(
        &self,
        name: &str,
        plugin: Arc<LoadedPlugin>,
        reason: RebuildReason,
        resume: bool,
        hooks: RebuildHooks,
    ) -> Arc<RebuildProgress> {
        let config = self
            .config
            .plugins
            .iter()
            .find_map(|p| match &p.role {
                Role::Projector(g) if p.name == name => Some(g),
                _ => None,
            })
            .expect("rebuilds are of configured projectors");
        let live = self
            .groups
            .iter()
            .find(|g| g.name() == name)
            .expect("every projector has a group handle")
            .clone();
        let progress = RebuildProgress::new(name, reason, &plugin, &self.log, &config.topics);
        let job = RebuildJob {
            log: self.log.clone(),
            live,
            config: config.clone(),
            plugin,
            progress: progress.clone(),
            resume,
            hooks,
        };
        let task = tokio::spawn(job.run());
        lock(&self.rebuilds).insert(name.to_owned(), progress.clone());
        let mut tasks = lock(&self.rebuild_tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
        progress
    }

    fn rebuilding(&self, name: &str) -> bool {
        lock(&self.rebuilds)
            .get(name)
            .is_some_and(|p| p.status().is_running())
    }

    /// Rebuilds projector `name`'s read model from offset 0 beside the live one, which keeps
    /// answering queries until the new one has caught up and switches in (see
    /// [`crate::rebuild`]). Returns at once; [`Host::projector`] reports the progress.
    pub async fn rebuild_projector(
        &self,
        name: &str,
    ) -> Result<RebuildStatus, RebuildRequestError> {
        let _one_at_a_time = self.deploy_lock.lock().await;
        let unknown = || RebuildRequestError::UnknownProjector(name.to_owned());
        let p = self
            .config
            .plugins
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(unknown)?;
        if p.kind() != PluginKind::Projector {
            return Err(unknown());
        }
        if self.rebuilding(name) {
            return Err(RebuildRequestError::AlreadyRunning(name.to_owned()));
        }
        let plugin = self
            .registry
            .current(name)
            .expect("every configured plugin is registered")
            .plugin;
        Ok(self
            .spawn_rebuild(
                name,
                plugin,
                RebuildReason::Requested,
                false,
                RebuildHooks::default(),
            )
            .status())
    }

    /// Projector `name`'s read models: the live generation and the running or last rebuild.
    pub fn projector(&self, name: &str) -> Result<Option<ProjectorStatus>, ReadError> {
        let Some(p) = self.config.plugins.iter().find(|p| p.name == name) else {
            return Ok(None);
        };
        if p.kind() != PluginKind::Projector {
            return Ok(None);
        }
        let live = self.log.projection(name)?.map(|r| r.active);
        Ok(Some(ProjectorStatus {
            projector: name.to_owned(),
            scope: self.log.read_models()?.live_scope(name)?,
            live,
            processing: self
                .groups
                .iter()
                .any(|g| g.name() == name && g.is_running()),
            rebuild: lock(&self.rebuilds).get(name).map(|r| r.status()),
        }))
    }

    /// The plugin versions of saga `name` (the one new instances start on, the pinned ones).
    pub fn saga(&self, name: &str) -> Option<&Arc<SagaVersions>> {
        self.sagas.get(name)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// The shared plugin runtime (deploying a new version compiles with it).
    pub fn runtime(&self) -> &Arc<PluginRuntime> {
        &self.runtime
    }

    /// The running version of every plugin, in configuration order.
    pub fn plugins(&self) -> Vec<Arc<LoadedPlugin>> {
        let current = self.registry.all_current();
        self.config
            .plugins
            .iter()
            .filter_map(|p| current.iter().find(|l| l.name == p.name).cloned())
            .collect()
    }

    /// The context of a dead letter as one export file (`factline export`): the event, the
    /// state its handler reads and the components (the version that failed, when still kept).
    pub fn export_dead_letter(
        &self,
        key: &crate::log::DeadLetterKey,
    ) -> Result<Vec<u8>, crate::export::ExportError> {
        crate::export::export(&self.config, &self.log, key, |name, version| {
            self.registry.bytes_of(name, version)
        })
    }

    /// The running version of plugin `name` and the versions `rollback` can return to.
    pub fn plugin_versions(&self, name: &str) -> Option<VersionHistory> {
        self.registry.history(name)
    }

    /// Deploys `bytes` as the new version of plugin `name`: compiled (or taken from the
    /// artifact cache) and validated off the processing path, then swapped in between batches.
    /// On any error the running version stays and keeps processing. Unless the bytes came from
    /// the component file itself, they are also written over it, so a restart runs them.
    pub async fn deploy(
        &self,
        name: &str,
        bytes: Vec<u8>,
        label: Option<String>,
        origin: DeployOrigin,
    ) -> Result<DeployReport, DeployError> {
        let _one_at_a_time = self.deploy_lock.lock().await;
        self.deploy_locked(name, bytes, label, origin, None).await
    }

    /// [`Host::deploy`] behind the gate: before the swap, the recent history is replayed
    /// through the running version and the candidate (nothing written) and their effects
    /// compared (`crate::gate`). Refused (`DeployError::GateRefused`, nothing deployed) when
    /// they differ, unless `gate.accept_changes`, or when the candidate fails where the running
    /// version did not. The verdict is kept in the plugin's history either way.
    pub async fn deploy_gated(
        &self,
        name: &str,
        bytes: Vec<u8>,
        label: Option<String>,
        gate: GateOptions,
    ) -> Result<DeployReport, DeployError> {
        let _one_at_a_time = self.deploy_lock.lock().await;
        self.deploy_locked(name, bytes, label, DeployOrigin::Api, Some(gate))
            .await
    }

    /// Deploys what plugin `name`'s component file holds now (the file watcher). The file is
    /// read under the deploy lock, so it is never content a deploy acknowledged since has
    /// replaced (a deploy rewrites the file under the same lock): the watcher cannot bring a
    /// superseded version back. Content a version in the history had keeps its label; new
    /// content gets the plugin's configured `version` label.
    pub async fn deploy_component_file(
        &self,
        name: &str,
    ) -> Result<Option<DeployReport>, DeployError> {
        let _one_at_a_time = self.deploy_lock.lock().await;
        let path = self.plugin_config(name)?.component.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .expect("reading a component file panicked");
        let Ok(bytes) = read else {
            // Gone or unreadable mid-rename: the next change event tries again.
            return Ok(None);
        };
        // As a restart would label the file's content.
        let label = self
            .registry
            .label_of(name, &bytes)
            .or_else(|| self.plugin_config(name).ok()?.label.clone());
        self.deploy_locked(name, bytes, label, DeployOrigin::File, None)
            .await
            .map(Some)
    }

    async fn deploy_locked(
        &self,
        name: &str,
        bytes: Vec<u8>,
        label: Option<String>,
        origin: DeployOrigin,
        gate: Option<GateOptions>,
    ) -> Result<DeployReport, DeployError> {
        let config = self.plugin_config(name)?;
        if self.rebuilding(name) {
            return Err(DeployError::Rebuilding(name.to_owned()));
        }
        let started = std::time::Instant::now();
        let bytes: Arc<[u8]> = bytes.into();
        let (runtime, b, n, kind) = (
            self.runtime.clone(),
            bytes.clone(),
            name.to_owned(),
            config.kind(),
        );
        let mut spec = config.load_spec();
        spec.label = label;
        let loaded = tokio::task::spawn_blocking(move || runtime.load_spec(&n, kind, &b, spec))
            .await
            .expect("compiling a component panicked")
            .map_err(|source| DeployError::Load {
                plugin: name.to_owned(),
                source,
            })?;
        let gated = match gate {
            Some(options) => Some(self.gate(name, &loaded, options).await?),
            None => None,
        };
        let prepare = started.elapsed();
        let deployed = Deployed {
            plugin: loaded,
            bytes,
            deployed_at_ms: crate::event::now_millis(),
        };
        let mut report = self.install(deployed, origin, prepare).await?;
        report.gate = gated;
        Ok(report)
    }

    /// Runs the gate of `candidate` against plugin `name`'s running version and records its
    /// verdict; a refusal is the error.
    async fn gate(
        &self,
        name: &str,
        candidate: &Arc<LoadedPlugin>,
        options: GateOptions,
    ) -> Result<GateReport, DeployError> {
        let running = self
            .registry
            .current(name)
            .expect("every configured plugin is registered")
            .plugin;
        let subject = self.gate_subject(name, &running, candidate)?;
        let log = self.log.clone();
        let report = tokio::task::spawn_blocking(move || crate::gate::run(&log, subject, options))
            .await
            .expect("a gate panicked")
            .map_err(|source| DeployError::Gate {
                plugin: name.to_owned(),
                source,
            })?;
        self.registry.record_gate(
            name,
            GateRecord {
                candidate: candidate.version.clone(),
                verdict: report.verdict,
                unit: report.unit,
                replayed: report.replayed,
                differing: report.differing,
                counts: report.counts,
                at_ms: crate::event::now_millis(),
            },
        );
        tracing::info!(plugin = %name, candidate = %candidate.version, verdict = %report.verdict, replayed = report.replayed, differing = report.differing, "deploy gate");
        if report.verdict == GateVerdict::Refused {
            return Err(DeployError::GateRefused {
                plugin: name.to_owned(),
                report: Box::new(report),
            });
        }
        Ok(report)
    }

    /// Fresh instances of both versions of plugin `name` for its gate, as the host runs them
    /// (policies and sagas plan their commands on the live aggregates, appending nothing).
    fn gate_subject(
        &self,
        name: &str,
        running: &Arc<LoadedPlugin>,
        candidate: &Arc<LoadedPlugin>,
    ) -> Result<Subject, DeployError> {
        let config = self.plugin_config(name)?;
        let failed = |source| DeployError::Instantiate {
            plugin: name.to_owned(),
            source,
        };
        let saga_failed = |source| DeployError::Saga {
            plugin: name.to_owned(),
            source,
        };
        let handler = |plugin: &Arc<LoadedPlugin>| -> Result<Box<dyn Handler>, DeployError> {
            Ok(match &config.role {
                Role::Projector(_) => {
                    let instance = plugin.instantiate().map_err(|e| failed(e.into()))?;
                    ProjectionHandler::boxed(WasmProjection::new(instance).map_err(failed)?)
                }
                Role::Policy(_) => Box::new(
                    PolicyHandler::new(name, self.dispatcher.clone(), plugin).map_err(failed)?,
                ),
                Role::Saga(_) => {
                    let versions = SagaVersions::new(name, plugin.clone()).map_err(saga_failed)?;
                    Box::new(
                        SagaHandler::new(
                            self.log.clone(),
                            self.dispatcher.clone(),
                            versions,
                            SagaOptions::default(),
                        )
                        .map_err(saga_failed)?,
                    )
                }
                Role::Aggregate { .. } => unreachable!("aggregates are gated on their streams"),
            })
        };
        Ok(match &config.role {
            Role::Aggregate { topic, .. } => Subject::Aggregate {
                topic: topic.clone(),
                running: Box::new(running.instantiate().map_err(|e| failed(e.into()))?),
                candidate: Box::new(candidate.instantiate().map_err(|e| failed(e.into()))?),
            },
            Role::Projector(g) | Role::Policy(g) | Role::Saga(g) => Subject::Consumer {
                name: name.to_owned(),
                topics: g.topics.clone(),
                batch: g.batch_size.min(g.max_events_in_memory),
                running: handler(running)?,
                candidate: handler(candidate)?,
            },
        })
    }

    /// Returns plugin `name` to the version that ran before the current one (already compiled:
    /// no compile on this path).
    pub async fn rollback(&self, name: &str) -> Result<DeployReport, DeployError> {
        let _one_at_a_time = self.deploy_lock.lock().await;
        self.plugin_config(name)?;
        if self.rebuilding(name) {
            return Err(DeployError::Rebuilding(name.to_owned()));
        }
        let previous = self
            .registry
            .pop_previous(name)
            .ok_or_else(|| DeployError::NoPrevious(name.to_owned()))?;
        let result = self
            .install(
                previous.clone(),
                DeployOrigin::Rollback,
                std::time::Duration::ZERO,
            )
            .await;
        if result.is_err() {
            self.registry.push_previous(name, previous);
        }
        result
    }

    fn plugin_config(&self, name: &str) -> Result<&crate::config::PluginConfig, DeployError> {
        self.config
            .plugins
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| DeployError::UnknownPlugin(name.to_owned()))
    }

    /// Swaps `new` in for its plugin's running version (the caller holds the deploy lock).
    async fn install(
        &self,
        new: Deployed,
        origin: DeployOrigin,
        prepare: std::time::Duration,
    ) -> Result<DeployReport, DeployError> {
        let name = new.plugin.name.clone();
        let config = self.plugin_config(&name)?;
        let current = self
            .registry
            .current(&name)
            .expect("every configured plugin is registered");
        let mut report = DeployReport {
            plugin: name.clone(),
            origin,
            previous: current.plugin.version.clone(),
            current: new.plugin.version.clone(),
            swapped: false,
            cache: new.plugin.cache_outcome,
            prepare,
            swap: std::time::Duration::ZERO,
            persist_error: None,
            rebuild: None,
            gate: None,
        };
        // Same bytes = same version, whatever the label (the watcher sees a deploy's own
        // rewrite of the file without one).
        if new.plugin.version.content_hash == current.plugin.version.content_hash {
            report.current = current.plugin.version.clone();
            return Ok(report);
        }
        let swap_started = std::time::Instant::now();
        let failed = |source| DeployError::Instantiate {
            plugin: name.clone(),
            source,
        };
        match &config.role {
            Role::Aggregate { .. } => {
                // The topic's upcasters come from the aggregate's version: rebuild them with
                // the new one first (a failure changes nothing), install them with the swap.
                let mut upcasters = Upcasters::default();
                for p in &self.config.plugins {
                    if let Role::Aggregate { topic, .. } = &p.role {
                        let plugin = if p.name == name {
                            new.plugin.clone()
                        } else {
                            self.aggregates[&p.name].plugin()
                        };
                        upcasters.add(topic, &plugin).map_err(failed)?;
                    }
                }
                let handler = self
                    .aggregates
                    .get(&name)
                    .expect("every aggregate has a handler");
                handler.swap_plugin(new.plugin.clone()).map_err(failed)?;
                self.log.set_upcaster(if upcasters.is_empty() {
                    None
                } else {
                    Some(Arc::new(upcasters))
                });
            }
            Role::Projector(group_config) => {
                let plugin = new.plugin.clone();
                let projection =
                    tokio::task::spawn_blocking(move || WasmProjection::new(plugin.instantiate()?))
                        .await
                        .expect("instantiating a projection panicked")
                        .map_err(failed)?;
                let live_version = self
                    .log
                    .projection(&name)
                    .map_err(|source| DeployError::Storage {
                        plugin: name.clone(),
                        source,
                    })?
                    .map_or(1, |r| r.active.read_model_version);
                if projection.read_model_version() != live_version {
                    // Another read-model shape: build it beside the live one, which keeps
                    // running the old version; the new version goes live with its read model.
                    let registry = self.registry.clone();
                    let path = config.component.clone();
                    let rewrite = origin != DeployOrigin::File;
                    let keep_old = origin != DeployOrigin::Rollback;
                    let deployed = new.clone();
                    let on_switch: Hook = Box::new(move || {
                        if rewrite && let Err(e) = crate::reload::persist(&path, &deployed.bytes) {
                            tracing::warn!(plugin = %deployed.plugin.name, path = %path.display(), error = %e, "deployed, but the component file could not be rewritten; a restart would load the old file");
                        }
                        registry.advance(deployed, keep_old);
                    });
                    // A rollback took its version off the history: a failed rebuild puts it back.
                    let on_failure = (origin == DeployOrigin::Rollback).then(|| {
                        let (registry, name, back) =
                            (self.registry.clone(), name.clone(), new.clone());
                        Box::new(move || registry.push_previous(&name, back)) as Hook
                    });
                    let hooks = RebuildHooks {
                        on_switch: Some(on_switch),
                        on_failure,
                    };
                    let progress = self.spawn_rebuild(
                        &name,
                        new.plugin.clone(),
                        RebuildReason::Deploy,
                        false,
                        hooks,
                    );
                    tracing::info!(plugin = %name, from = %report.previous, to = %report.current, from_read_model = live_version, to_read_model = projection.read_model_version(), "new read-model version: rebuilding beside the live one");
                    report.rebuild = Some(progress.status());
                    return Ok(report);
                }
                let group = self
                    .groups
                    .iter()
                    .find(|g| g.name() == name)
                    .expect("every projector has a group");
                let swap_failed = |source| DeployError::Swap {
                    plugin: name.clone(),
                    source,
                };
                if group.is_running() {
                    group
                        .swap_handler(ProjectionHandler::boxed(projection))
                        .await
                        .map_err(swap_failed)?;
                } else {
                    // Nothing runs (its start-up rebuild failed): this version, of the live read
                    // model's shape, starts the group on the live read model.
                    let scope = self
                        .log
                        .read_models()
                        .and_then(|v| v.live_scope(&name))
                        .map_err(|source| DeployError::Storage {
                            plugin: name.clone(),
                            source,
                        })?;
                    let (log, group_config) = (
                        self.log.clone(),
                        crate::consumer::GroupConfig {
                            scope: Some(scope),
                            ..group_config.clone()
                        },
                    );
                    let started = tokio::task::spawn_blocking(move || {
                        ConsumerGroup::new(log, group_config, ProjectionHandler::boxed(projection))
                    })
                    .await
                    .expect("starting a consumer group panicked")
                    .map_err(swap_failed)?;
                    group.pause().await.replace(Some(started));
                }
            }
            Role::Saga(_) => {
                // New instances start on the new version; in-flight ones finish on the version
                // they started with (pinned by content hash), which stays loaded.
                let saga = self.sagas.get(&name).expect("every saga has its versions");
                let (saga, plugin) = (saga.clone(), new.plugin.clone());
                tokio::task::spawn_blocking(move || saga.add_version(&plugin))
                    .await
                    .expect("loading a saga version panicked")
                    .map_err(|source| DeployError::Saga {
                        plugin: name.clone(),
                        source,
                    })?;
            }
            Role::Policy(_) => {
                // The new version's instances replace the old ones between batches.
                let (plugin, dispatcher, n) =
                    (new.plugin.clone(), self.dispatcher.clone(), name.clone());
                let handler =
                    tokio::task::spawn_blocking(move || PolicyHandler::new(n, dispatcher, &plugin))
                        .await
                        .expect("instantiating a policy panicked")
                        .map_err(failed)?;
                self.group(&name)
                    .swap_handler(Box::new(handler))
                    .await
                    .map_err(|source| DeployError::Swap {
                        plugin: name.clone(),
                        source,
                    })?;
            }
        }
        report.swap = swap_started.elapsed();
        report.swapped = true;
        if origin != DeployOrigin::File
            && let Err(e) = crate::reload::persist(&config.component, &new.bytes)
        {
            tracing::warn!(plugin = %name, path = %config.component.display(), error = %e, "deployed, but the component file could not be rewritten; a restart would load the old file");
            report.persist_error = Some(e.to_string());
        }
        self.registry.advance(new, origin != DeployOrigin::Rollback);
        tracing::info!(plugin = %name, from = %report.previous, to = %report.current, ?origin, cache = ?report.cache, prepare_ms = prepare.as_millis() as u64, swap_ms = report.swap.as_millis() as u64, "plugin version deployed");
        Ok(report)
    }

    /// The command handler of aggregate plugin `name`.
    /// Handles a command for aggregate `aggregate`, after the commands on its stream sent
    /// before it (one at a time per stream, so concurrent commands on one stream decide in turn
    /// instead of conflicting). The turn is held until the command's append returned, even when
    /// the caller stops waiting.
    pub async fn command(
        &self,
        aggregate: &str,
        request: CommandRequest,
    ) -> Result<CommandOutcome, SendError> {
        let handler = self
            .aggregates
            .get(aggregate)
            .ok_or_else(|| SendError::UnknownAggregate(aggregate.to_owned()))?
            .clone();
        let turn = self.commands.turn(&handler.stream_of(&request.id)).await?;
        // Deciding runs a plugin and appending waits for an fsync: both block. The caller's
        // span (an HTTP request's) goes along, so the command's span is its child.
        let span = tracing::Span::current();
        let outcome = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let _entered = span.enter();
            handler.handle(request)
        })
        .await
        .expect("handling a command panicked");
        Ok(outcome?)
    }

    pub fn aggregate(&self, name: &str) -> Option<&AggregateHandler> {
        self.aggregates.get(name).map(|a| &**a)
    }

    /// The running consumer groups (of every projector, policy and saga).
    pub fn groups(&self) -> &[Arc<GroupHandle>] {
        &self.groups
    }

    fn group(&self, name: &str) -> &Arc<GroupHandle> {
        self.groups
            .iter()
            .find(|g| g.name() == name)
            .expect("every consumer plugin has a group")
    }

    /// Lag of every group, per partition, from storage; a running rebuild's group
    /// (`name@rebuild`) follows its projector's.
    pub fn lag(&self) -> Result<Vec<(String, Vec<PartitionLag>)>, ReadError> {
        let mut out = Vec::new();
        for (name, topics) in self.consumers() {
            out.push((
                name.to_owned(),
                crate::consumer::lag(&self.log, name, topics)?,
            ));
            if self.rebuilding(name) {
                let group = crate::log::rebuild_group(name);
                let lag = crate::consumer::lag(&self.log, &group, topics)?;
                out.push((group, lag));
            }
        }
        Ok(out)
    }

    /// True when no group can make progress without new events: every partition is caught
    /// up, or waits on a blocking dead letter (only an operator moves it), no rebuild runs, no
    /// saga instance has a timer pending.
    pub fn is_idle(&self) -> Result<bool, ReadError> {
        if lock(&self.rebuilds)
            .values()
            .any(|r| r.status().is_running())
        {
            return Ok(false);
        }
        for (group, partitions) in self.lag()? {
            // A projector waiting on a failed start-up rebuild cannot move until an operator
            // deploys or rebuilds it.
            if self
                .groups
                .iter()
                .any(|g| g.name() == group && !g.is_running())
            {
                continue;
            }
            for p in partitions.iter().filter(|p| p.lag > 0) {
                let key = DeadLetterKey {
                    group: group.clone(),
                    topic: p.topic.clone(),
                    partition: p.partition,
                    offset: p.committed,
                };
                if !self.log.dead_letter(&key)?.is_some_and(|d| d.blocking) {
                    return Ok(false);
                }
            }
        }
        // A saga with a durable timer still has work (a step's timeout, a compensation).
        for saga in self.sagas.keys() {
            if !self.log.saga_timers(saga)?.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Returns once [`Host::is_idle`]: woken by commits, re-checked periodically for retries
    /// whose backoff ends without one.
    pub async fn wait_until_idle(&self) -> Result<(), ReadError> {
        let mut commits = self.log.commits();
        loop {
            commits.borrow_and_update();
            // `is_idle` reads the groups' lags one after another, not in one snapshot: a policy
            // may append its command's events and commit its offset between two of the reads,
            // so both lags read 0 while the new events wait. Idle counts only if nothing was
            // committed while it was being checked.
            if self.is_idle()? && !commits.has_changed().unwrap_or(false) {
                return Ok(());
            }
            // A closed watch cannot happen while we hold the log; the timeout covers it anyway.
            let _ = tokio::time::timeout(IDLE_RECHECK, commits.changed()).await;
        }
    }

    /// Stops every group after its in-flight batch, then closes the log (the writer drains
    /// and joins once the last handle is gone). Returns what each group did.
    pub async fn shutdown(self) -> Vec<GroupReport> {
        // It holds the groups' handles, which must be the last ones to stop them.
        #[cfg(feature = "kafka")]
        {
            let task = lock(&self.ownership).take();
            if let Some(task) = task {
                task.abort();
                let _ = task.await;
            }
        }
        // Rebuilds stop at a batch boundary and resume at the next start.
        for r in lock(&self.rebuilds).values() {
            r.interrupt();
        }
        let tasks = std::mem::take(&mut *lock(&self.rebuild_tasks));
        for t in tasks {
            let _ = t.await;
        }
        // Stop all groups at once: each finishes its in-flight batch in parallel.
        let stopping: Vec<_> = self
            .groups
            .into_iter()
            .map(|handle| {
                tokio::spawn(async move {
                    let metrics = handle.metrics().clone();
                    let name = handle.name().to_owned();
                    // The rebuild tasks are done, so this is the only handle left.
                    if let Ok(handle) = Arc::try_unwrap(handle) {
                        handle.stop().await;
                    }
                    GroupReport {
                        name,
                        events_processed: metrics.events_processed.load(Ordering::Relaxed),
                        batches_committed: metrics.batches_committed.load(Ordering::Relaxed),
                        failed_calls: metrics.failed_calls.load(Ordering::Relaxed),
                        dead_lettered: metrics.dead_lettered_total.load(Ordering::Relaxed),
                    }
                })
            })
            .collect();
        let mut reports = Vec::new();
        for task in stopping {
            let report = task.await.expect("stopping a consumer group panicked");
            tracing::info!(group = %report.name, events = report.events_processed, batches = report.batches_committed, "consumer group stopped");
            reports.push(report);
        }
        drop(self.aggregates);
        #[cfg(feature = "kafka")]
        if let Some(c) = self.cluster {
            tokio::task::spawn_blocking(move || c.shutdown())
                .await
                .expect("leaving the cluster panicked");
        }
        drop(self.log);
        reports
    }

    /// Where a command for aggregate `aggregate`'s instance `id` is decided: `None` here (the
    /// embedded log, or a name or id the command path refuses itself).
    pub fn route(&self, aggregate: &str, id: &str) -> Option<crate::cluster::Route> {
        #[cfg(feature = "kafka")]
        if let Some(c) = &self.cluster {
            let stream = self.aggregates.get(aggregate)?.stream_of(id);
            return c.route(&stream).ok();
        }
        let _ = (aggregate, id);
        None
    }

    /// The cluster as this host's replica sees it (`None` on the embedded log).
    pub fn cluster_status(&self) -> Option<crate::cluster::ClusterStatus> {
        #[cfg(feature = "kafka")]
        if let Some(c) = &self.cluster {
            return Some(c.status());
        }
        None
    }

    fn consumers(&self) -> impl Iterator<Item = (&str, &[String])> {
        let outboxes = self.config.outboxes.iter().map(|o| &o.group);
        self.config
            .plugins
            .iter()
            .filter_map(|p| p.role.group())
            .chain(outboxes)
            .map(|g| (g.name.as_str(), g.topics.as_slice()))
    }
}

mod queue;
#[cfg(test)]
mod tests;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A rebuild a projector needs at start.
struct PendingRebuild {
    /// Whether the live group may run meanwhile (not when its read model has another version).
    live: bool,
}

/// Reads (or creates) a projector's read-model record: its live group's configuration (the
/// live generation's scope), and the rebuild it needs before or while it runs, if any.
fn projector_start(
    log: &EventLog,
    group: &crate::consumer::GroupConfig,
    loaded: &LoadedPlugin,
    projection: &WasmProjection,
) -> Result<(crate::consumer::GroupConfig, Option<PendingRebuild>), ProjectionError> {
    let read_model_version = projection.read_model_version();
    let plugin_version = loaded.version.to_string();
    let init = ProjectionChange::Init {
        projector: group.name.clone(),
        read_model_version,
        plugin_version: plugin_version.clone(),
    };
    // The writer answers through a channel that must not be awaited from inside the runtime.
    let record = off_runtime(|| log.change_projection(init))?;
    let config = crate::consumer::GroupConfig {
        scope: Some(record.active.scope(&group.name)),
        ..group.clone()
    };
    if record.active.read_model_version != read_model_version {
        tracing::warn!(projector = %group.name, stored = record.active.read_model_version, plugin = read_model_version, "the read model has another version than the plugin declares: rebuilding it before the projector runs; queries answer from the old one meanwhile");
        return Ok((config, Some(PendingRebuild { live: false })));
    }
    match &record.rebuild {
        Some(r)
            if r.plugin_version == plugin_version && r.read_model_version == read_model_version =>
        {
            tracing::info!(projector = %group.name, generation = r.generation, "resuming an interrupted read-model rebuild");
            Ok((config, Some(PendingRebuild { live: true })))
        }
        Some(r) => {
            // Another version's rebuild (a deploy that never switched): it cannot finish.
            let abort = ProjectionChange::Abort {
                projector: group.name.clone(),
                generation: r.generation,
            };
            off_runtime(|| log.change_projection(abort))?;
            Ok((config, None))
        }
        None => Ok((config, None)),
    }
}

/// Runs `f` on a plain thread (blocking waits inside a tokio runtime panic).
fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| s.spawn(f).join().expect("a start-up step panicked"))
}

/// Saga `p`'s handler and the versions its lanes share with the host (pinned versions of
/// in-flight instances restored from the artifact cache), sending commands through
/// `dispatcher`.
/// The partition whose owner runs a saga on a clustered log, and whose records carry all of the
/// saga's commits: the first partition of its first topic.
#[cfg(feature = "kafka")]
fn saga_home(group: &crate::consumer::GroupConfig) -> (String, u32) {
    (group.topics.first().cloned().unwrap_or_default(), 0)
}

/// On a clustered log, gives each policy and relay group the partitions of its topics this host
/// owns, and each saga group all of its partitions while this host owns the saga's home
/// partition (`saga_home`), as ownership moves (looked at every 200 ms). A group revoked late
/// only loses a race: its commit records come after the new owner's claim, and every replica
/// skips them.
#[cfg(feature = "kafka")]
fn cluster_groups(
    cluster: Arc<crate::cluster::Cluster>,
    config: &Config,
    log: &EventLog,
    handles: &[Arc<GroupHandle>],
) -> tokio::task::JoinHandle<()> {
    use std::collections::BTreeSet;
    type Partitions = BTreeSet<(String, u32)>;
    /// A group that runs where its partitions are owned: all of them, and its saga's home.
    type Owned = (Arc<GroupHandle>, Partitions, Option<(String, u32)>);
    let mut groups: Vec<Owned> = Vec::new();
    let owned_kinds = config
        .plugins
        .iter()
        .filter_map(|p| match &p.role {
            Role::Policy(g) => Some((g, false)),
            Role::Saga(g) => Some((g, true)),
            _ => None,
        })
        .chain(config.outboxes.iter().map(|o| (&o.group, false)));
    for (group, saga) in owned_kinds {
        let Some(handle) = handles.iter().find(|h| h.name() == group.name) else {
            continue;
        };
        let all: Partitions = group
            .topics
            .iter()
            .filter_map(|t| log.topic(t))
            .flat_map(|t| (0..t.partitions).map(move |p| (t.name.clone(), p)))
            .collect();
        groups.push((handle.clone(), all, saga.then(|| saga_home(group))));
    }
    tokio::spawn(async move {
        let mut current: Vec<Partitions> = vec![Partitions::new(); groups.len()];
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            tick.tick().await;
            let owned: Partitions = cluster.owned().into_iter().collect();
            for ((handle, all, home), current) in groups.iter().zip(&mut current) {
                let want: Partitions = match home {
                    Some(h) if owned.contains(h) => all.clone(),
                    Some(_) => Partitions::new(),
                    None => all.intersection(&owned).cloned().collect(),
                };
                let revoke: Vec<_> = current.difference(&want).cloned().collect();
                if !revoke.is_empty() {
                    if let Err(e) = handle.revoke(revoke.clone()).await {
                        tracing::warn!(group = %handle.name(), error = %e, "revoking partitions");
                        continue;
                    }
                    tracing::info!(group = %handle.name(), partitions = ?revoke, "partitions revoked: another host owns them");
                    current.retain(|p| want.contains(p));
                }
                let assign: Vec<_> = want.difference(current).cloned().collect();
                if !assign.is_empty() {
                    // Tried again at the next look when it fails (storage).
                    match handle.assign(assign.clone()).await {
                        Ok(()) => {
                            tracing::info!(group = %handle.name(), partitions = ?assign, "partitions assigned: this host owns them");
                            current.extend(assign);
                        }
                        Err(e) => {
                            tracing::warn!(group = %handle.name(), error = %e, "assigning partitions")
                        }
                    }
                }
            }
        }
    })
}

fn saga_handler(
    log: &EventLog,
    runtime: &PluginRuntime,
    dispatcher: &Dispatcher,
    p: &crate::config::PluginConfig,
    loaded: &Arc<LoadedPlugin>,
) -> Result<(SagaHandler, Arc<SagaVersions>), HostError> {
    let saga_failed = |source| HostError::Saga {
        name: p.name.clone(),
        source,
    };
    let versions = SagaVersions::new(p.name.clone(), loaded.clone()).map_err(saga_failed)?;
    restore_pinned_versions(log, runtime, p, &versions);
    let handler = SagaHandler::new(
        log.clone(),
        dispatcher.clone(),
        versions.clone(),
        SagaOptions::default(),
    )
    .map_err(saga_failed)?;
    Ok((handler, versions))
}

/// Consumer group `name` as the host would run it, with its configured (current) plugin
/// version, without starting anything: for dead-letter operations on a stopped host. A policy
/// or saga gets every configured aggregate to send its commands to.
pub fn open_group(config: &Config, log: &EventLog, name: &str) -> Result<ConsumerGroup, HostError> {
    let p = config
        .plugin(name)
        .ok_or_else(|| HostError::NotAConsumer(name.to_owned()))?;
    // Their state is the cluster's (commit records every replica applies): a change made in
    // one stopped host's replica would be undone by nothing and seen by no other host.
    if matches!(config.log, crate::config::LogBackend::Kafka(_))
        && matches!(p.kind(), PluginKind::Policy | PluginKind::Saga)
    {
        return Err(crate::cluster::ClusterError::ReplicaOnly {
            what: format!("the consumer group of {} {name:?}", p.kind()),
        }
        .into());
    }
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(config.cache_dir.clone()),
        fuel: config.plugins.iter().any(|p| p.limits.fuel.is_some()),
        ..RuntimeConfig::default()
    })
    .map_err(HostError::Runtime)?;
    let load = |p: &crate::config::PluginConfig| {
        read_component(&p.component)
            .and_then(|bytes| runtime.load_spec(&p.name, p.kind(), &bytes, p.load_spec()))
            .map_err(|source| HostError::Load {
                name: p.name.clone(),
                path: p.component.clone(),
                source,
            })
    };
    let instantiate = |name: &str| {
        let name = name.to_owned();
        move |source| HostError::Instantiate { name, source }
    };
    // Policies and sagas send commands: every configured aggregate, as the host runs them.
    let dispatcher = || -> Result<Dispatcher, HostError> {
        let mut aggregates = BTreeMap::new();
        for a in &config.plugins {
            if let Some(options) = a.role.aggregate_options() {
                let handler = AggregateHandler::new(log.clone(), load(a)?, options)
                    .map_err(instantiate(&a.name))?;
                aggregates.insert(a.name.clone(), Arc::new(handler));
            }
        }
        Ok(Dispatcher::new(aggregates))
    };
    let (group, handler): (_, Box<dyn Handler>) = match &p.role {
        Role::Aggregate { .. } => return Err(HostError::NotAConsumer(name.to_owned())),
        Role::Projector(group) => {
            let loaded = load(p)?;
            let projection = WasmProjection::new(
                loaded
                    .instantiate()
                    .map_err(|e| instantiate(name)(e.into()))?,
            )
            .map_err(instantiate(name))?;
            let scope = log
                .read_models()
                .and_then(|v| v.live_scope(name))
                .map_err(|e| HostError::Group {
                    name: name.to_owned(),
                    source: e.into(),
                })?;
            let group = crate::consumer::GroupConfig {
                scope: Some(scope),
                ..group.clone()
            };
            (group, ProjectionHandler::boxed(projection))
        }
        Role::Policy(group) => {
            let handler =
                PolicyHandler::new(name, dispatcher()?, &load(p)?).map_err(instantiate(name))?;
            (group.clone(), Box::new(handler))
        }
        Role::Saga(group) => {
            let (handler, _) = saga_handler(log, &runtime, &dispatcher()?, p, &load(p)?)?;
            (group.clone(), Box::new(handler))
        }
    };
    ConsumerGroup::new(log.clone(), group, handler).map_err(|source| HostError::Group {
        name: name.to_owned(),
        source,
    })
}

/// Loads, from the artifact cache, the versions that in-flight instances of saga `p` are
/// pinned to but that its component file no longer holds (a deploy happened before the
/// restart), so they finish on their own version. A version not in the cache stays missing:
/// its instances need attention, as before.
fn restore_pinned_versions(
    log: &EventLog,
    runtime: &PluginRuntime,
    p: &crate::config::PluginConfig,
    versions: &SagaVersions,
) {
    let missing = match versions.missing_versions(log) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(saga = %p.name, error = %e, "listing the versions in-flight instances are pinned to");
            return;
        }
    };
    for hash in missing {
        let restored = runtime
            .load_cached(&p.name, p.kind(), &hash, p.load_spec())
            .map_err(|e| e.to_string())
            .and_then(|plugin| versions.restore_version(&plugin).map_err(|e| e.to_string()));
        match restored {
            Ok(()) => {
                tracing::info!(saga = %p.name, version = %hash, "restored a pinned saga version from the artifact cache")
            }
            Err(e) => {
                tracing::warn!(saga = %p.name, version = %hash, error = %e, "an in-flight saga version could not be restored; its instances need attention")
            }
        }
    }
}
