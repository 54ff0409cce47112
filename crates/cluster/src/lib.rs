//! A RiftKV cluster node, layered bottom to top (each module imports only those above it in
//! this list, and `riftkv-core`):
//!
//! - [`metrics`], [`trace`] (request ids), [`rpc`] (the message envelope), [`preflist`]
//!   (who serves a key, in which role), [`worker`] (the one model of background duties);
//! - [`node`]: the shared handle of one node (settings, storage, transport, ring state,
//!   failure detector, clock, incarnation) and its outgoing calls;
//! - [`replica`]: what a node does with its own copies, and the one local write path;
//! - [`handoff`] (hints and ownership transfers), [`aae`] (anti-entropy), [`membership`]
//!   (gossip, joins, leaves, removals);
//! - [`coordinator`]: get, put, delete and listing over the replicas;
//! - [`reaper`]: tombstone reaping across the replicas;
//! - [`dispatch`]: incoming peer requests routed to the subsystem that owns them.

pub mod aae;
pub mod coordinator;
pub mod dispatch;
pub mod handoff;
pub mod hedge;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod preflist;
pub mod reaper;
pub mod replica;
pub mod rpc;
#[cfg(test)]
mod sim;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod trace;
pub mod worker;
