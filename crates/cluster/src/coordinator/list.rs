//! Key listing: every partition is read from one reachable replica (this node when it is one),
//! one request per chosen node; the sorted answers are merged and cut to the page size.
//! A replica that fails is replaced by another replica of its partitions, so one down node
//! does not hide keys.
//!
//! Keys written only to fallbacks (as hints, while every primary of their partition was
//! down) appear once the hints are delivered.

use super::error::KvError;
use super::placement::check_bucket;
use crate::node::Node;
use crate::replica::rpc::{ReplicaRequest, ReplicaResponse};
use crate::replica::{blocking, live_keys};
use riftkv_core::types::{NodeId, PartitionId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::task::JoinSet;

/// Largest page a listing returns.
pub const MAX_LIST_LIMIT: usize = 10_000;

/// One listing page: keys in byte order, and the key to pass as `after` for the next page
/// (None when this is the last page).
pub type KeyPage = (Vec<Vec<u8>>, Option<Vec<u8>>);

/// Chooses one usable replica per partition, preferring `me`. Returns the partitions per
/// chosen node, or the partitions no usable replica covers.
pub fn assign_partitions(
    prefs: &[(PartitionId, Vec<NodeId>)],
    usable: impl Fn(&NodeId) -> bool,
    me: &NodeId,
) -> Result<BTreeMap<NodeId, Vec<PartitionId>>, Vec<PartitionId>> {
    let mut out: BTreeMap<NodeId, Vec<PartitionId>> = BTreeMap::new();
    let mut uncovered = Vec::new();
    for (p, replicas) in prefs {
        let chosen = if replicas.contains(me) && usable(me) {
            Some(me)
        } else {
            replicas.iter().find(|r| usable(r))
        };
        match chosen {
            Some(n) => out.entry(n.clone()).or_default().push(*p),
            None => uncovered.push(*p),
        }
    }
    if uncovered.is_empty() {
        Ok(out)
    } else {
        Err(uncovered)
    }
}

/// Merges sorted pages (each with a "more remain" flag) into one page of at most `limit`.
pub fn merge_pages(pages: Vec<(Vec<Vec<u8>>, bool)>, limit: usize) -> KeyPage {
    let any_more = pages.iter().any(|(_, more)| *more);
    let mut all: Vec<Vec<u8>> = pages.into_iter().flat_map(|(k, _)| k).collect();
    all.sort_unstable();
    all.dedup();
    let more = any_more || all.len() > limit;
    all.truncate(limit);
    let next = if more { all.last().cloned() } else { None };
    (all, next)
}

/// Lists live keys of `bucket` strictly after `after`, at most `limit` (1..=10000).
pub async fn list_keys(
    node: &Arc<Node>,
    bucket: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<KeyPage, KvError> {
    check_bucket(bucket)?;
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(KvError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIST_LIMIT}"
        )));
    }
    let (n, mut todo) = {
        let s = node.state.read();
        let n = s.bucket_props(bucket).n as usize;
        let prefs: Vec<(PartitionId, Vec<NodeId>)> = (0..s.ring_size())
            .map(|p| (p, s.ring.preference_list(p, n).to_vec()))
            .collect();
        (n, prefs)
    };
    let timeout = node.settings.request_timeout;
    let mut failed: BTreeSet<NodeId> = BTreeSet::new();
    let mut errors: Vec<(NodeId, String)> = Vec::new();
    let mut pages = Vec::new();
    // Each round drops at least one node (the failed ones), so n + 1 rounds cover every
    // replica of every partition.
    for _ in 0..=n {
        if todo.is_empty() {
            break;
        }
        let assignment = assign_partitions(
            &todo,
            |id| !failed.contains(id) && node.is_reachable(id),
            &node.id,
        )
        .map_err(|_| KvError::Quorum {
            needed: 1,
            got: 0,
            which: "r",
            errors: errors.clone(),
        })?;
        let mut tasks = JoinSet::new();
        for (target, partitions) in assignment {
            let (node, bucket, after) = (node.clone(), bucket.to_vec(), after.map(<[u8]>::to_vec));
            tasks.spawn(crate::trace::traced(async move {
                let r = if target == node.id {
                    let (n, parts) = (node.clone(), partitions.clone());
                    blocking(move || live_keys(&n, &parts, &bucket, after.as_deref(), limit))
                        .await
                        .map_err(|e| e.to_string())
                } else {
                    let req = ReplicaRequest::ListKeys {
                        partitions: partitions.clone(),
                        bucket,
                        after,
                        limit: u32::try_from(limit).unwrap_or(u32::MAX),
                    };
                    match crate::replica::rpc::call(&node, &target, req, timeout).await {
                        Ok(ReplicaResponse::Keys { keys, more }) => Ok((keys, more)),
                        Ok(_) => Err("unexpected answer to a key listing".to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                };
                (target, partitions, r)
            }));
        }
        let mut retry: BTreeSet<PartitionId> = BTreeSet::new();
        while let Some(done) = tasks.join_next().await {
            let (target, partitions, r) =
                done.map_err(|e| KvError::Internal(format!("listing task failed: {e}")))?;
            match r {
                Ok(page) => pages.push(page),
                Err(e) => {
                    errors.push((target.clone(), e));
                    failed.insert(target);
                    retry.extend(partitions);
                }
            }
        }
        todo.retain(|(p, _)| retry.contains(p));
    }
    if !todo.is_empty() {
        return Err(KvError::Quorum {
            needed: 1,
            got: 0,
            which: "r",
            errors,
        });
    }
    Ok(merge_pages(pages, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::from(s)
    }

    fn k(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn assignment_prefers_self_then_first_usable() {
        let prefs = vec![
            (0, vec![id("a"), id("b"), id("c")]),
            (1, vec![id("b"), id("c"), id("d")]),
            (2, vec![id("c"), id("d"), id("a")]),
        ];
        let a = assign_partitions(&prefs, |n| n != &id("b"), &id("a")).unwrap();
        assert_eq!(a.get(&id("a")), Some(&vec![0, 2]));
        assert_eq!(a.get(&id("c")), Some(&vec![1]));
        assert!(!a.contains_key(&id("b")));
        let e = assign_partitions(&prefs, |n| n == &id("a"), &id("a")).unwrap_err();
        assert_eq!(e, vec![1]);
    }

    #[test]
    fn merge_sorts_dedupes_and_pages() {
        let pages = vec![
            (vec![k("a"), k("c"), k("e")], false),
            (vec![k("b"), k("c"), k("d")], false),
        ];
        let (keys, next) = merge_pages(pages.clone(), 10);
        assert_eq!(keys, vec![k("a"), k("b"), k("c"), k("d"), k("e")]);
        assert_eq!(next, None);
        let (keys, next) = merge_pages(pages, 3);
        assert_eq!(keys, vec![k("a"), k("b"), k("c")]);
        assert_eq!(next, Some(k("c")));
    }

    #[test]
    fn a_truncated_replica_means_more_remain() {
        let (keys, next) = merge_pages(vec![(vec![k("a"), k("b")], true)], 2);
        assert_eq!(keys.len(), 2);
        assert_eq!(next, Some(k("b")));
    }
}
