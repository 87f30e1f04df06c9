//! Consumer groups: every partition-consuming handler (projectors now; policies and sagas next)
//! runs as a group with a committed offset per partition, in offset order per partition
//! (DESIGN §4 invariant 3), effects and offset in one commit (invariant 4), failed deliveries
//! retried with backoff and then parked in the dead-letter queue (invariant 5).
//!
//! - `retry`: the retry policy and the park decision (pure).
//! - `group`: one group's state machine over its partitions, and the DLQ operations.
//! - `runner`: the async pool that runs many groups concurrently and wakes them on commits.

mod group;
mod retry;
mod runner;

pub use group::{
    ConsumerError, ConsumerGroup, GroupConfig, GroupMetrics, PartitionLag, RetryOutcome, StartFrom,
    Step, lag,
};
pub use retry::{DeadLetterPolicy, DeliveryError, NextStep, RetryPolicy};
pub use runner::{ConsumerPool, GroupHandle, Paused};

#[cfg(test)]
mod tests;
