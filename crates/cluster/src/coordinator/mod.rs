//! Key-value request coordination: which nodes serve a key, the quorum cores for get, put
//! and delete (plain data and functions), their async drivers, and read repair.
//!
//! - pure: [`tracker`] (the one quorum tracker), [`quorum`] (parameters, fail-fast checks),
//!   [`get_core`], [`put_core`],
//!   [`list::merge_pages`] / [`list::assign_partitions`], [`crate::preflist::serving_set`];
//! - drivers: [`get()`], [`put()`], [`delete()`], [`list_keys`], [`read_repair`], and the
//!   data type [`update()`] and [`update::read`];
//! - forwarding a write to a replica of its key: [`put::CoordinateRequest`].
//!
//! The replicas' side of every request lives in `crate::replica`.

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod datatype_tests;
pub mod delete;
#[cfg(test)]
mod durability_tests;
pub mod error;
pub mod get;
pub mod get_core;
#[cfg(test)]
mod identity_tests;
pub mod list;
pub mod placement;
pub mod put;
pub mod put_core;
pub mod quorum;
pub mod read_repair;
pub mod tracker;
pub mod update;

pub use delete::{DeleteRequest, delete};
pub use error::{KvError, WireKvError};
pub use get::{GetOutcome, GetRequest, get};
pub use get_core::{GetCore, GetStatus, RepairTarget};
pub use list::{KeyPage, MAX_LIST_LIMIT, list_keys};
pub use put::{PutOutcome, PutRequest, put};
pub use put_core::{PutCore, PutStatus};
pub use quorum::{ConsistencyParams, QuorumError, ReadQuorum, WriteQuorum};
pub use update::{UpdateRequest, update};
