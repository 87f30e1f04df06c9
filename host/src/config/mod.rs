//! The host's configuration file, `factline.toml` (commented example: `factline.example.toml`
//! at the repository root).
//!
//! Parsing is two steps: serde into `raw` structs that mirror the file (`deny_unknown_fields`
//! everywhere, names kept with their spans), then validation into [`Config`], whose types are
//! the ones the host uses (`TopicConfig`, `GroupConfig`, `Limits`, …). Every refusal names the
//! key and its line: serde errors carry toml's span, and validation keeps the spans of the
//! values it checks.

mod raw;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::consumer::GroupConfig;
use crate::log::TopicConfig;
use crate::plugin::{Capabilities, Limits, LoadSpec, PluginKind};

/// HTTP address used when `[http] address` is absent.
pub const DEFAULT_HTTP_ADDRESS: &str = "127.0.0.1:7070";

/// A validated configuration; paths are absolute or relative to the process's directory
/// (the file's relative paths are resolved against the file's own directory).
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the log, read models and compiled-plugin cache live.
    pub data_dir: PathBuf,
    /// Compiled components, by content hash (default `<data_dir>/cache`). Hosts may share one:
    /// a Python or JavaScript component compiles in seconds and loads from it in milliseconds.
    pub cache_dir: PathBuf,
    pub http: HttpConfig,
    /// Bearer token the admin API will require; `None` leaves it open.
    pub admin_token: Option<AdminToken>,
    /// Most batches running at once over all consumer groups.
    pub workers: usize,
    /// `factline run` deploys a plugin whose component file changes (default true).
    pub watch_plugins: bool,
    pub topics: Vec<TopicConfig>,
    pub plugins: Vec<PluginConfig>,
    /// `[[outbox]]`: relays publishing topics to an external Kafka topic.
    pub outboxes: Vec<OutboxConfig>,
    pub telemetry: TelemetryConfig,
    /// `[log]`: the embedded redb log (default) or a Kafka-protocol cluster.
    pub log: LogBackend,
    /// The text this was parsed from with the admin token's value replaced by `"redacted"`:
    /// what a dead-letter export carries, so its replay configures the group the same way.
    pub shareable_text: String,
}

/// One `[[outbox]]` entry: a consumer group (named after the entry) publishing its topics'
/// events to a Kafka topic. It blocks on an event it cannot publish (after its retries), since
/// skipping one would break the order an outside consumer sees.
#[derive(Clone, Debug)]
pub struct OutboxConfig {
    pub group: GroupConfig,
    /// Only these event types; `None`: every event of the topics.
    pub event_types: Option<Vec<String>>,
    pub bootstrap_servers: String,
    pub kafka_topic: String,
    /// Partitions of the Kafka topic when the relay creates it: the most of its topics'.
    pub kafka_partitions: u32,
}

/// `[log] backend`: where the log lives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LogBackend {
    /// The embedded redb log in `data_dir` (the default).
    #[default]
    Redb,
    /// A Kafka-protocol cluster; `data_dir` holds this host's replica (`docs/cluster.md`).
    Kafka(KafkaConfig),
}

/// `[log] backend = "kafka"`: the cluster and this host's place in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    /// Unique per host: its static group membership and the name in its claims.
    pub host_id: String,
    /// Where the other hosts forward commands to this one (no trailing `/`).
    pub advertise_url: String,
    /// Kafka topic of factline topic `t`: `{topic_prefix}.{t}`; ownership group
    /// `{topic_prefix}.owners`.
    pub topic_prefix: String,
}

/// `[telemetry]`: where spans go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// An OTLP/HTTP collector's base URL (`/v1/traces` is appended); `None`: the standard
    /// `OTEL_EXPORTER_OTLP_*ENDPOINT` variables decide, and without them no span leaves.
    pub otlp_endpoint: Option<String>,
}

/// `[http]`: parsed now, served by the HTTP API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    pub address: SocketAddr,
    /// `GET /metrics` needs the admin token too (default: open, as Prometheus scrapers expect).
    pub protect_metrics: bool,
}

/// The admin token; its `Debug` never shows it (configs end up in logs).
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// One `[[plugins]]` entry.
#[derive(Clone, Debug)]
pub struct PluginConfig {
    pub name: String,
    /// The `.wasm` component.
    pub component: PathBuf,
    /// The version label recorded with the content hash (`version`).
    pub label: Option<String>,
    pub limits: Limits,
    /// Real clocks or randomness, granted (nothing by default).
    pub capabilities: Capabilities,
    /// The kind, with exactly the settings that kind accepts.
    pub role: Role,
}

impl PluginConfig {
    pub fn kind(&self) -> PluginKind {
        self.role.kind()
    }

    /// How to load this plugin (any version of it).
    pub fn load_spec(&self) -> LoadSpec {
        LoadSpec {
            limits: self.limits.clone(),
            capabilities: self.capabilities.clone(),
            label: self.label.clone(),
        }
    }
}

/// What the host does with a plugin: one variant per kind, holding exactly the keys that kind
/// accepts (the others are refused with their line when the file is read).
#[derive(Clone, Debug)]
pub enum Role {
    /// Handles commands for the streams of `topic` (its stream category).
    Aggregate {
        topic: String,
        /// Snapshot every this many events of a stream (`snapshot_every`; none when absent).
        snapshot_every: Option<std::num::NonZeroU64>,
    },
    /// A consumer group named after the plugin, which is also its read-model scope.
    Projector(GroupConfig),
    /// A consumer group named after the plugin, sending commands to local aggregates.
    Policy(GroupConfig),
    /// A consumer group named after the plugin, with durable instances and timers.
    Saga(GroupConfig),
}

impl Role {
    pub fn kind(&self) -> PluginKind {
        match self {
            Role::Aggregate { .. } => PluginKind::Aggregate,
            Role::Projector(_) => PluginKind::Projector,
            Role::Policy(_) => PluginKind::Policy,
            Role::Saga(_) => PluginKind::Saga,
        }
    }

    /// How an aggregate's handler runs (its topic and snapshots), for an aggregate.
    pub fn aggregate_options(&self) -> Option<crate::aggregate::AggregateOptions> {
        match self {
            Role::Aggregate {
                topic,
                snapshot_every,
            } => Some(crate::aggregate::AggregateOptions {
                snapshot_every: *snapshot_every,
                ..crate::aggregate::AggregateOptions::new(topic.clone())
            }),
            _ => None,
        }
    }

    /// The consumer group of a projector, policy or saga.
    pub fn group(&self) -> Option<&GroupConfig> {
        match self {
            Role::Aggregate { .. } => None,
            Role::Projector(g) | Role::Policy(g) | Role::Saga(g) => Some(g),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A syntax, type or validation error, located in the file.
    #[error("{}", describe(origin, at.as_ref(), message))]
    Invalid {
        /// The file (or a name for text that came from elsewhere).
        origin: PathBuf,
        /// Where, when known.
        at: Option<Location>,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// A position in the configuration text (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    /// The whole line, to show the key in context.
    pub text: String,
}

impl Location {
    fn of(source: &str, span: &Range<usize>) -> Location {
        let start = span.start.min(source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        Location {
            line: source[..start].matches('\n').count() + 1,
            column: source[line_start..start].chars().count() + 1,
            text: source[line_start..line_end].trim_end().to_owned(),
        }
    }
}

/// `file:line:column: message`, then the line itself, so the key is visible in context.
fn describe(origin: &Path, at: Option<&Location>, message: &str) -> String {
    match at {
        Some(a) => format!(
            "{}:{}:{}: {message}\n{:>5} | {}",
            origin.display(),
            a.line,
            a.column,
            a.line,
            a.text
        ),
        None => format!("{}: {message}", origin.display()),
    }
}

impl ConfigError {
    /// The location of an `Invalid` error.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Invalid { at, .. } => at.as_ref(),
            ConfigError::Read { .. } => None,
        }
    }
}

impl Config {
    /// Reads, parses and validates `path`, and checks that every component file exists.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        // Relative paths in the file are relative to the file, not to wherever the host starts;
        // made absolute so logs and errors say exactly which file is meant.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let base = match absolute.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        raw::parse(&text, path, &base, true)
    }

    /// Parses and validates `text` without touching the file system; `origin` names it in
    /// errors and relative paths are resolved against `base`.
    pub fn parse(text: &str, origin: &Path, base: &Path) -> Result<Config, ConfigError> {
        raw::parse(text, origin, base, false)
    }

    pub fn plugin(&self, name: &str) -> Option<&PluginConfig> {
        self.plugins.iter().find(|p| p.name == name)
    }
}
