//! Moving data between nodes: hinted handoff (a fallback returns writes to their owner) and
//! ownership handoff (partitions streamed to their new replicas when the ring changes).

pub mod hints;
pub mod ownership;
pub mod rpc;
