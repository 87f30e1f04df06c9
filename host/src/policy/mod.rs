//! Policies (choreography), the engine's command-sending kind: events in, commands out, no
//! state of their own.
//!
//! For a batch, the plugin says which commands each event causes; each is planned on its
//! (local) aggregate with correlation id = the event's correlation id and causation id = the
//! event's id, and the commands' events are the batch's effects, committed with the offset in
//! ONE transaction by the consumer group. Two commands of a batch on the same stream cannot
//! share a commit (the second was decided without the first's events), so the batch is cut
//! before the event that would do that; the rest goes in the next commit.
//!
//! On a clustered log the commands are sent to their streams' owners as the batch runs
//! (`Dispatcher::dispatch`) and the batch commits only its offset and refusals, after every
//! command was answered: a crash in between runs the batch again and the resent commands are
//! deduplicated by their ids.
//!
//! A failing plugin call is retried and parked by the engine like any handler's. A command its
//! aggregate rejects is a business outcome: the event is refused (parked at once with failure
//! kind `rejected`, never retried) and the partition goes on; its other commands still commit.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use crate::aggregate::{CommandError, Planned};
use crate::consumer::{BatchContext, Handler, HandlerError, Output, Refusal};
use crate::dispatch::{DispatchError, Dispatched, Dispatcher};
use crate::event::Event;
use crate::failure::FailureKind;
use crate::log::ReadError;
use crate::plugin::{CallFailure, LoadedPlugin, PolicyInstance};

/// One policy plugin instance as a consumer group's handler.
pub struct PolicyHandler {
    name: String,
    dispatcher: Dispatcher,
    instance: PolicyInstance,
    /// Empty = every type.
    types: HashSet<String>,
}

impl std::fmt::Debug for PolicyHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHandler")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PolicyHandler {
    /// A fresh instance of `plugin` sending its commands through `dispatcher`.
    pub fn new(
        name: impl Into<String>,
        dispatcher: Dispatcher,
        plugin: &Arc<LoadedPlugin>,
    ) -> Result<Self, CallFailure> {
        let mut instance: PolicyInstance = plugin.instantiate()?;
        let types = instance.event_types()?.into_iter().collect();
        Ok(PolicyHandler {
            name: name.into(),
            dispatcher,
            instance,
            types,
        })
    }
}

impl Handler for PolicyHandler {
    fn handles(&self, event_type: &str) -> bool {
        self.types.is_empty() || self.types.contains(event_type)
    }

    /// Plans each event's commands in order; stops before an event whose command targets a
    /// stream an earlier command of the batch already changed.
    fn handle(&mut self, ctx: BatchContext<'_>, events: &[Event]) -> Result<Output, HandlerError> {
        if events.is_empty() {
            return Ok(Output::default());
        }
        let lists = self.instance.react(events)?;
        let mut touched = BTreeSet::new();
        let mut out = Output::default();
        for (event, commands) in events.iter().zip(&lists) {
            if commands.iter().any(|c| touched.contains(&c.stream)) {
                out.stop_at = Some(event.offset);
                break;
            }
            let origin = format!("policy\u{0}{}\u{0}{}", self.name, event.event_id);
            let (mut refusals, mut all_rejected) = (Vec::new(), true);
            if ctx.sandbox.is_some() {
                out.effects.commands.extend(commands.iter().cloned());
            }
            for c in commands {
                let dispatched = self.dispatcher.dispatch(
                    &origin,
                    c,
                    &event.correlation_id,
                    &event.event_id.to_string(),
                    ctx.sandbox.is_some(),
                );
                match dispatched {
                    Ok(Dispatched::Planned(Planned::Append(p))) => {
                        touched.insert(c.stream.clone());
                        out.effects.appends.push((p.stream, p.expected, p.events));
                    }
                    // Sent: its owner committed it already (a clustered log).
                    Ok(Dispatched::Planned(Planned::Done(_)) | Dispatched::Sent(_)) => {}
                    Err(e) if e.is_outcome() => {
                        all_rejected &=
                            matches!(e, DispatchError::Command(CommandError::Rejected(_)));
                        refusals.push(format!(
                            "{} {} on {}: {e}",
                            c.aggregate, c.command_type, c.stream
                        ));
                    }
                    // Storage or contention says nothing about the event: run it again (after
                    // a pause for storage).
                    Err(DispatchError::Command(CommandError::Read(e))) => return Err(e.into()),
                    Err(DispatchError::Command(CommandError::Append(e))) => {
                        return Err(ReadError::Storage(e.to_string()).into());
                    }
                    Err(_) => return Err(HandlerError::Conflict),
                }
            }
            if !refusals.is_empty() {
                out.effects.refused.push(Refusal {
                    offset: event.offset,
                    // A rejection is a business outcome, kept apart from failures.
                    kind: if all_rejected {
                        FailureKind::Rejected
                    } else {
                        FailureKind::Host
                    },
                    message: refusals.join("; "),
                });
            }
        }
        Ok(out)
    }

    fn version(&self) -> String {
        self.instance.plugin().version.to_string()
    }

    fn replicate(&self) -> Option<Result<Box<dyn Handler>, CallFailure>> {
        let plugin = self.instance.plugin().clone();
        Some(
            PolicyHandler::new(self.name.clone(), self.dispatcher.clone(), &plugin)
                .map(|h| Box::new(h) as Box<dyn Handler>),
        )
    }
}
