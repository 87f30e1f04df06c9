//! Temporal queries: an aggregate's state as of a stream version or a point in time, rebuilt
//! from the closest snapshot at or before it (or from the first event) plus the events up to it.

use serde::{Deserialize, Serialize};

use super::{AggregateHandler, CommandError};
use crate::log::SnapshotBound;

/// A point in a stream's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AsOf {
    /// After the event with this stream version (0: before the first event).
    Version(u64),
    /// After every event that occurred at or before this time (ms since the Unix epoch).
    Time(u64),
    /// Now: every event.
    Latest,
}

impl AsOf {
    fn bound(self) -> SnapshotBound {
        match self {
            AsOf::Version(v) => SnapshotBound {
                max_version: v,
                max_occurred_at: u64::MAX,
            },
            AsOf::Time(t) => SnapshotBound {
                max_version: u64::MAX,
                max_occurred_at: t,
            },
            AsOf::Latest => SnapshotBound::LATEST,
        }
    }
}

impl AggregateHandler {
    /// The state of aggregate `id` as of `at`: `(version, state bytes)`. Uses snapshots when
    /// the aggregate writes them; never the cache, never writes.
    pub fn state_as_of(&self, id: &str, at: AsOf) -> Result<(u64, Vec<u8>), CommandError> {
        self.rebuild(id, at, true)
    }

    /// Like [`state_as_of`](Self::state_as_of) but replaying every event from the first,
    /// ignoring snapshots: the reference a snapshot must agree with.
    pub fn state_replayed(&self, id: &str, at: AsOf) -> Result<(u64, Vec<u8>), CommandError> {
        self.rebuild(id, at, false)
    }

    fn rebuild(
        &self,
        id: &str,
        at: AsOf,
        use_snapshots: bool,
    ) -> Result<(u64, Vec<u8>), CommandError> {
        let stream = self.stream_of(id);
        let bound = at.bound();
        let mut instance = self.lock()?;
        let start = self.start_state(&mut instance, &stream, bound, use_snapshots)?;
        let (state, _) = self.fold(&mut instance, &stream, start, bound)?;
        Ok((state.version, state.state.to_vec()))
    }
}
