//! The values a plugin sees besides its own events and commands, mirroring `wit/factline.wit`.

use std::fmt;

use serde::Serialize;

use crate::codec::{self, CodecError};

/// What the host knows about a command besides its payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandContext {
    /// Unique id; the host deduplicates redelivered commands by it.
    pub command_id: String,
    /// Target stream, e.g. `order-ORD-1`.
    pub stream: String,
    /// Milliseconds since the Unix epoch when the host received the command: the only clock a
    /// decision may use.
    pub issued_at: u64,
    pub correlation_id: String,
    pub causation_id: String,
    pub metadata: Vec<(String, String)>,
}

/// The envelope of a delivered event, without type and payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMeta {
    pub event_id: String,
    pub stream: String,
    /// 1-based, contiguous position within the stream.
    pub stream_version: u64,
    /// Milliseconds since the Unix epoch, set by the host when appended.
    pub occurred_at: u64,
    pub correlation_id: String,
    pub causation_id: String,
    /// Version of the payload's schema, for upcasting.
    pub schema_version: u32,
    pub topic: String,
    pub partition: u32,
    /// 0-based, dense position within the partition.
    pub offset: u64,
    pub metadata: Vec<(String, String)>,
}

/// The plugin said no: a business outcome, returned to the sender and never retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Machine-readable reason, e.g. `order-empty`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl Rejection {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// `Err(Rejection)` unless `condition` holds: `Rejection::ensure(qty >= 1, "invalid-quantity", "…")?`.
    pub fn ensure(
        condition: bool,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<(), Self> {
        if condition {
            Ok(())
        } else {
            Err(Self::new(code, message))
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rejected ({}): {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}

/// Anything else that went wrong inside a plugin (bad input, a bug): the host retries it, then
/// parks the event in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// Index of the event in the delivered batch that caused it; the SDK fills it in.
    pub event_index: Option<u32>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            event_index: None,
        }
    }

    /// Blames event `index` of the batch unless the failure already names one.
    pub(crate) fn at(mut self, index: usize) -> Self {
        if self.event_index.is_none() {
            self.event_index = u32::try_from(index).ok();
        }
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.event_index {
            Some(index) => write!(f, "event #{index}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Failure {}

impl From<CodecError> for Failure {
    fn from(error: CodecError) -> Self {
        Self::new(error.to_string())
    }
}

/// A command a policy or saga asks the host to send to an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingCommand {
    /// Name of the target aggregate plugin, e.g. `inventory`.
    pub aggregate: String,
    pub stream: String,
    pub command_type: String,
    /// Deterministic (derive it from the causing event) so a resend is deduplicated.
    pub command_id: String,
    /// Named MessagePack.
    pub payload: Vec<u8>,
}

impl OutgoingCommand {
    /// Encodes `command`, a serde enum like an aggregate's `Command`, into type and payload.
    pub fn new<C: Serialize>(
        aggregate: impl Into<String>,
        stream: impl Into<String>,
        command_id: impl Into<String>,
        command: &C,
    ) -> Result<Self, Failure> {
        let (command_type, payload) = codec::encode_variant(command)?;
        Ok(Self {
            aggregate: aggregate.into(),
            stream: stream.into(),
            command_type,
            command_id: command_id.into(),
            payload,
        })
    }
}

/// An event as an upcaster sees it: type, schema version and payload as a JSON-like value
/// (decoded from the stored MessagePack, encoded back after the upcast).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub event_type: String,
    pub schema_version: u32,
    pub payload: serde_json::Value,
}

/// An event as bytes: what the host delivers and what a scenario runner feeds a plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawEvent {
    pub event_type: String,
    /// Named MessagePack.
    pub payload: Vec<u8>,
    pub meta: EventMeta,
}

/// A command as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawCommand {
    pub command_type: String,
    /// Named MessagePack; empty or `nil` reads as `{}` for struct variants.
    pub payload: Vec<u8>,
    pub ctx: CommandContext,
}

/// An event an aggregate wants appended; the host fills in the rest of the envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawNewEvent {
    pub event_type: String,
    pub schema_version: u32,
    pub payload: Vec<u8>,
    pub metadata: Vec<(String, String)>,
}

/// Why `decide` produced no events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideError {
    Rejected(Rejection),
    Failed(Failure),
}
