//! The replica side: what a node does with its own copies, whoever asked. It serves replica
//! reads and writes for coordinators, stores hints as a fallback, answers key listings, and
//! deletes reaped tombstones. Every write of a copy goes through [`store`], the one local
//! write path, under the key's lock from [`locks`].
//!
//! Nothing here coordinates: the coordinator, handoff, anti-entropy and the reaper call in.

pub mod copy;
pub mod error;
pub mod locks;
pub mod reap;
pub mod rpc;
pub mod store;

pub use copy::{
    blocking, coordinate_update, coordinate_write, live_keys, read_copy, store_copy,
    store_copy_deferred, try_coordinate_write, try_store_copy_deferred,
};
pub use error::{ReplicaError, UpdateError};
pub use rpc::{ReplicaRequest, ReplicaResponse};
pub use store::Written;
