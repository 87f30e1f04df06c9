//! The event envelope and the values that name places in the log (DESIGN §2).
//!
//! These types are shared by every module; they know nothing about storage or plugins.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest accepted stream id, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 200;
/// Longest accepted event type, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 200;

/// A stored event: immutable, with every field set by the host at append time.
///
/// Stored as MessagePack (named fields) in the log; `payload` is the plugin's own MessagePack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: Uuid,
    pub event_type: String,
    pub stream: String,
    /// 1-based, contiguous within the stream.
    pub stream_version: u64,
    pub topic: String,
    pub partition: u32,
    /// 0-based, dense within the partition.
    pub offset: u64,
    /// Milliseconds since the Unix epoch, set by the host.
    pub occurred_at: u64,
    pub correlation_id: String,
    pub causation_id: String,
    pub schema_version: u32,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
}

impl Event {
    /// The same event to append again (another log, a restore): its id, type, schema,
    /// payload, metadata, correlation and causation; the log assigns the rest.
    pub fn to_new(&self) -> NewEvent {
        NewEvent {
            event_id: Some(self.event_id),
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            payload: self.payload.clone(),
            metadata: self.metadata.clone(),
            correlation_id: Some(self.correlation_id.clone()),
            causation_id: Some(self.causation_id.clone()),
        }
    }
}

/// An event to append; the log fills in the rest of the envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Set it to make a retried append idempotent; a fresh UUIDv7 is used otherwise.
    pub event_id: Option<Uuid>,
    pub event_type: String,
    pub schema_version: u32,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
    /// Defaults to the event's own id.
    pub correlation_id: Option<String>,
    /// Defaults to the event's own id.
    pub causation_id: Option<String>,
}

impl NewEvent {
    /// An event with a MessagePack payload and defaults for everything else.
    pub fn new(event_type: impl Into<String>, payload: Vec<u8>) -> Self {
        NewEvent {
            event_id: None,
            event_type: event_type.into(),
            schema_version: 1,
            payload,
            metadata: BTreeMap::new(),
            correlation_id: None,
            causation_id: None,
        }
    }

    /// Same event with a fixed id (for idempotent retries).
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.event_id = Some(id);
        self
    }

    /// Same event carrying the ids of the command or event that caused it.
    pub fn caused_by(mut self, correlation_id: &str, causation_id: &str) -> Self {
        self.correlation_id = Some(correlation_id.to_owned());
        self.causation_id = Some(causation_id.to_owned());
        self
    }
}

/// What the appender believes the stream's current version is (optimistic concurrency).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version (≥ 1).
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

impl ExpectedVersion {
    /// The expectation that matches a stream currently at `version` (0 = no stream).
    pub fn from_current(version: u64) -> Self {
        if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        }
    }
}

/// A validated stream id: `<category>-<id>`, e.g. `order-ORD-1`. The category names the topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(String);

/// Why a stream id was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid stream id {stream:?}: {reason}")]
pub struct InvalidStreamId {
    pub stream: String,
    pub reason: &'static str,
}

impl StreamId {
    /// Validates `s`: 3..=200 bytes of `[A-Za-z0-9._:@-]`, with a non-empty category before the
    /// first `-` and a non-empty id after it.
    pub fn parse(s: &str) -> Result<Self, InvalidStreamId> {
        let bad = |reason| InvalidStreamId {
            stream: s.chars().take(MAX_STREAM_ID_LEN + 8).collect(),
            reason,
        };
        if s.len() > MAX_STREAM_ID_LEN {
            return Err(bad("longer than 200 bytes"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b))
        {
            return Err(bad("only ASCII letters, digits and . _ : @ - are allowed"));
        }
        match s.split_once('-') {
            Some((cat, id)) if !cat.is_empty() && !id.is_empty() => Ok(StreamId(s.to_owned())),
            _ => Err(bad("expected <category>-<id>, e.g. order-ORD-1")),
        }
    }

    /// The stream's category (its topic): the text before the first `-`.
    pub fn category(&self) -> &str {
        self.0.split_once('-').map(|(c, _)| c).unwrap_or(&self.0)
    }

    /// The id within the category: the text after the first `-`.
    #[cfg(test)]
    pub fn id(&self) -> &str {
        self.0.split_once('-').map(|(_, i)| i).unwrap_or("")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Milliseconds since the Unix epoch, from the host's clock.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_validated() {
        let s = StreamId::parse("order-ORD-1").unwrap();
        assert_eq!(s.category(), "order");
        assert_eq!(s.id(), "ORD-1");
        for bad in [
            "",
            "order",
            "-x",
            "order-",
            "or der-1",
            "order-1/2",
            "ordér-1",
        ] {
            assert!(StreamId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(StreamId::parse(&format!("a-{}", "x".repeat(198))).is_ok());
        assert!(StreamId::parse(&format!("a-{}", "x".repeat(199))).is_err());
    }

    #[test]
    fn envelope_round_trips_through_messagepack() {
        let e = Event {
            event_id: Uuid::now_v7(),
            event_type: "order.created".into(),
            stream: "order-1".into(),
            stream_version: 1,
            topic: "order".into(),
            partition: 3,
            offset: 7,
            occurred_at: 1,
            correlation_id: "c".into(),
            causation_id: "d".into(),
            schema_version: 2,
            payload: vec![0x80],
            metadata: [("k".to_owned(), "v".to_owned())].into(),
        };
        let bytes = rmp_serde::to_vec_named(&e).unwrap();
        assert_eq!(rmp_serde::from_slice::<Event>(&bytes).unwrap(), e);
    }
}
