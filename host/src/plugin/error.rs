//! How plugin loading and plugin calls fail. A business rejection is NOT here: it is a normal
//! outcome of `decide` (see `Decision`), never retried and never a crash.

use serde::{Deserialize, Serialize};

use super::PluginKind;

/// Why a component could not be loaded. The running version (if any) stays in place.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read component {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    #[error(
        "component does not fit the `{kind}` world: it imports `{import}`, which a {kind} plugin is not given"
    )]
    ForbiddenImport { kind: PluginKind, import: String },
    #[error("component is not a `{kind}` plugin: {detail}")]
    WrongWorld { kind: PluginKind, detail: String },
    #[error("component failed to instantiate: {0}")]
    Instantiate(String),
    #[error(
        "the plugin has a fuel limit but the runtime does not meter fuel (RuntimeConfig::fuel)"
    )]
    FuelDisabled,
    #[error("engine error: {0}")]
    Engine(String),
    /// No usable compiled artifact of this version is in the cache (only its hash is known).
    #[error("version {0} is not in the artifact cache")]
    NotCached(String),
}

/// What went wrong in a call, for retry decisions, metrics and the dead-letter record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The guest trapped (panic, unreachable, stack overflow, out-of-bounds access).
    Trap,
    /// The guest tried to grow memory or tables past its limit.
    MemoryLimit,
    /// The call ran past its deadline (epoch interruption).
    Deadline,
    /// The call used up its fuel (deterministic instruction budget).
    Fuel,
    /// The guest returned its own `failure` (bad input, a bug it detected).
    Guest,
    /// The guest returned something the host refuses (undecodable, oversized).
    BadOutput,
    /// Instantiation or a host function failed.
    Host,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::Trap => "trap",
            FailureKind::MemoryLimit => "memory limit",
            FailureKind::Deadline => "deadline",
            FailureKind::Fuel => "fuel limit",
            FailureKind::Guest => "plugin failure",
            FailureKind::BadOutput => "bad output",
            FailureKind::Host => "host error",
        })
    }
}

/// A failed call: retried with backoff by the caller, then parked with all of this.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct CallFailure {
    pub kind: FailureKind,
    pub message: String,
    /// The guest's stack at the trap, innermost frame first, when there was one.
    pub backtrace: Option<String>,
    /// Which event of the delivered batch caused it, when known.
    pub event_index: Option<u32>,
}

impl CallFailure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        CallFailure {
            kind,
            message: message.into(),
            backtrace: None,
            event_index: None,
        }
    }
}
