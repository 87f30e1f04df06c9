//! Where a group's commits go. On the embedded log, into the local log's writer; on a
//! clustered log, a policy's, saga's or relay's commit is a record in a Kafka partition that
//! every replica applies in order (`cluster::Cluster::commit_path`), so its offsets, saga state
//! and dead letters are the same on every host and survive the host that made them.

use crate::log::{AppendResult, CommitError, EventLog, HandlerCommit};

/// Commits a group's batches (effects, offset, dead letters, saga writes) atomically.
pub trait CommitPath: Send + Sync + std::fmt::Debug {
    /// Commits `commit` and returns once it is applied (or refused: nothing of it applied).
    fn commit(&self, commit: HandlerCommit) -> Result<Vec<AppendResult>, CommitError>;
}

impl CommitPath for EventLog {
    fn commit(&self, commit: HandlerCommit) -> Result<Vec<AppendResult>, CommitError> {
        self.commit_handler(commit)
    }
}
