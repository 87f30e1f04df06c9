//! What a clustered log writes to Kafka: one record per claim or append, MessagePack.

use serde::{Deserialize, Serialize};

use crate::event::{ExpectedVersion, NewEvent};

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
        assert!(Record::decode(b"\xc1").is_err());
    }
}
