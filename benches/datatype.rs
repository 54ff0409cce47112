//! What a data type update costs against a plain write, through the coordinator of an
//! in-process 3-node cluster (simulated network, in-memory storage, n = 3, w = quorum):
//! (a) a blind PUT of an 8-byte value into a last-writer-wins bucket, and (b) a counter
//! increment, each over 1000 keys. An increment
//! reads the coordinator's copy, joins its siblings, applies the operation and stores the new
//! state before replicating it, where a PUT only stores; the ratio printed after criterion's
//! runs is that read-modify-write's price.

#[path = "support/mod.rs"]
mod support;

use criterion::{Criterion, black_box};
use riftkv_cluster::coordinator::quorum::ConsistencyParams;
use riftkv_cluster::coordinator::{PutRequest, UpdateRequest, put, update};
use riftkv_cluster::node::Node;
use riftkv_cluster::testkit::TestCluster;
use riftkv_core::bucket::DataType;
use riftkv_core::version::ConflictMode;
use std::sync::Arc;
use std::time::Duration;
use support::{best_mean, runtime};
use tokio::runtime::Runtime;

/// A settled cluster whose bucket `counters` holds counters and whose bucket `plain` is
/// last-writer-wins (a blind PUT replaces the value instead of piling up siblings, so it is
/// the cheapest plain write there is).
fn cluster(rt: &Runtime) -> (TestCluster, Arc<Node>) {
    rt.block_on(async {
        let c = TestCluster::start(3, 11);
        c.wait_settled(Duration::from_secs(20))
            .await
            .expect("cluster settles");
        let node = c.node(1);
        let mut props = node.state.read().bucket_props(b"counters");
        props.datatype = Some(DataType::Counter);
        let mut plain = node.state.read().bucket_props(b"plain");
        plain.conflict = ConflictMode::Lww;
        let me = node.id.clone();
        node.update_state(move |s| {
            s.set_bucket_props(b"counters", props, &me);
            s.set_bucket_props(b"plain", plain, &me);
            (true, ())
        })
        .await
        .expect("bucket props");
        c.wait_for(Duration::from_secs(20), "every node knows the type", |c| {
            c.running().iter().all(|i| {
                let node = c.node(*i);
                let s = node.state.read();
                s.bucket_props(b"counters").datatype == Some(DataType::Counter)
                    && s.bucket_props(b"plain").conflict == ConflictMode::Lww
            })
        })
        .await
        .expect("props spread");
        (c, node)
    })
}

async fn plain_put(node: &Arc<Node>, i: u64) {
    let out = put(
        node,
        PutRequest {
            bucket: b"plain".to_vec(),
            key: format!("k{:04}", i % 1000).into_bytes(),
            value: bytes::Bytes::copy_from_slice(&i.to_be_bytes()),
            content_type: "application/octet-stream".into(),
            context: None,
            if_none_match: false,
            params: ConsistencyParams::default(),
            timeout: None,
            ttl: None,
        },
    )
    .await
    .expect("put");
    black_box(out);
}

async fn increment(node: &Arc<Node>, i: u64) {
    let out = update(
        node,
        UpdateRequest {
            bucket: b"counters".to_vec(),
            key: format!("k{:04}", i % 1000).into_bytes(),
            op: r#"{"increment": 1}"#.to_string(),
            context: None,
            params: ConsistencyParams::default(),
            timeout: None,
        },
    )
    .await
    .expect("increment");
    black_box(out);
}

fn main() {
    let rt = runtime();
    let (cluster, node) = cluster(&rt);
    // No charts: they need fonts this machine may not have, and the ratio below is the result.
    let mut c = Criterion::default().without_plots().configure_from_args();
    {
        let mut g = c.benchmark_group("datatype");
        let mut i = 0u64;
        g.bench_function("put_3_nodes", |b| {
            b.iter(|| {
                i += 1;
                rt.block_on(plain_put(&node, i))
            })
        });
        g.bench_function("counter_increment_3_nodes", |b| {
            b.iter(|| {
                i += 1;
                rt.block_on(increment(&node, i))
            })
        });
        g.finish();
    }
    c.final_summary();
    // `cargo test --benches` runs each benchmark once; keep the ratio quick there too.
    let (rounds, n) = if std::env::args().any(|a| a == "--test") {
        (1, 50)
    } else {
        (5, 2_000)
    };
    // Alternate the two so drift of this noisy machine hits both alike.
    let (mut put_best, mut inc_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        put_best = put_best.min(best_mean(1, n, |i| rt.block_on(plain_put(&node, i))));
        inc_best = inc_best.min(best_mean(1, n, |i| rt.block_on(increment(&node, i))));
    }
    println!(
        "counter increment {:.1} us / plain PUT {:.1} us = {:.2}x",
        inc_best.as_secs_f64() * 1e6,
        put_best.as_secs_f64() * 1e6,
        inc_best.as_secs_f64() / put_best.as_secs_f64()
    );
    drop(node);
    drop(cluster);
}
