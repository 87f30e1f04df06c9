//! A hostile projector written against raw wit-bindgen. On its trigger events (decided by the
//! `budget-aggregate` as `emit-NAME`) it tries to exhaust the host through what it hands over:
//!
//! - `budget.gigabytes`: 2,000 `put`s of 1 MB under distinct keys in one call (a 2 GB attempt);
//! - `budget.big-value`: one 20 MiB value (over the default `max_output_bytes`);
//! - `budget.many-keys`: 200,000 one-byte values under distinct keys;
//! - `budget.long-failure`: a failure with a 50 MiB message;
//! - `budget.log-flood`: 20,000 log lines (then it counts the event like any other);
//!
//! every other event is counted under the key `seen`, so its healthy work is checkable.

#[cfg(target_arch = "wasm32")]
// The generated export glue is `unsafe` (the canonical ABI); this crate has no other unsafe.
#[allow(unsafe_code)]
mod component {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "projector",
    });

    use exports::factline::plugin::projector_handler::Guest;
    use factline::plugin::logging::{Level, log};
    use factline::plugin::read_model::{get, put};
    use factline::plugin::types::{Event, Failure};

    struct Flood;

    impl Guest for Flood {
        fn event_types() -> Vec<String> {
            Vec::new()
        }

        fn project(events: Vec<Event>) -> Result<(), Failure> {
            for (i, e) in events.iter().enumerate() {
                match e.event_type.as_str() {
                    "budget.gigabytes" => {
                        let value = vec![0x5a; 1_000_000];
                        for k in 0..2_000 {
                            put(&format!("blob-{k:05}"), &value);
                        }
                    }
                    "budget.big-value" => put("big", &vec![0x5a; 20 << 20]),
                    "budget.many-keys" => {
                        for k in 0..200_000 {
                            put(&format!("k{k:07}"), &[0xc0]);
                        }
                    }
                    "budget.long-failure" => {
                        return Err(Failure {
                            message: "f".repeat(50 << 20),
                            event_index: Some(i as u32),
                        });
                    }
                    "budget.log-flood" => {
                        for n in 0..20_000 {
                            log(Level::Warn, &format!("budget-projector flood line {n}"));
                        }
                    }
                    _ => {}
                }
                // A MessagePack uint (positive fixint up to 127, else u32).
                let seen = get("seen").map(|v| decode(&v)).unwrap_or(0) + 1;
                put("seen", &encode(seen));
            }
            Ok(())
        }
    }

    fn encode(n: u32) -> Vec<u8> {
        let mut v = vec![0xce];
        v.extend_from_slice(&n.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> u32 {
        match v {
            [0xce, a, b, c, d] => u32::from_be_bytes([*a, *b, *c, *d]),
            _ => 0,
        }
    }

    export!(Flood);
}
