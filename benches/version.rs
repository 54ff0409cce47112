//! Micro-benchmarks of the version layer: DVV update and sync by sibling count, and object
//! encoding by value size.

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use riftkv_core::types::NodeId;
use riftkv_core::version::{ConflictMode, Limits, Object, Sibling, VersionVector};

const MODE: ConflictMode = ConflictMode::Siblings;

/// An object with `siblings` concurrent versions written through three coordinators.
fn object_with(siblings: usize, value_len: usize) -> Object {
    let limits = Limits::default();
    let mut o = Object::new();
    for i in 0..siblings {
        let actor = NodeId(format!("node-{}", i % 3));
        let sib = Sibling::new(
            vec![i as u8; value_len],
            "application/octet-stream",
            1_700_000_000_000 + i as u64,
        );
        o = Object::update(Some(&o), &VersionVector::new(), &actor, sib, MODE, &limits)
            .expect("within limits");
    }
    o
}

fn bench_update(c: &mut Criterion) {
    let mut g = c.benchmark_group("dvv_update");
    let limits = Limits::default();
    let actor = NodeId::from("node-0");
    for n in [1usize, 3, 10] {
        let stored = object_with(n, 100);
        let ctx = stored.context();
        let sib = Sibling::new(vec![7u8; 100], "text/plain", 1_800_000_000_000);
        g.bench_with_input(BenchmarkId::new("with_read_context", n), &n, |b, _| {
            b.iter(|| {
                Object::update(
                    Some(black_box(&stored)),
                    &ctx,
                    &actor,
                    sib.clone(),
                    MODE,
                    &limits,
                )
            })
        });
        let empty = VersionVector::new();
        g.bench_with_input(BenchmarkId::new("no_context", n), &n, |b, _| {
            b.iter(|| {
                Object::update(
                    Some(black_box(&stored)),
                    &empty,
                    &actor,
                    sib.clone(),
                    MODE,
                    &limits,
                )
            })
        });
    }
    g.finish();
}

fn bench_sync(c: &mut Criterion) {
    let mut g = c.benchmark_group("dvv_sync");
    let limits = Limits::default();
    for n in [1usize, 3, 10] {
        // two replicas that share `n` siblings, one of which took a further concurrent write
        let base = object_with(n, 100);
        let ahead = Object::update(
            Some(&base),
            &VersionVector::new(),
            NodeId::from("node-1"),
            Sibling::new(vec![1u8; 100], "text/plain", 1_800_000_000_000),
            MODE,
            &limits,
        )
        .expect("within limits");
        g.bench_with_input(BenchmarkId::new("siblings", n), &n, |b, _| {
            b.iter(|| black_box(&base).sync(black_box(&ahead)))
        });
        g.bench_with_input(BenchmarkId::new("lww", n), &n, |b, _| {
            b.iter(|| black_box(&base).sync_mode(black_box(&ahead), ConflictMode::Lww))
        });
    }
    g.finish();
}

fn bench_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("object_codec");
    for (name, len) in [("100B", 100usize), ("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let o = object_with(1, len);
        let bytes = o.encode();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| black_box(&o).encode())
        });
        g.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| Object::decode(black_box(&bytes)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_update, bench_sync, bench_codec);
criterion_main!(benches);
