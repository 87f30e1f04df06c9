//! factline's host: the durable event log, the plugin runtime and the handlers that connect them.
//!
//! Data flow, visible in the module names: `event` (the envelope) → `log` (append, partitions,
//! offsets, effects commit) → `projector` / `aggregate` (handlers) → `plugin` (wasmtime);
//! `policy` and `saga` send commands to aggregates through `dispatch`; `config` (the
//! `factline.toml` file) and `host` (all of it assembled and running) sit on top.

pub mod aggregate;
pub mod config;
pub mod consumer;
pub mod dispatch;
pub mod event;
pub mod evolution;
pub mod failure;
pub mod host;
pub mod http;
pub mod log;
pub mod outbox;
pub mod plugin;
pub mod policy;
pub mod projector;
pub mod rebuild;
pub mod reload;
pub mod saga;
pub mod scenario;
pub mod telemetry;
