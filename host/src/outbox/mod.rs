//! The log is the outbox: events a handler appends commit in the same transaction as its offset
//! (`log::HandlerCommit::appends`). Getting them out of the host to an external broker is a
//! relay: a consumer group whose projection publishes instead of writing a read model.
//!
//! [`Relay`] is the whole interface a broker adapter implements. The group advances its offset
//! only after `publish` returned `Ok`, so delivery to the broker is at-least-once (a crash
//! between publish and commit resends the batch); brokers deduplicate by `event_id`, which is
//! stable. [`LogRelay`] relays into another factline log, where idempotent appends make the
//! resend harmless.

#[cfg(feature = "kafka")]
mod kafka;

use std::collections::HashSet;

use crate::event::{Event, ExpectedVersion};
use crate::log::{AppendError, EventLog};
use crate::plugin::{CallFailure, FailureKind, ReadModelSession};
use crate::projector::Projection;

#[cfg(feature = "kafka")]
pub use kafka::{KafkaRelay, KafkaRelayConfig, MAX_RECORD_BYTES};

/// Why a publish failed; the group retries it with backoff, then parks the event.
#[derive(Debug, thiserror::Error)]
#[error("relay {relay}: {message}")]
pub struct RelayError {
    pub relay: String,
    pub message: String,
}

/// An external destination for events, in partition order.
pub trait Relay: Send {
    /// A name for logs and dead letters.
    fn name(&self) -> &str;

    /// Publishes a batch, in order. Must tolerate receiving events it already has (same
    /// `event_id`): after a crash the last batch is sent again.
    fn publish(&mut self, events: &[Event]) -> Result<(), RelayError>;
}

/// Runs a [`Relay`] as a consumer group's projection (see `consumer::ConsumerGroup`).
pub struct RelayProjection<R: Relay> {
    relay: R,
    /// `None`: every event type.
    types: Option<HashSet<String>>,
}

impl<R: Relay> std::fmt::Debug for RelayProjection<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayProjection")
            .field("relay", &self.relay.name())
            .finish_non_exhaustive()
    }
}

impl<R: Relay> RelayProjection<R> {
    /// Relays every event type, or only `types` when given.
    pub fn new(relay: R, types: Option<Vec<String>>) -> Self {
        RelayProjection {
            relay,
            types: types.map(|t| t.into_iter().collect()),
        }
    }
}

impl<R: Relay> Projection for RelayProjection<R> {
    fn handles(&self, event_type: &str) -> bool {
        self.types.as_ref().is_none_or(|t| t.contains(event_type))
    }

    fn project(
        &mut self,
        events: &[Event],
        session: ReadModelSession,
    ) -> (Result<(), CallFailure>, Option<ReadModelSession>) {
        let result = self.relay.publish(events).map_err(|e| CallFailure {
            kind: FailureKind::Host,
            message: e.to_string(),
            backtrace: None,
            event_index: None,
        });
        (result, Some(session))
    }

    fn version(&self) -> String {
        format!("relay:{}", self.relay.name())
    }
}

/// Relays into another factline log (another data directory or host): each event is appended
/// to the same stream with the same `event_id`, so a resend is an idempotent no-op.
pub struct LogRelay {
    name: String,
    target: EventLog,
}

impl std::fmt::Debug for LogRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogRelay")
            .field("name", &self.name)
            .finish()
    }
}

impl LogRelay {
    pub fn new(name: impl Into<String>, target: EventLog) -> Self {
        LogRelay {
            name: name.into(),
            target,
        }
    }
}

impl Relay for LogRelay {
    fn name(&self) -> &str {
        &self.name
    }

    fn publish(&mut self, events: &[Event]) -> Result<(), RelayError> {
        for e in events {
            let copy = e.to_new();
            // The source stream's order is kept by the partition order we are called in; the
            // target assigns its own versions and offsets.
            match self
                .target
                .append(&e.stream, ExpectedVersion::Any, vec![copy])
            {
                Ok(_) => {}
                Err(err @ (AppendError::Storage(_) | AppendError::Closed)) => {
                    return Err(RelayError {
                        relay: self.name.clone(),
                        message: err.to_string(),
                    });
                }
                Err(err) => {
                    return Err(RelayError {
                        relay: self.name.clone(),
                        message: format!("event {} refused: {err}", e.event_id),
                    });
                }
            }
        }
        Ok(())
    }
}
