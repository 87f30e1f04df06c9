//! Per-plugin resource limits, enforced by wasmtime through a `ResourceLimiter` that also
//! records which limit was hit, so a failure can say "memory limit" rather than "trap".

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits for one plugin. Defaults suit Rust guests and leave room for Python/JS runtimes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest size of any one linear memory, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock budget of one call (enforced by epoch interruption).
    #[serde(rename = "call_timeout_ms", with = "millis")]
    pub call_timeout: Duration,
    /// Largest number of elements in any one table.
    pub table_elements: usize,
    /// Most core instances, memories and tables a component may create.
    pub instances: usize,
    /// Largest state, payload or value a guest may hand back, in bytes.
    pub max_output_bytes: usize,
    /// Fuel (roughly, wasm instructions) of one call: a deterministic budget where the
    /// wall-clock deadline would make replays differ. `None` = no fuel limit. Setting it on any
    /// plugin turns on fuel metering in the engine (a few percent slower for every plugin).
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            call_timeout: Duration::from_secs(5),
            table_elements: 100_000,
            instances: 64,
            max_output_bytes: 16 << 20,
            fuel: None,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Which limit a call ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Breach {
    Memory { desired: usize, limit: usize },
    Table { desired: usize, limit: usize },
}

pub(crate) struct Limiter {
    limits: Limits,
    pub breach: Option<Breach>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Limiter {
            limits,
            breach: None,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            self.breach = Some(Breach::Memory {
                desired,
                limit: self.limits.memory_bytes,
            });
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.table_elements {
            self.breach = Some(Breach::Table {
                desired,
                limit: self.limits.table_elements,
            });
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.limits.instances
    }

    fn tables(&self) -> usize {
        self.limits.instances
    }

    fn memories(&self) -> usize {
        self.limits.instances
    }
}
