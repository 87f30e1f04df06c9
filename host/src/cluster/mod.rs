//! The log on a Kafka-protocol cluster (`[log] backend = "kafka"`, feature `kafka`;
//! `docs/cluster.md`).
//!
//! Every host replicates every partition of the cluster's topics into its local redb log, in
//! Kafka order, with the same deterministic validation, so every replica holds the same events
//! at the same offsets. One host owns a partition at a time (the `{prefix}.owners` consumer
//! group assigns it; the host then writes a claim with a higher term into the partition) and is
//! the only one that decides commands on its streams. Kafka has no conditional append, so a
//! former owner is fenced by the log itself: an append record counts only if it carries the
//! term and host of the partition's current claim, as every replica sees it at that position.
//!
//! This file holds what does not need the Kafka client (the record format, the validation
//! state, the routing answer, the status); `kafka.rs` the client side.

#[cfg(feature = "kafka")]
mod commands;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "kafka")]
mod record;

#[cfg(feature = "kafka")]
pub use commands::ClusterCommands;
#[cfg(feature = "kafka")]
pub use kafka::Cluster;

use serde::{Deserialize, Serialize};

use crate::aggregate::CommandError;
use crate::failure::FailureKind;

#[cfg(feature = "kafka")]
/// Group name under which a replica stores, per partition, the next Kafka offset to apply
/// (next to the consumer groups' offsets, in the transaction that applies the records).
pub const REPLICA_GROUP: &str = "$cluster";

#[cfg(feature = "kafka")]
/// Read-model scope holding each partition's current claim (key `{topic}/{partition}`),
/// written in the transaction that applies the claim.
pub const CLAIM_SCOPE: &str = "$cluster-claims";

/// Joining the cluster failed, or something only the cluster may change was asked of one host
/// (the variants besides `NotBuilt` and `ReplicaOnly` come from the `kafka` feature's client).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach the Kafka cluster at {servers}: {detail}")]
    Unreachable { servers: String, detail: String },
    /// A topic whose settings would lose events or refuse appends.
    #[error("Kafka topic {topic:?} {detail}")]
    UnsafeTopic { topic: String, detail: String },
    #[error("Kafka client: {0}")]
    Client(String),
    #[error("reading this host's replica: {0}")]
    Replica(String),
    #[error(
        "`[log] backend = \"kafka\"` needs a factline built with the `kafka` feature (cargo build --features kafka)"
    )]
    NotBuilt,
    /// An offline change to state that the cluster holds (`factline dlq` on a stopped host).
    #[error(
        "{what} lives in the cluster, not in this host's replica: change it through the running owner's API (docs/cluster.md)"
    )]
    ReplicaOnly { what: String },
}

/// Where a command for a stream is decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// This host owns the stream's partition.
    Local,
    /// Another host owns it: its API's base URL.
    Forward { host_id: String, url: String },
    /// No host owns it now (a failover is under way): retry shortly.
    NoOwner { partition: String },
}

/// `GET /v1/cluster`: this host and every partition as its replica sees it.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    pub host_id: String,
    pub bootstrap_servers: String,
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: u32,
    /// The host of the current claim (none before the first).
    pub owner: Option<String>,
    pub term: u64,
    /// Next Kafka offset this replica applies.
    pub replicated_offset: u64,
    /// Kafka's high-water mark as last seen (lag = this - `replicated_offset`).
    pub kafka_high_water_mark: Option<u64>,
    /// True when this host owns the partition (assigned to it and its claim is current).
    pub owned: bool,
}

/// Set on a forwarded command: the owner answers it itself or refuses, never forwards again
/// (two hosts that disagree on the owner would otherwise bounce it).
pub const FORWARDED_BY: &str = "x-factline-forwarded-by";

/// Where a host forwards a policy's or saga's command to its owner: `POST` with the
/// MessagePack of a `CommandRequest`, answered with the MessagePack of a [`ForwardAnswer`].
pub const FORWARD_PATH: &str = "/v1/cluster/commands";

/// The owner's answer to a forwarded command: its outcome, or why it has none (yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardAnswer {
    Sent(crate::dispatch::Sent),
    /// The aggregate said no: the command's outcome.
    Rejected {
        code: String,
        message: String,
    },
    /// The aggregate's plugin failed: the command's outcome too.
    Failed {
        plugin: String,
        kind: FailureKind,
        message: String,
    },
    /// No outcome now (not the owner, storage, contention): send it again later.
    Unavailable(String),
}

impl ForwardAnswer {
    /// The answer to a command handled here.
    pub fn of(result: Result<crate::aggregate::CommandOutcome, CommandError>) -> Self {
        match result {
            Ok(o) => ForwardAnswer::Sent(crate::dispatch::Sent {
                stream: o.stream,
                version: o.version,
                deduplicated: o.deduplicated,
            }),
            Err(CommandError::Rejected(r)) => ForwardAnswer::Rejected {
                code: r.code,
                message: r.message,
            },
            Err(CommandError::Failed { plugin, failure }) => ForwardAnswer::Failed {
                plugin,
                kind: failure.kind,
                message: failure.message,
            },
            Err(e) => ForwardAnswer::Unavailable(e.to_string()),
        }
    }

    /// The answer as the sender's result.
    pub fn into_result(self) -> Result<crate::dispatch::Sent, CommandError> {
        match self {
            ForwardAnswer::Sent(s) => Ok(s),
            ForwardAnswer::Rejected { code, message } => {
                Err(CommandError::Rejected(crate::plugin::Rejection {
                    code,
                    message,
                }))
            }
            ForwardAnswer::Failed {
                plugin,
                kind,
                message,
            } => Err(CommandError::Failed {
                plugin,
                failure: crate::plugin::CallFailure::new(kind, message),
            }),
            ForwardAnswer::Unavailable(m) => Err(CommandError::Append(
                crate::log::AppendError::Unavailable(m),
            )),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("an answer always encodes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forwarded command's outcome reaches the sender as the same kind of result: an outcome
    /// (sent, rejected, failed) or none yet (unavailable, which the sender retries).
    #[test]
    fn forward_answers_round_trip_into_the_senders_result() {
        let sent = crate::dispatch::Sent {
            stream: "inventory-main".into(),
            version: 4,
            deduplicated: true,
        };
        let answers = [
            ForwardAnswer::Sent(sent.clone()),
            ForwardAnswer::Rejected {
                code: "out-of-stock".into(),
                message: "2 left".into(),
            },
            ForwardAnswer::Failed {
                plugin: "inventory".into(),
                kind: FailureKind::Trap,
                message: "unreachable".into(),
            },
            ForwardAnswer::Unavailable("no owner".into()),
        ];
        for a in &answers {
            let decoded: ForwardAnswer = rmp_serde::from_slice(&a.encode()).unwrap();
            assert_eq!(&decoded, a);
        }
        let mut results = answers.into_iter().map(ForwardAnswer::into_result);
        assert_eq!(results.next().unwrap().unwrap(), sent);
        assert!(matches!(
            results.next().unwrap(),
            Err(CommandError::Rejected(r)) if r.code == "out-of-stock"
        ));
        assert!(matches!(
            results.next().unwrap(),
            Err(CommandError::Failed { failure, .. }) if failure.kind == FailureKind::Trap
        ));
        assert!(matches!(
            results.next().unwrap(),
            Err(CommandError::Append(e)) if e.is_transient()
        ));
    }
}
