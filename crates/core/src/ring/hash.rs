//! Key hashing and the hash → partition mapping.
//!
//! The hash covers the bucket and the key with a length prefix so that no two distinct
//! `(bucket, key)` pairs share an encoding: `("a", "bc")` and `("ab", "c")` hash differently.

use super::RingError;
use crate::types::PartitionId;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// Smallest accepted ring size.
pub const MIN_RING_SIZE: u32 = 1;
/// Largest accepted ring size (2^16 partitions).
pub const MAX_RING_SIZE: u32 = 1 << 16;
/// Ring size used when none is configured.
pub const DEFAULT_RING_SIZE: u32 = 64;

/// Inputs up to this size are hashed in one shot from a stack buffer (no streaming state).
const INLINE_LIMIT: usize = 192;

/// xxh3-64 of `len(bucket) as u64 LE || bucket || key`.
pub fn key_hash(bucket: &[u8], key: &[u8]) -> u64 {
    let prefix = (bucket.len() as u64).to_le_bytes();
    let total = prefix.len() + bucket.len() + key.len();
    if total <= INLINE_LIMIT {
        let mut buf = [0u8; INLINE_LIMIT];
        buf[..8].copy_from_slice(&prefix);
        buf[8..8 + bucket.len()].copy_from_slice(bucket);
        buf[8 + bucket.len()..total].copy_from_slice(key);
        xxh3_64(&buf[..total])
    } else {
        let mut h = Xxh3::new();
        h.update(&prefix);
        h.update(bucket);
        h.update(key);
        h.digest()
    }
}

/// The partition of a hash: its top `log2(ring_size)` bits. Ring size 1 (or an invalid 0)
/// maps everything to partition 0; a size that is not a power of two is treated as the
/// power of two below it, so the result is always `< ring_size`.
pub fn partition_of_hash(hash: u64, ring_size: u32) -> PartitionId {
    if ring_size <= 1 {
        return 0;
    }
    let bits = 31 - ring_size.leading_zeros(); // floor(log2(ring_size)), 1..=31
    (hash >> (64 - bits)) as PartitionId
}

/// The partition holding `key` of `bucket` on a ring of `ring_size` partitions.
pub fn partition_for(bucket: &[u8], key: &[u8], ring_size: u32) -> PartitionId {
    partition_of_hash(key_hash(bucket, key), ring_size)
}

/// Checks a configured ring size: a power of two within `MIN_RING_SIZE..=MAX_RING_SIZE`.
pub fn validate_ring_size(q: u32) -> Result<(), RingError> {
    if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&q) || !q.is_power_of_two() {
        return Err(RingError::InvalidRingSize {
            size: q as u64,
            max: MAX_RING_SIZE,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefix_separates_bucket_from_key() {
        assert_ne!(key_hash(b"a", b"bc"), key_hash(b"ab", b"c"));
        assert_ne!(key_hash(b"", b"abc"), key_hash(b"abc", b""));
        assert_eq!(key_hash(b"users", b"alice"), key_hash(b"users", b"alice"));
    }

    #[test]
    fn long_inputs_hash_like_the_one_shot_encoding() {
        let bucket = vec![7u8; 100];
        let key = vec![9u8; 300];
        let mut joined = (bucket.len() as u64).to_le_bytes().to_vec();
        joined.extend_from_slice(&bucket);
        joined.extend_from_slice(&key);
        assert_eq!(key_hash(&bucket, &key), xxh3_64(&joined));
        // Straddling the inline limit gives the same hash whichever path is taken.
        for klen in 170..200 {
            let key = vec![3u8; klen];
            let mut joined = (4u64).to_le_bytes().to_vec();
            joined.extend_from_slice(b"bkt1");
            joined.extend_from_slice(&key);
            assert_eq!(key_hash(b"bkt1", &key), xxh3_64(&joined));
        }
    }

    #[test]
    fn partition_is_top_bits() {
        assert_eq!(partition_of_hash(u64::MAX, 1), 0);
        assert_eq!(partition_of_hash(u64::MAX, 64), 63);
        assert_eq!(partition_of_hash(0, 64), 0);
        assert_eq!(partition_of_hash(1 << 63, 2), 1);
        assert_eq!(partition_of_hash(0x8000_0000_0000_0000, 1 << 16), 1 << 15);
        assert_eq!(partition_of_hash(u64::MAX, 0), 0);
        assert!(partition_of_hash(u64::MAX, 100) < 100);
    }

    #[test]
    fn ring_size_validation() {
        for q in [1u32, 2, 8, 64, 1024, 1 << 16] {
            assert!(validate_ring_size(q).is_ok(), "{q}");
        }
        for q in [0u32, 3, 100, 1 << 17, u32::MAX] {
            let err = validate_ring_size(q).unwrap_err();
            assert!(err.to_string().contains("power of two"), "{err}");
        }
    }

    #[test]
    fn partitions_are_roughly_uniform() {
        let q = 64u32;
        let keys = 100_000u32;
        let mut counts = vec![0u32; q as usize];
        for i in 0..keys {
            let key = format!("key-{i}");
            counts[partition_for(b"bucket", key.as_bytes(), q) as usize] += 1;
        }
        let expected = keys as f64 / q as f64;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        // 63 degrees of freedom: the 99.9th percentile is about 103.4.
        assert!(chi2 < 103.4, "chi-square {chi2} too high: {counts:?}");
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*max as f64 <= expected * 1.15 && *min as f64 >= expected * 0.85);
    }
}
