//! A hostile aggregate written against raw wit-bindgen (the SDK only produces well-formed
//! output). Each command type hands the host something over a budget or invalid:
//!
//! - `metadata`: one event with 40,000 metadata pairs (~20 MB);
//! - `bad-utf8`: a payload that is a MessagePack string of invalid UTF-8 (`a2 ff fe`);
//! - `long-code`: a rejection with a 1 MiB code; `long-rejection`: a 30 MiB message;
//! - `long-failure`: a failure with a 50 MiB message;
//! - `many-events`: 5,000 small events;
//! - `log-flood`: 20,000 log lines, then a `tick.a` like `ok`;
//! - `ok`: one `tick.a` event (`{}`), which the `counter` projector counts;
//! - `emit-NAME`: one `budget.NAME` event, the trigger of a `budget-projector` fault.

#[cfg(target_arch = "wasm32")]
// The generated export glue is `unsafe` (the canonical ABI); this crate has no other unsafe.
#[allow(unsafe_code)]
mod component {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "aggregate",
    });

    use exports::factline::plugin::aggregate_handler::Guest;
    use factline::plugin::logging::{Level, log};
    use factline::plugin::types::{Command, DecideError, Event, Failure, NewEvent, Rejection};

    struct Budget;

    /// `{}` in MessagePack.
    const EMPTY_MAP: u8 = 0x80;

    fn event(event_type: &str, payload: Vec<u8>) -> NewEvent {
        NewEvent {
            event_type: event_type.into(),
            schema_version: 1,
            payload,
            metadata: Vec::new(),
        }
    }

    impl Guest for Budget {
        fn event_types() -> Vec<String> {
            Vec::new()
        }

        fn initial_state() -> Vec<u8> {
            Vec::new()
        }

        fn evolve(state: Vec<u8>, _events: Vec<Event>) -> Result<Vec<u8>, Failure> {
            Ok(state)
        }

        fn decide(_state: Vec<u8>, command: Command) -> Result<Vec<NewEvent>, DecideError> {
            let t = command.command_type.as_str();
            if let Some(name) = t.strip_prefix("emit-") {
                return Ok(vec![event(&format!("budget.{name}"), vec![EMPTY_MAP])]);
            }
            match t {
                "metadata" => {
                    let mut e = event("tick.a", vec![EMPTY_MAP]);
                    e.metadata = (0..40_000)
                        .map(|i| (format!("key-{i:08}"), "v".repeat(500)))
                        .collect();
                    Ok(vec![e])
                }
                "bad-utf8" => Ok(vec![event("tick.a", vec![0xa2, 0xff, 0xfe])]),
                "long-code" => Err(DecideError::Rejected(Rejection {
                    code: "c".repeat(1 << 20),
                    message: "a rejection with a 1 MiB code".into(),
                })),
                "long-rejection" => Err(DecideError::Rejected(Rejection {
                    code: "too-long".into(),
                    message: "m".repeat(30 << 20),
                })),
                "long-failure" => Err(DecideError::Failed(Failure {
                    message: "f".repeat(50 << 20),
                    event_index: None,
                })),
                "many-events" => Ok((0..5_000)
                    .map(|_| event("tick.a", vec![EMPTY_MAP]))
                    .collect()),
                "log-flood" => {
                    for i in 0..20_000 {
                        log(Level::Warn, &format!("budget-aggregate flood line {i}"));
                    }
                    Ok(vec![event("tick.a", vec![EMPTY_MAP])])
                }
                _ => Ok(vec![event("tick.a", vec![EMPTY_MAP])]),
            }
        }
    }

    export!(Budget);
}
