//! In-process cluster tests of the key-value paths over the simulated network.

use super::*;
use crate::testkit::{ClusterOptions, TestCluster, id_of};
use bytes::Bytes;
use riftkv_core::bucket::Quorum;
use riftkv_core::storage::{ObjectKey, Storage};
use riftkv_core::types::{NodeId, PartitionId};
use riftkv_core::version::{Object, VersionVector, decode_context, encode_context};
use std::sync::Arc;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(15);

async fn cluster(nodes: usize, seed: u64, hints: bool) -> TestCluster {
    let mut opts = ClusterOptions::default();
    if hints {
        opts = opts.with_hint_delivery();
    }
    let c = TestCluster::start_with(nodes, seed, opts);
    if let Err(e) = c.wait_settled(SETTLE).await {
        panic!("{e}");
    }
    c
}

fn index_of(id: &NodeId) -> usize {
    id.as_str()
        .trim_start_matches('n')
        .parse()
        .unwrap_or_else(|_| panic!("test node id {id} is not n<i>"))
}

fn put_req(key: &str, value: &str, context: Option<VersionVector>) -> PutRequest {
    PutRequest {
        bucket: b"b".to_vec(),
        key: key.as_bytes().to_vec(),
        value: Bytes::from(value.as_bytes().to_vec()),
        content_type: "text/plain".into(),
        context,
        if_none_match: false,
        params: ConsistencyParams::default(),
        timeout: None,
        ttl: None,
    }
}

fn get_req(key: &str) -> GetRequest {
    GetRequest {
        bucket: b"b".to_vec(),
        key: key.as_bytes().to_vec(),
        params: ConsistencyParams::default(),
        timeout: None,
    }
}

fn values(o: &Object) -> Vec<String> {
    crate::testkit::live_values(o)
}

/// Partition and primaries of `b/key` as node 1 sees the ring.
fn primaries(c: &TestCluster, key: &str) -> (PartitionId, Vec<NodeId>) {
    let n = c.node(1);
    let s = n.state.read();
    let p = riftkv_core::ring::partition_for(b"b", key.as_bytes(), s.ring_size());
    (p, s.ring.preference_list(p, 3).to_vec())
}

fn local_values(c: &TestCluster, i: usize, p: PartitionId, key: &str) -> Vec<String> {
    let k = ObjectKey::new(p, b"b".to_vec(), key.as_bytes().to_vec());
    match c.node(i).local_object(&k) {
        Ok(Some(o)) => values(&o),
        _ => Vec::new(),
    }
}

pub(super) async fn wait_reachability(c: &TestCluster, observer: usize, peers: &[usize], up: bool) {
    let what = format!(
        "n{observer} to see {peers:?} as {}",
        if up { "up" } else { "down" }
    );
    let r = c
        .wait_for(WAIT, &what, |c| {
            let n = c.node(observer);
            peers.iter().all(|p| n.is_reachable(&id_of(*p)) == up)
        })
        .await;
    if let Err(e) = r {
        panic!("{e}\n{}", c.describe());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_get_round_trips_through_any_node() {
    let c = cluster(3, 11, false).await;
    let out = put(&c.node(1), put_req("k1", "hello", None)).await.unwrap();
    assert_eq!(values(&out.object), vec!["hello"]);
    for i in 1..=3 {
        let got = get(&c.node(i), get_req("k1")).await.unwrap();
        let o = got.object.expect("the value is found");
        assert_eq!(values(&o), vec!["hello"]);
        assert_eq!(o.live_siblings(u64::MAX)[0].1.content_type, "text/plain");
    }
    let missing = get(&c.node(2), get_req("never")).await.unwrap();
    assert_eq!(missing.object, None);
    // Every primary holds it once the background writes have landed.
    let (p, prim) = primaries(&c, "k1");
    c.wait_for(WAIT, "all replicas to store k1", |c| {
        prim.iter()
            .all(|id| local_values(c, index_of(id), p, "k1") == vec!["hello"])
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contextless_writes_become_siblings_and_a_contextual_write_resolves_them() {
    let c = cluster(3, 12, false).await;
    put(&c.node(1), put_req("cart", "apple", None))
        .await
        .unwrap();
    put(&c.node(2), put_req("cart", "pear", None))
        .await
        .unwrap();
    let read = get(&c.node(3), get_req("cart")).await.unwrap();
    let o = read.object.unwrap();
    assert_eq!(values(&o), vec!["apple", "pear"]);

    let token = encode_context(&o.context(), b"b", b"cart", &c.node(3).context_key);
    // The token is bound to its key: on another key every node's edge refuses it.
    for i in 1..=3 {
        let e = decode_context(&token, b"b", b"other", &c.node(i).context_key);
        assert!(e.is_err(), "node {i}: {e:?}");
    }
    let ctx = decode_context(&token, b"b", b"cart", &c.node(1).context_key).unwrap();
    let out = put(&c.node(3), put_req("cart", "apple+pear", Some(ctx)))
        .await
        .unwrap();
    assert_eq!(values(&out.object), vec!["apple+pear"]);
    let again = get(&c.node(1), get_req("cart"))
        .await
        .unwrap()
        .object
        .unwrap();
    assert_eq!(values(&again), vec!["apple+pear"]);
    assert_eq!(again.sibling_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_context_and_bad_params_are_refused() {
    let c = cluster(3, 13, false).await;
    let e = decode_context("garbage", b"b", b"k", &c.node(1).context_key);
    assert!(e.is_err(), "{e:?}");
    let mut req = put_req("k", "v", None);
    req.params.w = Some(Quorum::Count(4));
    assert!(matches!(
        put(&c.node(1), req).await,
        Err(KvError::BadRequest(_))
    ));
    let mut req = put_req("k", "v", None);
    req.value = Bytes::from(vec![0u8; c.node(1).settings.limits.max_value_bytes + 1]);
    assert!(matches!(
        put(&c.node(1), req).await,
        Err(KvError::TooLarge { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_and_deletes() {
    let c = cluster(3, 14, false).await;
    let mut req = put_req("once", "first", None);
    req.if_none_match = true;
    put(&c.node(1), req.clone()).await.unwrap();
    let e = put(&c.node(2), req).await.unwrap_err();
    assert_eq!(e, KvError::PreconditionFailed);

    // A delete without context supersedes what it reads.
    let del = delete(
        &c.node(2),
        DeleteRequest {
            bucket: b"b".to_vec(),
            key: b"once".to_vec(),
            context: None,
            params: ConsistencyParams::default(),
            timeout: None,
        },
    )
    .await
    .unwrap();
    assert!(del.object.all_deleted());
    let read = get(&c.node(3), get_req("once"))
        .await
        .unwrap()
        .object
        .unwrap();
    assert!(read.all_deleted(), "only the tombstone is left");
    let (keys, next) = list_keys(&c.node(1), b"b", None, 100).await.unwrap();
    assert!(keys.is_empty(), "deleted keys are not listed: {keys:?}");
    assert_eq!(next, None);

    // Writing again after a delete works, also with If-None-Match.
    let mut req = put_req("once", "second", None);
    req.if_none_match = true;
    put(&c.node(3), req).await.unwrap();
    let read = get(&c.node(1), get_req("once"))
        .await
        .unwrap()
        .object
        .unwrap();
    assert_eq!(values(&read), vec!["second"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_replica_forwards_the_write_to_a_replica() {
    let c = cluster(4, 15, false).await;
    let key = (0..200)
        .map(|i| format!("fwd{i}"))
        .find(|k| !primaries(&c, k).1.contains(&id_of(4)))
        .expect("some key is not replicated on n4");
    let (_, prim) = primaries(&c, &key);
    let out = put(&c.node(4), put_req(&key, "v", None)).await.unwrap();
    let actors: Vec<NodeId> = out
        .object
        .siblings()
        .iter()
        .map(|(d, _)| d.actor.node.clone())
        .collect();
    assert_eq!(actors.len(), 1);
    assert!(
        prim.contains(&actors[0]),
        "coordinated by a replica, not {}",
        actors[0]
    );
    assert!(!actors.contains(&id_of(4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sloppy_write_goes_to_fallbacks_and_hints_are_delivered_after_heal() {
    let c = cluster(5, 16, true).await;
    let key = "sloppy";
    let (p, prim) = primaries(&c, key);
    let coord = index_of(&prim[0]);
    let cut: Vec<usize> = prim[1..].iter().map(index_of).collect();
    let rest: Vec<usize> = (1..=5).filter(|i| !cut.contains(i)).collect();
    c.partition(&cut, &rest);
    wait_reachability(&c, coord, &cut, false).await;

    let mut req = put_req(key, "while-partitioned", None);
    req.params.w = Some(Quorum::Count(2));
    let out = put(&c.node(coord), req).await.unwrap();
    assert_eq!(values(&out.object), vec!["while-partitioned"]);
    assert!(c.node(coord).metrics.sloppy_writes_total.get() >= 1);

    let fallbacks: Vec<usize> = rest.iter().copied().filter(|i| *i != coord).collect();
    c.wait_for(WAIT, "hints on the fallbacks", |c| {
        let held: u64 = fallbacks
            .iter()
            .map(|i| {
                c.storage(*i)
                    .hint_counts()
                    .unwrap()
                    .iter()
                    .filter(|(t, _)| prim.contains(t))
                    .map(|(_, n)| *n)
                    .sum::<u64>()
            })
            .sum();
        held == 2
    })
    .await
    .unwrap();
    for i in &cut {
        assert!(local_values(&c, *i, p, key).is_empty(), "n{i} was cut off");
    }

    c.heal();
    let r = c
        .wait_for(
            Duration::from_secs(30),
            "hints delivered to the primaries",
            |c| {
                cut.iter()
                    .all(|i| local_values(c, *i, p, key) == vec!["while-partitioned"])
                    && fallbacks
                        .iter()
                        .all(|i| c.storage(*i).hint_counts().unwrap().is_empty())
            },
        )
        .await;
    if let Err(e) = r {
        panic!("{e}\n{}", c.describe());
    }
    // The gauge follows on the next tick.
    c.wait_for(WAIT, "hints_pending to drop to 0", |c| {
        fallbacks
            .iter()
            .all(|i| c.node(*i).metrics.hints_pending.get() == 0)
    })
    .await
    .unwrap();
    let delivered: u64 = fallbacks
        .iter()
        .map(|i| c.node(*i).metrics.hints_delivered_total.get())
        .sum();
    assert_eq!(delivered, 2);
    // The fallbacks never stored the key as their own.
    for i in &fallbacks {
        assert!(local_values(&c, *i, p, key).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_quorums_fail_fast_when_primaries_are_down() {
    let c = cluster(5, 17, false).await;
    let key = "strict";
    let (_, prim) = primaries(&c, key);
    let coord = index_of(&prim[0]);
    let cut: Vec<usize> = prim[1..].iter().map(index_of).collect();
    let rest: Vec<usize> = (1..=5).filter(|i| !cut.contains(i)).collect();
    c.partition(&cut, &rest);
    wait_reachability(&c, coord, &cut, false).await;

    let mut req = put_req(key, "v", None);
    req.params.pw = Some(Quorum::Count(2));
    match put(&c.node(coord), req).await {
        Err(KvError::Quorum {
            needed, got, which, ..
        }) => assert_eq!((needed, got, which), (2, 1, "pw")),
        other => panic!("expected a pw quorum failure, got {other:?}"),
    }
    // Nothing was written anywhere: the request failed before sending.
    for i in 1..=5 {
        if !cut.contains(&i) {
            assert!(c.storage(i).hint_counts().unwrap().is_empty());
        }
    }
    let mut g = get_req(key);
    g.params.pr = Some(Quorum::Count(2));
    assert!(matches!(
        get(&c.node(coord), g).await,
        Err(KvError::Quorum {
            which: "pr",
            needed: 2,
            got: 1,
            ..
        })
    ));
    assert!(
        c.node(coord)
            .metrics
            .quorum_failures_total
            .with_label_values(&["put"])
            .get()
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_all_fails_with_two_of_three_down() {
    let mut c = cluster(3, 18, false).await;
    put(&c.node(1), put_req("k", "v", None)).await.unwrap();
    c.kill(2);
    c.kill(3);
    wait_reachability(&c, 1, &[2, 3], false).await;
    let mut g = get_req("k");
    g.params.r = Some(Quorum::Count(3));
    match get(&c.node(1), g).await {
        Err(KvError::Quorum {
            which, needed, got, ..
        }) => assert_eq!((which, needed, got), ("r", 3, 1)),
        other => panic!("expected an r quorum failure, got {other:?}"),
    }
    // r=1 is still served by the one node left.
    let mut g = get_req("k");
    g.params.r = Some(Quorum::Count(1));
    let o = get(&c.node(1), g).await.unwrap().object.unwrap();
    assert_eq!(values(&o), vec!["v"]);
}

/// Writes `v1` under `key` while its third primary is down, then brings that one back:
/// (partition, the first primary, the replica that missed the write).
async fn replica_missed_a_write(c: &mut TestCluster, key: &str) -> (PartitionId, usize, usize) {
    let (p, prim) = primaries(c, key);
    let coord = index_of(&prim[0]);
    let missed = index_of(&prim[2]);
    c.kill(missed);
    wait_reachability(c, coord, &[missed], false).await;
    put(&c.node(coord), put_req(key, "v1", None)).await.unwrap();
    c.restart(missed);
    wait_reachability(c, coord, &[missed], true).await;
    assert!(
        local_values(c, missed, p, key).is_empty(),
        "n{missed} missed the write"
    );
    (p, coord, missed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_repair_fixes_a_replica_that_missed_a_write() {
    let mut c = cluster(4, 19, false).await;
    let key = "repair-me";
    let (p, coord, missed) = replica_missed_a_write(&mut c, key).await;

    let before = c.node(coord).metrics.read_repairs_total.get();
    // r=all: a read asks only its first r replicas, and this one must reach the stale one.
    let mut req = get_req(key);
    req.params.r = Some(Quorum::All);
    let o = get(&c.node(coord), req).await.unwrap().object.unwrap();
    assert_eq!(values(&o), vec!["v1"]);
    // The counter moves when the repair's answer is back, just after the replica stored it.
    c.wait_for(WAIT, "read repair of the stale replica", |c| {
        local_values(c, missed, p, key) == vec!["v1"]
            && c.node(coord).metrics.read_repairs_total.get() > before
    })
    .await
    .unwrap();
}

/// The read runs on the client's request until it is decided; a client that gives up before
/// that (a closed connection, a timeout of its own) must still leave the read to finish, so
/// the stale replica it asked is repaired all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_read_still_repairs_the_replicas_it_asked() {
    let mut c = cluster(4, 23, false).await;
    let key = "abandoned";
    let (p, coord, missed) = replica_missed_a_write(&mut c, key).await;

    // Every message now takes 200 ms a leg: the client gives up after 50 ms, long before
    // the remote replicas answer.
    c.net
        .set_delay(Duration::from_millis(200), Duration::from_millis(200));
    let mut req = get_req(key);
    req.params.r = Some(Quorum::All);
    let abandoned = tokio::time::timeout(Duration::from_millis(50), get(&c.node(coord), req)).await;
    assert!(
        abandoned.is_err(),
        "the read was decided without its remote replicas"
    );
    c.net.heal();
    c.wait_for(WAIT, "read repair after the client left", |c| {
        local_values(c, missed, p, key) == vec!["v1"]
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_spans_partitions_and_survives_a_down_node() {
    let mut c = cluster(4, 20, false).await;
    let mut want: Vec<Vec<u8>> = Vec::new();
    for i in 0..40 {
        let k = format!("key-{i:03}");
        put(&c.node(1 + i % 4), put_req(&k, "v", None))
            .await
            .unwrap();
        want.push(k.into_bytes());
    }
    want.sort();
    // Let the background replica writes land everywhere before a node goes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.kill(3);
    wait_reachability(&c, 1, &[3], false).await;

    let (keys, next) = list_keys(&c.node(1), b"b", None, 1000).await.unwrap();
    assert_eq!(keys, want);
    assert_eq!(next, None);

    // Paging walks the same keys in order.
    let mut paged = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    for _ in 0..20 {
        let (keys, next) = list_keys(&c.node(2), b"b", after.as_deref(), 7)
            .await
            .unwrap();
        assert!(keys.len() <= 7);
        paged.extend(keys);
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(paged, want);
    assert!(
        list_keys(&c.node(1), b"other", None, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_for_a_removed_node_reach_the_new_primaries() {
    let mut c = cluster(5, 23, true).await;
    let key = "orphaned-hint";
    let (p, prim) = primaries(&c, key);
    let coord = index_of(&prim[0]);
    let dead = index_of(&prim[2]);
    c.kill(dead);
    wait_reachability(&c, coord, &[dead], false).await;

    let mut req = put_req(key, "kept", None);
    req.params.w = Some(Quorum::Count(3));
    put(&c.node(coord), req).await.unwrap();
    let holders = || {
        (1..=5)
            .filter(|i| *i != dead)
            .filter(|i| {
                c.storage(*i)
                    .hint_counts()
                    .unwrap()
                    .iter()
                    .any(|(t, _)| t == &prim[2])
            })
            .count()
    };
    assert_eq!(
        holders(),
        1,
        "one fallback holds the hint for the dead primary"
    );

    // The dead node is removed for good: its hint can only go to the partition's new owners.
    crate::membership::admin::remove(&c.node(coord), &prim[2])
        .await
        .unwrap();
    let r = c
        .wait_for(
            Duration::from_secs(40),
            "hint redirected to the new primaries",
            |c| {
                let s = c.node(coord).state.read().clone();
                let n = s.bucket_props(b"b").n as usize;
                let now: Vec<NodeId> = s.ring.preference_list(p, n).to_vec();
                !now.contains(&prim[2])
                    && now
                        .iter()
                        .all(|id| local_values(c, index_of(id), p, key) == vec!["kept"])
                    && (1..=5).filter(|i| *i != dead).all(|i| {
                        c.storage(i)
                            .hint_counts()
                            .unwrap()
                            .iter()
                            .all(|(t, _)| t != &prim[2])
                    })
            },
        )
        .await;
    if let Err(e) = r {
        panic!("{e}\n{}", c.describe());
    }
}

/// A cluster whose tombstones may be reaped after `grace` (reaping is driven by hand).
async fn reaping_cluster(seed: u64, grace: Duration) -> TestCluster {
    let opts = ClusterOptions {
        settings: Some(Arc::new(move |s: &mut crate::node::NodeSettings| {
            s.tombstone_grace = grace;
            s.hinted_handoff = false;
        })),
        ..ClusterOptions::default()
    };
    let c = TestCluster::start_with(3, seed, opts);
    if let Err(e) = c.wait_settled(SETTLE).await {
        panic!("{e}");
    }
    c
}

fn delete_req(key: &str, w: &str) -> DeleteRequest {
    let params = ConsistencyParams {
        w: Some(w.parse().unwrap()),
        ..ConsistencyParams::default()
    };
    DeleteRequest {
        bucket: b"b".to_vec(),
        key: key.as_bytes().to_vec(),
        context: None,
        params,
        timeout: None,
    }
}

fn has_copy(c: &TestCluster, i: usize, p: PartitionId, key: &str) -> bool {
    let k = ObjectKey::new(p, b"b".to_vec(), key.as_bytes().to_vec());
    matches!(c.node(i).local_object(&k), Ok(Some(_)))
}

/// With `lagging` (down, holding "old") missing the dead version of `key`: no reap while it
/// is down, none after it returns with its different copy.
async fn not_reaped_until_the_lagging_copy_matches(
    c: &mut TestCluster,
    owner: usize,
    lagging: usize,
    p: PartitionId,
    key: &str,
) {
    assert_eq!(
        crate::reaper::reap_once(&c.node(owner)).await.unwrap(),
        0,
        "a member is down"
    );
    c.restart(lagging);
    wait_reachability(c, owner, &[lagging], true).await;
    assert_eq!(local_values(c, lagging, p, key), vec!["old"]);
    assert_eq!(
        crate::reaper::reap_once(&c.node(owner)).await.unwrap(),
        0,
        "copies differ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_are_reaped_only_when_every_primary_holds_them() {
    let mut c = reaping_cluster(31, Duration::from_millis(300)).await;
    let key = "reaped";
    let (p, prim) = primaries(&c, key);
    let owner = index_of(&prim[0]);
    put(&c.node(owner), put_req(key, "v", None)).await.unwrap();
    delete(&c.node(owner), delete_req(key, "all"))
        .await
        .unwrap();
    for id in &prim {
        assert!(
            has_copy(&c, index_of(id), p, key),
            "{id} holds the tombstone"
        );
    }
    // Inside the grace delay nothing goes.
    assert_eq!(crate::reaper::reap_once(&c.node(owner)).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(crate::reaper::reap_once(&c.node(owner)).await.unwrap(), 1);
    for id in &prim {
        assert!(
            !has_copy(&c, index_of(id), p, key),
            "{id} dropped the tombstone"
        );
    }
    let got = get(&c.node(2), get_req(key)).await.unwrap();
    assert!(got.object.is_none(), "a reaped key reads as never written");

    // A tombstone one replica missed is not reaped while that replica is down, nor while
    // its copy differs; read repair brings it there and then it goes.
    let key = "missed";
    let (p, prim) = primaries(&c, key);
    let owner = index_of(&prim[0]);
    let lagging = index_of(&prim[2]);
    // w=all: with the default w=2 the lagging replica's copy may still be in flight when it
    // is killed, and it would then never hold "old" at all.
    let mut req = put_req(key, "old", None);
    req.params.w = Some(Quorum::All);
    put(&c.node(owner), req).await.unwrap();
    c.kill(lagging);
    wait_reachability(&c, owner, &[lagging], false).await;
    delete(&c.node(owner), delete_req(key, "2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    not_reaped_until_the_lagging_copy_matches(&mut c, owner, lagging, p, key).await;
    assert!(has_copy(&c, owner, p, key));
    // A quorum read repairs the lagging replica with the tombstone.
    let mut req = get_req(key);
    req.params.r = Some(Quorum::Count(3));
    assert!(get(&c.node(owner), req).await.unwrap().object.is_some());
    c.wait_for(WAIT, "read repair delivered the tombstone", |c| {
        let k = ObjectKey::new(p, b"b".to_vec(), key.as_bytes().to_vec());
        matches!(c.node(lagging).local_object(&k), Ok(Some(o)) if o.all_deleted())
    })
    .await
    .unwrap();
    assert_eq!(crate::reaper::reap_once(&c.node(owner)).await.unwrap(), 1);
    assert!(
        !has_copy(&c, lagging, p, key),
        "the old value did not come back"
    );
    let mut req = get_req(key);
    req.params.r = Some(Quorum::Count(3));
    assert!(get(&c.node(1), req).await.unwrap().object.is_none());
}

fn ttl_put(key: &str, value: &str, ttl: Duration, context: Option<VersionVector>) -> PutRequest {
    let mut req = put_req(key, value, context);
    req.ttl = Some(ttl);
    req.params.w = Some(Quorum::All);
    req
}

/// Sleeps until node `i`'s clock has passed `instant_ms` (an expiry, or one plus the grace).
async fn sleep_past(c: &TestCluster, i: usize, instant_ms: u64) {
    loop {
        let now = c.node(i).clock.now_ms();
        if now > instant_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(instant_ms + 1 - now)).await;
    }
}

/// Whether node `i` lists `key` in its expiry index.
fn indexed(c: &TestCluster, i: usize, key: &str) -> bool {
    c.node(i)
        .storage
        .scan_expiry(None, u64::MAX, 1000)
        .unwrap()
        .iter()
        .any(|(_, k)| k.key == key.as_bytes())
}

/// A quorum read of every primary through node `via`.
async fn read_all(c: &TestCluster, via: usize, key: &str) -> Option<Object> {
    let mut req = get_req(key);
    req.params.r = Some(Quorum::Count(3));
    get(&c.node(via), req).await.unwrap().object
}

/// `count` keys of bucket "b" whose partition node `owner` owns, written and then deleted
/// on every primary (w=all).
async fn dead_keys_owned_by(c: &TestCluster, owner: usize, count: usize) -> Vec<ObjectKey> {
    let mut out = Vec::new();
    for i in 0.. {
        let key = format!("dead{i}");
        let (p, prim) = primaries(c, &key);
        if prim[0] != id_of(owner) {
            continue;
        }
        let mut req = put_req(&key, "v", None);
        req.params.w = Some(Quorum::All);
        put(&c.node(owner), req).await.unwrap();
        delete(&c.node(owner), delete_req(&key, "all"))
            .await
            .unwrap();
        out.push(ObjectKey::new(p, b"b".to_vec(), key.into_bytes()));
        if out.len() == count {
            break;
        }
    }
    out
}

/// A reaping round costs what there is to reap: over 10,000 live keys and 3 tombstones of its
/// partitions, the owner reads the 3 dead objects (twice each: check, compare-and-delete),
/// not the live ones; a round with nothing left reads no object at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaping_round_reads_only_dead_keys() {
    use riftkv_core::storage::{Cf, WriteBatch};
    let c = reaping_cluster(43, Duration::ZERO).await;
    let owner = 1;
    let dead = dead_keys_owned_by(&c, owner, 3).await;
    let live = Object::update(
        None,
        &VersionVector::new(),
        id_of(owner),
        riftkv_core::version::Sibling::new(&b"v"[..], "text/plain", 1),
        riftkv_core::version::ConflictMode::Siblings,
        &riftkv_core::version::Limits::default(),
    )
    .unwrap()
    .encode();
    let mut batch = WriteBatch::default();
    for i in 0..10_000 {
        let k = ObjectKey::new(dead[0].partition, b"b".to_vec(), format!("live{i:05}"));
        batch.put_object(k, live.clone());
    }
    c.storage(owner).write(batch, false).unwrap();
    // A damaged index entry still names its key, which is checked against the object.
    let raw = riftkv_core::storage::keys::encode_object(&dead[0]).unwrap();
    c.storage(owner)
        .raw_put_for_test(Cf::Tombstones, &raw, b"\x01bad")
        .unwrap();
    let read = || c.storage(owner).entries_read(Cf::Objects);
    let before = read();
    assert_eq!(crate::reaper::reap_once(&c.node(owner)).await.unwrap(), 3);
    let spent = read() - before;
    assert!(spent <= 6, "a round over 3 tombstones read {spent} objects");
    for k in &dead {
        assert_eq!(c.node(owner).local_object(k).unwrap(), None, "reaped");
    }
    let before = read();
    assert_eq!(crate::reaper::reap_once(&c.node(owner)).await.unwrap(), 0);
    assert_eq!(read() - before, 0, "nothing dead: no object read");
}

/// The walk of the tombstone index goes on from its persisted cursor after a restart, and
/// starts over once it reached the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tombstone_walk_continues_after_a_restart() {
    let mut c = reaping_cluster(47, Duration::ZERO).await;
    let owner = 1;
    let mut dead = dead_keys_owned_by(&c, owner, 5).await;
    // One bucket: object key order is storage order.
    dead.sort();
    let walk = |c: &TestCluster| {
        let node = c.node(owner);
        let owned = node.state.read().ring.partitions_of(&node.id);
        let walk = crate::reaper::TombstoneWalk {
            owned: owned.into_iter().collect(),
            now_ms: u64::MAX,
            grace_ms: 0,
            page: 2,
            room: 100,
        };
        let found = walk.run(&node).unwrap();
        found.into_iter().map(|(k, _)| k).collect::<Vec<_>>()
    };
    assert_eq!(walk(&c), dead[..2]);
    c.restart(owner);
    assert_eq!(walk(&c), dead[2..4]);
    c.restart(owner);
    assert_eq!(walk(&c), dead[4..]);
    assert_eq!(walk(&c), dead[..2], "past the end it starts over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_values_read_as_missing_everywhere_and_are_reaped_like_tombstones() {
    // Long enough that the checks before the expiry, and those inside the grace delay, end
    // in time on a loaded machine; the waits past them end at the instant itself.
    let (ttl, grace) = (Duration::from_secs(2), Duration::from_secs(2));
    let grace_ms = grace.as_millis() as u64;
    let mut c = reaping_cluster(37, grace).await;
    let key = "expiring";
    let (p, prim) = primaries(&c, key);
    let owner = index_of(&prim[0]);
    let before = c.node(owner).clock.now_ms();
    let out = put(&c.node(owner), ttl_put(key, "v", ttl, None))
        .await
        .unwrap();
    let after = c.node(owner).clock.now_ms();
    // The coordinator stamps one absolute expiry into the version; every copy carries it.
    let stamped = out.object.siblings()[0].1.expires_at_ms.unwrap();
    let ttl_ms = ttl.as_millis() as u64;
    assert!((before + ttl_ms..=after + ttl_ms).contains(&stamped));
    for i in 1..=3 {
        let k = ObjectKey::new(p, b"b".to_vec(), key.as_bytes().to_vec());
        let o = c.node(i).local_object(&k).unwrap().unwrap();
        assert_eq!(o.siblings()[0].1.expires_at_ms, Some(stamped), "n{i}");
        assert!(
            indexed(&c, i, key),
            "n{i} lists the key in its expiry index"
        );
    }
    assert_eq!(values(&read_all(&c, 1, key).await.unwrap()), vec!["v"]);
    let (keys, _) = list_keys(&c.node(2), b"b", None, 100).await.unwrap();
    assert_eq!(keys, vec![key.as_bytes().to_vec()]);

    assert!(
        c.node(owner).clock.now_ms() < stamped,
        "the checks of the live value ended before its expiry"
    );
    sleep_past(&c, owner, stamped).await;
    // Expired: missing on every node, absent from listings; the context still covers it.
    for i in 1..=3 {
        let got = read_all(&c, i, key).await.unwrap();
        assert!(got.live_siblings(u64::MAX).is_empty(), "n{i} hides it");
        assert_eq!(got.sibling_count(), 0);
        assert!(got.context().covers(&out.object.siblings()[0].0));
        let (keys, _) = list_keys(&c.node(i), b"b", None, 100).await.unwrap();
        assert!(keys.is_empty(), "n{i} lists nothing");
    }
    // Inside the grace delay nothing goes; after it, every copy and its listing go.
    assert_eq!(crate::reaper::reap_once(&c.node(owner)).await.unwrap(), 0);
    assert!(
        c.node(owner).clock.now_ms() < stamped + grace_ms,
        "the round ended inside the grace delay"
    );
    sleep_past(&c, owner, stamped + grace_ms).await;
    assert_eq!(crate::reaper::reap_once(&c.node(owner)).await.unwrap(), 1);
    for i in 1..=3 {
        assert!(!has_copy(&c, i, p, key), "n{i} dropped it");
        assert!(!indexed(&c, i, key), "n{i} dropped its listing");
    }
    assert!(read_all(&c, 2, key).await.is_none());

    // An expiring write superseded an older value a replica still holds while it is down: the
    // key is not reaped while that replica is down, nor while its copy differs; once repaired
    // it goes, and the old value never comes back.
    let key = "superseded";
    let (p, prim) = primaries(&c, key);
    let owner = index_of(&prim[0]);
    let lagging = index_of(&prim[2]);
    let mut req = put_req(key, "old", None);
    req.params.w = Some(Quorum::All);
    let old = put(&c.node(owner), req).await.unwrap();
    c.kill(lagging);
    wait_reachability(&c, owner, &[lagging], false).await;
    let mut req = ttl_put(
        key,
        "new",
        Duration::from_millis(200),
        Some(old.object.context()),
    );
    req.params.w = Some(Quorum::Count(2));
    put(&c.node(owner), req).await.unwrap();
    // The stored copy: the answer shows only what is live when it is sent.
    let k = ObjectKey::new(p, b"b".to_vec(), key.as_bytes().to_vec());
    let stored = c.node(owner).local_object(&k).unwrap().unwrap();
    let expiry = stored.siblings().iter().find_map(|(_, s)| s.expires_at_ms);
    let expiry = expiry.expect("the new version carries its expiry");
    sleep_past(&c, owner, expiry + grace_ms).await;
    not_reaped_until_the_lagging_copy_matches(&mut c, owner, lagging, p, key).await;
    // A quorum read hides both (the old value is superseded, the new one expired) and
    // repairs the lagging replica with the expired version.
    let got = read_all(&c, owner, key).await.unwrap();
    assert!(got.live_siblings(u64::MAX).is_empty());
    c.wait_for(WAIT, "read repair delivered the expired version", |c| {
        let k = ObjectKey::new(p, b"b".to_vec(), key.as_bytes().to_vec());
        matches!(c.node(lagging).local_object(&k), Ok(Some(o)) if values(&o) == vec!["new"])
    })
    .await
    .unwrap();
    assert_eq!(crate::reaper::reap_once(&c.node(owner)).await.unwrap(), 1);
    assert!(
        !has_copy(&c, lagging, p, key),
        "the old value did not come back"
    );
    assert!(read_all(&c, 1, key).await.is_none());
    let (keys, _) = list_keys(&c.node(lagging), b"b", None, 100).await.unwrap();
    assert!(keys.is_empty());
}

/// Expiry is an absolute instant judged by cluster time: a node whose clock is 60 s behind
/// learns its peers' offsets from their pings and hides an expired value when the correct
/// nodes do (before cluster time it showed it up to the skew longer). Reaping follows the
/// owner's clock plus the grace, and takes the lagging node's copy too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_lagging_clock_hides_an_expired_value_by_cluster_time() {
    let mut c = reaping_cluster(41, Duration::from_millis(0)).await;
    let key = "skewed";
    let (p, prim) = primaries(&c, key);
    let owner = index_of(&prim[0]);
    let behind = index_of(&prim[2]);
    c.set_clock(behind, Arc::new(riftkv_core::types::OffsetClock(-60_000)));
    c.kill(behind);
    wait_reachability(&c, owner, &[behind], false).await;
    c.restart(behind);
    wait_reachability(&c, owner, &[behind], true).await;
    c.wait_for(WAIT, "the lagging node to learn the cluster's time", |c| {
        c.node(behind).peer_clocks.offset_ms() > 59_000
    })
    .await
    .unwrap();
    // Its own clock still lags: only expiry uses the correction.
    assert!(c.node(behind).clock.now_ms() + 59_000 < c.node(owner).clock.now_ms());
    put(
        &c.node(owner),
        ttl_put(key, "v", Duration::from_millis(300), None),
    )
    .await
    .unwrap();
    assert_eq!(values(&read_all(&c, behind, key).await.unwrap()), vec!["v"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Gone on the correct nodes and, by cluster time, on the lagging one.
    for i in [owner, behind] {
        let shown = read_all(&c, i, key).await.map(|o| values(&o));
        assert!(
            shown.as_ref().is_none_or(Vec::is_empty),
            "n{i} still shows it: {shown:?}"
        );
    }
    let (keys, _) = list_keys(&c.node(behind), b"b", None, 100).await.unwrap();
    assert!(keys.is_empty(), "listed on the lagging node: {keys:?}");
    assert_eq!(crate::reaper::reap_once(&c.node(owner)).await.unwrap(), 1);
    for i in 1..=3 {
        assert!(!has_copy(&c, i, p, key), "n{i} dropped it");
    }
    assert!(read_all(&c, behind, key).await.is_none());
}

/// Clocks that agree get no expiry correction, however slow and uneven the network: a
/// message's transit time is no evidence of a skewed clock. (Each peer's offset used to be a
/// point estimate from one exchange, so a node's cluster time drifted with the network's
/// delays and a coordinator stamped expiries earlier or later than its clock plus the TTL.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_that_agree_get_no_expiry_correction_over_a_slow_network() {
    let c = reaping_cluster(53, Duration::ZERO).await;
    c.net.set_delay(Duration::ZERO, Duration::from_millis(80));
    let mut corrected = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < until {
        for i in 1..=3 {
            let offset = c.node(i).peer_clocks.offset_ms();
            if offset != 0 {
                corrected.push((i, offset));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The heartbeats that carry the clocks kept flowing through the delays.
    for i in 1..=3 {
        let peers: Vec<usize> = (1..=3).filter(|j| *j != i).collect();
        wait_reachability(&c, i, &peers, true).await;
    }
    c.net.heal();
    assert!(
        corrected.is_empty(),
        "agreeing clocks were corrected (node, ms): {corrected:?}"
    );
    let key = "stamped";
    let owner = index_of(&primaries(&c, key).1[0]);
    let before = c.node(owner).clock.now_ms();
    let out = put(
        &c.node(owner),
        ttl_put(key, "v", Duration::from_millis(60_000), None),
    )
    .await
    .unwrap();
    let after = c.node(owner).clock.now_ms();
    let stamped = out.object.siblings()[0].1.expires_at_ms.unwrap();
    assert!(
        (before + 60_000..=after + 60_000).contains(&stamped),
        "stamped {stamped}, the coordinator's clock plus the TTL is {}..={}",
        before + 60_000,
        after + 60_000
    );
}

/// More due expiry entries of other owners' keys than one round reads do not hide this
/// owner's expired key: the next round continues where the last one stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiry_walk_continues_past_keys_of_other_owners() {
    use riftkv_core::storage::WriteBatch;
    use riftkv_core::version::{ConflictMode, Limits, Sibling};
    let c = reaping_cluster(43, Duration::from_millis(0)).await;
    let key = "mine";
    let (p, prim) = primaries(&c, key);
    let owner = index_of(&prim[0]);
    let node = c.node(owner);
    let other = {
        let s = node.state.read();
        let owned = s.ring.partitions_of(&node.id);
        (0..s.ring_size())
            .find(|q| !owned.contains(q))
            .expect("a partition owned elsewhere")
    };
    // Expired long ago, in a partition another node owns: valid entries this node keeps.
    let expired = Object::update(
        None,
        &VersionVector::new(),
        NodeId::from("x"),
        Sibling::new(&b"v"[..], "t", 0).expiring(Some(1)),
        ConflictMode::Siblings,
        &Limits::default(),
    )
    .unwrap()
    .encode();
    let mut batch = WriteBatch::new();
    for i in 0..crate::reaper::MAX_EXPIRY_ENTRIES_PER_ROUND {
        let k = ObjectKey::new(other, b"b".to_vec(), format!("other-{i:05}").into_bytes());
        batch
            .put_object(k.clone(), expired.clone())
            .put_expiry(1, k);
    }
    node.storage.write(batch, false).unwrap();
    put(&node, ttl_put(key, "v", Duration::from_millis(50), None))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(crate::reaper::reap_once(&node).await.unwrap(), 0);
    assert_eq!(crate::reaper::reap_once(&node).await.unwrap(), 1);
    assert!(!has_copy(&c, owner, p, key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_ttl_expires_writes_that_give_none() {
    let c = cluster(3, 41, false).await;
    let mut props = riftkv_core::bucket::BucketProps::with_n(3);
    props.ttl = 1;
    let n = c.node(1);
    n.update_state(|s| {
        s.set_bucket_props(b"b", props.clone(), &n.id);
        (true, ())
    })
    .await
    .unwrap();
    c.wait_for(WAIT, "the ttl props to reach every node", |c| {
        (1..=3).all(|i| c.node(i).state.read().bucket_props(b"b").ttl == 1)
    })
    .await
    .unwrap();
    // Coordinated by different nodes: each stamps the bucket's TTL from its own ring state.
    let mut short = put_req("short", "v", None);
    short.params.w = Some(Quorum::All);
    let stored = put(&c.node(2), short).await.unwrap().object;
    let stamped = stored.siblings()[0].1.expires_at_ms;
    assert!(stamped.is_some(), "the bucket's ttl was stamped");
    // A write's own TTL wins over the bucket's.
    let own = ttl_put("own", "v", Duration::from_secs(60), None);
    put(&c.node(3), own).await.unwrap();
    assert_eq!(values(&read_all(&c, 1, "short").await.unwrap()), vec!["v"]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for i in 1..=3 {
        let got = get(&c.node(i), get_req("short")).await.unwrap();
        assert!(
            got.object.is_none_or(|o| values(&o).is_empty()),
            "n{i} still shows the expired value"
        );
        let got = get(&c.node(i), get_req("own")).await.unwrap();
        assert_eq!(values(&got.object.unwrap()), vec!["v"], "n{i}");
    }
}

/// A write too large for one frame fails in the coordinator's own encoder. That says nothing
/// about the peers: none may be suspected (traffic would be routed around healthy nodes and
/// strict quorums would fail), so a `pw=all` write right after still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_too_large_to_send_never_marks_a_peer_down() {
    let c = cluster(3, 22, false).await;
    c.net.set_max_frame_bytes(64 * 1024);
    let big = "x".repeat(100 * 1024);
    for k in 0..8 {
        let r = put(&c.node(1), put_req(&format!("big{k}"), &big, None)).await;
        assert!(
            r.is_err(),
            "no replica but the coordinator can take it: {r:?}"
        );
    }
    for i in 2..=3 {
        assert!(
            c.node(1).is_reachable(&id_of(i)),
            "n{i} is suspected after a local encoding failure"
        );
    }
    let mut req = put_req("small", "v", None);
    req.params.pw = Some(Quorum::All);
    req.params.w = Some(Quorum::All);
    put(&c.node(1), req).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w_all_write_takes_a_fallback_at_once_after_a_going_down_notice() {
    let c = cluster(4, 43, false).await;
    wait_reachability(&c, 1, &[2, 3, 4], true).await;
    let key = (0..)
        .map(|i| format!("gd{i}"))
        .find(|k| {
            let (_, prim) = primaries(&c, k);
            prim.contains(&id_of(1)) && prim.contains(&id_of(4))
        })
        .unwrap();
    crate::membership::going_down::announce(&c.node(4), Duration::from_secs(1)).await;
    // No wait for the failure detector: the very next write routes around n4.
    let mut req = put_req(&key, "v", None);
    req.params.w = Some(Quorum::Count(3));
    req.params.dw = Some(Quorum::Count(3));
    let out = put(&c.node(1), req).await.unwrap();
    assert_eq!(values(&out.object), vec!["v"]);
    assert_eq!(c.node(1).metrics.sloppy_writes_total.get(), 1);
}

/// A restarted primary starts catching up; its hint comes back (its ask wakes delivery on the
/// fallback) and then it is caught up, which its peers learn, so reads stop asking it last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_primary_catches_up_on_its_hints() {
    let mut c = cluster(4, 29, true).await;
    let key = "missed";
    let (p, prim) = primaries(&c, key);
    let coord = index_of(&prim[0]);
    let down = index_of(&prim[2]);
    c.kill(down);
    wait_reachability(&c, coord, &[down], false).await;
    let mut req = put_req(key, "while-down", None);
    req.params.w = Some(Quorum::Count(2));
    put(&c.node(coord), req).await.unwrap();
    let held_for = |c: &TestCluster, target: &NodeId| -> u64 {
        c.running()
            .iter()
            .flat_map(|i| c.storage(*i).hint_counts().unwrap())
            .filter(|(t, _)| t == target)
            .map(|(_, n)| n)
            .sum()
    };
    let target = id_of(down);
    c.wait_for(WAIT, "a hint for the stopped primary", |c| {
        held_for(c, &target) > 0
    })
    .await
    .unwrap();

    c.restart(down);
    assert!(
        c.node(down).catch_up.is_catching_up(),
        "a restart catches up"
    );
    assert!(c.node(down).catching_up_nodes().contains(&target));
    assert_eq!(c.node(down).metrics.catching_up.get(), 1);
    let r = c
        .wait_for(WAIT, "the restarted primary to catch up", |c| {
            !c.node(down).catch_up.is_catching_up()
        })
        .await;
    if let Err(e) = r {
        panic!("{e}\n{}", c.describe());
    }
    assert_eq!(held_for(&c, &target), 0, "caught up while hints remain");
    assert_eq!(c.node(down).metrics.catching_up.get(), 0);
    assert_eq!(local_values(&c, down, p, key), vec!["while-down"]);
    c.wait_for(WAIT, "peers to stop asking it last", |c| {
        c.running()
            .iter()
            .all(|i| !c.node(*i).catching_up_nodes().contains(&target))
    })
    .await
    .unwrap();
}
