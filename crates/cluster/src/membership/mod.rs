//! Cluster membership: the replicated ring state, its gossip, joins, leaves and removals, and
//! local failure detection (which only decides routing, never membership).

pub mod admin;
pub mod catch_up;
pub mod going_down;
pub mod gossip;
pub mod plan;
pub mod rpc;

#[cfg(test)]
mod cluster_tests;

use crate::node::Node;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Starts the membership duties of a node (heartbeats; join, gossip, claimant, leave) and the
/// ownership handoff that moves partitions when the ring changes. Every task stops on the
/// node's shutdown token; `node.left` turns true once the node has left the cluster.
pub fn start_background(node: Arc<Node>) -> Vec<JoinHandle<()>> {
    let mut duties = vec![
        gossip::spawn_heartbeats(node.clone()),
        gossip::spawn(node.clone()),
    ];
    duties.extend(catch_up::spawn(node.clone()));
    duties.push(crate::handoff::ownership::spawn(node));
    duties
}
