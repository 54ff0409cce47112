//! Per-key serialisation of local read-modify-write cycles.
//!
//! A coordinator's write reads the stored copy, adds a dot and writes the result; two such
//! cycles interleaving on one key would hand out the same dot twice and lose a write. The same
//! holds for replica merges (read local, sync, write). Every local merge of this module's
//! callers therefore runs under the key's stripe lock. Locks are striped (bounded memory) and
//! held only in synchronous code (on the blocking pool, or on an async task when the lock
//! was free at once), never across an `.await`.

use parking_lot::{Mutex, MutexGuard};
use riftkv_core::storage::ObjectKey;
use std::sync::LazyLock;

const STRIPES: usize = 1024;

static LOCKS: LazyLock<Vec<Mutex<()>>> =
    LazyLock::new(|| (0..STRIPES).map(|_| Mutex::new(())).collect());

fn stripe(k: &ObjectKey) -> usize {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&k.partition.to_be_bytes());
    h.update(&(k.bucket.len() as u64).to_be_bytes());
    h.update(&k.bucket);
    h.update(&k.key);
    (h.digest() % STRIPES as u64) as usize
}

/// Locks the stripe of one key.
pub fn lock_key(k: &ObjectKey) -> MutexGuard<'static, ()> {
    LOCKS[stripe(k)].lock()
}

/// The stripe of one key if no one holds it now: the write path's cheap case, done on the
/// asking task instead of the blocking pool.
pub fn try_lock_key(k: &ObjectKey) -> Option<MutexGuard<'static, ()>> {
    LOCKS[stripe(k)].try_lock()
}

/// Locks the stripes of several keys, in stripe order so two callers can never deadlock.
pub fn lock_keys<'a>(
    keys: impl IntoIterator<Item = &'a ObjectKey>,
) -> Vec<MutexGuard<'static, ()>> {
    let mut idx: Vec<usize> = keys.into_iter().map(stripe).collect();
    idx.sort_unstable();
    idx.dedup();
    idx.into_iter().map(|i| LOCKS[i].lock()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_keys_lock_without_deadlock_and_release() {
        let keys: Vec<ObjectKey> = (0..200u32)
            .map(|i| ObjectKey::new(i % 7, b"b".to_vec(), i.to_be_bytes().to_vec()))
            .collect();
        let guards = lock_keys(keys.iter().chain(keys.iter()));
        assert!(guards.len() <= keys.len());
        drop(guards);
        let _g = lock_key(&keys[0]);
    }
}
