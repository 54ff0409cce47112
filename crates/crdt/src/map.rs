//! Map of named, typed fields with causal presence.

use crate::Actor;
use crate::clock::{Context, Dot, VClock};
use crate::counter::{add_signed, total};
use crate::dots::{
    DotSet, Members, dotset_join, member_add, member_remove, members_forget, members_join,
};
use crate::error::CrdtError;
use crate::limits::Limits;
use crate::op::{FieldOp, FieldType, MapOp};
pub use crate::removal::FieldKey;
use crate::removal::{
    Deferred, RemovePath, Target, check_grow, defer, join_deferred, pending_after_join,
};
use crate::set::validate_set_op;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Fields of one map level.
pub(crate) type Fields<A> = BTreeMap<FieldKey, Field<A>>;

/// One field: the dots of the updates that keep it present, and its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Field<A: Actor> {
    pub(crate) presence: DotSet<A>,
    pub(crate) store: Store<A>,
}

/// A field's content. Nested types share the top-level clock, so they hold only dots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Store<A: Actor> {
    /// Per actor: its running totals, tagged with the dot of its latest increment.
    Counter(BTreeMap<A, CounterEntry>),
    Set(Members<A>),
    /// Assignments not superseded by one that saw them: dot -> (timestamp ms, value).
    Register(BTreeMap<Dot<A>, (u64, String)>),
    /// Dots of the enables no disable has seen.
    Flag(DotSet<A>),
    Map(Fields<A>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CounterEntry {
    pub(crate) counter: u64,
    pub(crate) p: u64,
    pub(crate) n: u64,
}

/// A map whose fields are counters, sets, registers, flags or maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Map<A: Actor> {
    pub(crate) clock: VClock<A>,
    pub(crate) fields: Fields<A>,
    pub(crate) deferred: Deferred<A>,
}

impl<A: Actor> Default for Map<A> {
    fn default() -> Self {
        Map {
            clock: VClock::new(),
            fields: Fields::new(),
            deferred: Deferred::new(),
        }
    }
}

impl<A: Actor> Map<A> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply removes (as far as `context` saw them) then updates, all as one new write of
    /// `actor`. Every updated field, and every map above it, is kept present by that write.
    /// Counts and depth are checked here; the encoded size of the whole value by
    /// [`crate::Crdt::apply`].
    pub fn apply(
        &mut self,
        actor: &A,
        op: &MapOp,
        context: Option<&Context<A>>,
        now_ms: u64,
        limits: &Limits,
    ) -> Result<(), CrdtError> {
        validate_map_op(op, limits, 1)?;
        let mut paths = BTreeSet::new();
        collect_removes(op, &mut Vec::new(), &mut paths);
        let mut next = self.clone();
        if !paths.is_empty() {
            let ctx = context.ok_or(CrdtError::ContextRequired(
                "removing map fields or set members",
            ))?;
            for p in &paths {
                remove_path(&mut next.fields, p, ctx);
            }
            defer(&mut next.deferred, &next.clock, ctx, paths);
        }
        if !op.update.is_empty() {
            let dot = next.clock.next_dot(actor)?;
            apply_updates(&mut next.fields, op, &dot, now_ms)?;
        }
        let (members_before, fields_before) = stats(&self.fields);
        let (members_after, fields_after) = stats(&next.fields);
        check_grow(
            "set members",
            members_before,
            members_after,
            limits.max_set_members,
        )?;
        check_grow(
            "map fields",
            fields_before,
            fields_after,
            limits.max_map_fields,
        )?;
        *self = next;
        Ok(())
    }

    /// Least upper bound with another replica's map.
    pub fn join(&mut self, other: &Map<A>) {
        self.fields = fields_join(&self.fields, &self.clock, &other.fields, &other.clock);
        self.clock.join(&other.clock);
        join_deferred(&mut self.deferred, &other.deferred);
        for (ctx, paths) in pending_after_join(&mut self.deferred, &self.clock) {
            for p in &paths {
                remove_path(&mut self.fields, p, &ctx);
            }
        }
    }

    pub fn context(&self) -> Context<A> {
        self.clock.clone()
    }

    /// Object of field name to `{type: value}`; a name held with two types shows both keys.
    pub fn value_json(&self) -> Result<Value, CrdtError> {
        fields_json(&self.fields)
    }

    /// Whether any field of this name is present (at the top level).
    pub fn contains_field(&self, name: &str) -> bool {
        self.fields.keys().any(|k| k.name == name)
    }
}

impl<A: Actor> Field<A> {
    fn new(kind: FieldType) -> Self {
        let store = match kind {
            FieldType::Counter => Store::Counter(BTreeMap::new()),
            FieldType::Set => Store::Set(Members::new()),
            FieldType::Register => Store::Register(BTreeMap::new()),
            FieldType::Flag => Store::Flag(DotSet::new()),
            FieldType::Map => Store::Map(Fields::new()),
        };
        Field {
            presence: DotSet::new(),
            store,
        }
    }

    /// Drop every dot `ctx` covers; whether the field is still present.
    fn forget(&mut self, ctx: &VClock<A>) -> bool {
        self.presence.retain(|d| !ctx.contains(d));
        match &mut self.store {
            Store::Counter(e) => {
                e.retain(|a, en| !ctx.contains(&Dot::new(a.clone(), en.counter)));
            }
            Store::Set(m) => members_forget(m, ctx),
            Store::Register(r) => r.retain(|d, _| !ctx.contains(d)),
            Store::Flag(d) => d.retain(|d| !ctx.contains(d)),
            Store::Map(f) => fields_forget(f, ctx),
        }
        !self.presence.is_empty()
    }
}

impl<A: Actor> Store<A> {
    pub(crate) fn kind(&self) -> FieldType {
        match self {
            Store::Counter(_) => FieldType::Counter,
            Store::Set(_) => FieldType::Set,
            Store::Register(_) => FieldType::Register,
            Store::Flag(_) => FieldType::Flag,
            Store::Map(_) => FieldType::Map,
        }
    }
}

fn fields_forget<A: Actor>(f: &mut Fields<A>, ctx: &VClock<A>) {
    f.retain(|_, field| field.forget(ctx));
}

fn fields_join<A: Actor>(
    a: &Fields<A>,
    ac: &VClock<A>,
    b: &Fields<A>,
    bc: &VClock<A>,
) -> Fields<A> {
    let mut out = Fields::new();
    let keys: BTreeSet<&FieldKey> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let joined = match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) => field_join(x, ac, y, bc),
            // A field only one side holds keeps what the other side never saw.
            (Some(x), None) => {
                let mut x = x.clone();
                x.forget(bc).then_some(x)
            }
            (None, Some(y)) => {
                let mut y = y.clone();
                y.forget(ac).then_some(y)
            }
            (None, None) => None,
        };
        if let Some(f) = joined {
            out.insert(k.clone(), f);
        }
    }
    out
}

fn field_join<A: Actor>(
    a: &Field<A>,
    ac: &VClock<A>,
    b: &Field<A>,
    bc: &VClock<A>,
) -> Option<Field<A>> {
    let presence = dotset_join(&a.presence, ac, &b.presence, bc);
    if presence.is_empty() {
        return None;
    }
    let store = match (&a.store, &b.store) {
        (Store::Counter(x), Store::Counter(y)) => Store::Counter(counter_join(x, ac, y, bc)),
        (Store::Set(x), Store::Set(y)) => Store::Set(members_join(x, ac, y, bc)),
        (Store::Register(x), Store::Register(y)) => {
            let mut out = BTreeMap::new();
            for (d, v) in x {
                if y.contains_key(d) || !bc.contains(d) {
                    out.insert(d.clone(), v.clone());
                }
            }
            for (d, v) in y {
                if !ac.contains(d) {
                    out.insert(d.clone(), v.clone());
                }
            }
            Store::Register(out)
        }
        (Store::Flag(x), Store::Flag(y)) => Store::Flag(dotset_join(x, ac, y, bc)),
        (Store::Map(x), Store::Map(y)) => Store::Map(fields_join(x, ac, y, bc)),
        // The key names the type, so this cannot happen with values we built or decoded.
        (x, _) => x.clone(),
    };
    Some(Field { presence, store })
}

/// Each entry is the dot of its actor's latest increment: the usual dot rule, then the later
/// entry of an actor if both sides keep one.
fn counter_join<A: Actor>(
    a: &BTreeMap<A, CounterEntry>,
    ac: &VClock<A>,
    b: &BTreeMap<A, CounterEntry>,
    bc: &VClock<A>,
) -> BTreeMap<A, CounterEntry> {
    let mut out = BTreeMap::new();
    let actors: BTreeSet<&A> = a.keys().chain(b.keys()).collect();
    for actor in actors {
        let ea = a.get(actor);
        let eb = b.get(actor);
        let same = matches!((ea, eb), (Some(x), Some(y)) if x.counter == y.counter);
        let keep_a = ea.filter(|e| same || !bc.contains(&Dot::new(actor.clone(), e.counter)));
        let keep_b = eb.filter(|e| same || !ac.contains(&Dot::new(actor.clone(), e.counter)));
        let kept = match (keep_a, keep_b) {
            (Some(x), Some(y)) => Some(if y.counter > x.counter { y } else { x }),
            (x, y) => x.or(y),
        };
        if let Some(e) = kept {
            out.insert(actor.clone(), *e);
        }
    }
    out
}

fn apply_updates<A: Actor>(
    fields: &mut Fields<A>,
    op: &MapOp,
    dot: &Dot<A>,
    now_ms: u64,
) -> Result<(), CrdtError> {
    for (name, fop) in &op.update {
        let kind = fop.field_type();
        let field = fields
            .entry(FieldKey {
                name: name.clone(),
                kind,
            })
            .or_insert_with(|| Field::new(kind));
        // This write has seen every presence dot held here, so it replaces them.
        field.presence = DotSet::from([dot.clone()]);
        match (&mut field.store, fop) {
            (Store::Counter(e), FieldOp::Counter(c)) => {
                let mut en = e.get(&dot.actor).copied().unwrap_or(CounterEntry {
                    counter: 0,
                    p: 0,
                    n: 0,
                });
                add_signed(&mut en.p, &mut en.n, c.increment)?;
                en.counter = dot.counter;
                e.insert(dot.actor.clone(), en);
                total(e.values().map(|x| (x.p, x.n)))?;
            }
            (Store::Set(m), FieldOp::Set(s)) => {
                for a in &s.add {
                    member_add(m, a, dot);
                }
            }
            (Store::Register(r), FieldOp::Register(v)) => {
                r.clear();
                r.insert(dot.clone(), (now_ms, v.clone()));
            }
            (Store::Flag(d), FieldOp::Flag(on)) => {
                d.clear();
                if *on {
                    d.insert(dot.clone());
                }
            }
            (Store::Map(f), FieldOp::Map(m)) => apply_updates(f, m, dot, now_ms)?,
            // The field was created from the operation's type, so they agree.
            _ => {}
        }
    }
    Ok(())
}

fn collect_removes(op: &MapOp, at: &mut Vec<FieldKey>, out: &mut BTreeSet<RemovePath>) {
    for name in &op.remove {
        out.insert(RemovePath {
            fields: at.clone(),
            target: Target::Field(name.clone()),
        });
    }
    for (name, fop) in &op.update {
        match fop {
            FieldOp::Set(s) => {
                at.push(FieldKey {
                    name: name.clone(),
                    kind: FieldType::Set,
                });
                for m in &s.remove {
                    out.insert(RemovePath {
                        fields: at.clone(),
                        target: Target::Member(m.clone()),
                    });
                }
                at.pop();
            }
            FieldOp::Map(m) => {
                at.push(FieldKey {
                    name: name.clone(),
                    kind: FieldType::Map,
                });
                collect_removes(m, at, out);
                at.pop();
            }
            _ => {}
        }
    }
}

/// The fields of the nested map reached through `keys` (all map fields), if present.
fn walk<'a, A: Actor>(
    mut fields: &'a mut Fields<A>,
    keys: &[FieldKey],
) -> Option<&'a mut Fields<A>> {
    for k in keys {
        match fields.get_mut(k) {
            Some(Field {
                store: Store::Map(f),
                ..
            }) => fields = f,
            _ => return None,
        }
    }
    Some(fields)
}

/// Apply one remove as far as `ctx` saw: what is not present here yet is left to the
/// deferred copy of the remove.
pub(crate) fn remove_path<A: Actor>(fields: &mut Fields<A>, p: &RemovePath, ctx: &VClock<A>) {
    match &p.target {
        Target::Field(name) => {
            if let Some(level) = walk(fields, &p.fields) {
                level.retain(|k, f| k.name != *name || f.forget(ctx));
            }
        }
        Target::Member(m) => {
            let Some((set_key, parents)) = p.fields.split_last() else {
                return;
            };
            if let Some(Field {
                store: Store::Set(ms),
                ..
            }) = walk(fields, parents).and_then(|l| l.get_mut(set_key))
            {
                member_remove(ms, m, ctx);
            }
        }
    }
}

fn validate_map_op(op: &MapOp, limits: &Limits, depth: usize) -> Result<(), CrdtError> {
    check_grow("map nesting depth", 0, depth, limits.max_depth)?;
    for (name, fop) in &op.update {
        if op.remove.contains(name) {
            return Err(CrdtError::bad(format!(
                "map operation: field {name:?} is both updated and removed"
            )));
        }
        check_grow(
            "a field name's bytes",
            0,
            name.len(),
            limits.max_field_name_bytes,
        )?;
        match fop {
            FieldOp::Set(s) => validate_set_op(s, limits)?,
            FieldOp::Register(v) => check_grow(
                "a register value's bytes",
                0,
                v.len(),
                limits.max_register_bytes,
            )?,
            FieldOp::Map(m) => validate_map_op(m, limits, depth + 1)?,
            FieldOp::Counter(_) | FieldOp::Flag(_) => {}
        }
    }
    Ok(())
}

/// Largest set and largest map level (in fields) anywhere in the map.
fn stats<A: Actor>(fields: &Fields<A>) -> (usize, usize) {
    let mut members = 0;
    let mut width = fields.len();
    for f in fields.values() {
        match &f.store {
            Store::Set(m) => members = members.max(m.len()),
            Store::Map(sub) => {
                let (m, w) = stats(sub);
                members = members.max(m);
                width = width.max(w);
            }
            _ => {}
        }
    }
    (members, width)
}

fn fields_json<A: Actor>(fields: &Fields<A>) -> Result<Value, CrdtError> {
    let mut obj = serde_json::Map::new();
    for (k, f) in fields {
        let v = match &f.store {
            Store::Counter(e) => Value::from(total(e.values().map(|x| (x.p, x.n)))?),
            Store::Set(m) => Value::Array(m.keys().map(|s| Value::String(s.clone())).collect()),
            Store::Register(r) => {
                // Among concurrent assignments: latest timestamp, then largest actor.
                let best = r
                    .iter()
                    .max_by(|(d1, (t1, _)), (d2, (t2, _))| (t1, d1).cmp(&(t2, d2)));
                match best {
                    Some((_, (_, s))) => Value::String(s.clone()),
                    None => continue,
                }
            }
            Store::Flag(d) => Value::Bool(!d.is_empty()),
            Store::Map(sub) => fields_json(sub)?,
        };
        let entry = obj
            .entry(k.name.clone())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Value::Object(o) = entry {
            o.insert(k.kind.as_str().to_owned(), v);
        }
    }
    Ok(Value::Object(obj))
}
