//! Map of named, typed fields with causal presence.

use crate::clock::{Context, Dot, VClock};
use crate::dots::{DotSet, Members};
use crate::error::CrdtError;
use crate::limits::Limits;
use crate::op::{FieldType, MapOp};
use crate::Actor;
use std::collections::{BTreeMap, BTreeSet};

/// A field's identity: its name and its type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct FieldKey {
    pub name: String,
    pub kind: FieldType,
}

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

/// What a deferred remove targets: a member of the set field at `fields`, or every field
/// named `name` in the map at `fields` (empty `fields` = the top level).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub(crate) struct RemovePath {
    pub(crate) fields: Vec<FieldKey>,
    pub(crate) target: Target,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub(crate) enum Target {
    Member(String),
    Field(String),
}

/// Removes whose context names events this replica has not seen yet, by context.
pub(crate) type Deferred<A> = BTreeMap<VClock<A>, BTreeSet<RemovePath>>;

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

    pub fn apply(
        &mut self,
        _actor: &A,
        _op: &MapOp,
        _context: Option<&Context<A>>,
        _now_ms: u64,
        _limits: &Limits,
    ) -> Result<(), CrdtError> {
        todo!()
    }

    pub fn join(&mut self, _other: &Map<A>) {
        todo!()
    }

    pub fn context(&self) -> Context<A> {
        self.clock.clone()
    }

    pub fn value_json(&self) -> Result<serde_json::Value, CrdtError> {
        todo!()
    }
}
