//! The binary encoding: a format version byte, then postcard.
//!
//! Nested maps are written flat, one record per field with its full path, so decoding never
//! recurses (hostile bytes cannot nest deep enough to exhaust the stack) and every record can
//! be checked on its own. Decoding accepts only the canonical form `encode` writes: sorted,
//! without duplicates, every dot inside the clock. Anything else is damage.

use crate::clock::{Dot, VClock};
use crate::counter::{Counter, Pn};
use crate::dots::{DotSet, Members};
use crate::error::CrdtError;
use crate::limits::Limits;
use crate::map::{CounterEntry, Field, Fields, Map, Store};
use crate::op::FieldType;
use crate::removal::{Deferred, FieldKey, RemovePath, Target};
use crate::set::OrSet;
use crate::{Actor, Crdt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Written first; a reader refuses versions it does not know.
pub(crate) const FORMAT_VERSION: u8 = 1;

/// Deepest map path a decoded value may have, whatever the limits of the writer were.
pub(crate) const MAX_DECODE_DEPTH: usize = 64;

type WireClock<A> = Vec<(A, u64)>;
type WireMembers<A> = Vec<(String, Vec<Dot<A>>)>;

#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "A: Serialize", deserialize = "A: Actor"))]
enum WireObject<A> {
    Counter(Vec<(A, u64, u64)>),
    Set {
        clock: WireClock<A>,
        members: WireMembers<A>,
        deferred: Vec<WireDeferred<A>>,
    },
    Map {
        clock: WireClock<A>,
        fields: Vec<WireField<A>>,
        deferred: Vec<WireDeferred<A>>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "A: Serialize", deserialize = "A: Actor"))]
struct WireDeferred<A> {
    context: WireClock<A>,
    paths: Vec<RemovePath>,
}

#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "A: Serialize", deserialize = "A: Actor"))]
struct WireField<A> {
    path: Vec<FieldKey>,
    presence: Vec<Dot<A>>,
    store: WireStore<A>,
}

#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "A: Serialize", deserialize = "A: Actor"))]
enum WireStore<A> {
    /// actor, dot counter of its latest increment, increments, decrements
    Counter(Vec<(A, u64, u64, u64)>),
    Set(WireMembers<A>),
    /// dot, timestamp ms, value
    Register(Vec<(Dot<A>, u64, String)>),
    Flag(Vec<Dot<A>>),
    /// Its fields follow as records of their own.
    Map,
}

// ---------------- encode ----------------

fn clock_out<A: Actor>(c: &VClock<A>) -> WireClock<A> {
    c.iter().map(|(a, n)| (a.clone(), n)).collect()
}

fn members_out<A: Actor>(m: &Members<A>) -> WireMembers<A> {
    m.iter()
        .map(|(k, d)| (k.clone(), d.iter().cloned().collect()))
        .collect()
}

fn deferred_out<A: Actor>(d: &Deferred<A>) -> Vec<WireDeferred<A>> {
    d.iter()
        .map(|(c, p)| WireDeferred {
            context: clock_out(c),
            paths: p.iter().cloned().collect(),
        })
        .collect()
}

fn fields_out<A: Actor>(fields: &Fields<A>, at: &mut Vec<FieldKey>, out: &mut Vec<WireField<A>>) {
    for (k, f) in fields {
        at.push(k.clone());
        let store = match &f.store {
            Store::Counter(e) => WireStore::Counter(
                e.iter()
                    .map(|(a, x)| (a.clone(), x.counter, x.p, x.n))
                    .collect(),
            ),
            Store::Set(m) => WireStore::Set(members_out(m)),
            Store::Register(r) => WireStore::Register(
                r.iter()
                    .map(|(d, (t, v))| (d.clone(), *t, v.clone()))
                    .collect(),
            ),
            Store::Flag(d) => WireStore::Flag(d.iter().cloned().collect()),
            Store::Map(_) => WireStore::Map,
        };
        out.push(WireField {
            path: at.clone(),
            presence: f.presence.iter().cloned().collect(),
            store,
        });
        if let Store::Map(sub) = &f.store {
            fields_out(sub, at, out);
        }
        at.pop();
    }
}

fn write<A: Actor>(w: &WireObject<A>) -> Result<Vec<u8>, CrdtError> {
    let mut out = vec![FORMAT_VERSION];
    let body = postcard::to_stdvec(w).map_err(|e| CrdtError::Decode(format!("encode: {e}")))?;
    out.extend_from_slice(&body);
    Ok(out)
}

pub(crate) fn encode_counter<A: Actor>(c: &Counter<A>) -> Result<Vec<u8>, CrdtError> {
    write(&WireObject::Counter(
        c.entries
            .iter()
            .map(|(a, e)| (a.clone(), e.p, e.n))
            .collect(),
    ))
}

pub(crate) fn encode_set<A: Actor>(s: &OrSet<A>) -> Result<Vec<u8>, CrdtError> {
    write(&WireObject::Set {
        clock: clock_out(&s.clock),
        members: members_out(&s.members),
        deferred: deferred_out(&s.deferred),
    })
}

pub(crate) fn encode_map<A: Actor>(m: &Map<A>) -> Result<Vec<u8>, CrdtError> {
    let mut fields = Vec::new();
    fields_out(&m.fields, &mut Vec::new(), &mut fields);
    write(&WireObject::Map {
        clock: clock_out(&m.clock),
        fields,
        deferred: deferred_out(&m.deferred),
    })
}

pub(crate) fn encode<A: Actor>(v: &Crdt<A>) -> Result<Vec<u8>, CrdtError> {
    match v {
        Crdt::Counter(c) => encode_counter(c),
        Crdt::Set(s) => encode_set(s),
        Crdt::Map(m) => encode_map(m),
    }
}

/// Refuse an operation whose result encodes larger than the limit, unless the value was
/// already that large (then it may still shrink). Encodes "before" only when needed.
pub(crate) fn check_encoded_size(
    before: impl FnOnce() -> Result<Vec<u8>, CrdtError>,
    after: impl FnOnce() -> Result<Vec<u8>, CrdtError>,
    limits: &Limits,
) -> Result<(), CrdtError> {
    let after = after()?.len();
    if after <= limits.max_encoded_bytes {
        return Ok(());
    }
    crate::removal::check_grow(
        "the encoded value's bytes",
        before()?.len(),
        after,
        limits.max_encoded_bytes,
    )
}

// ---------------- decode ----------------

fn bad(msg: impl Into<String>) -> CrdtError {
    CrdtError::Decode(msg.into())
}

/// Items must be strictly increasing: sorted and without duplicates, as encode writes them.
fn strictly_increasing<'a, T: Ord + 'a>(
    items: impl IntoIterator<Item = &'a T>,
    what: &str,
) -> Result<(), CrdtError> {
    let mut prev: Option<&T> = None;
    for x in items {
        if prev.is_some_and(|p| p >= x) {
            return Err(bad(format!("{what} not in canonical order")));
        }
        prev = Some(x);
    }
    Ok(())
}

fn clock_in<A: Actor>(c: WireClock<A>) -> Result<VClock<A>, CrdtError> {
    strictly_increasing(c.iter().map(|(a, _)| a), "clock entries")?;
    let mut out = VClock::new();
    for (a, n) in c {
        if n == 0 {
            return Err(bad("clock entry of zero"));
        }
        out.set(a, n);
    }
    Ok(out)
}

/// A dot is only meaningful inside the clock of the state holding it.
fn dot_ok<A: Actor>(d: &Dot<A>, clock: &VClock<A>) -> Result<(), CrdtError> {
    if d.counter == 0 || !clock.contains(d) {
        return Err(bad("a dot outside the clock"));
    }
    Ok(())
}

fn dots_in<A: Actor>(
    d: Vec<Dot<A>>,
    clock: &VClock<A>,
    what: &str,
) -> Result<DotSet<A>, CrdtError> {
    strictly_increasing(d.iter(), what)?;
    for x in &d {
        dot_ok(x, clock)?;
    }
    Ok(d.into_iter().collect())
}

fn members_in<A: Actor>(m: WireMembers<A>, clock: &VClock<A>) -> Result<Members<A>, CrdtError> {
    strictly_increasing(m.iter().map(|(k, _)| k), "set members")?;
    let mut out = Members::new();
    for (k, d) in m {
        if d.is_empty() {
            return Err(bad("a set member without a dot"));
        }
        out.insert(k, dots_in(d, clock, "a member's dots")?);
    }
    Ok(out)
}

fn deferred_in<A: Actor>(
    d: Vec<WireDeferred<A>>,
    clock: &VClock<A>,
    path_ok: impl Fn(&RemovePath) -> bool,
) -> Result<Deferred<A>, CrdtError> {
    let mut out = Deferred::new();
    let mut prev: Option<VClock<A>> = None;
    for w in d {
        let ctx = clock_in(w.context)?;
        if prev.as_ref().is_some_and(|p| *p >= ctx) {
            return Err(bad("deferred removes not in canonical order"));
        }
        // A remove whose context is fully seen is applied and dropped, never stored.
        if clock.descends(&ctx) || w.paths.is_empty() {
            return Err(bad("a deferred remove that is complete or empty"));
        }
        strictly_increasing(w.paths.iter(), "deferred remove paths")?;
        if !w.paths.iter().all(&path_ok) {
            return Err(bad("a deferred remove with a malformed path"));
        }
        prev = Some(ctx.clone());
        out.insert(ctx, w.paths.into_iter().collect());
    }
    Ok(out)
}

fn map_path_ok(p: &RemovePath) -> bool {
    let (maps, last_is_set) = match &p.target {
        Target::Field(_) => (&p.fields[..], true),
        Target::Member(_) => match p.fields.split_last() {
            Some((last, parents)) => (parents, last.kind == FieldType::Set),
            None => return false,
        },
    };
    last_is_set
        && p.fields.len() <= MAX_DECODE_DEPTH
        && maps.iter().all(|k| k.kind == FieldType::Map)
}

fn store_in<A: Actor>(
    kind: FieldType,
    w: WireStore<A>,
    clock: &VClock<A>,
) -> Result<Store<A>, CrdtError> {
    let store = match w {
        WireStore::Counter(e) => {
            strictly_increasing(e.iter().map(|x| &x.0), "counter entries")?;
            let mut out = BTreeMap::new();
            for (a, counter, p, n) in e {
                dot_ok(&Dot::new(a.clone(), counter), clock)?;
                out.insert(a, CounterEntry { counter, p, n });
            }
            Store::Counter(out)
        }
        WireStore::Set(m) => Store::Set(members_in(m, clock)?),
        WireStore::Register(r) => {
            strictly_increasing(r.iter().map(|x| &x.0), "register entries")?;
            let mut out = BTreeMap::new();
            for (d, t, v) in r {
                dot_ok(&d, clock)?;
                out.insert(d, (t, v));
            }
            Store::Register(out)
        }
        WireStore::Flag(d) => Store::Flag(dots_in(d, clock, "flag dots")?),
        WireStore::Map => Store::Map(Fields::new()),
    };
    if store.kind() != kind {
        return Err(bad("a field whose content is not of its type"));
    }
    Ok(store)
}

fn fields_in<A: Actor>(w: Vec<WireField<A>>, clock: &VClock<A>) -> Result<Fields<A>, CrdtError> {
    strictly_increasing(w.iter().map(|f| &f.path), "map fields")?;
    let mut root = Fields::new();
    for f in w {
        let Some((key, parents)) = f.path.split_last() else {
            return Err(bad("a map field with an empty path"));
        };
        if f.path.len() > MAX_DECODE_DEPTH {
            return Err(bad("map fields nested too deep"));
        }
        if f.presence.is_empty() {
            return Err(bad("a map field that is not present"));
        }
        let field = Field {
            presence: dots_in(f.presence, clock, "a field's presence dots")?,
            store: store_in(key.kind, f.store, clock)?,
        };
        // Parents come first in canonical order, so they must already be there.
        let mut level = &mut root;
        for k in parents {
            level = match level.get_mut(k) {
                Some(Field {
                    store: Store::Map(sub),
                    ..
                }) => sub,
                _ => return Err(bad("a map field whose parent map is missing")),
            };
        }
        level.insert(key.clone(), field);
    }
    Ok(root)
}

pub(crate) fn decode<A: Actor>(bytes: &[u8]) -> Result<Crdt<A>, CrdtError> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(bad("empty input"));
    };
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "unknown format version {version} (this build reads {FORMAT_VERSION})"
        )));
    }
    let (w, rest): (WireObject<A>, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the value", rest.len())));
    }
    Ok(match w {
        WireObject::Counter(e) => {
            strictly_increasing(e.iter().map(|x| &x.0), "counter entries")?;
            Crdt::Counter(Counter {
                entries: e.into_iter().map(|(a, p, n)| (a, Pn { p, n })).collect(),
            })
        }
        WireObject::Set {
            clock,
            members,
            deferred,
        } => {
            let clock = clock_in(clock)?;
            let members = members_in(members, &clock)?;
            let deferred = deferred_in(deferred, &clock, |p| {
                p.fields.is_empty() && matches!(p.target, Target::Member(_))
            })?;
            Crdt::Set(OrSet {
                clock,
                members,
                deferred,
            })
        }
        WireObject::Map {
            clock,
            fields,
            deferred,
        } => {
            let clock = clock_in(clock)?;
            let fields = fields_in(fields, &clock)?;
            let deferred = deferred_in(deferred, &clock, map_path_ok)?;
            Crdt::Map(Map {
                clock,
                fields,
                deferred,
            })
        }
    })
}
