//! The durable saga log of one instance, as stored (MessagePack, named fields).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::log::{EventLog, ReadError, StoredSaga};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SagaStatus {
    Running,
    Completed,
    Compensating,
    Failed,
    NeedsAttention,
}

impl SagaStatus {
    /// Whether the instance still has work (and may need its plugin version).
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            SagaStatus::Running | SagaStatus::Compensating | SagaStatus::NeedsAttention
        )
    }
}

impl std::fmt::Display for SagaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SagaStatus::Running => "running",
            SagaStatus::Completed => "completed",
            SagaStatus::Compensating => "compensating",
            SagaStatus::Failed => "failed",
            SagaStatus::NeedsAttention => "needs-attention",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Pending,
    Completed,
    Failed,
    Compensated,
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StepStatus::Pending => "pending",
            StepStatus::Completed => "completed",
            StepStatus::Failed => "failed",
            StepStatus::Compensated => "compensated",
        })
    }
}

/// One step of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub status: StepStatus,
    pub timeout_ms: u64,
    pub compensable: bool,
    /// When its command was sent (ms since the Unix epoch); `None` while not yet sent.
    pub sent_at: Option<u64>,
    /// When its status last changed.
    pub updated_at: Option<u64>,
    /// The id of the command sent for it.
    pub command_id: Option<Uuid>,
    /// Failed compensation attempts so far.
    pub compensation_attempts: u32,
    pub compensation_error: Option<String>,
}

/// One line of an instance's history, in the order things happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: u64,
    pub step: String,
    pub what: String,
}

/// One saga instance's durable log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaInstance {
    pub saga: String,
    pub instance_id: String,
    /// Content hash of the plugin version the instance started on (and finishes on).
    pub plugin_version: String,
    pub status: SagaStatus,
    /// Of the trigger; every command the instance sends carries it, and so do the answers.
    pub correlation_id: String,
    pub trigger_event_id: Uuid,
    pub trigger_topic: String,
    pub trigger_partition: u32,
    /// The plugin's opaque instance data.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    pub steps: Vec<StepRecord>,
    pub failed_step: Option<String>,
    pub failure_reason: Option<String>,
    /// Why the instance needs an operator (a compensation kept failing).
    pub attention: Option<String>,
    pub history: Vec<HistoryEntry>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl SagaInstance {
    /// The step awaiting its answer (or its command): the first pending one.
    pub fn current_step(&self) -> Option<usize> {
        self.steps
            .iter()
            .position(|s| s.status == StepStatus::Pending)
    }

    pub(crate) fn note(&mut self, now: u64, step: usize, what: impl Into<String>) {
        self.updated_at = now;
        self.steps[step].updated_at = Some(now);
        self.history.push(HistoryEntry {
            at: now,
            step: self.steps[step].name.clone(),
            what: what.into(),
        });
    }

    /// The instance as JSON with its `data` decoded from MessagePack (the API and
    /// `factline saga --json` show it so): no data is `null`; data that is not MessagePack is
    /// `null` with `data_error` saying why.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a saga record always serializes");
        let (data, error) = match factline_guest::codec::msgpack_to_json(&self.data) {
            _ if self.data.is_empty() => (serde_json::Value::Null, None),
            Ok(d) => (d, None),
            Err(e) => (serde_json::Value::Null, Some(e.to_string())),
        };
        v["data"] = data;
        if let Some(e) = error {
            v["data_error"] = e.into();
        }
        v
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a saga record always serializes")
    }
}

/// A stored record that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("saga {saga} instance {instance_id} is corrupt: {detail}")]
pub struct CorruptRecord {
    pub saga: String,
    pub instance_id: String,
    pub detail: String,
}

/// Decodes a stored record; returns it with its revision.
pub fn decode(stored: &StoredSaga) -> Result<(u64, SagaInstance), CorruptRecord> {
    rmp_serde::from_slice(&stored.record)
        .map(|i| (stored.revision, i))
        .map_err(|e| CorruptRecord {
            saga: stored.saga.clone(),
            instance_id: stored.instance_id.clone(),
            detail: e.to_string(),
        })
}

/// Why reading the saga log failed.
#[derive(Debug, thiserror::Error)]
pub enum SagaLogError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
}

/// Every instance of `saga` (all sagas when `None`).
pub fn list(log: &EventLog, saga: Option<&str>) -> Result<Vec<SagaInstance>, SagaLogError> {
    log.saga_instances(saga)?
        .iter()
        .map(|s| Ok(decode(s)?.1))
        .collect()
}

/// One instance by id, in any saga (ids are unique per saga; the first match wins when `saga`
/// is `None`).
pub fn find(
    log: &EventLog,
    saga: Option<&str>,
    instance_id: &str,
) -> Result<Option<SagaInstance>, SagaLogError> {
    Ok(list(log, saga)?
        .into_iter()
        .find(|i| i.instance_id == instance_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, status: StepStatus) -> StepRecord {
        StepRecord {
            name: name.into(),
            status,
            timeout_ms: 10,
            compensable: true,
            sent_at: None,
            updated_at: None,
            command_id: None,
            compensation_attempts: 0,
            compensation_error: None,
        }
    }

    #[test]
    fn a_record_round_trips_and_names_its_current_step() {
        let mut i = SagaInstance {
            saga: "s".into(),
            instance_id: "i".into(),
            plugin_version: "abc".into(),
            status: SagaStatus::Running,
            correlation_id: "c".into(),
            trigger_event_id: Uuid::nil(),
            trigger_topic: "t".into(),
            trigger_partition: 0,
            data: vec![1, 2, 3],
            steps: vec![
                step("a", StepStatus::Completed),
                step("b", StepStatus::Pending),
            ],
            failed_step: None,
            failure_reason: None,
            attention: None,
            history: Vec::new(),
            created_at: 1,
            updated_at: 1,
        };
        assert_eq!(i.current_step(), Some(1));
        i.note(5, 1, "sent");
        assert_eq!((i.updated_at, i.steps[1].updated_at), (5, Some(5)));
        let stored = StoredSaga {
            saga: "s".into(),
            instance_id: "i".into(),
            revision: 3,
            record: i.encode(),
        };
        assert_eq!(decode(&stored).unwrap(), (3, i));
        let corrupt = StoredSaga {
            record: vec![0xc1],
            ..stored
        };
        assert!(
            decode(&corrupt)
                .unwrap_err()
                .to_string()
                .contains("corrupt")
        );
    }

    #[test]
    fn in_flight_statuses_are_the_ones_that_may_still_act() {
        use SagaStatus::*;
        let in_flight: Vec<bool> = [Running, Compensating, NeedsAttention, Completed, Failed]
            .iter()
            .map(|s| s.in_flight())
            .collect();
        assert_eq!(in_flight, [true, true, true, false, false]);
        assert_eq!(NeedsAttention.to_string(), "needs-attention");
    }
}
