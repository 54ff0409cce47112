//! Serde adapter for a field of bytes kept as one byte string (a length prefix and a copy),
//! not as a sequence of integers: in postcard the two are the same bytes on the wire, but a
//! sequence is encoded and decoded one element call at a time, which showed in profiles of
//! every replica read (BENCHMARKS.md, "GET r=2: profile"). `#[serde(with =
//! "riftkv_core::bytes_field")]` for `Bytes`, [`vec`] for `Vec<u8>`, [`option_vec`] for
//! `Option<Vec<u8>>`. Self-describing formats (JSON) still read integer arrays.

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

/// The adapter for `Vec<u8>` fields.
pub mod vec {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        // `Bytes` built from a `Vec` gives the same allocation back.
        super::deserialize(d).map(Vec::from)
    }
}

/// The adapter for `Option<Vec<u8>>` fields.
pub mod option_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Raw(#[serde(with = "super::vec")] Vec<u8>);

    pub fn serialize<S: Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(v) => s.serialize_some(&RawRef(v)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Raw>::deserialize(d)?.map(|r| r.0))
    }

    struct RawRef<'a>(&'a [u8]);

    impl Serialize for RawRef<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsSeq {
        a: Vec<u8>,
        b: Option<Vec<u8>>,
        c: Option<Vec<u8>>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsBytes {
        #[serde(with = "super::vec")]
        a: Vec<u8>,
        #[serde(with = "super::option_vec")]
        b: Option<Vec<u8>>,
        #[serde(with = "super::option_vec")]
        c: Option<Vec<u8>>,
    }

    /// Peers of an older build encode these fields as sequences: the bytes must not change.
    #[test]
    fn byte_strings_are_the_same_postcard_bytes_as_sequences() {
        let value: Vec<u8> = (0..=255).chain(0..300).map(|i| i as u8).collect();
        let seq = AsSeq {
            a: value.clone(),
            b: Some(b"key".to_vec()),
            c: None,
        };
        let bytes = AsBytes {
            a: value,
            b: Some(b"key".to_vec()),
            c: None,
        };
        let wire = postcard::to_stdvec(&seq).unwrap();
        assert_eq!(postcard::to_stdvec(&bytes).unwrap(), wire);
        let back: AsBytes = postcard::from_bytes(&wire).unwrap();
        assert_eq!(back, bytes);
        // JSON writes byte strings as integer arrays; both forms read each other.
        let json = serde_json::to_string(&bytes).unwrap();
        assert_eq!(serde_json::from_str::<AsSeq>(&json).unwrap(), seq);
        assert_eq!(serde_json::from_str::<AsBytes>(&json).unwrap(), bytes);
    }
}
