//! Dead-letter exports: one self-describing file with everything a parked event's handling
//! depends on (`factline export`), and its replay in a fresh temporary data directory on any
//! machine (`factline replay FILE [--with CANDIDATE]`). The format is `docs/export-format.md`.
//!
//! What the handler reads is copied, by kind: a projector's live read model (whole, within
//! [`MAX_STATE_BYTES`]); for policies and sagas, every stream of the aggregates' topics (their
//! commands decide on them) and, for a saga, the instances the event's correlation id names.
//! Replay restores that state into a fresh log and runs the event through the group as the
//! host would, so clocks and randomness (from the envelope) are the recorded ones.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError, Role};
use crate::consumer::{ConsumerError, Replay};
use crate::event::{Event, now_millis};
use crate::host::HostError;
use crate::log::{
    AppendError, CommitError, DeadLetter, DeadLetterKey, EventLog, HandlerCommit, LogOptions,
    OpenError, ReadError, ReadModelWrite, SagaWrite, TimerChange,
};
use crate::plugin::{LoadError, PluginRuntime, RuntimeConfig};

/// The `format` field of every export file.
pub const EXPORT_FORMAT: &str = "factline-dead-letter-export";
/// The version of the layout this build writes and reads.
pub const EXPORT_VERSION: u32 = 1;
/// Most bytes of stored state (events, read-model rows, saga records) one export copies; a
/// context over it is refused, naming what did not fit.
pub const MAX_STATE_BYTES: usize = 64 << 20;
/// Most bytes of an export file (state plus components); `replay` reads no further.
pub const MAX_EXPORT_BYTES: u64 = 1 << 30;
/// Counted for each stored item on top of its payload (ids, names, envelope fields).
const ITEM_OVERHEAD: usize = 256;
/// Events read per call while copying a partition.
const READ_CHUNK: usize = 1024;

/// A parked event's context, as written to the file (MessagePack, fields by name).
#[derive(Debug, Serialize, Deserialize)]
pub struct Export {
    pub format: String,
    pub version: u32,
    /// Milliseconds since the Unix epoch.
    pub exported_at: u64,
    pub dead_letter: DeadLetter,
    /// The parked event as the handler saw it.
    pub event: Event,
    /// The host's configuration text, admin token redacted.
    pub config: String,
    /// The group's component (the version that failed last) and, for policies and sagas,
    /// every aggregate's running component and the saga versions in-flight instances use.
    pub components: Vec<Component>,
    /// Stored events to restore, each stream from its first version, in offset order.
    pub history: Vec<Event>,
    /// A projector's live read-model rows, by key.
    pub read_model: Vec<Row>,
    /// A saga's instances the event's correlation id names.
    pub sagas: Vec<SagaState>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Component {
    pub plugin: String,
    /// `group`, `aggregate` or `pinned` (a saga version an exported instance runs on).
    pub role: String,
    pub content_hash: String,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Row {
    pub key: String,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SagaState {
    pub instance_id: String,
    /// The saga runner's record, as stored.
    #[serde(with = "serde_bytes")]
    pub record: Vec<u8>,
}

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no dead letter at {0}")]
    NoDeadLetter(DeadLetterKey),
    #[error("no plugin {0:?} consumes partitions in this configuration")]
    UnknownGroup(String),
    #[error("the component of plugin {0:?} is not available")]
    MissingComponent(String),
    #[error("the parked event at {0} is no longer in the log")]
    MissingEvent(DeadLetterKey),
    #[error(
        "{what} is over the export's budget of {limit} bytes of state: replay it on the host (`factline dlq replay`) instead"
    )]
    TooLarge { what: String, limit: usize },
    #[error("reading the dead letter's context: {0}")]
    Read(#[from] ReadError),
    #[error("encoding the export: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// Why an export file could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is over the {limit} bytes an export may have", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{} is not a factline dead-letter export: {message}", path.display())]
    NotAnExport { path: PathBuf, message: String },
    #[error(
        "{} is an export of format version {found}; this build reads version {EXPORT_VERSION}",
        path.display()
    )]
    Version { path: PathBuf, found: u32 },
    #[error("the export's {0}")]
    Inconsistent(String),
    #[error("the export's configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("the candidate: {0}")]
    Candidate(LoadError),
    #[error("opening the replay's data directory: {0}")]
    Open(#[from] OpenError),
    #[error("restoring the exported state: {0}")]
    Restore(String),
    #[error("{0}")]
    Host(#[from] HostError),
    #[error("replaying the event: {0}")]
    Consumer(#[from] ConsumerError),
}

/// Writes the context of the dead letter at `key` (see the module docs for what it holds).
/// `component_of(plugin, version)` gives a plugin's component bytes: with `Some`, the version
/// whose display (`label+hash`) or content hash that is, if known; with `None`, the running one.
pub fn export(
    config: &Config,
    log: &EventLog,
    key: &DeadLetterKey,
    component_of: impl Fn(&str, Option<&str>) -> Option<Arc<[u8]>>,
) -> Result<Vec<u8>, ExportError> {
    let dead_letter = log
        .dead_letter(key)?
        .ok_or_else(|| ExportError::NoDeadLetter(key.clone()))?;
    let plugin = config
        .plugin(&key.group)
        .filter(|p| !matches!(p.role, Role::Aggregate { .. }))
        .ok_or_else(|| ExportError::UnknownGroup(key.group.clone()))?;
    let event = log
        .read_partition(&key.topic, key.partition, key.offset, 1)?
        .into_iter()
        .next()
        .filter(|e| e.offset == key.offset)
        .ok_or_else(|| ExportError::MissingEvent(key.clone()))?;
    let component = |name: &str, version: Option<&str>, role: &str| {
        // The version that failed when it is still known, else the running one.
        let bytes = version
            .and_then(|v| component_of(name, Some(v)))
            .or_else(|| component_of(name, None).filter(|_| role != "pinned"))
            .ok_or_else(|| ExportError::MissingComponent(name.to_owned()))?;
        Ok::<_, ExportError>(Component {
            plugin: name.to_owned(),
            role: role.to_owned(),
            content_hash: crate::plugin::content_hash(&bytes),
            bytes: bytes.to_vec(),
        })
    };
    let mut budget = Budget(MAX_STATE_BYTES);
    let mut components = vec![component(
        &plugin.name,
        Some(&dead_letter.plugin_version),
        "group",
    )?];
    let (mut history, mut read_model, mut sagas) = (Vec::new(), Vec::new(), Vec::new());
    match &plugin.role {
        Role::Aggregate { .. } => unreachable!("refused above"),
        Role::Projector(_) => {
            let view = log.read_models()?;
            let scope = view.live_scope(&plugin.name)?;
            let what = || format!("the read model of {}", plugin.name);
            let mut after: Option<String> = None;
            loop {
                let page = view.scan_prefix(&scope, "", after.as_deref(), READ_CHUNK)?;
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                for (key, value) in page {
                    budget.take(key.len() + value.len() + ITEM_OVERHEAD, what)?;
                    read_model.push(Row { key, value });
                }
            }
        }
        Role::Policy(_) | Role::Saga(_) => {
            for a in &config.plugins {
                if let Role::Aggregate { topic, .. } = &a.role {
                    components.push(component(&a.name, None, "aggregate")?);
                    copy_topic(log, topic, &mut history, &mut budget)?;
                }
            }
            if matches!(plugin.role, Role::Saga(_)) {
                let mut pinned = BTreeMap::new();
                for id in log.saga_correlated(&plugin.name, &event.correlation_id)? {
                    let Some(stored) = log.saga_instance(&plugin.name, &id)? else {
                        continue;
                    };
                    budget.take(stored.record.len() + ITEM_OVERHEAD, || {
                        format!("the instances of saga {}", plugin.name)
                    })?;
                    if let Ok(i) =
                        rmp_serde::from_slice::<crate::saga::SagaInstance>(&stored.record)
                    {
                        pinned.insert(i.plugin_version, ());
                    }
                    sagas.push(SagaState {
                        instance_id: id,
                        record: stored.record,
                    });
                }
                for hash in pinned.into_keys() {
                    if components.iter().all(|c| c.content_hash != hash)
                        && let Ok(c) = component(&plugin.name, Some(&hash), "pinned")
                    {
                        components.push(c);
                    }
                }
            }
        }
    }
    let export = Export {
        format: EXPORT_FORMAT.to_owned(),
        version: EXPORT_VERSION,
        exported_at: now_millis(),
        dead_letter,
        event,
        config: config.shareable_text.clone(),
        components,
        history,
        read_model,
        sagas,
    };
    Ok(rmp_serde::to_vec_named(&export)?)
}

/// What is left of an export's state budget.
struct Budget(usize);

impl Budget {
    fn take(&mut self, bytes: usize, what: impl FnOnce() -> String) -> Result<(), ExportError> {
        self.0 = self
            .0
            .checked_sub(bytes)
            .ok_or_else(|| ExportError::TooLarge {
                what: what(),
                limit: MAX_STATE_BYTES,
            })?;
        Ok(())
    }
}

/// Every event of `topic`, partition by partition in offset order (so each stream's versions
/// come in order).
fn copy_topic(
    log: &EventLog,
    topic: &str,
    out: &mut Vec<Event>,
    budget: &mut Budget,
) -> Result<(), ExportError> {
    let Some(info) = log.topic(topic).cloned() else {
        return Ok(());
    };
    for partition in 0..info.partitions {
        let mut from = 0;
        loop {
            let events = log.read_partition(topic, partition, from, READ_CHUNK)?;
            let Some(last) = events.last() else { break };
            from = last.offset + 1;
            for e in events {
                budget.take(e.payload.len() + ITEM_OVERHEAD, || {
                    format!("the history of topic {topic}")
                })?;
                out.push(e);
            }
        }
    }
    Ok(())
}

/// Reads an export file, refusing one over [`MAX_EXPORT_BYTES`] before reading it and any
/// other format or version by its header. Decoding allocates in proportion to the file:
/// lengths inside are checked against the bytes that are there.
pub fn read(path: &Path) -> Result<Export, ReplayError> {
    let io = |source| ReplayError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let too_large = || ReplayError::TooLarge {
        path: path.to_owned(),
        limit: MAX_EXPORT_BYTES,
    };
    if file.metadata().map_err(io)?.len() > MAX_EXPORT_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_EXPORT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_EXPORT_BYTES {
        return Err(too_large());
    }
    decode(&bytes).map_err(|e| match e {
        Decoded::NotAnExport(message) => ReplayError::NotAnExport {
            path: path.to_owned(),
            message,
        },
        Decoded::Version(found) => ReplayError::Version {
            path: path.to_owned(),
            found,
        },
    })
}

enum Decoded {
    NotAnExport(String),
    Version(u32),
}

fn decode(bytes: &[u8]) -> Result<Export, Decoded> {
    #[derive(Deserialize)]
    struct Header {
        format: String,
        version: u32,
    }
    let header: Header =
        rmp_serde::from_slice(bytes).map_err(|e| Decoded::NotAnExport(e.to_string()))?;
    if header.format != EXPORT_FORMAT {
        return Err(Decoded::NotAnExport(format!(
            "its format is {:?}",
            header.format
        )));
    }
    if header.version != EXPORT_VERSION {
        return Err(Decoded::Version(header.version));
    }
    rmp_serde::from_slice(bytes).map_err(|e| Decoded::NotAnExport(e.to_string()))
}

/// What a replay did.
#[derive(Debug)]
pub struct Replayed {
    pub outcome: Replay,
    /// The candidate's content hash, or the exported version's.
    pub content_hash: String,
    /// A failure with the recorded dead letter's kind and message.
    pub reproduced: bool,
}

/// Runs the exported event through its group, restored in `workdir` (a fresh, empty
/// directory: data, cache and components go there, nothing anywhere else), with the exported
/// component or `candidate`'s bytes.
pub fn replay(
    export: Export,
    candidate: Option<Vec<u8>>,
    workdir: &Path,
) -> Result<Replayed, ReplayError> {
    let mut config = Config::parse(&export.config, Path::new("the export"), workdir)?;
    let name = export.dead_letter.group.clone();
    let group_role = config
        .plugin(&name)
        .map(|p| p.role.clone())
        .ok_or_else(|| ReplayError::Inconsistent(format!("configuration has no plugin {name}")))?;
    let wants = |p: &crate::config::PluginConfig| {
        p.name == name
            || (matches!(p.role, Role::Aggregate { .. })
                && matches!(group_role, Role::Policy(_) | Role::Saga(_)))
    };
    config.plugins.retain(wants);
    config.data_dir = workdir.join("data");
    config.cache_dir = workdir.join("cache");
    let components = workdir.join("components");
    let write_io = |path: &Path| {
        let path = path.to_owned();
        move |source| ReplayError::Io { path, source }
    };
    std::fs::create_dir_all(&components).map_err(write_io(&components))?;
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(config.cache_dir.clone()),
        ..RuntimeConfig::default()
    })
    .map_err(|e| ReplayError::Restore(e.to_string()))?;
    for p in &mut config.plugins {
        let role = if p.name == name { "group" } else { "aggregate" };
        let c = export
            .components
            .iter()
            .find(|c| c.plugin == p.name && c.role == role)
            .ok_or_else(|| {
                ReplayError::Inconsistent(format!("components lack plugin {}", p.name))
            })?;
        let path = components.join(format!("{}.wasm", c.content_hash));
        std::fs::write(&path, &c.bytes).map_err(write_io(&path))?;
        p.component = path;
    }
    // Saga versions in-flight instances are pinned to load from the artifact cache.
    if let Some(p) = config.plugin(&name) {
        for c in export.components.iter().filter(|c| c.role == "pinned") {
            runtime
                .load_spec(&name, p.kind(), &c.bytes, p.load_spec())
                .map_err(|e| {
                    ReplayError::Restore(format!("saga version {}: {e}", c.content_hash))
                })?;
        }
    }
    let mut content_hash = export
        .components
        .iter()
        .find(|c| c.plugin == name && c.role == "group")
        .map(|c| c.content_hash.clone())
        .unwrap_or_default();
    if let Some(bytes) = candidate {
        // Checked here so a broken candidate is its own error, not a restore failure.
        let p = config.plugin(&name).expect("kept above");
        runtime
            .load_spec(&name, p.kind(), &bytes, p.load_spec())
            .map_err(ReplayError::Candidate)?;
        content_hash = crate::plugin::content_hash(&bytes);
        let path = components.join("candidate.wasm");
        std::fs::write(&path, &bytes).map_err(write_io(&path))?;
        let p = config
            .plugins
            .iter_mut()
            .find(|p| p.name == name)
            .expect("kept above");
        p.component = path;
    }
    let log = EventLog::open(
        &config.data_dir,
        LogOptions::with_topics(config.topics.iter().cloned()),
    )?;
    restore(&log, &export, &name)?;
    let mut group = crate::host::open_group(&config, &log, &name)?;
    let outcome = group.replay_event(export.event)?;
    let reproduced = matches!(&outcome, Replay::Failed(f)
        if f.kind == export.dead_letter.failure_kind && f.message == export.dead_letter.message);
    Ok(Replayed {
        outcome,
        content_hash,
        reproduced,
    })
}

/// The exported state into `log`: history, then read-model rows and saga instances in one
/// commit that moves no offset.
fn restore(log: &EventLog, export: &Export, group: &str) -> Result<(), ReplayError> {
    let failed = |e: AppendError| ReplayError::Restore(e.to_string());
    log.restore(&export.history).map_err(failed)?;
    let scope = log
        .read_models()
        .and_then(|v| v.live_scope(group))
        .map_err(|e| ReplayError::Restore(e.to_string()))?;
    let commit = HandlerCommit {
        group: group.to_owned(),
        topic: export.event.topic.clone(),
        partition: export.event.partition,
        keep_offset: true,
        read_model_writes: export
            .read_model
            .iter()
            .map(|r| ReadModelWrite {
                scope: scope.clone(),
                key: r.key.clone(),
                value: Some(r.value.clone()),
            })
            .collect(),
        saga_writes: export
            .sagas
            .iter()
            .map(|s| SagaWrite {
                saga: group.to_owned(),
                instance_id: s.instance_id.clone(),
                expected_revision: None,
                record: s.record.clone(),
                correlations: vec![export.event.correlation_id.clone()],
                timer: TimerChange::Keep,
            })
            .collect(),
        ..HandlerCommit::default()
    };
    if commit.read_model_writes.is_empty() && commit.saga_writes.is_empty() {
        return Ok(());
    }
    log.commit_handler(commit)
        .map_err(|e: CommitError| ReplayError::Restore(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
