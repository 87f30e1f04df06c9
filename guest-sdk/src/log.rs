//! Logging routed to the host's `tracing` (the imported `logging` interface), tagged there with
//! the plugin's name. Natively, messages go to stderr.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

static SINK: OnceLock<fn(Level, &str)> = OnceLock::new();

pub fn log(level: Level, message: &str) {
    match SINK.get() {
        Some(sink) => sink(level, message),
        None => fallback(level, message),
    }
}

pub fn trace(message: &str) {
    log(Level::Trace, message);
}

pub fn debug(message: &str) {
    log(Level::Debug, message);
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn warn(message: &str) {
    log(Level::Warn, message);
}

pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Installed by the export glue on every call; the first one wins.
#[doc(hidden)]
pub fn set_sink(sink: fn(Level, &str)) {
    let _ = SINK.set(sink);
}

#[cfg(not(target_arch = "wasm32"))]
fn fallback(level: Level, message: &str) {
    eprintln!("[{level:?}] {message}");
}

// On wasm the glue always installs the host's sink before plugin code runs.
#[cfg(target_arch = "wasm32")]
fn fallback(_level: Level, _message: &str) {}
