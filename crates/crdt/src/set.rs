//! Add-wins observed-remove set (ORSWOT).

use crate::Actor;
use crate::clock::{Context, VClock};
use crate::dots::{Members, member_add, member_remove, members_join};
use crate::error::CrdtError;
use crate::limits::Limits;
use crate::op::SetOp;
use crate::removal::{
    Deferred, RemovePath, Target, check_grow, defer, join_deferred, pending_after_join,
};
use std::collections::BTreeSet;

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

    /// Remove `op.remove` as far as `context` saw them, then add `op.add` as one new write of
    /// `actor`. Adds win over removes that did not see them; a remove without a context is
    /// refused, since "remove what I saw" is all a remove can mean here. Member counts are
    /// checked here; the encoded size of the whole value by [`crate::Crdt::apply`].
    pub fn apply(
        &mut self,
        actor: &A,
        op: &SetOp,
        context: Option<&Context<A>>,
        _now_ms: u64,
        limits: &Limits,
    ) -> Result<(), CrdtError> {
        validate_set_op(op, limits)?;
        let mut next = self.clone();
        if !op.remove.is_empty() {
            let ctx = context.ok_or(CrdtError::ContextRequired("removing set members"))?;
            let paths: BTreeSet<RemovePath> = op
                .remove
                .iter()
                .map(|m| RemovePath {
                    fields: Vec::new(),
                    target: Target::Member(m.clone()),
                })
                .collect();
            for p in &paths {
                next.remove_path(p, ctx);
            }
            defer(&mut next.deferred, &next.clock, ctx, paths);
        }
        if !op.add.is_empty() {
            let dot = next.clock.next_dot(actor)?;
            for m in &op.add {
                member_add(&mut next.members, m, &dot);
            }
        }
        check_grow(
            "set members",
            self.members.len(),
            next.members.len(),
            limits.max_set_members,
        )?;
        *self = next;
        Ok(())
    }

    /// Least upper bound with another replica's set.
    pub fn join(&mut self, other: &OrSet<A>) {
        self.members = members_join(&self.members, &self.clock, &other.members, &other.clock);
        self.clock.join(&other.clock);
        join_deferred(&mut self.deferred, &other.deferred);
        // Pending removes also cover what the other replica brought; those whose context is
        // now fully seen are done and dropped.
        for (ctx, paths) in pending_after_join(&mut self.deferred, &self.clock) {
            for p in &paths {
                self.remove_path(p, &ctx);
            }
        }
    }

    fn remove_path(&mut self, p: &RemovePath, ctx: &VClock<A>) {
        if let (true, Target::Member(m)) = (p.fields.is_empty(), &p.target) {
            member_remove(&mut self.members, m, ctx);
        }
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

    /// Sorted array of the members.
    pub fn value_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.members
                .keys()
                .map(|m| serde_json::Value::String(m.clone()))
                .collect(),
        )
    }
}

pub(crate) fn validate_set_op(op: &SetOp, limits: &Limits) -> Result<(), CrdtError> {
    if let Some(m) = op.add.intersection(&op.remove).next() {
        return Err(CrdtError::bad(format!(
            "set operation: member {m:?} is both added and removed"
        )));
    }
    for m in &op.add {
        check_grow("a set member's bytes", 0, m.len(), limits.max_member_bytes)?;
    }
    Ok(())
}
