//! Which partition a stream lives in.
//!
//! `partition = (murmur2(utf8(stream id)) & 0x7fff_ffff) % partitions`: exactly Kafka's default
//! partitioner for a keyed record, so a Kafka-backed log (DESIGN §8) places every stream in the
//! same partition as the embedded one. Fixed forever: changing it would move streams between
//! partitions and break per-stream order. Independent of platform and endianness.

/// Kafka's `Utils.murmur2` (seed `0x9747b28c`), on bytes.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `stream` in a topic with `partitions` partitions (> 0).
pub fn partition_for(stream: &str, partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    ((murmur2(stream.as_bytes()) as u32) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_kafka_murmur2_vectors() {
        // From Apache Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input), expected, "{:?}", std::str::from_utf8(input));
        }
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        // Pinned values: if these change, existing logs would be split wrongly.
        assert_eq!(
            partition_for("order-ORD-1", 8),
            partition_for("order-ORD-1", 8)
        );
        let pinned: Vec<u32> = ["order-ORD-1", "order-ORD-2", "bank-ACC-001"]
            .iter()
            .map(|s| partition_for(s, 16))
            .collect();
        assert_eq!(pinned, PINNED);
        for i in 0..1000 {
            assert!(partition_for(&format!("s-{i}"), 7) < 7);
        }
    }

    const PINNED: [u32; 3] = [2, 7, 14];
}
