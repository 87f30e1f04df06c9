//! A test-only projector: counts events per type under the key `count/<type>` and traps (panics)
//! on an event whose payload says `"poison": true`, so the host's tests can prove retries and
//! the dead-letter queue. Built twice: `poison-plugin` traps; `poison-fixed-plugin` (feature
//! `fixed`, same source) is the "fixed release" that counts poison events like any other. Its
//! declared read-model version is patched in the built bytes like the `versioned` plugin's
//! ([`READ_MODEL`]), so a test can make a start rebuild its read model.

use factline_guest::{EventMeta, Failure, Projector, ReadModel};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "item.a")]
    A {
        #[serde(default)]
        poison: bool,
    },
    #[serde(rename = "item.b")]
    B {
        #[serde(default)]
        poison: bool,
    },
}

#[derive(Debug, Default)]
pub struct Poison;

/// The read-model version marker (same as the `versioned` plugin's, so its patcher serves).
pub static READ_MODEL: [u8; 24] = *b"FACTLINE-READ-MODEL-V:01";

/// The read-model key of an event type's count.
pub fn count_key(event_type: &str) -> String {
    format!("count/{event_type}")
}

impl Projector for Poison {
    type Event = Event;

    fn project(
        &mut self,
        event: Event,
        _meta: &EventMeta,
        model: &mut ReadModel<'_>,
    ) -> Result<(), Failure> {
        let (event_type, poison) = match event {
            Event::A { poison } => ("item.a", poison),
            Event::B { poison } => ("item.b", poison),
        };
        if poison && !cfg!(feature = "fixed") {
            panic!("poison plugin: poisoned {event_type}");
        }
        let key = count_key(event_type);
        let n: u64 = model.get(&key)?.unwrap_or(0);
        model.put(&key, &(n + 1))
    }

    fn read_model_version() -> u32 {
        let v = std::hint::black_box(&READ_MODEL);
        let digits = &v[v.len() - 2..];
        u32::from(digits[0] - b'0') * 10 + u32::from(digits[1] - b'0')
    }
}

factline_guest::projector!(Poison);

#[cfg(test)]
mod tests {
    use factline_guest::scenario::{GivenEvent, ProjectorOutcome, ProjectorScenario};
    use factline_guest::testing::{Value, json, run_projector};

    use super::*;

    fn given(event_type: &str, payload: Value) -> GivenEvent {
        GivenEvent {
            event_type: event_type.into(),
            stream: Some("item-1".into()),
            schema_version: 1,
            payload,
            occurred_at: None,
        }
    }

    #[test]
    fn counts_per_type() {
        let scenario = ProjectorScenario {
            name: "counts".into(),
            given: vec![
                given("item.a", json!({})),
                given("item.a", json!({"poison": false})),
                given("item.b", json!({})),
            ],
            then: vec![],
            dead_letters: vec![],
        };
        let ProjectorOutcome::Rows { rows, .. } = run_projector::<Poison>(&scenario) else {
            panic!("expected rows");
        };
        assert_eq!(rows.get("count/item.a"), Some(&json!(2)));
        assert_eq!(rows.get("count/item.b"), Some(&json!(1)));
    }

    #[test]
    #[cfg_attr(not(feature = "fixed"), should_panic(expected = "poisoned item.b"))]
    fn poison_traps_unless_fixed() {
        let scenario = ProjectorScenario {
            name: "poison".into(),
            given: vec![given("item.b", json!({"poison": true}))],
            then: vec![],
            dead_letters: vec![],
        };
        let ProjectorOutcome::Rows { rows, .. } = run_projector::<Poison>(&scenario) else {
            panic!("expected rows");
        };
        assert_eq!(rows.get("count/item.b"), Some(&json!(1)));
    }
}
