//! Why a replica could not serve a request: typed, and carried typed on the wire.

use crate::replica::store::StoreError;
use riftkv_core::version::VersionError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ReplicaError {
    /// The request itself is malformed (an undecodable object, say).
    #[error("{0}")]
    BadRequest(String),
    #[error("value of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("the write would leave {count} siblings, over the limit of {limit}")]
    TooManySiblings { count: u64, limit: u64 },
    /// Storage failed or holds something it cannot read.
    #[error("{0}")]
    Internal(String),
    /// All versions of the key together would exceed the object limit. Appended last, so
    /// every earlier variant keeps its encoding.
    #[error(
        "the write would leave {size} bytes of versions, over the object limit of {limit} bytes"
    )]
    ObjectTooLarge { size: u64, limit: u64 },
}

impl From<VersionError> for ReplicaError {
    fn from(e: VersionError) -> Self {
        match e {
            VersionError::ValueTooLarge { size, limit } => ReplicaError::TooLarge {
                size: size as u64,
                limit: limit as u64,
            },
            VersionError::TooManySiblings { count, limit } => ReplicaError::TooManySiblings {
                count: count as u64,
                limit: limit as u64,
            },
            VersionError::ObjectTooLarge { size, limit } => ReplicaError::ObjectTooLarge {
                size: size as u64,
                limit: limit as u64,
            },
            VersionError::Decode(m) => ReplicaError::Internal(format!("stored object: {m}")),
        }
    }
}

impl From<StoreError> for ReplicaError {
    fn from(e: StoreError) -> Self {
        ReplicaError::Internal(e.to_string())
    }
}

/// Why a data type update could not be applied to this node's copy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The operation was refused, or the stored value is not a readable data type state.
    #[error(transparent)]
    DataType(#[from] riftkv_crdt::CrdtError),
}

impl From<StoreError> for UpdateError {
    fn from(e: StoreError) -> Self {
        UpdateError::Replica(e.into())
    }
}

impl From<VersionError> for UpdateError {
    fn from(e: VersionError) -> Self {
        UpdateError::Replica(e.into())
    }
}
