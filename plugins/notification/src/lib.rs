//! The notification aggregate (DESIGN §6). One stream per order, e.g. `notification-ORD-1`;
//! each subject is sent at most once per stream. The `notification-log` projector records what
//! was sent in a read model.

use std::collections::BTreeSet;

use factline_guest::{Aggregate, CommandContext, EventMeta, Rejection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    pub sent: BTreeSet<String>,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "notification.sent")]
    Sent {
        recipient: String,
        subject: String,
        body: String,
    },
}

impl Aggregate for Outbox {
    type Command = Command;
    type Event = Event;

    fn decide(&self, command: Command, _ctx: &CommandContext) -> Result<Vec<Event>, Rejection> {
        let Command::Send {
            recipient,
            subject,
            body,
        } = command;
        Rejection::ensure(
            !recipient.is_empty(),
            "no-recipient",
            "a notification needs a recipient",
        )?;
        if self.sent.contains(&subject) {
            return Ok(Vec::new());
        }
        Ok(vec![Event::Sent {
            recipient,
            subject,
            body,
        }])
    }

    fn evolve(&mut self, Event::Sent { subject, .. }: Event, _meta: &EventMeta) {
        self.sent.insert(subject);
    }
}

factline_guest::aggregate!(Outbox);
