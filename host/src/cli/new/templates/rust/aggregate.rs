//! The `{{name}}` aggregate: a counter. `increment` by a positive amount records
//! `{{topic}}.incremented`; the state is the running total.

use factline_guest::{Aggregate, CommandContext, EventMeta, Rejection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    pub value: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Command {
    #[serde(rename = "increment")]
    Increment { by: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "{{topic}}.incremented")]
    Incremented { by: u64 },
}

impl Aggregate for Counter {
    type Command = Command;
    type Event = Event;

    fn decide(&self, command: Command, _: &CommandContext) -> Result<Vec<Event>, Rejection> {
        let Command::Increment { by } = command;
        Rejection::ensure(by > 0, "zero", "increment by at least 1")?;
        Ok(vec![Event::Incremented { by }])
    }

    fn evolve(&mut self, event: Event, _: &EventMeta) {
        let Event::Incremented { by } = event;
        self.value += by;
    }
}

factline_guest::aggregate!(Counter);
