//! Wire envelope: every frame on a peer connection is one postcard-encoded [`Envelope`].
//!
//! Compatibility rule: `Envelope::Hello` stays variant 0 and `Hello::protocol_version` stays
//! its first field forever, so any future version can still read an old peer's version and
//! refuse it with a clear reason instead of a decode error.

use super::NetError;
use crate::types::NodeId;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Length of handshake nonces and HMAC-SHA256 proofs.
pub const NONCE_LEN: usize = 32;
pub type Nonce = [u8; NONCE_LEN];
pub type Proof = [u8; 32];

/// Opaque bytes encoded as one length-prefixed blob (not element by element).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Payload(pub Bytes);

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Payload;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(Bytes::from(v)))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// First message of the dialling side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub cluster_name: String,
    pub node_id: NodeId,
    /// Where the dialler accepts connections itself.
    pub advertise: String,
    pub nonce: Nonce,
}

/// The listener's answer to a Hello: its identity, its nonce, and its proof over the
/// dialler's nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub protocol_version: u32,
    pub cluster_name: String,
    pub node_id: NodeId,
    pub advertise: String,
    pub nonce: Nonce,
    pub proof: Proof,
}

/// Why a handshake was refused. Carries both sides' values so each side can word the
/// reason from its own point of view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    ClusterMismatch {
        refuser_cluster: String,
        peer_cluster: String,
    },
    ProtocolMismatch {
        refuser_version: u32,
        peer_version: u32,
    },
    /// The peer's proof did not verify under the refuser's cluster secret.
    BadProof,
    /// The peer broke the handshake sequence.
    Unexpected(String),
}

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    Hello(Hello),
    Challenge(Challenge),
    Auth {
        proof: Proof,
    },
    Welcome,
    Refuse(Refusal),
    Request {
        id: u64,
        payload: Payload,
    },
    /// `Err` carries a reason when the peer could not produce a response.
    Response {
        id: u64,
        result: Result<Payload, String>,
    },
    /// Liveness probe on an established connection, sent when a call timed out.
    Ping,
    /// Answer to `Ping`, written as soon as it is read.
    Pong,
}

impl Envelope {
    /// A short name for logs (never the payload).
    pub fn kind(&self) -> &'static str {
        match self {
            Envelope::Hello(_) => "Hello",
            Envelope::Challenge(_) => "Challenge",
            Envelope::Auth { .. } => "Auth",
            Envelope::Welcome => "Welcome",
            Envelope::Refuse(_) => "Refuse",
            Envelope::Request { .. } => "Request",
            Envelope::Response { .. } => "Response",
            Envelope::Ping => "Ping",
            Envelope::Pong => "Pong",
        }
    }
}

/// Encodes an envelope, refusing frames the peer would reject as too large.
pub fn encode(env: &Envelope, limit: usize) -> Result<Bytes, NetError> {
    let buf = postcard::to_allocvec(env).map_err(|e| NetError::Codec(e.to_string()))?;
    if buf.len() > limit {
        return Err(NetError::FrameTooLarge {
            size: buf.len(),
            limit,
        });
    }
    Ok(Bytes::from(buf))
}

/// Decodes one frame; trailing bytes are an error (a frame is exactly one envelope).
pub fn decode(buf: &[u8]) -> Result<Envelope, NetError> {
    let (env, rest) = postcard::take_from_bytes::<Envelope>(buf)
        .map_err(|e| NetError::Codec(format!("undecodable frame: {e}")))?;
    if !rest.is_empty() {
        return Err(NetError::Codec(format!(
            "{} trailing bytes after {} frame",
            rest.len(),
            env.kind()
        )));
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hello() -> Hello {
        Hello {
            protocol_version: 1,
            cluster_name: "riftkv".into(),
            node_id: NodeId::new("n1"),
            advertise: "127.0.0.1:8801".into(),
            nonce: [7; NONCE_LEN],
        }
    }

    #[test]
    fn every_envelope_round_trips() {
        let all = vec![
            Envelope::Hello(hello()),
            Envelope::Challenge(Challenge {
                protocol_version: 1,
                cluster_name: "riftkv".into(),
                node_id: NodeId::new("n2"),
                advertise: "127.0.0.1:8802".into(),
                nonce: [1; NONCE_LEN],
                proof: [2; 32],
            }),
            Envelope::Auth { proof: [3; 32] },
            Envelope::Welcome,
            Envelope::Refuse(Refusal::ClusterMismatch {
                refuser_cluster: "a".into(),
                peer_cluster: "b".into(),
            }),
            Envelope::Refuse(Refusal::BadProof),
            Envelope::Request {
                id: 42,
                payload: Payload(Bytes::from_static(b"hello")),
            },
            Envelope::Response {
                id: u64::MAX,
                result: Ok(Payload(Bytes::new())),
            },
            Envelope::Response {
                id: 0,
                result: Err("boom".into()),
            },
            Envelope::Ping,
            Envelope::Pong,
        ];
        for env in all {
            let buf = encode(&env, 1 << 20).unwrap();
            assert_eq!(decode(&buf).unwrap(), env);
        }
    }

    #[test]
    fn hello_is_variant_zero_with_version_first() {
        // Old and new peers rely on this layout to read each other's protocol version.
        let buf = encode(&Envelope::Hello(hello()), 1 << 20).unwrap();
        assert_eq!(buf[0], 0);
        assert_eq!(buf[1], 1);
    }

    #[test]
    fn payload_is_encoded_as_one_blob() {
        let payload = Bytes::from(vec![0xffu8; 1000]);
        let buf = encode(
            &Envelope::Request {
                id: 1,
                payload: Payload(payload),
            },
            1 << 20,
        )
        .unwrap();
        // variant + id + 2-byte varint length + data: no per-element overhead.
        assert_eq!(buf.len(), 1 + 1 + 2 + 1000);
    }

    #[test]
    fn oversized_frames_are_refused_before_sending() {
        let env = Envelope::Request {
            id: 1,
            payload: Payload(Bytes::from(vec![0u8; 100])),
        };
        match encode(&env, 50) {
            Err(NetError::FrameTooLarge { size, limit }) => {
                assert!(size > 100);
                assert_eq!(limit, 50);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn garbage_and_trailing_bytes_are_codec_errors() {
        assert!(matches!(
            decode(&[0xff, 0xff, 0xff]),
            Err(NetError::Codec(_))
        ));
        assert!(matches!(decode(&[]), Err(NetError::Codec(_))));
        let mut buf = encode(&Envelope::Welcome, 100).unwrap().to_vec();
        buf.push(0);
        assert!(matches!(decode(&buf), Err(NetError::Codec(_))));
    }

    proptest! {
        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&buf);
        }

        #[test]
        fn requests_round_trip(id in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let env = Envelope::Request { id, payload: Payload(Bytes::from(data)) };
            let buf = encode(&env, 1 << 20).unwrap();
            prop_assert_eq!(decode(&buf).unwrap(), env);
        }
    }
}
