//! What a plugin may see beyond its inputs. Nothing by default: the guest's clocks read the
//! time of the event or command being handled and its randomness is seeded from that input, so
//! a replay computes exactly what the first run did (DESIGN §4 invariant 8). An operator can
//! grant the real ones per plugin, giving up replay determinism for that plugin knowingly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Grants of one plugin (config: `[plugins.capabilities]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capabilities {
    /// The host's real wall and monotonic clocks instead of the envelope time.
    pub real_clock: bool,
    /// The host's OS randomness instead of a generator seeded from the input.
    pub real_random: bool,
}

/// The deterministic generator behind `wasi:random` when `real_random` is not granted:
/// SplitMix64 over a state the host reseeds before every call from the call's input (the
/// command id or the batch's event ids), so the same input draws the same numbers.
#[derive(Clone, Debug, Default)]
pub(crate) struct SeededRandom(pub Arc<AtomicU64>);

impl SeededRandom {
    pub fn reseed(&self, seed: u64) {
        self.0.store(seed, Ordering::Relaxed);
    }

    fn next(&self) -> u64 {
        // SplitMix64 (Steele, Lea, Flood 2014): the state advances by the golden gamma.
        let mut z = self
            .0
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl rand_core::TryRng for SeededRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((self.next() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.next())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let n = self.next().to_le_bytes();
            chunk.copy_from_slice(&n[..chunk.len()]);
        }
        Ok(())
    }
}

/// A 64-bit seed from the bytes that identify a call's input (FNV-1a: stable everywhere).
pub(crate) fn seed_of<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separates ["ab","c"] from ["a","bc"].
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use rand_core::TryRng;

    use super::*;

    #[test]
    fn same_seed_same_numbers_other_seed_other_numbers() {
        let draw = |seed| {
            let mut r = SeededRandom::default();
            r.reseed(seed);
            let mut b = [0u8; 20];
            r.try_fill_bytes(&mut b).unwrap();
            b
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert_ne!(
            seed_of([b"ab".as_slice(), b"c"]),
            seed_of([b"a".as_slice(), b"bc"])
        );
    }
}
