//! Property tests: merge laws, and exactness of causality against a reference model that knows
//! nothing of clocks (only which writes each write's context had seen).

use super::*;
use crate::types::NodeId;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const REPLICAS: usize = 3;

fn actor(r: usize) -> Actor {
    Actor::new(NodeId(format!("n{r}")), r as u64 % 2)
}

#[derive(Clone, Debug)]
enum Ctx {
    Empty,
    /// The context of an earlier read (index into all reads so far, modulo their number).
    Read(usize),
    /// The join of two earlier reads, as a coordinator merging several replies would give.
    Join(usize, usize),
}

#[derive(Clone, Debug)]
enum Op {
    Write {
        replica: usize,
        ctx: Ctx,
        delete: bool,
        ts: u64,
    },
    Sync {
        from: usize,
        to: usize,
        both_ways: bool,
    },
}

fn ctx_strategy() -> impl Strategy<Value = Ctx> {
    prop_oneof![
        1 => Just(Ctx::Empty),
        4 => any::<usize>().prop_map(Ctx::Read),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Ctx::Join(a, b)),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..REPLICAS, ctx_strategy(), proptest::bool::weighted(0.15), 0u64..6).prop_map(
            |(replica, ctx, delete, ts)| Op::Write { replica, ctx, delete, ts }
        ),
        2 => (0..REPLICAS, 0..REPLICAS, any::<bool>())
            .prop_map(|(from, to, both_ways)| Op::Sync { from, to, both_ways }),
    ]
}

/// The reference model: which writes each replica has heard of, and what each write saw.
#[derive(Default)]
struct Model {
    seen: BTreeMap<Dot, BTreeSet<Dot>>,
    written: BTreeMap<Dot, Sibling>,
    /// Writes a replica knows of: its own, those its writes' contexts saw, and those synced in.
    known: Vec<BTreeSet<Dot>>,
    /// Writes whose value reached the replica (for LWW, where contexts do not drop values).
    delivered: Vec<BTreeSet<Dot>>,
    writes_by: Vec<u64>,
}

impl Model {
    fn new() -> Model {
        Model {
            known: vec![BTreeSet::new(); REPLICAS],
            delivered: vec![BTreeSet::new(); REPLICAS],
            writes_by: vec![0; REPLICAS],
            ..Model::default()
        }
    }

    /// A version survives unless some write the replica knows of had seen it.
    fn live(&self, r: usize) -> BTreeSet<Dot> {
        let superseded: BTreeSet<&Dot> = self.known[r]
            .iter()
            .flat_map(|w| self.seen[w].iter())
            .collect();
        self.known[r]
            .iter()
            .filter(|d| !superseded.contains(d))
            .cloned()
            .collect()
    }

    /// The dots a context vector claims to have seen, among the writes that exist.
    fn expand(&self, vv: &VersionVector) -> BTreeSet<Dot> {
        self.seen.keys().filter(|d| vv.covers(d)).cloned().collect()
    }

    fn lww_winner(&self, dots: &BTreeSet<Dot>) -> Option<Dot> {
        dots.iter()
            .max_by(|a, b| {
                let (sa, sb) = (&self.written[*a], &self.written[*b]);
                sa.last_modified_ms
                    .cmp(&sb.last_modified_ms)
                    .then_with(|| a.cmp(b))
            })
            .cloned()
    }
}

/// A context a client could hold: the clock it was given and the writes it had really seen.
type Read = (VersionVector, BTreeSet<Dot>);

struct Run {
    objs: Vec<Object>,
    model: Model,
    reads: Vec<Read>,
    /// Every object state seen along the way (for the merge laws).
    history: Vec<Object>,
}

fn pick_ctx(reads: &[Read], c: &Ctx) -> Read {
    if reads.is_empty() {
        return (VersionVector::new(), BTreeSet::new());
    }
    match c {
        Ctx::Empty => (VersionVector::new(), BTreeSet::new()),
        Ctx::Read(i) => reads[i % reads.len()].clone(),
        Ctx::Join(i, j) => {
            let (a, b) = (&reads[i % reads.len()], &reads[j % reads.len()]);
            (a.0.join(&b.0), a.1.union(&b.1).cloned().collect())
        }
    }
}

/// Apply `ops`, checking the implementation against the model after every step.
fn run(ops: &[Op], mode: ConflictMode) -> Result<Run, TestCaseError> {
    let mut objs = vec![Object::new(); REPLICAS];
    let mut m = Model::new();
    let mut reads: Vec<Read> = Vec::new();
    let mut history = Vec::new();
    let limits = Limits::default();
    for op in ops {
        match op {
            Op::Write {
                replica,
                ctx,
                delete,
                ts,
            } => {
                let r = *replica;
                let (vv, saw) = pick_ctx(&reads, ctx);
                m.writes_by[r] += 1;
                let dot = Dot {
                    actor: actor(r),
                    counter: m.writes_by[r],
                };
                let sib = if *delete {
                    Sibling::tombstone(*ts)
                } else {
                    Sibling::new(dot.to_string().into_bytes(), "text/plain", *ts)
                };
                let next =
                    Object::update(Some(&objs[r]), &vv, actor(r), sib.clone(), mode, &limits)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                // the new version carries the dot the model expects (newest of its actor)
                if mode == ConflictMode::Siblings {
                    let newest = next
                        .siblings()
                        .into_iter()
                        .find(|(d, _)| d.actor == actor(r))
                        .map(|(d, s)| (d, s.clone()));
                    prop_assert_eq!(newest, Some((dot.clone(), sib.clone())));
                }
                objs[r] = next;
                m.known[r].extend(saw.iter().cloned());
                m.known[r].insert(dot.clone());
                m.delivered[r].insert(dot.clone());
                m.seen.insert(dot.clone(), saw);
                m.written.insert(dot, sib);
            }
            Op::Sync {
                from,
                to,
                both_ways,
            } => {
                let (f, t) = (*from, *to);
                let merged = objs[t].sync_mode(&objs[f], mode);
                let from_known = m.known[f].clone();
                let from_delivered = m.delivered[f].clone();
                if *both_ways {
                    objs[f] = merged.clone();
                    let to_known = m.known[t].clone();
                    let to_delivered = m.delivered[t].clone();
                    m.known[f].extend(to_known);
                    m.delivered[f].extend(to_delivered);
                }
                objs[t] = merged;
                m.known[t].extend(from_known);
                m.delivered[t].extend(from_delivered);
            }
        }
        for (r, o) in objs.iter().enumerate() {
            // the context claims exactly the writes the replica knows of: no more, no fewer
            // (in LWW, where contexts are ignored, the writes whose values reached it)
            let claimed = match mode {
                ConflictMode::Siblings => m.known[r].clone(),
                ConflictMode::Lww => m.delivered[r].clone(),
            };
            prop_assert_eq!(m.expand(&o.context()), claimed, "context of replica {}", r);
            let have: BTreeMap<Dot, Sibling> = o
                .siblings()
                .into_iter()
                .map(|(d, s)| (d, s.clone()))
                .collect();
            for (d, s) in &have {
                prop_assert_eq!(s, &m.written[d], "payload of {}", d);
            }
            let dots: BTreeSet<Dot> = have.keys().cloned().collect();
            match mode {
                ConflictMode::Siblings => {
                    prop_assert_eq!(dots, m.live(r), "siblings of replica {}", r);
                }
                ConflictMode::Lww => {
                    let want: BTreeSet<Dot> = m.lww_winner(&m.delivered[r]).into_iter().collect();
                    prop_assert_eq!(dots, want, "LWW winner at replica {}", r);
                }
            }
            reads.push((o.context(), m.known[r].clone()));
            history.push(o.clone());
        }
    }
    // equal clocks mean equal objects, so comparing clocks is enough to decide repair
    let mut by_clock: std::collections::HashMap<VersionVector, &Object> = Default::default();
    for o in &history {
        let first = *by_clock.entry(o.context()).or_insert(o);
        prop_assert_eq!(first, o);
    }
    Ok(Run {
        objs,
        model: m,
        reads,
        history,
    })
}

/// Objects no history need produce: any valid clock, and payloads that may even disagree
/// under one dot (merging must stay lawful regardless).
fn arb_object() -> impl Strategy<Value = Object> {
    let sib = (
        0u8..3,
        0u64..4,
        any::<bool>(),
        proptest::option::of(0u64..4),
    )
        .prop_map(|(v, ts, del, exp)| {
            if del {
                Sibling::tombstone(ts)
            } else {
                Sibling::new(vec![v], "t", ts).expiring(exp)
            }
        });
    let entry = (1u64..6).prop_flat_map(move |counter| {
        (
            Just(counter),
            proptest::collection::btree_map(1..=counter, sib.clone(), 0..=(counter as usize)),
        )
    });
    proptest::collection::btree_map(0..REPLICAS, entry, 0..=REPLICAS).prop_map(|m| {
        let parts = m
            .into_iter()
            .map(|(r, (counter, vals))| (actor(r), counter, vals.into_iter().rev().collect()))
            .collect();
        Object::from_parts(parts).unwrap_or_default()
    })
}

/// Objects for the encoding tests, with arbitrary payloads and actor names.
fn arb_rich_object() -> impl Strategy<Value = Object> {
    let sib = (
        proptest::collection::vec(any::<u8>(), 0..300),
        "[ -~]{0,20}",
        any::<u64>(),
        any::<bool>(),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(v, ct, ts, deleted, expires_at_ms)| Sibling {
            value: v.into(),
            content_type: ct,
            last_modified_ms: ts,
            deleted,
            expires_at_ms,
        });
    let entry = (1u64..=MAX_COUNTER).prop_flat_map(move |counter| {
        let lo = counter.saturating_sub(20).max(1);
        (
            Just(counter),
            proptest::collection::btree_map(lo..=counter, sib.clone(), 0..4),
        )
    });
    proptest::collection::btree_map(("\\PC{1,16}", any::<u64>()), entry, 0..5).prop_map(|m| {
        let parts = m
            .into_iter()
            .map(|((a, e), (counter, vals))| {
                (
                    Actor::new(NodeId(a), e),
                    counter,
                    vals.into_iter().rev().collect(),
                )
            })
            .collect();
        Object::from_parts(parts).unwrap_or_default()
    })
}

fn check_laws(a: &Object, b: &Object, c: &Object) -> Result<(), TestCaseError> {
    let ab = a.sync(b);
    prop_assert_eq!(&ab, &b.sync(a), "commutative");
    prop_assert_eq!(ab.encode(), b.sync(a).encode());
    prop_assert_eq!(ab.sync(c), a.sync(&b.sync(c)), "associative");
    prop_assert_eq!(&a.sync(a), a, "idempotent");
    prop_assert_eq!(&ab.sync(a), &ab, "absorbs its inputs");
    prop_assert!(ab.descends(a) && ab.descends(b));
    let l = |x: &Object, y: &Object| x.sync_mode(y, ConflictMode::Lww);
    prop_assert_eq!(l(a, b), l(b, a), "LWW commutative");
    let abc = l(&l(a, b), c);
    prop_assert_eq!(&abc, &l(a, &l(b, c)), "LWW associative");
    let any = a.sibling_count() + b.sibling_count() + c.sibling_count() > 0;
    prop_assert_eq!(
        abc.sibling_count(),
        usize::from(any),
        "LWW keeps one version"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Siblings are exactly the writes no known write has seen, at every replica after every
    /// step; contexts claim exactly what the replica knows.
    #[test]
    fn sync_and_update_match_the_reference_model(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        run(&ops, ConflictMode::Siblings)?;
    }

    #[test]
    fn sync_laws_on_replica_histories(
        ops in proptest::collection::vec(op_strategy(), 1..40),
        picks in (any::<usize>(), any::<usize>(), any::<usize>()),
    ) {
        let r = run(&ops, ConflictMode::Siblings)?;
        let h = &r.history;
        let (a, b, c) = (&h[picks.0 % h.len()], &h[picks.1 % h.len()], &h[picks.2 % h.len()]);
        check_laws(a, b, c)?;
        check_laws(&r.objs[0], &r.objs[1], &r.objs[2])?;
    }

    #[test]
    fn sync_laws_on_arbitrary_objects(a in arb_object(), b in arb_object(), c in arb_object()) {
        check_laws(&a, &b, &c)?;
    }

    /// Converged replicas hold exactly the model's live set of every write.
    #[test]
    fn full_sync_converges_on_the_model(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        let r = run(&ops, ConflictMode::Siblings)?;
        let all = r.objs[0].sync(&r.objs[1]).sync(&r.objs[2]);
        let mut known = BTreeSet::new();
        for k in &r.model.known {
            known.extend(k.iter().cloned());
        }
        let superseded: BTreeSet<&Dot> = known.iter().flat_map(|w| r.model.seen[w].iter()).collect();
        let want: BTreeSet<Dot> = known.iter().filter(|d| !superseded.contains(d)).cloned().collect();
        let got: BTreeSet<Dot> = all.siblings().into_iter().map(|(d, _)| d).collect();
        prop_assert_eq!(got, want);
        // a write carrying the converged context supersedes everything
        let next = Object::update(Some(&all), &all.context(), actor(0), Sibling::new(&b"z"[..], "t", 9),
            ConflictMode::Siblings, &Limits::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(next.sibling_count(), 1);
        prop_assert!(!r.reads.is_empty());
    }

    /// LWW: one version everywhere, the highest (timestamp, dot) among the values a replica
    /// received, and the same final winner whatever order replicas sync in.
    #[test]
    fn lww_is_order_independent(
        ops in proptest::collection::vec(op_strategy(), 1..50),
        order in Just((0..REPLICAS).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let r = run(&ops, ConflictMode::Lww)?;
        let lww = ConflictMode::Lww;
        let forward = r.objs.iter().fold(Object::new(), |acc, o| acc.sync_mode(o, lww));
        let shuffled = order.iter().fold(Object::new(), |acc, i| r.objs[*i].sync_mode(&acc, lww));
        prop_assert_eq!(&forward, &shuffled);
        let every: BTreeSet<Dot> = r.model.written.keys().cloned().collect();
        let want: BTreeSet<Dot> = r.model.lww_winner(&every).into_iter().collect();
        let got: BTreeSet<Dot> = forward.siblings().into_iter().map(|(d, _)| d).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn encode_decode_round_trip(o in arb_rich_object()) {
        let bytes = o.encode();
        prop_assert_eq!(bytes[0], OBJECT_ENCODING_VERSION);
        prop_assert_eq!(Object::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?, o);
    }

    #[test]
    fn truncated_encodings_are_rejected(o in arb_rich_object(), cut in any::<usize>()) {
        let bytes = o.encode();
        let cut = cut % bytes.len();
        prop_assert!(Object::decode(&bytes[..cut]).is_err());
    }

    #[test]
    fn corrupted_encodings_never_panic(o in arb_rich_object(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut bytes = o.encode();
        for (i, x) in flips {
            let n = bytes.len();
            bytes[i % n] ^= x | 1;
        }
        if let Ok(d) = Object::decode(&bytes) {
            // whatever decodes is a valid object that re-encodes to itself
            prop_assert_eq!(Object::decode(&d.encode()).ok(), Some(d));
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Object::decode(&bytes);
        for version in [1u8, 2, OBJECT_ENCODING_VERSION] {
            let mut with_version = vec![version];
            with_version.extend(bytes.iter().copied());
            let _ = Object::decode(&with_version);
        }
    }

    /// A reader at `now` sees exactly the versions that are neither tombstones nor expired by
    /// then, in the order of `siblings`; the key reads as deleted exactly when none is left.
    #[test]
    fn expired_versions_are_invisible_after_their_instant(o in arb_object(), now in 0u64..5) {
        let live: Vec<Dot> = o.live_siblings(now).into_iter().map(|(d, _)| d).collect();
        let want: Vec<Dot> = o
            .siblings()
            .into_iter()
            .filter(|(_, s)| !s.deleted && s.expires_at_ms.is_none_or(|at| at > now))
            .map(|(d, _)| d)
            .collect();
        prop_assert_eq!(&live, &want);
        prop_assert_eq!(o.nothing_live(now), o.sibling_count() > 0 && live.is_empty());
        // Dead since: defined exactly when every version is a tombstone or expires, and then
        // nothing is live from that instant on.
        let every_dies = o.sibling_count() > 0
            && o.siblings().iter().all(|(_, s)| s.deleted || s.expires_at_ms.is_some());
        prop_assert_eq!(o.dead_since_ms().is_some(), every_dies);
        if let Some(t) = o.dead_since_ms() {
            prop_assert!(o.live_siblings(t).is_empty());
        }
    }
}
