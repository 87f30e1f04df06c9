//! A test-only projector: one read-model row per event type, key = the type, value = how many
//! events of that type it has seen. The crash test compares these counts with the log: any event
//! lost or applied twice across a SIGKILL shows up as a wrong count.

use factline_guest::{EventMeta, Failure, Projector, ReadModel};
use serde::{Deserialize, Serialize};

/// The types it counts (payloads are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "tick.a")]
    A,
    #[serde(rename = "tick.b")]
    B,
    #[serde(rename = "tick.c")]
    C,
    #[serde(rename = "tick.d")]
    D,
}

impl Event {
    pub const ALL: [Event; 4] = [Event::A, Event::B, Event::C, Event::D];

    /// The event type string, which is also the read-model key of its count.
    pub fn type_name(self) -> &'static str {
        match self {
            Event::A => "tick.a",
            Event::B => "tick.b",
            Event::C => "tick.c",
            Event::D => "tick.d",
        }
    }
}

#[derive(Debug, Default)]
pub struct Counter;

impl Projector for Counter {
    type Event = Event;

    fn project(
        &mut self,
        event: Event,
        _meta: &EventMeta,
        model: &mut ReadModel<'_>,
    ) -> Result<(), Failure> {
        let key = event.type_name();
        let n: u64 = model.get(key)?.unwrap_or(0);
        model.put(key, &(n + 1))
    }
}

factline_guest::projector!(Counter);

#[cfg(test)]
mod tests {
    use factline_guest::scenario::{GivenEvent, ProjectorOutcome, ProjectorScenario};
    use factline_guest::testing::{json, run_projector};

    use super::*;

    fn given(event_type: &str) -> GivenEvent {
        GivenEvent {
            event_type: event_type.into(),
            stream: Some("tick-1".into()),
            schema_version: 1,
            payload: json!({"n": 1}),
            occurred_at: None,
        }
    }

    #[test]
    fn counts_per_type_and_ignores_other_types() {
        let scenario = ProjectorScenario {
            name: "counts".into(),
            given: vec![
                given("tick.a"),
                given("tick.b"),
                given("tick.a"),
                given("other.type"),
            ],
            then: vec![],
            dead_letters: vec![],
        };
        let ProjectorOutcome::Rows { rows, .. } = run_projector::<Counter>(&scenario) else {
            panic!("expected rows");
        };
        assert_eq!(rows.get("tick.a"), Some(&json!(2)));
        assert_eq!(rows.get("tick.b"), Some(&json!(1)));
        assert_eq!(rows.len(), 2, "{rows:?}");
    }

    #[test]
    fn type_names_match_the_serde_names() {
        let names = factline_guest::codec::variant_names::<Event>().unwrap();
        let ours: Vec<&str> = Event::ALL.iter().map(|e| e.type_name()).collect();
        assert_eq!(names, ours.as_slice());
    }
}
