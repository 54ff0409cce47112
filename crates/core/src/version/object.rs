//! A stored key's versions: a DVVSet-style clock with the values attached to their dots.
//!
//! The clock has one entry per coordinating replica: `(actor, counter, values newest first)`.
//! `counter = n` says every write `actor:1..=n` has been seen; each value carries its own dot
//! `actor:k` (k <= n). A dot the clock covers but that has no value was superseded by a write
//! that saw it. This gives exact causality with a clock bounded by the number of replicas.

use super::custody::{Custody, STORED_COPY_TAG};
use super::lww::{self, Candidate};
use super::sibling::Sibling;
use super::vv::{Actor, Dot, VersionVector};
use crate::types::NodeId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// First byte of [`Object::encode`]; bump when the layout changes.
/// 1: actors were bare node ids; 2: actors are write identities; 3: versions carry an
/// optional expiry. 1 and 2 are read, never written.
pub const OBJECT_ENCODING_VERSION: u8 = 3;

/// The format-1 layout, read so that data written before write identities stays readable.
const LEGACY_ENCODING_VERSION: u8 = 1;

/// The format-2 layout (write identities, no expiry), read so format-2 data stays readable.
const NO_EXPIRY_ENCODING_VERSION: u8 = 2;

/// Largest counter accepted from outside the process. Far beyond any real key's write count,
/// and low enough that `counter + 1` can never overflow.
pub const MAX_COUNTER: u64 = 1 << 53;

/// How a bucket settles concurrent writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictMode {
    /// Keep every concurrent version; clients resolve them.
    #[default]
    Siblings,
    /// Keep one version: the highest timestamp.
    Lww,
}

impl fmt::Display for ConflictMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConflictMode::Siblings => "siblings",
            ConflictMode::Lww => "lww",
        })
    }
}

impl FromStr for ConflictMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "siblings" => Ok(ConflictMode::Siblings),
            "lww" => Ok(ConflictMode::Lww),
            other => Err(format!(
                "unknown conflict mode {other:?} (expected siblings or lww)"
            )),
        }
    }
}

/// Size limits applied to writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest accepted value, in bytes.
    pub max_value_bytes: usize,
    /// Callers log a warning when an object has more siblings than this.
    pub warn_siblings: usize,
    /// A write that would leave more siblings than this is refused.
    pub max_siblings: usize,
    /// Largest total size of an object's versions (all sibling values together). Without
    /// it, 100 siblings of 8 MiB make a key that no frame can carry: it could be neither
    /// replicated, read remotely, handed off nor repaired.
    pub max_object_bytes: usize,
}

/// Default of [`Limits::max_object_bytes`]: twice the default value limit.
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 16 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value_bytes: 8 * 1024 * 1024,
            warn_siblings: 25,
            max_siblings: 100,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("value of {size} bytes is over the limit of {limit} bytes")]
    ValueTooLarge { size: usize, limit: usize },
    #[error("the write would leave {count} siblings, over the limit of {limit}")]
    TooManySiblings { count: usize, limit: usize },
    #[error(
        "the write would leave {size} bytes of versions, over the object limit of {limit} bytes"
    )]
    ObjectTooLarge { size: usize, limit: usize },
    #[error("cannot decode object: {0}")]
    Decode(String),
}

/// One actor's clock entry with the values still live under its dots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    actor: Actor,
    counter: u64,
    /// `(dot counter, version)`, dot counters strictly descending, all in `1..=counter`.
    values: Vec<(u64, Sibling)>,
}

impl Entry {
    fn empty(actor: Actor, counter: u64) -> Entry {
        Entry {
            actor,
            counter,
            values: Vec::new(),
        }
    }
}

/// All versions of one key plus the causal history that explains them.
///
/// Always in canonical form (entries sorted by actor, no zero counters, values newest first),
/// so `==` and [`Object::encode`] compare meaning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Object {
    entries: Vec<Entry>,
}

impl Object {
    /// An object with no versions and no history.
    pub fn new() -> Object {
        Object::default()
    }

    /// A coordinator's write.
    ///
    /// `stored` is this replica's copy (or `None`), `context` what the client last read (empty
    /// = concurrent with everything), `actor` the write identity this replica holds custody of
    /// for the key (see [`super::identity`]): the caller guarantees that `stored` has seen every
    /// write ever issued under it, so the new dot names no other write. In `Siblings` mode the
    /// result drops exactly the versions `context` has seen and keeps the others beside the new
    /// one, and the clock absorbs `context`, so the result descends everything the client saw.
    ///
    /// In `Lww` mode the context plays no part: the result keeps the LWW winner of the stored
    /// versions and the new one (see [`super::lww`]), and the clock records only writes whose
    /// values reached this replica. That keeps "equal clocks" meaning "equal objects" in LWW
    /// buckets too, so [`Object::descends`] stays a sound test for read repair.
    pub fn update(
        stored: Option<&Object>,
        context: &VersionVector,
        actor: impl Into<Actor>,
        sibling: Sibling,
        mode: ConflictMode,
        limits: &Limits,
    ) -> Result<Object, VersionError> {
        if sibling.value.len() > limits.max_value_bytes {
            return Err(VersionError::ValueTooLarge {
                size: sibling.value.len(),
                limit: limits.max_value_bytes,
            });
        }
        let mut entries = stored.map(|o| o.entries.clone()).unwrap_or_default();
        if mode == ConflictMode::Siblings {
            for e in &mut entries {
                let seen = context.get(&e.actor);
                e.values.retain(|(k, _)| *k > seen);
            }
            for (a, n) in context.iter() {
                match entries.binary_search_by(|e| e.actor.cmp(a)) {
                    Ok(i) => entries[i].counter = entries[i].counter.max(n),
                    Err(i) => entries.insert(i, Entry::empty(a.clone(), n)),
                }
            }
        }
        // The write's own time: versions expired by then are history and do not count.
        let now = sibling.last_modified_ms;
        let actor: Actor = actor.into();
        let i = match entries.binary_search_by(|e| e.actor.cmp(&actor)) {
            Ok(i) => i,
            Err(i) => {
                entries.insert(i, Entry::empty(actor, 0));
                i
            }
        };
        let e = &mut entries[i];
        e.counter = e.counter.saturating_add(1);
        e.values.insert(0, (e.counter, sibling));

        let mut obj = Object { entries };
        if mode == ConflictMode::Lww {
            obj.resolve_lww();
        }
        // One pass over the versions that still count (expired ones are history).
        let (count, size) = obj
            .candidates()
            .filter(|c| !c.sibling.is_expired(now))
            .fold((0usize, 0usize), |(n, bytes), c| {
                (n + 1, bytes.saturating_add(c.sibling.value.len()))
            });
        if count > limits.max_siblings {
            return Err(VersionError::TooManySiblings {
                count,
                limit: limits.max_siblings,
            });
        }
        if size > limits.max_object_bytes {
            return Err(VersionError::ObjectTooLarge {
                size,
                limit: limits.max_object_bytes,
            });
        }
        Ok(obj)
    }

    /// Merge two replicas' copies of the same key: the clocks join, and a version survives
    /// unless the other copy's clock has seen its dot without keeping it.
    /// Commutative, associative and idempotent.
    pub fn sync(&self, other: &Object) -> Object {
        self.merge_with(other, merge_causal)
    }

    /// [`Object::sync`] for a bucket's conflict mode: in `Lww` mode the clocks join and the single
    /// LWW winner of both copies is kept.
    pub fn sync_mode(&self, other: &Object, mode: ConflictMode) -> Object {
        match mode {
            ConflictMode::Siblings => self.sync(other),
            ConflictMode::Lww => {
                let mut out = self.merge_with(other, merge_union);
                out.resolve_lww();
                out
            }
        }
    }

    /// This object resolved for `mode` (`Lww`: only the winner stays; `Siblings`: unchanged).
    pub fn resolve(&self, mode: ConflictMode) -> Object {
        let mut out = self.clone();
        if mode == ConflictMode::Lww {
            out.resolve_lww();
        }
        out
    }

    fn resolve_lww(&mut self) {
        let win = lww::winner(self.candidates()).map(|c| (c.actor.clone(), c.counter));
        let Some((actor, counter)) = win else { return };
        for e in &mut self.entries {
            if e.actor == actor {
                e.values.retain(|(k, _)| *k == counter);
            } else {
                e.values.clear();
            }
        }
    }

    fn candidates(&self) -> impl Iterator<Item = Candidate<'_>> {
        self.entries.iter().flat_map(|e| {
            e.values.iter().map(move |(k, s)| Candidate {
                actor: &e.actor,
                counter: *k,
                sibling: s,
            })
        })
    }

    /// Walk both entry lists in actor order, combining the values of shared actors with `f`.
    fn merge_with(&self, other: &Object, f: fn(&Entry, &Entry) -> Vec<(u64, Sibling)>) -> Object {
        let (a, b) = (&self.entries, &other.entries);
        let mut out = Vec::with_capacity(a.len().max(b.len()));
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let ord = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => x.actor.cmp(&y.actor),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match ord {
                Ordering::Less => {
                    out.push(a[i].clone());
                    i += 1;
                }
                Ordering::Greater => {
                    out.push(b[j].clone());
                    j += 1;
                }
                Ordering::Equal => {
                    let (x, y) = (&a[i], &b[j]);
                    out.push(Entry {
                        actor: x.actor.clone(),
                        counter: x.counter.max(y.counter),
                        values: f(x, y),
                    });
                    i += 1;
                    j += 1;
                }
            }
        }
        Object { entries: out }
    }

    /// The causal context of this object: the join of its clock. A write carrying it
    /// supersedes every version here.
    pub fn context(&self) -> VersionVector {
        self.entries
            .iter()
            .map(|e| (e.actor.clone(), e.counter))
            .collect()
    }

    /// How many writes of `actor` this copy has seen (0 when the actor is absent).
    pub fn counter_of(&self, actor: &Actor) -> u64 {
        match self.entries.binary_search_by(|e| e.actor.cmp(actor)) {
            Ok(i) => self.entries[i].counter,
            Err(_) => 0,
        }
    }

    /// True when this copy has seen every write `other` has (also when they are equal).
    /// Copies built by `update` and `sync`/`sync_mode` in one mode have equal clocks only
    /// when they are equal, so a replica whose copy the merged result does not descend (or
    /// that the merged result strictly descends) needs repair.
    pub fn descends(&self, other: &Object) -> bool {
        other
            .entries
            .iter()
            .all(|e| self.counter_of(&e.actor) >= e.counter)
    }

    /// True when each copy has seen a write the other has not.
    pub fn concurrent(&self, other: &Object) -> bool {
        !self.descends(other) && !other.descends(self)
    }

    /// Every version with its dot, by actor, newest first within an actor.
    pub fn siblings(&self) -> Vec<(Dot, &Sibling)> {
        self.candidates()
            .map(|c| {
                (
                    Dot {
                        actor: c.actor.clone(),
                        counter: c.counter,
                    },
                    c.sibling,
                )
            })
            .collect()
    }

    /// Versions a reader at `now_ms` sees (neither tombstones nor expired), in
    /// [`Object::siblings`] order.
    pub fn live_siblings(&self, now_ms: u64) -> Vec<(Dot, &Sibling)> {
        let mut v = self.siblings();
        v.retain(|(_, s)| s.is_live(now_ms));
        v
    }

    /// True when versions exist and a reader at `now_ms` sees none of them: a deleted or
    /// expired key, which reads like a missing one but still has a context.
    pub fn nothing_live(&self, now_ms: u64) -> bool {
        self.sibling_count() > 0 && !self.candidates().any(|c| c.sibling.is_live(now_ms))
    }

    /// What a reader at `now_ms` sees: this object without its expired versions, the clock
    /// unchanged (so the context still covers them and a write carrying it supersedes them).
    /// Borrowed when nothing has expired, so the common read copies nothing.
    pub fn visible_at(&self, now_ms: u64) -> Cow<'_, Object> {
        if self.hides_at(now_ms) {
            let mut out = self.clone();
            out.drop_expired(now_ms);
            Cow::Owned(out)
        } else {
            Cow::Borrowed(self)
        }
    }

    /// [`Object::visible_at`] of an object the caller owns, without copying it.
    pub fn into_visible_at(mut self, now_ms: u64) -> Object {
        if self.hides_at(now_ms) {
            self.drop_expired(now_ms);
        }
        self
    }

    fn drop_expired(&mut self, now_ms: u64) {
        for e in &mut self.entries {
            // A dot the clock covers without a value reads as superseded: exactly right for a
            // version no reader may see any more.
            e.values.retain(|(_, s)| !s.is_expired(now_ms));
        }
    }

    /// True when a reader at `now_ms` sees less than this object holds (some version has
    /// expired), so [`Object::visible_at`] would change it.
    pub fn hides_at(&self, now_ms: u64) -> bool {
        self.candidates().any(|c| c.sibling.is_expired(now_ms))
    }

    /// Since when every version is only history (tombstones and expired values), `None` when
    /// some version never expires or there is none. Reaping waits a grace delay past this.
    pub fn dead_since_ms(&self) -> Option<u64> {
        let mut latest: Option<u64> = None;
        for c in self.candidates() {
            let t = c.sibling.dead_since_ms()?;
            latest = Some(latest.map_or(t, |l| l.max(t)));
        }
        latest
    }

    /// When the expiry index must list this object: its [`Object::dead_since_ms`] if any of
    /// its versions expires (pure tombstones are found by the reaper's scan, not the index).
    pub fn expiry_index_ms(&self) -> Option<u64> {
        let expires = self
            .candidates()
            .any(|c| !c.sibling.deleted && c.sibling.expires_at_ms.is_some());
        if expires { self.dead_since_ms() } else { None }
    }

    /// Whether the tombstone index must list this object: every version a tombstone and none
    /// expiring (keys with expiring versions are listed in the expiry index instead).
    pub fn in_tombstone_index(&self) -> bool {
        self.expiry_index_ms().is_none() && self.dead_since_ms().is_some()
    }

    /// Number of versions, tombstones included.
    pub fn sibling_count(&self) -> usize {
        self.entries.iter().map(|e| e.values.len()).sum()
    }

    /// Nothing at all: no version and no history (what [`Object::new`] gives).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when versions exist and every one is a tombstone (a deleted key).
    pub fn all_deleted(&self) -> bool {
        let mut any = false;
        for c in self.candidates() {
            if !c.sibling.deleted {
                return false;
            }
            any = true;
        }
        any
    }

    /// Number of actors in the clock.
    pub fn clock_entries(&self) -> usize {
        self.entries.len()
    }

    /// The actors of the clock, in order.
    pub fn actors(&self) -> impl Iterator<Item = &Actor> {
        self.entries.iter().map(|e| &e.actor)
    }

    /// Newest `last_modified_ms` among the versions (0 when there are none).
    pub fn max_last_modified_ms(&self) -> u64 {
        self.candidates()
            .map(|c| c.sibling.last_modified_ms)
            .max()
            .unwrap_or(0)
    }

    /// Compact binary form: one version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let payload: usize = self
            .candidates()
            .map(|c| c.sibling.value.len() + c.sibling.content_type.len() + 24)
            .sum();
        let mut out = Vec::with_capacity(1 + payload + self.entries.len() * 24);
        out.push(OBJECT_ENCODING_VERSION);
        // Writing into a Vec cannot fail, and every field type serialises without error.
        match postcard::to_extend(self, out) {
            Ok(v) => v,
            Err(_) => vec![OBJECT_ENCODING_VERSION, 0],
        }
    }

    /// Inverse of [`Object::encode`]. Rejects unknown versions, trailing bytes and anything
    /// that breaks the clock's invariants; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Object, VersionError> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or_else(|| VersionError::Decode("empty input".into()))?;
        match version {
            OBJECT_ENCODING_VERSION => take_all::<Object>(rest),
            NO_EXPIRY_ENCODING_VERSION => {
                let v2 = take_all::<Vec<NoExpiryEntry>>(rest)?;
                let entries = v2
                    .into_iter()
                    .map(|e| Entry {
                        actor: e.actor,
                        counter: e.counter,
                        values: no_expiry(e.values),
                    })
                    .collect();
                Object::from_entries(entries).map_err(VersionError::Decode)
            }
            LEGACY_ENCODING_VERSION => {
                let legacy = take_all::<Vec<LegacyEntry>>(rest)?;
                let entries = legacy
                    .into_iter()
                    .map(|e| Entry {
                        actor: Actor::from(e.actor),
                        counter: e.counter,
                        values: no_expiry(e.values),
                    })
                    .collect();
                Object::from_entries(entries).map_err(VersionError::Decode)
            }
            STORED_COPY_TAG => {
                // A stored copy: skip this node's custody, which is not part of the object.
                let (_, obj) = postcard::take_from_bytes::<Custody>(rest)
                    .map_err(|e| VersionError::Decode(format!("custody: {e}")))?;
                if obj.first() == Some(&STORED_COPY_TAG) {
                    return Err(VersionError::Decode("nested stored copy".into()));
                }
                Object::decode(obj)
            }
            other => Err(VersionError::Decode(format!(
                "unsupported encoding version {other}"
            ))),
        }
    }

    /// Build an object from raw clock entries `(actor, counter, [(dot counter, version)])`,
    /// checking the invariants. For tests that need objects no history would produce.
    #[cfg(test)]
    pub(crate) fn from_parts(parts: Vec<RawEntry>) -> Result<Object, String> {
        Object::from_entries(
            parts
                .into_iter()
                .map(|(actor, counter, values)| Entry {
                    actor,
                    counter,
                    values,
                })
                .collect(),
        )
    }

    fn from_entries(entries: Vec<Entry>) -> Result<Object, String> {
        for w in entries.windows(2) {
            if w[0].actor >= w[1].actor {
                return Err(format!("clock entries out of order at {}", w[1].actor));
            }
        }
        for e in &entries {
            if e.counter == 0 || e.counter > MAX_COUNTER {
                return Err(format!(
                    "counter {} out of range for {}",
                    e.counter, e.actor
                ));
            }
            let mut prev = e.counter + 1;
            for (k, _) in &e.values {
                if *k == 0 || *k >= prev {
                    return Err(format!("bad dot {}:{} in clock entry", e.actor, k));
                }
                prev = *k;
            }
        }
        Ok(Object { entries })
    }
}

/// Causal merge of one actor's values: a dot survives if both sides keep it, or if the side
/// lacking it has not seen it (its counter is below the dot).
fn merge_causal(x: &Entry, y: &Entry) -> Vec<(u64, Sibling)> {
    merge_values(x, y, true)
}

/// Union of one actor's values (the LWW winner is picked afterwards).
fn merge_union(x: &Entry, y: &Entry) -> Vec<(u64, Sibling)> {
    merge_values(x, y, false)
}

fn merge_values(x: &Entry, y: &Entry, causal: bool) -> Vec<(u64, Sibling)> {
    let (a, b) = (&x.values, &y.values);
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let ka = a.get(i).map(|v| v.0);
        let kb = b.get(j).map(|v| v.0);
        match (ka, kb) {
            (Some(p), Some(q)) if p == q => {
                // One dot is one write, so both sides hold the same version; should they ever
                // differ, the choice must not depend on argument order.
                let (sa, sb) = (&a[i].1, &b[j].1);
                let keep = if sa.content_cmp(sb) == Ordering::Less {
                    sb
                } else {
                    sa
                };
                out.push((p, keep.clone()));
                i += 1;
                j += 1;
            }
            (Some(p), q) if q.is_none_or(|q| p > q) => {
                if !causal || p > y.counter {
                    out.push(a[i].clone());
                }
                i += 1;
            }
            (_, Some(q)) => {
                if !causal || q > x.counter {
                    out.push(b[j].clone());
                }
                j += 1;
            }
            _ => break,
        }
    }
    out
}

/// `(actor, counter, [(dot counter, version)])`, for building test objects.
#[cfg(test)]
pub(crate) type RawEntry = (Actor, u64, Vec<(u64, Sibling)>);

/// A format-1 clock entry: the actor was a bare node id.
#[derive(Deserialize)]
struct LegacyEntry {
    actor: NodeId,
    counter: u64,
    values: Vec<(u64, NoExpirySibling)>,
}

/// A format-2 clock entry: write identities, versions without expiry.
#[derive(Deserialize)]
struct NoExpiryEntry {
    actor: Actor,
    counter: u64,
    values: Vec<(u64, NoExpirySibling)>,
}

/// A version as encodings 1 and 2 wrote it: no expiry field.
#[derive(Deserialize)]
struct NoExpirySibling {
    #[serde(deserialize_with = "crate::bytes_field::deserialize")]
    value: bytes::Bytes,
    content_type: String,
    last_modified_ms: u64,
    deleted: bool,
}

fn no_expiry(values: Vec<(u64, NoExpirySibling)>) -> Vec<(u64, Sibling)> {
    values
        .into_iter()
        .map(|(k, s)| {
            (
                k,
                Sibling {
                    value: s.value,
                    content_type: s.content_type,
                    last_modified_ms: s.last_modified_ms,
                    deleted: s.deleted,
                    expires_at_ms: None,
                },
            )
        })
        .collect()
}

/// Postcard-decodes `T` from all of `bytes`, refusing trailing bytes.
fn take_all<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, VersionError> {
    let (v, tail) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| VersionError::Decode(e.to_string()))?;
    if !tail.is_empty() {
        return Err(VersionError::Decode(format!(
            "{} trailing bytes",
            tail.len()
        )));
    }
    Ok(v)
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(s)
    }
}

/// Deserialising checks the clock's invariants, so an object embedded in any message is as
/// trustworthy as one from [`Object::decode`].
impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Object, D::Error> {
        let entries = Vec::<Entry>::deserialize(d)?;
        Object::from_entries(entries).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: ConflictMode = ConflictMode::Siblings;

    fn n(s: &str) -> NodeId {
        NodeId::from(s)
    }

    fn val(v: &str, ts: u64) -> Sibling {
        Sibling::new(v.as_bytes().to_vec(), "text/plain", ts)
    }

    fn put(stored: &Object, ctx: &VersionVector, actor: &str, v: &str, ts: u64) -> Object {
        Object::update(
            Some(stored),
            ctx,
            n(actor),
            val(v, ts),
            S,
            &Limits::default(),
        )
        .unwrap()
    }

    /// A version as encodings 1 and 2 wrote it (no expiry), for building old bytes.
    #[derive(Serialize)]
    struct V2Sibling {
        #[serde(serialize_with = "ser_bytes")]
        value: Vec<u8>,
        content_type: String,
        last_modified_ms: u64,
        deleted: bool,
    }

    fn ser_bytes<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    fn v2(s: &Sibling) -> V2Sibling {
        V2Sibling {
            value: s.value.to_vec(),
            content_type: s.content_type.clone(),
            last_modified_ms: s.last_modified_ms,
            deleted: s.deleted,
        }
    }

    fn values(o: &Object) -> Vec<String> {
        let mut v: Vec<String> = o
            .siblings()
            .iter()
            .map(|(_, s)| String::from_utf8_lossy(&s.value).into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn format_one_objects_read_with_legacy_actors() {
        // Encoding 1: actors were bare node ids.
        let sib = val("old", 7);
        type Legacy = Vec<(String, u64, Vec<(u64, V2Sibling)>)>;
        let legacy: Legacy = vec![
            ("a".into(), 2, vec![(2, v2(&sib))]),
            ("b".into(), 1, vec![]),
        ];
        let mut bytes = vec![1u8];
        bytes.extend(postcard::to_allocvec(&legacy).unwrap());
        let o = Object::decode(&bytes).unwrap();
        assert_eq!(o.siblings(), vec![(Dot::new("a", 2), &sib)]);
        assert_eq!(o.counter_of(&Actor::new("a", 0)), 2);
        assert_eq!(o.counter_of(&Actor::new("b", 0)), 1);
        // Re-encoded in the current encoding, it reads back the same.
        let again = o.encode();
        assert_eq!(again[0], OBJECT_ENCODING_VERSION);
        assert_eq!(Object::decode(&again).unwrap(), o);
        // A legacy object that breaks the clock's invariants is still refused.
        let bad: Legacy = vec![("a".into(), 1, vec![(2, v2(&sib))])];
        let mut bytes = vec![1u8];
        bytes.extend(postcard::to_allocvec(&bad).unwrap());
        assert!(Object::decode(&bytes).is_err());
    }

    /// Encoding 2 (format 2): siblings had no expiry.
    #[test]
    fn encoding_two_objects_read_without_expiry() {
        type V2 = Vec<(Actor, u64, Vec<(u64, V2Sibling)>)>;
        let v2_object: V2 = vec![
            (Actor::new("a", 5), 2, vec![(2, v2(&val("old", 7)))]),
            (Actor::new("b", 1), 1, vec![]),
        ];
        let mut bytes = vec![2u8];
        bytes.extend(postcard::to_allocvec(&v2_object).unwrap());
        let o = Object::decode(&bytes).unwrap();
        assert_eq!(
            o.siblings(),
            vec![(Dot::new(Actor::new("a", 5), 2), &val("old", 7))]
        );
        assert_eq!(o.siblings()[0].1.expires_at_ms, None);
        assert_eq!(o.counter_of(&Actor::new("b", 1)), 1);
        let again = o.encode();
        assert_eq!(again[0], 3);
        assert_eq!(Object::decode(&again).unwrap(), o);
        // An encoding-2 object that breaks the clock's invariants is still refused.
        let bad: V2 = vec![(Actor::new("a", 5), 1, vec![(2, v2(&Sibling::tombstone(1)))])];
        let mut bytes = vec![2u8];
        bytes.extend(postcard::to_allocvec(&bad).unwrap());
        assert!(Object::decode(&bytes).is_err());
    }

    fn expiring(v: &str, ts: u64, at: u64) -> Sibling {
        val(v, ts).expiring(Some(at))
    }

    fn write(stored: Option<&Object>, ctx: &VersionVector, actor: &str, s: Sibling) -> Object {
        Object::update(stored, ctx, n(actor), s, S, &Limits::default()).unwrap()
    }

    #[test]
    fn expired_versions_are_not_live_from_their_instant_on() {
        let e = VersionVector::new();
        let o = write(None, &e, "a", expiring("gone", 1, 100));
        let o = write(Some(&o), &e, "b", val("stays", 2));
        assert_eq!(o.live_siblings(99).len(), 2);
        let live = o.live_siblings(100);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].1.value.as_ref(), b"stays");
        assert!(!o.nothing_live(100));
        // Only the expiring value: at its instant the key reads like a deleted one.
        let only = write(None, &e, "a", expiring("gone", 1, 100));
        assert!(!only.nothing_live(99));
        assert!(only.nothing_live(100));
        assert!(!only.all_deleted(), "expired is not deleted");
        assert!(
            !Object::new().nothing_live(0),
            "never written is not deleted"
        );
    }

    #[test]
    fn the_visible_view_drops_expired_versions_and_keeps_the_clock() {
        let e = VersionVector::new();
        let o = write(None, &e, "a", expiring("gone", 1, 100));
        let o = write(Some(&o), &e, "b", val("stays", 2));
        assert!(!o.hides_at(99));
        assert!(
            matches!(o.visible_at(99), Cow::Borrowed(x) if x == &o),
            "nothing expired: the same object, not a copy"
        );
        assert!(o.hides_at(100));
        let seen = o.visible_at(100);
        assert_eq!(values(&seen), ["stays"]);
        assert_eq!(
            seen.context(),
            o.context(),
            "the context still covers the expired one"
        );
        assert!(!seen.hides_at(100));
        assert_eq!(o.clone().into_visible_at(100), *seen);
        assert_eq!(o.clone().into_visible_at(99), o);
    }

    #[test]
    fn a_write_whose_context_saw_an_expired_version_supersedes_it() {
        let e = VersionVector::new();
        let o = write(None, &e, "a", expiring("old", 1, 100));
        let read = o.context();
        let o2 = write(Some(&o), &read, "b", val("new", 200));
        assert_eq!(values(&o2), ["new"]);
        // Without the context the expired version stays, as history, beside the new one.
        let o3 = write(Some(&o), &e, "b", val("new", 200));
        assert_eq!(values(&o3), ["new", "old"]);
        assert_eq!(o3.live_siblings(150).len(), 1);
    }

    #[test]
    fn expiry_travels_with_its_version_through_sync() {
        let e = VersionVector::new();
        let a = write(None, &e, "a", expiring("x", 1, 100));
        let b = write(None, &e, "b", val("y", 2));
        for m in [a.sync(&b), b.sync(&a), a.sync_mode(&b, ConflictMode::Lww)] {
            for (_, s) in m.siblings() {
                if s.value.as_ref() == b"x" {
                    assert_eq!(s.expires_at_ms, Some(100));
                }
            }
        }
        // LWW: an expiring winner hides the key once expired; it does not revive the loser.
        let lww = ConflictMode::Lww;
        let old = Object::update(None, &e, n("a"), val("old", 1), lww, &Limits::default()).unwrap();
        let new = Object::update(
            None,
            &e,
            n("b"),
            expiring("new", 5, 50),
            lww,
            &Limits::default(),
        )
        .unwrap();
        let m = old.sync_mode(&new, lww);
        assert_eq!(values(&m), ["new"]);
        assert!(m.nothing_live(50));
        let enc = m.encode();
        assert_eq!(Object::decode(&enc).unwrap(), m);
    }

    #[test]
    fn dead_since_and_the_expiry_index_instant() {
        let e = VersionVector::new();
        let exp = write(None, &e, "a", expiring("x", 1, 100));
        assert_eq!(exp.dead_since_ms(), Some(100));
        assert_eq!(exp.expiry_index_ms(), Some(100));
        // A tombstone beside it: dead once both are, at the later instant.
        let both = write(Some(&exp), &e, "b", Sibling::tombstone(300));
        assert_eq!(both.dead_since_ms(), Some(300));
        assert_eq!(both.expiry_index_ms(), Some(300));
        // A value that never expires keeps the key.
        let kept = write(Some(&exp), &e, "b", val("y", 2));
        assert_eq!(kept.dead_since_ms(), None);
        assert_eq!(kept.expiry_index_ms(), None);
        // Pure tombstones are dead but not indexed.
        let tomb = write(None, &e, "a", Sibling::tombstone(5));
        assert_eq!(tomb.dead_since_ms(), Some(5));
        assert_eq!(tomb.expiry_index_ms(), None);
        assert_eq!(Object::new().dead_since_ms(), None);
    }

    #[test]
    fn first_write_gets_dot_one() {
        let o = Object::update(
            None,
            &VersionVector::new(),
            n("a"),
            val("x", 1),
            S,
            &Limits::default(),
        )
        .unwrap();
        let sib = o.siblings();
        assert_eq!(sib.len(), 1);
        assert_eq!(sib[0].0, Dot::new("a", 1));
        assert_eq!(o.context(), [(n("a"), 1)].into_iter().collect());
        assert_eq!(o.clock_entries(), 1);
        assert!(Object::new().is_empty());
        assert!(!o.is_empty());
    }

    #[test]
    fn write_with_read_context_supersedes_exactly_what_was_read() {
        let o = Object::new();
        let o = put(&o, &VersionVector::new(), "a", "v1", 1);
        let o = put(&o, &VersionVector::new(), "a", "v2", 2);
        assert_eq!(values(&o), ["v1", "v2"]);
        let read = o.context();
        // another write lands between the read and the client's write
        let o = put(&o, &VersionVector::new(), "b", "v3", 3);
        let o = put(&o, &read, "a", "v4", 4);
        assert_eq!(values(&o), ["v3", "v4"]);
    }

    #[test]
    fn two_writes_without_context_both_survive() {
        let o = put(&Object::new(), &VersionVector::new(), "a", "x", 1);
        let o = put(&o, &VersionVector::new(), "a", "y", 2);
        assert_eq!(values(&o), ["x", "y"]);
        assert_eq!(o.sibling_count(), 2);
    }

    #[test]
    fn old_context_keeps_newer_concurrent_sibling() {
        let o = put(&Object::new(), &VersionVector::new(), "a", "v1", 1);
        let old = o.context();
        let o = put(&o, &old, "a", "v2", 2); // supersedes v1
        assert_eq!(values(&o), ["v2"]);
        let o = put(&o, &old, "a", "v3", 3); // saw v1 only: v2 stays
        assert_eq!(values(&o), ["v2", "v3"]);
    }

    #[test]
    fn context_read_elsewhere_is_absorbed_into_the_clock() {
        // replica a holds v1; replica b never received it, yet a client that read v1 writes at b
        let at_a = put(&Object::new(), &VersionVector::new(), "a", "v1", 1);
        let at_b = put(&Object::new(), &at_a.context(), "b", "v2", 2);
        assert!(at_b.descends(&at_a));
        assert_eq!(values(&at_b.sync(&at_a)), ["v2"]);
        assert_eq!(values(&at_a.sync(&at_b)), ["v2"]);
    }

    #[test]
    fn descends_and_concurrent() {
        let a = put(&Object::new(), &VersionVector::new(), "a", "1", 1);
        let b = put(&Object::new(), &VersionVector::new(), "b", "2", 1);
        assert!(a.concurrent(&b));
        let m = a.sync(&b);
        assert!(m.descends(&a) && m.descends(&b));
        assert!(!a.descends(&m));
        assert!(m.descends(&m) && !m.concurrent(&m));
        assert!(a.descends(&Object::new()));
    }

    #[test]
    fn tombstone_with_context_supersedes_what_it_saw() {
        let o = put(&Object::new(), &VersionVector::new(), "a", "v1", 1);
        let t = Object::update(
            Some(&o),
            &o.context(),
            n("a"),
            Sibling::tombstone(2),
            S,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(t.sibling_count(), 1);
        assert!(t.all_deleted());
        assert!(t.live_siblings(0).is_empty());
        assert!(t.descends(&o));
    }

    #[test]
    fn concurrent_write_survives_delete() {
        let base = put(&Object::new(), &VersionVector::new(), "a", "v1", 1);
        let ctx = base.context();
        // a delete at replica a, and a concurrent write at replica b with the same context
        let deleted = Object::update(
            Some(&base),
            &ctx,
            n("a"),
            Sibling::tombstone(2),
            S,
            &Limits::default(),
        )
        .unwrap();
        let written = put(&base, &ctx, "b", "v2", 3);
        let m = deleted.sync(&written);
        assert_eq!(m.sibling_count(), 2);
        assert!(!m.all_deleted());
        let live = m.live_siblings(0);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].1.value.as_ref(), b"v2");
        // a later write that read both settles it
        let settled = put(&m, &m.context(), "a", "v3", 4);
        assert_eq!(values(&settled), ["v3"]);
    }

    #[test]
    fn lww_keeps_one_version_highest_timestamp() {
        let l = Limits::default();
        let lww = ConflictMode::Lww;
        let e = VersionVector::new();
        let o = Object::update(None, &e, n("a"), val("new", 20), lww, &l).unwrap();
        let o = Object::update(Some(&o), &e, n("b"), val("old", 10), lww, &l).unwrap();
        assert_eq!(values(&o), ["new"]);
        assert_eq!(
            o.context().get(&Actor::from("b")),
            1,
            "the losing write is still in the clock"
        );
        let o = Object::update(Some(&o), &e, n("b"), val("newest", 30), lww, &l).unwrap();
        assert_eq!(values(&o), ["newest"]);
        assert_eq!(o.max_last_modified_ms(), 30);
    }

    #[test]
    fn lww_ignores_context_and_skewed_write_loses() {
        let l = Limits::default();
        let lww = ConflictMode::Lww;
        let at_a =
            Object::update(None, &VersionVector::new(), n("a"), val("v1", 100), lww, &l).unwrap();
        // a client read v1, then wrote through a coordinator whose clock lags
        let at_b = Object::update(None, &at_a.context(), n("b"), val("v2", 50), lww, &l).unwrap();
        assert_eq!(values(&at_b), ["v2"]);
        assert!(
            at_b.concurrent(&at_a),
            "b never received v1's value, so its clock must not claim it"
        );
        assert_eq!(values(&at_b.sync_mode(&at_a, lww)), ["v1"]);
        assert_eq!(at_b.sync_mode(&at_a, lww), at_a.sync_mode(&at_b, lww));
    }

    #[test]
    fn lww_sync_resolves_siblings_and_ties_deterministically() {
        let e = VersionVector::new();
        let x = put(&Object::new(), &e, "a", "x", 5);
        let y = put(&Object::new(), &e, "b", "y", 5);
        let z = put(&Object::new(), &e, "c", "z", 4);
        let lww = ConflictMode::Lww;
        let r1 = x.sync_mode(&y, lww).sync_mode(&z, lww);
        let r2 = z.sync_mode(&y, lww).sync_mode(&x, lww);
        let r3 = y.sync_mode(&z.sync_mode(&x, lww), lww);
        assert_eq!(r1, r2);
        assert_eq!(r1, r3);
        assert_eq!(
            values(&r1),
            ["y"],
            "tie on timestamp goes to the higher dot"
        );
        assert_eq!(values(&x.sync(&y).resolve(lww)), ["y"]);
        assert_eq!(x.sync_mode(&y, S), x.sync(&y));
    }

    #[test]
    fn value_too_large_is_refused() {
        let l = Limits {
            max_value_bytes: 4,
            ..Limits::default()
        };
        let err = Object::update(None, &VersionVector::new(), n("a"), val("12345", 1), S, &l)
            .unwrap_err();
        assert_eq!(err, VersionError::ValueTooLarge { size: 5, limit: 4 });
        assert!(Object::update(None, &VersionVector::new(), n("a"), val("1234", 1), S, &l).is_ok());
        // default is 8 MiB
        let big = Sibling::new(vec![0u8; 8 * 1024 * 1024 + 1], "b", 1);
        assert!(matches!(
            Object::update(
                None,
                &VersionVector::new(),
                n("a"),
                big,
                S,
                &Limits::default()
            ),
            Err(VersionError::ValueTooLarge { .. })
        ));
    }

    /// The total of a key's versions is bounded whatever the sibling count: 100 siblings of
    /// a large value are refused long before the 100th, and a write that supersedes what it
    /// read always fits again.
    #[test]
    fn an_object_over_its_total_limit_is_refused_at_write_time() {
        let l = Limits {
            max_value_bytes: 8,
            max_object_bytes: 20,
            ..Limits::default()
        };
        let e = VersionVector::new();
        let mut o = Object::new();
        let mut refused = None;
        for i in 0..100u64 {
            match Object::update(Some(&o), &e, n("a"), val("12345678", i), S, &l) {
                Ok(next) => o = next,
                Err(err) => {
                    refused = Some((i, err));
                    break;
                }
            }
        }
        assert_eq!(
            refused,
            Some((
                2,
                VersionError::ObjectTooLarge {
                    size: 24,
                    limit: 20
                }
            )),
            "the third 8-byte sibling makes 24 bytes"
        );
        assert_eq!(o.sibling_count(), 2);
        let resolved = Object::update(Some(&o), &o.context(), n("a"), val("12345678", 9), S, &l);
        assert_eq!(resolved.map(|r| r.sibling_count()), Ok(1));
        // Expired versions are history and do not count.
        let mut expiring = Object::new();
        for i in 0..2 {
            let v = val("12345678", i).expiring(Some(100));
            expiring = Object::update(Some(&expiring), &e, n("a"), v, S, &l).unwrap();
        }
        assert!(Object::update(Some(&expiring), &e, n("a"), val("12345678", 200), S, &l).is_ok());
        assert!(Object::update(Some(&expiring), &e, n("a"), val("12345678", 50), S, &l).is_err());
    }

    #[test]
    fn too_many_siblings_is_refused_and_stored_unchanged() {
        let l = Limits {
            max_siblings: 3,
            ..Limits::default()
        };
        let e = VersionVector::new();
        let mut o = Object::new();
        for i in 0..3 {
            o = Object::update(Some(&o), &e, n("a"), val(&i.to_string(), i), S, &l).unwrap();
        }
        let before = o.clone();
        let err = Object::update(Some(&o), &e, n("a"), val("x", 9), S, &l).unwrap_err();
        assert_eq!(err, VersionError::TooManySiblings { count: 4, limit: 3 });
        assert_eq!(o, before);
        // Expired versions are history, like superseded ones: they do not count.
        let mut expired = Object::new();
        for i in 0..3 {
            let v = val(&i.to_string(), i).expiring(Some(100));
            expired = Object::update(Some(&expired), &e, n("a"), v, S, &l).unwrap();
        }
        let after_expiry = Object::update(Some(&expired), &e, n("a"), val("y", 200), S, &l)
            .expect("three expired siblings and a new one are one live sibling");
        assert_eq!(after_expiry.live_siblings(200).len(), 1);
        // Still refused while they are live.
        assert!(Object::update(Some(&expired), &e, n("a"), val("y", 50), S, &l).is_err());
        // a write that supersedes what it read is fine
        let ok = Object::update(Some(&o), &o.context(), n("a"), val("x", 9), S, &l).unwrap();
        assert_eq!(ok.sibling_count(), 1);
        // LWW never trips the limit
        let lww = Object::update(Some(&o), &e, n("a"), val("x", 9), ConflictMode::Lww, &l).unwrap();
        assert_eq!(lww.sibling_count(), 1);
    }

    /// Riak's sibling explosion: interleaved read-modify-write cycles by two clients.
    #[test]
    fn interleaved_clients_on_one_coordinator_never_exceed_two_siblings() {
        let mut o = Object::new();
        let mut max_seen = 0;
        for round in 0..1000u64 {
            let ctx_a = o.context();
            let ctx_b = o.context();
            o = put(&o, &ctx_a, "n1", &format!("a{round}"), round * 2);
            max_seen = max_seen.max(o.sibling_count());
            o = put(&o, &ctx_b, "n1", &format!("b{round}"), round * 2 + 1);
            max_seen = max_seen.max(o.sibling_count());
            assert_eq!(values(&o), [format!("a{round}"), format!("b{round}")]);
        }
        assert_eq!(max_seen, 2);
        assert_eq!(o.clock_entries(), 1);
    }

    #[test]
    fn interleaved_clients_on_two_coordinators_never_exceed_two_siblings() {
        let (mut x, mut y) = (Object::new(), Object::new());
        for round in 0..1000u64 {
            let ctx_a = x.context();
            let ctx_b = y.context();
            x = put(&x, &ctx_a, "n1", &format!("a{round}"), round * 2);
            x = x.sync(&y);
            y = y.sync(&x);
            assert!(x.sibling_count() <= 2 && y.sibling_count() <= 2);
            y = put(&y, &ctx_b, "n2", &format!("b{round}"), round * 2 + 1);
            x = x.sync(&y);
            y = y.sync(&x);
            assert!(
                x.sibling_count() <= 2 && y.sibling_count() <= 2,
                "round {round}"
            );
            assert_eq!(x, y);
        }
        assert_eq!(x.clock_entries(), 2);
    }

    /// The same, with the two clients' steps in a random (seeded) order.
    #[test]
    fn randomly_interleaved_read_modify_write_stays_bounded() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut reps = [Object::new(), Object::new()];
        let mut ctx = [VersionVector::new(), VersionVector::new()];
        for step in 0..4000u64 {
            let c = rng.gen_range(0..2usize);
            let coord = c; // each client sticks to its own coordinator
            if rng.gen_bool(0.5) {
                ctx[c] = reps[coord].context();
            } else {
                let actor = if coord == 0 { "n1" } else { "n2" };
                reps[coord] = put(&reps[coord], &ctx[c], actor, &format!("{c}-{step}"), step);
                ctx[c] = reps[coord].context(); // the new context comes back with the write
                let m = reps[0].sync(&reps[1]);
                reps = [m.clone(), m];
            }
            assert!(reps[0].sibling_count() <= 2, "step {step}");
        }
    }

    #[test]
    fn encode_decode_round_trip_and_version_byte() {
        let e = VersionVector::new();
        let o = put(&Object::new(), &e, "a", "x", 1);
        let o = put(&o, &e, "b", "y", 2);
        let t = Object::update(
            Some(&o),
            &e,
            n("c"),
            Sibling::tombstone(3),
            S,
            &Limits::default(),
        )
        .unwrap();
        let bytes = t.encode();
        assert_eq!(bytes[0], OBJECT_ENCODING_VERSION);
        assert_eq!(Object::decode(&bytes).unwrap(), t);
        assert_eq!(
            Object::decode(&Object::new().encode()).unwrap(),
            Object::new()
        );
        let mut wrong = bytes.clone();
        wrong[0] = 99;
        assert!(matches!(
            Object::decode(&wrong),
            Err(VersionError::Decode(_))
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Object::decode(&trailing).is_err());
        assert!(Object::decode(&[]).is_err());
    }

    #[test]
    fn decode_rejects_broken_invariants() {
        let sib = val("v", 1);
        let bad = |entries: Vec<Entry>| {
            let mut b = vec![OBJECT_ENCODING_VERSION];
            b.extend(postcard::to_allocvec(&entries).unwrap());
            Object::decode(&b)
        };
        let e = |a: &str, c: u64, vals: Vec<u64>| Entry {
            actor: Actor::from(a),
            counter: c,
            values: vals.into_iter().map(|k| (k, sib.clone())).collect(),
        };
        assert!(bad(vec![e("a", 2, vec![2, 1])]).is_ok());
        assert!(
            bad(vec![e("b", 1, vec![]), e("a", 1, vec![])]).is_err(),
            "unsorted actors"
        );
        assert!(
            bad(vec![e("a", 1, vec![]), e("a", 2, vec![])]).is_err(),
            "duplicate actor"
        );
        assert!(bad(vec![e("a", 0, vec![])]).is_err(), "zero counter");
        assert!(bad(vec![e("a", 2, vec![3])]).is_err(), "dot above counter");
        assert!(
            bad(vec![e("a", 3, vec![1, 2])]).is_err(),
            "dots not descending"
        );
        assert!(bad(vec![e("a", 3, vec![2, 2])]).is_err(), "duplicate dot");
        assert!(bad(vec![e("a", 3, vec![0])]).is_err(), "zero dot");
        assert!(
            bad(vec![e("a", MAX_COUNTER + 1, vec![])]).is_err(),
            "huge counter"
        );
    }

    #[test]
    fn conflict_mode_serde_names() {
        assert_eq!(
            serde_json::to_string(&ConflictMode::Lww).unwrap(),
            "\"lww\""
        );
        assert_eq!(
            serde_json::from_str::<ConflictMode>("\"siblings\"").unwrap(),
            ConflictMode::Siblings
        );
        assert!(serde_json::from_str::<ConflictMode>("\"other\"").is_err());
        assert_eq!("lww".parse::<ConflictMode>().unwrap(), ConflictMode::Lww);
        assert_eq!(ConflictMode::default(), ConflictMode::Siblings);
    }

    #[test]
    fn limits_default() {
        let l = Limits::default();
        assert_eq!(
            (l.max_value_bytes, l.warn_siblings, l.max_siblings),
            (8 << 20, 25, 100)
        );
    }
}
