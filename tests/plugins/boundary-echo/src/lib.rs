//! A projector written against raw wit-bindgen that shows what crosses its boundary. For each
//! event (whose payload must be a map) it writes:
//!
//! - `echo/<event id>`: the payload exactly as handed over, so the host reads it back in the
//!   same encoding;
//! - `seen/<event id>`: a binary value holding the bytes it was handed.
//!
//! It does not know how it was built: a handed-over map is MessagePack (first byte `0x80..=0x8f`,
//! `0xde`, `0xdf`) or JSON (`{`), and it answers in kind. Tests build it twice, once with the
//! `factline:boundary` section declaring JSON appended.

#[cfg(target_arch = "wasm32")]
// The generated export glue is `unsafe` (the canonical ABI); this crate has no other unsafe.
#[allow(unsafe_code)]
mod component {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "projector",
    });

    use exports::factline::plugin::projector_handler::Guest;
    use factline::plugin::read_model::put;
    use factline::plugin::types::{Event, Failure};

    struct Echo;

    impl Guest for Echo {
        fn event_types() -> Vec<String> {
            Vec::new()
        }

        fn project(events: Vec<Event>) -> Result<(), Failure> {
            for e in &events {
                put(&format!("echo/{}", e.event_id), &e.payload);
                put(&format!("seen/{}", e.event_id), &binary(&e.payload));
            }
            Ok(())
        }
    }

    /// `bytes` as a binary value in the encoding they came in.
    fn binary(bytes: &[u8]) -> Vec<u8> {
        if bytes.first() == Some(&b'{') {
            let items: Vec<String> = bytes.iter().map(u8::to_string).collect();
            format!("{{\"$bin\":[{}]}}", items.join(",")).into_bytes()
        } else {
            // MessagePack bin 32: 0xc6, big-endian length, bytes.
            let mut out = vec![0xc6];
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
            out
        }
    }

    export!(Echo);
}
