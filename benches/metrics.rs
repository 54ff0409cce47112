//! What the metrics cost per client request, against the request itself.
//!
//! (a) a PUT then a GET through the coordinator of an in-process 3-node cluster (simulated
//!     network, in-memory storage): the cheapest a request can be, so the ratio below is an
//!     upper bound of what metrics add to a real request over TCP and RocksDB;
//! (b) the metric updates the same PUT+GET makes: the API's `observe_request` for each, the
//!     clock-entries and siblings histograms, and one `observe_rpc` per replica call (two per
//!     request with n = 3).
//!
//! After criterion's runs, prints the cost of (b) as a share of (a); the budget is 3%.

#[path = "support/mod.rs"]
mod support;

use criterion::{Criterion, black_box};
use riftkv_cluster::coordinator::quorum::ConsistencyParams;
use riftkv_cluster::coordinator::{GetRequest, PutRequest, get, put};
use riftkv_cluster::metrics::Metrics;
use riftkv_cluster::node::Node;
use riftkv_cluster::testkit::TestCluster;
use std::sync::Arc;
use std::time::Duration;
use support::{best_mean, runtime};
use tokio::runtime::Runtime;

/// Share of a request's cost metrics may take.
const BUDGET: f64 = 0.03;

fn cluster(rt: &Runtime) -> (TestCluster, Arc<Node>) {
    rt.block_on(async {
        let c = TestCluster::start(3, 7);
        c.wait_settled(Duration::from_secs(20))
            .await
            .expect("cluster settles");
        let node = c.node(1);
        (c, node)
    })
}

async fn put_get(node: &Arc<Node>, i: u64) {
    let key = format!("user:{:06}", i % 1000).into_bytes();
    let out = put(
        node,
        PutRequest {
            bucket: b"bench".to_vec(),
            key: key.clone(),
            value: bytes::Bytes::from_static(b"a value of a typical small size, 64 bytes long...."),
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
    let got = get(
        node,
        GetRequest {
            bucket: b"bench".to_vec(),
            key,
            params: ConsistencyParams::default(),
            timeout: None,
        },
    )
    .await
    .expect("get");
    black_box(got);
}

/// Every metric update of one PUT and one GET, as the API and the coordinator make them.
fn metrics_of_put_get(m: &Metrics, elapsed: Duration) {
    m.clock_entries.observe(black_box(2.0));
    m.observe_rpc("replica_put", "ok", elapsed / 4);
    m.observe_rpc("replica_put", "ok", elapsed / 3);
    m.observe_request("put", "204", elapsed);
    m.observe_rpc("replica_get", "ok", elapsed / 4);
    m.observe_rpc("replica_get", "ok", elapsed / 3);
    m.siblings.observe(black_box(1.0));
    m.observe_request("get", "200", elapsed);
}

fn bench(c: &mut Criterion, rt: &Runtime, node: &Arc<Node>) {
    let mut g = c.benchmark_group("metrics_overhead");
    let mut i = 0u64;
    g.bench_function("put_get_3_nodes", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(put_get(node, i))
        })
    });
    let m = Metrics::new();
    g.bench_function("metrics_of_put_get", |b| {
        b.iter(|| metrics_of_put_get(&m, black_box(Duration::from_micros(850))))
    });
    g.finish();
}

fn report_ratio(rt: &Runtime, node: &Arc<Node>, quick: bool) {
    let (rounds, n_req, n_met) = if quick {
        (1, 50, 1_000)
    } else {
        (5, 2_000, 200_000)
    };
    let request = best_mean(rounds, n_req, |i| rt.block_on(put_get(node, i)));
    let m = Metrics::new();
    let metrics = best_mean(rounds, n_met, |_| {
        metrics_of_put_get(&m, black_box(Duration::from_micros(850)))
    });
    let ratio = metrics.as_secs_f64() / request.as_secs_f64();
    println!(
        "metrics overhead: {:.0} ns of metric updates per PUT+GET of {:.1} us = {:.2}% (budget {:.0}%): {}",
        metrics.as_secs_f64() * 1e9,
        request.as_secs_f64() * 1e6,
        ratio * 100.0,
        BUDGET * 100.0,
        if ratio < BUDGET {
            "within budget"
        } else {
            "OVER BUDGET"
        }
    );
}

fn main() {
    let rt = runtime();
    let (cluster, node) = cluster(&rt);
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &rt, &node);
    c.final_summary();
    // `cargo test --benches` runs each benchmark once; keep the ratio quick there too.
    let quick = std::env::args().any(|a| a == "--test");
    report_ratio(&rt, &node, quick);
    drop(node);
    drop(cluster);
}
