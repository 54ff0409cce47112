//! Behaviour of each type on hand-picked histories.

use riftkv_crdt::*;
use serde_json::{Value, json};

const NOW: u64 = 1_000;

fn lim() -> Limits {
    Limits::default()
}

fn set_op<S: AsRef<str>>(add: &[S], remove: &[S]) -> Op {
    Op::Set(SetOp {
        add: add.iter().map(|s| s.as_ref().to_string()).collect(),
        remove: remove.iter().map(|s| s.as_ref().to_string()).collect(),
    })
}

fn map_op(v: Value) -> Op {
    Op::from_json(DataType::Map, &v).unwrap()
}

/// Applies a map operation written as JSON under the default limits, as most map histories
/// below are built.
fn map_apply(c: &mut Crdt<u8>, actor: u8, ctx: Option<&Context<u8>>, op: Value) {
    c.apply(&actor, &map_op(op), ctx, NOW, &lim()).unwrap();
}

fn value(c: &Crdt<u8>) -> Value {
    c.value_json().unwrap()
}

fn joined(a: &Crdt<u8>, b: &Crdt<u8>) -> Crdt<u8> {
    let mut x = a.clone();
    x.join(b).unwrap();
    x
}

// ---- counter ----

#[test]
fn counter_sums_increments_and_decrements_of_all_actors() {
    let mut a = Crdt::<u8>::new(DataType::Counter);
    let mut b = Crdt::<u8>::new(DataType::Counter);
    let inc = |n| Op::Counter(CounterOp { increment: n });
    a.apply(&1, &inc(5), None, NOW, &lim()).unwrap();
    a.apply(&1, &inc(-2), None, NOW, &lim()).unwrap();
    b.apply(&2, &inc(10), None, NOW, &lim()).unwrap();
    assert_eq!(value(&joined(&a, &b)), json!(13));
    assert_eq!(joined(&a, &b), joined(&b, &a));
}

#[test]
fn counter_overflow_is_an_error_and_leaves_the_value() {
    let mut a = Crdt::<u8>::new(DataType::Counter);
    let inc = |n| Op::Counter(CounterOp { increment: n });
    a.apply(&1, &inc(i64::MAX), None, NOW, &lim()).unwrap();
    let err = a.apply(&1, &inc(1), None, NOW, &lim()).unwrap_err();
    assert!(matches!(err, CrdtError::Overflow(_)), "{err}");
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert_eq!(value(&a), json!(i64::MAX));
    // All the way down to i64::MIN is fine, one further is not.
    a.apply(&2, &inc(i64::MIN), None, NOW, &lim()).unwrap();
    a.apply(&2, &inc(-i64::MAX), None, NOW, &lim()).unwrap();
    assert_eq!(value(&a), json!(i64::MIN));
    assert!(a.apply(&2, &inc(-1), None, NOW, &lim()).is_err());
    assert_eq!(value(&a), json!(i64::MIN));
    // Concurrent increments that each fit can overflow the merged total: reads say so.
    let mut x = Crdt::<u8>::new(DataType::Counter);
    let mut y = Crdt::<u8>::new(DataType::Counter);
    x.apply(&1, &inc(i64::MAX), None, NOW, &lim()).unwrap();
    y.apply(&2, &inc(i64::MAX), None, NOW, &lim()).unwrap();
    let z = joined(&x, &y);
    assert!(matches!(z.value_json(), Err(CrdtError::Overflow(_))));
}

// ---- set ----

#[test]
fn set_remove_without_context_is_refused() {
    let mut s = Crdt::<u8>::new(DataType::Set);
    s.apply(&1, &set_op(&["x"], &[]), None, NOW, &lim())
        .unwrap();
    let err = s
        .apply(&1, &set_op(&[], &["x"]), None, NOW, &lim())
        .unwrap_err();
    assert!(matches!(err, CrdtError::ContextRequired(_)));
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(err.to_string().contains("context"), "{err}");
    assert!(err.to_string().contains("saw"), "{err}");
    assert_eq!(value(&s), json!(["x"]));
}

#[test]
fn set_remove_leaves_a_concurrent_unseen_add() {
    let mut a = Crdt::<u8>::new(DataType::Set);
    a.apply(&1, &set_op(&["x", "y"], &[]), None, NOW, &lim())
        .unwrap();
    let mut b = a.clone();
    let ctx = b.context();
    // Concurrently: a re-adds x (a new dot b has not seen), b removes x and y as read.
    a.apply(&1, &set_op(&["x"], &[]), None, NOW, &lim())
        .unwrap();
    b.apply(&2, &set_op(&[], &["x", "y"]), Some(&ctx), NOW, &lim())
        .unwrap();
    assert_eq!(value(&b), json!([]));
    let m = joined(&a, &b);
    assert_eq!(value(&m), json!(["x"]));
    assert_eq!(m, joined(&b, &a));
}

#[test]
fn set_remove_with_context_ahead_of_the_replica_is_kept_until_it_catches_up() {
    let mut a = Crdt::<u8>::new(DataType::Set);
    let mut b = Crdt::<u8>::new(DataType::Set);
    a.apply(&1, &set_op(&["x"], &[]), None, NOW, &lim())
        .unwrap();
    let ctx = a.context(); // a client read x at a ...
    // ... and removes it through b, which has not received the add yet.
    b.apply(&2, &set_op(&[], &["x"]), Some(&ctx), NOW, &lim())
        .unwrap();
    let m = joined(&b, &a);
    assert_eq!(value(&m), json!([]), "the remove must not be lost");
    assert_eq!(value(&joined(&a, &b)), json!([]));
    // Once applied, nothing of the remove is left behind.
    assert_eq!(m, joined(&a, &joined(&b, &a)));
}

#[test]
fn set_value_is_sorted() {
    let mut s = Crdt::<u8>::new(DataType::Set);
    s.apply(&1, &set_op(&["b", "a", "é", "C"], &[]), None, NOW, &lim())
        .unwrap();
    assert_eq!(value(&s), json!(["C", "a", "b", "é"]));
}

/// Members `lo..hi` as strings.
fn members(lo: u32, hi: u32) -> Vec<String> {
    (lo..hi).map(|i| format!("member-{i:05}")).collect()
}

/// Applies `op(i)` for each `i` of `starts`, by writers 0, 1 and 2 in turn: the long
/// histories of the compaction tests. With `observed`, each operation carries the context of
/// the value before it, as a remove must.
fn apply_rounds(
    c: &mut Crdt<u8>,
    starts: impl Iterator<Item = u32>,
    observed: bool,
    limits: &Limits,
    op: impl Fn(u32) -> Op,
) {
    for (k, i) in starts.enumerate() {
        let ctx = observed.then(|| c.context());
        c.apply(&((k % 3) as u8), &op(i), ctx.as_ref(), NOW, limits)
            .unwrap();
    }
}

#[test]
fn set_compacts_removed_members_and_context_is_bounded_by_writers() {
    // 10,000 adds and 9,990 removes by three writers. Operations carry 10 members each so the
    // debug-build test stays fast (every operation re-encodes the value to check its size).
    let mut s = Crdt::<u8>::new(DataType::Set);
    apply_rounds(&mut s, (0..10_000u32).step_by(10), false, &lim(), |i| {
        set_op(&members(i, i + 10), &[])
    });
    let full = s.encode().unwrap().len();
    apply_rounds(&mut s, (0..9_990u32).step_by(10), true, &lim(), |i| {
        set_op(&[], &members(i, i + 10))
    });
    let bytes = s.encode().unwrap();
    // 10 members of 12 bytes, each with one dot (actor byte + counter varint) and length
    // prefixes: about 17 bytes each, plus a 3-entry clock and a few header bytes. 512 leaves
    // room but is 2-3 orders of magnitude below anything that kept per-remove state.
    println!(
        "set: {full} bytes with 10,000 members, {} bytes after 9,990 removes",
        bytes.len()
    );
    assert!(bytes.len() < 512, "{} bytes", bytes.len());
    assert_eq!(s.context().len(), 3);
    assert_eq!(value(&s).as_array().unwrap().len(), 10);
    assert_eq!(Crdt::<u8>::decode(&bytes).unwrap(), s);
}

// ---- map ----

#[test]
fn map_value_shapes() {
    let mut m = Crdt::<u8>::new(DataType::Map);
    let op = map_op(json!({"update": {
        "c": {"counter": {"increment": -3}},
        "s": {"set": {"add": ["b", "a"]}},
        "r": {"register": {"assign": "hello"}},
        "f": {"flag": "enable"},
        "g": {"flag": "disable"},
        "m": {"map": {"update": {"inner": {"counter": {"increment": 2}}}}}
    }}));
    m.apply(&1, &op, None, NOW, &lim()).unwrap();
    assert_eq!(
        value(&m),
        json!({
            "c": {"counter": -3},
            "s": {"set": ["a", "b"]},
            "r": {"register": "hello"},
            "f": {"flag": true},
            "g": {"flag": false},
            "m": {"map": {"inner": {"counter": 2}}}
        })
    );
}

#[test]
fn map_removes_need_a_context() {
    let mut m = Crdt::<u8>::new(DataType::Map);
    map_apply(
        &mut m,
        1,
        None,
        json!({"update": {"s": {"set": {"add": ["x"]}}}}),
    );
    for op in [
        json!({"remove": ["s"]}),
        json!({"update": {"s": {"set": {"remove": ["x"]}}}}),
        json!({"update": {"m": {"map": {"remove": ["a"]}}}}),
    ] {
        let err = m
            .apply(&1, &map_op(op.clone()), None, NOW, &lim())
            .unwrap_err();
        assert!(matches!(err, CrdtError::ContextRequired(_)), "{op}: {err}");
        assert_eq!(err.kind(), ErrorKind::BadRequest);
    }
    assert_eq!(value(&m), json!({"s": {"set": ["x"]}}));
}

#[test]
fn map_field_removal_keeps_a_concurrent_nested_update_only() {
    let mut a = Crdt::<u8>::new(DataType::Map);
    map_apply(
        &mut a,
        1,
        None,
        json!({"update": {"m": {"map": {"update": {
            "s": {"set": {"add": ["old"]}},
            "r": {"register": {"assign": "v1"}},
            "f": {"flag": "enable"}
        }}}}}),
    );
    let mut b = a.clone();
    let ctx = b.context();
    // Concurrently: a adds a member to m.s, b removes the whole field m as it read it.
    map_apply(
        &mut a,
        1,
        None,
        json!({"update": {"m": {"map": {"update": {"s": {"set": {"add": ["new"]}}}}}}}),
    );
    map_apply(&mut b, 2, Some(&ctx), json!({"remove": ["m"]}));
    assert_eq!(value(&b), json!({}));
    let m = joined(&a, &b);
    // The field survives with only what the remover did not see.
    assert_eq!(value(&m), json!({"m": {"map": {"s": {"set": ["new"]}}}}));
    assert_eq!(m, joined(&b, &a));
}

#[test]
fn map_counter_field_removed_concurrently_with_an_increment() {
    let mut a = Crdt::<u8>::new(DataType::Map);
    let inc = |n: i64| map_op(json!({"update": {"c": {"counter": {"increment": n}}}}));
    a.apply(&1, &inc(5), None, NOW, &lim()).unwrap();
    let mut b = a.clone();
    b.apply(&2, &inc(100), None, NOW, &lim()).unwrap();
    a.join(&b).unwrap();
    let ctx = b.context();
    a.apply(&1, &inc(1), None, NOW, &lim()).unwrap();
    map_apply(&mut b, 2, Some(&ctx), json!({"remove": ["c"]}));
    // Actor 2's increments, seen by the remove, are gone; actor 1 keeps its running total
    // (documented: a counter field keeps one total per actor).
    assert_eq!(value(&joined(&a, &b)), json!({"c": {"counter": 6}}));
}

#[test]
fn map_field_name_with_two_types_shows_both_and_remove_takes_both() {
    let mut a = Crdt::<u8>::new(DataType::Map);
    let mut b = Crdt::<u8>::new(DataType::Map);
    map_apply(
        &mut a,
        1,
        None,
        json!({"update": {"x": {"counter": {"increment": 1}}}}),
    );
    map_apply(
        &mut b,
        2,
        None,
        json!({"update": {"x": {"register": {"assign": "s"}}}}),
    );
    let mut m = joined(&a, &b);
    assert_eq!(value(&m), json!({"x": {"counter": 1, "register": "s"}}));
    let ctx = m.context();
    map_apply(&mut m, 1, Some(&ctx), json!({"remove": ["x"]}));
    assert_eq!(value(&m), json!({}));
}

#[test]
fn flag_enable_wins_over_a_concurrent_disable() {
    let mut a = Crdt::<u8>::new(DataType::Map);
    map_apply(
        &mut a,
        1,
        None,
        json!({"update": {"f": {"flag": "enable"}}}),
    );
    let mut b = a.clone();
    map_apply(
        &mut a,
        1,
        None,
        json!({"update": {"f": {"flag": "enable"}}}),
    );
    map_apply(
        &mut b,
        2,
        None,
        json!({"update": {"f": {"flag": "disable"}}}),
    );
    assert_eq!(value(&b), json!({"f": {"flag": false}}));
    assert_eq!(value(&joined(&a, &b)), json!({"f": {"flag": true}}));
    // A disable that saw the enable wins over it.
    let mut c = joined(&a, &b);
    map_apply(
        &mut c,
        3,
        None,
        json!({"update": {"f": {"flag": "disable"}}}),
    );
    assert_eq!(value(&joined(&c, &a)), json!({"f": {"flag": false}}));
}

#[test]
fn register_concurrent_assigns_go_by_timestamp_then_actor_and_a_later_write_wins_despite_skew() {
    let assign = |s: &str| map_op(json!({"update": {"r": {"register": {"assign": s}}}}));
    let mut a = Crdt::<u8>::new(DataType::Map);
    let mut b = Crdt::<u8>::new(DataType::Map);
    a.apply(&1, &assign("a-late"), None, 2_000, &lim()).unwrap();
    b.apply(&2, &assign("b-early"), None, 1_000, &lim())
        .unwrap();
    assert_eq!(value(&joined(&a, &b)), json!({"r": {"register": "a-late"}}));
    // Same timestamp: the larger actor wins, on every replica.
    let mut c = Crdt::<u8>::new(DataType::Map);
    c.apply(&3, &assign("c"), None, 2_000, &lim()).unwrap();
    assert_eq!(value(&joined(&a, &c)), json!({"r": {"register": "c"}}));
    assert_eq!(value(&joined(&c, &a)), json!({"r": {"register": "c"}}));
    // A write that saw the value replaces it even when its clock is behind.
    let mut d = joined(&a, &b);
    d.apply(&2, &assign("after"), None, 10, &lim()).unwrap();
    assert_eq!(value(&joined(&d, &a)), json!({"r": {"register": "after"}}));
}

#[test]
fn map_compacts_removed_fields() {
    let limits = Limits {
        max_map_fields: 20_000,
        ..Limits::default()
    };
    let mut m = Crdt::<u8>::new(DataType::Map);
    // 100 fields an operation: every operation clones and re-encodes the value.
    apply_rounds(&mut m, (0..10_000u32).step_by(100), false, &limits, |i| {
        let update: serde_json::Map<String, Value> = (i..i + 100)
            .map(|j| {
                (
                    format!("field-{j:05}"),
                    json!({"register": {"assign": "v"}}),
                )
            })
            .collect();
        map_op(json!({ "update": update }))
    });
    apply_rounds(&mut m, (0..9_990u32).step_by(100), true, &limits, |i| {
        let names: Vec<String> = (i..(i + 100).min(9_990))
            .map(|j| format!("field-{j:05}"))
            .collect();
        map_op(json!({ "remove": names }))
    });
    let bytes = m.encode().unwrap();
    println!(
        "map: {} bytes after 10,000 fields and 9,990 removes",
        bytes.len()
    );
    // 10 fields of ~11-byte names, each a presence dot, a register entry (dot, timestamp,
    // value) and its type tag: about 30 bytes each.
    assert!(bytes.len() < 600, "{} bytes", bytes.len());
    assert_eq!(m.context().len(), 3);
}

// ---- limits ----

#[test]
fn limits_refuse_with_too_large_and_leave_the_value() {
    let small = Limits {
        max_set_members: 3,
        max_map_fields: 2,
        max_depth: 2,
        max_member_bytes: 4,
        max_register_bytes: 5,
        max_field_name_bytes: 3,
        max_encoded_bytes: 1_000_000,
    };
    let mut s = Crdt::<u8>::new(DataType::Set);
    s.apply(&1, &set_op(&["a", "b", "c"], &[]), None, NOW, &small)
        .unwrap();
    let before = s.clone();
    let too_large = |r: Result<(), CrdtError>| {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    };
    too_large(s.apply(&1, &set_op(&["d"], &[]), None, NOW, &small));
    too_large(s.apply(&1, &set_op(&["abcde"], &[]), None, NOW, &small));
    assert_eq!(s, before);
    // Removing and re-adding within the bound is fine.
    let ctx = s.context();
    s.apply(&1, &set_op(&["d"], &["a"]), Some(&ctx), NOW, &small)
        .unwrap();

    let mut m = Crdt::<u8>::new(DataType::Map);
    let ok = json!({"update": {"a": {"register": {"assign": "12345"}}, "b": {"flag": "enable"}}});
    m.apply(&1, &map_op(ok), None, NOW, &small).unwrap();
    let before = m.clone();
    too_large(m.apply(
        &1,
        &map_op(json!({"update": {"c": {"flag": "enable"}}})),
        None,
        NOW,
        &small,
    ));
    too_large(m.apply(
        &1,
        &map_op(json!({"update": {"a": {"register": {"assign": "123456"}}}})),
        None,
        NOW,
        &small,
    ));
    too_large(m.apply(
        &1,
        &map_op(json!({"update": {"long": {"flag": "enable"}}})),
        None,
        NOW,
        &small,
    ));
    let deep = json!({"update": {"a": {"map": {"update": {"b": {"map": {"update": {"c": {"flag": "enable"}}}}}}}}});
    too_large(m.apply(&1, &map_op(deep), None, NOW, &small));
    assert_eq!(m, before);
    let nested_ok = json!({"update": {"a": {"map": {"update": {"c": {"flag": "enable"}}}}}});
    // ("a", map) would be a third field at the top level.
    too_large(m.apply(&1, &map_op(nested_ok), None, NOW, &small));
    let encoded = Limits {
        max_encoded_bytes: 40,
        ..Limits::default()
    };
    let mut s = Crdt::<u8>::new(DataType::Set);
    s.apply(&1, &set_op(&["0123456789"], &[]), None, NOW, &encoded)
        .unwrap();
    too_large(s.apply(
        &1,
        &set_op(&["abcdefghij", "klmnopqrst", "uvwxyz0123"], &[]),
        None,
        NOW,
        &encoded,
    ));
}

#[test]
fn a_value_over_a_limit_after_a_merge_can_still_shrink() {
    let small = Limits {
        max_set_members: 2,
        ..Limits::default()
    };
    let mut a = Crdt::<u8>::new(DataType::Set);
    let mut b = Crdt::<u8>::new(DataType::Set);
    a.apply(&1, &set_op(&["a", "b"], &[]), None, NOW, &small)
        .unwrap();
    b.apply(&2, &set_op(&["c", "d"], &[]), None, NOW, &small)
        .unwrap();
    let mut m = joined(&a, &b);
    let ctx = m.context();
    m.apply(&1, &set_op(&[], &["a"]), Some(&ctx), NOW, &small)
        .unwrap();
    assert_eq!(value(&m), json!(["b", "c", "d"]));
}

#[test]
fn type_mismatch_is_a_bad_request() {
    let mut c = Crdt::<u8>::new(DataType::Counter);
    let e = c
        .apply(&1, &set_op(&["x"], &[]), None, NOW, &lim())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRequest);
    let s = Crdt::<u8>::new(DataType::Set);
    assert!(c.join(&s).is_err());
}

// ---- binary encoding ----

#[test]
fn encoding_round_trips_and_refuses_damage() {
    let mut m = Crdt::<String>::new(DataType::Map);
    let op = map_op(json!({"update": {
        "m": {"map": {"update": {"s": {"set": {"add": ["x"]}}, "c": {"counter": {"increment": 7}}}}},
        "r": {"register": {"assign": "v"}}
    }}));
    m.apply(&"node-a".to_string(), &op, None, NOW, &lim())
        .unwrap();
    let bytes = m.encode().unwrap();
    assert_eq!(bytes[0], 1, "format version byte");
    assert_eq!(Crdt::<String>::decode(&bytes).unwrap(), m);
    for cut in 0..bytes.len() {
        let e = Crdt::<String>::decode(&bytes[..cut]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
    }
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(Crdt::<String>::decode(&extra).is_err());
    let mut newer = bytes.clone();
    newer[0] = 2;
    let e = Crdt::<String>::decode(&newer).unwrap_err();
    assert!(e.to_string().contains("version"), "{e}");
}

#[test]
fn decode_refuses_a_dot_outside_the_clock() {
    // A member whose dot the clock does not cover would vanish in any join: such bytes were
    // not written by `encode`, so they are refused rather than half-trusted.
    let mut s = Crdt::<u8>::new(DataType::Set);
    s.apply(&1, &set_op(&["x"], &[]), None, NOW, &lim())
        .unwrap();
    let bytes = s.encode().unwrap();
    // version, Set, clock [(1, 1)], members [("x", [(1, 1)])], no deferred removes
    assert_eq!(bytes, vec![1, 1, 1, 1, 1, 1, 1, b'x', 1, 1, 1, 0]);
    let mut outside = bytes.clone();
    outside[10] = 2; // the member's dot becomes (1, 2)
    let e = Crdt::<u8>::decode(&outside).unwrap_err();
    assert!(e.to_string().contains("outside the clock"), "{e}");
    // Any single damaged byte gives an error or a well-formed value, never a panic.
    for i in 0..bytes.len() {
        for v in [0u8, 2, 0x7f, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] = v;
            if let Ok(x) = Crdt::<u8>::decode(&b) {
                assert_eq!(Crdt::<u8>::decode(&x.encode().unwrap()).unwrap(), x);
            }
        }
    }
}
