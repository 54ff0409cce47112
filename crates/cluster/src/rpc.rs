//! The inter-node message envelope. Each subsystem owns its messages: it declares a request
//! type with [`Message`] (its endpoint number and its reply type) next to the code that
//! handles it. This module only frames them, so it imports nothing above `riftkv-core`.
//!
//! On the wire a request is `varint(endpoint) ++ postcard(message)`, optionally followed by
//! its [`RequestMeta`]; a reply is `postcard(Reply<M::Reply>)`.
//!
//! A call made on behalf of a client request carries that request's id in the meta trailer,
//! so the replica's logs show it too: one slow request can be followed across nodes by its id.

use riftkv_core::net::NetError;
use riftkv_core::types::NodeId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Endpoint numbers. Fixed forever within a protocol version: they are the first byte of
/// every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Endpoint {
    Membership = 0,
    Replica = 1,
    Handoff = 2,
    Aae = 3,
    Coordinate = 4,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Membership,
        Endpoint::Replica,
        Endpoint::Handoff,
        Endpoint::Aae,
        Endpoint::Coordinate,
    ];

    pub fn from_u32(n: u32) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| *e as u32 == n)
    }
}

/// A request one node sends another, owned by the subsystem that handles it.
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    const ENDPOINT: Endpoint;
    /// What the handler answers.
    type Reply: Serialize + DeserializeOwned + Send + 'static;
    /// Short, bounded label for metrics and logs.
    fn label(&self) -> &'static str;
    /// The connection it travels on: data unless it is liveness traffic.
    fn lane(&self) -> riftkv_core::net::Lane {
        riftkv_core::net::Lane::Data
    }
}

/// A reply frame: the handler's answer, or why the receiver could not handle the request at
/// all (undecodable, unknown endpoint, a failure outside the handler's typed errors).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Reply<R> {
    Ok(R),
    Failed(String),
}

/// Metadata encoded after the request in the same frame. Receivers decode the request first
/// and read this from the bytes left over, so a peer that does not know a field (or the
/// trailer at all) still understands the request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMeta {
    /// Id of the client request this call serves; None for background duties.
    pub request_id: Option<String>,
}

/// Encodes a request followed by its metadata (omitted when empty).
pub fn encode_request<M: Message>(req: &M, meta: &RequestMeta) -> Result<Vec<u8>, postcard::Error> {
    let mut bytes = postcard::to_stdvec(&(M::ENDPOINT as u32))?;
    bytes.extend(postcard::to_stdvec(req)?);
    if meta != &RequestMeta::default() {
        bytes.extend(postcard::to_stdvec(meta)?);
    }
    Ok(bytes)
}

/// Splits a request frame into its endpoint and the bytes after it.
pub fn decode_endpoint(bytes: &[u8]) -> Result<(Endpoint, &[u8]), String> {
    let (n, rest) =
        postcard::take_from_bytes::<u32>(bytes).map_err(|e| format!("undecodable request: {e}"))?;
    let endpoint = Endpoint::from_u32(n).ok_or_else(|| format!("unknown endpoint {n}"))?;
    Ok((endpoint, rest))
}

/// Decodes a message and its metadata from the bytes after the endpoint; metadata that
/// cannot be decoded is ignored, since it never changes what the request does.
pub fn decode_message<M: Message>(bytes: &[u8]) -> Result<(M, RequestMeta), postcard::Error> {
    let (req, rest) = postcard::take_from_bytes::<M>(bytes)?;
    let meta = if rest.is_empty() {
        RequestMeta::default()
    } else {
        postcard::from_bytes(rest).unwrap_or_default()
    };
    Ok((req, meta))
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    #[error("{0}")]
    Net(#[from] NetError),
    #[error("no address known for node {0}")]
    UnknownPeer(NodeId),
    #[error("peer answered with an error: {0}")]
    Remote(String),
    #[error("malformed message: {0}")]
    Codec(String),
    #[error("unexpected answer to {0}")]
    Unexpected(&'static str),
}

impl RpcError {
    /// True when the request certainly did not take effect on the peer.
    pub fn never_delivered(&self) -> bool {
        match self {
            RpcError::Net(e) => e.never_delivered(),
            RpcError::UnknownPeer(_) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Probe {
        Ping { ring_version: u64 },
    }

    impl Message for Probe {
        const ENDPOINT: Endpoint = Endpoint::Handoff;
        type Reply = u64;
        fn label(&self) -> &'static str {
            "probe"
        }
    }

    fn ping() -> Probe {
        Probe::Ping { ring_version: 7 }
    }

    #[test]
    fn endpoint_numbers_are_distinct_and_round_trip() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_u32(e as u32), Some(e));
        }
        assert_eq!(Endpoint::from_u32(99), None);
    }

    #[test]
    fn request_id_travels_after_the_request() {
        let meta = RequestMeta {
            request_id: Some("req-42".into()),
        };
        let bytes = encode_request(&ping(), &meta).unwrap();
        let (endpoint, rest) = decode_endpoint(&bytes).unwrap();
        assert_eq!(endpoint, Endpoint::Handoff);
        let (req, back) = decode_message::<Probe>(rest).unwrap();
        assert_eq!(req, ping());
        assert_eq!(back, meta);
        // A receiver that only knows the request still decodes it.
        let plain: Probe = postcard::take_from_bytes(rest).unwrap().0;
        assert_eq!(plain, ping());
    }

    #[test]
    fn requests_without_metadata_carry_no_trailer() {
        let bytes = encode_request(&ping(), &RequestMeta::default()).unwrap();
        let (_, rest) = decode_endpoint(&bytes).unwrap();
        assert_eq!(rest, postcard::to_stdvec(&ping()).unwrap());
        assert_eq!(
            decode_message::<Probe>(rest).unwrap().1,
            RequestMeta::default()
        );
        // Garbage after the request is ignored, not fatal.
        let mut junk = rest.to_vec();
        junk.extend([0xff, 0xff, 0xff]);
        assert_eq!(
            decode_message::<Probe>(&junk).unwrap().1,
            RequestMeta::default()
        );
    }

    #[test]
    fn unknown_endpoints_and_garbage_are_errors() {
        assert!(decode_endpoint(&[]).is_err());
        let bytes = postcard::to_stdvec(&77u32).unwrap();
        assert!(
            decode_endpoint(&bytes)
                .unwrap_err()
                .contains("unknown endpoint 77")
        );
    }
}
