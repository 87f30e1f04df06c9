//! `factline:plugin/logging`: guest log lines become `tracing` events tagged with the plugin,
//! within the plugin's `log_lines_per_second` (the rest are dropped and counted).

use crate::plugin::bindings::logging::{Host, Level};
use crate::plugin::state::HostState;

/// Longest message kept; the rest is cut (a guest cannot flood the host's log with one call).
const MAX_MESSAGE: usize = 8 * 1024;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        if !self.log_budget.admit() {
            return;
        }
        let mut message = message;
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "factline::guest", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "factline::guest", plugin, "{message}"),
            Level::Info => tracing::info!(target: "factline::guest", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "factline::guest", plugin, "{message}"),
            Level::Error => tracing::error!(target: "factline::guest", plugin, "{message}"),
        }
    }
}
