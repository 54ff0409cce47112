//! One stored version of a value (a "sibling" when several coexist).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Content type stored when a client sends none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// A version's payload and metadata. Tombstones are ordinary versions with `deleted = true`
/// and an empty value, so deletes take part in causality like any write.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sibling {
    #[serde(with = "raw_bytes")]
    pub value: Bytes,
    pub content_type: String,
    pub last_modified_ms: u64,
    pub deleted: bool,
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
        }
    }

    /// A delete marker.
    pub fn tombstone(last_modified_ms: u64) -> Sibling {
        Sibling {
            value: Bytes::new(),
            content_type: String::new(),
            last_modified_ms,
            deleted: true,
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
    }
}

/// Serialises `Bytes` as a byte string (one length prefix and a copy), not as a sequence of
/// integers, which keeps postcard encoding of large values fast and compact.
mod raw_bytes {
    use bytes::Bytes;
    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Bytes;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(v))
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
            Ok(Bytes::from(v))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(v.as_bytes()))
        }

        /// Self-describing formats such as JSON write byte strings as integer arrays.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(Bytes::from(out))
        }
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
    fn tombstone_is_empty_and_deleted() {
        let t = Sibling::tombstone(9);
        assert!(t.deleted);
        assert!(t.value.is_empty());
        assert_eq!(t.last_modified_ms, 9);
    }
}
