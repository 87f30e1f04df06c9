//! Projector read models, blue/green: which generation of a projector's read model is live, and
//! the one being rebuilt beside it.
//!
//! Generation `g` of projector `p` keeps its rows under read-model scope `p` (g = 0, the scope
//! every projector starts with) or `p@g`. The live consumer group is always named `p` (so dead
//! letters and offsets keep their name across rebuilds); a rebuild runs as group `p@rebuild`
//! into the next generation's scope. The switch is one transaction: the rebuild group's offsets
//! and dead letters become the live group's, and the record names the new generation and marks
//! the old one retired. A query resolves the live scope in the same read transaction as its
//! rows, so it sees the old read model or the new one, never a mix or nothing. Retired rows are
//! deleted afterwards in bounded transactions ([`ProjectionChange::DropRetired`]), so a large
//! read model never stalls the writer (or the live group's switch) while it goes.

use redb::{ReadableDatabase, ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::append::Fatal;
use super::dead_letter::DeadLetter;
use super::error::{ReadError, storage};
use super::format;

/// One generation of a projector's read model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadModelGeneration {
    pub generation: u64,
    /// The read-model version the plugin that builds it declares.
    pub read_model_version: u32,
    /// The plugin version (label+hash) that builds it.
    pub plugin_version: String,
    /// When it went live (the active one) or started building (a rebuild), ms since the epoch.
    pub since: u64,
}

impl ReadModelGeneration {
    /// Its read-model scope.
    pub fn scope(&self, projector: &str) -> String {
        scope(projector, self.generation)
    }
}

/// A projector's read models: the live one, and the one being rebuilt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionRecord {
    pub active: ReadModelGeneration,
    pub rebuild: Option<ReadModelGeneration>,
    /// Generations no query can reach any more whose rows are still being deleted.
    #[serde(default)]
    pub retired: Vec<u64>,
}

/// The read-model scope of generation `generation` of `projector`.
pub fn scope(projector: &str, generation: u64) -> String {
    if generation == 0 {
        projector.to_owned()
    } else {
        format!("{projector}@{generation}")
    }
}

/// The consumer group that rebuilds `projector`'s next read model.
pub fn rebuild_group(projector: &str) -> String {
    format!("{projector}@rebuild")
}

/// A change to a projector's record, applied by the writer in its own transaction.
#[derive(Clone, Debug)]
pub enum ProjectionChange {
    /// Records the live generation of a projector that has no record yet (its first start on
    /// this log: generation 0, scope = its name). Leaves an existing record alone.
    Init {
        projector: String,
        read_model_version: u32,
        plugin_version: String,
    },
    /// Starts a rebuild into a new generation, clearing what an earlier unfinished one left.
    /// With `resume`, an unfinished rebuild by the same plugin version is kept and continues
    /// from its committed offsets instead.
    BeginRebuild {
        projector: String,
        read_model_version: u32,
        plugin_version: String,
        resume: bool,
    },
    /// Makes the rebuilt generation live (see the module docs).
    Switch { projector: String, generation: u64 },
    /// Drops an unfinished rebuild: its offsets and dead letters; its rows are retired.
    Abort { projector: String, generation: u64 },
    /// Deletes at most `max_rows` rows of the oldest retired generation (forgetting it once it
    /// is empty).
    DropRetired { projector: String, max_rows: usize },
}

/// A refused change; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectionError {
    #[error("projector {0:?} has no read-model record")]
    Unknown(String),
    /// Another rebuild replaced or finished this one.
    #[error("projector {projector:?} is not rebuilding generation {generation}")]
    NotRebuilding { projector: String, generation: u64 },
    #[error("storage error, nothing was written: {0}")]
    Storage(String),
    #[error("the event log is closed")]
    Closed,
}

type OffsetsTable<'t> = Table<'t, (&'static str, u32, u32), u64>;
type DeadLettersTable<'t> = Table<'t, (&'static str, u32, u32, u64), &'static [u8]>;
type ReadModelsTable<'t> = Table<'t, (&'static str, &'static str), &'static [u8]>;

pub(crate) fn apply(
    txn: &WriteTransaction,
    change: &ProjectionChange,
    now: u64,
) -> Result<Result<ProjectionRecord, ProjectionError>, Fatal> {
    let mut records = txn.open_table(format::PROJECTIONS)?;
    let projector = match change {
        ProjectionChange::Init { projector, .. }
        | ProjectionChange::BeginRebuild { projector, .. }
        | ProjectionChange::Switch { projector, .. }
        | ProjectionChange::Abort { projector, .. }
        | ProjectionChange::DropRetired { projector, .. } => projector.as_str(),
    };
    let stored: Option<ProjectionRecord> = match records.get(projector)? {
        Some(v) => Some(rmp_serde::from_slice(v.value())?),
        None => None,
    };
    let mut offsets = txn.open_table(format::GROUP_OFFSETS)?;
    let mut dead_letters = txn.open_table(format::DEAD_LETTERS)?;
    let mut rows = txn.open_table(format::READ_MODELS)?;
    let rebuild = rebuild_group(projector);
    let record = match (change, stored) {
        (
            ProjectionChange::Init {
                read_model_version,
                plugin_version,
                ..
            },
            None,
        ) => ProjectionRecord {
            active: ReadModelGeneration {
                generation: 0,
                read_model_version: *read_model_version,
                plugin_version: plugin_version.clone(),
                since: now,
            },
            rebuild: None,
            retired: Vec::new(),
        },
        (ProjectionChange::Init { .. }, Some(r)) => return Ok(Ok(r)),
        (_, None) => return Ok(Err(ProjectionError::Unknown(projector.to_owned()))),
        (
            ProjectionChange::BeginRebuild {
                read_model_version,
                plugin_version,
                resume,
                ..
            },
            Some(mut r),
        ) => {
            if let Some(p) = &r.rebuild {
                if *resume
                    && p.read_model_version == *read_model_version
                    && p.plugin_version == *plugin_version
                {
                    return Ok(Ok(r));
                }
                r.retired.push(p.generation);
            }
            delete_group(&mut offsets, &mut dead_letters, &rebuild)?;
            // Never reuse a generation whose rows may still exist.
            let last = r
                .retired
                .iter()
                .copied()
                .chain(r.rebuild.as_ref().map(|p| p.generation));
            r.rebuild = Some(ReadModelGeneration {
                generation: last.fold(r.active.generation, u64::max) + 1,
                read_model_version: *read_model_version,
                plugin_version: plugin_version.clone(),
                since: now,
            });
            r
        }
        (ProjectionChange::Switch { generation, .. }, Some(mut r)) => {
            let Some(next) = r.rebuild.take().filter(|p| p.generation == *generation) else {
                return Ok(Err(ProjectionError::NotRebuilding {
                    projector: projector.to_owned(),
                    generation: *generation,
                }));
            };
            delete_group(&mut offsets, &mut dead_letters, projector)?;
            move_group(&mut offsets, &mut dead_letters, &rebuild, projector)?;
            r.retired.push(r.active.generation);
            r.active = ReadModelGeneration { since: now, ..next };
            r
        }
        (ProjectionChange::Abort { generation, .. }, Some(mut r)) => {
            let Some(pending) = r.rebuild.take().filter(|p| p.generation == *generation) else {
                return Ok(Err(ProjectionError::NotRebuilding {
                    projector: projector.to_owned(),
                    generation: *generation,
                }));
            };
            delete_group(&mut offsets, &mut dead_letters, &rebuild)?;
            r.retired.push(pending.generation);
            r
        }
        (ProjectionChange::DropRetired { max_rows, .. }, Some(mut r)) => {
            let Some(&oldest) = r.retired.first() else {
                return Ok(Ok(r));
            };
            if delete_scope(&mut rows, &scope(projector, oldest), *max_rows)? {
                r.retired.remove(0);
            }
            r
        }
    };
    let bytes = rmp_serde::to_vec_named(&record)?;
    records.insert(projector, bytes.as_slice())?;
    Ok(Ok(record))
}

/// Deletes up to `max_rows` rows of `scope`; true when none is left.
fn delete_scope(
    rows: &mut ReadModelsTable<'_>,
    scope: &str,
    max_rows: usize,
) -> Result<bool, Fatal> {
    let mut keys = Vec::new();
    let mut empty = true;
    for row in rows.range((scope, "")..)? {
        let (k, _) = row?;
        let (s, key) = k.value();
        if s != scope {
            break;
        }
        if keys.len() == max_rows {
            empty = false;
            break;
        }
        keys.push(key.to_owned());
    }
    for key in &keys {
        rows.remove((scope, key.as_str()))?;
    }
    Ok(empty)
}

fn group_offsets(offsets: &OffsetsTable<'_>, group: &str) -> Result<Vec<(u32, u32, u64)>, Fatal> {
    let mut out = Vec::new();
    for row in offsets.range((group, 0, 0)..=(group, u32::MAX, u32::MAX))? {
        let (k, v) = row?;
        let (_, topic, partition) = k.value();
        out.push((topic, partition, v.value()));
    }
    Ok(out)
}

/// Where a dead letter sits within its group: topic id, partition, offset.
type Position = (u32, u32, u64);

/// The group's dead letters and where each sits.
fn group_dead_letters(
    dead_letters: &DeadLettersTable<'_>,
    group: &str,
) -> Result<Vec<(Position, DeadLetter)>, Fatal> {
    let mut out = Vec::new();
    for row in dead_letters.range((group, 0, 0, 0)..=(group, u32::MAX, u32::MAX, u64::MAX))? {
        let (k, v) = row?;
        let (_, topic, partition, offset) = k.value();
        out.push((
            (topic, partition, offset),
            rmp_serde::from_slice(v.value())?,
        ));
    }
    Ok(out)
}

fn delete_group(
    offsets: &mut OffsetsTable<'_>,
    dead_letters: &mut DeadLettersTable<'_>,
    group: &str,
) -> Result<(), Fatal> {
    for (topic, partition, _) in group_offsets(offsets, group)? {
        offsets.remove((group, topic, partition))?;
    }
    for ((topic, partition, offset), _) in group_dead_letters(dead_letters, group)? {
        dead_letters.remove((group, topic, partition, offset))?;
    }
    Ok(())
}

/// Renames group `from` to `to` in the offsets and dead letters (`to` must have none).
fn move_group(
    offsets: &mut OffsetsTable<'_>,
    dead_letters: &mut DeadLettersTable<'_>,
    from: &str,
    to: &str,
) -> Result<(), Fatal> {
    for (topic, partition, next) in group_offsets(offsets, from)? {
        offsets.remove((from, topic, partition))?;
        offsets.insert((to, topic, partition), next)?;
    }
    for ((topic, partition, offset), mut letter) in group_dead_letters(dead_letters, from)? {
        dead_letters.remove((from, topic, partition, offset))?;
        letter.group = to.to_owned();
        let bytes = rmp_serde::to_vec_named(&letter)?;
        dead_letters.insert((to, topic, partition, offset), bytes.as_slice())?;
    }
    Ok(())
}

/// The stored record of `projector`, if it has one.
pub(crate) fn record(
    db: &redb::Database,
    projector: &str,
) -> Result<Option<ProjectionRecord>, ReadError> {
    let txn = db
        .begin_read()
        .map_err(|e| ReadError::Storage(storage(e)))?;
    let table = txn
        .open_table(format::PROJECTIONS)
        .map_err(|e| ReadError::Storage(storage(e)))?;
    read_record(&table, projector)
}

pub(crate) fn read_record(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    projector: &str,
) -> Result<Option<ProjectionRecord>, ReadError> {
    let Some(v) = table
        .get(projector)
        .map_err(|e| ReadError::Storage(storage(e)))?
    else {
        return Ok(None);
    };
    rmp_serde::from_slice(v.value())
        .map(Some)
        .map_err(|e| ReadError::Storage(format!("projection record of {projector:?}: {e}")))
}
