//! Add-wins observed-remove set (ORSWOT).

use crate::clock::{Context, VClock};
use crate::dots::Members;
use crate::error::CrdtError;
use crate::limits::Limits;
use crate::map::Deferred;
use crate::op::SetOp;
use crate::Actor;

/// Members with the dots of the adds that keep them, the clock of everything seen, and the
/// removes whose context is ahead of this replica (applied again once the clock catches up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrSet<A: Actor> {
    pub(crate) clock: VClock<A>,
    pub(crate) members: Members<A>,
    pub(crate) deferred: Deferred<A>,
}

impl<A: Actor> Default for OrSet<A> {
    fn default() -> Self {
        OrSet {
            clock: VClock::new(),
            members: Members::new(),
            deferred: Deferred::new(),
        }
    }
}

impl<A: Actor> OrSet<A> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn apply(
        &mut self,
        _actor: &A,
        _op: &SetOp,
        _context: Option<&Context<A>>,
        _now_ms: u64,
        _limits: &Limits,
    ) -> Result<(), CrdtError> {
        todo!()
    }

    pub fn join(&mut self, _other: &OrSet<A>) {
        todo!()
    }

    pub fn context(&self) -> Context<A> {
        self.clock.clone()
    }

    pub fn contains(&self, member: &str) -> bool {
        self.members.contains_key(member)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members in byte order.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(|s| s.as_str())
    }

    pub fn value_json(&self) -> serde_json::Value {
        todo!()
    }
}
