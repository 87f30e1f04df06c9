//! factline's host: the durable event log, the plugin runtime and the handlers that connect them.
//!
//! Data flow, visible in the module names: `event` (the envelope) → `log` (append, partitions,
//! offsets, effects commit) → `projector` / `aggregate` (handlers) → `plugin` (wasmtime).

pub mod aggregate;
pub mod consumer;
pub mod event;
pub mod log;
pub mod plugin;
pub mod projector;
pub mod scenario;
