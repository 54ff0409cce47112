//! The causal context token handed to clients in `X-RiftKV-Context`.
//!
//! Layout before base64 (URL-safe, no padding), token version 2:
//! `[2][postcard VersionVector][first 16 bytes of HMAC-SHA256]`.
//! The MAC covers, in this order: a fixed domain label, the version byte, the bucket's length
//! (u64 big-endian) and bytes, the key's length (u64 big-endian) and bytes, then the clock
//! bytes. Bucket and key are not carried in the token (it stays short); the server supplies
//! the request's own, so a token read from one key fails authentication on any other. Without
//! that binding a client could send key A's clock with a write to key B and silently drop B's
//! siblings.
//!
//! The token is opaque to clients and authenticated with a key derived from the cluster secret,
//! so a forged or corrupted token is refused instead of corrupting a clock (a forged context
//! could otherwise claim to have seen writes that do not exist yet and silently drop them).
//!
//! A data type's context (`/v1/types`, a `riftkv_crdt::Context` of write identities) travels
//! in the same kind of token with its own first byte, [`TYPE_CONTEXT_TOKEN_VERSION`], which the
//! MAC covers: neither kind of token is accepted where the other is expected.
//!
//! Version-1 tokens (`[1][clock][MAC over version and clock]`) proved no key. They are refused
//! with [`ContextError::Outdated`] rather than accepted, because nothing tells which key one was
//! read from; the client reads the key again.

use super::object::MAX_COUNTER;
use super::vv::{Actor, VersionVector};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// First byte of every token this version writes.
pub const CONTEXT_TOKEN_VERSION: u8 = 2;

/// First byte of a data type's context token. Not one bit away from
/// [`CONTEXT_TOKEN_VERSION`], so a single flipped bit never turns one kind into the other.
pub const TYPE_CONTEXT_TOKEN_VERSION: u8 = 0x10;

/// First byte of the tokens of older releases, which were not bound to a key.
const UNBOUND_TOKEN_VERSION: u8 = 1;

/// Bytes of MAC kept in a token (128 bits is ample against forgery and keeps tokens short).
const MAC_LEN: usize = 16;

/// Tokens longer than this are refused before decoding (a clock of hundreds of actors fits).
pub const MAX_TOKEN_CHARS: usize = 16 * 1024;

/// Domain label so the context key never equals a key derived from the same secret elsewhere.
const KEY_LABEL: &[u8] = b"riftkv context token key v1";

/// Prefix of every MAC input, so a tag computed here can never match one computed over
/// another message with the same key (such as a version-1 tag over `[1][clock]`).
const MAC_DOMAIN: &[u8] = b"riftkv context token mac\0";

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
    /// The MAC does not match this bucket and key. A token read from another key and a forged
    /// one look the same here: the token does not carry its key, so they cannot be told apart.
    #[error("the context token belongs to another key or was forged")]
    BadMac,
    #[error("unsupported context token version {0}")]
    UnsupportedVersion(u8),
    /// A version-1 token: it cannot prove which key it was read from.
    #[error("context token from an older RiftKV version; read the key again")]
    Outdated,
    /// An object's token sent to a data type endpoint, or the reverse.
    #[error("{0}")]
    WrongKind(&'static str),
}

/// The MAC of a version-2 token: every field length-prefixed, so no two (bucket, key, clock)
/// triples share an input (bucket "ab" + key "c" differs from bucket "a" + key "bc").
fn bound_mac(
    ctx_key: &ContextKey,
    version: u8,
    bucket: &[u8],
    key: &[u8],
    clock: &[u8],
) -> HmacSha256 {
    let mut mac = ctx_key.mac();
    mac.update(MAC_DOMAIN);
    mac.update(&[version]);
    mac.update(&(bucket.len() as u64).to_be_bytes());
    mac.update(bucket);
    mac.update(&(key.len() as u64).to_be_bytes());
    mac.update(key);
    mac.update(clock);
    mac
}

/// The truncated tag a token carries.
fn tag(
    ctx_key: &ContextKey,
    version: u8,
    bucket: &[u8],
    key: &[u8],
    clock: &[u8],
) -> [u8; MAC_LEN] {
    let full = bound_mac(ctx_key, version, bucket, key, clock)
        .finalize()
        .into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// Signs `vv` into a client token for `key` of `bucket` (the raw bytes the coordinator uses).
pub fn encode_context(
    vv: &VersionVector,
    bucket: &[u8],
    key: &[u8],
    ctx_key: &ContextKey,
) -> String {
    // Serialising a map of strings and integers into a Vec cannot fail; [0] is an empty map.
    let clock = postcard::to_allocvec(vv).unwrap_or_else(|_| vec![0]);
    seal(CONTEXT_TOKEN_VERSION, &clock, bucket, key, ctx_key)
}

/// Signs a data type's context into a client token for `key` of `bucket`.
pub fn encode_type_context(
    ctx: &riftkv_crdt::Context<Actor>,
    bucket: &[u8],
    key: &[u8],
    ctx_key: &ContextKey,
) -> String {
    // As above: a map of plain data always serialises; [0] is an empty map.
    let clock = postcard::to_allocvec(ctx).unwrap_or_else(|_| vec![0]);
    seal(TYPE_CONTEXT_TOKEN_VERSION, &clock, bucket, key, ctx_key)
}

fn seal(version: u8, clock: &[u8], bucket: &[u8], key: &[u8], ctx_key: &ContextKey) -> String {
    let mut buf = Vec::with_capacity(1 + clock.len() + MAC_LEN);
    buf.push(version);
    buf.extend_from_slice(clock);
    buf.extend_from_slice(&tag(ctx_key, version, bucket, key, clock));
    URL_SAFE_NO_PAD.encode(buf)
}

/// Seals arbitrary clock bytes into a token of either kind, so the fuzz targets reach the
/// clock decoders behind the MAC. Only in the instrumented fuzz build (`--cfg fuzzing`).
#[cfg(fuzzing)]
pub fn seal_for_fuzzing(
    type_token: bool,
    clock: &[u8],
    bucket: &[u8],
    key: &[u8],
    ctx_key: &ContextKey,
) -> String {
    let version = if type_token {
        TYPE_CONTEXT_TOKEN_VERSION
    } else {
        CONTEXT_TOKEN_VERSION
    };
    seal(version, clock, bucket, key, ctx_key)
}

/// Checks and opens a client token sent with a request on `key` of `bucket`. The MAC is
/// checked (in constant time) before the payload is parsed, so unauthenticated bytes never
/// reach the decoder.
pub fn decode_context(
    token: &str,
    bucket: &[u8],
    key: &[u8],
    ctx_key: &ContextKey,
) -> Result<VersionVector, ContextError> {
    let clock = open(token, CONTEXT_TOKEN_VERSION, bucket, key, ctx_key)?;
    let vv: VersionVector = from_clock_bytes(&clock)?;
    if let Some((a, n)) = vv.iter().find(|(_, n)| *n > MAX_COUNTER) {
        return Err(ContextError::Malformed(format!(
            "counter {n} out of range for {a}"
        )));
    }
    Ok(vv)
}

/// [`decode_context`] for a data type's token ([`encode_type_context`]).
pub fn decode_type_context(
    token: &str,
    bucket: &[u8],
    key: &[u8],
    ctx_key: &ContextKey,
) -> Result<riftkv_crdt::Context<Actor>, ContextError> {
    let clock = open(token, TYPE_CONTEXT_TOKEN_VERSION, bucket, key, ctx_key)?;
    from_clock_bytes(&clock)
}

fn from_clock_bytes<T: serde::de::DeserializeOwned>(clock: &[u8]) -> Result<T, ContextError> {
    let (v, rest) = postcard::take_from_bytes::<T>(clock)
        .map_err(|e| ContextError::Malformed(format!("bad clock: {e}")))?;
    if !rest.is_empty() {
        return Err(ContextError::Malformed("trailing bytes in clock".into()));
    }
    Ok(v)
}

/// The authenticated clock bytes of a token whose first byte must be `want`.
fn open(
    token: &str,
    want: u8,
    bucket: &[u8],
    key: &[u8],
    ctx_key: &ContextKey,
) -> Result<Vec<u8>, ContextError> {
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
    match (raw[0], want) {
        (v, w) if v == w => {}
        (UNBOUND_TOKEN_VERSION, _) => return Err(ContextError::Outdated),
        (TYPE_CONTEXT_TOKEN_VERSION, _) => {
            return Err(ContextError::WrongKind(
                "the context token belongs to a data type (/v1/types), not a plain value",
            ));
        }
        (CONTEXT_TOKEN_VERSION, _) => {
            return Err(ContextError::WrongKind(
                "the context token belongs to a plain value (/v1/kv), not a data type",
            ));
        }
        (other, _) => return Err(ContextError::UnsupportedVersion(other)),
    }
    let (body, tag) = raw.split_at(raw.len() - MAC_LEN);
    let clock = &body[1..];
    bound_mac(ctx_key, want, bucket, key, clock)
        .verify_truncated_left(tag)
        .map_err(|_| ContextError::BadMac)?;
    Ok(clock.to_vec())
}

/// A token as version 1 wrote it (`[1][clock][MAC over both]`), for tests of its refusal.
#[cfg(any(test, feature = "testkit"))]
pub fn legacy_v1_token(vv: &VersionVector, ctx_key: &ContextKey) -> String {
    let mut buf = vec![UNBOUND_TOKEN_VERSION];
    buf.extend(postcard::to_allocvec(vv).unwrap_or_else(|_| vec![0]));
    let mut mac = ctx_key.mac();
    mac.update(&buf);
    let full = mac.finalize().into_bytes();
    buf.extend_from_slice(&full[..MAC_LEN]);
    URL_SAFE_NO_PAD.encode(buf)
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

    fn enc(vv: &VersionVector) -> String {
        encode_context(vv, b"bucket", b"key", &key())
    }

    fn dec(token: &str) -> Result<VersionVector, ContextError> {
        decode_context(token, b"bucket", b"key", &key())
    }

    #[test]
    fn round_trip_and_url_safe() {
        let t = enc(&sample());
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&t).unwrap()[0], 2);
        assert_eq!(dec(&t).unwrap(), sample());
        let empty = enc(&VersionVector::new());
        assert_eq!(dec(&empty).unwrap(), VersionVector::new());
        // Keys of any bytes, empty ones included (the API refuses those earlier).
        let odd = encode_context(&sample(), b"", b"\xff\0/", &key());
        assert_eq!(
            decode_context(&odd, b"", b"\xff\0/", &key()).unwrap(),
            sample()
        );
    }

    #[test]
    fn bucket_and_key_are_not_carried_in_the_token() {
        let short = encode_context(&sample(), b"b", b"k", &key());
        let long = encode_context(&sample(), &[b'b'; 255], &[b'k'; 1024], &key());
        assert_eq!(short.len(), long.len());
    }

    #[test]
    fn key_derivation_is_deterministic_and_secret_dependent() {
        assert_eq!(ContextKey::derive(b"s"), ContextKey::derive(b"s"));
        assert_ne!(ContextKey::derive(b"s"), ContextKey::derive(b"t"));
        assert_eq!(format!("{:?}", key()), "ContextKey(..)");
    }

    #[test]
    fn empty_and_garbage_are_malformed() {
        for bad in ["", "!!!", "AQ", "Ag"] {
            assert!(matches!(dec(bad), Err(ContextError::Malformed(_))), "{bad}");
        }
        let long = "A".repeat(MAX_TOKEN_CHARS + 1);
        assert!(matches!(dec(&long), Err(ContextError::Malformed(_))));
    }

    #[test]
    fn token_of_another_cluster_is_rejected() {
        let t = encode_context(
            &sample(),
            b"bucket",
            b"key",
            &ContextKey::derive(b"other cluster"),
        );
        assert_eq!(dec(&t), Err(ContextError::BadMac));
    }

    #[test]
    fn token_of_another_key_or_bucket_is_rejected() {
        let t = enc(&sample());
        for (bucket, k) in [
            (&b"bucket"[..], &b"other"[..]),
            (b"other", b"key"),
            (b"bucket", b"key\0"),
            (b"bucke", b"tkey"),
            (b"bucketk", b"ey"),
        ] {
            assert_eq!(
                decode_context(&t, bucket, k, &key()),
                Err(ContextError::BadMac),
                "{:?}/{:?}",
                String::from_utf8_lossy(bucket),
                String::from_utf8_lossy(k)
            );
        }
    }

    #[test]
    fn the_same_bytes_split_differently_are_another_key() {
        let t = encode_context(&sample(), b"ab", b"c", &key());
        assert_eq!(
            decode_context(&t, b"a", b"bc", &key()),
            Err(ContextError::BadMac)
        );
        assert_eq!(decode_context(&t, b"ab", b"c", &key()).unwrap(), sample());
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let t = enc(&sample());
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for byte in 0..raw.len() {
            for bit in 0..8 {
                let mut r = raw.clone();
                r[byte] ^= 1 << bit;
                let res = dec(&URL_SAFE_NO_PAD.encode(&r));
                if byte == 0 {
                    assert!(
                        matches!(res, Err(ContextError::UnsupportedVersion(_))),
                        "bit {bit}: {res:?}"
                    );
                } else {
                    assert_eq!(res, Err(ContextError::BadMac), "byte {byte} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn a_data_type_context_has_its_own_token_kind() {
        let ctx: riftkv_crdt::Context<Actor> = [(Actor::new("n1", 7), 3), (Actor::new("n2", 1), 1)]
            .into_iter()
            .collect();
        let t = encode_type_context(&ctx, b"bucket", b"key", &key());
        assert_eq!(
            decode_type_context(&t, b"bucket", b"key", &key()).unwrap(),
            ctx
        );
        assert_eq!(
            decode_type_context(&t, b"bucket", b"other", &key()),
            Err(ContextError::BadMac)
        );
        // Neither kind is accepted where the other is expected, and the error says so.
        assert!(matches!(dec(&t), Err(ContextError::WrongKind(m)) if m.contains("data type")));
        let object_token = enc(&sample());
        assert!(matches!(
            decode_type_context(&object_token, b"bucket", b"key", &key()),
            Err(ContextError::WrongKind(m)) if m.contains("plain value")
        ));
        // Relabelling the kind byte breaks the MAC.
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[0] = CONTEXT_TOKEN_VERSION;
        assert!(dec(&URL_SAFE_NO_PAD.encode(&raw)).is_err());
    }

    #[test]
    fn truncation_is_rejected() {
        let t = enc(&sample());
        for len in 0..t.len() {
            assert!(dec(&t[..len]).is_err(), "prefix of {len}");
        }
    }

    #[test]
    fn unsupported_version_is_rejected() {
        let mut raw = URL_SAFE_NO_PAD.decode(enc(&sample())).unwrap();
        raw[0] = 3;
        assert_eq!(
            dec(&URL_SAFE_NO_PAD.encode(&raw)),
            Err(ContextError::UnsupportedVersion(3))
        );
    }

    #[test]
    fn version_1_tokens_are_refused_with_their_own_error() {
        // Correctly signed by this cluster, but unbound to any key.
        let t = legacy_v1_token(&sample(), &key());
        assert_eq!(dec(&t), Err(ContextError::Outdated));
        let msg = ContextError::Outdated.to_string();
        assert_eq!(
            msg,
            "context token from an older RiftKV version; read the key again"
        );
        // Refused before any MAC check, so a forged v1 token says the same.
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(
            dec(&URL_SAFE_NO_PAD.encode(&raw)),
            Err(ContextError::Outdated)
        );
    }

    #[test]
    fn authenticated_but_invalid_clock_is_malformed() {
        // correctly signed, but the payload holds a zero counter
        let mut map = std::collections::BTreeMap::new();
        map.insert(crate::version::Actor::from("a"), 0u64);
        let clock = postcard::to_allocvec(&map).unwrap();
        let mut token = vec![CONTEXT_TOKEN_VERSION];
        token.extend_from_slice(&clock);
        token.extend_from_slice(&tag(
            &key(),
            CONTEXT_TOKEN_VERSION,
            b"bucket",
            b"key",
            &clock,
        ));
        let t = URL_SAFE_NO_PAD.encode(&token);
        assert!(matches!(dec(&t), Err(ContextError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn prop_round_trip(
            entries in proptest::collection::btree_map("[a-z0-9-]{1,12}", 1u64..1_000_000, 0..8),
            bucket in proptest::collection::vec(any::<u8>(), 0..16),
            k in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let vv: VersionVector = entries.into_iter().map(|(a, n)| (NodeId(a), n)).collect();
            let t = encode_context(&vv, &bucket, &k, &key());
            prop_assert_eq!(decode_context(&t, &bucket, &k, &key()).unwrap(), vv);
        }

        #[test]
        fn prop_other_names_are_refused(
            a in proptest::collection::vec(any::<u8>(), 0..8),
            b in proptest::collection::vec(any::<u8>(), 0..8),
            c in proptest::collection::vec(any::<u8>(), 0..8),
            d in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            prop_assume!((&a, &b) != (&c, &d));
            let t = encode_context(&sample(), &a, &b, &key());
            prop_assert_eq!(decode_context(&t, &c, &d, &key()), Err(ContextError::BadMac));
        }

        #[test]
        fn prop_random_strings_never_panic(s in ".{0,200}") {
            let _ = dec(&s);
        }
    }
}
