//! A test-only aggregate that misbehaves on purpose, so the host's tests can prove fault
//! isolation: `trap` panics (a trap), `alloc` allocates without bound, `loop` never returns,
//! `ok` behaves and emits `hostile.ok`.

use std::hint::black_box;

use factline_guest::{Aggregate, CommandContext, EventMeta, Rejection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Hostile {
    /// How many `hostile.ok` events the stream holds.
    pub ok_count: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Trap,
    Alloc,
    Loop,
    Ok,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "hostile.ok")]
    Ok,
}

impl Aggregate for Hostile {
    type Command = Command;
    type Event = Event;

    fn decide(&self, command: Command, _ctx: &CommandContext) -> Result<Vec<Event>, Rejection> {
        // Also exercises the `logging` import before misbehaving.
        factline_guest::log::info(&format!("hostile: {command:?}"));
        match command {
            Command::Trap => panic!("hostile plugin: trap requested"),
            Command::Alloc => {
                // black_box keeps the optimizer from eliding allocations nobody reads.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![0xa5; 1 << 20]);
                    black_box(&mut hoard);
                }
            }
            Command::Loop => {
                let mut spins = 0u64;
                loop {
                    spins = black_box(spins.wrapping_add(1));
                }
            }
            Command::Ok => Ok(vec![Event::Ok]),
        }
    }

    fn evolve(&mut self, event: Event, _meta: &EventMeta) {
        match event {
            Event::Ok => self.ok_count += 1,
        }
    }
}

factline_guest::aggregate!(Hostile);

#[cfg(test)]
mod tests {
    use factline_guest::testing::{AggregateTest, json};

    use super::*;

    #[test]
    fn ok_emits_one_event() {
        AggregateTest::<Hostile>::given([Event::Ok])
            .when(Command::Ok)
            .then_events([Event::Ok])
            .then_state(json!({"ok_count": 2}))
            .run();
    }

    #[test]
    #[should_panic(expected = "trap requested")]
    fn trap_panics() {
        let _ = Hostile::default().decide(Command::Trap, &CommandContext::default());
    }
}
