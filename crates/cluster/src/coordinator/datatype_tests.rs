//! Data types on an in-process cluster: concurrent updates through different coordinators
//! (siblings at the object level) read as one merged value; add wins over a concurrent remove;
//! a remove removes only what its context saw; a wiped disk loses no increment.

use super::cluster_tests::wait_reachability;
use super::identity_tests::{cluster, keeps_and_old_rule_loses, primaries, wait_settled};
use super::update::{UpdateRequest, read, update};
use super::*;
use crate::testkit::TestCluster;
use riftkv_core::bucket::{DataType, Quorum};
use riftkv_core::version::{Actor, Object};
use riftkv_crdt::Context;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Gives bucket `b` the data type `t` and waits until every running node knows it.
async fn typed_bucket(c: &TestCluster, t: DataType) {
    let n = c.node(c.running()[0]);
    let mut props = n.state.read().bucket_props(b"b");
    props.datatype = Some(t);
    let me = n.id.clone();
    n.update_state(move |s| {
        s.set_bucket_props(b"b", props, &me);
        (true, ())
    })
    .await
    .unwrap();
    c.wait_for(WAIT, "every node to know the datatype", |c| {
        c.running()
            .iter()
            .all(|i| c.node(*i).state.read().bucket_props(b"b").datatype == Some(t))
    })
    .await
    .unwrap();
}

fn params(r: Option<&str>, w: Option<&str>) -> ConsistencyParams {
    let q = |s: &str| s.parse::<Quorum>().unwrap();
    ConsistencyParams {
        r: r.map(q),
        w: w.map(q),
        ..ConsistencyParams::default()
    }
}

async fn update_via(
    c: &TestCluster,
    i: usize,
    key: &str,
    op: &str,
    context: Option<Context<Actor>>,
    w: &str,
) -> Object {
    let req = UpdateRequest {
        bucket: b"b".to_vec(),
        key: key.as_bytes().to_vec(),
        op: op.to_string(),
        context,
        params: params(None, Some(w)),
        timeout: Some(Duration::from_secs(5)),
    };
    match update(&c.node(i), req).await {
        Ok(o) => o,
        Err(e) => panic!("update {key} {op} via n{i}: {e}\n{}", c.describe()),
    }
}

/// A read of every replica (r = all), retried while replicas come back: the merged value,
/// its context, and how many siblings the stored objects held.
async fn read_all(
    c: &TestCluster,
    i: usize,
    key: &str,
) -> (serde_json::Value, Context<Actor>, usize) {
    let mut last = String::new();
    for _ in 0..100 {
        let req = || GetRequest {
            bucket: b"b".to_vec(),
            key: key.as_bytes().to_vec(),
            params: params(Some("all"), None),
            timeout: Some(Duration::from_secs(2)),
        };
        let siblings = match get(&c.node(i), req()).await {
            Ok(o) => o.object.map_or(0, |o| o.live_siblings(u64::MAX).len()),
            Err(e) => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match read(&c.node(i), req()).await {
            Ok(Some(s)) => return (s.value_json().unwrap(), s.context(), siblings),
            Ok(None) => return (serde_json::Value::Null, Context::new(), siblings),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "read of {key} via n{i} never met r=all: {last}\n{}",
        c.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_during_a_partition_converge_to_the_exact_sum() {
    let c = cluster(3, 1201, false, false).await;
    typed_bucket(&c, DataType::Counter).await;
    update_via(&c, 1, "hits", r#"{"increment": 100}"#, None, "all").await;
    c.partition(&[1], &[2, 3]);
    wait_reachability(&c, 1, &[2, 3], false).await;
    wait_reachability(&c, 2, &[1], false).await;
    // Both sides coordinate increments of the same key, each unaware of the other.
    for _ in 0..5 {
        update_via(&c, 1, "hits", r#"{"increment": 3}"#, None, "1").await;
        update_via(&c, 2, "hits", r#"{"increment": -1}"#, None, "1").await;
        update_via(&c, 3, "hits", r#"{"increment": 10}"#, None, "1").await;
    }
    c.heal();
    wait_reachability(&c, 1, &[2, 3], true).await;
    wait_reachability(&c, 2, &[1], true).await;
    let expected = 100 + 5 * (3 - 1 + 10);
    let (value, _, siblings) = read_all(&c, 2, "hits").await;
    assert_eq!(value, serde_json::json!(expected));
    // The two sides left concurrent versions; the read joined them.
    assert!(
        siblings >= 2,
        "expected siblings to merge, found {siblings}"
    );
    // The next update through any node supersedes them with the merged state: the versions
    // it covers are those its coordinator holds, so wait for that read's repair to reach
    // node 1 (repairs are sent after the answer).
    let k = {
        let n = c.node(1);
        let size = n.state.read().ring_size();
        riftkv_core::storage::ObjectKey::new(
            riftkv_core::ring::partition_for(b"b", b"hits", size),
            b"b".to_vec(),
            b"hits".to_vec(),
        )
    };
    c.wait_for(
        WAIT,
        "node 1 to hold every concurrent version",
        |c| matches!(c.node(1).local_object(&k), Ok(Some(o)) if o.sibling_count() >= siblings),
    )
    .await
    .unwrap();
    update_via(&c, 1, "hits", r#"{"increment": 1}"#, None, "all").await;
    let (value, _, siblings) = read_all(&c, 3, "hits").await;
    assert_eq!(value, serde_json::json!(expected + 1));
    assert_eq!(siblings, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_add_wins_over_a_remove() {
    let c = cluster(3, 1202, false, false).await;
    typed_bucket(&c, DataType::Set).await;
    update_via(&c, 1, "s", r#"{"add": ["x", "y"]}"#, None, "all").await;
    let (_, seen, _) = read_all(&c, 2, "s").await;
    c.partition(&[1], &[2, 3]);
    wait_reachability(&c, 1, &[2, 3], false).await;
    wait_reachability(&c, 2, &[1], false).await;
    update_via(
        &c,
        2,
        "s",
        r#"{"remove": ["x", "y"]}"#,
        Some(seen.clone()),
        "1",
    )
    .await;
    update_via(&c, 1, "s", r#"{"add": ["x"]}"#, None, "1").await;
    c.heal();
    wait_reachability(&c, 1, &[2, 3], true).await;
    wait_reachability(&c, 2, &[1], true).await;
    // The re-add of x was concurrent with the remove: it survives; y was only removed.
    let (value, _, _) = read_all(&c, 3, "s").await;
    assert_eq!(value, serde_json::json!(["x"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remove_removes_only_what_its_context_saw() {
    let c = cluster(3, 1203, false, false).await;
    typed_bucket(&c, DataType::Set).await;
    update_via(&c, 1, "s", r#"{"add": ["a"]}"#, None, "all").await;
    let (value, seen_a, _) = read_all(&c, 2, "s").await;
    assert_eq!(value, serde_json::json!(["a"]));
    update_via(&c, 2, "s", r#"{"add": ["b"]}"#, None, "all").await;
    // The remover read before "b" was added: its remove of both leaves "b".
    update_via(&c, 3, "s", r#"{"remove": ["a", "b"]}"#, Some(seen_a), "all").await;
    let (value, _, siblings) = read_all(&c, 1, "s").await;
    assert_eq!(value, serde_json::json!(["b"]));
    assert_eq!(siblings, 1);
    // Removes without a context are refused before anything is written.
    let e = update(
        &c.node(1),
        UpdateRequest {
            bucket: b"b".to_vec(),
            key: b"s".to_vec(),
            op: r#"{"remove": ["b"]}"#.into(),
            context: None,
            params: ConsistencyParams::default(),
            timeout: None,
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("needs the context of a read"), "{e}");
}

/// Increments through a primary, then through the same node after its disk was wiped.
async fn wiped_counter(old_rule: bool) -> Vec<String> {
    let mut c = cluster(3, 1204, old_rule, false).await;
    typed_bucket(&c, DataType::Counter).await;
    let (_, prim) = primaries(&c, "n");
    let x = prim[0];
    for _ in 0..5 {
        update_via(&c, x, "n", r#"{"increment": 1}"#, None, "all").await;
    }
    c.wipe(x);
    wait_settled(&c).await;
    typed_bucket(&c, DataType::Counter).await;
    for _ in 0..3 {
        update_via(&c, x, "n", r#"{"increment": 1}"#, None, "2").await;
    }
    let (value, _, _) = read_all(&c, x, "n").await;
    vec![value.to_string()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_disk_loses_no_increment() {
    keeps_and_old_rule_loses("wiped_counter", wiped_counter, &["8"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_no_replica_forwards_updates_with_their_context() {
    let c = cluster(4, 1205, false, false).await;
    typed_bucket(&c, DataType::Set).await;
    let (_, prim) = primaries(&c, "fwd");
    let outsider = (1..=4)
        .find(|i| !prim.contains(i))
        .expect("four nodes, three replicas");
    // Both the operation and the decoded context travel in the forwarded request.
    let o = update_via(&c, outsider, "fwd", r#"{"add": ["a", "b"]}"#, None, "all").await;
    assert_eq!(o.live_siblings(u64::MAX).len(), 1);
    let (_, seen, _) = read_all(&c, outsider, "fwd").await;
    update_via(
        &c,
        outsider,
        "fwd",
        r#"{"remove": ["a"]}"#,
        Some(seen),
        "all",
    )
    .await;
    let (value, _, _) = read_all(&c, prim[0], "fwd").await;
    assert_eq!(value, serde_json::json!(["b"]));
    // The outsider holds no copy: a replica coordinated both updates.
    let p = riftkv_core::ring::partition_for(b"b", b"fwd", c.node(1).state.read().ring_size());
    let k = riftkv_core::storage::ObjectKey::new(p, b"b".to_vec(), b"fwd".to_vec());
    assert!(c.node(outsider).local_object(&k).unwrap().is_none());
}
