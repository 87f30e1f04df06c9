//! Commands from policies and sagas to aggregates.
//!
//! On the embedded log a command is *planned* here (decided without appending,
//! [`AggregateHandler::plan`]) so its events commit in the caller's transaction together with
//! its offset and saga state. On a clustered log the target stream may be another host's, so a
//! command is *sent* ([`CommandSender`]: decided by its owner, wherever that is) and the caller
//! commits its offset and saga state only once it was answered. Either way its id is a UUIDv5 of
//! where it comes from and the plugin's own deterministic id, so a resent command is
//! deduplicated by the aggregate (the events it produces have ids derived from it).

use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

use crate::aggregate::{AggregateHandler, CommandError, CommandRequest, Planned};
use crate::plugin::OutgoingCommand;

/// Namespace of the command ids the host derives for policies and sagas.
const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x6a0c_1f55_0e7b_4c1e_9d5e_f4c7_1b2a_3c4d);

/// The local aggregates, by plugin name, and how commands reach their owners on a clustered
/// log.
#[derive(Clone, Debug, Default)]
pub struct Dispatcher {
    aggregates: BTreeMap<String, Arc<AggregateHandler>>,
    sender: Option<Arc<dyn CommandSender>>,
}

/// Sends a command to the host that decides it and waits for its outcome (blocking: policies
/// and sagas run on blocking threads).
pub trait CommandSender: Send + Sync + std::fmt::Debug {
    fn send(&self, aggregate: &str, request: CommandRequest) -> Result<Sent, CommandError>;
}

/// What a sent command did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sent {
    pub stream: String,
    /// The stream's version after it.
    pub version: u64,
    /// The command had already been handled (a resend).
    pub deduplicated: bool,
}

/// What [`Dispatcher::dispatch`] did with a command.
#[derive(Debug)]
pub enum Dispatched {
    /// Decided here; the caller commits its events (`Planned::Append`) with its own effects.
    Planned(Planned),
    /// Decided and committed by the stream's owner.
    Sent(Sent),
}

/// Why a command could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("no aggregate named {0:?} runs in this host")]
    UnknownAggregate(String),
    #[error(
        "stream {stream:?} is not a stream of aggregate {aggregate:?} (expected `{topic}-<id>`)"
    )]
    ForeignStream {
        aggregate: String,
        stream: String,
        topic: String,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl DispatchError {
    /// A business rejection or a plugin failure of the target: the command's outcome. The
    /// others (storage, contention) say nothing about the command; retry later.
    pub fn is_outcome(&self) -> bool {
        match self {
            DispatchError::Command(
                CommandError::Append(_)
                | CommandError::Read(_)
                | CommandError::Conflict { .. }
                | CommandError::WrongVersion { .. },
            ) => false,
            DispatchError::Command(CommandError::Rejected(_) | CommandError::Failed { .. })
            | DispatchError::UnknownAggregate(_)
            | DispatchError::ForeignStream { .. } => true,
        }
    }
}

impl Dispatcher {
    pub fn new(aggregates: BTreeMap<String, Arc<AggregateHandler>>) -> Self {
        Dispatcher {
            aggregates,
            sender: None,
        }
    }

    /// Commands are sent through `sender` instead of planned here (a clustered log).
    pub fn with_sender(mut self, sender: Arc<dyn CommandSender>) -> Self {
        self.sender = Some(sender);
        self
    }

    /// Decides `command`: planned here on the embedded log (and in a dry run, which must not
    /// send anything), sent to its owner on a clustered log.
    pub fn dispatch(
        &self,
        origin: &str,
        command: &OutgoingCommand,
        correlation_id: &str,
        causation_id: &str,
        dry_run: bool,
    ) -> Result<Dispatched, DispatchError> {
        match &self.sender {
            Some(sender) if !dry_run => {
                let (_, request) = self.request(origin, command, correlation_id, causation_id)?;
                let span = command_span(command, &request, correlation_id, causation_id);
                let _entered = span.enter();
                Ok(Dispatched::Sent(sender.send(&command.aggregate, request)?))
            }
            _ => self
                .plan(origin, command, correlation_id, causation_id)
                .map(Dispatched::Planned),
        }
    }

    /// The target's handler and the request for `command`.
    fn request(
        &self,
        origin: &str,
        command: &OutgoingCommand,
        correlation_id: &str,
        causation_id: &str,
    ) -> Result<(&Arc<AggregateHandler>, CommandRequest), DispatchError> {
        let handler = self
            .aggregates
            .get(&command.aggregate)
            .ok_or_else(|| DispatchError::UnknownAggregate(command.aggregate.clone()))?;
        let prefix = handler.stream_of("");
        let id = command
            .stream
            .strip_prefix(&prefix)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| DispatchError::ForeignStream {
                aggregate: command.aggregate.clone(),
                stream: command.stream.clone(),
                topic: prefix.trim_end_matches('-').to_owned(),
            })?;
        let request = CommandRequest {
            id: id.to_owned(),
            command_type: command.command_type.clone(),
            payload: command.payload.clone(),
            command_id: Some(Self::command_id(origin, command)),
            correlation_id: Some(correlation_id.to_owned()),
            causation_id: Some(causation_id.to_owned()),
            metadata: Vec::new(),
            expected_version: None,
        };
        Ok((handler, request))
    }

    /// The command's UUID: stable for the same origin and plugin id, so a resend dedupes.
    pub fn command_id(origin: &str, command: &OutgoingCommand) -> Uuid {
        Uuid::new_v5(
            &COMMAND_NAMESPACE,
            format!(
                "{origin}\u{0}{}\u{0}{}",
                command.aggregate, command.command_id
            )
            .as_bytes(),
        )
    }

    /// Decides `command` on its aggregate without appending.
    pub fn plan(
        &self,
        origin: &str,
        command: &OutgoingCommand,
        correlation_id: &str,
        causation_id: &str,
    ) -> Result<Planned, DispatchError> {
        let (handler, request) = self.request(origin, command, correlation_id, causation_id)?;
        let span = command_span(command, &request, correlation_id, causation_id);
        let _entered = span.enter();
        let planned = handler.plan(&request)?;
        if let Planned::Append(p) = &planned {
            crate::telemetry::appended(p.events.iter().filter_map(|e| e.event_id));
        }
        Ok(planned)
    }
}

/// A policy's or saga's command: a child of the batch that sends it; its events are remembered
/// for the batches that consume them (`telemetry::adopt_causes`).
fn command_span(
    command: &OutgoingCommand,
    request: &CommandRequest,
    correlation_id: &str,
    causation_id: &str,
) -> tracing::Span {
    tracing::info_span!(
        "command",
        aggregate = %command.aggregate,
        id = %request.id,
        command_type = %command.command_type,
        command_id = %request.command_id.unwrap_or_default(),
        correlation_id,
        causation_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(id: &str) -> OutgoingCommand {
        OutgoingCommand {
            aggregate: "inventory".into(),
            stream: "inventory-main".into(),
            command_type: "reserve".into(),
            command_id: id.into(),
            payload: Vec::new(),
        }
    }

    #[test]
    fn command_ids_are_stable_per_origin_and_plugin_id() {
        let a = Dispatcher::command_id("saga\u{0}s\u{0}i", &command("O1/reserve"));
        assert_eq!(
            a,
            Dispatcher::command_id("saga\u{0}s\u{0}i", &command("O1/reserve"))
        );
        assert_ne!(
            a,
            Dispatcher::command_id("saga\u{0}s\u{0}j", &command("O1/reserve"))
        );
        assert_ne!(
            a,
            Dispatcher::command_id("saga\u{0}s\u{0}i", &command("O2/reserve"))
        );
    }

    #[test]
    fn unknown_targets_are_outcomes_not_transient() {
        let d = Dispatcher::default();
        let e = d.plan("o", &command("x"), "c", "c").unwrap_err();
        assert!(matches!(&e, DispatchError::UnknownAggregate(a) if a == "inventory"));
        assert!(e.is_outcome());
    }
}
