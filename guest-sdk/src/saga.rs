//! Orchestrated sagas: the plugin names the steps and judges answers; the host runs instances.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{EventMeta, Failure, OutgoingCommand};

/// A saga (WIT world `saga`). The implementing type is one instance's data, stored by the host
/// as named MessagePack between calls. Export it with [`saga!`](crate::saga!).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a factline saga",
    label = "implement `factline_guest::Saga` for this type"
)]
pub trait Saga: Serialize + DeserializeOwned {
    /// A serde enum of the event types that may start an instance.
    type Trigger: Serialize + DeserializeOwned;
    /// A serde enum of the event types that may answer a step; others are never this saga's.
    type Answer: Serialize + DeserializeOwned;

    /// Name and steps; the trigger and answer types come from the two enums.
    fn definition() -> SagaDefinition;

    /// Starts an instance for a trigger event, or `None` to ignore it.
    fn start(trigger: Self::Trigger, meta: &EventMeta) -> Result<Option<Started<Self>>, Failure>;

    /// The command that performs `step`.
    fn execute(&self, step: &str) -> Result<OutgoingCommand, Failure>;

    /// The command that undoes `step`, if it needs one.
    fn compensate(&self, step: &str) -> Result<Option<OutgoingCommand>, Failure>;

    /// Judges an event that may answer `step`.
    fn judge(
        &self,
        step: &str,
        answer: Self::Answer,
        meta: &EventMeta,
    ) -> Result<Verdict<Self>, Failure>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaDefinition {
    pub name: String,
    pub steps: Vec<StepDefinition>,
}

impl SagaDefinition {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            steps: Vec::new(),
        }
    }

    pub fn step(mut self, step: StepDefinition) -> Self {
        self.steps.push(step);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDefinition {
    pub name: String,
    /// How long the host waits for an answer before failing the step.
    pub timeout_ms: u64,
    /// Whether [`Saga::compensate`] has a command for this step.
    pub compensable: bool,
}

impl StepDefinition {
    pub fn new(name: impl Into<String>, timeout_ms: u64) -> Self {
        Self {
            name: name.into(),
            timeout_ms,
            compensable: false,
        }
    }

    pub fn compensable(mut self) -> Self {
        self.compensable = true;
        self
    }
}

/// A new instance: its id (unique per saga, usually derived from the trigger) and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started<S> {
    pub instance_id: String,
    pub data: S,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<S> {
    /// The answer completes the step; carries the new instance data.
    Succeeded(S),
    /// The answer fails the step; carries the reason.
    Failed(String),
    /// The answer belongs to another step or instance.
    NotMine,
}

pub(crate) mod runtime {
    use super::{Saga, Verdict};
    use crate::codec;
    use crate::types::{Failure, OutgoingCommand, RawEvent};

    /// [`super::SagaDefinition`] plus the trigger and answer types.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RawSagaDefinition {
        pub name: String,
        pub trigger_types: Vec<String>,
        pub answer_types: Vec<String>,
        pub steps: Vec<super::StepDefinition>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum RawVerdict {
        Succeeded(Vec<u8>),
        Failed(String),
        NotMine,
    }

    pub fn definition<S: Saga>() -> RawSagaDefinition {
        let definition = S::definition();
        RawSagaDefinition {
            name: definition.name,
            trigger_types: crate::variant_list::<S::Trigger>(),
            answer_types: crate::variant_list::<S::Answer>(),
            steps: definition.steps,
        }
    }

    pub fn start<S: Saga>(trigger: RawEvent) -> Result<Option<(String, Vec<u8>)>, Failure> {
        let Some(decoded) =
            codec::decode_variant::<S::Trigger>(&trigger.event_type, &trigger.payload)?
        else {
            return Ok(None);
        };
        match S::start(decoded, &trigger.meta)? {
            Some(started) => Ok(Some((started.instance_id, codec::encode(&started.data)?))),
            None => Ok(None),
        }
    }

    pub fn execute<S: Saga>(step: &str, data: &[u8]) -> Result<OutgoingCommand, Failure> {
        load::<S>(data)?.execute(step)
    }

    pub fn compensate<S: Saga>(
        step: &str,
        data: &[u8],
    ) -> Result<Option<OutgoingCommand>, Failure> {
        load::<S>(data)?.compensate(step)
    }

    pub fn judge<S: Saga>(
        step: &str,
        data: &[u8],
        answer: RawEvent,
    ) -> Result<RawVerdict, Failure> {
        let Some(decoded) =
            codec::decode_variant::<S::Answer>(&answer.event_type, &answer.payload)?
        else {
            return Ok(RawVerdict::NotMine);
        };
        Ok(match load::<S>(data)?.judge(step, decoded, &answer.meta)? {
            Verdict::Succeeded(data) => RawVerdict::Succeeded(codec::encode(&data)?),
            Verdict::Failed(reason) => RawVerdict::Failed(reason),
            Verdict::NotMine => RawVerdict::NotMine,
        })
    }

    fn load<S: Saga>(data: &[u8]) -> Result<S, Failure> {
        codec::decode(data).map_err(|e| {
            Failure::new(format!(
                "saga data is not a valid `{}`: {e}",
                std::any::type_name::<S>()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::runtime::{self, RawVerdict};
    use super::*;
    use crate::codec::{decode, json_to_msgpack};
    use crate::types::RawEvent;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ship {
        order: String,
        done: bool,
    }

    #[derive(Serialize, Deserialize)]
    enum Trigger {
        #[serde(rename = "order.placed")]
        Placed { order: String },
    }

    #[derive(Serialize, Deserialize)]
    enum Answer {
        #[serde(rename = "shipping.scheduled")]
        Scheduled { order: String },
    }

    #[derive(Serialize, Deserialize)]
    enum Command {
        #[serde(rename = "schedule")]
        Schedule { order: String },
    }

    impl Saga for Ship {
        type Trigger = Trigger;
        type Answer = Answer;
        fn definition() -> SagaDefinition {
            SagaDefinition::new("ship").step(StepDefinition::new("schedule", 1_000).compensable())
        }
        fn start(
            Trigger::Placed { order }: Trigger,
            _: &EventMeta,
        ) -> Result<Option<Started<Self>>, Failure> {
            Ok(Some(Started {
                instance_id: order.clone(),
                data: Ship { order, done: false },
            }))
        }
        fn execute(&self, step: &str) -> Result<OutgoingCommand, Failure> {
            OutgoingCommand::new(
                "shipping",
                "shipping-1",
                format!("{}/{step}", self.order),
                &Command::Schedule {
                    order: self.order.clone(),
                },
            )
        }
        fn compensate(&self, _step: &str) -> Result<Option<OutgoingCommand>, Failure> {
            Ok(None)
        }
        fn judge(
            &self,
            _step: &str,
            Answer::Scheduled { order }: Answer,
            _: &EventMeta,
        ) -> Result<Verdict<Self>, Failure> {
            Ok(if order == self.order {
                Verdict::Succeeded(Ship { order, done: true })
            } else {
                Verdict::NotMine
            })
        }
    }

    fn event(event_type: &str, payload: serde_json::Value) -> RawEvent {
        RawEvent {
            event_type: event_type.into(),
            payload: json_to_msgpack(&payload),
            ..Default::default()
        }
    }

    #[test]
    fn a_saga_runs_through_its_byte_level_entry_points() {
        let definition = runtime::definition::<Ship>();
        assert_eq!(
            (definition.trigger_types, definition.answer_types),
            (
                vec!["order.placed".into()],
                vec!["shipping.scheduled".into()]
            )
        );
        assert_eq!(
            runtime::start::<Ship>(event("order.cancelled", json!({}))).unwrap(),
            None
        );
        let (id, data) = runtime::start::<Ship>(event("order.placed", json!({"order": "O1"})))
            .unwrap()
            .unwrap();
        assert_eq!(id, "O1");
        let command = runtime::execute::<Ship>("schedule", &data).unwrap();
        assert_eq!(
            (command.command_type.as_str(), command.command_id.as_str()),
            ("schedule", "O1/schedule")
        );
        assert_eq!(
            runtime::judge::<Ship>("schedule", &data, event("other.type", json!({}))).unwrap(),
            RawVerdict::NotMine
        );
        assert_eq!(
            runtime::judge::<Ship>(
                "schedule",
                &data,
                event("shipping.scheduled", json!({"order": "O2"}))
            )
            .unwrap(),
            RawVerdict::NotMine
        );
        let RawVerdict::Succeeded(next) = runtime::judge::<Ship>(
            "schedule",
            &data,
            event("shipping.scheduled", json!({"order": "O1"})),
        )
        .unwrap() else {
            panic!("expected success");
        };
        assert_eq!(
            decode::<Ship>(&next).unwrap(),
            Ship {
                order: "O1".into(),
                done: true
            }
        );
        let malformed = runtime::judge::<Ship>(
            "schedule",
            &data,
            event("shipping.scheduled", json!({"order": 7})),
        );
        assert!(
            malformed
                .unwrap_err()
                .message
                .contains("`shipping.scheduled`")
        );
    }
}
