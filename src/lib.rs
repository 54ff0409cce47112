//! RiftKV: a Dynamo-style, sloppy-quorum key-value database.
//!
//! The generic cluster layer (`ring`, `membership`, `net`, `handoff`) is kept apart from
//! key-value semantics (`version`, `coordinator`, `api`); `storage` knows nothing of either.

pub mod aae;
pub mod api;
pub mod bucket;
pub mod cli;
pub mod config;
pub mod coordinator;
pub mod fault;
pub mod handoff;
pub mod membership;
pub mod metrics;
pub mod net;
pub mod node;
pub mod ring;
#[cfg(test)]
mod sim;
pub mod storage;
pub mod testkit;
pub use riftkv_types as types;
pub mod version;
