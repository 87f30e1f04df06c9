//! The read-side hook for schema evolution: events are stored as written, forever, and every
//! read through [`EventLog`](super::EventLog) hands them out in their current schema.
//!
//! The log knows no plugins; the host installs an [`Upcast`] (`crate::evolution::Upcasters`)
//! built from the aggregates that own each topic's event types.

use crate::event::Event;

/// Why an upcaster could not bring an event to its current schema: the upcaster's own error
/// (the log does not know its type; the host's is a plugin call's failure).
pub type UpcastError = Box<dyn std::error::Error + Send + Sync>;

/// Rewrites old events into their current schema as they are read.
pub trait Upcast: Send + Sync {
    /// Rewrites, in place, every event of `events` (all of topic `topic`) that is old. The read
    /// of an event that cannot be upcast fails with [`ReadError::Upcast`](super::ReadError).
    fn upcast(&self, topic: &str, events: &mut [Event]) -> Result<(), UpcastError>;
}
