//! In-process cluster tests of anti-entropy. Hinted handoff is off and nothing reads, so
//! neither hints nor read repair can be what brings replicas back together.

use super::*;
use crate::coordinator::{ConsistencyParams, PutRequest, put};
use crate::testkit::{ClusterOptions, TestCluster, id_of};
use bytes::Bytes;
use riftkv_core::bucket::BucketProps;
use riftkv_core::storage::{Cf, Storage, keys};
use riftkv_core::version::{ConflictMode, Limits, Sibling, VersionVector};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(15);

/// Three nodes (n = 3, so each is a primary of every partition), hints off. `duty` also
/// starts the anti-entropy loop with a short interval.
async fn cluster(seed: u64, duty: bool) -> TestCluster {
    let mut opts = ClusterOptions {
        settings: Some(Arc::new(|s: &mut crate::node::NodeSettings| {
            s.hinted_handoff = false;
            s.aae_interval = Duration::from_millis(30);
        })),
        ..ClusterOptions::default()
    };
    if duty {
        opts.duties = Some(Arc::new(|node: Arc<Node>| {
            let mut v = crate::membership::start_background(node.clone());
            v.push(spawn(node));
            v
        }));
    }
    let c = TestCluster::start_with(3, seed, opts);
    if let Err(e) = c.wait_settled(SETTLE).await {
        panic!("{e}");
    }
    c
}

fn put_req(bucket: &str, key: &str, value: &str, w: Option<&str>) -> PutRequest {
    PutRequest {
        bucket: bucket.as_bytes().to_vec(),
        key: key.as_bytes().to_vec(),
        value: Bytes::from(value.as_bytes().to_vec()),
        content_type: "text/plain".into(),
        context: None,
        if_none_match: false,
        params: ConsistencyParams {
            w: w.map(|w| w.parse().unwrap()),
            ..ConsistencyParams::default()
        },
        timeout: None,
        ttl: None,
    }
}

fn key_of(c: &TestCluster, bucket: &str, key: &str) -> ObjectKey {
    let p = riftkv_core::ring::partition_for(
        bucket.as_bytes(),
        key.as_bytes(),
        c.node(1).state.read().ring_size(),
    );
    ObjectKey::new(p, bucket.as_bytes().to_vec(), key.as_bytes().to_vec())
}

/// Live values of node `i`'s copy, sorted; empty when missing or unreadable.
fn values(c: &TestCluster, i: usize, k: &ObjectKey) -> Vec<String> {
    match c.node(i).local_object(k) {
        Ok(Some(o)) => crate::testkit::live_values(&o),
        _ => Vec::new(),
    }
}

fn repaired(c: &TestCluster) -> u64 {
    (1..=3)
        .map(|i| c.node(i).metrics.aae_keys_repaired_total.get())
        .sum()
}

fn exchanges(c: &TestCluster) -> u64 {
    (1..=3)
        .map(|i| c.node(i).metrics.aae_exchanges_total.get())
        .sum()
}

async fn wait_reachable(c: &TestCluster, up: bool) {
    let r = c
        .wait_for(WAIT, "reachability to change", |c| {
            (1..=3).all(|i| {
                (1..=3)
                    .filter(|j| *j != i && (up || i == 1 || i == 2))
                    .filter(|j| up || *j == 3)
                    .all(|j| c.node(i).is_reachable(&id_of(j)) == up)
            })
        })
        .await;
    if let Err(e) = r {
        panic!("{e}\n{}", c.describe());
    }
}

/// Writes `count` keys through node 1 and waits until every node in `on` holds them.
async fn write_keys(c: &TestCluster, prefix: &str, count: usize, w: &str, on: &[usize]) {
    let mut keys = Vec::new();
    for i in 0..count {
        let key = format!("{prefix}-{i:03}");
        let value = format!("v-{key}");
        put(&c.node(1), put_req("b", &key, &value, Some(w)))
            .await
            .unwrap_or_else(|e| panic!("write of {key} failed: {e}"));
        keys.push((key_of(c, "b", &key), value));
    }
    c.wait_for(WAIT, "the writes to land", |c| {
        on.iter().all(|i| {
            keys.iter()
                .all(|(k, v)| values(c, *i, k) == vec![v.clone()])
        })
    })
    .await
    .unwrap();
}

/// Stores a first version of `k`, written by `writer`, on one node only (as its primary copy).
fn store_new(node: Arc<Node>, k: &ObjectKey, writer: NodeId, value: &[u8]) {
    let obj = Object::update(
        None,
        &VersionVector::new(),
        writer,
        Sibling::new(value.to_vec(), "text/plain", 1),
        ConflictMode::Siblings,
        &Limits::default(),
    )
    .unwrap();
    store_copy(
        &node,
        k,
        &obj,
        ConflictMode::Siblings,
        false,
        &crate::preflist::Role::Primary,
    )
    .unwrap();
}

fn all_partitions(c: &TestCluster) -> Vec<PartitionId> {
    (0..c.node(1).state.read().ring_size()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_missed_writes_is_refilled() {
    let c = cluster(31, false).await;
    c.isolate(3);
    wait_reachable(&c, false).await;
    write_keys(&c, "missed", 50, "2", &[1, 2]).await;
    let keys: Vec<ObjectKey> = (0..50)
        .map(|i| key_of(&c, "b", &format!("missed-{i:03}")))
        .collect();
    assert!(
        keys.iter().all(|k| values(&c, 3, k).is_empty()),
        "n3 was cut off"
    );
    assert_eq!(c.storage(3).hint_counts().unwrap(), Vec::new());

    c.heal();
    wait_reachable(&c, true).await;
    // Drive the rotation by hand until node 3 holds everything; each node's 32 partitions
    // with 2 peers make a full pass in 64 exchanges.
    let mut rounds = 0;
    while !keys.iter().all(|k| !values(&c, 3, k).is_empty()) {
        rounds += 1;
        assert!(rounds <= 64, "n3 still misses keys after {rounds} rounds");
        for i in 1..=3 {
            exchange_once(&c.node(i)).await.unwrap();
        }
    }
    for (i, k) in keys.iter().enumerate() {
        let want = vec![format!("v-missed-{i:03}")];
        for node in 1..=3 {
            assert_eq!(values(&c, node, k), want, "n{node} {k:?}");
        }
    }
    // Each key was missing on one replica only, so it was repaired exactly once.
    assert_eq!(repaired(&c), 50);
    assert!(exchanges(&c) >= 3);

    // The replicas agree now: a full pass repairs nothing more.
    for p in all_partitions(&c) {
        for (a, b) in [(1, 2), (1, 3), (2, 3)] {
            let r = exchange(&c.node(a), p, &id_of(b)).await.unwrap();
            assert_eq!((r.segments_differing, r.keys_repaired), (0, 0), "{r:?}");
        }
    }
    assert_eq!(repaired(&c), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_missing_copies_are_refilled_from_a_peer() {
    let c = cluster(32, false).await;
    write_keys(&c, "k", 20, "3", &[1, 2, 3]).await;
    let damaged = key_of(&c, "b", "k-003");
    let missing = key_of(&c, "b", "k-011");
    let before_damaged = c.node(1).local_object(&damaged).unwrap();
    let before_missing = c.node(1).local_object(&missing).unwrap();

    // Flip a byte of node 2's record of one key and delete its copy of another.
    let s2 = c.storage(2);
    let raw_key = keys::encode_object(&damaged).unwrap();
    let mut raw = s2.raw_get_for_test(Cf::Objects, &raw_key).unwrap().unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 0x5a;
    s2.raw_put_for_test(Cf::Objects, &raw_key, &raw).unwrap();
    assert!(s2.get_object(&damaged).is_err());
    let mut batch = WriteBatch::default();
    batch.delete_object(missing.clone());
    s2.write(batch, false).unwrap();
    assert_eq!(s2.get_object(&missing).unwrap(), None);

    // Node 2 initiates for one key (it pulls), node 1 for the other (it pushes).
    let r = exchange(&c.node(2), damaged.partition, &id_of(1))
        .await
        .unwrap();
    assert!(r.segments_differing >= 1, "{r:?}");
    assert_eq!(
        r.keys_repaired,
        1 + u64::from(missing.partition == damaged.partition)
    );
    let r = exchange(&c.node(1), missing.partition, &id_of(2))
        .await
        .unwrap();
    assert!(r.keys_repaired <= 1, "{r:?}");

    assert_eq!(c.node(2).local_object(&damaged).unwrap(), before_damaged);
    assert_eq!(c.node(2).local_object(&missing).unwrap(), before_missing);
    assert_eq!(c.node(1).local_object(&damaged).unwrap(), before_damaged);
    assert_eq!(c.node(3).local_object(&missing).unwrap(), before_missing);
    assert_eq!(repaired(&c), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreeing_replicas_change_nothing() {
    let c = cluster(33, false).await;
    write_keys(&c, "same", 30, "3", &[1, 2, 3]).await;
    let before: Vec<Vec<(ObjectKey, Vec<u8>)>> = (1..=3)
        .map(|i| {
            all_partitions(&c)
                .into_iter()
                .flat_map(|p| c.storage(i).scan_partition(p, None, 10_000).unwrap())
                .collect()
        })
        .collect();
    for p in all_partitions(&c) {
        let r = exchange(&c.node(1), p, &id_of(2)).await.unwrap();
        assert_eq!(
            (r.segments_differing, r.keys_differing, r.keys_repaired),
            (0, 0, 0)
        );
    }
    for _ in 0..10 {
        for i in 1..=3 {
            let r = exchange_once(&c.node(i)).await.unwrap().expect("a target");
            assert_eq!(r.keys_repaired, 0);
        }
    }
    assert_eq!(repaired(&c), 0);
    assert_eq!(exchanges(&c), 32 + 30);
    for (i, want) in before.iter().enumerate() {
        let now: Vec<(ObjectKey, Vec<u8>)> = all_partitions(&c)
            .into_iter()
            .flat_map(|p| c.storage(i + 1).scan_partition(p, None, 10_000).unwrap())
            .collect();
        assert_eq!(&now, want, "n{} changed", i + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_buckets_the_peer_does_not_replicate_are_left_alone() {
    let c = cluster(34, false).await;
    // A bucket with n = 1 lives on the first primary only; every node learns its props.
    let props = BucketProps::with_n(1);
    for i in 1..=3 {
        c.node(i)
            .update_state(|s| {
                s.set_bucket_props(b"solo", props.clone(), &id_of(1));
                (true, ())
            })
            .await
            .unwrap();
    }
    let k = key_of(&c, "solo", "only-here");
    let owner = c.node(1).state.read().ring.preference_list(k.partition, 1)[0].clone();
    let owner_i: usize = owner.as_str().trim_start_matches('n').parse().unwrap();
    let other = (1..=3).find(|i| *i != owner_i).unwrap();
    store_new(c.node(owner_i), &k, owner.clone(), b"v");

    for (a, b) in [(owner_i, other), (other, owner_i)] {
        let r = exchange(&c.node(a), k.partition, &id_of(b)).await.unwrap();
        assert_eq!((r.keys_differing, r.keys_repaired), (0, 0), "{r:?}");
    }
    assert_eq!(c.node(other).local_object(&k).unwrap(), None);
    assert_eq!(repaired(&c), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_duty_repairs_on_its_own() {
    let c = cluster(35, true).await;
    c.isolate(3);
    wait_reachable(&c, false).await;
    write_keys(&c, "duty", 10, "2", &[1, 2]).await;
    c.heal();
    let keys: Vec<ObjectKey> = (0..10)
        .map(|i| key_of(&c, "b", &format!("duty-{i:03}")))
        .collect();
    let r = c
        .wait_for(Duration::from_secs(30), "anti-entropy to refill n3", |c| {
            keys.iter().all(|k| !values(c, 3, k).is_empty())
        })
        .await;
    if let Err(e) = r {
        panic!("{e}\n{}", c.describe());
    }
    assert!(repaired(&c) >= 10);
    assert!(exchanges(&c) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_refuse_exchanges_across_ring_versions_and_bad_requests() {
    let c = cluster(36, false).await;
    let v = c.node(1).state.read().ring_version;
    let ask = |req: AaeRequest| {
        let n = c.node(1);
        async move { n.call(&id_of(2), req, Duration::from_secs(2)).await }
    };
    let stale = AaeRequest::Segments {
        partition: 0,
        n: merkle::DEFAULT_SEGMENTS,
        ring_version: v + 1,
    };
    assert!(matches!(ask(stale).await, Err(RpcError::Remote(e)) if e.contains("ring")));
    let bad_n = AaeRequest::Segments {
        partition: 0,
        n: 0,
        ring_version: v,
    };
    assert!(matches!(ask(bad_n).await, Err(RpcError::Remote(_))));
    let bad_segment = AaeRequest::Keys {
        partition: 0,
        n: 16,
        ring_version: v,
        segments: vec![16],
    };
    assert!(matches!(ask(bad_segment).await, Err(RpcError::Remote(e)) if e.contains("segment")));
    let ok = AaeRequest::Segments {
        partition: 0,
        n: 16,
        ring_version: v,
    };
    match ask(ok).await {
        Ok(AaeResponse::Segments(h)) => assert_eq!(h, vec![0; 16]),
        other => panic!("unexpected answer {other:?}"),
    }
    assert_eq!(exchanges(&c), 0);
}

/// Trees are kept between calls: asking again about an unchanged partition reads no object
/// on either side, and a write after the first call is seen by the next exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_trees_read_nothing_until_a_write() {
    let c = cluster(36, false).await;
    write_keys(&c, "kept", 40, "3", &[1, 2, 3]).await;
    let p = key_of(&c, "b", "kept-000").partition;
    let rv = c.node(2).state.read().ring_version;
    let n = merkle::DEFAULT_SEGMENTS;
    let read = |i: usize| c.storage(i).entries_read(Cf::Objects);
    let first = answer_segments(&c.node(2), &id_of(1), p, n, rv)
        .await
        .unwrap();
    let before = read(2);
    let again = answer_segments(&c.node(2), &id_of(1), p, n, rv)
        .await
        .unwrap();
    assert_eq!(again, first);
    for chunk in [0..64u32, 64..128] {
        answer_keys(&c.node(2), &id_of(1), p, n, rv, chunk.collect())
            .await
            .unwrap();
    }
    assert_eq!(
        read(2) - before,
        0,
        "segment calls on an unchanged partition"
    );
    exchange(&c.node(1), p, &id_of(2)).await.unwrap();
    let (one, two) = (read(1), read(2));
    let r = exchange(&c.node(1), p, &id_of(2)).await.unwrap();
    assert_eq!(r.segments_differing, 0);
    assert_eq!(
        (read(1) - one, read(2) - two),
        (0, 0),
        "a repeated exchange"
    );

    // A write that reaches node 2 alone, after its tree was kept.
    let key = (0..)
        .map(|i| format!("fresh-{i}"))
        .find(|k| key_of(&c, "b", k).partition == p)
        .unwrap();
    let k = key_of(&c, "b", &key);
    store_new(c.node(2), &k, id_of(2), b"new");
    let r = exchange(&c.node(1), p, &id_of(2)).await.unwrap();
    assert_eq!((r.keys_differing, r.keys_repaired), (1, 1));
    assert_eq!(values(&c, 1, &k), vec!["new".to_string()]);
}

/// A quiet cluster reads no object once every (partition, peer) of the rotation has been
/// exchanged: the kept segment hashes cover the whole rotation however many partitions a node
/// replicates, and the first round reads each object of a node once (one scan of a partition
/// serves every peer it shares the partition with).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_cluster_reads_nothing_after_one_rotation() {
    let c = cluster(38, false).await;
    let keys = 60;
    write_keys(&c, "quiet", keys, "3", &[1, 2, 3]).await;
    // Each node replicates every partition with both others.
    let partitions = all_partitions(&c).len();
    let rotation = 2 * partitions;
    let read = |i: usize| c.storage(i).entries_read(Cf::Objects);
    let start: Vec<u64> = (1..=3).map(read).collect();
    for _ in 0..rotation {
        for i in 1..=3 {
            exchange_once(&c.node(i)).await.unwrap();
        }
    }
    let first: Vec<u64> = (1..=3).map(|i| read(i) - start[i - 1]).collect();
    // A scan may also visit the first entry past its partition's end.
    assert!(
        first.iter().all(|r| *r <= (keys + partitions) as u64),
        "the first rotation read each node's {keys} objects more than once: {first:?}"
    );
    let before: Vec<u64> = (1..=3).map(read).collect();
    for _ in 0..rotation {
        for i in 1..=3 {
            let r = exchange_once(&c.node(i)).await.unwrap().unwrap();
            assert_eq!(r.segments_differing, 0, "{r:?}");
        }
    }
    let second: Vec<u64> = (1..=3).map(|i| read(i) - before[i - 1]).collect();
    assert_eq!(second, vec![0, 0, 0], "objects read by a second rotation");
}
