//! The engine: every partition-consuming handler (projector, policy, saga, relay) runs as a
//! consumer group with a committed offset per partition, in offset order per partition
//! (DESIGN §4 invariant 3), effects and offset in one commit (invariant 4), failed deliveries
//! retried with backoff and then parked in the dead-letter queue (invariant 5).
//!
//! - `handler`: what a plugin kind contributes (effects of a batch, timers).
//! - `retry`: the retry policy and the park decision (pure).
//! - `group`: one group's state machine over its assigned partitions, and the DLQ operations.
//! - `runner`: the async pool that runs every group's lanes and wakes them on commits.

mod commits;
mod group;
mod handler;
mod retry;
mod runner;

pub use commits::CommitPath;
pub(crate) use group::dry_run;
pub use group::{
    ConsumerError, ConsumerGroup, GroupConfig, GroupMetrics, PartitionLag, Replay, RetryOutcome,
    StartFrom, Step, lag,
};
pub use handler::{
    BatchContext, Effects, Fired, Handler, HandlerError, Output, Refusal, Sandbox, Timers,
};
pub use retry::{DeadLetterPolicy, DeliveryError, NextStep, RetryPolicy};
pub use runner::{ConsumerPool, GroupHandle, Paused};

#[cfg(test)]
mod tests;
