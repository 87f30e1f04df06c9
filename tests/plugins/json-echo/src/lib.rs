//! A projector of the `json-projector` world written against raw wit-bindgen, showing what
//! crosses that world's boundary. For a batch it writes:
//!
//! - `batch/<first offset>`: the batch text exactly as handed over (as a JSON string);
//! - `echo/<event id>`: the event's payload, its JSON text as handed over;
//! - `read/<event id>`: what `get("echo/<event id>")` then returns (the batch's own write);
//! - for a payload `{"big": n}`, `big/<event id>`: a string of `n` bytes (to meet the budget).
//!
//! A batch that is not the JSON it should be fails naming what is wrong.

#[cfg(target_arch = "wasm32")]
// The generated export glue is `unsafe` (the canonical ABI); this crate has no other unsafe.
#[allow(unsafe_code)]
mod component {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "json-projector",
    });

    use exports::factline::plugin::json_projector_handler::Guest;
    use factline::plugin::json_read_model::{get, put};
    use factline::plugin::types::Failure;
    use serde_json::value::RawValue;

    #[derive(serde::Deserialize)]
    struct Event<'a> {
        event_id: String,
        offset: u64,
        #[serde(borrow)]
        payload: &'a RawValue,
    }

    struct Echo;

    impl Guest for Echo {
        fn event_types() -> Vec<String> {
            Vec::new()
        }

        fn project(events: String) -> Result<(), Failure> {
            let batch: Vec<Event<'_>> = serde_json::from_str(&events).map_err(|e| Failure {
                message: format!("the batch is not a JSON array of events: {e}"),
                event_index: None,
            })?;
            let first = batch.first().map_or(0, |e| e.offset);
            let text = serde_json::to_string(&events).expect("a string serializes");
            put(&format!("batch/{first}"), &text);
            for e in &batch {
                let echo = format!("echo/{}", e.event_id);
                put(&echo, e.payload.get());
                let read = get(&echo).unwrap_or_else(|| "null".to_owned());
                put(&format!("read/{}", e.event_id), &read);
                if let Ok(big) = serde_json::from_str::<Big>(e.payload.get()) {
                    let value = serde_json::to_string(&"x".repeat(big.big)).expect("a string");
                    put(&format!("big/{}", e.event_id), &value);
                }
            }
            Ok(())
        }
    }

    #[derive(serde::Deserialize)]
    struct Big {
        big: usize,
    }

    export!(Echo);
}
