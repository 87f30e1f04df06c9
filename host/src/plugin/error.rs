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
        "component does not fit the `{kind}` world: it imports `{import}`, which the `{kind}` world does not give"
    )]
    ForbiddenImport { kind: PluginKind, import: String },
    #[error("component is not a plugin of the `{kind}` world: {detail}")]
    WrongWorld { kind: PluginKind, detail: String },
    #[error("component failed to instantiate: {0}")]
    Instantiate(String),
    #[error(
        "the plugin has a fuel limit but the runtime does not meter fuel (RuntimeConfig::fuel)"
    )]
    FuelDisabled,
    /// The component's boundary declaration (custom section `factline:boundary`) is unusable.
    #[error("component's boundary declaration: {0}")]
    Boundary(String),
    #[error("engine error: {0}")]
    Engine(String),
    /// No usable compiled artifact of this version is in the cache (only its hash is known).
    #[error("version {0} is not in the artifact cache")]
    NotCached(String),
}

pub use crate::failure::FailureKind;

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

/// Why a loaded plugin could not be instantiated as a world.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InstantiateError {
    /// The plugin was loaded as another kind than the instance type asked for.
    #[error("plugin {plugin} is of kind {kind}, not {wanted}")]
    KindMismatch {
        plugin: String,
        kind: PluginKind,
        wanted: PluginKind,
    },
    /// The component did not start (start functions, memory limits).
    #[error(transparent)]
    Failed(#[from] CallFailure),
}

/// For the handlers that report every plugin problem as a failed call: a kind mismatch is the
/// host's fault, as a wrong call was before instances were typed.
impl From<InstantiateError> for CallFailure {
    fn from(e: InstantiateError) -> Self {
        match e {
            InstantiateError::Failed(f) => f,
            e @ InstantiateError::KindMismatch { .. } => {
                CallFailure::new(FailureKind::Host, e.to_string())
            }
        }
    }
}
