//! A test-only projector for hot-reload tests. Each version counts the events it handles under
//! its own key, `count/<tag>`, and marks each event `seen/<event id>` = tag; an event it sees
//! marked already counts under `dup`. So after any number of swaps: the counts add up to the
//! events appended exactly when none was lost, and `dup` is absent exactly when none was handled
//! twice (by two versions or one).
//!
//! The tag lives in the component's data as [`TAG`]; tests make distinct versions by patching
//! its last two bytes in the built `.wasm` ([`patch_tag`]), without rebuilding. The read-model
//! version it declares is patched the same way ([`patch_read_model_version`]), so a test can
//! deploy a version whose read model must be rebuilt.

use factline_guest::{EventMeta, Failure, Projector, ReadModel};
use serde::{Deserialize, Serialize};

/// The marker and the version tag (last two bytes), found and patched in the built bytes.
pub static TAG: [u8; 24] = *b"FACTLINE-VERSION-TAG:v00";

/// The marker that precedes the two tag bytes.
pub const MARKER: &[u8] = b"FACTLINE-VERSION-TAG:v";

/// `wasm` with its version tag set to `tag` (two ASCII bytes). Panics unless the marker occurs
/// exactly once.
pub fn patch_tag(wasm: &[u8], tag: [u8; 2]) -> Vec<u8> {
    patch(wasm, MARKER, tag)
}

/// The marker and the declared read-model version (two ASCII digits), patched like [`TAG`].
pub static READ_MODEL: [u8; 24] = *b"FACTLINE-READ-MODEL-V:01";

/// The marker that precedes the two read-model version digits.
pub const READ_MODEL_MARKER: &[u8] = b"FACTLINE-READ-MODEL-V:";

/// `wasm` declaring read-model version `version` (1..=99).
pub fn patch_read_model_version(wasm: &[u8], version: u8) -> Vec<u8> {
    patch(
        wasm,
        READ_MODEL_MARKER,
        [b'0' + version / 10, b'0' + version % 10],
    )
}

fn patch(wasm: &[u8], marker: &[u8], value: [u8; 2]) -> Vec<u8> {
    let at: Vec<usize> = wasm
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the marker must occur exactly once");
    let mut out = wasm.to_vec();
    out[at[0] + marker.len()..at[0] + marker.len() + 2].copy_from_slice(&value);
    out
}

fn tag() -> String {
    // black_box: read the bytes at run time, so a patched tag is what counts.
    let t = std::hint::black_box(&TAG);
    format!("v{}", String::from_utf8_lossy(&t[MARKER.len()..]))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "tick.v")]
    Tick,
}

#[derive(Debug, Default)]
pub struct Versioned;

impl Projector for Versioned {
    type Event = Event;

    fn project(
        &mut self,
        _event: Event,
        meta: &EventMeta,
        model: &mut ReadModel<'_>,
    ) -> Result<(), Failure> {
        let tag = tag();
        let seen = format!("seen/{}", meta.event_id);
        if model.get::<String>(&seen)?.is_some() {
            let d: u64 = model.get("dup")?.unwrap_or(0);
            return model.put("dup", &(d + 1));
        }
        model.put(&seen, &tag)?;
        let key = format!("count/{tag}");
        let n: u64 = model.get(&key)?.unwrap_or(0);
        model.put(&key, &(n + 1))
    }

    fn read_model_version() -> u32 {
        let v = std::hint::black_box(&READ_MODEL);
        let digits = &v[READ_MODEL_MARKER.len()..];
        u32::from(digits[0] - b'0') * 10 + u32::from(digits[1] - b'0')
    }
}

factline_guest::projector!(Versioned);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_patched_in_place() {
        let mut fake = b"....".to_vec();
        fake.extend_from_slice(&TAG);
        fake.extend_from_slice(b"....");
        fake.extend_from_slice(&READ_MODEL);
        let patched = patch_tag(&fake, *b"07");
        let patched = patch_read_model_version(&patched, 12);
        assert!(
            patched
                .windows(24)
                .any(|w| w == b"FACTLINE-READ-MODEL-V:12")
        );
        assert_eq!(patched.len(), fake.len());
        assert!(
            patched
                .windows(24)
                .any(|w| w == b"FACTLINE-VERSION-TAG:v07")
        );
    }
}
