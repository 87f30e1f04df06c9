//! The `{{name}}` projector: one row per counter stream, `{ total, increments }`, from the
//! `counter.incremented` events of the `counter` topic.

use factline_guest::{EventMeta, Failure, Projector, ReadModel};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Row {
    pub total: u64,
    pub increments: u64,
}

/// The events it reads, with only the fields it needs; other types are skipped.
#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "counter.incremented")]
    Incremented { by: u64 },
}

#[derive(Debug, Default)]
pub struct Totals;

impl Projector for Totals {
    type Event = Event;

    fn project(
        &mut self,
        event: Event,
        meta: &EventMeta,
        model: &mut ReadModel<'_>,
    ) -> Result<(), Failure> {
        let Event::Incremented { by } = event;
        let mut row: Row = model.get(&meta.stream)?.unwrap_or_default();
        row.total += by;
        row.increments += 1;
        model.put(&meta.stream, &row)
    }
}

factline_guest::projector!(Totals);
