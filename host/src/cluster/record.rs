//! What a clustered log writes to Kafka: one record per claim, append or consumer commit,
//! MessagePack.

use serde::{Deserialize, Serialize};

use crate::event::{ExpectedVersion, NewEvent};
use crate::log::HandlerCommit;

/// One Kafka record of a factline topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A host takes over the partition. Applies iff `term` is above the current claim's.
    Claim(Claim),
    /// One append, decided by the owner of `(term, host_id)`. Applies iff that claim is the
    /// partition's current one, `expected` holds and its event ids are not stored yet.
    Append {
        term: u64,
        host_id: String,
        stream: String,
        expected: ExpectedVersion,
        /// The owner's clock when it decided: every replica stores this time.
        occurred_at: u64,
        events: Vec<NewEvent>,
    },
    /// A consumer group's commit (a policy's, saga's or relay's offset, dead letters, saga
    /// instances), decided by the owner of `(term, host_id)`. Applies iff that claim is the
    /// partition's current one and the commit's own fences (offset, saga revisions, dead
    /// letters) hold on the replica, which they do on every replica alike: these groups
    /// commit nowhere else. It never carries appends (commands go through their owners).
    Commit {
        term: u64,
        host_id: String,
        commit: Box<HandlerCommit>,
    },
}

/// A partition's owner as the log says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub term: u64,
    pub host_id: String,
    /// Where the owner takes forwarded commands.
    pub url: String,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a record always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

impl Claim {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a claim always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Option<Claim> {
        rmp_serde::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let claim = Record::Claim(Claim {
            term: 3,
            host_id: "h1".into(),
            url: "http://127.0.0.1:7071".into(),
        });
        assert_eq!(Record::decode(&claim.encode()).unwrap(), claim);
        let append = Record::Append {
            term: 3,
            host_id: "h1".into(),
            stream: "order-1".into(),
            expected: ExpectedVersion::Exact(2),
            occurred_at: 1_700_000_000_000,
            events: vec![NewEvent {
                event_id: Some(uuid::Uuid::from_u128(7)),
                event_type: "order.placed".into(),
                schema_version: 1,
                payload: vec![0x80],
                metadata: Default::default(),
                correlation_id: Some("c".into()),
                causation_id: None,
            }],
        };
        assert_eq!(Record::decode(&append.encode()).unwrap(), append);
        let commit = HandlerCommit {
            group: "inventory-release".into(),
            topic: "order".into(),
            partition: 2,
            expected_offset: Some(4),
            next_offset: 9,
            saga_writes: vec![crate::log::SagaWrite {
                saga: "s".into(),
                instance_id: "i".into(),
                expected_revision: None,
                record: vec![1, 2, 3],
                correlations: vec!["c".into()],
                timer: crate::log::TimerChange::Set(17),
            }],
            ..HandlerCommit::default()
        };
        let commit = Record::Commit {
            term: 3,
            host_id: "h1".into(),
            commit: Box::new(commit),
        };
        assert_eq!(Record::decode(&commit.encode()).unwrap(), commit);
        assert!(Record::decode(b"\xc1").is_err());
    }
}
