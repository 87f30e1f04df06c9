//! Why a handler's event failed: one closed set of kinds, with one spelling (kebab-case) on
//! disk, in the API, the CLI and metrics. A leaf module: the log stores it, the plugin runtime
//! produces it, telemetry labels with it, and none of them needs another for it.

use serde::{Deserialize, Serialize};

/// What went wrong with an event: a failed call (retried with backoff, then parked) or a
/// business rejection (parked at once, never retried).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The guest trapped (panic, unreachable, stack overflow, out-of-bounds access).
    Trap,
    /// The guest tried to grow memory or tables past its limit.
    #[serde(alias = "memory limit")]
    MemoryLimit,
    /// The call ran past its deadline (epoch interruption).
    Deadline,
    /// The call used up its fuel (deterministic instruction budget).
    #[serde(alias = "fuel limit")]
    Fuel,
    /// The guest returned its own `failure` (bad input, a bug it detected).
    #[serde(alias = "plugin failure")]
    Guest,
    /// The guest returned something the host refuses (undecodable, oversized).
    #[serde(alias = "bad output")]
    BadOutput,
    /// Instantiation, a host function or a command's target failed.
    #[serde(alias = "host error")]
    Host,
    /// Not a failure of the handler: a command it sent was rejected by its aggregate (a
    /// business outcome). Never the kind of a failed call; never retried.
    Rejected,
}

impl FailureKind {
    /// The one spelling: the serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::MemoryLimit => "memory-limit",
            FailureKind::Deadline => "deadline",
            FailureKind::Fuel => "fuel",
            FailureKind::Guest => "guest",
            FailureKind::BadOutput => "bad-output",
            FailureKind::Host => "host",
            FailureKind::Rejected => "rejected",
        }
    }

    /// Whether a retry may go differently: everything but a business rejection.
    pub fn is_retryable(self) -> bool {
        self != FailureKind::Rejected
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_and_old_records_still_read() {
        for kind in [
            FailureKind::Trap,
            FailureKind::MemoryLimit,
            FailureKind::Deadline,
            FailureKind::Fuel,
            FailureKind::Guest,
            FailureKind::BadOutput,
            FailureKind::Host,
            FailureKind::Rejected,
        ] {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.to_string());
            let packed = rmp_serde::to_vec(&kind).unwrap();
            assert_eq!(rmp_serde::from_slice::<FailureKind>(&packed).unwrap(), kind);
        }
        // What earlier builds wrote (Display of the old enum) reads as the same kind.
        for (old, kind) in [
            ("memory limit", FailureKind::MemoryLimit),
            ("fuel limit", FailureKind::Fuel),
            ("plugin failure", FailureKind::Guest),
            ("bad output", FailureKind::BadOutput),
            ("host error", FailureKind::Host),
        ] {
            let packed = rmp_serde::to_vec(old).unwrap();
            assert_eq!(rmp_serde::from_slice::<FailureKind>(&packed).unwrap(), kind);
        }
    }
}
