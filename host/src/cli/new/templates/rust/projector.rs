//! The `{{name}}` projector: one row per counter stream, `{ total, increments }`, from the
//! `counter.incremented` events of the `counter` topic.

use factline_guest::{EventMeta, ReadModel, Result};
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

/// `#[export]` makes the function the component's projector (and the type `Totals`).
#[factline_guest::export]
fn totals(Event::Incremented { by }: Event, meta: &EventMeta, model: &mut ReadModel) -> Result {
    let mut row: Row = model.get(&meta.stream)?.unwrap_or_default();
    row.total += by;
    row.increments += 1;
    model.put(&meta.stream, &row)
}
