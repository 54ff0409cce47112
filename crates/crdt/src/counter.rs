//! PN-counter.

use crate::Actor;
use crate::clock::Context;
use crate::error::CrdtError;
use crate::limits::Limits;
use crate::op::CounterOp;
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

    /// Add `op.increment` to `actor`'s totals. A counter has no removes, so `context` and
    /// `now_ms` are unused; the limits bound nothing a counter can grow but its actors.
    pub fn apply(
        &mut self,
        actor: &A,
        op: &CounterOp,
        _context: Option<&Context<A>>,
        _now_ms: u64,
        _limits: &Limits,
    ) -> Result<(), CrdtError> {
        let mut e = self.entries.get(actor).copied().unwrap_or_default();
        add_signed(&mut e.p, &mut e.n, op.increment)?;
        let before = self.entries.insert(actor.clone(), e);
        if let Err(err) = self.value() {
            match before {
                Some(b) => self.entries.insert(actor.clone(), b),
                None => self.entries.remove(actor),
            };
            return Err(err);
        }
        Ok(())
    }

    /// Per-actor maximum of each total.
    pub fn join(&mut self, other: &Counter<A>) {
        for (a, o) in &other.entries {
            let e = self.entries.entry(a.clone()).or_default();
            e.p = e.p.max(o.p);
            e.n = e.n.max(o.n);
        }
    }

    /// The total. Every operation keeps it within i64, but concurrent increments that each
    /// fitted may not fit together: then this is [`CrdtError::Overflow`], not a wrapped number.
    pub fn value(&self) -> Result<i64, CrdtError> {
        total(self.entries.values().map(|e| (e.p, e.n)))
    }

    pub fn value_json(&self) -> Result<serde_json::Value, CrdtError> {
        Ok(self.value()?.into())
    }
}

/// Add a signed amount to a pair of increment/decrement totals.
pub(crate) fn add_signed(p: &mut u64, n: &mut u64, by: i64) -> Result<(), CrdtError> {
    const WHAT: &str = "the counter's running total for this actor";
    if by >= 0 {
        *p = p
            .checked_add(by.unsigned_abs())
            .ok_or(CrdtError::Overflow(WHAT))?;
    } else {
        *n = n
            .checked_add(by.unsigned_abs())
            .ok_or(CrdtError::Overflow(WHAT))?;
    }
    Ok(())
}

/// Sum of `p - n` over entries, as an i64.
pub(crate) fn total(entries: impl Iterator<Item = (u64, u64)>) -> Result<i64, CrdtError> {
    const WHAT: &str = "the counter's total";
    let mut sum: i128 = 0;
    for (p, n) in entries {
        sum = sum
            .checked_add(i128::from(p) - i128::from(n))
            .ok_or(CrdtError::Overflow(WHAT))?;
    }
    i64::try_from(sum).map_err(|_| CrdtError::Overflow(WHAT))
}
