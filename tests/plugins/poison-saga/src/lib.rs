//! A test-only saga: each `item.a` starts an instance (id = its stream) whose one step sends
//! `notification`'s `send` and completes on the `notification.sent` answer. Starting one from
//! an event whose payload says `"poison": true` traps (panics) unless built as the fixed
//! release (`poison-saga-fixed`, feature `fixed`), so the host's tests can park, retry and
//! discard a saga's dead letters.

use factline_guest::{
    EventMeta, Failure, OutgoingCommand, Saga, SagaDefinition, Started, StepDefinition, Verdict,
};
use serde::{Deserialize, Serialize};

pub const NOTIFY: &str = "notify";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoisonSaga {
    pub item: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    #[serde(rename = "item.a")]
    A {
        #[serde(default)]
        poison: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    #[serde(rename = "notification.sent")]
    Sent { subject: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Send {
        recipient: String,
        subject: String,
        body: String,
    },
}

impl PoisonSaga {
    fn subject(&self) -> String {
        format!("saga saw {}", self.item)
    }
}

impl Saga for PoisonSaga {
    type Trigger = Trigger;
    type Answer = Answer;

    fn definition() -> SagaDefinition {
        SagaDefinition::new("poison-saga").step(StepDefinition::new(NOTIFY, 30_000))
    }

    fn start(
        Trigger::A { poison }: Trigger,
        meta: &EventMeta,
    ) -> Result<Option<Started<Self>>, Failure> {
        if poison && !cfg!(feature = "fixed") {
            panic!("poison saga: poisoned {}", meta.stream);
        }
        Ok(Some(Started {
            instance_id: meta.stream.clone(),
            data: PoisonSaga {
                item: meta.stream.clone(),
            },
        }))
    }

    fn execute(&self, step: &str) -> Result<OutgoingCommand, Failure> {
        if step != NOTIFY {
            return Err(Failure::new(format!("no step {step}")));
        }
        let send = Command::Send {
            recipient: "ops".into(),
            subject: self.subject(),
            body: String::new(),
        };
        OutgoingCommand::new(
            "notification",
            format!("notification-saga-{}", self.item),
            format!("{}/notify", self.item),
            &send,
        )
    }

    fn compensate(&self, _step: &str) -> Result<Option<OutgoingCommand>, Failure> {
        Ok(None)
    }

    fn judge(
        &self,
        _step: &str,
        Answer::Sent { subject }: Answer,
        _meta: &EventMeta,
    ) -> Result<Verdict<Self>, Failure> {
        Ok(if subject == self.subject() {
            Verdict::Succeeded(self.clone())
        } else {
            Verdict::NotMine
        })
    }
}

factline_guest::saga!(PoisonSaga);
