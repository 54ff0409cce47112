//! The open loop measures queueing: against a server that stalls every request for 1 s
//! during one window, the operations that should have been sent meanwhile wait, and their
//! latency counts from their intended start. A closed loop sends nothing while it waits, so
//! the same stall hides in its percentiles (coordinated omission).
//!
//! Both runs use 4 workers: at most 4 requests reach the server inside the window, under 1%
//! of the open loop's 600 operations, so only the backlog measured from the intended starts
//! (about 200 operations waiting up to 1 s) can lift its p99 near 1 s. Measuring from the
//! actual send instead makes this test fail.

mod common;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::get;
use riftkv_bench::generator::Distribution;
use riftkv_bench::report::{RunInfo, Summary};
use riftkv_bench::runner::{self, Bound, Pace, RunConfig};
use riftkv_bench::target::riftkv::RiftKv;
use riftkv_bench::target::{Target, TargetOptions};
use riftkv_bench::workload::{OpKind, Workload};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Requests arriving in `[stall_from, stall_from + 1 s)` are answered 1 s late.
#[derive(Clone)]
struct Fake {
    stall_from: Instant,
}

const STALL: Duration = Duration::from_secs(1);

async fn object(State(f): State<Fake>) -> (StatusCode, HeaderMap, &'static str) {
    let now = Instant::now();
    if now >= f.stall_from && now < f.stall_from + STALL {
        tokio::time::sleep(STALL).await;
    }
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("x-riftkv-context", HeaderValue::from_static("c1"));
    (
        StatusCode::OK,
        h,
        r#"{"context":"c1","siblings":[{"value_base64":"YQ==","deleted":false}]}"#,
    )
}

/// A fake RiftKV node on 127.0.0.1 that stalls from 1 s after it starts; stopped on drop.
struct FakeNode {
    addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_node() -> FakeNode {
    let (listener, addr) = common::loopback().await;
    let state = Fake {
        stall_from: Instant::now() + Duration::from_secs(1),
    };
    let app = Router::new()
        .route("/v1/kv/{bucket}/{key}", get(object))
        .with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeNode { addr, task }
}

async fn run(pace: Pace, concurrency: usize) -> Summary {
    let node = fake_node().await;
    let opts = TargetOptions {
        bucket: "b".into(),
        connections: concurrency,
        ..TargetOptions::default()
    };
    let target: Arc<dyn Target> = Arc::new(
        RiftKv::new(std::slice::from_ref(&node.addr), &opts).unwrap_or_else(|e| panic!("{e}")),
    );
    let cfg = RunConfig {
        workload: Workload::C,
        distribution: Distribution::Uniform,
        records: 100,
        value_size: 10,
        concurrency,
        bound: Bound::Duration(Duration::from_secs(3)),
        pace,
        seed: 1,
        grace: runner::OPEN_LOOP_GRACE,
    };
    let (rec, elapsed) = runner::run(target, cfg).await;
    let info = RunInfo {
        target: node.addr.clone(),
        workload: "c".into(),
        distribution: "uniform".into(),
        mode: format!("{pace:?}"),
        concurrency,
        target_rate: None,
        records: 100,
        value_size: 10,
    };
    Summary::new(info, &rec, &[OpKind::Read], elapsed, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_counts_the_queueing_behind_a_stall() {
    let test = async {
        let open = run(Pace::Open(200.0), 4).await;
        let closed = run(Pace::Closed, 4).await;
        (open, closed)
    };
    let (open, closed) = tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .unwrap_or_else(|_| panic!("the runs took over 60 s"));
    let o = &open.ops["read"];
    let c = &closed.ops["read"];
    eprintln!(
        "open: {} ops p50 {} p99 {} max {}; closed: {} ops p50 {} p99 {} max {}",
        o.count, o.p50_ms, o.p99_ms, o.max_ms, c.count, c.p50_ms, c.p99_ms, c.max_ms
    );
    assert_eq!(o.errors + c.errors, 0, "{open:?} {closed:?}");
    // 600 operations scheduled over 3 s: all of them ran.
    assert_eq!(o.count, 600);
    assert!(
        o.p99_ms >= 900.0,
        "open loop p99 {} ms: the stall's queueing was not measured",
        o.p99_ms
    );
    // The closed loop saw the stall too (its slowest operations) ...
    assert!(c.max_ms >= 900.0, "closed loop max {} ms", c.max_ms);
    // ... but only as a handful of slow operations.
    assert!(
        o.p99_ms >= c.p99_ms,
        "open p99 {} < closed p99 {}",
        o.p99_ms,
        c.p99_ms
    );
}
