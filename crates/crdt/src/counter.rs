//! PN-counter.

use crate::clock::Context;
use crate::error::CrdtError;
use crate::limits::Limits;
use crate::op::CounterOp;
use crate::Actor;
use std::collections::BTreeMap;

/// Per-actor totals of increments and of decrements; the value is their difference.
///
/// Each actor only ever grows its own two totals, so the join is the per-actor maximum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter<A: Actor> {
    pub(crate) entries: BTreeMap<A, Pn>,
}

/// One actor's running totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pn {
    pub(crate) p: u64,
    pub(crate) n: u64,
}

impl<A: Actor> Default for Counter<A> {
    fn default() -> Self {
        Counter {
            entries: BTreeMap::new(),
        }
    }
}

impl<A: Actor> Counter<A> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn apply(
        &mut self,
        _actor: &A,
        _op: &CounterOp,
        _context: Option<&Context<A>>,
        _now_ms: u64,
        _limits: &Limits,
    ) -> Result<(), CrdtError> {
        todo!()
    }

    pub fn join(&mut self, _other: &Counter<A>) {
        todo!()
    }

    pub fn value(&self) -> Result<i64, CrdtError> {
        todo!()
    }

    pub fn value_json(&self) -> Result<serde_json::Value, CrdtError> {
        Ok(self.value()?.into())
    }
}
