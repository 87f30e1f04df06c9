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
    /// Largest state, read-model value, or total of one call's decided events (payloads,
    /// metadata and types) or commands a guest may hand back, in bytes.
    pub max_output_bytes: usize,
    /// Most events one `decide` may return.
    pub max_events_per_decide: usize,
    /// Most bytes (keys + values) one projector call (one batch) may have pending in the read
    /// model; checked at each `put`, before the value is kept.
    pub max_read_model_bytes: usize,
    /// Most distinct keys one projector call (one batch) may write or delete.
    pub max_read_model_writes: usize,
    /// Longest failure message, saga failure reason or rejection message kept, in bytes; the
    /// rest is cut and replaced by a marker saying how much was cut.
    pub max_message_bytes: usize,
    /// Longest rejection code, in bytes. A code is an identifier clients match on, so a longer
    /// one is not cut but refused (`bad-output`).
    pub max_rejection_code_bytes: usize,
    /// Log lines (the logging interface, stdout and stderr) a plugin may emit per second over
    /// all its instances; lines past it are dropped and counted
    /// (`plugin_log_lines_dropped_total`), not failed: logging is a side channel.
    pub log_lines_per_second: u32,
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
            max_events_per_decide: 1000,
            max_read_model_bytes: 64 << 20,
            max_read_model_writes: 100_000,
            max_message_bytes: 16 << 10,
            max_rejection_code_bytes: 256,
            log_lines_per_second: 100,
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

    pub fn limits(&self) -> &Limits {
        &self.limits
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

/// A budget a call's output ran over, checked by the host as the output arrives (a read-model
/// `put`) rather than by wasmtime. Recorded in the store so the failure is `bad-output`, not a
/// host error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutputBreach(pub String);

/// Cuts `message` to at most `max` bytes (on a character boundary) and says how much was cut,
/// so every record built from it (dead letters, logs, API answers) stays bounded.
pub(crate) fn bound_message(mut message: String, max: usize) -> String {
    if message.len() <= max {
        return message;
    }
    let total = message.len();
    let mut cut = max;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(&format!("… [cut: {total} bytes, kept {cut}]"));
    message
}

/// Log lines per second for one plugin, shared by all its instances: a token bucket holding
/// one second's worth.
#[derive(Debug)]
pub(crate) struct LogBudget {
    state: std::sync::Mutex<LogBucket>,
    plugin: std::sync::Arc<str>,
}

#[derive(Debug)]
struct LogBucket {
    per_second: u32,
    tokens: f64,
    refilled: std::time::Instant,
    /// Dropped since the last report.
    dropped: u64,
    reported: std::time::Instant,
}

impl LogBudget {
    pub fn new(plugin: std::sync::Arc<str>, per_second: u32) -> Self {
        let now = std::time::Instant::now();
        LogBudget {
            plugin,
            state: std::sync::Mutex::new(LogBucket {
                per_second,
                tokens: f64::from(per_second),
                refilled: now,
                dropped: 0,
                reported: now,
            }),
        }
    }

    /// Takes up a new limit (a deploy may change it) without resetting the bucket.
    pub fn set_rate(&self, per_second: u32) {
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        b.per_second = per_second;
        b.tokens = b.tokens.min(f64::from(per_second));
    }

    /// May one more line be emitted now? A drop is counted; once a second at most, the host
    /// logs how many lines were dropped.
    pub fn admit(&self) -> bool {
        let now = std::time::Instant::now();
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let rate = f64::from(b.per_second);
        let elapsed = now.duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.refilled = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return true;
        }
        b.dropped += 1;
        crate::telemetry::log_lines_dropped(&self.plugin);
        if now.duration_since(b.reported) >= Duration::from_secs(1) {
            let dropped = std::mem::take(&mut b.dropped);
            b.reported = now;
            tracing::warn!(plugin = %self.plugin, dropped, limit = b.per_second, "plugin log lines dropped: over log_lines_per_second");
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_over_the_limit_is_cut_with_a_marker() {
        assert_eq!(bound_message("short".into(), 10), "short");
        let cut = bound_message("é".repeat(100), 11);
        assert!(cut.starts_with(&"é".repeat(5)), "{cut}");
        assert!(cut.ends_with("… [cut: 200 bytes, kept 10]"), "{cut}");
        assert!(cut.len() < 11 + 40);
    }

    #[test]
    fn the_log_budget_admits_one_second_of_lines_then_drops() {
        let budget = LogBudget::new("p".into(), 50);
        let admitted = (0..1000).filter(|_| budget.admit()).count();
        // The bucket holds one second's worth; the loop takes far less than a second, so at
        // most a few more refill.
        assert!((50..60).contains(&admitted), "{admitted}");
    }
}
