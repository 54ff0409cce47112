//! RiftKV's core: plain data and the pure decisions over it, with no knowledge of how a node
//! is assembled.
//!
//! - [`version`]: dotted version vectors, objects with siblings, write identities, contexts;
//! - [`ring`]: hashing, partitions, claim and preference lists;
//! - [`membership`]: the replicated cluster state and the failure detector (how it spreads is
//!   the cluster crate's business);
//! - [`storage`]: the storage seam, RocksDB and in-memory backends, on-disk formats;
//! - [`net`]: the peer transport seam, TCP and an in-process network with fault filters;
//! - [`datatype`]: data type states (counters, sets, maps) stored as object siblings;
//! - [`security`]: users, bearer tokens, groups and grants, and the rules over them;
//! - [`merkle`]: anti-entropy trees; [`bucket`]: bucket properties; [`fault`]: planted bugs
//!   for tests; [`bytes_field`]: bytes as one serde byte string.

pub use riftkv_types as types;

pub mod bucket;
pub mod bytes_field;
pub mod datatype;
pub mod fault;
pub mod json_field;
pub mod membership;
pub mod merkle;
pub mod net;
pub mod ring;
pub mod security;
pub mod storage;
pub mod version;
