//! A read-only summary of a stopped host's data directory (`factline inspect`): opened with
//! redb's read-only database, so nothing is created, migrated or locked for writing.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;

use super::dead_letter::DeadLetter;
use super::error::{ReadError, storage};
use super::format;
use super::projection::ProjectionRecord;
use super::{DB_FILE, TopicInfo};

/// What `factline inspect` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// `None` for a file no factline ever initialized.
    pub format_version: Option<u64>,
    pub topics: Vec<TopicSummary>,
    pub groups: Vec<GroupPosition>,
    /// Parked events per group.
    pub dead_letters: Vec<DeadLetterCount>,
    /// Rows per read-model scope.
    pub read_models: Vec<(String, u64)>,
    /// Each projector's live read-model generation and rebuild, by name.
    pub projections: Vec<(String, ProjectionRecord)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicSummary {
    pub name: String,
    pub id: u32,
    /// High-water mark (= events stored) of each partition, by partition number.
    pub high_water_marks: Vec<u64>,
}

/// A group's committed offset on one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupPosition {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    /// The next offset the group will process.
    pub committed: u64,
    pub high_water_mark: u64,
    pub lag: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetterCount {
    pub group: String,
    pub parked: u64,
    /// Of those, how many hold their partition (`block` policy).
    pub blocking: u64,
}

/// Why a directory could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{0} holds no factline data (no {DB_FILE})")]
    Missing(String),
    #[error("{0} is in use by a running factline host; stop it first or ask its API")]
    InUse(String),
    #[error(transparent)]
    Read(#[from] ReadError),
}

fn st<E: std::fmt::Display>(e: E) -> ReadError {
    ReadError::Storage(storage(e))
}

/// Reads the summary of the data directory `dir`.
pub fn inspect(dir: &Path) -> Result<Inspection, InspectError> {
    let path = dir.join(DB_FILE);
    if !path.is_file() {
        return Err(InspectError::Missing(dir.display().to_string()));
    }
    let db = ReadOnlyDatabase::open(&path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => InspectError::InUse(path.display().to_string()),
        other => InspectError::Read(st(other)),
    })?;
    let txn = db.begin_read().map_err(st)?;
    let format_version = match open(&txn, format::META)? {
        Some(meta) => meta.get("format_version").map_err(st)?.map(|v| v.value()),
        None => None,
    };
    let mut topics_by_id: Vec<TopicInfo> = Vec::new();
    if let Some(t) = open(&txn, format::TOPICS)? {
        for row in t.iter().map_err(st)? {
            let (k, v) = row.map_err(st)?;
            let (id, partitions) = v.value();
            topics_by_id.push(TopicInfo {
                name: k.value().to_owned(),
                id,
                partitions,
            });
        }
    }
    topics_by_id.sort_by_key(|t| t.id);

    let events = open(&txn, format::EVENTS)?;
    let mut topics = Vec::new();
    for t in &topics_by_id {
        let mut high_water_marks = Vec::new();
        for p in 0..t.partitions {
            let hwm = match &events {
                Some(table) => table
                    .range((t.id, p, 0)..=(t.id, p, u64::MAX))
                    .map_err(st)?
                    .next_back()
                    .transpose()
                    .map_err(st)?
                    .map_or(0, |(k, _)| k.value().2 + 1),
                None => 0,
            };
            high_water_marks.push(hwm);
        }
        topics.push(TopicSummary {
            name: t.name.clone(),
            id: t.id,
            high_water_marks,
        });
    }

    let mut groups = Vec::new();
    if let Some(offsets) = open(&txn, format::GROUP_OFFSETS)? {
        for row in offsets.iter().map_err(st)? {
            let (k, v) = row.map_err(st)?;
            let (group, topic_id, partition) = k.value();
            let Some(topic) = topics.iter().find(|t| t.id == topic_id) else {
                continue;
            };
            let hwm = topic
                .high_water_marks
                .get(partition as usize)
                .copied()
                .unwrap_or(0);
            groups.push(GroupPosition {
                group: group.to_owned(),
                topic: topic.name.clone(),
                partition,
                committed: v.value(),
                high_water_mark: hwm,
                lag: hwm.saturating_sub(v.value()),
            });
        }
    }

    let mut parked: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    if let Some(letters) = open(&txn, format::DEAD_LETTERS)? {
        for row in letters.iter().map_err(st)? {
            let (k, v) = row.map_err(st)?;
            let (group, _, partition, offset) = k.value();
            let record: DeadLetter =
                rmp_serde::from_slice(v.value()).map_err(|e| ReadError::Corrupt {
                    topic: String::new(),
                    partition,
                    offset,
                    detail: format!("dead letter of {group}: {e}"),
                })?;
            let entry = parked.entry(group.to_owned()).or_default();
            entry.0 += 1;
            entry.1 += u64::from(record.blocking);
        }
    }
    let dead_letters = parked
        .into_iter()
        .map(|(group, (parked, blocking))| DeadLetterCount {
            group,
            parked,
            blocking,
        })
        .collect();

    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(models) = open(&txn, format::READ_MODELS)? {
        for row in models.iter().map_err(st)? {
            let (k, _) = row.map_err(st)?;
            *rows.entry(k.value().0.to_owned()).or_default() += 1;
        }
    }

    let mut projections = Vec::new();
    if let Some(records) = open(&txn, format::PROJECTIONS)? {
        for row in records.iter().map_err(st)? {
            let (k, v) = row.map_err(st)?;
            let record = rmp_serde::from_slice(v.value()).map_err(|e| {
                ReadError::Storage(format!("projection record of {}: {e}", k.value()))
            })?;
            projections.push((k.value().to_owned(), record));
        }
    }

    Ok(Inspection {
        format_version,
        topics,
        groups,
        dead_letters,
        read_models: rows.into_iter().collect(),
        projections,
    })
}

/// A table, or `None` when this directory never had one written.
fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, ReadError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(st(e)),
    }
}
