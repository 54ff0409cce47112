//! Versions of a key: dotted version vectors (DVVSet style), siblings, merge and LWW.
//!
//! Every write is coordinated by a replica of its key, which names the write with a *dot*
//! `(its write identity, next counter)`; a write identity is the node id plus an epoch that
//! changes whenever the node may have forgotten writes of the key ([`identity`]). An [`Object`] holds the surviving versions beside a clock with
//! one entry per coordinating replica, so:
//! - concurrent writes become siblings and none is lost;
//! - a client that reads and then writes with the read's context supersedes exactly what it
//!   read, so read-modify-write cycles never pile up false siblings;
//! - replicas' copies merge with [`Object::sync`], which is commutative, associative and
//!   idempotent, so anti-entropy, read repair and handoff may apply it in any order.
//!
//! Clients carry the context as an authenticated opaque token bound to its bucket and key
//! ([`encode_context`]).

mod context;
mod custody;
pub mod identity;
mod lww;
mod object;
mod sibling;
mod vv;

#[cfg(test)]
mod proptests;

#[cfg(any(test, feature = "testkit"))]
pub use context::legacy_v1_token;
#[cfg(fuzzing)]
pub use context::seal_for_fuzzing;
pub use context::{
    CONTEXT_TOKEN_VERSION, ContextError, ContextKey, MAX_TOKEN_CHARS, TYPE_CONTEXT_TOKEN_VERSION,
    decode_context, decode_type_context, encode_context, encode_type_context,
};
pub use identity::{Custody, StoredCopy, Writer};
pub use object::{
    ConflictMode, DEFAULT_MAX_OBJECT_BYTES, Limits, MAX_COUNTER, OBJECT_ENCODING_VERSION, Object,
    VersionError,
};
pub use sibling::{DEFAULT_CONTENT_TYPE, Sibling};
pub use vv::{Actor, Dot, VersionVector, etag};
