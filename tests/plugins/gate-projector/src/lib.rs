//! A test-only projector for the deploy gate: one row per item stream, `item/<stream>`, with
//! the fields `count` (events seen), `qty` (quantities added) and `last` (the last name). Built
//! twice: `gate-projector`, and `gate-projector-changed` (feature `changed`, same source), whose
//! `qty` counts every quantity twice, so a gate of it finds exactly one differing field per row.

use factline_guest::{EventMeta, Failure, Projector, ReadModel};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "item.added")]
    Added { name: String, qty: u64 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub count: u64,
    pub qty: u64,
    pub last: String,
}

/// The read-model key of a stream's row.
pub fn row_key(stream: &str) -> String {
    format!("item/{stream}")
}

#[derive(Debug, Default)]
pub struct GateProjector;

impl Projector for GateProjector {
    type Event = Event;

    fn project(
        &mut self,
        event: Event,
        meta: &EventMeta,
        model: &mut ReadModel<'_>,
    ) -> Result<(), Failure> {
        let Event::Added { name, qty } = event;
        let key = row_key(&meta.stream);
        let mut row: Row = model.get(&key)?.unwrap_or_default();
        row.count += 1;
        row.qty += if cfg!(feature = "changed") {
            2 * qty
        } else {
            qty
        };
        row.last = name;
        model.put(&key, &row)
    }
}

factline_guest::projector!(GateProjector);

#[cfg(test)]
mod tests {
    use factline_guest::scenario::{GivenEvent, ProjectorOutcome, ProjectorScenario};
    use factline_guest::testing::{Value, json, run_projector};

    use super::*;

    fn given(stream: &str, payload: Value) -> GivenEvent {
        GivenEvent {
            event_type: "item.added".into(),
            stream: Some(stream.into()),
            schema_version: 1,
            payload,
            occurred_at: None,
        }
    }

    #[test]
    fn one_row_per_stream() {
        let scenario = ProjectorScenario {
            name: "rows".into(),
            given: vec![
                given("item-1", json!({"name": "a", "qty": 2})),
                given("item-1", json!({"name": "b", "qty": 3})),
                given("item-2", json!({"name": "c", "qty": 1})),
            ],
            then: vec![],
            dead_letters: vec![],
        };
        let ProjectorOutcome::Rows { rows, .. } = run_projector::<GateProjector>(&scenario) else {
            panic!("expected rows");
        };
        let factor = if cfg!(feature = "changed") { 2 } else { 1 };
        assert_eq!(
            rows.get("item/item-1"),
            Some(&json!({"count": 2, "qty": 5 * factor, "last": "b"}))
        );
        assert_eq!(
            rows.get("item/item-2"),
            Some(&json!({"count": 1, "qty": factor, "last": "c"}))
        );
    }
}
