//! What a plugin kind gives the engine: a [`Handler`] turns a batch of one partition's events
//! into [`Effects`], and the engine does everything else (reading, offsets, retries, dead
//! letters, lag, lanes, timers). One file per kind implements it: `projector/`, `policy/`,
//! `saga/`, `outbox/`.

use crate::event::{Event, ExpectedVersion, NewEvent};
use crate::failure::FailureKind;
use crate::log::{EventLog, HandlerCommit, ReadCheck, ReadError, ReadModelWrite, SagaWrite};
use crate::plugin::{CallFailure, OutgoingCommand, Overlay};

/// What a batch changes, committed by the engine in one transaction with the offset.
#[derive(Debug, Default)]
pub struct Effects {
    pub read_model_writes: Vec<ReadModelWrite>,
    /// What the batch read from its snapshot; any difference at commit re-runs the batch.
    pub read_checks: Vec<ReadCheck>,
    /// Events appended with the batch (commands' events): `(stream, expected version, events)`.
    pub appends: Vec<(String, ExpectedVersion, Vec<NewEvent>)>,
    /// Saga instances moved, each fenced by its revision.
    pub saga_writes: Vec<SagaWrite>,
    /// Events of the batch whose outcome is a business refusal: parked at once, never retried,
    /// while the batch's other effects commit.
    pub refused: Vec<Refusal>,
    /// The commands the plugin sent, as it sent them: recorded in a [`Sandbox`] only (the
    /// deploy gate compares them; a deduplicated command appends nothing), never committed.
    pub commands: Vec<OutgoingCommand>,
}

impl Effects {
    /// `base` (where and how the offset moves) carrying these effects; refusals are the
    /// engine's to turn into dead letters, so they are handed back.
    pub(super) fn commit(self, base: HandlerCommit) -> (HandlerCommit, Vec<Refusal>) {
        let commit = HandlerCommit {
            read_model_writes: self.read_model_writes,
            read_checks: self.read_checks,
            appends: self.appends,
            saga_writes: self.saga_writes,
            ..base
        };
        (commit, self.refused)
    }

    pub fn is_empty(&self) -> bool {
        self.read_model_writes.is_empty()
            && self.appends.is_empty()
            && self.saga_writes.is_empty()
            && self.refused.is_empty()
    }
}

/// An event parked as an outcome (a command it caused was refused), not as a failed call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub offset: u64,
    pub kind: FailureKind,
    pub message: String,
}

/// What a handler did with a batch.
#[derive(Debug, Default)]
pub struct Output {
    /// The offset of the first event these effects do not cover (the handler handled a prefix
    /// of the batch: the rest comes again in the next batch). `None`: the whole batch.
    pub stop_at: Option<u64>,
    pub effects: Effects,
}

impl Output {
    pub fn all(effects: Effects) -> Self {
        Output {
            stop_at: None,
            effects,
        }
    }
}

/// Why a batch produced no output.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The plugin call failed: retried with backoff, then parked.
    #[error(transparent)]
    Failed(#[from] CallFailure),
    /// What the batch was computed from changed under it (a concurrent command moved a target
    /// stream, a saga instance moved): run it again on fresh state. Not a failure.
    #[error("the batch's inputs changed while it ran")]
    Conflict,
    /// Storage: the lane pauses and tries again; the event is not blamed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Where a batch runs: the log to read from and the read-model scope it may write.
#[derive(Clone, Copy, Debug)]
pub struct BatchContext<'a> {
    pub log: &'a EventLog,
    pub scope: &'a str,
    /// A dry run (the deploy gate): nothing the batch returns is committed.
    pub sandbox: Option<&'a Sandbox>,
}

/// What a dry run reads instead of the live read model: one snapshot for the whole run (so
/// two versions replayed side by side see the same rows however the live group moves), under
/// the rows the run's earlier batches wrote.
pub struct Sandbox {
    pub(crate) view: std::sync::Arc<crate::log::ReadModelView>,
    pub(crate) overlay: std::sync::Arc<Overlay>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("overlay", &self.overlay.len())
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// A sandbox over `view` with nothing written yet.
    pub(crate) fn new(view: std::sync::Arc<crate::log::ReadModelView>) -> Self {
        Sandbox {
            view,
            overlay: Default::default(),
        }
    }

    /// Keeps a batch's writes for the batches after it (only `scope`'s: the batch's own).
    pub(crate) fn apply(&mut self, writes: &[ReadModelWrite]) {
        if writes.is_empty() {
            return;
        }
        // The batch's sessions are gone by now: no copy unless a caller kept a clone.
        let overlay = std::sync::Arc::make_mut(&mut self.overlay);
        for w in writes {
            overlay.insert(w.key.clone(), w.value.clone());
        }
    }
}

/// A durable timer that fired: its effects commit on `(topic, partition)` without moving the
/// offset (a saga's timeout or compensation).
#[derive(Debug)]
pub struct Fired {
    pub topic: String,
    pub partition: u32,
    pub effects: Effects,
}

/// What a handler's timers have to do now.
#[derive(Debug)]
pub enum Timers {
    /// One timer fired; more may be due (the engine asks again at once).
    Fired(Fired),
    /// Nothing due now; the next one at this time (ms since the Unix epoch), if any.
    Next(Option<u64>),
}

/// One plugin kind's part of a consumer group: effects from events (and from timers).
pub trait Handler: Send {
    /// Whether events of this type are delivered at all (others are skipped, but their
    /// offsets still advance).
    fn handles(&self, event_type: &str) -> bool;

    /// Handles `events` (the relevant events of one batch of one partition, in offset order).
    /// A failure names the failing event through `CallFailure::event_index` when it can.
    fn handle(&mut self, ctx: BatchContext<'_>, events: &[Event]) -> Result<Output, HandlerError>;

    /// The version recorded with failures (the plugin's content hash, or "native").
    fn version(&self) -> String;

    /// Another instance of the same handler (same version, fresh state), for the other lanes
    /// of a group with `concurrency > 1`. `None`: one lane only.
    fn replicate(&self) -> Option<Result<Box<dyn Handler>, CallFailure>> {
        None
    }

    /// Whether [`Handler::timers`] can ever fire (the engine asks only then).
    fn has_timers(&self) -> bool {
        false
    }

    /// Fires the next due durable timer of the instances this lane owns (those whose home is
    /// one of `owned`: `(topic, partition)`).
    fn timers(
        &mut self,
        _ctx: BatchContext<'_>,
        _owned: &[(String, u32)],
        _now_ms: u64,
    ) -> Result<Timers, HandlerError> {
        Ok(Timers::Next(None))
    }
}
