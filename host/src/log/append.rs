//! One append inside a write transaction: idempotency, the version check, then the writes.
//!
//! Everything that can refuse an append is checked before the first write, so a refused
//! append leaves the shared transaction untouched; only a storage failure aborts it.

use std::collections::{HashMap, HashSet};

use redb::{ReadableTable, Table};

use super::error::AppendError;
use super::format;
use super::{AppendRequest, AppendResult, PreparedEvent};
use crate::event::{ExpectedVersion, MAX_EVENT_TYPE_LEN, NewEvent};

/// A storage failure: the whole transaction must be dropped.
#[derive(Debug)]
pub(crate) struct Fatal(pub String);

impl<E: std::fmt::Display> From<E> for Fatal {
    fn from(e: E) -> Self {
        Fatal(e.to_string())
    }
}

/// Checks what can be checked without storage, and assigns event ids.
pub(crate) fn validate(
    events: Vec<NewEvent>,
    max_payload: usize,
) -> Result<Vec<PreparedEvent>, AppendError> {
    if events.is_empty() {
        return Err(AppendError::Empty);
    }
    let mut seen = HashSet::with_capacity(events.len());
    let mut out = Vec::with_capacity(events.len());
    for (index, new) in events.into_iter().enumerate() {
        let t = &new.event_type;
        if t.is_empty() || t.len() > MAX_EVENT_TYPE_LEN || t.chars().any(char::is_control) {
            return Err(AppendError::InvalidEventType { index });
        }
        if new.payload.len() > max_payload {
            return Err(AppendError::PayloadTooLarge {
                index,
                size: new.payload.len(),
                limit: max_payload,
            });
        }
        let caller_id = new.event_id.is_some();
        let id = new.event_id.unwrap_or_else(uuid::Uuid::now_v7);
        if !seen.insert(id) {
            return Err(AppendError::DuplicateInRequest {
                event_id: id.to_string(),
            });
        }
        out.push(PreparedEvent { id, caller_id, new });
    }
    Ok(out)
}

/// The tables an append touches, opened once per transaction.
pub(crate) struct LogTables<'txn> {
    pub events: Table<'txn, (u32, u32, u64), &'static [u8]>,
    pub stream_index: Table<'txn, (&'static str, u64), u64>,
    pub event_ids: Table<'txn, u128, (u64, u64)>,
}

impl<'txn> LogTables<'txn> {
    pub fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, Fatal> {
        Ok(LogTables {
            events: txn.open_table(format::EVENTS)?,
            stream_index: txn.open_table(format::STREAM_INDEX)?,
            event_ids: txn.open_table(format::EVENT_IDS)?,
        })
    }

    /// A stream's current version (0 = no stream): its last index entry.
    pub fn stream_version(&self, stream: &str) -> Result<u64, Fatal> {
        let last = self
            .stream_index
            .range((stream, 1)..=(stream, u64::MAX))?
            .next_back()
            .transpose()?;
        Ok(last.map(|(k, _)| k.value().1).unwrap_or(0))
    }

    /// Next offset of a partition, read inside the transaction (sees its own writes).
    pub fn next_offset(&self, topic_id: u32, partition: u32) -> Result<u64, Fatal> {
        let last = self
            .events
            .range((topic_id, partition, 0)..=(topic_id, partition, u64::MAX))?
            .next_back()
            .transpose()?;
        Ok(last.map(|(k, _)| k.value().2 + 1).unwrap_or(0))
    }
}

/// Versions and offsets taken by earlier, not yet written plans of the same commit.
#[derive(Default)]
pub(crate) struct Overlay {
    versions: HashMap<String, u64>,
    offsets: HashMap<(u32, u32), u64>,
}

impl Overlay {
    /// Takes over the reservations of a child overlay whose plans are all being written.
    pub fn absorb(&mut self, child: Overlay) {
        self.versions.extend(child.versions);
        self.offsets.extend(child.offsets);
    }
}

/// What an append will do, decided before anything is written.
pub(crate) enum Planned {
    Write {
        current: u64,
        first_offset: u64,
    },
    /// An exact retry of a stored append: nothing to write.
    Done(AppendResult),
}

/// Applies one append. `Ok(Err(_))` = refused (nothing written); `Err(Fatal)` = abort all.
pub(crate) fn apply(
    tables: &mut LogTables<'_>,
    overlay: &mut Overlay,
    req: &AppendRequest,
    occurred_at: u64,
) -> Result<Result<AppendResult, AppendError>, Fatal> {
    match plan(tables, req, overlay, None)? {
        Ok(planned) => Ok(Ok(write(
            tables,
            req,
            planned,
            req.occurred_at.unwrap_or(occurred_at),
        )?)),
        Err(e) => Ok(Err(e)),
    }
}

/// Checks idempotency and the expected version, and reserves versions and offsets in `overlay`
/// (looking through to `base`, the transaction's overlay, when planning a commit's appends).
pub(crate) fn plan(
    tables: &LogTables<'_>,
    req: &AppendRequest,
    overlay: &mut Overlay,
    base: Option<&Overlay>,
) -> Result<Result<Planned, AppendError>, Fatal> {
    let stream = req.stream.as_str();
    if let Some(outcome) = check_idempotent(tables, req)? {
        return Ok(outcome.map(Planned::Done));
    }
    let cached = overlay
        .versions
        .get(stream)
        .or_else(|| base.and_then(|b| b.versions.get(stream)));
    let current = match cached {
        Some(v) => *v,
        None => tables.stream_version(stream)?,
    };
    let ok = match req.expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => current == 0,
        ExpectedVersion::Exact(v) => current == v && v > 0,
    };
    if !ok {
        return Ok(Err(AppendError::WrongExpectedVersion {
            stream: stream.to_owned(),
            expected: req.expected,
            actual: current,
        }));
    }
    let key = (req.topic.id, req.partition);
    let cached = overlay
        .offsets
        .get(&key)
        .or_else(|| base.and_then(|b| b.offsets.get(&key)));
    let first_offset = match cached {
        Some(o) => *o,
        None => tables.next_offset(req.topic.id, req.partition)?,
    };
    let n = req.events.len() as u64;
    overlay.versions.insert(stream.to_owned(), current + n);
    overlay.offsets.insert(key, first_offset + n);
    Ok(Ok(Planned::Write {
        current,
        first_offset,
    }))
}

/// Writes a planned append. Only storage can fail here.
pub(crate) fn write(
    tables: &mut LogTables<'_>,
    req: &AppendRequest,
    planned: Planned,
    occurred_at: u64,
) -> Result<AppendResult, Fatal> {
    let (current, first_offset) = match planned {
        Planned::Done(result) => return Ok(result),
        Planned::Write {
            current,
            first_offset,
        } => (current, first_offset),
    };
    let stream = req.stream.as_str();
    let mut buf = Vec::with_capacity(256);
    let mut id_buf = uuid::Uuid::encode_buffer();
    for (i, ev) in req.events.iter().enumerate() {
        let version = current + 1 + i as u64;
        let offset = first_offset + i as u64;
        let id_text: &str = ev.id.hyphenated().encode_lower(&mut id_buf);
        let event = StoredEvent {
            event_id: &ev.id,
            event_type: &ev.new.event_type,
            stream,
            stream_version: version,
            topic: &req.topic.name,
            partition: req.partition,
            offset,
            occurred_at,
            correlation_id: ev.new.correlation_id.as_deref().unwrap_or(id_text),
            causation_id: ev.new.causation_id.as_deref().unwrap_or(id_text),
            schema_version: ev.new.schema_version,
            payload: serde_bytes::Bytes::new(&ev.new.payload),
            metadata: &ev.new.metadata,
        };
        buf.clear();
        rmp_serde::encode::write_named(&mut buf, &event)?;
        tables
            .events
            .insert((req.topic.id, req.partition, offset), buf.as_slice())?;
        tables.stream_index.insert((stream, version), offset)?;
        // Only ids the caller chose can come back in a retry; generated UUIDv7s cannot.
        if ev.caller_id {
            tables
                .event_ids
                .insert(ev.id.as_u128(), (version, offset))?;
        }
    }
    let n = req.events.len() as u64;
    Ok(AppendResult {
        stream: stream.to_owned(),
        topic: req.topic.name.clone(),
        partition: req.partition,
        first_version: current + 1,
        last_version: current + n,
        first_offset,
        last_offset: first_offset + n - 1,
        event_ids: req.events.iter().map(|e| e.id).collect(),
        deduplicated: false,
    })
}

/// An [`Event`] as stored, borrowing from the request: the same fields in the same order, so
/// it encodes to the same bytes without copying the payload and strings of every event.
#[derive(serde::Serialize)]
struct StoredEvent<'a> {
    event_id: &'a uuid::Uuid,
    event_type: &'a str,
    stream: &'a str,
    stream_version: u64,
    topic: &'a str,
    partition: u32,
    offset: u64,
    occurred_at: u64,
    correlation_id: &'a str,
    causation_id: &'a str,
    schema_version: u32,
    payload: &'a serde_bytes::Bytes,
    metadata: &'a std::collections::BTreeMap<String, String>,
}

/// `Some` when the append's ids are already stored: the original positions for an exact retry,
/// a conflict otherwise. `None` when none of the ids is stored.
fn check_idempotent(
    tables: &LogTables<'_>,
    req: &AppendRequest,
) -> Result<Option<Result<AppendResult, AppendError>>, Fatal> {
    let mut found = Vec::with_capacity(req.events.len());
    for ev in req.events.iter().filter(|e| e.caller_id) {
        if let Some(v) = tables.event_ids.get(ev.id.as_u128())? {
            found.push((ev.id, v.value()));
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    let conflict = |detail: String| Ok(Some(Err(AppendError::IdempotencyConflict { detail })));
    if found.len() != req.events.len() {
        return conflict(format!(
            "{} of {} event ids are already stored",
            found.len(),
            req.events.len()
        ));
    }
    let stream = req.stream.as_str();
    let (first_version, first_offset) = found[0].1;
    for (i, (id, (version, offset))) in found.iter().enumerate() {
        let same_stream = tables
            .stream_index
            .get((stream, *version))?
            .is_some_and(|o| o.value() == *offset);
        if !same_stream {
            return conflict(format!("event {id} is stored in another stream"));
        }
        if *version != first_version + i as u64 {
            return conflict(format!("event {id} is stored at another position"));
        }
    }
    let n = found.len() as u64;
    Ok(Some(Ok(AppendResult {
        stream: stream.to_owned(),
        topic: req.topic.name.clone(),
        partition: req.partition,
        first_version,
        last_version: first_version + n - 1,
        first_offset,
        last_offset: first_offset + n - 1,
        event_ids: found.iter().map(|(id, _)| *id).collect(),
        deduplicated: true,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    /// The borrowed envelope must stay byte-for-byte the stored format `Event` reads back.
    #[test]
    fn stored_event_encodes_as_event() {
        let id = uuid::Uuid::now_v7();
        let metadata = [("k".to_owned(), "v".to_owned())].into_iter().collect();
        let payload = vec![0x81, 0xa1, b'a', 0x01];
        let event = Event {
            event_id: id,
            event_type: "order.created".into(),
            stream: "order-1".into(),
            stream_version: 3,
            topic: "order".into(),
            partition: 2,
            offset: 41,
            occurred_at: 1_700_000_000_000,
            correlation_id: "corr".into(),
            causation_id: id.to_string(),
            schema_version: 2,
            payload: payload.clone(),
            metadata,
        };
        let stored = StoredEvent {
            event_id: &event.event_id,
            event_type: &event.event_type,
            stream: &event.stream,
            stream_version: event.stream_version,
            topic: &event.topic,
            partition: event.partition,
            offset: event.offset,
            occurred_at: event.occurred_at,
            correlation_id: &event.correlation_id,
            causation_id: &event.causation_id,
            schema_version: event.schema_version,
            payload: serde_bytes::Bytes::new(&payload),
            metadata: &event.metadata,
        };
        let expected = rmp_serde::to_vec_named(&event).unwrap();
        assert_eq!(rmp_serde::to_vec_named(&stored).unwrap(), expected);
        let back: Event = rmp_serde::from_slice(&expected).unwrap();
        assert_eq!(back, event);
    }
}
