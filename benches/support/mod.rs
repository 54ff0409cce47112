//! Helpers shared by the benches that drive an in-process cluster and print ratios.

use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// A runtime with as many workers as this machine's cores (two), for the cluster under test.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Mean time per iteration over the best of `rounds` rounds of `n` iterations; `f` gets the
/// iteration's number (from 1, counting across rounds).
pub fn best_mean(rounds: usize, n: u32, mut f: impl FnMut(u64)) -> Duration {
    let mut best = Duration::MAX;
    let mut i = 0u64;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..n {
            i += 1;
            f(i);
        }
        best = best.min(start.elapsed() / n);
    }
    best
}
