//! The causal context token handed to clients in `X-RiftKV-Context`.
//!
//! Layout before base64 (URL-safe, no padding):
//! `[token version byte][postcard VersionVector][first 16 bytes of HMAC-SHA256 over the rest]`.
//! The token is opaque to clients and authenticated with a key derived from the cluster secret,
//! so a forged or corrupted token is refused instead of corrupting a clock (a forged context
//! could otherwise claim to have seen writes that do not exist yet and silently drop them).

use super::object::MAX_COUNTER;
use super::vv::VersionVector;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// First byte of every token this version writes.
pub const CONTEXT_TOKEN_VERSION: u8 = 1;

/// Bytes of MAC kept in a token (128 bits is ample against forgery and keeps tokens short).
const MAC_LEN: usize = 16;

/// Tokens longer than this are refused before decoding (a clock of hundreds of actors fits).
pub const MAX_TOKEN_CHARS: usize = 16 * 1024;

/// Domain label so the context key never equals a key derived from the same secret elsewhere.
const KEY_LABEL: &[u8] = b"riftkv context token key v1";

/// The key that signs context tokens. Every node derives the same one from the cluster secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ContextKey([u8; 32]);

impl ContextKey {
    pub fn derive(cluster_secret: &[u8]) -> ContextKey {
        let mut mac = HmacSha256::new_from_slice(KEY_LABEL).unwrap_or_else(|_| unreachable_mac());
        mac.update(cluster_secret);
        ContextKey(mac.finalize().into_bytes().into())
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable_mac())
    }
}

/// HMAC accepts keys of any length, so construction cannot fail.
fn unreachable_mac() -> HmacSha256 {
    unreachable!("HMAC-SHA256 accepts keys of every length")
}

impl std::fmt::Debug for ContextKey {
    /// Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContextKey(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("malformed context token: {0}")]
    Malformed(String),
    #[error("context token failed authentication")]
    BadMac,
    #[error("unsupported context token version {0}")]
    UnsupportedVersion(u8),
}

/// Sign `vv` into a client token.
pub fn encode_context(vv: &VersionVector, key: &ContextKey) -> String {
    let mut buf = vec![CONTEXT_TOKEN_VERSION];
    // Serialising a map of strings and integers into a Vec cannot fail.
    buf = postcard::to_extend(vv, buf).unwrap_or_else(|_| vec![CONTEXT_TOKEN_VERSION, 0]);
    let mut mac = key.mac();
    mac.update(&buf);
    let tag = mac.finalize().into_bytes();
    buf.extend_from_slice(&tag[..MAC_LEN]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Check and open a client token. The MAC is checked (in constant time) before the payload is
/// parsed, so unauthenticated bytes never reach the decoder.
pub fn decode_context(token: &str, key: &ContextKey) -> Result<VersionVector, ContextError> {
    if token.is_empty() {
        return Err(ContextError::Malformed("empty token".into()));
    }
    if token.len() > MAX_TOKEN_CHARS {
        return Err(ContextError::Malformed(format!(
            "token of {} characters is over the limit of {MAX_TOKEN_CHARS}",
            token.len()
        )));
    }
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|e| ContextError::Malformed(format!("not base64url: {e}")))?;
    if raw.len() < 1 + MAC_LEN {
        return Err(ContextError::Malformed("token too short".into()));
    }
    if raw[0] != CONTEXT_TOKEN_VERSION {
        return Err(ContextError::UnsupportedVersion(raw[0]));
    }
    let (body, tag) = raw.split_at(raw.len() - MAC_LEN);
    let mut mac = key.mac();
    mac.update(body);
    mac.verify_truncated_left(tag)
        .map_err(|_| ContextError::BadMac)?;
    let (vv, rest) = postcard::take_from_bytes::<VersionVector>(&body[1..])
        .map_err(|e| ContextError::Malformed(format!("bad clock: {e}")))?;
    if !rest.is_empty() {
        return Err(ContextError::Malformed("trailing bytes in clock".into()));
    }
    if let Some((a, n)) = vv.iter().find(|(_, n)| *n > MAX_COUNTER) {
        return Err(ContextError::Malformed(format!(
            "counter {n} out of range for {a}"
        )));
    }
    Ok(vv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;
    use proptest::prelude::*;

    fn sample() -> VersionVector {
        [(NodeId::from("node-a"), 3), (NodeId::from("node-b"), 17)]
            .into_iter()
            .collect()
    }

    fn key() -> ContextKey {
        ContextKey::derive(b"cluster secret")
    }

    #[test]
    fn round_trip_and_url_safe() {
        let t = encode_context(&sample(), &key());
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(decode_context(&t, &key()).unwrap(), sample());
        let empty = encode_context(&VersionVector::new(), &key());
        assert_eq!(
            decode_context(&empty, &key()).unwrap(),
            VersionVector::new()
        );
    }

    #[test]
    fn key_derivation_is_deterministic_and_secret_dependent() {
        assert_eq!(ContextKey::derive(b"s"), ContextKey::derive(b"s"));
        assert_ne!(ContextKey::derive(b"s"), ContextKey::derive(b"t"));
        assert_eq!(format!("{:?}", key()), "ContextKey(..)");
    }

    #[test]
    fn empty_and_garbage_are_malformed() {
        assert!(matches!(
            decode_context("", &key()),
            Err(ContextError::Malformed(_))
        ));
        assert!(matches!(
            decode_context("!!!", &key()),
            Err(ContextError::Malformed(_))
        ));
        assert!(matches!(
            decode_context("AQ", &key()),
            Err(ContextError::Malformed(_))
        ));
        let long = "A".repeat(MAX_TOKEN_CHARS + 1);
        assert!(matches!(
            decode_context(&long, &key()),
            Err(ContextError::Malformed(_))
        ));
    }

    #[test]
    fn token_from_another_key_is_rejected() {
        let t = encode_context(&sample(), &ContextKey::derive(b"other cluster"));
        assert_eq!(decode_context(&t, &key()), Err(ContextError::BadMac));
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let t = encode_context(&sample(), &key());
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for byte in 0..raw.len() {
            for bit in 0..8 {
                let mut r = raw.clone();
                r[byte] ^= 1 << bit;
                let forged = URL_SAFE_NO_PAD.encode(&r);
                let res = decode_context(&forged, &key());
                if byte == 0 {
                    assert!(matches!(res, Err(ContextError::UnsupportedVersion(_))));
                } else {
                    assert_eq!(res, Err(ContextError::BadMac), "byte {byte} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn truncation_is_rejected() {
        let t = encode_context(&sample(), &key());
        for len in 0..t.len() {
            assert!(
                decode_context(&t[..len], &key()).is_err(),
                "prefix of {len}"
            );
        }
    }

    #[test]
    fn unsupported_version_is_rejected() {
        let mut raw = URL_SAFE_NO_PAD
            .decode(encode_context(&sample(), &key()))
            .unwrap();
        raw[0] = 2;
        assert_eq!(
            decode_context(&URL_SAFE_NO_PAD.encode(&raw), &key()),
            Err(ContextError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn authenticated_but_invalid_clock_is_malformed() {
        // correctly signed, but the payload holds a zero counter
        let mut body = vec![CONTEXT_TOKEN_VERSION];
        let mut map = std::collections::BTreeMap::new();
        map.insert(NodeId::from("a"), 0u64);
        body.extend(postcard::to_allocvec(&map).unwrap());
        let mut mac = key().mac();
        mac.update(&body);
        body.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        let t = URL_SAFE_NO_PAD.encode(&body);
        assert!(matches!(
            decode_context(&t, &key()),
            Err(ContextError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn prop_round_trip(entries in proptest::collection::btree_map("[a-z0-9-]{1,12}", 1u64..1_000_000, 0..8)) {
            let vv: VersionVector = entries.into_iter().map(|(a, n)| (NodeId(a), n)).collect();
            let t = encode_context(&vv, &key());
            prop_assert_eq!(decode_context(&t, &key()).unwrap(), vv);
        }

        #[test]
        fn prop_random_strings_never_panic(s in ".{0,200}") {
            let _ = decode_context(&s, &key());
        }
    }
}
