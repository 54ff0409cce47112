//! The replicated cluster state: members, partition ownership, the pending ownership plan and
//! bucket props. Every node holds a copy; copies are merged deterministically when gossiped, so
//! all nodes converge on the same state without a leader for anything but ring changes.
//!
//! Who writes what (which is what keeps the merge simple):
//! - a member entry is written by its own node (address, zone, leave, finished transfers) and by
//!   the claimant (joining -> valid) or an operator (removed); a per-entry version orders writes;
//! - ownership (`ring`, `plan`, `ring_version`) is written only by the claimant, the lowest
//!   valid node id; the highest `ring_version` wins;
//! - bucket props are last-writer-wins registers, and so is every user, token and grant of
//!   the security state (removals are tombstones).
//!
//! Ownership changes in two steps. The claimant computes a target ring and the transfers it
//! needs (partition data a node must receive before it becomes a replica). Sources stream the
//! data and record each finished transfer in their own member entry; when every transfer of the
//! plan is done the claimant commits the target ring. Old replicas then drain what reached them
//! meanwhile to the new replicas and drop their copies.
//!
//! A staged plan (`--staged-changes`, [`ChangeMode::Staged`]) stops after the first step: it
//! is computed and gossiped, but no transfer starts until an operator commits it, which any
//! node may write (like a removal); further membership changes meanwhile recompute it.

use crate::bucket::BucketProps;
use crate::ring::{Member, Ring, as_good_as, claim, replace_owner, substitution};
use crate::security::SecurityState;
use crate::types::{NodeId, PartitionId};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// A member's place in the cluster lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    Joining,
    Valid,
    Leaving,
    /// Left or removed; kept as a tombstone so gossip cannot bring the member back.
    Removed,
}

impl MemberStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            MemberStatus::Joining => "joining",
            MemberStatus::Valid => "valid",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Removed => "removed",
        }
    }
}

/// One finished ownership transfer, recorded by its source.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TransferDone {
    pub plan: u64,
    pub partition: PartitionId,
    pub to: NodeId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub node_id: NodeId,
    pub api_addr: String,
    pub peer_addr: String,
    pub zone: Option<String>,
    pub status: MemberStatus,
    /// Orders writes to this entry; the higher version wins a merge.
    pub version: u64,
    /// Transfers of the current plan this member has finished sending.
    pub transfers_done: BTreeSet<TransferDone>,
}

impl MemberInfo {
    pub fn new(node_id: NodeId, api_addr: String, peer_addr: String, zone: Option<String>) -> Self {
        MemberInfo {
            node_id,
            api_addr,
            peer_addr,
            zone,
            status: MemberStatus::Joining,
            version: 1,
            transfers_done: BTreeSet::new(),
        }
    }

    /// Deterministic winner of two writes to the same entry.
    fn wins_over(&self, other: &MemberInfo) -> bool {
        if self.version != other.version {
            return self.version > other.version;
        }
        if self.status != other.status {
            return self.status > other.status;
        }
        // Same version and status from two writers: fall back to a total order on content.
        (
            &self.api_addr,
            &self.peer_addr,
            &self.zone,
            &self.transfers_done,
        ) > (
            &other.api_addr,
            &other.peer_addr,
            &other.zone,
            &other.transfers_done,
        )
    }
}

/// Data a node must receive before the plan's target ring can be committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub partition: PartitionId,
    pub from: NodeId,
    pub to: NodeId,
}

/// A pending ownership change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: u64,
    pub target: Ring,
    pub transfers: Vec<Transfer>,
    /// Computed and shown, but waiting for an operator's commit: no transfer starts and the
    /// claimant does not commit it (on-disk format 7).
    pub staged: bool,
}

/// How a node applies the ring changes it plans.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChangeMode {
    /// A plan starts moving data as soon as it is made (the default).
    #[default]
    Immediate,
    /// A plan waits for `POST /v1/admin/plan/commit` (`--staged-changes`), so an operator can
    /// look at what it moves and batch several changes into one plan.
    Staged,
}

/// A bucket's props with the write that set them (last writer wins).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropsEntry {
    /// JSON inside the postcard frame (on-disk format 3), so later props change no layout.
    #[serde(with = "crate::bucket::stored")]
    pub props: BucketProps,
    pub version: u64,
    pub author: NodeId,
}

/// Meta name under which a node persists its ring state (postcard).
pub const RING_STATE_META: &str = "ring_state";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingState {
    pub cluster_name: String,
    /// Replicas used for placement and ownership transfers (the largest bucket `n` allowed).
    pub n_val: u32,
    pub members: BTreeMap<NodeId, MemberInfo>,
    /// The committed ownership every node routes by.
    pub ring: Ring,
    pub ring_version: u64,
    pub ring_author: NodeId,
    /// The ring before the last commit, so old replicas know where to drain.
    pub previous_ring: Option<Ring>,
    pub plan: Option<Plan>,
    pub buckets: BTreeMap<Vec<u8>, PropsEntry>,
    /// Users, tokens and grants (on-disk format 5; JSON inside the postcard frame, so later
    /// fields change no layout).
    #[serde(with = "crate::json_field")]
    pub security: SecurityState,
}

impl RingState {
    /// State of a brand-new cluster whose only member is `me`.
    pub fn found(cluster_name: String, ring_size: u32, n_val: u32, mut me: MemberInfo) -> Self {
        me.status = MemberStatus::Valid;
        let members_list = [Member {
            id: me.node_id.clone(),
            zone: me.zone.clone(),
        }];
        let ring = claim(ring_size, &members_list, n_val as usize, None);
        let author = me.node_id.clone();
        let mut members = BTreeMap::new();
        members.insert(me.node_id.clone(), me);
        RingState {
            cluster_name,
            n_val,
            members,
            ring,
            ring_version: 1,
            ring_author: author,
            previous_ring: None,
            plan: None,
            buckets: BTreeMap::new(),
            security: SecurityState::default(),
        }
    }

    pub fn ring_size(&self) -> u32 {
        self.ring.ring_size()
    }

    /// Members that are, or are about to be, part of the ring.
    pub fn active_members(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members
            .values()
            .filter(|m| matches!(m.status, MemberStatus::Joining | MemberStatus::Valid))
    }

    /// Members shown to operators (removed ones are tombstones, not members).
    pub fn visible_members(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members
            .values()
            .filter(|m| m.status != MemberStatus::Removed)
    }

    /// The claimant: lowest valid node id. Only it changes ownership.
    pub fn claimant(&self) -> Option<&NodeId> {
        self.members
            .values()
            .filter(|m| m.status == MemberStatus::Valid)
            .map(|m| &m.node_id)
            .min()
    }

    pub fn member(&self, id: &NodeId) -> Option<&MemberInfo> {
        self.members.get(id)
    }

    pub fn peer_addr_of(&self, id: &NodeId) -> Option<&str> {
        self.members.get(id).map(|m| m.peer_addr.as_str())
    }

    /// Merges another node's copy into this one. Returns true when this copy changed.
    pub fn merge(&mut self, other: &RingState) -> bool {
        if other.cluster_name != self.cluster_name {
            return false;
        }
        let before = self.clone();
        for (id, theirs) in &other.members {
            match self.members.get_mut(id) {
                Some(mine) => {
                    if theirs.wins_over(mine) {
                        *mine = theirs.clone();
                    }
                }
                None => {
                    self.members.insert(id.clone(), theirs.clone());
                }
            }
        }
        let theirs_newer = (other.ring_version, &other.ring_author, &other.plan_id())
            > (self.ring_version, &self.ring_author, &self.plan_id());
        let same_version_diverged = other.ring_version == self.ring_version
            && other.ring_author == self.ring_author
            && (other.ring != self.ring || other.plan != self.plan);
        if theirs_newer
            || (same_version_diverged
                && (ring_digest(&other.ring, &other.plan) > ring_digest(&self.ring, &self.plan)))
        {
            self.ring = other.ring.clone();
            self.ring_version = other.ring_version;
            self.ring_author = other.ring_author.clone();
            self.plan = other.plan.clone();
            self.previous_ring = other.previous_ring.clone();
        }
        if other.n_val > self.n_val {
            self.n_val = other.n_val;
        }
        for (bucket, theirs) in &other.buckets {
            match self.buckets.get_mut(bucket) {
                Some(mine) => {
                    if (theirs.version, &theirs.author) > (mine.version, &mine.author) {
                        *mine = theirs.clone();
                    }
                }
                None => {
                    self.buckets.insert(bucket.clone(), theirs.clone());
                }
            }
        }
        self.security.merge(&other.security);
        *self != before
    }

    fn plan_id(&self) -> u64 {
        self.plan.as_ref().map(|p| p.id).unwrap_or(0)
    }

    /// Adds a joining member (or refreshes the address of a known one). Returns false when the
    /// member was removed before: a removed node id cannot come back under the same name.
    pub fn add_member(&mut self, info: MemberInfo) -> Result<(), MembershipError> {
        match self.members.get_mut(&info.node_id) {
            Some(existing) if existing.status == MemberStatus::Removed => {
                Err(MembershipError::Removed(info.node_id.clone()))
            }
            Some(existing) => {
                if existing.api_addr != info.api_addr
                    || existing.peer_addr != info.peer_addr
                    || existing.zone != info.zone
                {
                    existing.api_addr = info.api_addr;
                    existing.peer_addr = info.peer_addr;
                    existing.zone = info.zone;
                    existing.version += 1;
                }
                Ok(())
            }
            None => {
                let mut info = info;
                info.status = MemberStatus::Joining;
                self.members.insert(info.node_id.clone(), info);
                Ok(())
            }
        }
    }

    /// Sets a member's status (leave, remove), bumping its entry version.
    pub fn set_status(&mut self, id: &NodeId, status: MemberStatus) -> Result<(), MembershipError> {
        let m = self
            .members
            .get_mut(id)
            .ok_or_else(|| MembershipError::UnknownMember(id.clone()))?;
        if m.status == MemberStatus::Removed {
            return Err(MembershipError::Removed(id.clone()));
        }
        if m.status != status {
            m.status = status;
            m.version += 1;
        }
        Ok(())
    }

    /// Records that `me` finished sending a transfer of the current plan.
    pub fn mark_transfer_done(&mut self, me: &NodeId, done: TransferDone) {
        if let Some(m) = self.members.get_mut(me)
            && m.transfers_done.insert(done)
        {
            m.version += 1;
        }
    }

    /// Forgets finished transfers of plans that are no longer pending. Returns true on a change.
    pub fn prune_transfers_done(&mut self, me: &NodeId) -> bool {
        let current = self.plan.as_ref().map(|p| p.id);
        if let Some(m) = self.members.get_mut(me) {
            let before = m.transfers_done.len();
            m.transfers_done.retain(|t| Some(t.plan) == current);
            if m.transfers_done.len() != before {
                m.version += 1;
                return true;
            }
        }
        false
    }

    pub fn transfer_is_done(&self, plan: u64, t: &Transfer) -> bool {
        self.members.get(&t.from).is_some_and(|m| {
            m.transfers_done.contains(&TransferDone {
                plan,
                partition: t.partition,
                to: t.to.clone(),
            })
        })
    }

    /// The ring that placement converges to: the plan's target while one is pending.
    pub fn target_ring(&self) -> &Ring {
        self.plan.as_ref().map(|p| &p.target).unwrap_or(&self.ring)
    }

    /// [`RingState::claimant_step_in`] with changes applied at once.
    pub fn claimant_step(&mut self, me: &NodeId) -> bool {
        self.claimant_step_in(me, ChangeMode::Immediate)
    }

    /// One step of the claimant's duty; a no-op on any other node. Returns true on a change.
    ///
    /// Commits a plan whose transfers are all done, replaces a plan that membership changes
    /// made stale, and starts a plan when membership no longer matches ownership. A new plan
    /// is staged when `mode` says so; a plan that replaces a staged one stays staged whatever
    /// the mode, so a second change while one is staged joins the staged plan (the plan is
    /// recomputed over every change) and nothing moves before a commit.
    pub fn claimant_step_in(&mut self, me: &NodeId, mode: ChangeMode) -> bool {
        if self.claimant() != Some(me) {
            return false;
        }
        let members: Vec<Member> = self
            .active_members()
            .map(|m| Member {
                id: m.node_id.clone(),
                zone: m.zone.clone(),
            })
            .collect();
        if members.is_empty() {
            return false;
        }
        let n = self.n_val as usize;
        let desired = claim(self.ring_size(), &members, n, Some(&self.ring));
        // A ring (or target) that meets the claim rules as well as the claim's own choice is
        // kept: this is what lets a replace stand instead of being reshuffled.
        let keeps = |r: &Ring| *r == desired || as_good_as(r, &desired, &members, n);
        if let Some(plan) = &self.plan {
            if !keeps(&plan.target) {
                // Membership moved under the plan: replace it, keeping the transfer logic fresh.
                let staged = plan.staged || mode == ChangeMode::Staged;
                return self.start_plan(me, desired, staged);
            }
            if plan.staged {
                return false;
            }
            let all_done = plan
                .transfers
                .iter()
                .all(|t| self.transfer_is_done(plan.id, t));
            if all_done {
                self.commit_plan(me);
                return true;
            }
            return false;
        }
        let joining = self
            .members
            .values()
            .any(|m| m.status == MemberStatus::Joining);
        if !keeps(&self.ring) || joining {
            return self.start_plan(me, desired, mode == ChangeMode::Staged);
        }
        false
    }

    /// Replaces `old` by `new`: `old` is removed and a plan gives `new` exactly the partitions
    /// `old` owned in the committed ring, fed by the surviving replicas (a removed node is never
    /// a transfer source). Any pending plan is superseded (typically a join that waits for
    /// transfers from the dead `old`). Written by whichever node the operator asked, like a
    /// removal; the claimant keeps the plan because it meets the claim rules ([`as_good_as`]).
    pub fn replace(
        &mut self,
        me: &NodeId,
        old: &NodeId,
        new: &NodeId,
    ) -> Result<(), MembershipError> {
        self.replace_in(me, old, new, ChangeMode::Immediate)
    }

    /// [`RingState::replace`], its plan staged when `mode` says so or when it supersedes a
    /// staged plan.
    pub fn replace_in(
        &mut self,
        me: &NodeId,
        old: &NodeId,
        new: &NodeId,
        mode: ChangeMode,
    ) -> Result<(), MembershipError> {
        let target = self.check_replace(old, new)?;
        let staged = mode == ChangeMode::Staged || self.plan.as_ref().is_some_and(|p| p.staged);
        self.set_status(old, MemberStatus::Removed)?;
        self.start_plan(me, target, staged);
        Ok(())
    }

    /// Lets the staged plan apply: its transfers start and the claimant commits it once they
    /// are done. Written by whichever node the operator asked (the higher ring version carries
    /// it to every node, the claimant included). Returns the plan's id.
    pub fn commit_staged(&mut self, me: &NodeId) -> Result<u64, MembershipError> {
        let plan = self.plan.as_mut().ok_or(MembershipError::NothingStaged)?;
        if !plan.staged {
            return Err(MembershipError::PlanApplying(plan.id));
        }
        if let Some(id) = self.change_not_in_plan() {
            return Err(MembershipError::PlanOutdated(id.clone()));
        }
        let Some(plan) = self.plan.as_mut() else {
            return Err(MembershipError::NothingStaged);
        };
        plan.staged = false;
        let (id, nothing_to_move) = (plan.id, plan.transfers.is_empty());
        self.ring_version += 1;
        self.ring_author = me.clone();
        if nothing_to_move {
            self.commit_plan(me);
        }
        Ok(id)
    }

    /// Whether the pending plan carries the membership change of member `id`: a joining member
    /// owns partitions in the plan's target, a leaving or removed one owns none there. A valid
    /// member has no change to carry. False without a plan.
    pub fn plan_carries(&self, id: &NodeId) -> bool {
        let (Some(plan), Some(m)) = (self.plan.as_ref(), self.members.get(id)) else {
            return false;
        };
        let owns = plan.target.owners().contains(id);
        match m.status {
            MemberStatus::Joining => owns,
            MemberStatus::Leaving | MemberStatus::Removed => !owns,
            MemberStatus::Valid => true,
        }
    }

    /// A member whose change the pending plan does not carry yet (the claimant recomputes the
    /// plan within a gossip round), so a commit never applies a plan that misses a change the
    /// operator has already made.
    pub fn change_not_in_plan(&self) -> Option<&NodeId> {
        self.members
            .keys()
            .find(|id| !self.plan_carries(id))
            .filter(|_| self.plan.is_some())
    }

    /// Whether ownership is changing now: a plan is pending and not waiting for a commit.
    pub fn ownership_moving(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| !p.staged)
    }

    /// Whether `new` may replace `old` now; the target ring when it may.
    ///
    /// `new` must be a joined member that owns nothing in the committed ring: a member that
    /// already owns partitions would own both shares and break balance and the replica
    /// windows, so the operator removes `old` instead.
    pub fn check_replace(&self, old: &NodeId, new: &NodeId) -> Result<Ring, MembershipError> {
        if old == new {
            return Err(MembershipError::ReplaceSameNode(old.clone()));
        }
        for id in [old, new] {
            match self.member(id).map(|m| m.status) {
                None => return Err(MembershipError::UnknownMember(id.clone())),
                Some(MemberStatus::Removed) => return Err(MembershipError::Removed(id.clone())),
                Some(_) => {}
            }
        }
        if self
            .member(new)
            .is_some_and(|m| m.status == MemberStatus::Leaving)
        {
            return Err(MembershipError::AlreadyLeaving(new.clone()));
        }
        if let Some((old, new)) = self.replace_in_flight() {
            return Err(MembershipError::ReplaceInFlight { old, new });
        }
        if !self.ring.partitions_of(new).is_empty() {
            return Err(MembershipError::ReplacementOwnsPartitions(new.clone()));
        }
        if self.ring.partitions_of(old).is_empty() {
            return Err(MembershipError::NothingToReplace(old.clone()));
        }
        let target = replace_owner(&self.ring, old, new)
            .map_err(|e| MembershipError::Refused(e.to_string()))?;
        let members: Vec<Member> = self
            .active_members()
            .filter(|m| &m.node_id != old)
            .map(|m| Member {
                id: m.node_id.clone(),
                zone: m.zone.clone(),
            })
            .collect();
        let n = self.n_val as usize;
        let desired = claim(self.ring_size(), &members, n, Some(&self.ring));
        if target != desired && !as_good_as(&target, &desired, &members, n) {
            return Err(MembershipError::ReplaceBreaksPlacement(new.clone()));
        }
        Ok(target)
    }

    /// The replace the pending plan carries out, as `(old, new)`, if it is one.
    pub fn replace_in_flight(&self) -> Option<(NodeId, NodeId)> {
        self.plan
            .as_ref()
            .and_then(|p| substitution(&self.ring, &p.target))
    }

    /// Transfers of the pending plan done so far and in total, None without a plan.
    pub fn plan_progress(&self) -> Option<(usize, usize)> {
        let plan = self.plan.as_ref()?;
        let done = plan
            .transfers
            .iter()
            .filter(|t| self.transfer_is_done(plan.id, t))
            .count();
        Some((done, plan.transfers.len()))
    }

    fn start_plan(&mut self, me: &NodeId, target: Ring, staged: bool) -> bool {
        let n = self.n_val as usize;
        let live = |id: &NodeId| {
            self.members
                .get(id)
                .is_some_and(|m| m.status != MemberStatus::Removed)
        };
        let transfers = compute_transfers(&self.ring, &target, n, live);
        let id = self.plan_id().max(self.ring_version) + 1;
        // A staged plan that changes ownership waits for its commit even when nothing has to
        // be copied; one that changes nothing has nothing to show.
        let waits = staged && target != self.ring;
        self.plan = Some(Plan {
            id,
            target,
            transfers,
            staged: waits,
        });
        self.ring_version += 1;
        self.ring_author = me.clone();
        if !waits && self.plan.as_ref().is_some_and(|p| p.transfers.is_empty()) {
            self.commit_plan(me);
        }
        true
    }

    fn commit_plan(&mut self, me: &NodeId) {
        let Some(plan) = self.plan.take() else {
            return;
        };
        let old = std::mem::replace(&mut self.ring, plan.target);
        if old != self.ring {
            self.previous_ring = Some(old);
        }
        self.ring_version += 1;
        self.ring_author = me.clone();
        let owners: BTreeSet<NodeId> = self.ring.owners().iter().cloned().collect();
        for m in self.members.values_mut() {
            if m.status == MemberStatus::Joining && owners.contains(&m.node_id) {
                m.status = MemberStatus::Valid;
                m.version += 1;
            }
        }
    }

    /// Sets bucket props as a new last write.
    pub fn set_bucket_props(&mut self, bucket: &[u8], props: BucketProps, author: &NodeId) {
        let version = self.buckets.get(bucket).map(|e| e.version + 1).unwrap_or(1);
        self.buckets.insert(
            bucket.to_vec(),
            PropsEntry {
                props,
                version,
                author: author.clone(),
            },
        );
    }

    /// Props of a bucket, or the cluster defaults.
    ///
    /// Placement, listing, hinted and ownership handoff, anti-entropy and reaping all read props
    /// here, so a stored `n` above `n_val` (set before the API refused it, or gossiped by an
    /// older node) is clamped to `n_val`: no node places more replicas than ownership handoff
    /// keeps. The stored entry is left as written so the merge stays a plain
    /// last-writer-wins; the API rewrites it on the next props change.
    pub fn bucket_props(&self, bucket: &[u8]) -> BucketProps {
        let Some(entry) = self.buckets.get(bucket) else {
            return BucketProps::with_n(self.n_val.min(3));
        };
        let mut props = entry.props.clone();
        if props.n > self.n_val {
            warn_clamped_once(bucket, props.n, self.n_val);
            props.n = self.n_val;
        }
        props
    }

    /// Nothing pending: every member valid, no plan, and no partition owned by a node that is
    /// not a valid member (a removal the claimant has not acted on yet). Reachability and
    /// ring-version agreement are checked by the caller, who knows what peers have said.
    pub fn locally_settled(&self) -> bool {
        self.plan.is_none()
            && self
                .visible_members()
                .all(|m| m.status == MemberStatus::Valid)
            && self.ring.node_set().iter().all(|id| {
                self.members
                    .get(id)
                    .is_some_and(|m| m.status == MemberStatus::Valid)
            })
    }
}

/// A clamp that was logged: bucket, stored `n`, the ring's `n_val`.
type Clamp = (Vec<u8>, u32, u32);

/// Clamps already logged: each is logged once per process (props are read on every request).
static CLAMPED: LazyLock<Mutex<BTreeSet<Clamp>>> = LazyLock::new(|| Mutex::new(BTreeSet::new()));

fn warn_clamped_once(bucket: &[u8], n: u32, n_val: u32) {
    if CLAMPED.lock().insert((bucket.to_vec(), n, n_val)) {
        tracing::warn!(
            bucket = %String::from_utf8_lossy(bucket),
            n,
            n_val,
            "bucket props ask for more replicas than the ring keeps; using the ring's replication"
        );
    }
}

/// Deterministic tie-break between two ownership states written with the same version.
fn ring_digest(ring: &Ring, plan: &Option<Plan>) -> u64 {
    let bytes = postcard::to_stdvec(&(ring, plan)).unwrap_or_default();
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// The data moves a change of ownership needs: for every partition, each node that becomes a
/// replica receives the partition from a node that stops being one (or, when none does, from a
/// remaining replica). Sources must be live; partitions whose every old replica is gone get no
/// transfer (read repair and anti-entropy refill them).
pub fn compute_transfers(
    current: &Ring,
    target: &Ring,
    n: usize,
    live: impl Fn(&NodeId) -> bool,
) -> Vec<Transfer> {
    let mut out = Vec::new();
    for p in 0..current.ring_size() {
        let cur = current.preference_list(p, n);
        let tgt = target.preference_list(p, n);
        let leaving: Vec<&NodeId> = cur.iter().filter(|x| !tgt.contains(x) && live(x)).collect();
        let staying: Vec<&NodeId> = cur.iter().filter(|x| tgt.contains(x) && live(x)).collect();
        // A replica lost with a dead node held writes that only one other replica may hold
        // now (acknowledged by the two of them): its successor takes every live copy.
        let lost_one = cur.iter().any(|x| !live(x));
        let mut used = 0usize;
        for to in tgt.iter().filter(|x| !cur.contains(x)) {
            let from: Vec<&NodeId> = if used < leaving.len() {
                used += 1;
                vec![leaving[used - 1]]
            } else if lost_one {
                cur.iter().filter(|x| live(x)).collect()
            } else {
                staying
                    .first()
                    .copied()
                    .or(leaving.first().copied())
                    .into_iter()
                    .collect()
            };
            for from in from {
                out.push(Transfer {
                    partition: p,
                    from: from.clone(),
                    to: to.clone(),
                });
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("node {0} was removed from this cluster; start it with a new node id and data dir")]
    Removed(NodeId),
    #[error("no member named {0}")]
    UnknownMember(NodeId),
    #[error("peer belongs to cluster '{theirs}', not '{ours}'")]
    OtherCluster { ours: String, theirs: String },
    #[error("{0}")]
    Refused(String),
    #[error("this node is the only member of the cluster and cannot leave it")]
    OnlyMember,
    #[error("a node cannot remove itself; ask it to leave instead")]
    CannotRemoveSelf,
    #[error("node {0} is already leaving the cluster")]
    AlreadyLeaving(NodeId),
    #[error("this node has not joined a cluster yet")]
    NotJoined,
    #[error("a node cannot replace itself ({0}); name a different, newly joined member")]
    ReplaceSameNode(NodeId),
    #[error("a replace of {old} by {new} is still in flight; wait until the ring is settled")]
    ReplaceInFlight { old: NodeId, new: NodeId },
    #[error(
        "node {0} already owns partitions, so it cannot take over another node's share; remove the old node instead"
    )]
    ReplacementOwnsPartitions(NodeId),
    #[error("node {0} owns no partitions; there is nothing to replace")]
    NothingToReplace(NodeId),
    #[error(
        "giving node {0} the old node's partitions would break the placement rules (zone spread or other members waiting to join); remove the old node instead"
    )]
    ReplaceBreaksPlacement(NodeId),
    #[error("no ring change is staged, so there is nothing to commit")]
    NothingStaged,
    #[error("the pending ring change (plan {0}) is already applying; nothing is staged")]
    PlanApplying(u64),
    #[error(
        "the staged plan does not include the change of node {0} yet; it is being recomputed, look at it again in a moment"
    )]
    PlanOutdated(NodeId),
    #[error("could not read or persist node state: {0}")]
    Persist(String),
}

/// Builders shared by the membership and handoff tests.
#[cfg(any(test, feature = "testkit"))]
pub mod fixtures {
    use super::{MemberInfo, RingState, Transfer, TransferDone};
    use crate::types::NodeId;

    /// A member named `id` with addresses `{id}-api` and `{id}-peer`.
    pub fn info(id: &str) -> MemberInfo {
        MemberInfo::new(
            NodeId::from(id),
            format!("{id}-api"),
            format!("{id}-peer"),
            None,
        )
    }

    /// Runs the claimant and marks every planned transfer done, as handoff would, until the
    /// state is settled (bounded: 20 rounds).
    pub fn settle(s: &mut RingState) {
        for _ in 0..20 {
            let Some(c) = s.claimant().cloned() else {
                return;
            };
            s.claimant_step(&c);
            if s.plan.is_some() {
                finish_transfers(s, |_| true);
            } else if s.locally_settled() {
                return;
            }
        }
    }

    /// Marks the pending plan's transfers that `which` selects done by their sources.
    pub fn finish_transfers(s: &mut RingState, which: impl Fn(&Transfer) -> bool) {
        let Some(plan) = s.plan.clone() else {
            return;
        };
        for t in plan.transfers.iter().filter(|t| which(t)) {
            let done = TransferDone {
                plan: plan.id,
                partition: t.partition,
                to: t.to.clone(),
            };
            s.mark_transfer_done(&t.from, done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{finish_transfers, info, settle};
    use super::*;

    #[test]
    fn found_owns_everything() {
        let s = RingState::found("c".into(), 16, 3, info("1"));
        assert_eq!(s.ring.partitions_of(&NodeId::from("1")).len(), 16);
        assert!(s.locally_settled());
        assert_eq!(s.claimant(), Some(&NodeId::from("1")));
    }

    #[test]
    fn joins_are_planned_transferred_and_committed() {
        let mut s = RingState::found("c".into(), 16, 3, info("1"));
        s.add_member(info("2")).unwrap();
        s.add_member(info("3")).unwrap();
        assert!(!s.locally_settled());
        let v0 = s.ring_version;
        assert!(s.claimant_step(&NodeId::from("1")));
        let plan = s.plan.clone().expect("plan started");
        assert!(!plan.transfers.is_empty());
        assert!(plan.transfers.iter().all(|t| t.from == NodeId::from("1")));
        // Not committed until transfers are done.
        assert!(!s.claimant_step(&NodeId::from("1")));
        settle(&mut s);
        assert!(s.locally_settled());
        assert!(s.ring_version > v0);
        for id in ["1", "2", "3"] {
            let owned = s.ring.partitions_of(&NodeId::from(id)).len();
            assert!((5..=6).contains(&owned), "{id} owns {owned}");
        }
    }

    #[test]
    fn only_the_claimant_changes_ownership() {
        let mut s = RingState::found("c".into(), 16, 3, info("1"));
        s.add_member(info("2")).unwrap();
        assert!(!s.claimant_step(&NodeId::from("2")));
        assert!(s.plan.is_none());
    }

    #[test]
    fn merge_is_order_independent() {
        let mut base = RingState::found("c".into(), 16, 3, info("1"));
        base.add_member(info("2")).unwrap();
        settle(&mut base);
        let mut a = base.clone();
        let mut b = base.clone();
        a.add_member(info("3")).unwrap();
        b.set_bucket_props(b"x", BucketProps::with_n(2), &NodeId::from("2"));
        a.claimant_step(&NodeId::from("1"));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert!(!ab.clone().merge(&ba));
        assert_eq!(ab.bucket_props(b"x").n, 2);
        assert!(ab.members.contains_key(&NodeId::from("3")));
    }

    #[test]
    fn stored_n_above_the_ring_replication_is_clamped() {
        let mut s = RingState::found("c".into(), 16, 3, info("1"));
        s.set_bucket_props(b"wide", BucketProps::with_n(5), &NodeId::from("1"));
        assert_eq!(s.bucket_props(b"wide").n, 3);
        // The stored entry is left as written (the merge stays a plain last-writer-wins).
        assert_eq!(s.buckets[&b"wide"[..]].props.n, 5);
        // Props gossiped from a node that accepted n = 4 are clamped the same way.
        let mut other = RingState::found("c".into(), 16, 3, info("1"));
        other.set_bucket_props(b"gossiped", BucketProps::with_n(4), &NodeId::from("2"));
        s.merge(&other);
        assert_eq!(s.bucket_props(b"gossiped").n, 3);
        // Values within the ring's replication and the defaults are untouched.
        s.set_bucket_props(b"narrow", BucketProps::with_n(2), &NodeId::from("1"));
        assert_eq!(s.bucket_props(b"narrow"), BucketProps::with_n(2));
        assert_eq!(s.bucket_props(b"never-set"), BucketProps::with_n(3));
    }

    #[test]
    fn other_cluster_is_not_merged() {
        let mut a = RingState::found("a".into(), 8, 3, info("1"));
        let b = RingState::found("b".into(), 8, 3, info("2"));
        assert!(!a.merge(&b));
        assert!(!a.members.contains_key(&NodeId::from("2")));
    }

    #[test]
    fn removed_members_stay_removed() {
        let mut s = RingState::found("c".into(), 16, 3, info("1"));
        s.add_member(info("2")).unwrap();
        settle(&mut s);
        s.set_status(&NodeId::from("2"), MemberStatus::Removed)
            .unwrap();
        assert!(s.add_member(info("2")).is_err());
        let stale = {
            let mut t = s.clone();
            t.members.get_mut(&NodeId::from("2")).unwrap().status = MemberStatus::Valid;
            t.members.get_mut(&NodeId::from("2")).unwrap().version -= 1;
            t
        };
        s.merge(&stale);
        assert_eq!(s.members[&NodeId::from("2")].status, MemberStatus::Removed);
        settle(&mut s);
        assert_eq!(s.ring.partitions_of(&NodeId::from("2")).len(), 0);
    }

    #[test]
    fn leaving_member_hands_everything_off() {
        let mut s = RingState::found("c".into(), 16, 3, info("1"));
        for id in ["2", "3", "4"] {
            s.add_member(info(id)).unwrap();
        }
        settle(&mut s);
        s.set_status(&NodeId::from("4"), MemberStatus::Leaving)
            .unwrap();
        s.claimant_step(&NodeId::from("1"));
        let plan = s.plan.clone().unwrap();
        assert!(plan.transfers.iter().any(|t| t.from == NodeId::from("4")));
        settle(&mut s);
        assert!(s.ring.partitions_of(&NodeId::from("4")).is_empty());
        assert!(s.previous_ring.is_some());
    }

    /// Three members settled, then `4` joins while `2` is dead: the join's plan waits on
    /// transfers from `2` that never come.
    fn dead_member_and_a_stalled_join() -> RingState {
        let mut s = RingState::found("c".into(), 64, 3, info("1"));
        for id in ["2", "3"] {
            s.add_member(info(id)).unwrap();
        }
        settle(&mut s);
        s.add_member(info("4")).unwrap();
        s.claimant_step(&NodeId::from("1"));
        let plan = s.plan.clone().expect("join planned");
        assert!(plan.transfers.iter().any(|t| t.from == NodeId::from("2")));
        s
    }

    /// Marks the transfers of the plan done for every source but `dead`.
    fn transfer_all_but(s: &mut RingState, dead: &str) {
        finish_transfers(s, |t| t.from != NodeId::from(dead));
    }

    #[test]
    fn replace_gives_the_new_node_exactly_the_old_nodes_partitions() {
        let mut s = dead_member_and_a_stalled_join();
        let before = s.ring.clone();
        let (old, new) = (NodeId::from("2"), NodeId::from("4"));
        // Asked on node 3 (not the claimant).
        s.replace(&NodeId::from("3"), &old, &new).unwrap();
        assert_eq!(s.members[&old].status, MemberStatus::Removed);
        assert_eq!(s.replace_in_flight(), Some((old.clone(), new.clone())));
        let plan = s.plan.clone().unwrap();
        assert!(plan.transfers.iter().all(|t| t.to == new && t.from != old));
        assert_eq!(s.plan_progress(), Some((0, plan.transfers.len())));
        // The claimant keeps the plan, waiting for the survivors' transfers, then commits.
        assert!(!s.claimant_step(&NodeId::from("1")));
        assert_eq!(s.plan.as_ref().map(|p| p.id), Some(plan.id));
        transfer_all_but(&mut s, "2");
        assert!(s.claimant_step(&NodeId::from("1")));
        assert!(s.plan.is_none());
        for p in 0..64 {
            let want = if before.owner(p) == &old {
                &new
            } else {
                before.owner(p)
            };
            assert_eq!(s.ring.owner(p), want, "partition {p}");
        }
        // Settled, and the next claimant steps leave the ring alone.
        assert!(s.locally_settled());
        let settled = s.ring.clone();
        assert!(!s.claimant_step(&NodeId::from("1")));
        assert_eq!(s.ring, settled);
    }

    #[test]
    fn replacing_the_dead_claimant_works() {
        let mut s = RingState::found("c".into(), 32, 3, info("1"));
        for id in ["2", "3"] {
            s.add_member(info(id)).unwrap();
        }
        settle(&mut s);
        s.add_member(info("4")).unwrap();
        let share = s.ring.partitions_of(&NodeId::from("1"));
        s.replace(&NodeId::from("2"), &NodeId::from("1"), &NodeId::from("4"))
            .unwrap();
        assert_eq!(s.claimant(), Some(&NodeId::from("2")));
        transfer_all_but(&mut s, "1");
        assert!(s.claimant_step(&NodeId::from("2")));
        assert_eq!(s.ring.partitions_of(&NodeId::from("4")), share);
        assert!(s.ring.partitions_of(&NodeId::from("1")).is_empty());
        assert_eq!(s.members[&NodeId::from("4")].status, MemberStatus::Valid);
    }

    #[test]
    fn replace_refusals() {
        let mut s = dead_member_and_a_stalled_join();
        let id = NodeId::from;
        for (old, new, refusal) in [
            ("2", "2", MembershipError::ReplaceSameNode(id("2"))),
            ("9", "4", MembershipError::UnknownMember(id("9"))),
            ("2", "9", MembershipError::UnknownMember(id("9"))),
            (
                "2",
                "3",
                MembershipError::ReplacementOwnsPartitions(id("3")),
            ),
        ] {
            assert_eq!(
                s.check_replace(&id(old), &id(new)),
                Err(refusal),
                "{old} by {new}"
            );
        }
        s.replace(&id("1"), &id("2"), &id("4")).unwrap();
        s.add_member(info("5")).unwrap();
        assert_eq!(
            s.check_replace(&id("3"), &id("5")),
            Err(MembershipError::ReplaceInFlight {
                old: id("2"),
                new: id("4")
            })
        );
        assert_eq!(
            s.check_replace(&id("2"), &id("5")),
            Err(MembershipError::Removed(id("2")))
        );
    }

    /// Three settled members, `4` joining, the claimant staging: the plan is computed and
    /// shown but nothing moves until it is committed.
    fn staged_join() -> RingState {
        let mut s = RingState::found("c".into(), 32, 3, info("1"));
        for id in ["2", "3"] {
            s.add_member(info(id)).unwrap();
        }
        settle(&mut s);
        s.add_member(info("4")).unwrap();
        assert!(s.claimant_step_in(&NodeId::from("1"), ChangeMode::Staged));
        s
    }

    #[test]
    fn a_staged_plan_waits_for_commit() {
        let mut s = staged_join();
        let ring = s.ring.clone();
        let plan = s.plan.clone().expect("plan staged");
        assert!(plan.staged);
        assert!(!plan.transfers.is_empty());
        assert!(!plan.target.partitions_of(&NodeId::from("4")).is_empty());
        assert!(!s.ownership_moving());
        // Even with every transfer marked done, the claimant does not commit a staged plan.
        finish_transfers(&mut s, |_| true);
        for _ in 0..3 {
            assert!(!s.claimant_step_in(&NodeId::from("1"), ChangeMode::Staged));
            assert!(!s.claimant_step(&NodeId::from("1")));
        }
        assert_eq!(s.ring, ring);
        assert_eq!(s.plan.as_ref().map(|p| p.id), Some(plan.id));
        assert_eq!(s.members[&NodeId::from("4")].status, MemberStatus::Joining);
    }

    #[test]
    fn committing_a_staged_plan_lets_it_apply() {
        let mut s = staged_join();
        let plan = s.plan.clone().unwrap();
        let v = s.ring_version;
        // Committed on node 3, not the claimant.
        assert_eq!(s.commit_staged(&NodeId::from("3")), Ok(plan.id));
        assert!(s.ring_version > v);
        assert!(s.ownership_moving());
        assert_eq!(
            s.commit_staged(&NodeId::from("3")),
            Err(MembershipError::PlanApplying(plan.id))
        );
        // The claimant's copy learns of the commit by gossip.
        let mut claimants = s.clone();
        claimants.plan.as_mut().unwrap().staged = true;
        claimants.ring_version = v;
        assert!(claimants.merge(&s));
        assert!(claimants.ownership_moving());
        settle(&mut claimants);
        assert!(claimants.locally_settled());
        assert_eq!(claimants.ring, plan.target);
        assert_eq!(
            claimants.members[&NodeId::from("4")].status,
            MemberStatus::Valid
        );
        assert_eq!(
            claimants.commit_staged(&NodeId::from("1")),
            Err(MembershipError::NothingStaged)
        );
    }

    #[test]
    fn a_second_change_joins_the_staged_plan() {
        let mut s = staged_join();
        let first = s.plan.clone().unwrap();
        s.add_member(info("5")).unwrap();
        // Without the flag the claimant still keeps a staged plan staged.
        assert!(s.claimant_step(&NodeId::from("1")));
        let second = s.plan.clone().unwrap();
        assert!(second.staged);
        assert!(second.id > first.id);
        for id in ["4", "5"] {
            assert!(
                !second.target.partitions_of(&NodeId::from(id)).is_empty(),
                "{id} gets partitions"
            );
        }
        // A leave staged on top: the leaver owns nothing in the recomputed target.
        s.set_status(&NodeId::from("3"), MemberStatus::Leaving)
            .unwrap();
        assert!(s.claimant_step_in(&NodeId::from("1"), ChangeMode::Staged));
        let third = s.plan.clone().unwrap();
        assert!(third.staged);
        assert!(third.target.partitions_of(&NodeId::from("3")).is_empty());
        assert!(third.transfers.iter().all(|t| t.from != NodeId::from("4")));
        s.commit_staged(&NodeId::from("2")).unwrap();
        settle(&mut s);
        assert!(s.ring.partitions_of(&NodeId::from("3")).is_empty());
    }

    #[test]
    fn a_plan_that_misses_a_change_cannot_be_committed() {
        let mut s = staged_join();
        assert_eq!(s.change_not_in_plan(), None);
        assert!(s.plan_carries(&NodeId::from("4")));
        // Node 5 joins; until the claimant recomputes, the plan does not carry it.
        s.add_member(info("5")).unwrap();
        assert!(!s.plan_carries(&NodeId::from("5")));
        assert_eq!(
            s.commit_staged(&NodeId::from("2")),
            Err(MembershipError::PlanOutdated(NodeId::from("5")))
        );
        assert!(s.plan.as_ref().is_some_and(|p| p.staged), "still staged");
        s.claimant_step(&NodeId::from("1"));
        assert_eq!(s.change_not_in_plan(), None);
        // So does a leave, until the claimant takes the leaver out of the target.
        s.set_status(&NodeId::from("3"), MemberStatus::Leaving)
            .unwrap();
        assert_eq!(s.change_not_in_plan(), Some(&NodeId::from("3")));
        s.claimant_step(&NodeId::from("1"));
        assert!(s.commit_staged(&NodeId::from("2")).is_ok());
    }

    #[test]
    fn immediate_mode_is_unchanged() {
        let mut s = RingState::found("c".into(), 32, 3, info("1"));
        s.add_member(info("2")).unwrap();
        assert!(s.claimant_step_in(&NodeId::from("1"), ChangeMode::Immediate));
        assert!(s.plan.as_ref().is_some_and(|p| !p.staged));
        assert!(s.ownership_moving());
        assert_eq!(
            s.commit_staged(&NodeId::from("1")),
            Err(MembershipError::PlanApplying(s.plan.as_ref().unwrap().id))
        );
    }

    #[test]
    fn a_staged_replace_waits_for_commit() {
        let mut s = dead_member_and_a_stalled_join();
        let ring = s.ring.clone();
        s.replace_in(
            &NodeId::from("3"),
            &NodeId::from("2"),
            &NodeId::from("4"),
            ChangeMode::Staged,
        )
        .unwrap();
        assert!(s.plan.as_ref().is_some_and(|p| p.staged));
        assert_eq!(
            s.replace_in_flight(),
            Some((NodeId::from("2"), NodeId::from("4")))
        );
        transfer_all_but(&mut s, "2");
        assert!(!s.claimant_step(&NodeId::from("1")));
        assert_eq!(s.ring, ring);
        s.commit_staged(&NodeId::from("1")).unwrap();
        assert!(s.claimant_step(&NodeId::from("1")));
        assert_eq!(
            s.ring.partitions_of(&NodeId::from("4")),
            ring.partitions_of(&NodeId::from("2"))
        );
    }

    #[test]
    fn transfers_cover_every_new_replica() {
        let a = claim(
            32,
            &[
                Member {
                    id: "1".into(),
                    zone: None,
                },
                Member {
                    id: "2".into(),
                    zone: None,
                },
                Member {
                    id: "3".into(),
                    zone: None,
                },
            ],
            3,
            None,
        );
        let members: Vec<Member> = ["1", "2", "3", "4"]
            .iter()
            .map(|i| Member {
                id: NodeId::from(*i),
                zone: None,
            })
            .collect();
        let b = claim(32, &members, 3, Some(&a));
        let ts = compute_transfers(&a, &b, 3, |_| true);
        for p in 0..32 {
            let cur = a.preference_list(p, 3);
            for to in b.preference_list(p, 3) {
                if !cur.contains(to) {
                    assert!(
                        ts.iter()
                            .any(|t| t.partition == p && t.to == *to && cur.contains(&t.from))
                    );
                }
            }
        }
    }

    /// A replica taken over from a dead node streams from every live replica, not one: a
    /// write acknowledged by the dead node and one other lives only on that other, and the
    /// new replica must hold it or two of the three replicas lack it (a read at r=2 could ask
    /// exactly those). A live leaver still hands over its own copy alone.
    #[test]
    fn a_dead_replicas_successor_streams_from_every_live_replica() {
        let members = |ids: &[&str]| -> Vec<Member> {
            ids.iter()
                .map(|i| Member {
                    id: NodeId::from(*i),
                    zone: None,
                })
                .collect()
        };
        let a = claim(32, &members(&["1", "2", "3", "4"]), 3, None);
        // 4 dies and 5 takes its partitions.
        let b = crate::ring::replace_owner(&a, &NodeId::from("4"), &NodeId::from("5")).unwrap();
        let dead = NodeId::from("4");
        let ts = compute_transfers(&a, &b, 3, |id| *id != dead);
        let mut checked = 0;
        for p in 0..32 {
            let cur = a.preference_list(p, 3);
            if !cur.contains(&dead) {
                continue;
            }
            checked += 1;
            let live: Vec<&NodeId> = cur.iter().filter(|x| **x != dead).collect();
            for from in live {
                assert!(
                    ts.iter()
                        .any(|t| t.partition == p && t.to == "5".into() && t.from == *from),
                    "partition {p}: no transfer from {from} to 5: {ts:?}"
                );
            }
        }
        assert!(checked > 0);
        // A live leaver (4 leaves) is the only source of the copy it hands over.
        let c = claim(32, &members(&["1", "2", "3"]), 3, Some(&a));
        let ts = compute_transfers(&a, &c, 3, |_| true);
        for p in 0..32 {
            let cur = a.preference_list(p, 3);
            let tgt = c.preference_list(p, 3);
            let leaving = cur.iter().filter(|x| !tgt.contains(x)).count();
            let arriving = tgt.iter().filter(|x| !cur.contains(x)).count();
            assert_eq!(
                ts.iter().filter(|t| t.partition == p).count(),
                arriving,
                "partition {p}: one source per arriving replica ({leaving} leaving)"
            );
        }
    }
}
