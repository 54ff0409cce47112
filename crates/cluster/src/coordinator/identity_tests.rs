//! Write identities under amnesia, in-process: every way a node can forget a key's history
//! (a wiped disk, a damaged record, a fallback's delivered hint, a power cut that drops the
//! unsynced WAL tail, a reaped tombstone) followed by a write through that node. Each scenario
//! runs twice: with write identities every acknowledged write survives; with the planted old
//! rule (the bare node id as actor) the same schedule loses one, which proves the scenario
//! really exercises the bug.

use super::*;
use crate::testkit::{ClusterOptions, TestCluster, id_of};
use bytes::Bytes;
use riftkv_core::storage::ObjectKey;
use riftkv_core::types::{NodeId, PartitionId};
use riftkv_core::version::{Object, VersionVector};
use std::sync::Arc;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(20);

pub(super) async fn cluster(nodes: usize, seed: u64, old_rule: bool, hints: bool) -> TestCluster {
    let mut opts = ClusterOptions {
        settings: Some(Arc::new(move |s: &mut crate::node::NodeSettings| {
            s.faults.old_dot_rule = old_rule;
        })),
        ..ClusterOptions::default()
    };
    if hints {
        opts = opts.with_hint_delivery();
    }
    let c = TestCluster::start_with(nodes, seed, opts);
    if let Err(e) = c.wait_settled(SETTLE).await {
        panic!("{e}");
    }
    c
}

/// A quorum as a client spells it, parsed as the API does.
fn quorum(text: &str) -> riftkv_core::bucket::Quorum {
    text.parse().unwrap()
}

fn params(r: Option<&str>, w: Option<&str>, dw: Option<&str>) -> ConsistencyParams {
    ConsistencyParams {
        r: r.map(quorum),
        w: w.map(quorum),
        dw: dw.map(quorum),
        ..ConsistencyParams::default()
    }
}

async fn put_via(
    c: &TestCluster,
    i: usize,
    key: &str,
    value: &str,
    context: Option<VersionVector>,
    w: &str,
    dw: &str,
) -> Object {
    let req = PutRequest {
        bucket: b"b".to_vec(),
        key: key.as_bytes().to_vec(),
        value: Bytes::from(value.as_bytes().to_vec()),
        content_type: "text/plain".into(),
        context,
        if_none_match: false,
        params: params(None, Some(w), Some(dw)),
        timeout: Some(Duration::from_secs(5)),
        ttl: None,
    };
    match put(&c.node(i), req).await {
        Ok(o) => o.object,
        Err(e) => panic!("put {key}={value} via n{i}: {e}\n{}", c.describe()),
    }
}

async fn delete_via(c: &TestCluster, i: usize, key: &str, context: Option<VersionVector>) {
    let req = DeleteRequest {
        bucket: b"b".to_vec(),
        key: key.as_bytes().to_vec(),
        context,
        params: params(None, Some("all"), None),
        timeout: Some(Duration::from_secs(5)),
    };
    if let Err(e) = delete(&c.node(i), req).await {
        panic!("delete {key} via n{i}: {e}");
    }
}

/// The object a read of every replica returns (r = all), retried while replicas come back.
async fn read_all(c: &TestCluster, i: usize, key: &str) -> Option<Object> {
    let mut last = String::new();
    for _ in 0..100 {
        let req = GetRequest {
            bucket: b"b".to_vec(),
            key: key.as_bytes().to_vec(),
            params: params(Some("all"), None, None),
            timeout: Some(Duration::from_secs(2)),
        };
        match get(&c.node(i), req).await {
            Ok(o) => return o.object,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "read of {key} via n{i} never met r=all: {last}\n{}",
        c.describe()
    );
}

fn live(o: &Option<Object>) -> Vec<String> {
    let mut v: Vec<String> = o
        .iter()
        .flat_map(|o| o.siblings())
        .filter(|(_, s)| !s.deleted)
        .map(|(_, s)| String::from_utf8_lossy(&s.value).into_owned())
        .collect();
    v.sort();
    v
}

fn index_of(id: &NodeId) -> usize {
    id.as_str()
        .trim_start_matches('n')
        .parse()
        .unwrap_or_else(|_| panic!("test node id {id} is not n<i>"))
}

/// Partition and primary node indexes of `b/key`.
pub(super) fn primaries(c: &TestCluster, key: &str) -> (PartitionId, Vec<usize>) {
    let n = c.node(c.running()[0]);
    let s = n.state.read();
    let p = riftkv_core::ring::partition_for(b"b", key.as_bytes(), s.ring_size());
    (
        p,
        s.ring.preference_list(p, 3).iter().map(index_of).collect(),
    )
}

async fn wait_all_reachable(c: &TestCluster) {
    let running = c.running();
    let r = c
        .wait_for(WAIT, "every running node to see every other as up", |c| {
            running.iter().all(|i| {
                let n = c.node(*i);
                running.iter().all(|j| n.is_reachable(&id_of(*j)))
            })
        })
        .await;
    if let Err(e) = r {
        panic!("{e}\n{}", c.describe());
    }
}

pub(super) async fn wait_settled(c: &TestCluster) {
    if let Err(e) = c.wait_settled(SETTLE).await {
        panic!("{e}");
    }
    wait_all_reachable(c).await;
}

fn vec_of(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---- a wiped disk --------------------------------------------------------------------------

async fn wiped_disk(old_rule: bool) -> Vec<String> {
    let mut c = cluster(3, 901, old_rule, false).await;
    let (_, prim) = primaries(&c, "wipe");
    let x = prim[0];
    put_via(&c, x, "wipe", "v1", None, "all", "0").await;
    c.wipe(x);
    wait_settled(&c).await;
    put_via(&c, x, "wipe", "v2", None, "2", "0").await;
    live(&read_all(&c, x, "wipe").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_disk_never_reissues_a_dot() {
    keeps_and_old_rule_loses("wiped_disk", wiped_disk, &["v1", "v2"]).await;
}

/// Runs `scenario` under the current dot rule, which must keep exactly `expect`, and under
/// the old rule (node id as actor), which must lose a write: proof the scenario really
/// exercises the bug it guards against.
pub(super) async fn keeps_and_old_rule_loses<F, Fut>(name: &str, scenario: F, expect: &[&str])
where
    F: Fn(bool) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    assert_eq!(scenario(false).await, vec_of(expect));
    let old = scenario(true).await;
    eprintln!("{name}: the old dot rule keeps {old:?}");
    assert_ne!(
        old,
        vec_of(expect),
        "the old dot rule should lose a write here"
    );
}

// ---- a damaged record at the coordinator ---------------------------------------------------

async fn damaged_at_coordinator(old_rule: bool) -> Vec<String> {
    let c = cluster(3, 902, old_rule, false).await;
    let (_, prim) = primaries(&c, "dmg");
    let x = prim[0];
    put_via(&c, x, "dmg", "v1", None, "all", "0").await;
    assert!(c.damage(x, b"b", b"dmg"), "n{x} holds dmg");
    put_via(&c, x, "dmg", "v2", None, "all", "0").await;
    live(&read_all(&c, x, "dmg").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_local_record_never_reissues_a_dot() {
    keeps_and_old_rule_loses(
        "damaged_at_coordinator",
        damaged_at_coordinator,
        &["v1", "v2"],
    )
    .await;
}

// ---- a damaged record replaced by a lagging replica's copy (riak_kv#1643) ----------------

async fn damaged_then_replaced(old_rule: bool) -> Vec<String> {
    let c = cluster(3, 903, old_rule, false).await;
    let (_, prim) = primaries(&c, "lag");
    let (x, y, z) = (prim[0], prim[1], prim[2]);
    let v1 = put_via(&c, x, "lag", "v1", None, "all", "0").await;
    // x writes v1b while y cannot hear it: only x and z hold it.
    c.partition(&[x], &[y]);
    let ctx = v1.context();
    put_via(&c, x, "lag", "v1b", Some(ctx.clone()), "2", "0").await;
    // x's record is damaged; y (which never saw v1b) writes over v1 and sends it to x.
    assert!(c.damage(x, b"b", b"lag"));
    c.heal();
    wait_all_reachable(&c).await;
    c.partition(&[y], &[z]);
    put_via(&c, y, "lag", "vy", Some(ctx), "2", "0").await;
    c.heal();
    wait_all_reachable(&c).await;
    // x now holds y's copy, which knows only x's first write. Its next write must not be
    // named like v1b.
    put_via(&c, x, "lag", "v2", None, "all", "0").await;
    live(&read_all(&c, x, "lag").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_replaced_by_a_lagging_copy_never_reissues_a_dot() {
    keeps_and_old_rule_loses(
        "damaged_then_replaced",
        damaged_then_replaced,
        &["v1b", "v2", "vy"],
    )
    .await;
}

// ---- a fallback's second outage ------------------------------------------------------------

fn hint_count(c: &TestCluster, i: usize) -> u64 {
    c.node(i)
        .storage
        .hint_counts()
        .map(|v| v.iter().map(|(_, n)| *n).sum())
        .unwrap_or(u64::MAX)
}

async fn fallback_second_outage(old_rule: bool) -> Vec<String> {
    let mut c = cluster(6, 904, old_rule, true).await;
    let (p, prim) = primaries(&c, "fb");
    let others: Vec<usize> = (1..=6).filter(|i| !prim.contains(i)).collect();
    for round in ["v1", "v2"] {
        for i in &prim {
            c.kill(*i);
        }
        let r = c
            .wait_for(WAIT, "every running node to see the primaries down", |c| {
                others.iter().all(|o| {
                    let n = c.node(*o);
                    prim.iter().all(|i| !n.is_reachable(&id_of(*i)))
                })
            })
            .await;
        r.unwrap();
        // The first serving fallback coordinates (as a non-primary would forward to it).
        let serving = c.node(others[0]).serving(p, 3);
        let f = index_of(&serving[0].0);
        assert!(!serving[0].1.is_primary(), "n{f} serves as a fallback");
        put_via(&c, f, "fb", round, None, "1", "0").await;
        for i in &prim {
            c.restart(*i);
        }
        wait_all_reachable(&c).await;
        let r = c
            .wait_for(WAIT, "every hint to be delivered", |c| {
                others.iter().all(|i| hint_count(c, *i) == 0)
            })
            .await;
        r.unwrap();
    }
    live(&read_all(&c, prim[0], "fb").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_coordinating_again_after_delivery_never_reissues_a_dot() {
    keeps_and_old_rule_loses(
        "fallback_second_outage",
        fallback_second_outage,
        &["v1", "v2"],
    )
    .await;
}

// ---- a power cut that drops the unsynced WAL tail ------------------------------------------

async fn power_cut(old_rule: bool) -> Vec<String> {
    let mut c = cluster(3, 905, old_rule, false).await;
    let (_, prim) = primaries(&c, "pwr");
    let x = prim[0];
    // v1 is durable everywhere; v1b reaches every replica but x never syncs it.
    let v1 = put_via(&c, x, "pwr", "v1", None, "all", "all").await;
    c.track_durability(x);
    let ctx = v1.context();
    put_via(&c, x, "pwr", "v1b", Some(ctx), "all", "0").await;
    let lost = c.power_cut(x, 0);
    assert!(lost > 0, "the power cut dropped writes");
    wait_settled(&c).await;
    let k = ObjectKey::new(primaries(&c, "pwr").0, b"b".to_vec(), b"pwr".to_vec());
    let local = c.node(x).local_object(&k).unwrap();
    assert_eq!(live(&local), vec_of(&["v1"]), "n{x} lost v1b");
    put_via(&c, x, "pwr", "v2", None, "2", "0").await;
    live(&read_all(&c, x, "pwr").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_losing_the_wal_tail_never_reissues_a_dot() {
    keeps_and_old_rule_loses("power_cut", power_cut, &["v1b", "v2"]).await;
}

// ---- a reaped tombstone still held by an old replica ("doomstone") -------------------------

async fn doomstone(old_rule: bool) -> Vec<String> {
    let c = cluster(3, 906, old_rule, false).await;
    let (p, prim) = primaries(&c, "doom");
    let (x, y, z) = (prim[0], prim[1], prim[2]);
    put_via(&c, x, "doom", "v1", None, "all", "0").await;
    delete_via(&c, x, "doom", None).await;
    // Reaping removed the tombstone from x and y; z, an old replica, still holds it.
    let k = ObjectKey::new(p, b"b".to_vec(), b"doom".to_vec());
    for i in [x, y] {
        let o = c.node(i).local_object(&k).unwrap();
        assert!(
            o.is_some_and(|o| o.all_deleted()),
            "n{i} holds the tombstone"
        );
        let mut batch = riftkv_core::storage::WriteBatch::default();
        batch.delete_object(k.clone());
        c.node(i).storage.write(batch, false).unwrap();
    }
    c.partition(&[z], &[x, y]);
    put_via(&c, x, "doom", "v2", None, "2", "0").await;
    c.heal();
    wait_all_reachable(&c).await;
    live(&read_all(&c, x, "doom").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_after_reaping_is_not_swallowed_by_an_old_tombstone() {
    keeps_and_old_rule_loses("doomstone", doomstone, &["v2"]).await;
}

// ---- clocks stay bounded ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_stays_bounded_over_a_thousand_restarts() {
    let mut c = cluster(3, 907, false, false).await;
    let (p, prim) = primaries(&c, "bound");
    let x = prim[0];
    let k = ObjectKey::new(p, b"b".to_vec(), b"bound".to_vec());
    let mut ctx: Option<VersionVector> = None;
    for round in 0..1000 {
        // The process dies and starts again on the same boot: the disk kept every write.
        c.restart(x);
        let obj = put_via(&c, x, "bound", &format!("v{round}"), ctx.take(), "1", "0").await;
        ctx = Some(obj.context());
    }
    let local = c.node(x).local_object(&k).unwrap().unwrap();
    let mine = local.actors().filter(|a| a.node == id_of(x)).count();
    assert_eq!(mine, 1, "one write identity of n{x} after 1000 restarts");
    assert_eq!(local.clock_entries(), 1);
    // Each power cut may have lost history, so each adds at most one identity.
    c.track_durability(x);
    for round in 0..10 {
        c.power_cut(x, usize::MAX);
        let obj = put_via(&c, x, "bound", &format!("p{round}"), ctx.take(), "1", "0").await;
        ctx = Some(obj.context());
    }
    let local = c.node(x).local_object(&k).unwrap().unwrap();
    assert_eq!(local.clock_entries(), 11);
    assert_eq!(live(&Some(local)), vec_of(&["p9"]));
}

// ---- reaping cannot be undone by repair ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_reaped_tombstone_is_not_copied_back_by_read_repair() {
    let c = cluster(3, 908, false, false).await;
    let (p, prim) = primaries(&c, "half");
    let (x, y) = (prim[0], prim[1]);
    put_via(&c, x, "half", "v1", None, "all", "0").await;
    delete_via(&c, x, "half", None).await;
    let k = ObjectKey::new(p, b"b".to_vec(), b"half".to_vec());
    let tomb = c.node(x).local_object(&k).unwrap().unwrap();
    assert!(tomb.all_deleted());
    // A reap from another ring version is refused.
    let ring = c.node(x).state.read().ring_version;
    let n = c.node(x);
    assert!(!crate::replica::reap::delete_if_unchanged(&n, &k, &tomb.encode(), ring + 1).unwrap());
    // x reaps; y and z still hold the tombstone.
    assert!(crate::replica::reap::delete_if_unchanged(&n, &k, &tomb.encode(), ring).unwrap());
    assert_eq!(c.node(x).local_object(&k).unwrap(), None);
    // A read through y sees x lacking the key and repairs it with the tombstone: x holds it
    // back. (Reads return "not found" either way.)
    let seen = read_all(&c, y, "half").await;
    assert!(live(&seen).is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.node(x).local_object(&k).unwrap(),
        None,
        "the reaped tombstone came back"
    );
    // A newer write is stored as usual, through x or arriving from another coordinator.
    put_via(&c, y, "half", "v2", None, "all", "0").await;
    let back = c.node(x).local_object(&k).unwrap();
    assert_eq!(live(&back), vec_of(&["v2"]));
}

// ---- last write wins never goes backwards on one key -----------------------------------------

async fn lww_through_a_lagging_clock(fixed: bool) -> Vec<String> {
    let mut c = cluster(3, 909, false, false).await;
    let (_, prim) = primaries(&c, "lww");
    let (x, y) = (prim[0], prim[1]);
    let mut props = riftkv_core::bucket::BucketProps::with_n(3);
    props.conflict = riftkv_core::version::ConflictMode::Lww;
    let n = c.node(1);
    let mode = props.conflict;
    n.update_state(|s| {
        s.set_bucket_props(b"b", props.clone(), &n.id);
        (true, ())
    })
    .await
    .unwrap();
    c.wait_for(WAIT, "the lww props to reach every node", |c| {
        (1..=3).all(|i| c.node(i).state.read().bucket_props(b"b").conflict == mode)
    })
    .await
    .unwrap();
    // y's clock runs 60 s behind.
    c.set_clock(y, Arc::new(riftkv_core::types::OffsetClock(-60_000)));
    c.restart(y);
    wait_all_reachable(&c).await;
    let v1 = put_via(&c, x, "lww", "v1", None, "all", "0").await;
    let ctx = v1.context();
    if fixed {
        put_via(&c, y, "lww", "v2", Some(ctx), "all", "0").await;
    } else {
        // What a coordinator stamping its own clock alone would write: v2 sixty seconds
        // "before" v1. Stored straight into every replica through the merge path.
        let (p, _) = primaries(&c, "lww");
        let k = ObjectKey::new(p, b"b".to_vec(), b"lww".to_vec());
        let stale = riftkv_core::version::Sibling::new(
            Bytes::from_static(b"v2"),
            "text/plain",
            c.node(y).clock.now_ms(),
        );
        let obj = Object::update(
            Some(&v1),
            &v1.context(),
            riftkv_core::version::Actor::new(id_of(y), 1),
            stale,
            mode,
            &riftkv_core::version::Limits::default(),
        )
        .unwrap();
        for i in 1..=3 {
            c.node(i).merge_local(&k, &obj, mode, false).unwrap();
        }
    }
    live(&read_all(&c, x, "lww").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lww_through_a_node_sixty_seconds_behind_keeps_the_newer_value() {
    assert_eq!(lww_through_a_lagging_clock(true).await, vec_of(&["v2"]));
    // Stamped with the lagging clock alone, the newer write loses.
    assert_eq!(lww_through_a_lagging_clock(false).await, vec_of(&["v1"]));
}
