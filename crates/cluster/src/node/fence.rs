//! The reap fence: tombstones this node reaped recently, so stale copies of them are not
//! stored again while the reap completes on the other replicas.

use riftkv_core::storage::ObjectKey;
use riftkv_core::version::{Object, VersionVector};

/// How long a reaped tombstone stays fenced (see [`ReapFence`]).
pub const REAP_FENCE_MS: u64 = 10 * 60 * 1000;
/// Most keys fenced at once; past it the oldest fences are dropped (a dropped fence can only
/// let a reaped tombstone come back, to be reaped again: never a lost write).
pub const REAP_FENCE_MAX: usize = 100_000;

/// Tombstones this node reaped recently, with the clock each had.
///
/// Reaping deletes a tombstone from each primary in turn, so for a moment some replicas hold it
/// and some do not. Without a fence, read repair or anti-entropy would copy it straight back
/// onto the replicas that had just dropped it. A copy arriving for a fenced key whose versions
/// the reaped clock has all seen, and which holds nothing live, carries nothing the reap did not
/// already account for: it is acknowledged and not stored. Anything newer is stored as usual.
#[derive(Debug, Default)]
pub struct ReapFence {
    fenced: parking_lot::Mutex<std::collections::HashMap<ObjectKey, (VersionVector, u64)>>,
}

impl ReapFence {
    /// Fences `k` until `now_ms + REAP_FENCE_MS`.
    pub fn fence(&self, k: &ObjectKey, clock: VersionVector, now_ms: u64) {
        let mut f = self.fenced.lock();
        f.retain(|_, (_, until)| *until > now_ms);
        if f.len() >= REAP_FENCE_MAX {
            let oldest = f
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(k, _)| k.clone());
            if let Some(o) = oldest {
                f.remove(&o);
            }
        }
        f.insert(k.clone(), (clock, now_ms.saturating_add(REAP_FENCE_MS)));
    }

    /// Whether `incoming` for `k` is a stale copy of a key reaped here (tombstones and expired
    /// versions alike: nothing in it is live at `now_ms`).
    pub fn holds_back(&self, k: &ObjectKey, incoming: &Object, now_ms: u64) -> bool {
        let f = self.fenced.lock();
        match f.get(k) {
            Some((clock, until)) if *until > now_ms => {
                incoming.live_siblings(now_ms).is_empty() && clock.descends(&incoming.context())
            }
            _ => false,
        }
    }

    /// Lifts the fence of `k` (a write coordinated here supersedes the reap).
    pub fn lift(&self, k: &ObjectKey) {
        self.fenced.lock().remove(k);
    }

    pub fn len(&self) -> usize {
        self.fenced.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
