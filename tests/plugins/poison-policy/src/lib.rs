//! A test-only policy: each `item.a` sends `notification`'s `send` for its stream, and traps
//! (panics) on an event whose payload says `"poison": true` unless built as the fixed release
//! (`poison-policy-fixed`, feature `fixed`), so the host's tests can park, retry and discard
//! a policy's dead letters.

use factline_guest::{EventMeta, Failure, OutgoingCommand, Policy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "item.a")]
    A {
        #[serde(default)]
        poison: bool,
    },
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

#[derive(Debug, Default)]
pub struct PoisonPolicy;

impl Policy for PoisonPolicy {
    type Event = Event;

    fn react(
        &self,
        Event::A { poison }: Event,
        meta: &EventMeta,
    ) -> Result<Vec<OutgoingCommand>, Failure> {
        if poison && !cfg!(feature = "fixed") {
            panic!("poison policy: poisoned {}", meta.stream);
        }
        let send = Command::Send {
            recipient: "ops".into(),
            subject: format!("policy saw {}", meta.stream),
            body: String::new(),
        };
        Ok(vec![OutgoingCommand::new(
            "notification",
            format!("notification-{}", meta.stream),
            format!("{}/policy", meta.event_id),
            &send,
        )?])
    }
}

factline_guest::policy!(PoisonPolicy);
