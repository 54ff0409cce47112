//! The one error type, classified so the server can answer 400, 413 or treat a record as damaged.

use thiserror::Error;

/// How the server should answer an error (carried between nodes, hence serde).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    /// The request is malformed or not allowed (HTTP 400).
    BadRequest,
    /// The operation would make the value exceed a [`crate::Limits`] bound (HTTP 413).
    TooLarge,
    /// Stored bytes could not be decoded: damaged or not ours.
    Corrupt,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CrdtError {
    /// A remove came without the context of a read.
    #[error(
        "{0} needs the context of a read: a remove only removes what its reader saw, so send the context returned by a GET of this key"
    )]
    ContextRequired(&'static str),
    /// The JSON operation does not have the contract's shape.
    #[error("invalid {0}")]
    BadOperation(String),
    /// An operation or state of one data type was used with another.
    #[error("type mismatch: the value is a {actual}, the operation is for a {expected}")]
    TypeMismatch {
        expected: &'static str,
        actual: &'static str,
    },
    /// A counter total (or an internal counter) would leave its range.
    #[error("{0} would overflow")]
    Overflow(&'static str),
    /// A [`crate::Limits`] bound would be exceeded.
    #[error("too large: {what} would be {size}, the limit is {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// Bytes given to `decode` are damaged, truncated or of an unknown format.
    #[error("cannot decode data type value: {0}")]
    Decode(String),
}

impl CrdtError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CrdtError::TooLarge { .. } => ErrorKind::TooLarge,
            CrdtError::Decode(_) => ErrorKind::Corrupt,
            CrdtError::ContextRequired(_)
            | CrdtError::BadOperation(_)
            | CrdtError::TypeMismatch { .. }
            | CrdtError::Overflow(_) => ErrorKind::BadRequest,
        }
    }

    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        CrdtError::BadOperation(msg.into())
    }
}
