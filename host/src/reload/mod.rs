//! Hot reload: a new version of a running plugin is compiled and validated off the processing
//! path, then swapped in between batches (a batch never mixes versions); `rollback` returns to
//! the previous one. Two ways in: [`crate::host::Host::deploy`] (API, CLI) and the file watcher
//! ([`watch`]). Every version is identified by its content hash (plus an optional label) and
//! recorded in logs, dead letters and metrics.
//!
//! A deployed version is also written over the plugin's configured component file (atomically),
//! so a restart runs what was running; the watcher then sees its own write as "unchanged".

mod watch;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::consumer::ConsumerError;
use crate::plugin::{CacheOutcome, CallFailure, LoadError, LoadedPlugin, PluginVersion};

pub use watch::{PluginWatcher, WatchError};

/// Versions kept per plugin for `rollback`.
const HISTORY: usize = 8;

/// Where a deploy came from (logged, and decides whether the component file is rewritten).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeployOrigin {
    /// Bytes handed to the API or CLI.
    Api,
    /// The watcher saw the component file change.
    File,
    /// A rollback to a kept version.
    Rollback,
}

/// Why a deploy or rollback changed nothing. The running version stays in place.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("no plugin named {0:?} is configured")]
    UnknownPlugin(String),
    #[error("the new version of {plugin:?} was refused: {source}")]
    Load { plugin: String, source: LoadError },
    #[error("the new version of {plugin:?} failed to start: {source}")]
    Instantiate { plugin: String, source: CallFailure },
    #[error("swapping {plugin:?}: {source}")]
    Swap {
        plugin: String,
        source: ConsumerError,
    },
    /// The saga refused the new version (e.g. it defines another saga).
    #[error("the saga refused the new version of {plugin:?}: {source}")]
    Saga {
        plugin: String,
        source: crate::saga::SagaError,
    },
    #[error("{0:?} has no previous version to roll back to")]
    NoPrevious(String),
    /// A rebuild of the projector's read model runs; deploy once it has switched or failed.
    #[error("the read model of {0:?} is being rebuilt; deploy again once the rebuild has finished")]
    Rebuilding(String),
    #[error("reading the read-model record of {plugin:?}: {source}")]
    Storage {
        plugin: String,
        source: crate::log::ReadError,
    },
    /// The gate could not replay (bad bounds, storage): nothing was judged or deployed.
    #[error("gating the new version of {plugin:?}: {source}")]
    Gate {
        plugin: String,
        source: crate::gate::GateError,
    },
    /// The candidate's effects differ from the running version's (and the changes were not
    /// accepted), or it failed where the running version did not.
    #[error("the gate refused the new version of {plugin:?}: {report}")]
    GateRefused {
        plugin: String,
        report: Box<crate::gate::GateReport>,
    },
}

/// What a deploy did.
#[derive(Clone, Debug, Serialize)]
pub struct DeployReport {
    pub plugin: String,
    pub origin: DeployOrigin,
    pub previous: PluginVersion,
    pub current: PluginVersion,
    /// False when the bytes were the running version already (nothing swapped).
    pub swapped: bool,
    /// Whether the compiled artifact came from the cache.
    pub cache: CacheOutcome,
    /// Compile (or cache load) and validation, off the processing path.
    #[serde(serialize_with = "millis")]
    pub prepare: Duration,
    /// From the swap request to every lane running the new version.
    #[serde(serialize_with = "millis")]
    pub swap: Duration,
    /// Why the configured component file could not be rewritten, if it could not (a restart
    /// would then load the old file).
    pub persist_error: Option<String>,
    /// A projector version declaring another read-model version is not swapped in place: its
    /// read model is rebuilt beside the running one, and it becomes current when that switches
    /// (`swapped` stays false; the component file is rewritten then).
    pub rebuild: Option<crate::rebuild::RebuildStatus>,
    /// The gate's report, when the deploy was gated.
    pub gate: Option<crate::gate::GateReport>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// One version of a plugin as deployed.
#[derive(Clone)]
pub(crate) struct Deployed {
    pub plugin: Arc<LoadedPlugin>,
    pub bytes: Arc<[u8]>,
    pub deployed_at_ms: u64,
}

/// A plugin's running version and the ones before it, newest last.
#[derive(Clone, Debug, Serialize)]
pub struct VersionHistory {
    pub current: VersionInfo,
    pub previous: Vec<VersionInfo>,
    /// The last gated deploys' verdicts (refused ones too), newest last.
    pub gates: Vec<GateRecord>,
}

/// One gated deploy's verdict, as the plugin's history keeps it.
#[derive(Clone, Debug, Serialize)]
pub struct GateRecord {
    pub candidate: PluginVersion,
    pub verdict: crate::gate::GateVerdict,
    pub unit: &'static str,
    pub replayed: u64,
    pub differing: u64,
    pub counts: crate::gate::GateCounts,
    pub at_ms: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct VersionInfo {
    pub version: PluginVersion,
    pub deployed_at_ms: u64,
}

impl Deployed {
    fn info(&self) -> VersionInfo {
        VersionInfo {
            version: self.plugin.version.clone(),
            deployed_at_ms: self.deployed_at_ms,
        }
    }
}

struct Entry {
    current: Deployed,
    previous: Vec<Deployed>,
    gates: Vec<GateRecord>,
}

/// Every plugin's running version and history. Swaps are serialized by the host; this only
/// keeps the books.
#[derive(Default)]
pub(crate) struct Registry {
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, d: Deployed) {
        self.lock().insert(
            d.plugin.name.clone(),
            Entry {
                current: d,
                previous: Vec::new(),
                gates: Vec::new(),
            },
        );
    }

    pub fn current(&self, name: &str) -> Option<Deployed> {
        self.lock().get(name).map(|e| e.current.clone())
    }

    /// Every running version, by name.
    pub fn all_current(&self) -> Vec<Arc<LoadedPlugin>> {
        self.lock()
            .values()
            .map(|e| e.current.plugin.clone())
            .collect()
    }

    pub fn history(&self, name: &str) -> Option<VersionHistory> {
        self.lock().get(name).map(|e| VersionHistory {
            current: e.current.info(),
            previous: e.previous.iter().map(Deployed::info).collect(),
            gates: e.gates.clone(),
        })
    }

    /// Keeps a gate's verdict in `name`'s history (the last [`HISTORY`]).
    pub fn record_gate(&self, name: &str, record: GateRecord) {
        if let Some(e) = self.lock().get_mut(name) {
            e.gates.push(record);
            if e.gates.len() > HISTORY {
                e.gates.remove(0);
            }
        }
    }

    /// `d` becomes current; the old current is kept for rollback (unless rolling back).
    pub fn advance(&self, d: Deployed, keep_old: bool) {
        let mut entries = self.lock();
        let e = entries
            .get_mut(&d.plugin.name)
            .expect("only configured plugins are deployed");
        let old = std::mem::replace(&mut e.current, d);
        if keep_old {
            e.previous.push(old);
            if e.previous.len() > HISTORY {
                e.previous.remove(0);
            }
        }
    }

    /// The label of the version of `name` (current or kept) whose content is `bytes`.
    pub fn label_of(&self, name: &str, bytes: &[u8]) -> Option<String> {
        let hash = crate::plugin::content_hash(bytes);
        let entries = self.lock();
        let e = entries.get(name)?;
        std::iter::once(&e.current)
            .chain(e.previous.iter().rev())
            .find(|d| d.plugin.version.content_hash == hash)
            .and_then(|d| d.plugin.version.label.clone())
    }

    /// The component bytes of `name`'s version whose display (`label+hash`) or content hash is
    /// `version` (current or kept), or of the running one.
    pub fn bytes_of(&self, name: &str, version: Option<&str>) -> Option<Arc<[u8]>> {
        let entries = self.lock();
        let e = entries.get(name)?;
        let Some(v) = version else {
            return Some(e.current.bytes.clone());
        };
        std::iter::once(&e.current)
            .chain(e.previous.iter().rev())
            .find(|d| d.plugin.version.content_hash == v || d.plugin.version.to_string() == v)
            .map(|d| d.bytes.clone())
    }

    /// The version before the current one, taken off the history.
    pub fn pop_previous(&self, name: &str) -> Option<Deployed> {
        self.lock().get_mut(name)?.previous.pop()
    }

    /// Puts back a version `pop_previous` returned when the rollback failed.
    pub fn push_previous(&self, name: &str, d: Deployed) {
        if let Some(e) = self.lock().get_mut(name) {
            e.previous.push(d);
        }
    }
}

/// Writes `bytes` over `path` atomically (temp file, fsync, rename), so a crash leaves either
/// version, never half of one, and a watcher never reads a torn file.
pub(crate) fn persist(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
