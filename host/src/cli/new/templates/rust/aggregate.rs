//! The `{{name}}` aggregate: a counter. `increment` by a positive amount records
//! `{{topic}}.incremented`; the state is the running total.

use factline_guest::Rejection;
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

/// `#[export]` makes `Counter` the component's aggregate: `decide` answers a command, `evolve`
/// folds in a stored event (both may also take the context: `&CommandContext`, `&EventMeta`).
#[factline_guest::export]
impl Counter {
    fn decide(&self, Command::Increment { by }: Command) -> Result<Vec<Event>, Rejection> {
        Rejection::ensure(by > 0, "zero", "increment by at least 1")?;
        Ok(vec![Event::Incremented { by }])
    }

    fn evolve(&mut self, Event::Incremented { by }: Event) {
        self.value += by;
    }
}
