//! The RiftKV server process: the REST API ([`api`]), configuration from flags, environment
//! and TOML ([`config`]), and the assembly of one node from storage, transport, ring state
//! and its background duties ([`server`]).

pub mod api;
pub mod backup;
pub mod config;
pub mod http;
#[cfg(feature = "rocksdb")]
pub mod server;
