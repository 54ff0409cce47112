//! What the cluster knows about itself: the replicated ring state (members, statuses,
//! partition owners, bucket props, transfers), merged deterministically, and the local
//! failure detector, which only decides routing. Gossip and membership changes drive these
//! from the cluster crate.

pub mod detector;
pub mod state;
