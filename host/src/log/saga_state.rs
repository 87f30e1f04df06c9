//! Saga state in the log: instance records, the correlation index and durable timers.
//!
//! The saga runner (`crate::saga`) owns the record format; the log stores its bytes under a
//! revision and refuses a write whose expected revision differs, the way a handler commit's
//! offset fences a batch. Writes ride in a [`super::HandlerCommit`], so an instance's new state,
//! the step command's events and the consumer offset are one transaction (DESIGN §4 inv. 4).

use redb::{Database, ReadableDatabase, ReadableTable, Table};

use super::append::Fatal;
use super::error::{ReadError, storage};
use super::format;

/// One instance's new state, written if its stored revision is `expected_revision`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SagaWrite {
    pub saga: String,
    pub instance_id: String,
    /// `None`: the instance must not exist yet.
    pub expected_revision: Option<u64>,
    /// The record (the saga runner's MessagePack); stored at `expected_revision + 1` (or 1).
    #[serde(with = "serde_bytes")]
    pub record: Vec<u8>,
    /// Correlation ids to index for this instance (added; never removed while it exists).
    pub correlations: Vec<String>,
    pub timer: TimerChange,
}

/// What a write does to the instance's durable timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TimerChange {
    Keep,
    /// Fire at this time (ms since the Unix epoch), replacing any earlier timer.
    Set(u64),
    Clear,
}

/// A stored instance record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSaga {
    pub saga: String,
    pub instance_id: String,
    pub revision: u64,
    pub record: Vec<u8>,
}

pub(crate) struct SagaTables<'txn> {
    instances: Table<'txn, (&'static str, &'static str), (u64, &'static [u8])>,
    correlations: Table<'txn, (&'static str, &'static str, &'static str), ()>,
    timers: Table<'txn, (&'static str, &'static str), u64>,
}

impl<'txn> SagaTables<'txn> {
    pub fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, Fatal> {
        Ok(SagaTables {
            instances: txn.open_table(format::SAGA_INSTANCES)?,
            correlations: txn.open_table(format::SAGA_CORRELATIONS)?,
            timers: txn.open_table(format::SAGA_TIMERS)?,
        })
    }

    /// The stored revision if it differs from what `w` expects.
    pub fn check(&self, w: &SagaWrite) -> Result<Result<(), Option<u64>>, Fatal> {
        let stored = self
            .instances
            .get((w.saga.as_str(), w.instance_id.as_str()))?
            .map(|v| v.value().0);
        Ok(if stored == w.expected_revision {
            Ok(())
        } else {
            Err(stored)
        })
    }

    pub fn write(&mut self, w: &SagaWrite) -> Result<(), Fatal> {
        let key = (w.saga.as_str(), w.instance_id.as_str());
        let revision = w.expected_revision.map_or(1, |r| r + 1);
        self.instances
            .insert(key, (revision, w.record.as_slice()))?;
        for c in &w.correlations {
            self.correlations
                .insert((w.saga.as_str(), c.as_str(), w.instance_id.as_str()), ())?;
        }
        match w.timer {
            TimerChange::Keep => {}
            TimerChange::Set(due) => {
                self.timers.insert(key, due)?;
            }
            TimerChange::Clear => {
                self.timers.remove(key)?;
            }
        }
        Ok(())
    }
}

fn st<E: std::fmt::Display>(e: E) -> ReadError {
    ReadError::Storage(storage(e))
}

pub(crate) fn instance(
    db: &Database,
    saga: &str,
    instance_id: &str,
) -> Result<Option<StoredSaga>, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::SAGA_INSTANCES).map_err(st)?;
    Ok(table.get((saga, instance_id)).map_err(st)?.map(|v| {
        let (revision, record) = v.value();
        StoredSaga {
            saga: saga.to_owned(),
            instance_id: instance_id.to_owned(),
            revision,
            record: record.to_vec(),
        }
    }))
}

/// Every instance of `saga` (of every saga when `None`), in (saga, instance id) order.
pub(crate) fn instances(db: &Database, saga: Option<&str>) -> Result<Vec<StoredSaga>, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::SAGA_INSTANCES).map_err(st)?;
    let rows = match saga {
        Some(s) => table.range((s, "")..).map_err(st)?,
        None => table.iter().map_err(st)?,
    };
    let mut out = Vec::new();
    for row in rows {
        let (k, v) = row.map_err(st)?;
        let (s, id) = k.value();
        if saga.is_some_and(|want| want != s) {
            break;
        }
        let (revision, record) = v.value();
        out.push(StoredSaga {
            saga: s.to_owned(),
            instance_id: id.to_owned(),
            revision,
            record: record.to_vec(),
        });
    }
    Ok(out)
}

/// Instance ids of `saga` indexed under `correlation_id`.
pub(crate) fn correlated(
    db: &Database,
    saga: &str,
    correlation_id: &str,
) -> Result<Vec<String>, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::SAGA_CORRELATIONS).map_err(st)?;
    let mut out = Vec::new();
    for row in table.range((saga, correlation_id, "")..).map_err(st)? {
        let (k, _) = row.map_err(st)?;
        let (s, c, id) = k.value();
        if s != saga || c != correlation_id {
            break;
        }
        out.push(id.to_owned());
    }
    Ok(out)
}

/// The timers of `saga`: `(instance id, due ms)`.
pub(crate) fn timers(db: &Database, saga: &str) -> Result<Vec<(String, u64)>, ReadError> {
    let txn = db.begin_read().map_err(st)?;
    let table = txn.open_table(format::SAGA_TIMERS).map_err(st)?;
    let mut out = Vec::new();
    for row in table.range((saga, "")..).map_err(st)? {
        let (k, v) = row.map_err(st)?;
        let (s, id) = k.value();
        if s != saga {
            break;
        }
        out.push((id.to_owned(), v.value()));
    }
    Ok(out)
}
