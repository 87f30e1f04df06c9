//! Aggregate snapshots: a stream's state at a version, under the state schema the aggregate
//! declared. Snapshots are a cache of a replay, never the truth: losing one costs only time.
//!
//! Every snapshot is kept (one per `snapshot_every` events), so a temporal query finds the
//! closest one at or before the version or time it asks for.

use redb::{Database, ReadableDatabase, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::error::{ReadError, storage};
use super::format;

/// A stream's state after `version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub stream: String,
    /// The state schema the aggregate declared when it wrote this (see `schema-evolution`).
    pub state_schema: u32,
    /// The stream version the state includes (every event up to and including it).
    pub version: u64,
    /// `occurred_at` of the event at `version`: temporal queries by time pick snapshots by it.
    pub occurred_at: u64,
    /// The plugin version that wrote it (for inspection only; the schema decides use).
    pub plugin_version: String,
    /// The guest's serialized state.
    pub state: Vec<u8>,
}

/// The stored value (key: stream, state schema, version).
#[derive(Serialize, Deserialize)]
struct Stored {
    occurred_at: u64,
    plugin_version: String,
    #[serde(with = "serde_bytes")]
    state: Vec<u8>,
}

/// Which snapshot to pick: the newest whose version and event time are within the bounds.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotBound {
    pub max_version: u64,
    pub max_occurred_at: u64,
}

impl SnapshotBound {
    /// The newest snapshot.
    pub const LATEST: SnapshotBound = SnapshotBound {
        max_version: u64::MAX,
        max_occurred_at: u64::MAX,
    };
}

pub(crate) fn write(txn: &WriteTransaction, s: &Snapshot) -> Result<(), redb::Error> {
    let mut table = txn.open_table(format::SNAPSHOTS)?;
    let value = rmp_serde::to_vec_named(&Stored {
        occurred_at: s.occurred_at,
        plugin_version: s.plugin_version.clone(),
        state: s.state.clone(),
    })
    .expect("a snapshot record always encodes");
    table.insert(
        (s.stream.as_str(), s.state_schema, s.version),
        value.as_slice(),
    )?;
    Ok(())
}

pub(crate) fn find(
    db: &Database,
    stream: &str,
    state_schema: u32,
    bound: SnapshotBound,
) -> Result<Option<Snapshot>, ReadError> {
    let st = |e: &dyn std::fmt::Display| ReadError::Storage(storage(e));
    let txn = db.begin_read().map_err(|e| st(&e))?;
    let table = txn.open_table(format::SNAPSHOTS).map_err(|e| st(&e))?;
    let range = table
        .range((stream, state_schema, 0)..=(stream, state_schema, bound.max_version))
        .map_err(|e| st(&e))?;
    for row in range.rev() {
        let (k, v) = row.map_err(|e| st(&e))?;
        let (_, _, version) = k.value();
        let stored: Stored =
            rmp_serde::from_slice(v.value()).map_err(|e| ReadError::CorruptSnapshot {
                stream: stream.to_owned(),
                version,
                detail: e.to_string(),
            })?;
        if stored.occurred_at <= bound.max_occurred_at {
            return Ok(Some(Snapshot {
                stream: stream.to_owned(),
                state_schema,
                version,
                occurred_at: stored.occurred_at,
                plugin_version: stored.plugin_version,
                state: stored.state,
            }));
        }
    }
    Ok(None)
}
