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
mod kafka;
#[cfg(feature = "kafka")]
mod record;

#[cfg(feature = "kafka")]
pub use kafka::Cluster;

use serde::Serialize;

#[cfg(feature = "kafka")]
/// Group name under which a replica stores, per partition, the next Kafka offset to apply
/// (next to the consumer groups' offsets, in the transaction that applies the records).
pub const REPLICA_GROUP: &str = "$cluster";

#[cfg(feature = "kafka")]
/// Read-model scope holding each partition's current claim (key `{topic}/{partition}`),
/// written in the transaction that applies the claim.
pub const CLAIM_SCOPE: &str = "$cluster-claims";

/// Joining the cluster failed; the host does not start (the variants besides `NotBuilt` and
/// `UnsupportedKind` come from the `kafka` feature's client).
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
    #[error(
        "{plugin:?} is a {kind}: policies and sagas do not run on the Kafka backend yet (docs/cluster.md, limits); run them on the embedded log"
    )]
    UnsupportedKind { plugin: String, kind: String },
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
