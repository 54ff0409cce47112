//! One stored version of a value (a "sibling" when several coexist).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Content type stored when a client sends none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// A version's payload and metadata. Tombstones are ordinary versions with `deleted = true`
/// and an empty value, so deletes take part in causality like any write.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sibling {
    #[serde(with = "crate::bytes_field")]
    pub value: Bytes,
    pub content_type: String,
    pub last_modified_ms: u64,
    pub deleted: bool,
    /// When this version stops being visible (ms since the Unix epoch), stamped once by the
    /// coordinator from its own clock, so every replica carries the same instant and no
    /// replica's clock decides alone when the value was written. `None`: never.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
}

impl Sibling {
    /// A live value.
    pub fn new(
        value: impl Into<Bytes>,
        content_type: impl Into<String>,
        last_modified_ms: u64,
    ) -> Sibling {
        Sibling {
            value: value.into(),
            content_type: content_type.into(),
            last_modified_ms,
            deleted: false,
            expires_at_ms: None,
        }
    }

    /// This version, expiring at `expires_at_ms` (ms since the Unix epoch; `None`: never).
    pub fn expiring(mut self, expires_at_ms: Option<u64>) -> Sibling {
        self.expires_at_ms = expires_at_ms;
        self
    }

    /// True when the version has expired by `now_ms` (a tombstone never "expires": it is
    /// already a delete).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        !self.deleted && self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// True when a reader at `now_ms` sees this version: neither a tombstone nor expired.
    pub fn is_live(&self, now_ms: u64) -> bool {
        !self.deleted && !self.is_expired(now_ms)
    }

    /// Since when this version hides nothing but is only history: a tombstone since it was
    /// written, an expiring value since its expiry; `None` for a value that never expires.
    pub fn dead_since_ms(&self) -> Option<u64> {
        if self.deleted {
            Some(self.last_modified_ms)
        } else {
            self.expires_at_ms
        }
    }

    /// A delete marker.
    pub fn tombstone(last_modified_ms: u64) -> Sibling {
        Sibling {
            value: Bytes::new(),
            content_type: String::new(),
            last_modified_ms,
            deleted: true,
            expires_at_ms: None,
        }
    }

    /// A total order over sibling contents, used only to settle the impossible-in-practice case
    /// of two different payloads under one dot (so merging stays commutative even then) and
    /// as the last LWW tie-breaker.
    pub(crate) fn content_cmp(&self, other: &Sibling) -> std::cmp::Ordering {
        self.last_modified_ms
            .cmp(&other.last_modified_ms)
            .then_with(|| self.deleted.cmp(&other.deleted))
            .then_with(|| self.value.as_ref().cmp(other.value.as_ref()))
            .then_with(|| self.content_type.cmp(&other.content_type))
            .then_with(|| self.expires_at_ms.cmp(&other.expires_at_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_bytes_round_trip_in_postcard_and_json() {
        let s = Sibling::new(vec![0u8, 1, 255, 7], "text/plain", 42);
        let bin = postcard::to_allocvec(&s).unwrap();
        // 1 length byte + 4 value bytes, not 4 separately framed integers beyond that
        assert!(bin.len() < 4 + 1 + 1 + "text/plain".len() + 1 + 1 + 2);
        assert_eq!(postcard::from_bytes::<Sibling>(&bin).unwrap(), s);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Sibling>(&json).unwrap(), s);
    }

    #[test]
    fn expiry_hides_a_value_from_its_instant_on() {
        let s = Sibling::new(&b"v"[..], "t", 10).expiring(Some(100));
        assert!(s.is_live(99) && !s.is_expired(99));
        assert!(s.is_expired(100) && !s.is_live(100));
        assert_eq!(s.dead_since_ms(), Some(100));
        let forever = Sibling::new(&b"v"[..], "t", 10);
        assert!(forever.is_live(u64::MAX));
        assert_eq!(forever.dead_since_ms(), None);
        let t = Sibling::tombstone(7).expiring(Some(3));
        assert!(!t.is_live(0) && !t.is_expired(10));
        assert_eq!(t.dead_since_ms(), Some(7));
        let bin = postcard::to_allocvec(&s).unwrap();
        assert_eq!(postcard::from_bytes::<Sibling>(&bin).unwrap(), s);
    }

    #[test]
    fn tombstone_is_empty_and_deleted() {
        let t = Sibling::tombstone(9);
        assert!(t.deleted);
        assert!(t.value.is_empty());
        assert_eq!(t.last_modified_ms, 9);
    }
}
