//! Workspace integration tests: one binary, one module per area (link time matters with wasmtime).

mod log_crash;
mod log_model;
mod log_race;
