//! Test-only damage to stored object records, as a bad sector or a torn write would leave them:
//! the record stays in place but its checksum fails. The `corrupt` nemesis of riftkv-jepsen
//! uses it (through a route that exists only with the `fault-injection` feature) to check that
//! replicas repair such records without losing acknowledged writes.

use super::backend::{Backend, Cf, Flow, RawOp};
use super::{RecordStore, StorageError, keys, record};
use rand::Rng;
use serde::Serialize;

/// What one damage request found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// Intact object records that matched the request.
    pub matched: u64,
    /// Of those, how many were damaged.
    pub damaged: u64,
}

/// How many of `matched` records `fraction` asks for: rounded up, so any positive fraction of
/// a non-empty set damages at least one record.
pub fn share(matched: usize, fraction: f64) -> usize {
    if fraction.is_nan() || fraction <= 0.0 || matched == 0 {
        return 0;
    }
    let want = (matched as f64 * fraction.min(1.0)).ceil() as usize;
    want.clamp(1, matched)
}

/// Damages one sealed record: its last byte is flipped, which the CRC-32 always detects.
pub fn spoil(sealed: &mut [u8]) {
    if let Some(last) = sealed.last_mut() {
        *last ^= 0x5a;
    }
}

impl<B: Backend> RecordStore<B> {
    /// Damages `fraction` (0..=1) of the intact object records of `bucket` (only those of `key`
    /// when given, one per partition that holds it), chosen with `rng`. Records that are
    /// already damaged are neither counted nor touched, so a second call cannot undo the
    /// first. The damage is written synced: it is on disk when this returns.
    pub fn damage_objects(
        &self,
        bucket: &[u8],
        key: Option<&[u8]>,
        fraction: f64,
        rng: &mut impl Rng,
    ) -> Result<Damage, StorageError> {
        keys::check_bucket(bucket)?;
        if !(0.0..=1.0).contains(&fraction) {
            return Err(StorageError::Invalid(format!(
                "damage fraction must be in 0..=1, got {fraction}"
            )));
        }
        // Collected first: the scan visitor must not call back into the backend.
        let mut found: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.backend().raw_scan(Cf::Objects, &[], &mut |k, v| {
            let hit = keys::decode_object(k)
                .is_some_and(|o| o.bucket == bucket && key.is_none_or(|want| o.key == want));
            if hit && record::open(v).is_ok() {
                found.push((k.to_vec(), v.to_vec()));
            }
            Flow::Continue
        })?;
        let n = share(found.len(), fraction);
        let ops: Vec<RawOp> = rand::seq::index::sample(rng, found.len(), n)
            .into_iter()
            .map(|i| {
                let (k, mut v) = std::mem::take(&mut found[i]);
                spoil(&mut v);
                RawOp::Put(Cf::Objects, k, v)
            })
            .collect();
        if !ops.is_empty() {
            self.backend().raw_write(ops, true)?;
        }
        Ok(Damage {
            matched: found.len() as u64,
            damaged: n as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemoryStorage, ObjectKey, Storage, StorageError, WriteBatch};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn store_with(objects: &[(u32, &str, &str)]) -> MemoryStorage {
        let s = MemoryStorage::new();
        let mut b = WriteBatch::new();
        for (p, bucket, key) in objects {
            b.put_object(ObjectKey::new(*p, *bucket, *key), b"value".to_vec());
        }
        s.write(b, false).unwrap();
        s
    }

    fn damaged(s: &MemoryStorage, objects: &[(u32, &str, &str)]) -> usize {
        objects
            .iter()
            .filter(|(p, b, k)| {
                matches!(
                    s.get_object(&ObjectKey::new(*p, *b, *k)),
                    Err(StorageError::Corrupt { .. })
                )
            })
            .count()
    }

    #[test]
    fn share_rounds_up_and_stays_in_range() {
        assert_eq!(share(10, 0.0), 0);
        assert_eq!(share(10, 0.01), 1);
        assert_eq!(share(10, 0.25), 3);
        assert_eq!(share(10, 1.0), 10);
        assert_eq!(share(0, 0.5), 0);
        assert_eq!(share(10, f64::NAN), 0);
    }

    #[test]
    fn damages_the_asked_share_of_one_bucket_only() {
        let objs: Vec<(u32, &str, &str)> = (0..20u32)
            .map(|i| (i % 4, "jepsen", ["a", "b", "c", "d", "e"][i as usize % 5]))
            .chain([(1, "other", "a"), (2, "jepsenx", "a")])
            .collect();
        let s = store_with(&objs);
        let mut rng = StdRng::seed_from_u64(1);
        let d = s.damage_objects(b"jepsen", None, 0.0, &mut rng).unwrap();
        assert_eq!(
            d,
            Damage {
                matched: 20,
                damaged: 0
            }
        );
        let d = s.damage_objects(b"jepsen", None, 0.5, &mut rng).unwrap();
        assert_eq!(
            d,
            Damage {
                matched: 20,
                damaged: 10
            }
        );
        assert_eq!(damaged(&s, &objs), 10);
        // Damaged records are no longer candidates: a second pass cannot flip them back.
        let d = s.damage_objects(b"jepsen", None, 1.0, &mut rng).unwrap();
        assert_eq!(
            d,
            Damage {
                matched: 10,
                damaged: 10
            }
        );
        assert_eq!(damaged(&s, &objs), 20);
        let other = &objs[20..];
        assert_eq!(damaged(&s, other), 0, "other buckets are untouched");
    }

    #[test]
    fn one_key_in_every_partition_that_holds_it() {
        let objs = [(1, "b", "k"), (7, "b", "k"), (7, "b", "kk"), (3, "c", "k")];
        let s = store_with(&objs);
        let mut rng = StdRng::seed_from_u64(2);
        let d = s.damage_objects(b"b", Some(b"k"), 1.0, &mut rng).unwrap();
        assert_eq!(
            d,
            Damage {
                matched: 2,
                damaged: 2
            }
        );
        assert_eq!(damaged(&s, &objs[..2]), 2);
        assert_eq!(damaged(&s, &objs[2..]), 0);
    }

    #[test]
    fn bad_requests_are_refused() {
        let s = store_with(&[]);
        let mut rng = StdRng::seed_from_u64(3);
        assert!(matches!(
            s.damage_objects(b"b", None, 1.5, &mut rng),
            Err(StorageError::Invalid(_))
        ));
        assert!(matches!(
            s.damage_objects(b"", None, 0.5, &mut rng),
            Err(StorageError::Invalid(_))
        ));
    }
}
