//! Hot-path cost of the ring: hashing a key and finding its replicas.

use criterion::{BenchmarkId, Criterion, black_box, criterion_group, criterion_main};
use riftkv_core::ring::{Member, claim, key_hash, partition_for};

fn members(k: usize) -> Vec<Member> {
    (0..k)
        .map(|i| Member::new(format!("node-{i:02}"), Some(&format!("zone-{}", i % 3))))
        .collect()
}

fn preference_list_lookup(c: &mut Criterion) {
    let ring_size = 256;
    let ring = claim(ring_size, &members(8), 3, None);
    let keys: Vec<String> = (0..1024).map(|i| format!("user:{i:08}")).collect();
    // Build the cache outside the measurement; a ring builds it once per n.
    let _ = ring.preference_list(0, 3);
    let mut i = 0usize;
    c.bench_function("preflist_lookup_q256_n3", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            let p = partition_for(b"carts", black_box(keys[i].as_bytes()), ring_size);
            black_box(ring.preference_list(p, 3).len())
        })
    });
    c.bench_function("key_hash_16b", |b| {
        b.iter(|| key_hash(black_box(b"carts"), black_box(b"user:00000042")))
    });
}

fn claim_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("claim");
    group.sample_size(10);
    for &(q, k) in &[(64u32, 5usize), (256, 8), (1024, 17)] {
        let all = members(k + 1);
        let before = claim(q, &all[..k], 3, None);
        group.bench_with_input(
            BenchmarkId::new("join", format!("q{q}_k{k}")),
            &q,
            |b, &q| b.iter(|| claim(q, black_box(&all), 3, Some(&before))),
        );
    }
    group.finish();
}

criterion_group!(benches, preference_list_lookup, claim_cost);
criterion_main!(benches);
