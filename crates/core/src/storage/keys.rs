//! Byte layout of keys in each column family.
//!
//! The layouts keep byte order within one (partition, bucket) so that bucket listing and
//! partition scans are plain ordered range reads:
//!
//! - objects: `partition u32 BE | bucket len u8 | bucket | key`
//! - hints:   `target len u16 BE | target | partition u32 BE | bucket len u8 | bucket | key`
//! - expiry:  `instant ms u64 BE | partition u32 BE | bucket len u8 | bucket | key` (an index:
//!   big-endian instants sort in time order, so "everything due by t" is one range read)
//! - tombstones: the object key itself (an index in storage order, so a walk with a cursor
//!   visits each dead key once per pass)
//!
//! Length prefixes (rather than separators) make buckets that are prefixes of one another
//! ("a", "ab") land in disjoint key ranges, whatever bytes the keys contain.

use super::{HintKey, ObjectKey, StorageError};
use crate::types::{NodeId, PartitionId};

/// Longest bucket name: its length must fit the one-byte prefix.
pub const MAX_BUCKET_LEN: usize = u8::MAX as usize;
/// Longest target node id in a hint key: its length must fit the two-byte prefix.
pub const MAX_TARGET_LEN: usize = u16::MAX as usize;

/// Rejects bucket names the key layout cannot hold.
pub fn check_bucket(bucket: &[u8]) -> Result<(), StorageError> {
    if bucket.is_empty() || bucket.len() > MAX_BUCKET_LEN {
        return Err(StorageError::Invalid(format!(
            "bucket name must be 1..={MAX_BUCKET_LEN} bytes, got {}",
            bucket.len()
        )));
    }
    Ok(())
}

/// Prefix shared by every object of one partition.
pub fn partition_prefix(partition: PartitionId) -> Vec<u8> {
    partition.to_be_bytes().to_vec()
}

/// Prefix shared by every object of one bucket within one partition.
pub fn bucket_prefix(partition: PartitionId, bucket: &[u8]) -> Result<Vec<u8>, StorageError> {
    check_bucket(bucket)?;
    let mut out = Vec::with_capacity(5 + bucket.len());
    out.extend_from_slice(&partition.to_be_bytes());
    out.push(bucket.len() as u8);
    out.extend_from_slice(bucket);
    Ok(out)
}

/// Encodes an object key (partition, bucket, key).
pub fn object_key(
    partition: PartitionId,
    bucket: &[u8],
    key: &[u8],
) -> Result<Vec<u8>, StorageError> {
    let mut out = bucket_prefix(partition, bucket)?;
    out.extend_from_slice(key);
    Ok(out)
}

/// Encodes an [`ObjectKey`].
pub fn encode_object(k: &ObjectKey) -> Result<Vec<u8>, StorageError> {
    object_key(k.partition, &k.bucket, &k.key)
}

/// Decodes an object key; `None` when the bytes cannot be one (a damaged key).
pub fn decode_object(raw: &[u8]) -> Option<ObjectKey> {
    let partition = PartitionId::from_be_bytes(raw.get(0..4)?.try_into().ok()?);
    let (bucket, key) = split_bucket(raw.get(4..)?)?;
    Some(ObjectKey {
        partition,
        bucket: bucket.to_vec(),
        key: key.to_vec(),
    })
}

/// Encodes an expiry index key: the instant the object can go, then its object key.
pub fn encode_expiry(at_ms: u64, k: &ObjectKey) -> Result<Vec<u8>, StorageError> {
    let mut out = at_ms.to_be_bytes().to_vec();
    out.extend_from_slice(&encode_object(k)?);
    Ok(out)
}

/// Decodes an expiry index key; `None` when the bytes cannot be one (a damaged key).
pub fn decode_expiry(raw: &[u8]) -> Option<(u64, ObjectKey)> {
    let at = u64::from_be_bytes(raw.get(0..8)?.try_into().ok()?);
    Some((at, decode_object(raw.get(8..)?)?))
}

/// Prefix shared by every hint for one target node.
pub fn target_prefix(target: &NodeId) -> Result<Vec<u8>, StorageError> {
    let t = target.as_str().as_bytes();
    if t.len() > MAX_TARGET_LEN {
        return Err(StorageError::Invalid(format!(
            "hint target node id must be at most {MAX_TARGET_LEN} bytes, got {}",
            t.len()
        )));
    }
    let mut out = Vec::with_capacity(2 + t.len());
    out.extend_from_slice(&(t.len() as u16).to_be_bytes());
    out.extend_from_slice(t);
    Ok(out)
}

/// Encodes a [`HintKey`].
pub fn encode_hint(k: &HintKey) -> Result<Vec<u8>, StorageError> {
    let mut out = target_prefix(&k.target)?;
    out.extend_from_slice(&object_key(k.partition, &k.bucket, &k.key)?);
    Ok(out)
}

/// Decodes a hint key; `None` when the bytes cannot be one (a damaged key).
pub fn decode_hint(raw: &[u8]) -> Option<HintKey> {
    let (target, rest) = split_target(raw)?;
    let object = decode_object(rest)?;
    Some(HintKey {
        target,
        partition: object.partition,
        bucket: object.bucket,
        key: object.key,
    })
}

/// Splits the target node id off a hint key, returning it and the rest of the key.
pub fn split_target(raw: &[u8]) -> Option<(NodeId, &[u8])> {
    let len = u16::from_be_bytes(raw.get(0..2)?.try_into().ok()?) as usize;
    let target = std::str::from_utf8(raw.get(2..2 + len)?).ok()?;
    Some((NodeId::new(target), raw.get(2 + len..)?))
}

fn split_bucket(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = *raw.first()? as usize;
    if len == 0 {
        return None;
    }
    let bucket = raw.get(1..1 + len)?;
    Some((bucket, raw.get(1 + len..)?))
}

/// Shows arbitrary key bytes in logs and errors without loss or control characters.
pub fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_length_is_checked() {
        assert!(matches!(
            object_key(1, b"", b"k"),
            Err(StorageError::Invalid(_))
        ));
        assert!(matches!(
            object_key(1, &[7u8; 256], b"k"),
            Err(StorageError::Invalid(_))
        ));
        assert!(object_key(1, &[7u8; 255], b"k").is_ok());
    }

    #[test]
    fn prefix_buckets_do_not_overlap() {
        let a = bucket_prefix(3, b"a").unwrap();
        let ab_key = object_key(3, b"ab", b"").unwrap();
        assert!(!ab_key.starts_with(&a));
        let a_key_b = object_key(3, b"a", b"b").unwrap();
        assert!(a_key_b.starts_with(&a));
    }

    #[test]
    fn damaged_keys_decode_to_none() {
        assert_eq!(decode_object(b""), None);
        assert_eq!(decode_object(&[0, 0, 0, 1]), None);
        assert_eq!(decode_object(&[0, 0, 0, 1, 0]), None);
        assert_eq!(decode_object(&[0, 0, 0, 1, 5, b'a']), None);
        assert_eq!(decode_hint(&[0, 9, b'n']), None);
        assert_eq!(decode_expiry(&[0, 0, 0, 1]), None);
        assert_eq!(
            decode_expiry(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0]),
            None
        );
        assert_eq!(decode_hint(&[0, 1, 0xff, 0, 0, 0, 1, 1, b'b']), None);
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![Just(0u8), Just(0xffu8), Just(b'a'), any::<u8>()],
            0..6,
        )
    }

    fn bucket() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![Just(0u8), Just(0xffu8), Just(b'a'), any::<u8>()],
            1..4,
        )
    }

    proptest! {
        #[test]
        fn object_keys_round_trip(p in any::<u32>(), b in bucket(), k in bytes()) {
            let ok = ObjectKey { partition: p, bucket: b, key: k };
            let raw = encode_object(&ok).unwrap();
            prop_assert_eq!(decode_object(&raw), Some(ok));
        }

        #[test]
        fn hint_keys_round_trip(t in "[a-z0-9:-]{0,12}", p in any::<u32>(), b in bucket(), k in bytes()) {
            let hk = HintKey { target: NodeId::new(t), partition: p, bucket: b, key: k };
            let raw = encode_hint(&hk).unwrap();
            prop_assert_eq!(decode_hint(&raw), Some(hk));
        }

        #[test]
        fn expiry_keys_round_trip_in_time_order(t1 in any::<u64>(), t2 in any::<u64>(), p in any::<u32>(), b in bucket(), k in bytes()) {
            let ok = ObjectKey { partition: p, bucket: b, key: k };
            let e1 = encode_expiry(t1, &ok).unwrap();
            prop_assert_eq!(decode_expiry(&e1), Some((t1, ok.clone())));
            if t1 != t2 {
                prop_assert_eq!(e1.cmp(&encode_expiry(t2, &ok).unwrap()), t1.cmp(&t2));
            }
        }

        /// Within one (partition, bucket) encoded order is the byte order of keys.
        #[test]
        fn key_order_is_preserved(p in any::<u32>(), b in bucket(), k1 in bytes(), k2 in bytes()) {
            let e1 = object_key(p, &b, &k1).unwrap();
            let e2 = object_key(p, &b, &k2).unwrap();
            prop_assert_eq!(e1.cmp(&e2), k1.cmp(&k2));
        }

        /// Partitions are contiguous ranges in partition order.
        #[test]
        fn partition_order_is_preserved(p1 in any::<u32>(), p2 in any::<u32>(), b1 in bucket(), b2 in bucket(), k1 in bytes(), k2 in bytes()) {
            prop_assume!(p1 != p2);
            let e1 = object_key(p1, &b1, &k1).unwrap();
            let e2 = object_key(p2, &b2, &k2).unwrap();
            prop_assert_eq!(e1.cmp(&e2), p1.cmp(&p2));
        }
    }
}
