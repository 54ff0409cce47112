//! Put and get of 1 KiB values through `dyn Storage` on RocksDB, with and without a synced WAL.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use riftkv_core::storage::{ObjectKey, RocksStorage, Storage, WriteBatch};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const VALUE_LEN: usize = 1024;
const PRELOADED: u64 = 10_000;

fn key(i: u64) -> ObjectKey {
    ObjectKey::new(
        (i % 64) as u32,
        &b"bench"[..],
        format!("key-{i:012}").into_bytes(),
    )
}

fn put_one(s: &dyn Storage, i: u64, value: &[u8], sync: bool) {
    let mut b = WriteBatch::new();
    b.put_object(key(i), value.to_vec());
    if let Err(e) = s.write(b, sync) {
        panic!("bench write failed: {e}");
    }
}

fn bench_storage(c: &mut Criterion) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let storage: Arc<dyn Storage> = match RocksStorage::open(dir.path()) {
        Ok(s) => Arc::new(s),
        Err(e) => panic!("open: {e}"),
    };
    let value = vec![0xabu8; VALUE_LEN];

    let mut g = c.benchmark_group("storage_rocks_1KiB");
    g.throughput(Throughput::Elements(1));
    for sync in [false, true] {
        let name = if sync { "put_sync" } else { "put_nosync" };
        let mut next = 1_000_000u64 * if sync { 2 } else { 1 };
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    next += 1;
                    next
                },
                |i| put_one(storage.as_ref(), i, &value, sync),
                BatchSize::SmallInput,
            )
        });
    }

    for i in 0..PRELOADED {
        put_one(storage.as_ref(), i, &value, false);
    }
    if let Err(e) = storage.flush() {
        panic!("flush: {e}");
    }
    let mut i = 0u64;
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % PRELOADED;
            let v = storage.get_object(&key(i));
            black_box(v.map(|v| v.map(|v| v.len())).ok())
        })
    });
    g.bench_function("get_miss", |b| {
        b.iter(|| {
            i += 1;
            black_box(storage.get_object(&key(PRELOADED * 10 + i)).ok())
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_storage
}
criterion_main!(benches);
