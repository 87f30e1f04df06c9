//! A hostile aggregate that bypasses the SDK (which can only encode valid MessagePack): every
//! command yields one event whose payload is bytes no decoder accepts. The host must refuse the
//! output as a `bad output` failure and append nothing.

#[cfg(target_arch = "wasm32")]
// The generated export glue is `unsafe` (the canonical ABI); this crate has no other unsafe.
#[allow(unsafe_code)]
mod component {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "aggregate",
    });

    use exports::factline::plugin::aggregate_handler::Guest;
    use factline::plugin::types::{Command, DecideError, Event, Failure, NewEvent};

    struct Garbage;

    impl Guest for Garbage {
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
            // 0xc1 is the one byte MessagePack never uses; a truncated map follows for good
            // measure when the command asks for it.
            let payload = match command.command_type.as_str() {
                "truncated" => vec![0x82, 0xa1, b'a'],
                _ => vec![0xc1, 0xc1],
            };
            Ok(vec![NewEvent {
                event_type: "garbage.emitted".into(),
                schema_version: 1,
                payload,
                metadata: Vec::new(),
            }])
        }
    }

    export!(Garbage);
}
