//! Errors of key-value coordination. The API layer maps them to HTTP; nothing here knows
//! about status codes.

use riftkv_core::types::NodeId;
use riftkv_core::version::VersionError;
use riftkv_crdt::{CrdtError, ErrorKind};
use serde::{Deserialize, Serialize};

/// Why a get, put, delete or listing did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// A malformed or out-of-range request parameter.
    #[error("{0}")]
    BadRequest(String),
    /// `If-None-Match: *` and a live value is visible at the read quorum.
    #[error("a live value already exists for this key")]
    PreconditionFailed,
    #[error("value of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("the write would leave {count} siblings, over the limit of {limit}")]
    TooManySiblings { count: usize, limit: usize },
    /// All versions of the key together would exceed the object limit.
    #[error(
        "the write would leave {size} bytes of versions, over the object limit of {limit} bytes"
    )]
    ObjectTooLarge { size: usize, limit: usize },
    /// Not enough replicas answered (`which` names the unmet requirement: r, pr, w, dw, pw).
    /// `got` is the most answers that could still be counted when the request gave up.
    #[error("{which}={needed} cannot be met: only {got} replicas could answer")]
    Quorum {
        needed: u32,
        got: u32,
        which: &'static str,
        errors: Vec<(NodeId, String)>,
    },
    /// The request timeout passed before the quorum answered.
    #[error("the request timed out before enough replicas answered")]
    Timeout,
    #[error("internal error: {0}")]
    Internal(String),
    /// A data type operation was refused or a stored data type value could not be read;
    /// `kind` says which (the API maps it to a status).
    #[error("{message}")]
    DataType { kind: ErrorKind, message: String },
}

impl From<CrdtError> for KvError {
    fn from(e: CrdtError) -> Self {
        KvError::DataType {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl From<crate::replica::UpdateError> for KvError {
    fn from(e: crate::replica::UpdateError) -> Self {
        match e {
            crate::replica::UpdateError::Replica(r) => r.into(),
            crate::replica::UpdateError::DataType(c) => c.into(),
        }
    }
}

impl KvError {
    /// Short label of the failure kind (for logs and metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            KvError::BadRequest(_) => "bad_request",
            KvError::PreconditionFailed => "precondition_failed",
            KvError::TooLarge { .. } => "too_large",
            KvError::TooManySiblings { .. } => "too_many_siblings",
            KvError::ObjectTooLarge { .. } => "too_large",
            KvError::Quorum { .. } => "quorum_unavailable",
            KvError::Timeout => "timeout",
            KvError::Internal(_) => "internal",
            KvError::DataType { kind, .. } => match kind {
                ErrorKind::BadRequest => "bad_request",
                ErrorKind::TooLarge => "too_large",
                ErrorKind::Corrupt => "internal",
            },
        }
    }
}

impl From<VersionError> for KvError {
    fn from(e: VersionError) -> Self {
        match e {
            VersionError::ValueTooLarge { size, limit } => KvError::TooLarge { size, limit },
            VersionError::TooManySiblings { count, limit } => {
                KvError::TooManySiblings { count, limit }
            }
            VersionError::ObjectTooLarge { size, limit } => KvError::ObjectTooLarge { size, limit },
            VersionError::Decode(m) => KvError::Internal(format!("stored object: {m}")),
        }
    }
}

impl From<crate::replica::ReplicaError> for KvError {
    fn from(e: crate::replica::ReplicaError) -> Self {
        use crate::replica::ReplicaError as R;
        match e {
            R::BadRequest(m) => KvError::BadRequest(m),
            R::TooLarge { size, limit } => KvError::TooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            },
            R::TooManySiblings { count, limit } => KvError::TooManySiblings {
                count: usize::try_from(count).unwrap_or(usize::MAX),
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            },
            R::ObjectTooLarge { size, limit } => KvError::ObjectTooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            },
            R::Internal(m) => KvError::Internal(m),
        }
    }
}

impl From<crate::replica::store::StoreError> for KvError {
    fn from(e: crate::replica::store::StoreError) -> Self {
        KvError::Internal(e.to_string())
    }
}

/// The quorum requirement names a [`KvError::Quorum`] can carry, as static strings.
fn static_which(s: &str) -> &'static str {
    match s {
        "r" => "r",
        "pr" => "pr",
        "w" => "w",
        "dw" => "dw",
        "pw" => "pw",
        _ => "quorum",
    }
}

/// [`KvError`] as it travels between nodes (a forwarded put answers with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireKvError {
    BadRequest(String),
    PreconditionFailed,
    TooLarge {
        size: u64,
        limit: u64,
    },
    TooManySiblings {
        count: u64,
        limit: u64,
    },
    Quorum {
        needed: u32,
        got: u32,
        which: String,
        errors: Vec<(NodeId, String)>,
    },
    Timeout,
    Internal(String),
    DataType {
        kind: ErrorKind,
        message: String,
    },
    /// The receiver is not a replica of the key in its view of the ring; try another node.
    NotReplica,
    /// Appended last, so every earlier variant keeps its encoding.
    ObjectTooLarge {
        size: u64,
        limit: u64,
    },
}

impl From<&KvError> for WireKvError {
    fn from(e: &KvError) -> Self {
        match e.clone() {
            KvError::BadRequest(m) => WireKvError::BadRequest(m),
            KvError::PreconditionFailed => WireKvError::PreconditionFailed,
            KvError::TooLarge { size, limit } => WireKvError::TooLarge {
                size: size as u64,
                limit: limit as u64,
            },
            KvError::TooManySiblings { count, limit } => WireKvError::TooManySiblings {
                count: count as u64,
                limit: limit as u64,
            },
            KvError::ObjectTooLarge { size, limit } => WireKvError::ObjectTooLarge {
                size: size as u64,
                limit: limit as u64,
            },
            KvError::Quorum {
                needed,
                got,
                which,
                errors,
            } => WireKvError::Quorum {
                needed,
                got,
                which: which.to_string(),
                errors,
            },
            KvError::Timeout => WireKvError::Timeout,
            KvError::Internal(m) => WireKvError::Internal(m),
            KvError::DataType { kind, message } => WireKvError::DataType { kind, message },
        }
    }
}

impl From<WireKvError> for KvError {
    fn from(e: WireKvError) -> Self {
        let clamp = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        match e {
            WireKvError::BadRequest(m) => KvError::BadRequest(m),
            WireKvError::PreconditionFailed => KvError::PreconditionFailed,
            WireKvError::TooLarge { size, limit } => KvError::TooLarge {
                size: clamp(size),
                limit: clamp(limit),
            },
            WireKvError::TooManySiblings { count, limit } => KvError::TooManySiblings {
                count: clamp(count),
                limit: clamp(limit),
            },
            WireKvError::ObjectTooLarge { size, limit } => KvError::ObjectTooLarge {
                size: clamp(size),
                limit: clamp(limit),
            },
            WireKvError::Quorum {
                needed,
                got,
                which,
                errors,
            } => KvError::Quorum {
                needed,
                got,
                which: static_which(&which),
                errors,
            },
            WireKvError::Timeout => KvError::Timeout,
            WireKvError::Internal(m) => KvError::Internal(m),
            WireKvError::DataType { kind, message } => KvError::DataType { kind, message },
            WireKvError::NotReplica => {
                KvError::Internal("the forwarded coordinator is not a replica".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip_keeps_every_field() {
        let all = vec![
            KvError::BadRequest("x".into()),
            KvError::PreconditionFailed,
            KvError::TooLarge { size: 9, limit: 8 },
            KvError::TooManySiblings {
                count: 101,
                limit: 100,
            },
            KvError::ObjectTooLarge {
                size: 17 << 20,
                limit: 16 << 20,
            },
            KvError::Quorum {
                needed: 2,
                got: 1,
                which: "pw",
                errors: vec![(NodeId::from("b"), "down".into())],
            },
            KvError::Timeout,
            KvError::Internal("z".into()),
            KvError::DataType {
                kind: ErrorKind::TooLarge,
                message: "m".into(),
            },
        ];
        for e in all {
            let wire = WireKvError::from(&e);
            let bytes = postcard::to_stdvec(&wire).unwrap();
            let back: WireKvError = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(KvError::from(back), e);
        }
    }

    #[test]
    fn version_errors_map_to_limits() {
        assert_eq!(
            KvError::from(VersionError::ValueTooLarge { size: 10, limit: 5 }),
            KvError::TooLarge { size: 10, limit: 5 }
        );
        assert_eq!(
            KvError::from(VersionError::TooManySiblings { count: 3, limit: 2 }),
            KvError::TooManySiblings { count: 3, limit: 2 }
        );
    }
}
