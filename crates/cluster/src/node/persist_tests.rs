//! In-process cluster tests of the metadata persister: no synced write on an async worker, and
//! what was acknowledged survives a power cut.

use crate::membership::admin;
use crate::testkit::{ClusterOptions, TestCluster, id_of};
use riftkv_core::bucket::BucketProps;
use riftkv_core::storage::memory::SyncedWriteHook;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(30);

/// Sets bucket `cart` to n = 2 through `node`, as a props PUT does: answered once durable.
async fn set_cart_props(node: &crate::node::Node) {
    let me = node.id.clone();
    node.update_state(|s| {
        s.set_bucket_props(b"cart", BucketProps::with_n(2), &me);
        (true, ())
    })
    .await
    .unwrap();
}

/// A node's life (founding, joins, gossip, the claimant's steps, ownership transfers and their
/// records, a props change, a removal) makes no synced write on the runtime's worker thread.
/// The runtime is single-threaded, so its one worker is this test's own thread; object writes
/// and every metadata write happen on other threads (blocking pool, the persister).
#[tokio::test]
async fn no_synced_write_runs_on_an_async_worker() {
    let worker = std::thread::current().id();
    let seen: Arc<parking_lot::Mutex<Vec<String>>> = Arc::default();
    let hook = {
        let seen = seen.clone();
        SyncedWriteHook(Arc::new(move || {
            if std::thread::current().id() == worker {
                let trace = std::backtrace::Backtrace::force_capture().to_string();
                seen.lock().push(trace);
            }
        }))
    };
    let options = ClusterOptions {
        on_synced_write: Some(hook),
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::start_with(3, 17, options);
    c.wait_settled(SETTLE).await.unwrap();
    set_cart_props(&c.node(1)).await;
    c.add_node();
    c.wait_settled(SETTLE).await.unwrap();
    c.kill(4);
    admin::remove(&c.node(1), &id_of(4)).await.unwrap();
    c.wait_settled(SETTLE).await.unwrap();
    let seen = seen.lock();
    assert!(
        seen.is_empty(),
        "{} synced writes ran on the async worker; the first:\n{}",
        seen.len(),
        seen.first().map(String::as_str).unwrap_or_default()
    );
}

/// A props change and a join, once acknowledged, are on disk: a power cut right after loses
/// neither (checked on the node's own disk, before gossip could bring them back).
#[tokio::test]
async fn acknowledged_props_and_join_survive_a_power_cut() {
    let mut c = TestCluster::start(2, 23);
    c.wait_settled(SETTLE).await.unwrap();
    c.track_durability(1);
    set_cart_props(&c.node(1)).await;
    // Node 3 joins through node 1, its first seed: node 1 answered only once durable.
    let third = c.add_node();
    c.wait_for(SETTLE, "node 3 to have joined", |c| {
        c.node(third).joined.load(Ordering::SeqCst)
    })
    .await
    .unwrap();
    c.power_cut(1, 0);
    let s = c.node(1).state.read().clone();
    assert_eq!(s.bucket_props(b"cart").n, 2, "the props change was lost");
    assert!(
        s.member(&id_of(third)).is_some(),
        "the join node 1 acknowledged was lost"
    );
}
