//! Stored objects and records: what a disk, a peer's replica or an anti-entropy exchange hands
//! us. Decoding never panics; an accepted object re-encodes to itself; merging two accepted
//! objects (as read repair and handoff do) is commutative and idempotent and keeps every
//! version either side had not seen superseded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riftkv_core::storage::{keys, record};
use riftkv_core::version::{ConflictMode, Object, StoredCopy};

fuzz_target!(|data: &[u8]| {
    let _ = record::open(data);
    let _ = keys::decode_object(data);
    let _ = keys::decode_hint(data);
    let _ = keys::decode_expiry(data);
    let _ = keys::split_target(data);
    if let Ok(copy) = StoredCopy::decode(data) {
        assert_eq!(
            StoredCopy::decode(&copy.encode()).expect("re-decodes"),
            copy
        );
    }

    // Two objects from one input: a length byte splits it.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let cut = (split as usize).min(rest.len());
    let (a, b) = rest.split_at(cut);
    let Ok(a) = Object::decode(a) else {
        return;
    };
    assert_eq!(Object::decode(&a.encode()).expect("re-decodes"), a);
    let _ = a.siblings();
    let _ = a.live_siblings(u64::MAX / 2);
    let _ = a.visible_at(0);
    let _ = a.dead_since_ms();
    let _ = a.expiry_index_ms();
    let Ok(b) = Object::decode(b) else {
        return;
    };
    let ab = a.sync(&b);
    let ba = b.sync(&a);
    assert_eq!(ab, ba, "merge is commutative");
    assert_eq!(ab.sync(&ab), ab, "merge is idempotent");
    assert!(
        ab.descends(&a) && ab.descends(&b),
        "the merge has seen both sides"
    );
    let lww_ab = a.sync_mode(&b, ConflictMode::Lww);
    assert_eq!(
        lww_ab,
        b.sync_mode(&a, ConflictMode::Lww),
        "lww merge is commutative"
    );
    assert!(lww_ab.sibling_count() <= 1, "lww keeps at most one version");
});
