//! The background write limit of a RocksDB store, in a test binary of its own: a paced flush
//! holds RocksDB's flush threads, which every database of one process shares, and would slow
//! the flushes other storage tests wait for.

use riftkv_core::storage::{ObjectKey, RocksStorage, RocksTuning, Storage, WriteBatch};
use std::time::{Duration, Instant};

/// Random bytes (incompressible, so a flush writes about as much as it was given).
fn random_value(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut v);
    v
}

/// Writes `mib` MiB of incompressible objects and flushes them; the flush's duration.
fn timed_flush(s: &RocksStorage, mib: u32) -> Duration {
    for i in 0..mib * 16 {
        let mut b = WriteBatch::new();
        b.put_object(
            ObjectKey::new(i % 16, b"bk".to_vec(), format!("k{i}").into_bytes()),
            random_value(64 << 10),
        );
        s.write(b, false).unwrap();
    }
    let start = Instant::now();
    s.flush().unwrap();
    start.elapsed()
}

#[test]
fn a_flush_is_paced_by_the_background_write_limit() {
    // A 4 MiB/s ceiling: the limiter never passes it (it starts at half of it and tunes
    // down when idle), so 2 MiB cannot reach the disk in under half a second (a lower
    // bound, which a slow machine only makes longer). Unlimited, the same flush takes
    // milliseconds. Kept short: the flush threads are shared by every database of this
    // test process.
    let tmp = tempfile::tempdir().unwrap();
    let limited = RocksStorage::open_tuned(
        tmp.path(),
        &RocksTuning {
            background_write_bytes_per_sec: 4 << 20,
            ..RocksTuning::default()
        },
    )
    .unwrap();
    let took = timed_flush(&limited, 2);
    assert!(took >= Duration::from_millis(500), "flush took {took:?}");
    // The data is all there after the paced flush.
    assert!(
        limited
            .get_object(&ObjectKey::new(3, b"bk".to_vec(), b"k3".to_vec()))
            .unwrap()
            .is_some()
    );

    let tmp = tempfile::tempdir().unwrap();
    let unlimited = RocksStorage::open_tuned(
        tmp.path(),
        &RocksTuning {
            background_write_bytes_per_sec: 0,
            ..RocksTuning::default()
        },
    )
    .unwrap();
    let free = timed_flush(&unlimited, 2);
    assert!(free < took, "unlimited {free:?}, limited {took:?}");
}
