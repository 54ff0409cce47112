//! Read repair: after a read, every replica that answered with a stale or missing copy
//! receives the merged object. Merging is idempotent, so sending the whole merged object gives
//! each replica exactly the versions it lacks; a fallback receives it as a hint for its
//! primary.

use super::get_core::GetCore;
use super::placement::Placement;
use crate::node::Node;
use crate::replica::rpc::{ReplicaRequest, ReplicaResponse};
use crate::replica::{blocking, store_copy};
use riftkv_core::storage::ObjectKey;
use std::sync::Arc;
use tokio::task::JoinSet;

/// Sends the merged object of `core` to every replica that needs it and waits for them
/// (bounded by the node's RPC timeout). Counts each replica repaired.
pub async fn repair(node: &Arc<Node>, pl: &Placement, k: &ObjectKey, core: &GetCore) {
    let targets = core.repairs();
    if targets.is_empty() {
        return;
    }
    let Some(merged) = core.merged() else { return };
    let mode = pl.props.conflict;
    let bytes = merged.encode();
    let mut tasks = JoinSet::new();
    for t in targets {
        let (node, k) = (node.clone(), k.clone());
        if t.node == node.id {
            let merged = merged.clone();
            tasks.spawn(async move {
                let n = node.clone();
                let r = blocking(move || {
                    store_copy(&n, &k, &merged, mode, false, &t.role).map_err(super::KvError::from)
                })
                .await;
                (node, t.node, r.map(|_| ()).map_err(|e| e.to_string()))
            });
        } else {
            let req = ReplicaRequest::ReplicaPut {
                partition: k.partition,
                bucket: k.bucket,
                key: k.key,
                object: bytes.clone(),
                sync: false,
                hinted_for: t.role.hinted_for().cloned(),
            };
            tasks.spawn(crate::trace::traced(async move {
                let timeout = node.settings.rpc_timeout;
                let r = match crate::replica::rpc::call(&node, &t.node, req, timeout).await {
                    Ok(ReplicaResponse::Stored { .. }) => Ok(()),
                    Ok(_) => Err("unexpected answer to a repair".to_string()),
                    Err(e) => Err(e.to_string()),
                };
                (node, t.node, r)
            }));
        }
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((node, _, Ok(()))) => node.metrics.read_repairs_total.inc(),
            Ok((_, target, Err(e))) => {
                tracing::debug!(%target, error = %e, "read repair failed; anti-entropy will retry")
            }
            Err(e) => tracing::warn!(error = %e, "read repair task failed"),
        }
    }
}
