//! The read-side hook for schema evolution: events are stored as written, forever, and every
//! read through [`EventLog`](super::EventLog) hands them out in their current schema.
//!
//! The log knows no plugins; the host installs an [`Upcast`] (`crate::evolution::Upcasters`)
//! built from the aggregates that own each topic's event types.

use crate::event::Event;

/// Rewrites old events into their current schema as they are read.
pub trait Upcast: Send + Sync {
    /// Rewrites, in place, every event of `events` (all of topic `topic`) that is old. An error
    /// names what failed; the read then fails with [`ReadError::Upcast`](super::ReadError).
    fn upcast(&self, topic: &str, events: &mut [Event]) -> Result<(), String>;
}
