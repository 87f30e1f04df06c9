//! The plugin runtime: loads WebAssembly components with wasmtime and calls them safely.
//!
//! **Architecture invariant:** this is the only module that imports `wasmtime`. Callers see
//! plugin kinds, versions, typed outcomes ([`Decision`], [`CallFailure`]) and never a trap.
//!
//! - `bindings`: generated from `wit/`, one module per world.
//! - `host/`: one file per imported WIT interface (logging, read-model).
//! - `cache`: compiled artifacts on disk, keyed by content and engine.
//! - `boundary`: the encoding a component declares for values at its boundary (MessagePack as
//!   stored, or JSON for interpreted guests) and the lossless transcoding between them.
//! - `limits`, `state`: what each `Store` holds and may use.
//! - `instance`: the store machinery every instance shares: one `Store` + instance per
//!   handler, deadline, fuel, seed and clock per call, rebuilt after any trap.
//! - `worlds`: one instance type per world (`AggregateInstance`, `ProjectorInstance`,
//!   `PolicyInstance`, `SagaInstance`), each with only its world's calls.

mod bindings;
mod boundary;
mod cache;
mod capabilities;
mod error;
mod host;
mod instance;
mod limits;
mod state;
mod worlds;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine};

pub use boundary::Boundary;
pub use cache::CacheOutcome;
pub use cache::content_hash;
pub use capabilities::Capabilities;
pub use error::{CallFailure, FailureKind, InstantiateError, LoadError};
pub(crate) use host::read_model::Overlay;
pub use host::read_model::ReadModelSession;
pub use instance::Instantiate;
#[cfg(test)]
pub(crate) use instance::check_msgpack;
pub use limits::Limits;
pub use worlds::{
    AggregateInstance, CommandInput, Decision, OutgoingCommand, PolicyInstance, ProducedEvent,
    ProjectorInstance, Rejection, SagaDefinition, SagaInstance, SagaStep, Verdict,
};

use state::HostState;

/// The four plugin kinds, one WIT world each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    Aggregate,
    Projector,
    Policy,
    Saga,
}

impl PluginKind {
    /// The export interface the world requires.
    pub fn export_interface(self) -> &'static str {
        match self {
            PluginKind::Aggregate => "factline:plugin/aggregate-handler@0.1.0",
            PluginKind::Projector => "factline:plugin/projector-handler@0.1.0",
            PluginKind::Policy => "factline:plugin/policy-handler@0.1.0",
            PluginKind::Saga => "factline:plugin/saga-handler@0.1.0",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Aggregate => "aggregate",
            PluginKind::Projector => "projector",
            PluginKind::Policy => "policy",
            PluginKind::Saga => "saga",
        })
    }
}

impl std::str::FromStr for PluginKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "aggregate" => Ok(PluginKind::Aggregate),
            "projector" => Ok(PluginKind::Projector),
            "policy" => Ok(PluginKind::Policy),
            "saga" => Ok(PluginKind::Saga),
            other => Err(format!(
                "unknown plugin kind {other:?} (aggregate, projector, policy, saga)"
            )),
        }
    }
}

/// Identity of one loaded version of a plugin.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PluginVersion {
    /// SHA-256 of the component bytes, hex.
    pub content_hash: String,
    /// Version string from the configuration, if any.
    pub label: Option<String>,
}

impl std::fmt::Display for PluginVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = &self.content_hash[..12.min(self.content_hash.len())];
        match &self.label {
            Some(l) => write!(f, "{l}+{short}"),
            None => f.write_str(short),
        }
    }
}

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where compiled artifacts are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Granularity of call deadlines.
    pub epoch_tick: Duration,
    /// Meter fuel, so plugins may have a fuel limit (`Limits::fuel`). Off by default: metering
    /// costs every plugin a little, and only plugins that need a deterministic budget use it.
    pub fuel: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            epoch_tick: Duration::from_millis(10),
            fuel: false,
        }
    }
}

struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One wasmtime engine, its linkers and the artifact cache. Share it (`Arc`) across plugins.
pub struct PluginRuntime {
    engine: Engine,
    cache: cache::ArtifactCache,
    linkers: [Linker<HostState>; 4],
    epoch_tick: Duration,
    fuel: bool,
    /// Shared with every loaded plugin: deadlines must keep ticking while any plugin is in use,
    /// even after the runtime itself is dropped.
    ticker: Arc<Ticker>,
    /// Log rate limits by plugin name: every version and instance of a plugin shares one.
    log_budgets: std::sync::Mutex<std::collections::HashMap<String, Arc<limits::LogBudget>>>,
}

/// How to load one plugin version: its sandbox, grants and version label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadSpec {
    pub limits: Limits,
    pub capabilities: Capabilities,
    /// Version string from the configuration, recorded with the content hash.
    pub label: Option<String>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime").finish_non_exhaustive()
    }
}

fn kind_index(kind: PluginKind) -> usize {
    match kind {
        PluginKind::Aggregate => 0,
        PluginKind::Projector => 1,
        PluginKind::Policy => 2,
        PluginKind::Saga => 3,
    }
}

impl PluginRuntime {
    pub fn new(config: RuntimeConfig) -> Result<Self, LoadError> {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(config.fuel)
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(64))
            .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable);
        let engine = Engine::new(&cfg).map_err(|e| LoadError::Engine(e.to_string()))?;
        let engine_err = |e: wasmtime::Error| LoadError::Engine(e.to_string());
        let mut linkers = [(); 4].map(|_| Linker::<HostState>::new(&engine));
        for (i, linker) in linkers.iter_mut().enumerate() {
            wasmtime_wasi::p2::add_to_linker_sync(linker).map_err(engine_err)?;
            bindings::logging::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
                linker,
                |s| s,
            )
            .map_err(engine_err)?;
            if i == kind_index(PluginKind::Projector) {
                bindings::read_model::add_to_linker::<
                    HostState,
                    wasmtime::component::HasSelf<HostState>,
                >(linker, |s| s)
                .map_err(engine_err)?;
                bindings::json_read_model::add_to_linker::<
                    HostState,
                    wasmtime::component::HasSelf<HostState>,
                >(linker, |s| s)
                .map_err(engine_err)?;
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (engine, stop, tick) = (engine.clone(), stop.clone(), config.epoch_tick);
            std::thread::Builder::new()
                .name("factline-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| LoadError::Engine(e.to_string()))?;
        }
        Ok(PluginRuntime {
            cache: cache::ArtifactCache::new(&engine, config.cache_dir),
            engine,
            linkers,
            epoch_tick: config.epoch_tick,
            fuel: config.fuel,
            ticker: Arc::new(Ticker { stop }),
            log_budgets: Default::default(),
        })
    }

    /// Loads, compiles (or takes from the cache) and validates a component file as `kind`.
    pub fn load_file(
        &self,
        name: &str,
        kind: PluginKind,
        path: &Path,
        limits: Limits,
        label: Option<String>,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let bytes = read_component(path)?;
        self.load(name, kind, &bytes, limits, label)
    }

    /// Like [`PluginRuntime::load_file`], from bytes, with no capabilities granted.
    pub fn load(
        &self,
        name: &str,
        kind: PluginKind,
        bytes: &[u8],
        limits: Limits,
        label: Option<String>,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let spec = LoadSpec {
            limits,
            label,
            ..LoadSpec::default()
        };
        self.load_spec(name, kind, bytes, spec)
    }

    /// Loads one version of a plugin from its bytes: compile (or take the cached artifact),
    /// check the world, pre-instantiate, and instantiate once to prove it starts.
    pub fn load_spec(
        &self,
        name: &str,
        kind: PluginKind,
        bytes: &[u8],
        spec: LoadSpec,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let LoadSpec {
            limits,
            capabilities,
            label,
        } = spec;
        if limits.fuel.is_some() && !self.fuel {
            return Err(LoadError::FuelDisabled);
        }
        let started = Instant::now();
        let content_hash = cache::content_hash(bytes);
        let boundary = boundary::declared(bytes).map_err(LoadError::Boundary)?;
        let (component, cache_outcome) = self
            .cache
            .load_or_compile(&self.engine, bytes, &content_hash, boundary)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let version = PluginVersion {
            content_hash,
            label,
        };
        let spec = LoadSpec {
            limits,
            capabilities,
            label: None,
        };
        let loaded = Compiled {
            component,
            boundary,
            cache_outcome,
        };
        self.validate(name, kind, loaded, version, spec, started)
    }

    /// Loads version `content_hash` of a plugin from the artifact cache alone, without its
    /// component bytes (a saga instance pinned to a version no longer on disk, after a
    /// restart). Validated like any load.
    pub fn load_cached(
        &self,
        name: &str,
        kind: PluginKind,
        content_hash: &str,
        spec: LoadSpec,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        if spec.limits.fuel.is_some() && !self.fuel {
            return Err(LoadError::FuelDisabled);
        }
        let started = Instant::now();
        let (component, boundary) = self
            .cache
            .load(&self.engine, content_hash)
            .ok_or_else(|| LoadError::NotCached(content_hash.to_owned()))?;
        let version = PluginVersion {
            content_hash: content_hash.to_owned(),
            label: spec.label.clone(),
        };
        let loaded = Compiled {
            component,
            boundary,
            cache_outcome: CacheOutcome::Hit,
        };
        self.validate(name, kind, loaded, version, spec, started)
    }

    /// Checks a compiled component against its kind's world and starts it once.
    fn validate(
        &self,
        name: &str,
        kind: PluginKind,
        compiled: Compiled,
        version: PluginVersion,
        spec: LoadSpec,
        started: Instant,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let LoadSpec {
            limits,
            capabilities,
            ..
        } = spec;
        let Compiled {
            component,
            boundary,
            cache_outcome,
        } = compiled;
        let json_world = check_world(&self.engine, &component, kind)?;
        // A `json-projector` takes JSON whatever its sections say.
        let boundary = if json_world { Boundary::Json } else { boundary };
        if boundary == Boundary::Json && kind != PluginKind::Projector {
            return Err(LoadError::Boundary(format!(
                "it declares JSON at its boundary, which only projectors are given (this is a {kind})"
            )));
        }
        let pre = self.linkers[kind_index(kind)]
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WrongWorld {
                kind,
                detail: format!("{e:#}"),
            })?;
        let pre = KindPre::new(kind, pre, json_world)?;
        let log_budget = {
            let mut budgets = self.log_budgets.lock().unwrap_or_else(|p| p.into_inner());
            let budget = budgets.entry(name.to_owned()).or_insert_with(|| {
                Arc::new(limits::LogBudget::new(
                    name.into(),
                    limits.log_lines_per_second,
                ))
            });
            budget.set_rate(limits.log_lines_per_second);
            budget.clone()
        };
        let plugin = Arc::new(LoadedPlugin {
            name: name.into(),
            kind,
            version,
            pre,
            limits,
            capabilities,
            log_budget,
            fuel_enabled: self.fuel,
            epoch_tick: self.epoch_tick,
            _ticker: self.ticker.clone(),
            cache_outcome,
            boundary,
            load_time: started.elapsed(),
        });
        // Instantiating once proves the component starts (start functions, memory limits).
        plugin
            .pre
            .start(&plugin)
            .map_err(|f| LoadError::Instantiate(f.to_string()))?;
        Ok(plugin)
    }
}

/// A compiled component as the cache (or the compiler) handed it over.
struct Compiled {
    component: Component,
    boundary: Boundary,
    cache_outcome: CacheOutcome,
}

/// Reads a component file, naming it in the error.
pub fn read_component(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// WASI interfaces every plugin links against (wasmtime-wasi p2); what they may *do* is decided
/// by the empty `WasiCtx` (no directories, env, args or sockets).
const WASI_PREFIXES: [&str; 6] = [
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// The export of a projector built for the `json-projector` world (instead of
/// [`PluginKind::export_interface`]'s).
const JSON_PROJECTOR_EXPORT: &str = "factline:plugin/json-projector-handler@0.1.0";

/// Refuses a component of another world, or one that imports what its kind is not given,
/// naming the export or import. `instantiate_pre` then type-checks the details. True for a
/// projector of the `json-projector` world.
fn check_world(
    engine: &Engine,
    component: &Component,
    kind: PluginKind,
) -> Result<bool, LoadError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    let json_world =
        kind == PluginKind::Projector && exports.iter().any(|e| e == JSON_PROJECTOR_EXPORT);
    let wanted = if json_world {
        JSON_PROJECTOR_EXPORT
    } else {
        kind.export_interface()
    };
    let missing = || LoadError::WrongWorld {
        kind,
        detail: format!(
            "it does not export `{wanted}`; it exports [{}]",
            exports.join(", ")
        ),
    };
    // A plugin of another kind is named as such; otherwise imports come first, so a component
    // needing something the host never provides (say `wasi:http`) is refused for that.
    let other_kind = exports
        .iter()
        .any(|e| e.starts_with("factline:plugin/") && e.as_str() != wanted);
    if other_kind && !exports.iter().any(|e| e == wanted) {
        return Err(missing());
    }
    for (name, _) in ty.imports(engine) {
        let allowed = WASI_PREFIXES.iter().any(|p| name.starts_with(p))
            || name.starts_with("factline:plugin/logging@")
            || name.starts_with("factline:plugin/types@")
            || (kind == PluginKind::Projector
                && (name.starts_with("factline:plugin/read-model@")
                    || name.starts_with("factline:plugin/json-read-model@")));
        if !allowed {
            return Err(LoadError::ForbiddenImport {
                kind,
                import: name.to_owned(),
            });
        }
    }
    if !exports.iter().any(|e| e == wanted) {
        return Err(missing());
    }
    Ok(json_world)
}

/// The typed pre-instance of the plugin's world (type-checked once per plugin version). Shared
/// with every instance, which rebuilds its store from it.
pub(crate) enum KindPre {
    Aggregate(Arc<worlds::AggregatePre>),
    Projector(Arc<worlds::ProjectorPre>),
    Policy(Arc<bindings::policy::PolicyPre<HostState>>),
    Saga(Arc<bindings::saga::SagaPre<HostState>>),
}

impl KindPre {
    fn new(
        kind: PluginKind,
        pre: InstancePre<HostState>,
        json_world: bool,
    ) -> Result<Self, LoadError> {
        let wrong = |e: wasmtime::Error| LoadError::WrongWorld {
            kind,
            detail: format!("{e:#}"),
        };
        Ok(match kind {
            PluginKind::Aggregate => {
                // The `schema-evolution` export is optional.
                let evolution = bindings::schema_evolution::GuestIndices::new(&pre).ok();
                KindPre::Aggregate(Arc::new(worlds::AggregatePre {
                    handler: bindings::aggregate::AggregatePre::new(pre).map_err(wrong)?,
                    evolution,
                }))
            }
            PluginKind::Projector => {
                // The `read-model-evolution` export is optional.
                let evolution = bindings::read_model_evolution::GuestIndices::new(&pre).ok();
                let handler = if json_world {
                    worlds::ProjectorWorldPre::Json(
                        bindings::json_projector::JsonProjectorPre::new(pre).map_err(wrong)?,
                    )
                } else {
                    worlds::ProjectorWorldPre::Bytes(
                        bindings::projector::ProjectorPre::new(pre).map_err(wrong)?,
                    )
                };
                KindPre::Projector(Arc::new(worlds::ProjectorPre { handler, evolution }))
            }
            PluginKind::Policy => KindPre::Policy(Arc::new(
                bindings::policy::PolicyPre::new(pre).map_err(wrong)?,
            )),
            PluginKind::Saga => {
                KindPre::Saga(Arc::new(bindings::saga::SagaPre::new(pre).map_err(wrong)?))
            }
        })
    }

    /// Instantiates `plugin` (whose pre-instance this is) once as its own world.
    fn start(&self, plugin: &Arc<LoadedPlugin>) -> Result<(), CallFailure> {
        let plugin = plugin.clone();
        match self {
            KindPre::Aggregate(pre) => instance::Core::new(plugin, pre.clone()).map(drop),
            KindPre::Projector(pre) => instance::Core::new(plugin, pre.clone()).map(drop),
            KindPre::Policy(pre) => instance::Core::new(plugin, pre.clone()).map(drop),
            KindPre::Saga(pre) => instance::Core::new(plugin, pre.clone()).map(drop),
        }
    }
}

/// One compiled, validated version of a plugin. Instantiate it once per handler.
pub struct LoadedPlugin {
    pub name: String,
    pub kind: PluginKind,
    pub version: PluginVersion,
    pre: KindPre,
    pub limits: Limits,
    pub capabilities: Capabilities,
    log_budget: Arc<limits::LogBudget>,
    /// The engine meters fuel: every call gets `limits.fuel` (or unlimited).
    fuel_enabled: bool,
    epoch_tick: Duration,
    /// Keeps the epoch ticker alive while this plugin can be called.
    _ticker: Arc<Ticker>,
    pub cache_outcome: CacheOutcome,
    /// How values cross its boundary, as the component declares (`boundary`).
    pub boundary: Boundary,
    /// Time to read, compile or load, and validate.
    pub load_time: Duration,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// A fresh instance of world `I` in its own `Store`: `AggregateInstance`,
    /// `ProjectorInstance`, `PolicyInstance` or `SagaInstance`. A plugin of another kind is
    /// refused here, once ([`InstantiateError::KindMismatch`]); the instance's calls are then
    /// only its world's.
    pub fn instantiate<I: Instantiate>(self: &Arc<Self>) -> Result<I, InstantiateError> {
        I::from_loaded(self)
    }
}
