//! One conformance suite, run against every engine, plus a differential property test that
//! drives RocksDB and the in-memory engine with the same random operations.

use super::backend::{Backend, Cf};
use super::keys;
use super::{
    BatchOp, FORMAT_VERSION, HintKey, MemoryBackend, ObjectKey, RecordStore, RocksBackend, Storage,
    StorageError, WriteBatch,
};
use crate::types::NodeId;

/// How a case gets an engine, and what "close and open again" means for it.
trait Harness {
    type B: Backend;
    fn open(&mut self) -> RecordStore<Self::B>;
    /// Closes `s` and opens the same data again; the in-memory engine keeps the same store.
    fn reopen(&mut self, s: RecordStore<Self::B>) -> RecordStore<Self::B>;
}

struct MemoryHarness;

impl Harness for MemoryHarness {
    type B = MemoryBackend;
    fn open(&mut self) -> RecordStore<MemoryBackend> {
        RecordStore::<MemoryBackend>::new()
    }
    fn reopen(&mut self, s: RecordStore<MemoryBackend>) -> RecordStore<MemoryBackend> {
        s
    }
}

struct RocksHarness {
    dir: tempfile::TempDir,
}

impl RocksHarness {
    fn new() -> Self {
        RocksHarness {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
}

impl Harness for RocksHarness {
    type B = RocksBackend;
    fn open(&mut self) -> RecordStore<RocksBackend> {
        RecordStore::<RocksBackend>::open(self.dir.path()).expect("open rocks")
    }
    fn reopen(&mut self, s: RecordStore<RocksBackend>) -> RecordStore<RocksBackend> {
        drop(s);
        self.open()
    }
}

fn ok(p: u32, b: &[u8], k: &[u8]) -> ObjectKey {
    ObjectKey::new(p, b, k)
}

fn hk(t: &str, p: u32, b: &[u8], k: &[u8]) -> HintKey {
    HintKey {
        target: NodeId::new(t),
        partition: p,
        bucket: b.to_vec(),
        key: k.to_vec(),
    }
}

fn put(s: &dyn Storage, k: ObjectKey, v: &[u8]) {
    let mut b = WriteBatch::new();
    b.put_object(k, v.to_vec());
    s.write(b, false).unwrap();
}

/// Replaces a stored record with a copy whose last byte is flipped.
fn flip_last_byte<B: Backend>(s: &RecordStore<B>, cf: Cf, raw_key: &[u8]) {
    let mut raw = s
        .raw_get_for_test(cf, raw_key)
        .unwrap()
        .expect("record to damage");
    let last = raw.len() - 1;
    raw[last] ^= 0x5a;
    s.raw_put_for_test(cf, raw_key, &raw).unwrap();
}

fn get_put_delete<H: Harness>(h: &mut H) {
    let s = h.open();
    let k = ok(1, b"b", b"k");
    assert_eq!(s.get_object(&k).unwrap(), None);
    put(&s, k.clone(), b"v1");
    assert_eq!(s.get_object(&k).unwrap(), Some(b"v1".to_vec()));
    put(&s, k.clone(), b"v2");
    assert_eq!(s.get_object(&k).unwrap(), Some(b"v2".to_vec()));
    // Same key in another bucket or partition is another object.
    assert_eq!(s.get_object(&ok(1, b"bb", b"k")).unwrap(), None);
    assert_eq!(s.get_object(&ok(2, b"b", b"k")).unwrap(), None);
    put(&s, ok(1, b"b", b""), b"");
    assert_eq!(s.get_object(&ok(1, b"b", b"")).unwrap(), Some(Vec::new()));
    let mut b = WriteBatch::new();
    b.delete_object(k.clone());
    s.write(b, true).unwrap();
    assert_eq!(s.get_object(&k).unwrap(), None);
    // Deleting what is absent is fine.
    let mut b = WriteBatch::new();
    b.delete_object(k.clone());
    s.write(b, false).unwrap();
    s.write(WriteBatch::new(), true).unwrap();
    // Bucket names the layout cannot hold.
    assert!(matches!(
        s.get_object(&ok(1, b"", b"k")),
        Err(StorageError::Invalid(_))
    ));
    let long = vec![b'x'; 256];
    assert!(matches!(
        s.get_object(&ok(1, &long, b"k")),
        Err(StorageError::Invalid(_))
    ));
    put(&s, ok(1, &long[..255], b"k"), b"max");
    assert_eq!(
        s.get_object(&ok(1, &long[..255], b"k")).unwrap(),
        Some(b"max".to_vec())
    );
}

fn atomic_batches<H: Harness>(h: &mut H) {
    let s = h.open();
    let k = ok(3, b"cart", b"alice");
    let hint = hk("node-b", 3, b"cart", b"alice");
    let mut b = WriteBatch::new();
    b.put_object(k.clone(), b"obj".to_vec())
        .put_hint(hint.clone(), b"obj".to_vec())
        .put_meta("ring", b"ring-bytes".to_vec())
        .put_aae(b"tree/3".to_vec(), b"hash".to_vec());
    s.write(b, true).unwrap();
    assert_eq!(s.get_object(&k).unwrap(), Some(b"obj".to_vec()));
    assert_eq!(s.get_hint(&hint).unwrap(), Some(b"obj".to_vec()));
    assert_eq!(s.get_meta("ring").unwrap(), Some(b"ring-bytes".to_vec()));
    assert_eq!(s.get_aae(b"tree/3").unwrap(), Some(b"hash".to_vec()));

    // One invalid op rejects the whole batch: nothing of it becomes visible.
    let mut b = WriteBatch::new();
    b.put_object(ok(3, b"cart", b"bob"), b"x".to_vec())
        .delete_hint(hint.clone())
        .put_meta("ring", b"new".to_vec())
        .put_object(ok(3, &[b'z'; 300], b"k"), b"x".to_vec());
    assert!(matches!(s.write(b, false), Err(StorageError::Invalid(_))));
    assert_eq!(s.get_object(&ok(3, b"cart", b"bob")).unwrap(), None);
    assert_eq!(s.get_hint(&hint).unwrap(), Some(b"obj".to_vec()));
    assert_eq!(s.get_meta("ring").unwrap(), Some(b"ring-bytes".to_vec()));

    // Moving a hint to its object is one step (what handoff does on the receiving side).
    let mut b = WriteBatch::new();
    b.delete_hint(hint.clone())
        .put_object(hint.object_key(), b"delivered".to_vec());
    s.write(b, false).unwrap();
    assert_eq!(s.get_hint(&hint).unwrap(), None);
    assert_eq!(s.get_object(&k).unwrap(), Some(b"delivered".to_vec()));

    // Later ops on one key win.
    let k2 = ok(3, b"cart", b"carol");
    let mut b = WriteBatch::new();
    b.put_object(k2.clone(), b"1".to_vec())
        .delete_object(k2.clone());
    s.write(b, false).unwrap();
    assert_eq!(s.get_object(&k2).unwrap(), None);
    let mut b = WriteBatch::new();
    b.delete_object(k2.clone())
        .put_object(k2.clone(), b"2".to_vec());
    s.write(b, false).unwrap();
    assert_eq!(s.get_object(&k2).unwrap(), Some(b"2".to_vec()));
}

/// A reader scanning while a writer rewrites several keys per batch never sees a mix.
fn batches_are_all_or_nothing_to_readers<H: Harness>(h: &mut H) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    const ROUNDS: u32 = 1000;
    let s = std::sync::Arc::new(h.open());
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let keys: Vec<ObjectKey> = (0..8u8).map(|i| ok(9, b"b", &[i])).collect();
    let writer = {
        let (s, done, keys) = (s.clone(), done.clone(), keys.clone());
        std::thread::spawn(move || {
            for round in 0..ROUNDS {
                let mut b = WriteBatch::new();
                for k in &keys {
                    b.put_object(k.clone(), round.to_be_bytes().to_vec());
                }
                s.write(b, false).unwrap();
                std::thread::yield_now();
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut scans = 0u32;
    while (!done.load(Ordering::SeqCst) || scans < 50) && Instant::now() < deadline {
        let page = s.scan_partition(9, None, 100).unwrap();
        assert!(
            page.is_empty() || page.len() == keys.len(),
            "partial batch: {}",
            page.len()
        );
        if let Some((_, first)) = page.first() {
            assert!(
                page.iter().all(|(_, v)| v == first),
                "mixed rounds in one scan"
            );
        }
        scans += 1;
    }
    writer.join().unwrap();
    let last = s.scan_partition(9, None, 100).unwrap();
    assert_eq!(last.len(), keys.len());
    assert!(
        last.iter()
            .all(|(_, v)| v == &(ROUNDS - 1).to_be_bytes().to_vec())
    );
}

/// Objects in encoded (storage) order, as a partition scan must return them.
fn storage_order(mut v: Vec<ObjectKey>) -> Vec<ObjectKey> {
    v.sort_by_key(|k| keys::encode_object(k).unwrap());
    v.dedup();
    v
}

fn partition_scan_order_and_paging<H: Harness>(h: &mut H) {
    let s = h.open();
    let buckets: [&[u8]; 5] = [b"a", b"ab", b"b", b"\x00", b"\xff\xff"];
    let names: [&[u8]; 6] = [b"", b"\x00", b"a", b"a\x00", b"ab", b"\xff"];
    let mut expected = Vec::new();
    for p in [0u32, 5, 6, u32::MAX] {
        let mut b = WriteBatch::new();
        for bucket in buckets {
            for name in names {
                let k = ok(p, bucket, name);
                b.put_object(k.clone(), format!("{p}/{bucket:?}/{name:?}").into_bytes());
                if p == 5 {
                    expected.push(k);
                }
            }
        }
        s.write(b, false).unwrap();
    }
    let expected = storage_order(expected);

    let all = s.scan_partition(5, None, 1000).unwrap();
    let got: Vec<ObjectKey> = all.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(got, expected);
    for (k, v) in &all {
        assert_eq!(
            v,
            &format!("5/{:?}/{:?}", &k.bucket[..], &k.key[..]).into_bytes()
        );
    }

    for limit in [1usize, 2, 7] {
        let mut paged = Vec::new();
        let mut after: Option<ObjectKey> = None;
        for _ in 0..100 {
            let page = s
                .scan_partition(
                    5,
                    after.as_ref().map(|k| (&k.bucket[..], &k.key[..])),
                    limit,
                )
                .unwrap();
            assert!(page.len() <= limit);
            if page.is_empty() {
                break;
            }
            after = page.last().map(|(k, _)| k.clone());
            paged.extend(page.into_iter().map(|(k, _)| k));
        }
        assert_eq!(paged, expected, "limit {limit}");
    }

    // `after` need not exist; the scan resumes at the next key.
    let from_missing = s.scan_partition(5, Some((b"a", b"a\x00\x00")), 1).unwrap();
    assert_eq!(from_missing[0].0, ok(5, b"a", b"ab"));
    assert!(s.scan_partition(5, None, 0).unwrap().is_empty());
    assert!(s.scan_partition(7, None, 10).unwrap().is_empty());
    assert_eq!(
        s.scan_partition(u32::MAX, None, 1000).unwrap().len(),
        expected.len()
    );
    assert_eq!(
        s.scan_partition(0, None, 1000).unwrap().len(),
        expected.len()
    );
}

fn partition_isolation<H: Harness>(h: &mut H) {
    let s = h.open();
    for p in 0..4u32 {
        for i in 0..=p {
            put(&s, ok(p, b"b", &[i as u8]), b"v");
        }
    }
    for p in 0..4u32 {
        assert_eq!(s.count_partition(p).unwrap(), u64::from(p) + 1);
        assert!(
            s.scan_partition(p, None, 100)
                .unwrap()
                .iter()
                .all(|(k, _)| k.partition == p)
        );
    }
    let mut b = WriteBatch::new();
    b.delete_object(ok(2, b"b", &[0]));
    s.write(b, false).unwrap();
    assert_eq!(s.count_partition(2).unwrap(), 2);
    assert_eq!(s.count_partition(1).unwrap(), 2);
    assert_eq!(s.count_partition(3).unwrap(), 4);
    assert_eq!(s.count_partition(100).unwrap(), 0);
}

fn bucket_listing_byte_order<H: Harness>(h: &mut H) {
    let s = h.open();
    let names: Vec<&[u8]> = vec![
        b"",
        b"\x00",
        b"\x00\x00",
        b"a",
        b"a\x00",
        b"a\x00\x01",
        b"a\xff",
        b"ab",
        b"b",
        b"\xff",
        b"\xff\xff",
    ];
    let mut b = WriteBatch::new();
    for n in &names {
        b.put_object(ok(4, b"a", n), [b"a:", *n].concat());
        b.put_object(ok(4, b"ab", n), [b"ab:", *n].concat());
        b.put_object(ok(4, b"a\x00", n), [b"a0:", *n].concat());
        b.put_object(ok(5, b"a", n), b"other partition".to_vec());
    }
    s.write(b, false).unwrap();
    let mut sorted: Vec<Vec<u8>> = names.iter().map(|n| n.to_vec()).collect();
    sorted.sort();

    let listed = s.list_bucket(4, b"a", None, 100).unwrap();
    assert_eq!(
        listed.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        sorted
    );
    for (k, v) in &listed {
        assert_eq!(v, &[b"a:", &k[..]].concat());
    }
    // Buckets that prefix one another stay apart.
    let ab = s.list_bucket(4, b"ab", None, 100).unwrap();
    assert_eq!(ab.len(), names.len());
    assert!(ab.iter().all(|(k, v)| v == &[b"ab:", &k[..]].concat()));
    assert_eq!(
        s.list_bucket(4, b"a\x00", None, 100).unwrap().len(),
        names.len()
    );
    assert!(s.list_bucket(4, b"b", None, 100).unwrap().is_empty());

    // From a start key: strictly after it, present or not.
    let after_a = s.list_bucket(4, b"a", Some(b"a"), 100).unwrap();
    let want: Vec<Vec<u8>> = sorted
        .iter()
        .filter(|k| k.as_slice() > b"a".as_slice())
        .cloned()
        .collect();
    assert_eq!(
        after_a.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
        want
    );
    let after_gap = s.list_bucket(4, b"a", Some(b"a\x00\x00"), 2).unwrap();
    assert_eq!(
        after_gap.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
        vec![b"a\x00\x01".to_vec(), b"ab".to_vec()]
    );
    assert!(
        s.list_bucket(4, b"a", Some(b"\xff\xff"), 100)
            .unwrap()
            .is_empty()
    );
    let after_empty = s.list_bucket(4, b"a", Some(b""), 1).unwrap();
    assert_eq!(after_empty[0].0, b"\x00".to_vec());

    // Paging covers everything exactly once.
    let mut paged = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    for _ in 0..100 {
        let page = s.list_bucket(4, b"a", after.as_deref(), 3).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|(k, _)| k.clone());
        paged.extend(page.into_iter().map(|(k, _)| k));
    }
    assert_eq!(paged, sorted);
    assert!(matches!(
        s.list_bucket(4, b"", None, 1),
        Err(StorageError::Invalid(_))
    ));
}

fn hints_per_target<H: Harness>(h: &mut H) {
    let s = h.open();
    let mut b = WriteBatch::new();
    for (t, n) in [("n1", 3u8), ("n10", 2), ("n2", 4), ("", 1)] {
        for i in 0..n {
            b.put_hint(hk(t, u32::from(i % 2), b"b", &[i]), vec![i]);
        }
    }
    s.write(b, false).unwrap();
    assert_eq!(
        s.hint_counts().unwrap(),
        vec![
            (NodeId::new(""), 1),
            (NodeId::new("n1"), 3),
            (NodeId::new("n10"), 2),
            (NodeId::new("n2"), 4)
        ]
    );
    let n1 = s
        .scan_hints(&NodeId::new("n1"), None, 100, usize::MAX)
        .unwrap();
    assert_eq!(n1.len(), 3);
    assert!(n1.iter().all(|(k, _)| k.target.as_str() == "n1"));
    let mut sorted: Vec<HintKey> = n1.iter().map(|(k, _)| k.clone()).collect();
    sorted.sort_by_key(|k| keys::encode_hint(k).unwrap());
    assert_eq!(
        n1.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        sorted
    );
    for (k, v) in &n1 {
        assert_eq!(v, &k.key);
    }

    // Paging through one target's hints.
    let mut paged = Vec::new();
    let mut after: Option<HintKey> = None;
    for _ in 0..100 {
        let page = s
            .scan_hints(&NodeId::new("n2"), after.as_ref(), 1, usize::MAX)
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|(k, _)| k.clone());
        paged.extend(page);
    }
    assert_eq!(
        paged,
        s.scan_hints(&NodeId::new("n2"), None, 100, usize::MAX)
            .unwrap()
    );
    assert_eq!(paged.len(), 4);
    // A byte budget ends a batch once the payloads reach it; the first hint always comes, so
    // one larger than the budget still moves.
    for budget in [0, 1, 2, 5, usize::MAX] {
        let mut want = Vec::new();
        let mut bytes = 0;
        for e in &paged {
            want.push(e.clone());
            bytes += e.1.len();
            if bytes >= budget {
                break;
            }
        }
        let got = s.scan_hints(&NodeId::new("n2"), None, 100, budget).unwrap();
        assert_eq!(got, want, "budget {budget}");
    }
    assert!(matches!(
        s.scan_hints(
            &NodeId::new("n2"),
            Some(&hk("n1", 0, b"b", b"")),
            1,
            usize::MAX
        ),
        Err(StorageError::Invalid(_))
    ));

    // Delivered hints disappear from scans and counts.
    let mut b = WriteBatch::new();
    for (k, _) in &n1 {
        b.delete_hint(k.clone());
    }
    b.delete_hint(hk("", 0, b"b", &[0]));
    s.write(b, false).unwrap();
    assert!(
        s.scan_hints(&NodeId::new("n1"), None, 100, usize::MAX)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.hint_counts().unwrap(),
        vec![(NodeId::new("n10"), 2), (NodeId::new("n2"), 4)]
    );
    assert_eq!(
        s.get_hint(&hk("n10", 1, b"b", &[1])).unwrap(),
        Some(vec![1])
    );
    assert_eq!(s.get_hint(&hk("n10", 0, b"b", &[1])).unwrap(), None);
}

/// Hint counts follow every change (new, overwritten, deleted, deleted twice, damaged, within
/// one batch) and agree with a recount after a reopen.
fn hint_counts_follow_writes<H: Harness>(h: &mut H) {
    let s = h.open();
    let counts = |s: &RecordStore<H::B>| s.hint_counts().unwrap();
    let n = |t: &str, c: u64| (NodeId::new(t), c);
    assert!(counts(&s).is_empty());
    let mut b = WriteBatch::new();
    b.put_hint(hk("a", 0, b"b", b"1"), vec![1])
        .put_hint(hk("a", 0, b"b", b"1"), vec![2])
        .put_hint(hk("a", 0, b"b", b"2"), vec![1])
        .put_hint(hk("b", 0, b"b", b"1"), vec![1])
        .delete_hint(hk("c", 0, b"b", b"1"));
    s.write(b, false).unwrap();
    assert_eq!(counts(&s), vec![n("a", 2), n("b", 1)]);
    // Overwriting an existing hint adds nothing; put then delete in one batch is a delete.
    let mut b = WriteBatch::new();
    b.put_hint(hk("a", 0, b"b", b"1"), vec![3])
        .put_hint(hk("b", 0, b"b", b"2"), vec![1])
        .delete_hint(hk("b", 0, b"b", b"2"));
    s.write(b, true).unwrap();
    assert_eq!(counts(&s), vec![n("a", 2), n("b", 1)]);
    let mut b = WriteBatch::new();
    b.delete_hint(hk("b", 0, b"b", b"1"));
    s.write(b.clone(), false).unwrap();
    s.write(b, false).unwrap();
    assert_eq!(counts(&s), vec![n("a", 2)]);
    // A rejected batch changes nothing.
    let mut bad = WriteBatch::new();
    bad.put_hint(hk("a", 0, b"b", b"9"), vec![1])
        .put_object(ok(1, b"", b"x"), vec![]);
    assert!(s.write(bad, false).is_err());
    assert_eq!(counts(&s), vec![n("a", 2)]);
    // A damaged hint is not pending (it cannot be delivered), as a recount would find.
    flip_last_byte(
        &s,
        Cf::Hints,
        &keys::encode_hint(&hk("a", 0, b"b", b"2")).unwrap(),
    );
    assert!(
        s.scan_hints(&NodeId::new("a"), None, 10, usize::MAX)
            .unwrap()
            .len()
            == 1
    );
    assert_eq!(counts(&s), vec![n("a", 1)]);
    let s = h.reopen(s);
    assert_eq!(counts(&s), vec![n("a", 1)]);
}

/// Counting pending hints reads no hint once the counts are known (the handoff tick and the
/// reaper ask every second).
#[test]
fn hint_counts_are_kept_not_recounted() {
    let s = RecordStore::<MemoryBackend>::new();
    let mut b = WriteBatch::new();
    for i in 0..100u8 {
        b.put_hint(hk("a", 0, b"b", &[i]), vec![i]);
    }
    s.write(b, false).unwrap();
    assert_eq!(s.hint_counts().unwrap(), vec![(NodeId::new("a"), 100)]);
    let before = s.entries_read(Cf::Hints);
    assert_eq!(s.hint_counts().unwrap(), vec![(NodeId::new("a"), 100)]);
    assert_eq!(
        s.entries_read(Cf::Hints),
        before,
        "a second count reads no hint"
    );
}

fn meta_and_aae<H: Harness>(h: &mut H) {
    let s = h.open();
    assert_eq!(s.get_meta("node_id").unwrap(), None);
    let mut b = WriteBatch::new();
    b.put_meta("node_id", b"n1".to_vec())
        .put_meta("ring", vec![0, 1, 2]);
    s.write(b, false).unwrap();
    assert_eq!(s.get_meta("node_id").unwrap(), Some(b"n1".to_vec()));
    let mut b = WriteBatch::new();
    b.delete_meta("ring");
    s.write(b, false).unwrap();
    assert_eq!(s.get_meta("ring").unwrap(), None);
    assert_eq!(s.format_version().unwrap(), Some(FORMAT_VERSION));
    let mut b = WriteBatch::new();
    b.delete_meta("storage.format_version");
    assert!(matches!(s.write(b, false), Err(StorageError::Invalid(_))));

    let mut b = WriteBatch::new();
    for k in [
        &b"t"[..],
        b"t\x00",
        b"t\x00a",
        b"t\xff",
        b"ta",
        b"u",
        b"\xff",
    ] {
        b.put_aae(k.to_vec(), [b"v", k].concat());
    }
    s.write(b, false).unwrap();
    let keys_of = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys_of(s.scan_aae_prefix(b"t", 100).unwrap()),
        vec![
            b"t".to_vec(),
            b"t\x00".to_vec(),
            b"t\x00a".to_vec(),
            b"ta".to_vec(),
            b"t\xff".to_vec()
        ]
    );
    assert_eq!(
        keys_of(s.scan_aae_prefix(b"t\x00", 100).unwrap()),
        vec![b"t\x00".to_vec(), b"t\x00a".to_vec()]
    );
    assert_eq!(s.scan_aae_prefix(b"t", 2).unwrap().len(), 2);
    assert_eq!(s.scan_aae_prefix(b"", 100).unwrap().len(), 7);
    assert_eq!(
        keys_of(s.scan_aae_prefix(b"\xff", 100).unwrap()),
        vec![b"\xff".to_vec()]
    );
    assert_eq!(s.get_aae(b"ta").unwrap(), Some(b"vta".to_vec()));
    let mut b = WriteBatch::new();
    b.delete_aae(b"ta".to_vec());
    s.write(b, false).unwrap();
    assert_eq!(s.get_aae(b"ta").unwrap(), None);
}

fn survives_reopen<H: Harness>(h: &mut H) {
    let s = h.open();
    let mut b = WriteBatch::new();
    b.put_object(ok(1, b"b", b"k"), b"v".to_vec())
        .put_hint(hk("n2", 1, b"b", b"k"), b"h".to_vec())
        .put_meta("node_id", b"n1".to_vec())
        .put_aae(b"a".to_vec(), b"x".to_vec());
    s.write(b, false).unwrap();
    put(&s, ok(1, b"b", b"synced"), b"s");
    s.flush().unwrap();
    assert!(s.approximate_bytes() > 0);
    put(&s, ok(1, b"b", b"after-flush"), b"f");
    let s = h.reopen(s);
    assert_eq!(
        s.get_object(&ok(1, b"b", b"k")).unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(
        s.get_object(&ok(1, b"b", b"after-flush")).unwrap(),
        Some(b"f".to_vec())
    );
    assert_eq!(s.count_partition(1).unwrap(), 3);
    assert_eq!(
        s.get_hint(&hk("n2", 1, b"b", b"k")).unwrap(),
        Some(b"h".to_vec())
    );
    assert_eq!(s.hint_counts().unwrap(), vec![(NodeId::new("n2"), 1)]);
    assert_eq!(s.get_meta("node_id").unwrap(), Some(b"n1".to_vec()));
    assert_eq!(s.get_aae(b"a").unwrap(), Some(b"x".to_vec()));
    assert_eq!(s.format_version().unwrap(), Some(FORMAT_VERSION));
    // A second reopen changes nothing either.
    let s = h.reopen(s);
    assert_eq!(s.count_partition(1).unwrap(), 3);
}

/// The expiry index: written in the object's batch, read in (instant, key) order up to a
/// bound, paged, deleted, damage skipped, kept across a reopen.
fn expiry_index<H: Harness>(h: &mut H) {
    let s = h.open();
    assert!(s.scan_expiry(None, u64::MAX, 10).unwrap().is_empty());
    let (a, b, c) = (ok(1, b"b", b"a"), ok(0, b"b", b"b"), ok(2, b"c", b"c"));
    let mut batch = WriteBatch::new();
    batch
        .put_object(a.clone(), b"va".to_vec())
        .put_expiry(200, a.clone())
        .put_object(b.clone(), b"vb".to_vec())
        .put_expiry(100, b.clone())
        .put_expiry(200, c.clone())
        .put_expiry(u64::MAX, c.clone());
    s.write(batch, false).unwrap();
    assert_eq!(s.get_object(&a).unwrap(), Some(b"va".to_vec()));
    // Time order first, then key order within one instant; nothing past the bound.
    assert_eq!(
        s.scan_expiry(None, 200, 10).unwrap(),
        vec![(100, b.clone()), (200, a.clone()), (200, c.clone())]
    );
    assert_eq!(
        s.scan_expiry(None, 199, 10).unwrap(),
        vec![(100, b.clone())]
    );
    assert!(s.scan_expiry(None, 99, 10).unwrap().is_empty());
    assert!(s.scan_expiry(None, 200, 0).unwrap().is_empty());
    // Paging strictly after a cursor.
    let first = s.scan_expiry(None, u64::MAX, 2).unwrap();
    assert_eq!(first, vec![(100, b.clone()), (200, a.clone())]);
    let (at, k) = &first[1];
    assert_eq!(
        s.scan_expiry(Some((*at, k)), u64::MAX, 10).unwrap(),
        vec![(200, c.clone()), (u64::MAX, c.clone())]
    );
    // A cursor that is not an entry still continues after its position.
    assert_eq!(
        s.scan_expiry(Some((150, &a)), 200, 10).unwrap(),
        vec![(200, a.clone()), (200, c.clone())]
    );
    // Deleting entries (with their object, in one batch) and invalid keys.
    let mut batch = WriteBatch::new();
    batch
        .delete_object(b.clone())
        .delete_expiry(100, b.clone())
        .delete_expiry(7, a.clone());
    s.write(batch, false).unwrap();
    assert_eq!(s.get_object(&b).unwrap(), None);
    assert_eq!(
        s.scan_expiry(None, 200, 10).unwrap(),
        vec![(200, a.clone()), (200, c.clone())]
    );
    let mut bad = WriteBatch::new();
    bad.put_object(ok(1, b"b", b"x"), b"x".to_vec())
        .put_expiry(1, ok(1, b"", b"x"));
    assert!(matches!(s.write(bad, false), Err(StorageError::Invalid(_))));
    assert_eq!(s.get_object(&ok(1, b"b", b"x")).unwrap(), None);
    // A damaged entry is skipped and counted, the rest still read.
    let before = s.corrupt_records();
    flip_last_byte(&s, Cf::Expiry, &keys::encode_expiry(200, &a).unwrap());
    assert_eq!(
        s.scan_expiry(None, 200, 10).unwrap(),
        vec![(200, c.clone())]
    );
    assert_eq!(s.corrupt_records(), before + 1);
    let s = h.reopen(s);
    assert_eq!(
        s.scan_expiry(None, u64::MAX, 10).unwrap(),
        vec![(200, c.clone()), (u64::MAX, c.clone())]
    );
}

/// The tombstone index: written in the object's batch, read in storage order after a cursor,
/// paged, deleted; a damaged entry still names its key, an undecodable one is skipped; kept
/// across a reopen.
fn tombstone_index<H: Harness>(h: &mut H) {
    let s = h.open();
    assert!(s.scan_tombstones(None, 10).unwrap().is_empty());
    let (a, b, c, d) = (
        ok(1, b"b", b"a"),
        ok(0, b"b", b"b"),
        ok(2, b"c", b"c"),
        ok(1, b"bb", b""),
    );
    let mut batch = WriteBatch::new();
    batch
        .put_object(a.clone(), b"va".to_vec())
        .put_tombstone(a.clone())
        .put_object(b.clone(), b"vb".to_vec())
        .put_tombstone(b.clone())
        .put_tombstone(c.clone())
        .put_tombstone(d.clone())
        .put_tombstone(d.clone());
    s.write(batch, false).unwrap();
    let all = vec![b.clone(), a.clone(), d.clone(), c.clone()];
    assert_eq!(s.scan_tombstones(None, 10).unwrap(), all);
    assert!(s.scan_tombstones(None, 0).unwrap().is_empty());
    // Paging strictly after a cursor, also one that is not an entry.
    assert_eq!(s.scan_tombstones(None, 2).unwrap(), all[..2].to_vec());
    assert_eq!(s.scan_tombstones(Some(&a), 10).unwrap(), all[2..].to_vec());
    assert_eq!(
        s.scan_tombstones(Some(&ok(1, b"b", b"")), 10).unwrap(),
        all[1..].to_vec()
    );
    assert!(s.scan_tombstones(Some(&c), 10).unwrap().is_empty());
    // Deleting entries with their object in one batch; an invalid key rejects the batch.
    let mut batch = WriteBatch::new();
    batch
        .delete_object(b.clone())
        .delete_tombstone(b.clone())
        .delete_tombstone(ok(9, b"z", b"z"));
    s.write(batch, false).unwrap();
    assert_eq!(s.get_object(&b).unwrap(), None);
    assert_eq!(s.scan_tombstones(None, 10).unwrap(), all[1..].to_vec());
    let mut bad = WriteBatch::new();
    bad.put_object(ok(1, b"b", b"x"), b"x".to_vec())
        .put_tombstone(ok(1, b"", b"x"));
    assert!(matches!(s.write(bad, false), Err(StorageError::Invalid(_))));
    assert_eq!(s.get_object(&ok(1, b"b", b"x")).unwrap(), None);
    // A damaged entry still names its key (counted); an undecodable key is skipped (counted).
    let before = s.corrupt_records();
    flip_last_byte(&s, Cf::Tombstones, &keys::encode_object(&a).unwrap());
    s.raw_put_for_test(
        Cf::Tombstones,
        &[0, 0, 0, 1, 9],
        &crate::storage::record::seal(&[]),
    )
    .unwrap();
    assert_eq!(s.scan_tombstones(None, 10).unwrap(), all[1..].to_vec());
    assert_eq!(s.corrupt_records(), before + 2);
    let s = h.reopen(s);
    assert_eq!(s.scan_tombstones(None, 10).unwrap(), all[1..].to_vec());
}

fn damaged_records_are_isolated<H: Harness>(h: &mut H) {
    let s = h.open();
    let mut b = WriteBatch::new();
    for k in [b"a", b"b", b"c", b"d"] {
        b.put_object(ok(2, b"bk", k), k.to_vec());
    }
    b.put_hint(hk("n9", 2, b"bk", b"a"), b"ha".to_vec())
        .put_hint(hk("n9", 2, b"bk", b"b"), b"hb".to_vec())
        .put_aae(b"x1".to_vec(), b"1".to_vec())
        .put_aae(b"x2".to_vec(), b"2".to_vec())
        .put_meta("ring", b"r".to_vec());
    s.write(b, false).unwrap();
    assert_eq!(s.corrupt_records(), 0);

    // Flip a payload byte of "b", truncate "c" to a stub, damage one hint, one AAE entry,
    // one meta entry, and plant an undecodable key inside partition 2.
    flip_last_byte(
        &s,
        Cf::Objects,
        &keys::encode_object(&ok(2, b"bk", b"b")).unwrap(),
    );
    s.raw_put_for_test(
        Cf::Objects,
        &keys::encode_object(&ok(2, b"bk", b"c")).unwrap(),
        &[1, 2],
    )
    .unwrap();
    flip_last_byte(
        &s,
        Cf::Hints,
        &keys::encode_hint(&hk("n9", 2, b"bk", b"a")).unwrap(),
    );
    flip_last_byte(&s, Cf::Aae, b"x1");
    flip_last_byte(&s, Cf::Meta, b"ring");
    s.raw_put_for_test(
        Cf::Objects,
        &[0, 0, 0, 2, 200, b'x'],
        &super::record::seal(b"?"),
    )
    .unwrap();

    let s = h.reopen(s);
    let base = s.corrupt_records();
    assert!(matches!(
        s.get_object(&ok(2, b"bk", b"b")),
        Err(StorageError::Corrupt { .. })
    ));
    assert!(matches!(
        s.get_object(&ok(2, b"bk", b"c")),
        Err(StorageError::Corrupt { .. })
    ));
    assert_eq!(s.corrupt_records(), base + 2);
    assert_eq!(
        s.get_object(&ok(2, b"bk", b"a")).unwrap(),
        Some(b"a".to_vec())
    );
    assert_eq!(
        s.get_object(&ok(2, b"bk", b"d")).unwrap(),
        Some(b"d".to_vec())
    );

    let scan = s.scan_partition(2, None, 100).unwrap();
    assert_eq!(
        scan.iter().map(|(k, _)| k.key.clone()).collect::<Vec<_>>(),
        vec![b"a".to_vec(), b"d".to_vec()]
    );
    assert_eq!(s.corrupt_records(), base + 5);
    // Skipped records do not shorten a page while good ones follow.
    let page = s.scan_partition(2, Some((b"bk", b"a")), 1).unwrap();
    assert_eq!(page[0].0.key, b"d".to_vec());
    let listed = s.list_bucket(2, b"bk", None, 10).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(s.count_partition(2).unwrap(), 2);

    assert!(matches!(
        s.get_hint(&hk("n9", 2, b"bk", b"a")),
        Err(StorageError::Corrupt { .. })
    ));
    let hints = s
        .scan_hints(&NodeId::new("n9"), None, 10, usize::MAX)
        .unwrap();
    assert_eq!(hints, vec![(hk("n9", 2, b"bk", b"b"), b"hb".to_vec())]);
    assert_eq!(s.hint_counts().unwrap(), vec![(NodeId::new("n9"), 1)]);
    assert!(matches!(
        s.get_aae(b"x1"),
        Err(StorageError::Corrupt { .. })
    ));
    assert_eq!(
        s.scan_aae_prefix(b"x", 10).unwrap(),
        vec![(b"x2".to_vec(), b"2".to_vec())]
    );
    assert!(matches!(
        s.get_meta("ring"),
        Err(StorageError::Corrupt { .. })
    ));
    let damaged_error = s.get_object(&ok(2, b"bk", b"b")).unwrap_err().to_string();
    assert!(
        damaged_error.contains("partition 2") && damaged_error.contains("checksum"),
        "{damaged_error}"
    );

    // Writing a damaged key again heals it; the rest of the database kept serving throughout.
    put(&s, ok(2, b"bk", b"b"), b"fresh");
    assert_eq!(
        s.get_object(&ok(2, b"bk", b"b")).unwrap(),
        Some(b"fresh".to_vec())
    );
    put(&s, ok(2, b"bk", b"e"), b"e");
    assert_eq!(s.count_partition(2).unwrap(), 4);
}

macro_rules! conformance {
    ($engine:ident, $harness:expr) => {
        mod $engine {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn get_put_delete() {
                super::get_put_delete(&mut $harness);
            }
            #[test]
            fn atomic_batches() {
                super::atomic_batches(&mut $harness);
            }
            #[test]
            fn batches_are_all_or_nothing_to_readers() {
                super::batches_are_all_or_nothing_to_readers(&mut $harness);
            }
            #[test]
            fn partition_scan_order_and_paging() {
                super::partition_scan_order_and_paging(&mut $harness);
            }
            #[test]
            fn partition_isolation() {
                super::partition_isolation(&mut $harness);
            }
            #[test]
            fn bucket_listing_byte_order() {
                super::bucket_listing_byte_order(&mut $harness);
            }
            #[test]
            fn hints_per_target() {
                super::hints_per_target(&mut $harness);
            }
            #[test]
            fn hint_counts_follow_writes() {
                super::hint_counts_follow_writes(&mut $harness);
            }
            #[test]
            fn meta_and_aae() {
                super::meta_and_aae(&mut $harness);
            }
            #[test]
            fn survives_reopen() {
                super::survives_reopen(&mut $harness);
            }
            #[test]
            fn expiry_index() {
                super::expiry_index(&mut $harness);
            }
            #[test]
            fn tombstone_index() {
                super::tombstone_index(&mut $harness);
            }
            #[test]
            fn damaged_records_are_isolated() {
                super::damaged_records_are_isolated(&mut $harness);
            }
        }
    };
}

conformance!(memory, MemoryHarness);
conformance!(rocks, RocksHarness::new());

/// Random operations applied to both engines must give identical answers.
mod differential {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Write(Vec<BatchOp>, bool),
        GetObject(ObjectKey),
        GetHint(HintKey),
        GetMeta(String),
        GetAae(Vec<u8>),
        ScanPartition(u32, Option<(Vec<u8>, Vec<u8>)>, usize),
        ListBucket(u32, Vec<u8>, Option<Vec<u8>>, usize),
        Count(u32),
        ScanHints(String, Option<HintKey>, usize, usize),
        HintCounts,
        ScanAae(Vec<u8>, usize),
        ScanExpiry(Option<(u64, ObjectKey)>, u64, usize),
        ScanTombstones(Option<ObjectKey>, usize),
        Damage(ObjectKey),
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![Just(0u8), Just(b'a'), Just(b'b'), Just(0xffu8)],
            0..3,
        )
    }
    fn bucket() -> impl Strategy<Value = Vec<u8>> {
        // Mostly valid, sometimes empty (invalid), to compare error behaviour too.
        prop_oneof![
            8 => prop::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(0xffu8)], 1..3),
            1 => Just(Vec::new()),
        ]
    }
    fn partition() -> impl Strategy<Value = u32> {
        prop_oneof![Just(0u32), Just(1), Just(u32::MAX)]
    }
    fn target() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("n1".to_string()),
            Just("n10".to_string()),
            Just("n2".to_string())
        ]
    }
    fn object_key() -> impl Strategy<Value = ObjectKey> {
        (partition(), bucket(), bytes()).prop_map(|(p, b, k)| ObjectKey::new(p, b, k))
    }
    fn hint_key() -> impl Strategy<Value = HintKey> {
        (target(), object_key()).prop_map(|(t, k)| HintKey::for_object(NodeId::new(t), &k))
    }
    fn meta_name() -> impl Strategy<Value = String> {
        prop_oneof![Just("node_id".to_string()), Just("ring".to_string())]
    }
    fn batch_op() -> impl Strategy<Value = BatchOp> {
        prop_oneof![
            4 => (object_key(), bytes()).prop_map(|(k, v)| BatchOp::PutObject(k, v)),
            2 => object_key().prop_map(BatchOp::DeleteObject),
            2 => (hint_key(), bytes()).prop_map(|(k, v)| BatchOp::PutHint(k, v)),
            1 => hint_key().prop_map(BatchOp::DeleteHint),
            1 => (meta_name(), bytes()).prop_map(|(k, v)| BatchOp::PutMeta(k, v)),
            1 => meta_name().prop_map(BatchOp::DeleteMeta),
            1 => (bytes(), bytes()).prop_map(|(k, v)| BatchOp::PutAae(k, v)),
            1 => bytes().prop_map(BatchOp::DeleteAae),
            2 => (instant(), object_key()).prop_map(|(t, k)| BatchOp::PutExpiry(t, k)),
            1 => (instant(), object_key()).prop_map(|(t, k)| BatchOp::DeleteExpiry(t, k)),
            2 => object_key().prop_map(BatchOp::PutTombstone),
            1 => object_key().prop_map(BatchOp::DeleteTombstone),
        ]
    }
    fn instant() -> impl Strategy<Value = u64> {
        prop_oneof![Just(0u64), Just(1), Just(2), Just(u64::MAX)]
    }
    fn op() -> impl Strategy<Value = Op> {
        let limit = 0usize..5;
        prop_oneof![
            6 => (prop::collection::vec(batch_op(), 0..5), any::<bool>()).prop_map(|(b, s)| Op::Write(b, s)),
            2 => object_key().prop_map(Op::GetObject),
            1 => hint_key().prop_map(Op::GetHint),
            1 => meta_name().prop_map(Op::GetMeta),
            1 => bytes().prop_map(Op::GetAae),
            2 => (partition(), prop::option::of((bucket(), bytes())), limit.clone())
                .prop_map(|(p, a, l)| Op::ScanPartition(p, a, l)),
            2 => (partition(), bucket(), prop::option::of(bytes()), limit.clone())
                .prop_map(|(p, b, a, l)| Op::ListBucket(p, b, a, l)),
            1 => partition().prop_map(Op::Count),
            1 => (target(), prop::option::of(hint_key()), limit.clone(), 0..64usize)
                .prop_map(|(t, a, l, m)| Op::ScanHints(t, a, l, m)),
            1 => Just(Op::HintCounts),
            1 => (bytes(), limit.clone()).prop_map(|(p, l)| Op::ScanAae(p, l)),
            1 => (prop::option::of((instant(), object_key())), instant(), limit.clone())
                .prop_map(|(a, u, l)| Op::ScanExpiry(a, u, l)),
            1 => (prop::option::of(object_key()), limit)
                .prop_map(|(a, l)| Op::ScanTombstones(a, l)),
            1 => object_key().prop_map(Op::Damage),
        ]
    }

    /// Applies one op and renders the answer for comparison (errors by their message).
    fn apply<B: Backend>(s: &RecordStore<B>, op: &Op) -> String {
        fn show<T: std::fmt::Debug>(r: Result<T, StorageError>) -> String {
            match r {
                Ok(v) => format!("ok {v:?}"),
                Err(e) => format!("err {e}"),
            }
        }
        match op {
            Op::Write(ops, sync) => show(s.write(WriteBatch::from(ops.clone()), *sync)),
            Op::GetObject(k) => show(s.get_object(k)),
            Op::GetHint(k) => show(s.get_hint(k)),
            Op::GetMeta(n) => show(s.get_meta(n)),
            Op::GetAae(k) => show(s.get_aae(k)),
            Op::ScanPartition(p, a, l) => {
                show(s.scan_partition(*p, a.as_ref().map(|(b, k)| (&b[..], &k[..])), *l))
            }
            Op::ListBucket(p, b, a, l) => show(s.list_bucket(*p, b, a.as_deref(), *l)),
            Op::Count(p) => show(s.count_partition(*p)),
            Op::ScanHints(t, a, l, m) => {
                show(s.scan_hints(&NodeId::new(t.as_str()), a.as_ref(), *l, *m))
            }
            Op::HintCounts => show(s.hint_counts()),
            Op::ScanAae(p, l) => show(s.scan_aae_prefix(p, *l)),
            Op::ScanExpiry(a, u, l) => {
                show(s.scan_expiry(a.as_ref().map(|(t, k)| (*t, k)), *u, *l))
            }
            Op::ScanTombstones(a, l) => show(s.scan_tombstones(a.as_ref(), *l)),
            Op::Damage(k) => match keys::encode_object(k) {
                Ok(raw) => show(s.raw_put_for_test(Cf::Objects, &raw, b"\x01bad")),
                Err(e) => format!("err {e}"),
            },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn rocks_matches_memory(ops in prop::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let rocks = RecordStore::<RocksBackend>::open(dir.path()).unwrap();
            let memory = RecordStore::<MemoryBackend>::new();
            for (i, op) in ops.iter().enumerate() {
                let r = apply(&rocks, op);
                let m = apply(&memory, op);
                prop_assert_eq!(r, m, "op #{} {:?}", i, op);
            }
            prop_assert_eq!(rocks.corrupt_records(), memory.corrupt_records());
            for p in [0u32, 1, u32::MAX] {
                prop_assert_eq!(
                    apply(&rocks, &Op::ScanPartition(p, None, 1000)),
                    apply(&memory, &Op::ScanPartition(p, None, 1000))
                );
            }
        }
    }
}
