//! Projectors, the engine's read-model kind: a batch's effects are the read-model writes the
//! projection made through its session, committed with the new offset in one transaction
//! (DESIGN §4 invariant 4) by the consumer group (`consumer/`).
//!
//! A [`Projection`] is either a WASM plugin ([`WasmProjection`]) or native Rust code (a relay,
//! benchmarks measuring the plugin boundary on the same path); [`ProjectionHandler`] runs
//! either as a group's handler.

use std::collections::HashSet;

use crate::consumer::{BatchContext, Effects, Handler, HandlerError, Output};
use crate::event::Event;
use crate::log::{EventLog, ReadError};
use crate::plugin::{CallFailure, ProjectorInstance, ReadModelSession};

/// Largest read-model value a projection may write.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Something that turns events into read-model writes.
pub trait Projection: Send {
    /// Whether events of this type should be delivered at all (others are skipped, but their
    /// offsets still advance).
    fn handles(&self, event_type: &str) -> bool;

    /// Applies a batch through `session`; returns the session with the batch's writes.
    fn project(
        &mut self,
        events: &[Event],
        session: ReadModelSession,
    ) -> (Result<(), CallFailure>, Option<ReadModelSession>);

    /// The version recorded with failures (the plugin's content hash, or "native").
    fn version(&self) -> String;

    /// The shape of the read model it writes (see `read-model-evolution` in the WIT). Another
    /// version than the stored read model's is built beside it, never in place.
    fn read_model_version(&self) -> u32 {
        1
    }

    /// Another instance of the same projection (same version, fresh state), for the other lanes
    /// of a consumer group with `concurrency > 1`. `None` (the default): this projection runs on
    /// one lane only, and a group asking for more is refused.
    fn replicate(&self) -> Option<Result<Box<dyn Projection>, CallFailure>> {
        None
    }
}

/// A projector plugin instance.
pub struct WasmProjection {
    instance: ProjectorInstance,
    /// Empty = every type.
    types: HashSet<String>,
    read_model_version: u32,
}

impl std::fmt::Debug for WasmProjection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmProjection")
            .field("instance", &self.instance)
            .finish()
    }
}

impl WasmProjection {
    pub fn new(mut instance: ProjectorInstance) -> Result<Self, CallFailure> {
        let types = instance.event_types()?.into_iter().collect();
        let read_model_version = instance.read_model_version()?;
        Ok(WasmProjection {
            instance,
            types,
            read_model_version,
        })
    }
}

impl Projection for WasmProjection {
    fn handles(&self, event_type: &str) -> bool {
        self.types.is_empty() || self.types.contains(event_type)
    }

    fn project(
        &mut self,
        events: &[Event],
        session: ReadModelSession,
    ) -> (Result<(), CallFailure>, Option<ReadModelSession>) {
        self.instance.project(events, session)
    }

    fn version(&self) -> String {
        self.instance.plugin().version.to_string()
    }

    fn read_model_version(&self) -> u32 {
        self.read_model_version
    }

    fn replicate(&self) -> Option<Result<Box<dyn Projection>, CallFailure>> {
        let instance = self
            .instance
            .plugin()
            .instantiate()
            .map_err(CallFailure::from);
        Some(instance.and_then(|i| Ok(Box::new(WasmProjection::new(i)?) as Box<dyn Projection>)))
    }
}

/// A projection as the engine runs it: its batch's read-model writes and read checks are the
/// effects.
pub struct ProjectionHandler(pub Box<dyn Projection>);

impl std::fmt::Debug for ProjectionHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ProjectionHandler")
            .field(&self.0.version())
            .finish()
    }
}

impl ProjectionHandler {
    pub fn boxed(projection: impl Projection + 'static) -> Box<dyn Handler> {
        Box::new(ProjectionHandler(Box::new(projection)))
    }
}

impl Handler for ProjectionHandler {
    fn handles(&self, event_type: &str) -> bool {
        self.0.handles(event_type)
    }

    fn handle(&mut self, ctx: BatchContext<'_>, events: &[Event]) -> Result<Output, HandlerError> {
        let session = match ctx.sandbox {
            Some(s) => ReadModelSession::over(
                ctx.scope,
                s.view.clone(),
                Some(s.overlay.clone()),
                MAX_VALUE_BYTES,
            ),
            None => ReadModelSession::new(ctx.scope, ctx.log.read_models()?, MAX_VALUE_BYTES),
        };
        let (result, session) = self.0.project(events, session);
        result?;
        let (read_model_writes, read_checks) = session
            .map(ReadModelSession::into_commit)
            .unwrap_or_default();
        Ok(Output::all(Effects {
            read_model_writes,
            read_checks,
            ..Effects::default()
        }))
    }

    fn version(&self) -> String {
        self.0.version()
    }

    fn replicate(&self) -> Option<Result<Box<dyn Handler>, CallFailure>> {
        let replica = self.0.replicate()?;
        Some(replica.map(|p| Box::new(ProjectionHandler(p)) as Box<dyn Handler>))
    }
}

/// A projector's row, as stored (MessagePack), from its live read model. The live generation
/// and the row come from one snapshot, so a rebuild's switch is never seen half-done.
pub fn query(log: &EventLog, projector: &str, key: &str) -> Result<Option<Vec<u8>>, ReadError> {
    let view = log.read_models()?;
    view.get(&view.live_scope(projector)?, key)
}

/// A projector's rows whose key starts with `prefix`.
pub fn query_prefix(
    log: &EventLog,
    projector: &str,
    prefix: &str,
    limit: usize,
) -> Result<Vec<(String, Vec<u8>)>, ReadError> {
    let view = log.read_models()?;
    view.scan_prefix(&view.live_scope(projector)?, prefix, None, limit)
}

/// Keys counted at most for [`ReadModelPage::count`]: counting reads every matching key, so a
/// larger prefix reports this many and `count_exact: false`.
pub const MAX_COUNT: usize = 10_000;

/// One page of a projector's rows by key prefix, with the cursor of the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadModelPage {
    /// In key order, after the cursor.
    pub rows: Vec<(String, Vec<u8>)>,
    /// The key to pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
    /// Keys matching the prefix (the whole prefix, not only after the cursor), counted up to
    /// [`MAX_COUNT`] in the same snapshot as the rows.
    pub count: usize,
    /// False when counting stopped at [`MAX_COUNT`] (then there are more).
    pub count_exact: bool,
}

/// Up to `limit` of a projector's rows whose key starts with `prefix` and comes after `after`
/// (exclusive), from one snapshot of its live read model.
pub fn query_page(
    log: &EventLog,
    projector: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<ReadModelPage, ReadError> {
    let view = log.read_models()?;
    let scope = view.live_scope(projector)?;
    // One row more than asked tells whether a next page exists.
    let mut rows = view.scan_prefix(&scope, prefix, after, limit.saturating_add(1))?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    let counted = view.count_prefix(&scope, prefix, MAX_COUNT + 1)?;
    Ok(ReadModelPage {
        rows,
        next,
        count: counted.min(MAX_COUNT),
        count_exact: counted <= MAX_COUNT,
    })
}
