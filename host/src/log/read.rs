//! Reads, each in its own read transaction (a consistent snapshot; never blocks the writer).

use redb::{Database, ReadableDatabase, ReadableTable};

use super::TopicInfo;
use super::error::{ReadError, storage};
use super::format;
use super::partition::partition_for;
use crate::event::{Event, StreamId};

fn st<E: std::fmt::Display>(e: E) -> ReadError {
    ReadError::Storage(storage(e))
}

fn decode(
    topic: &TopicInfo,
    partition: u32,
    offset: u64,
    bytes: &[u8],
) -> Result<Event, ReadError> {
    rmp_serde::from_slice(bytes).map_err(|e| ReadError::Corrupt {
        topic: topic.name.clone(),
        partition,
        offset,
        detail: e.to_string(),
    })
}

pub(crate) fn partition(
    db: &Database,
    topic: &TopicInfo,
    partition: u32,
    from: u64,
    limit: usize,
) -> Result<Vec<Event>, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::EVENTS).map_err(st)?;
    let mut out = Vec::with_capacity(limit.min(4096));
    for row in table
        .range((topic.id, partition, from)..=(topic.id, partition, u64::MAX))
        .map_err(st)?
        .take(limit)
    {
        let (k, v) = row.map_err(st)?;
        out.push(decode(topic, partition, k.value().2, v.value())?);
    }
    Ok(out)
}

pub(crate) fn stream(
    db: &Database,
    topic: &TopicInfo,
    id: &StreamId,
    from_version: u64,
    limit: usize,
) -> Result<Vec<Event>, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let index = txn.open_table(format::STREAM_INDEX).map_err(st)?;
    let events = txn.open_table(format::EVENTS).map_err(st)?;
    let p = partition_for(id.as_str(), topic.partitions);
    let s = id.as_str();
    let mut out = Vec::new();
    for row in index
        .range((s, from_version.max(1))..=(s, u64::MAX))
        .map_err(st)?
        .take(limit)
    {
        let (_, offset) = row.map_err(st)?;
        let offset = offset.value();
        let bytes = events
            .get((topic.id, p, offset))
            .map_err(st)?
            .ok_or_else(|| ReadError::Corrupt {
                topic: topic.name.clone(),
                partition: p,
                offset,
                detail: format!("indexed by stream {s} but missing"),
            })?;
        out.push(decode(topic, p, offset, bytes.value())?);
    }
    Ok(out)
}

pub(crate) fn stream_version(db: &Database, stream: &str) -> Result<u64, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::STREAM_INDEX).map_err(st)?;
    let last = table
        .range((stream, 1)..=(stream, u64::MAX))
        .map_err(st)?
        .next_back()
        .transpose()
        .map_err(st)?;
    Ok(last.map(|(k, _)| k.value().1).unwrap_or(0))
}

pub(crate) fn high_water_mark(
    db: &Database,
    topic_id: u32,
    partition: u32,
) -> Result<u64, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::EVENTS).map_err(st)?;
    let last = table
        .range((topic_id, partition, 0)..=(topic_id, partition, u64::MAX))
        .map_err(st)?
        .next_back()
        .transpose()
        .map_err(st)?;
    Ok(last.map(|(k, _)| k.value().2 + 1).unwrap_or(0))
}

pub(crate) fn group_offset(
    db: &Database,
    group: &str,
    topic_id: u32,
    partition: u32,
) -> Result<Option<u64>, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::GROUP_OFFSETS).map_err(st)?;
    Ok(table
        .get((group, topic_id, partition))
        .map_err(st)?
        .map(|v| v.value()))
}

/// The stored failed attempts of the event `group` retries on a partition.
pub(crate) fn attempt(
    db: &Database,
    group: &str,
    topic_id: u32,
    partition: u32,
) -> Result<Option<super::effects::Attempt>, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::RETRIES).map_err(st)?;
    Ok(table
        .get((group, topic_id, partition))
        .map_err(st)?
        .map(|v| {
            let (offset, attempts, first_failed_at) = v.value();
            super::effects::Attempt {
                offset,
                attempts,
                first_failed_at,
            }
        }))
}

pub(crate) fn all_group_offsets(db: &Database) -> Result<Vec<(String, u32, u32, u64)>, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::GROUP_OFFSETS).map_err(st)?;
    let mut out = Vec::new();
    for row in table.iter().map_err(st)? {
        let (k, v) = row.map_err(st)?;
        let (g, t, p) = k.value();
        out.push((g.to_owned(), t, p, v.value()));
    }
    Ok(out)
}

pub(crate) fn event_id(db: &Database, id: uuid::Uuid) -> Result<Option<(u64, u64)>, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::EVENT_IDS).map_err(st)?;
    Ok(table.get(id.as_u128()).map_err(st)?.map(|v| v.value()))
}
