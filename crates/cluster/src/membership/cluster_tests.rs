//! In-process cluster tests of membership and ownership handoff: nodes over the simulated
//! network and in-memory storage, with their real background duties.

use crate::dispatch::RpcHandler;
use crate::membership::admin;
use crate::metrics::Metrics;
use crate::node::{Node, NodeSettings};
use crate::testkit::{ClusterOptions, TestCluster, addr_of, id_of};
use riftkv_core::bucket::BucketProps;
use riftkv_core::membership::state::MemberStatus;
use riftkv_core::ring::partition_for;
use riftkv_core::storage::{MemoryStorage, ObjectKey, Storage, WriteBatch};
use riftkv_core::types::{NodeId, SystemClock};
use riftkv_core::version::{ConflictMode, Limits, Object, Sibling, VersionVector};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(20);

fn index_of(id: &NodeId) -> usize {
    id.as_str()
        .trim_start_matches('n')
        .parse()
        .unwrap_or_else(|_| panic!("test node id {id} is not n<i>"))
}

fn with_ring_size(q: u32) -> ClusterOptions {
    ClusterOptions {
        settings: Some(Arc::new(move |s: &mut NodeSettings| s.ring_size = q)),
        ..ClusterOptions::default()
    }
}

async fn settled(c: &TestCluster) {
    if let Err(e) = c.wait_settled(SETTLE).await {
        panic!("{e}");
    }
}

/// Writes `value` for (bucket, key) straight into the storage of every replica.
fn put_direct(c: &TestCluster, bucket: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let ring = c.node(1).state.read().ring.clone();
    let p = partition_for(bucket, key, ring.ring_size());
    let replicas = ring.preference_list(p, 3).to_vec();
    let obj = Object::update(
        None,
        &VersionVector::default(),
        &replicas[0],
        Sibling::new(value.to_vec(), "text/plain", 1_700_000_000_000),
        ConflictMode::Siblings,
        &Limits::default(),
    )
    .unwrap()
    .encode();
    for r in &replicas {
        let mut b = WriteBatch::default();
        b.put_object(
            ObjectKey::new(p, bucket.to_vec(), key.to_vec()),
            obj.clone(),
        );
        c.storage(index_of(r)).write(b, false).unwrap();
    }
    obj
}

fn holds(storage: &MemoryStorage, q: u32, bucket: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let p = partition_for(bucket, key, q);
    storage
        .get_object(&ObjectKey::new(p, bucket.to_vec(), key.to_vec()))
        .unwrap()
}

/// How many copies of the `written` keys nodes 1 to 5 hold between them.
fn copies_on_five(c: &TestCluster, q: u32, bucket: &[u8], written: &[(Vec<u8>, Vec<u8>)]) -> usize {
    written
        .iter()
        .map(|(k, _)| {
            (1..=5)
                .filter(|i| holds(&c.storage(*i), q, bucket, k).is_some())
                .count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_found_a_cluster_through_seeds_and_settle() {
    let c = TestCluster::start(5, 1);
    settled(&c).await;
    let v = c.node(1).state.read().ring_version;
    let ring = c.node(1).state.read().ring.clone();
    assert!(v > 1, "joins changed the ring");
    for i in 1..=5 {
        let n = c.node(i);
        let st = admin::status(&n).unwrap();
        assert!(st.ring_settled, "n{i} not settled");
        assert_eq!(st.ring_version, v);
        assert_eq!(st.members.len(), 5);
        assert!(
            st.members
                .iter()
                .all(|m| m.status == MemberStatus::Valid && m.reachable)
        );
        assert!(st.owned_partitions > 0, "n{i} owns nothing");
        assert_eq!(st.handoffs_pending, 0);
        assert_eq!(n.state.read().ring, ring, "n{i} routes by another ring");
        assert!(n.joined.load(Ordering::SeqCst));
    }
    let owned: usize = (1..=5)
        .map(|i| admin::status(&c.node(i)).unwrap().owned_partitions)
        .sum();
    assert_eq!(owned, ring.ring_size() as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixth_node_takes_only_its_share() {
    let q = 64u32;
    let mut c = TestCluster::start_with(5, 2, with_ring_size(q));
    settled(&c).await;
    let before = c.node(1).state.read().ring.clone();
    let written: Vec<(Vec<u8>, Vec<u8>)> = (0..300)
        .map(|i| {
            let key = format!("k{i}").into_bytes();
            let obj = put_direct(&c, b"b", &key, b"v");
            (key, obj)
        })
        .collect();
    let six = c.add_node();
    settled(&c).await;
    let after = c.node(1).state.read().ring.clone();
    // The newcomer received its partitions' data; old replicas dropped what they gave up.
    c.wait_for(SETTLE, "every key on exactly its new replicas", |c| {
        written.iter().all(|(key, obj)| {
            let p = partition_for(b"b", key, q);
            let replicas = after.preference_list(p, 3);
            (1..=6).all(|i| {
                let held = holds(&c.storage(i), q, b"b", key);
                if replicas.contains(&id_of(i)) {
                    held.as_ref() == Some(obj)
                } else {
                    held.is_none()
                }
            })
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.describe()));
    let moved = before.moved_partitions(&after).len();
    let share = q as usize / 6;
    let owned6 = after.partitions_of(&id_of(six)).len();
    assert!(owned6 >= share, "n6 owns {owned6} of {q}");
    // Only partitions given to the newcomer change owner (plus a little rebalancing slack).
    assert!(
        moved <= share + 4,
        "{moved} partitions changed owner; a sixth is {share}"
    );
    assert!(
        before
            .moved_partitions(&after)
            .iter()
            .filter(|p| after.owner(**p) != &id_of(six))
            .count()
            <= 4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_node_leaves_every_key_on_its_new_replicas() {
    let c = TestCluster::start(5, 3);
    settled(&c).await;
    let q = c.node(1).state.read().ring_size();
    let mut written = Vec::new();
    for i in 0..500 {
        let key = format!("key-{i}").into_bytes();
        let obj = put_direct(&c, b"cart", &key, format!("value-{i}").as_bytes());
        written.push((key, obj));
    }
    let copies_before = copies_on_five(&c, q, b"cart", &written);
    assert_eq!(copies_before, 500 * 3);
    let leaver = 3;
    let held_by_leaver = written
        .iter()
        .filter(|(k, _)| holds(&c.storage(leaver), q, b"cart", k).is_some())
        .count();
    assert!(held_by_leaver > 0);

    admin::leave(&c.node(leaver)).await.unwrap();
    c.wait_for(SETTLE, "the leaver to leave", |c| c.has_left(leaver))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.describe()));
    settled(&c).await;

    let ring = c.node(1).state.read().ring.clone();
    assert!(ring.partitions_of(&id_of(leaver)).is_empty());
    for i in [1, 2, 4, 5] {
        let st = c.node(i).state.read().clone();
        assert_eq!(
            st.member(&id_of(leaver)).unwrap().status,
            MemberStatus::Removed
        );
        assert_eq!(st.visible_members().count(), 4);
    }
    for (key, obj) in &written {
        let p = partition_for(b"cart", key, q);
        for r in ring.preference_list(p, 3) {
            let got = holds(&c.storage(index_of(r)), q, b"cart", key);
            assert_eq!(
                got.as_ref(),
                Some(obj),
                "{r} lacks {}",
                String::from_utf8_lossy(key)
            );
        }
    }
    let copies_after = copies_on_five(&c, q, b"cart", &written);
    assert_eq!(copies_after, 500 * 3, "every key on exactly its replicas");
    // The leaver dropped its copies once they were handed off.
    for p in 0..q {
        assert!(
            c.storage(leaver)
                .scan_partition(p, None, 1)
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_is_seen_down_then_up_and_catches_up() {
    let c = TestCluster::start(5, 4);
    settled(&c).await;
    c.partition(&[5], &[1, 2, 3, 4]);
    let n5 = id_of(5);
    c.wait_for(Duration::from_secs(5), "n5 to be seen down", |c| {
        (1..=4).all(|i| !c.node(i).is_reachable(&n5))
    })
    .await
    .unwrap();
    let me1 = c.node(1).id.clone();
    c.node(1)
        .update_state(|s| {
            s.set_bucket_props(b"cart", BucketProps::with_n(2), &me1);
            (true, ())
        })
        .await
        .unwrap();
    // The majority side stays settled: unreachable members do not hold it back.
    c.wait_for(Duration::from_secs(5), "the majority to settle", |c| {
        (1..=4).all(|i| admin::is_settled(&c.node(i)))
    })
    .await
    .unwrap();
    assert_eq!(c.node(5).state.read().bucket_props(b"cart").n, 3);
    let view = admin::status(&c.node(1)).unwrap();
    assert!(
        !view
            .members
            .iter()
            .find(|m| m.node_id == n5)
            .unwrap()
            .reachable
    );

    c.heal();
    c.wait_for(Duration::from_secs(5), "n5 to be seen up", |c| {
        (1..=4).all(|i| c.node(i).is_reachable(&n5))
            && (1..=4).all(|i| c.node(5).is_reachable(&id_of(i)))
    })
    .await
    .unwrap();
    c.wait_for(Duration::from_secs(10), "the props to reach n5", |c| {
        c.node(5).state.read().bucket_props(b"cart").n == 2
    })
    .await
    .unwrap();
    settled(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_identity_and_data() {
    let mut c = TestCluster::start(5, 5);
    settled(&c).await;
    let q = c.node(1).state.read().ring_size();
    let obj = put_direct(&c, b"b", b"k", b"v");
    let p = partition_for(b"b", b"k", q);
    let replica = index_of(&c.node(1).state.read().ring.preference_list(p, 3)[0]);
    c.kill(replica);
    let gone = id_of(replica);
    let other = if replica == 1 { 2 } else { 1 };
    c.wait_for(
        Duration::from_secs(5),
        "the killed node to be seen down",
        |c| !c.node(other).is_reachable(&gone),
    )
    .await
    .unwrap();
    c.restart(replica);
    let n = c.node(replica);
    assert_eq!(n.id, gone);
    assert!(n.joined.load(Ordering::SeqCst), "stored state means joined");
    settled(&c).await;
    let st = admin::status(&c.node(replica)).unwrap();
    assert_eq!(st.members.len(), 5);
    assert!(st.members.iter().all(|m| m.status == MemberStatus::Valid));
    assert_eq!(holds(&c.storage(replica), q, b"b", b"k"), Some(obj));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_dead_claimant_reassigns_its_partitions() {
    let mut c = TestCluster::start(4, 6);
    settled(&c).await;
    c.kill(1);
    let n1 = id_of(1);
    assert_eq!(
        admin::remove(&c.node(2), &c.node(2).id.clone()).await,
        Err(riftkv_core::membership::state::MembershipError::CannotRemoveSelf)
    );
    assert!(matches!(
        admin::remove(&c.node(2), &NodeId::from("nobody")).await,
        Err(riftkv_core::membership::state::MembershipError::UnknownMember(_))
    ));
    admin::remove(&c.node(2), &n1).await.unwrap();
    settled(&c).await;
    for i in 2..=4 {
        let s = c.node(i).state.read().clone();
        assert!(s.ring.partitions_of(&n1).is_empty());
        assert_eq!(s.claimant(), Some(&id_of(2)));
        assert_eq!(s.visible_members().count(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused() {
    let c = TestCluster::start(2, 7);
    settled(&c).await;
    let addr = addr_of(50);
    let mut settings = NodeSettings::for_test("stranger", &addr, "other-cluster");
    settings.seeds = vec![addr_of(1)];
    let transport = c.net.endpoint(&addr, NodeId::from("stranger"));
    let node = Node::new(
        settings,
        Arc::new(MemoryStorage::new()),
        transport.clone(),
        Arc::new(SystemClock),
        Metrics::new(),
    )
    .unwrap();
    transport.set_handler(Arc::new(RpcHandler(node.clone())));
    let tasks = crate::membership::start_background(node.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!node.joined.load(Ordering::SeqCst));
    assert!(!admin::status(&node).unwrap().ring_settled);
    assert!(
        c.node(1)
            .state
            .read()
            .member(&NodeId::from("stranger"))
            .is_none()
    );
    node.stop();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_that_crashes_mid_handoff_gets_its_data_after_restart() {
    let mut c = TestCluster::start(4, 8);
    settled(&c).await;
    let q = c.node(1).state.read().ring_size();
    let written: Vec<(Vec<u8>, Vec<u8>)> = (0..400)
        .map(|i| {
            let key = format!("k{i}").into_bytes();
            let obj = put_direct(&c, b"b", &key, format!("v{i}").as_bytes());
            (key, obj)
        })
        .collect();
    let five = c.add_node();
    c.wait_for(SETTLE, "the joiner to join", |c| {
        c.node(five).joined.load(Ordering::SeqCst)
    })
    .await
    .unwrap();
    c.kill(five);
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.restart(five);
    assert_eq!(c.node(five).id, id_of(five));
    settled(&c).await;
    let ring = c.node(1).state.read().ring.clone();
    assert!(!ring.partitions_of(&id_of(five)).is_empty());
    c.wait_for(SETTLE, "every key on its new replicas", |c| {
        written.iter().all(|(key, obj)| {
            let p = partition_for(b"b", key, q);
            ring.preference_list(p, 3)
                .iter()
                .all(|r| holds(&c.storage(index_of(r)), q, b"b", key).as_ref() == Some(obj))
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.describe()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_down_notice_marks_down_at_once_until_the_next_run_says_hello() {
    use crate::membership::going_down;
    use crate::membership::rpc::{MembershipRequest, MembershipResponse};
    let mut c = TestCluster::start(4, 41);
    settled(&c).await;
    let n4 = id_of(4);
    c.wait_for(SETTLE, "n4 reachable everywhere", |c| {
        (1..=3).all(|i| c.node(i).is_reachable(&n4))
    })
    .await
    .unwrap();

    let dying = c.node(4);
    let (acked, total) = going_down::announce(&dying, going_down::ANNOUNCE_BUDGET).await;
    assert_eq!((acked, total), (3, 3));
    assert!(dying.gossip_stop.is_cancelled());
    assert!(
        !dying.shutdown.is_cancelled(),
        "announcing stops only gossip"
    );
    assert_eq!(dying.metrics.going_down_sent_total.get(), 3);
    for i in 1..=3 {
        let n = c.node(i);
        assert!(!n.is_reachable(&n4), "n{i} still routes to n4");
        assert_eq!(n.metrics.going_down_received_total.get(), 1);
        let ring_size = n.state.read().ring_size();
        for p in 0..ring_size {
            assert!(n.serving(p, 3).iter().all(|(id, _)| id != &n4));
        }
    }

    // While it drains, n4 still answers and sends: neither revives it.
    let n1 = c.node(1);
    let ping = MembershipRequest::Ping {
        ring_version: 0,
        now_ms: 0,
    };
    let pong = n1.call(&n4, ping.clone(), Duration::from_secs(1)).await;
    assert!(matches!(pong, Ok(MembershipResponse::Pong { .. })));
    dying
        .call(&id_of(1), ping, Duration::from_secs(1))
        .await
        .unwrap();
    let stale_hello = MembershipRequest::Hello {
        run: dying.run_id,
        ring_version: 0,
        now_ms: 0,
    };
    dying
        .call(&id_of(1), stale_hello, Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !n1.is_reachable(&n4),
        "a message of the dying run revived it"
    );

    // The next run is reachable as soon as it gossips, long before the quarantine ends.
    c.restart(4);
    assert_ne!(c.node(4).run_id, dying.run_id);
    c.wait_for(Duration::from_secs(3), "restarted n4 reachable", |c| {
        (1..=3).all(|i| c.node(i).is_reachable(&n4))
    })
    .await
    .unwrap();
    assert!(going_down::QUARANTINE > Duration::from_secs(3));
}
