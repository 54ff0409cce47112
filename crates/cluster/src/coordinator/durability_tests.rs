//! Durable writes, in-process: `dw` writes share WAL syncs (group commit), no key lock is held
//! across a sync, an acknowledged `dw` write survives a power cut, and a `dw=0` one may not.

use super::*;
use crate::replica::{ReplicaRequest, ReplicaResponse};
use crate::testkit::TestCluster;
use bytes::Bytes;
use riftkv_core::storage::{MemoryStorage, ObjectKey};
use riftkv_core::version::{Object, Sibling, VersionVector};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(30);

async fn cluster(nodes: usize, seed: u64) -> TestCluster {
    let c = TestCluster::start(nodes, seed);
    if let Err(e) = c.wait_settled(SETTLE).await {
        panic!("{e}");
    }
    c
}

fn value(v: &str) -> Object {
    Object::update(
        None,
        &VersionVector::default(),
        riftkv_core::types::NodeId::from("writer"),
        Sibling::new(Bytes::from(v.as_bytes().to_vec()), "text/plain", 1),
        riftkv_core::version::ConflictMode::Siblings,
        &riftkv_core::version::Limits::default(),
    )
    .unwrap()
}

fn replica_put(k: &ObjectKey, v: &str, sync: bool) -> ReplicaRequest {
    ReplicaRequest::ReplicaPut {
        partition: k.partition,
        bucket: k.bucket.clone(),
        key: k.key.clone(),
        object: value(v).encode(),
        sync,
        hinted_for: None,
    }
}

/// The replica write path of one node with a slow disk (every sync takes `sync`).
async fn slow_disk_node(
    sync: Duration,
) -> (TestCluster, Arc<crate::node::Node>, Arc<MemoryStorage>) {
    let c = cluster(1, 951).await;
    let (node, storage) = (c.node(1), c.storage(1));
    storage.track_durability();
    storage.set_sync_latency(sync);
    (c, node, storage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_durable_replica_writes_share_syncs_and_each_is_durable_when_acknowledged() {
    const N: usize = 32;
    let (_c, node, storage) = slow_disk_node(Duration::from_millis(5)).await;
    let before = storage.wal_syncs();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let (node, storage) = (node.clone(), storage.clone());
        // Half the writers share one hot key.
        let k = ObjectKey::new(0, b"b".to_vec(), format!("k{}", i % 2 * i).into_bytes());
        tasks.spawn(async move {
            let r =
                crate::replica::rpc::handle(&node, replica_put(&k, &format!("v{i}"), true)).await;
            assert!(
                matches!(r, Ok(ReplicaResponse::Stored { durable: true })),
                "{r:?}"
            );
            // Checked the moment the write is acknowledged.
            storage.durable_object(&k)
        });
    }
    while let Some(durable) = tasks.join_next().await {
        assert!(
            durable.unwrap(),
            "a dw write was acknowledged before it was durable"
        );
    }
    let syncs = storage.wal_syncs() - before;
    assert!(
        syncs < N as u64 / 2,
        "{N} concurrent durable writes cost {syncs} WAL syncs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_lock_is_held_while_a_durable_write_syncs() {
    let (_c, node, storage) = slow_disk_node(Duration::from_secs(2)).await;
    let k = ObjectKey::new(0, b"b".to_vec(), b"hot".to_vec());
    let before = storage.wal_syncs();
    let writer = {
        let (node, k) = (node.clone(), k.clone());
        tokio::spawn(
            async move { crate::replica::rpc::handle(&node, replica_put(&k, "v", true)).await },
        )
    };
    // The sync has started (it is counted when it starts) and takes two seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while storage.wal_syncs() == before {
        assert!(Instant::now() < deadline, "the durable write never synced");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let free = crate::replica::locks::try_lock_key(&k).is_some();
    assert!(free, "the key's lock is held across the WAL sync");
    let r = writer.await.unwrap();
    assert!(
        matches!(r, Ok(ReplicaResponse::Stored { durable: true })),
        "{r:?}"
    );
    assert!(storage.durable_object(&k));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_key_lock_is_taken_waits_off_the_async_workers_and_lands() {
    let (_c, node, _storage) = slow_disk_node(Duration::ZERO).await;
    let k = ObjectKey::new(0, b"b".to_vec(), b"busy".to_vec());
    let held = crate::replica::locks::lock_key(&k);
    let mode = riftkv_core::version::ConflictMode::Siblings;
    let inline = crate::replica::try_store_copy_deferred(
        &node,
        &k,
        &value("v"),
        mode,
        false,
        &crate::preflist::Role::Primary,
    );
    assert!(
        inline.is_none(),
        "a taken lock sends the write to the blocking pool"
    );
    let writer = {
        let (node, k) = (node.clone(), k.clone());
        tokio::spawn(async move {
            crate::replica::rpc::handle(&node, replica_put(&k, "v", false)).await
        })
    };
    // Not an await: the lock is held by this thread, as by a concurrent writer.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!writer.is_finished(), "the write went past a held key lock");
    drop(held);
    let r = writer.await.unwrap();
    assert!(
        matches!(r, Ok(ReplicaResponse::Stored { durable: false })),
        "{r:?}"
    );
    assert!(node.local_object(&k).unwrap().is_some());
    // Free lock: the write happens right here, on this task.
    let inline = crate::replica::try_store_copy_deferred(
        &node,
        &k,
        &value("w"),
        mode,
        false,
        &crate::preflist::Role::Primary,
    );
    assert!(inline.is_some_and(|r| r.is_ok_and(|w| w.pending.is_none())));
}

fn put_req(key: &str, v: &str, dw: &str) -> PutRequest {
    PutRequest {
        bucket: b"b".to_vec(),
        key: key.as_bytes().to_vec(),
        value: Bytes::from(v.as_bytes().to_vec()),
        content_type: "text/plain".into(),
        context: None,
        if_none_match: false,
        params: ConsistencyParams {
            w: Some("all".parse().unwrap()),
            dw: Some(dw.parse().unwrap()),
            ..ConsistencyParams::default()
        },
        timeout: Some(Duration::from_secs(5)),
        ttl: None,
    }
}

/// Live values of `key` by a read of every replica, retried while nodes come back.
async fn read_all(c: &TestCluster, key: &str) -> Vec<String> {
    let mut last = String::new();
    for _ in 0..100 {
        let req = GetRequest {
            bucket: b"b".to_vec(),
            key: key.as_bytes().to_vec(),
            params: ConsistencyParams {
                r: Some("all".parse().unwrap()),
                ..ConsistencyParams::default()
            },
            timeout: Some(Duration::from_secs(2)),
        };
        match get(&c.node(1), req).await {
            Ok(o) => {
                return o
                    .object
                    .as_ref()
                    .map(crate::testkit::live_values)
                    .unwrap_or_default();
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("read of {key} never met r=all: {last}\n{}", c.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_dw_writes_survive_a_power_cut_of_every_replica_and_dw0_ones_may_not() {
    let mut c = cluster(3, 952).await;
    for i in 1..=3 {
        c.track_durability(i);
    }
    // Written concurrently through every node, so they share syncs.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (key, dw)) in [("d1", "1"), ("d2", "2"), ("d3", "all")]
        .into_iter()
        .enumerate()
    {
        let node = c.node(1 + i);
        tasks.spawn(async move { put(&node, put_req(key, &format!("{key}-v"), dw)).await });
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r.unwrap() {
            panic!("durable write failed: {e}");
        }
    }
    // After them, so no sync of theirs covers it.
    if let Err(e) = put(&c.node(2), put_req("u", "u-v", "0")).await {
        panic!("dw=0 write failed: {e}");
    }
    let mut lost = 0;
    for i in 1..=3 {
        lost += c.power_cut(i, 0);
    }
    assert!(lost > 0, "the unsynced dw=0 write was in no WAL tail");
    if let Err(e) = c.wait_settled(SETTLE).await {
        panic!("{e}");
    }
    for key in ["d1", "d2", "d3"] {
        assert_eq!(read_all(&c, key).await, vec![format!("{key}-v")], "{key}");
    }
    // Nothing synced it: the power cut took it from every replica, as a real one would.
    assert_eq!(read_all(&c, "u").await, Vec::<String>::new());
}
