//! Claim: assigning partitions to members.
//!
//! Goals, in priority order:
//! 1. **Balance** (hard): every member owns `floor(Q/k)` or `ceil(Q/k)` partitions.
//! 2. **Distinct replicas**: any `N` consecutive partitions have `N` distinct owners, so a
//!    preference list is exactly the next `N` owners and never leans on a longer walk.
//! 3. **Zone spread**: any `N` consecutive partitions touch `min(N, zones)` zones. A member
//!    without a zone is its own zone.
//! 4. **Minimal movement**: starting from the previous ring, keep owners where possible.
//!
//! Rule 2 is achievable together with balance exactly when `ceil(Q/k) * N <= Q` (see
//! [`claim_feasible`]): a node owning `c` partitions needs `c` gaps of at least `N`, and the
//! striped layout below meets the bound. That holds whenever `Q` is a multiple of `k >= N`, and
//! whenever `k >= 2N` (for `Q >= N`). When it fails (e.g. Q=8, k=3, N=3) the claim minimises
//! the number of windows with repeated owners; preference lists still hold `min(N, k)`
//! distinct nodes because the walk skips repeats. Rule 3 is best effort: e.g. three zones
//! can never alternate perfectly around a ring of 64 partitions, so a few windows repeat a zone.
//!
//! Movement: a join takes about `Q/(k+1)` partitions from the others and moves nothing
//! else when the window rule held before and holds after. A leave reassigns the leaver's
//! partitions; the nodes next to it on the ring cannot take them without breaking a window,
//! so their share arrives by a chained move, roughly `2(N-1)` times the per-node gain extra.
//! With at most `2N` nodes left the leaver's neighbours can hold every remaining node, and
//! then no one can take one of its partitions without a second owner changing nearby: 5 nodes
//! to 4 with N=3 from a striped ring must move twice what the leaver owned (the tests prove
//! that floor by exhaustive search). The window rule wins over movement.
//!
//! Method: an incremental pass keeps the previous owners, frees surplus partitions that
//! break windows, gives the leavers' partitions and the remaining surplus to under-loaded
//! members at places that break no window, then repairs remaining violations with owner swaps.
//! A fresh striped layout (zones interleaved, relabelled and rotated to overlap the previous
//! ring most) competes with it. Both then give partitions back to their previous owners by
//! swaps that add no violation, and the ring with fewer violations wins, then the one moving
//! less. So a join from a ring that broke windows (e.g. 3 nodes, Q=32, N=3) no longer
//! reshuffles the whole ring: 3 to 4 nodes moves 11 of 32, not 23. On clusters of at most
//! `2N` members a third candidate competes: the valid ring nearest the previous one, found
//! exactly by a walk round the ring over the last `N-1` owners ([`Nearest`]), then balanced
//! by chains of hand-overs. Every step is
//! deterministic: members are sorted by id and ties broken by index, so the order of
//! `members` never matters.

use super::hash::{MAX_RING_SIZE, validate_ring_size};
use super::nearest::{self, Nearest};
use super::{Ring, RingError};
use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

/// A node taking part in the claim, with its placement zone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub zone: Option<String>,
}

impl Member {
    pub fn new(id: impl Into<String>, zone: Option<&str>) -> Self {
        Member {
            id: NodeId::new(id),
            zone: zone.map(str::to_string),
        }
    }
}

/// Largest replica window the claim optimises for; larger `target_n` is clamped to it.
const MAX_WINDOW: usize = 64;
/// A repeated owner in a window outweighs any number of repeated zones.
const NODE_WEIGHT: u64 = 1 << 32;
/// Bound on cost evaluations per search phase, so a claim on a huge ring stays quick.
const EVAL_BUDGET: u64 = 2_000_000;
/// Penalty rounds of the nearest-ring search (see [`Layout::nearest`]).
const NEAREST_ROUNDS: usize = 4;
/// Marks a partition with no owner during the incremental pass.
const HOLE: u32 = u32::MAX;

/// True when balance and "every `n` consecutive partitions have `n` distinct owners" can
/// hold together for `nodes` members on a ring of `ring_size`: `ceil(Q/k) * n <= Q`.
pub fn claim_feasible(ring_size: u32, nodes: usize, n: usize) -> bool {
    if n == 0 {
        return true;
    }
    if nodes == 0 {
        return false;
    }
    let q = ring_size as u64;
    q.div_ceil(nodes as u64) * n as u64 <= q
}

/// How well a ring meets the claim goals for given members and `n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingQuality {
    /// Fewest and most partitions owned by a member (members owning nothing count as 0).
    pub min_owned: usize,
    pub max_owned: usize,
    /// Windows of `n` consecutive partitions with fewer than `min(n, owners)` owners.
    pub node_violations: usize,
    /// Windows of `n` consecutive partitions touching fewer than `min(n, zones)` zones.
    pub zone_violations: usize,
    /// Preference lists (length `n`) touching fewer than `min(n, zones)` zones.
    pub short_zone_lists: usize,
}

/// Measures `ring` against the claim goals. Owners missing from `members` count as
/// zoneless nodes.
pub fn assess(ring: &Ring, members: &[Member], n: usize) -> RingQuality {
    let members = normalise(members);
    let owners = ring.owners();
    let q = owners.len();
    let mut index: HashMap<&NodeId, u32> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (&m.id, i as u32))
        .collect();
    let mut zones = zone_indices(&members);
    let mut own = Vec::with_capacity(q);
    for o in owners {
        let next = index.len() as u32;
        let i = *index.entry(o).or_insert_with(|| {
            zones.zone_of.push(zones.count as u32);
            zones.count += 1;
            next
        });
        own.push(i);
    }
    let mut counts = vec![0usize; index.len()];
    for &o in &own {
        counts[o as usize] += 1;
    }
    let member_counts = &counts[..members.len()];
    let win = n.clamp(1, MAX_WINDOW).min(q);
    let layout = Layout {
        q,
        zone_of: zones.zone_of.clone(),
        win,
        node_goal: win.min(index.len()),
        zone_goal: win.min(zones.count),
    };
    let (mut node_violations, mut zone_violations) = (0, 0);
    for s in 0..q {
        let (nd, zd) = layout.deficits(&own, s);
        node_violations += usize::from(nd > 0);
        zone_violations += usize::from(zd > 0);
    }
    let zone_goal = n.min(zones.count);
    let short_zone_lists = (0..q as u32)
        .filter(|&p| {
            let mut seen: Vec<u32> = ring
                .preference_list(p, n)
                .iter()
                .map(|id| {
                    index
                        .get(id)
                        .map_or(u32::MAX, |&i| zones.zone_of[i as usize])
                })
                .collect();
            seen.sort_unstable();
            seen.dedup();
            seen.len() < zone_goal
        })
        .count();
    RingQuality {
        min_owned: member_counts.iter().copied().min().unwrap_or(0),
        max_owned: member_counts.iter().copied().max().unwrap_or(0),
        node_violations,
        zone_violations,
        short_zone_lists,
    }
}

/// Assigns the partitions of a ring of `ring_size` to `members` for replicas of `target_n`,
/// moving as little as possible from `previous`. Same inputs give the same ring whatever the
/// order of `members`; members absent from `members` own nothing. On invalid input (see
/// [`try_claim`]) it returns `previous` unchanged, or without one a ring owned by the empty
/// id, which no member can have.
pub fn claim(ring_size: u32, members: &[Member], target_n: usize, previous: Option<&Ring>) -> Ring {
    match try_claim(ring_size, members, target_n, previous) {
        Ok(r) => r,
        Err(_) => previous.cloned().unwrap_or_else(|| unowned(ring_size)),
    }
}

fn unowned(ring_size: u32) -> Ring {
    let mut q = ring_size.clamp(1, MAX_RING_SIZE).next_power_of_two();
    loop {
        if let Ok(r) = Ring::from_owners(vec![NodeId::new(""); q as usize]) {
            return r;
        }
        // Unreachable: q is a valid size. Halving still ends at 1, which is always valid.
        q = (q / 2).max(1);
    }
}

/// What a claim was asked: the memo's key.
#[derive(PartialEq)]
struct ClaimQuestion {
    ring_size: u32,
    /// Normalised (sorted, one per id).
    members: Vec<Member>,
    target_n: usize,
    previous: Option<Vec<NodeId>>,
}

/// Answers kept by [`try_claim`].
const MEMO_ENTRIES: usize = 4;

/// The last claims answered. The claimant asks the same question every gossip round while
/// membership stands still, and the answer costs milliseconds on a large ring or a small
/// cluster (the nearest-ring search), paid under the ring-state lock that every request
/// reads. A claim is a pure function of its question, so a kept answer is exact.
#[cfg(not(test))]
static MEMO: parking_lot::Mutex<Vec<(ClaimQuestion, Ring)>> = parking_lot::Mutex::new(Vec::new());

#[cfg(not(test))]
fn with_memo<R>(f: impl FnOnce(&mut Vec<(ClaimQuestion, Ring)>) -> R) -> R {
    f(&mut MEMO.lock())
}

#[cfg(test)]
thread_local! {
    /// Tests running in parallel keep a memo each, so one cannot evict another's answers.
    static MEMO: std::cell::RefCell<Vec<(ClaimQuestion, Ring)>> =
        const { std::cell::RefCell::new(Vec::new()) };
    /// Claims computed (not answered from the memo) on this thread.
    static COMPUTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn with_memo<R>(f: impl FnOnce(&mut Vec<(ClaimQuestion, Ring)>) -> R) -> R {
    MEMO.with(|m| f(&mut m.borrow_mut()))
}

/// [`claim`] with its input checked: the ring size must be valid and `members` non-empty.
pub fn try_claim(
    ring_size: u32,
    members: &[Member],
    target_n: usize,
    previous: Option<&Ring>,
) -> Result<Ring, RingError> {
    validate_ring_size(ring_size)?;
    let members = normalise(members);
    if members.is_empty() {
        return Err(RingError::NoMembers);
    }
    let question = ClaimQuestion {
        ring_size,
        members,
        target_n,
        previous: previous.map(|r| r.owners().to_vec()),
    };
    let known = with_memo(|m| {
        m.iter()
            .find(|(q, _)| *q == question)
            .map(|(_, r)| r.clone())
    });
    if let Some(ring) = known {
        return Ok(ring);
    }
    #[cfg(test)]
    COMPUTED.with(|c| c.set(c.get() + 1));
    let ring = compute_claim(ring_size, &question.members, target_n, previous)?;
    with_memo(|m| {
        if m.len() >= MEMO_ENTRIES {
            m.remove(0);
        }
        m.push((question, ring.clone()));
    });
    Ok(ring)
}

/// The claim itself, over normalised members.
fn compute_claim(
    ring_size: u32,
    members: &[Member],
    target_n: usize,
    previous: Option<&Ring>,
) -> Result<Ring, RingError> {
    let q = ring_size as usize;
    let zones = zone_indices(members);
    let win = target_n.clamp(1, MAX_WINDOW).min(q);
    let layout = Layout {
        q,
        zone_of: zones.zone_of,
        win,
        node_goal: win.min(members.len()),
        zone_goal: win.min(zones.count),
    };
    let index: HashMap<&NodeId, u32> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (&m.id, i as u32))
        .collect();
    let prev: Option<Vec<u32>> = previous.filter(|r| r.ring_size() == ring_size).map(|r| {
        r.owners()
            .iter()
            .map(|o| index.get(o).copied().unwrap_or(HOLE))
            .collect()
    });

    let mut best: Option<(u64, usize, Vec<u32>)> = None;
    if let Some(prev) = &prev
        && let Some(own) = layout.incremental(prev)
    {
        let cost = layout.total_cost(&own);
        best = Some((cost, moved(prev, &own), own));
    }
    // The fresh layout also competes when the incremental one is perfect: after a leave,
    // restoring a rotated stripe can move less than chaining partitions round the gap.
    {
        let none = vec![HOLE; q];
        let reference = prev.as_ref().unwrap_or(&none);
        let own = layout.fresh(reference);
        let cost = layout.total_cost(&own);
        let mv = moved(reference, &own);
        if best.as_ref().is_none_or(|(c, m, _)| (cost, mv) < (*c, *m)) {
            best = Some((cost, mv, own));
        }
    }
    // Small clusters: the valid ring nearest the previous one competes too. After a leave
    // the leaver's neighbours cannot take its partitions, and the greedy passes above chain
    // more moves than needed.
    if let Some(prev) = &prev
        && let Some(own) = layout.nearest(prev)
    {
        let cost = layout.total_cost(&own);
        let mv = moved(prev, &own);
        if best.as_ref().is_none_or(|(c, m, _)| (cost, mv) < (*c, *m)) {
            best = Some((cost, mv, own));
        }
    }
    let own = best.map(|(_, _, own)| own).unwrap_or_default();
    let last = members.len() - 1;
    let owners = own
        .iter()
        .map(|&i| members[(i as usize).min(last)].id.clone())
        .collect();
    Ring::from_owners(owners)
}

/// Sorted by id, one entry per id, so the input order never matters.
fn normalise(members: &[Member]) -> Vec<Member> {
    let mut m = members.to_vec();
    m.sort();
    m.dedup_by(|a, b| a.id == b.id);
    m
}

struct Zones {
    /// Zone index of each member; members without a zone get one of their own.
    zone_of: Vec<u32>,
    count: usize,
}

fn zone_indices(members: &[Member]) -> Zones {
    let mut names: Vec<&str> = members.iter().filter_map(|m| m.zone.as_deref()).collect();
    names.sort_unstable();
    names.dedup();
    let mut count = names.len();
    let zone_of = members
        .iter()
        .map(|m| match m.zone.as_deref() {
            Some(z) => names.binary_search(&z).unwrap_or(0) as u32,
            None => {
                count += 1;
                (count - 1) as u32
            }
        })
        .collect();
    Zones { zone_of, count }
}

fn moved(prev: &[u32], own: &[u32]) -> usize {
    prev.iter().zip(own).filter(|(a, b)| a != b).count()
}

/// The optimisation problem over member indices.
struct Layout {
    q: usize,
    zone_of: Vec<u32>,
    /// Window length: `min(N, Q)`.
    win: usize,
    /// Distinct owners wanted per window: `min(win, members)`.
    node_goal: usize,
    /// Distinct zones wanted per window: `min(win, zones)`.
    zone_goal: usize,
}

impl Layout {
    fn k(&self) -> usize {
        self.zone_of.len()
    }

    fn zone_count(&self) -> usize {
        self.zone_of
            .iter()
            .map(|&z| z as usize + 1)
            .max()
            .unwrap_or(0)
    }

    /// Missing distinct owners and zones in the window starting at `s`. A hole counts as a
    /// fresh owner in a fresh zone: it will be filled by someone suitable if possible.
    fn deficits(&self, own: &[u32], s: usize) -> (usize, usize) {
        let mut nodes = [0u32; MAX_WINDOW];
        let mut zones = [0u32; MAX_WINDOW];
        let (mut nn, mut nz, mut holes) = (0, 0, 0);
        for d in 0..self.win {
            let o = own[(s + d) % self.q];
            if o == HOLE {
                holes += 1;
                continue;
            }
            if !nodes[..nn].contains(&o) {
                nodes[nn] = o;
                nn += 1;
                let z = self.zone_of[o as usize];
                if !zones[..nz].contains(&z) {
                    zones[nz] = z;
                    nz += 1;
                }
            }
        }
        (
            self.node_goal.saturating_sub(nn + holes),
            self.zone_goal.saturating_sub(nz + holes),
        )
    }

    fn window_cost(&self, own: &[u32], s: usize) -> u64 {
        let (nd, zd) = self.deficits(own, s);
        nd as u64 * NODE_WEIGHT + zd as u64
    }

    fn total_cost(&self, own: &[u32]) -> u64 {
        (0..self.q).map(|s| self.window_cost(own, s)).sum()
    }

    /// Cost change of setting the given positions to the given owners (`own` is restored).
    fn delta(&self, own: &mut [u32], changes: &[(usize, u32)]) -> i64 {
        let mut starts: Vec<usize> = Vec::with_capacity(changes.len() * self.win);
        for &(p, _) in changes {
            for d in 0..self.win {
                starts.push((p + self.q - d) % self.q);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let before: u64 = starts.iter().map(|&s| self.window_cost(own, s)).sum();
        let mut old = Vec::with_capacity(changes.len());
        for &(p, o) in changes {
            old.push((p, own[p]));
            own[p] = o;
        }
        let after: u64 = starts.iter().map(|&s| self.window_cost(own, s)).sum();
        for &(p, o) in old.iter().rev() {
            own[p] = o;
        }
        after as i64 - before as i64
    }

    /// Ownership targets: `base + 1` for `q % k` members chosen to keep zone totals level
    /// first (so zones can alternate), then to keep the members that own most already.
    fn targets_by_previous(&self, prev_counts: &[usize]) -> Vec<usize> {
        let k = self.k();
        let base = self.q / k;
        let extra = self.q % k;
        let mut targets = vec![base; k];
        let mut queues: Vec<VecDeque<usize>> = vec![VecDeque::new(); self.zone_count()];
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by_key(|&i| (Reverse(prev_counts[i]), i));
        for i in order {
            queues[self.zone_of[i] as usize].push_back(i);
        }
        let mut totals: Vec<usize> = queues.iter().map(|q| q.len() * base).collect();
        let mut heap = BinaryHeap::new();
        for (z, queue) in queues.iter().enumerate() {
            if let Some(&i) = queue.front() {
                heap.push(Reverse((totals[z], Reverse(prev_counts[i]), i, z)));
            }
        }
        for _ in 0..extra {
            let Some(Reverse((_, _, i, z))) = heap.pop() else {
                break;
            };
            targets[i] += 1;
            totals[z] += 1;
            queues[z].pop_front();
            if let Some(&j) = queues[z].front() {
                heap.push(Reverse((totals[z], Reverse(prev_counts[j]), j, z)));
            }
        }
        targets
    }

    /// Starts from `prev` and changes only what balance and the window rules require.
    /// `None` when the work would exceed the evaluation budget.
    fn incremental(&self, prev: &[u32]) -> Option<Vec<u32>> {
        let (q, k) = (self.q, self.k());
        let mut own = prev.to_vec();
        let mut counts = vec![0usize; k];
        for &o in &own {
            if o != HOLE {
                counts[o as usize] += 1;
            }
        }
        let targets = self.targets_by_previous(&counts);
        let mut budget = EVAL_BUDGET;
        let mut surplus: Vec<usize> = (0..k)
            .map(|i| counts[i].saturating_sub(targets[i]))
            .collect();
        let mut need: Vec<usize> = (0..k)
            .map(|i| targets[i].saturating_sub(counts[i]))
            .collect();

        // Free surplus partitions that break windows; the rest of the surplus is handed over
        // later to under-loaded members, at places they choose.
        for p in 0..q {
            let o = own[p];
            if o != HOLE && surplus[o as usize] > 0 && self.delta(&mut own, &[(p, HOLE)]) < 0 {
                own[p] = HOLE;
                surplus[o as usize] -= 1;
            }
        }

        // Fill holes (leavers' partitions): each goes to the under-loaded member that fits
        // best, the neediest first among equals.
        let holes: Vec<usize> = (0..q).filter(|&p| own[p] == HOLE).collect();
        let under: Vec<usize> = (0..k).filter(|&i| need[i] > 0).collect();
        if (holes.len() as u64).saturating_mul(under.len() as u64) > budget {
            return None;
        }
        for &p in &holes {
            let mut best: Option<(i64, Reverse<usize>, usize)> = None;
            for &u in &under {
                if need[u] == 0 {
                    continue;
                }
                budget = budget.saturating_sub(1);
                let key = (self.delta(&mut own, &[(p, u as u32)]), Reverse(need[u]), u);
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
            // No taker means the counts do not add up; the fresh layout then decides.
            let (_, _, u) = best?;
            own[p] = u as u32;
            need[u] -= 1;
        }

        // Remaining needs take surplus partitions: each under-loaded member walks the ring at
        // an even stride and takes the first surplus partition that breaks nothing.
        let takers: Vec<usize> = (0..k).filter(|&i| need[i] > 0).collect();
        let mut cursor: Vec<usize> = vec![0; k];
        let mut stride: Vec<usize> = vec![1; k];
        for (j, &u) in takers.iter().enumerate() {
            cursor[u] = j * q / takers.len();
            stride[u] = (q / need[u]).max(1);
        }
        loop {
            let mut progressed = false;
            for &u in &takers {
                if need[u] == 0 {
                    continue;
                }
                let mut best: Option<(i64, usize)> = None;
                for step in 0..q {
                    let p = (cursor[u] + step) % q;
                    let o = own[p];
                    if o == HOLE || surplus[o as usize] == 0 {
                        continue;
                    }
                    budget = budget.saturating_sub(1);
                    let d = self.delta(&mut own, &[(p, u as u32)]);
                    if best.is_none_or(|(bd, _)| d < bd) {
                        best = Some((d, p));
                    }
                    if d <= 0 {
                        break;
                    }
                }
                let (_, p) = best?;
                surplus[own[p] as usize] -= 1;
                own[p] = u as u32;
                need[u] -= 1;
                cursor[u] = (p + stride[u]) % q;
                progressed = true;
            }
            if !progressed {
                break;
            }
            if budget == 0 {
                return None;
            }
        }
        if own.contains(&HOLE) {
            return None;
        }
        self.repair(&mut own, prev, &mut budget);
        self.restore(&mut own, prev, &mut budget);
        Some(own)
    }

    /// The balanced ring nearest `prev` for clusters of at most `2N` members, where the
    /// greedy passes chain moves: the exact nearest valid ring (see [`Nearest`]), balanced
    /// by chains of hand-overs or by direct ones and repair. Later rounds walk again with
    /// members above their share made dearer. The cheapest result of all rounds wins.
    /// `None` when not applicable.
    fn nearest(&self, prev: &[u32]) -> Option<Vec<u32>> {
        let (q, k) = (self.q, self.k());
        if k > 2 * self.win || !claim_feasible(q as u32, k, self.win) {
            return None;
        }
        let problem = Nearest {
            prev,
            zone_of: &self.zone_of,
            win: self.win,
            zone_goal: self.zone_goal,
        };
        if !problem.applies() {
            return None;
        }
        let (base, extra) = (q / k, q % k);
        let mut penalty = vec![0i64; k];
        let mut best: Option<(u64, usize, Vec<u32>)> = None;
        let mut budget = EVAL_BUDGET;
        for round in 0..NEAREST_ROUNDS {
            let Some(walked) = problem.solve(&penalty) else {
                break;
            };
            let counts = self.owned_counts(&walked);
            let balanced = counts.iter().all(|&c| c == base || c == base + 1);
            let targets = self.targets_by_previous(&counts);
            // Two ways to balance: chains of hand-overs that add no violation, or single
            // hand-overs at the least harm followed by repair. Either may win.
            for chained in [true, false] {
                let mut own = walked.clone();
                if !balanced {
                    let done = if chained {
                        self.balance_by_chains(&mut own, prev, &targets, &mut budget)
                    } else {
                        self.balance_directly(&mut own, prev, &targets, &mut budget)
                    };
                    if !done {
                        continue;
                    }
                    self.repair(&mut own, prev, &mut budget);
                }
                self.restore(&mut own, prev, &mut budget);
                let cost = self.total_cost(&own);
                let mv = moved(prev, &own);
                if best.as_ref().is_none_or(|(c, m, _)| (cost, mv) < (*c, *m)) {
                    best = Some((cost, mv, own));
                }
                if balanced {
                    break;
                }
            }
            if balanced || budget == 0 {
                break;
            }
            // Members above their share get dearer, those below cheaper, by half a move and
            // less each round: the walks that follow start from other near rings.
            let step = nearest::MOVE / (round as i64 + 2);
            let mut at_ceil: Vec<usize> = (0..k).filter(|&i| counts[i] > base).collect();
            at_ceil.sort_by_key(|&i| (Reverse(counts[i]), i));
            for (rank, &i) in at_ceil.iter().enumerate() {
                if counts[i] > base + 1 || rank >= extra {
                    penalty[i] += step;
                }
            }
            for i in 0..k {
                if counts[i] < base {
                    penalty[i] -= step;
                }
            }
        }
        best.map(|(_, _, own)| own)
    }

    /// Partitions owned by each member in a ring without holes.
    fn owned_counts(&self, own: &[u32]) -> Vec<usize> {
        let mut counts = vec![0usize; self.k()];
        for &o in own {
            counts[o as usize] += 1;
        }
        counts
    }

    /// Moves partitions from members above their target to members below it, one unit at a
    /// time along a chain of hand-overs (`a` gives a partition to `b`, `b` one to `c`, ...),
    /// each adding no violation: the chain that moves least from `prev`, found by
    /// Bellman-Ford over the members. A direct hand-over is often impossible after a leave
    /// (the needy member already sits in every window around the surplus), a chain is not.
    /// False when no chain exists or the budget runs out.
    fn balance_by_chains(
        &self,
        own: &mut [u32],
        prev: &[u32],
        targets: &[usize],
        budget: &mut u64,
    ) -> bool {
        let (q, k) = (self.q, self.k());
        let mut counts = self.owned_counts(own);
        let gain =
            |own: &[u32], p: usize, b: u32| i64::from(b != prev[p]) - i64::from(own[p] != prev[p]);
        loop {
            if (0..k).all(|i| counts[i] >= targets[i]) {
                return true;
            }
            // Cheapest hand-over of a partition from each member to each other.
            let mut link: Vec<Option<i64>> = vec![None; k * k];
            for p in 0..q {
                let a = own[p] as usize;
                for b in 0..k as u32 {
                    if b as usize == a {
                        continue;
                    }
                    if *budget == 0 {
                        return false;
                    }
                    *budget -= 1;
                    if self.delta(own, &[(p, b)]) <= 0 {
                        let g = gain(own, p, b);
                        let l = &mut link[a * k + b as usize];
                        if l.is_none_or(|c| g < c) {
                            *l = Some(g);
                        }
                    }
                }
            }
            let surplus = |i: usize| counts[i] > targets[i];
            let mut dist: Vec<Option<i64>> = (0..k).map(|i| surplus(i).then_some(0)).collect();
            let mut pred: Vec<Option<usize>> = vec![None; k];
            for _ in 0..k {
                for a in 0..k {
                    let Some(da) = dist[a] else { continue };
                    for b in 0..k {
                        if let Some(g) = link[a * k + b]
                            && dist[b].is_none_or(|db| da + g < db)
                        {
                            dist[b] = Some(da + g);
                            pred[b] = Some(a);
                        }
                    }
                }
            }
            let Some(u) = (0..k)
                .filter(|&i| counts[i] < targets[i] && dist[i].is_some())
                .min_by_key(|&i| (dist[i], i))
            else {
                return false;
            };
            // Back from `u` to the first member with a surplus.
            let mut chain = vec![u];
            let mut at = u;
            while !surplus(at) {
                let Some(a) = pred[at] else { return false };
                if chain.contains(&a) {
                    return false;
                }
                chain.push(a);
                at = a;
            }
            chain.reverse();
            for pair in chain.windows(2) {
                let (a, b) = (pair[0] as u32, pair[1] as u32);
                let mut pick: Option<(i64, usize)> = None;
                for p in 0..q {
                    if own[p] != a {
                        continue;
                    }
                    if *budget == 0 {
                        return false;
                    }
                    *budget -= 1;
                    if self.delta(own, &[(p, b)]) <= 0 {
                        let key = (gain(own, p, b), p);
                        if pick.is_none_or(|c| key < c) {
                            pick = Some(key);
                        }
                    }
                }
                let Some((_, p)) = pick else { return false };
                own[p] = b;
            }
            counts[chain[0]] -= 1;
            counts[u] += 1;
        }
    }

    /// Moves partitions from members above their target to members below it, one at a time:
    /// each time the hand-over that adds least cost, then moves least from `prev`; the
    /// violations it adds are left to [`Layout::repair`]. False when the budget runs out.
    fn balance_directly(
        &self,
        own: &mut [u32],
        prev: &[u32],
        targets: &[usize],
        budget: &mut u64,
    ) -> bool {
        let k = self.k();
        let mut counts = self.owned_counts(own);
        loop {
            let needy: Vec<u32> = (0..k as u32)
                .filter(|&i| counts[i as usize] < targets[i as usize])
                .collect();
            if needy.is_empty() {
                return true;
            }
            let mut best: Option<(i64, i64, usize, u32)> = None;
            for p in 0..self.q {
                let o = own[p];
                if counts[o as usize] <= targets[o as usize] {
                    continue;
                }
                for &u in &needy {
                    if *budget == 0 {
                        return false;
                    }
                    *budget -= 1;
                    let dc = self.delta(own, &[(p, u)]);
                    let mv = i64::from(u != prev[p]) - i64::from(o != prev[p]);
                    let key = (dc, mv, p, u);
                    if best.is_none_or(|b| key < b) {
                        best = Some(key);
                    }
                }
            }
            let Some((_, _, p, u)) = best else {
                return false;
            };
            counts[own[p] as usize] -= 1;
            counts[u as usize] += 1;
            own[p] = u;
        }
    }

    /// Swaps owners of partition pairs while that lowers the cost, preferring swaps that move
    /// fewer partitions away from `prev`. Counts per member never change.
    fn repair(&self, own: &mut [u32], prev: &[u32], budget: &mut u64) {
        let q = self.q;
        loop {
            let bad: Vec<usize> = (0..q).filter(|&s| self.window_cost(own, s) > 0).collect();
            if bad.is_empty() {
                return;
            }
            let mut improved = false;
            for s in bad {
                for d in 0..self.win {
                    if self.window_cost(own, s) == 0 {
                        break;
                    }
                    let i = (s + d) % q;
                    let oi = own[i];
                    let moves = |j: usize, oj: u32| {
                        let was = i64::from(oi != prev[i]) + i64::from(oj != prev[j]);
                        let now = i64::from(oj != prev[i]) + i64::from(oi != prev[j]);
                        now - was
                    };
                    improved |= self.swap_best(own, i, budget, -1, |_, _| true, moves);
                    if *budget == 0 {
                        return;
                    }
                }
            }
            if !improved {
                return;
            }
        }
    }

    /// Swaps partitions back to their owner in `prev` while that adds no violation, undoing
    /// the moves a layout made beyond need. Each swap lowers the moves, so it ends; counts
    /// per member never change.
    fn restore(&self, own: &mut [u32], prev: &[u32], budget: &mut u64) {
        let q = self.q;
        loop {
            let mut improved = false;
            for i in 0..q {
                let want = prev[i];
                if want == HOLE || own[i] == want {
                    continue;
                }
                let oi = own[i];
                // Only partitions `want` gained elsewhere are worth giving back.
                improved |= self.swap_best(
                    own,
                    i,
                    budget,
                    0,
                    |j, oj| oj == want && prev[j] != want,
                    |j, _| i64::from(oi != prev[j]) - 2,
                );
                if *budget == 0 {
                    return;
                }
            }
            if !improved {
                return;
            }
        }
    }

    /// Swaps the owners of `i` and the partner `j` that ranks lowest by (cost change,
    /// `moves(j, own[j])`), among the `eligible` ones whose cost change is at most
    /// `max_change`; true when it swapped. Stops looking when `budget` runs out.
    fn swap_best(
        &self,
        own: &mut [u32],
        i: usize,
        budget: &mut u64,
        max_change: i64,
        eligible: impl Fn(usize, u32) -> bool,
        moves: impl Fn(usize, u32) -> i64,
    ) -> bool {
        let oi = own[i];
        let mut best: Option<(i64, i64, usize)> = None;
        for j in 0..self.q {
            let oj = own[j];
            // A swap between equal owners changes nothing.
            if oj == oi || !eligible(j, oj) {
                continue;
            }
            if *budget == 0 {
                break;
            }
            *budget -= 1;
            let dc = self.delta(own, &[(i, oj), (j, oi)]);
            if dc <= max_change {
                let key = (dc, moves(j, oj), j);
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
        }
        let Some((_, _, j)) = best else {
            return false;
        };
        own.swap(i, j);
        true
    }

    /// Members in an order that interleaves zones: most populous zone first, and a zone not
    /// repeated within `zone_goal - 1` picks when avoidable.
    fn interleaved_order(&self) -> Vec<usize> {
        let mut queues: Vec<VecDeque<usize>> = vec![VecDeque::new(); self.zone_count()];
        for (i, &z) in self.zone_of.iter().enumerate() {
            queues[z as usize].push_back(i);
        }
        let mut heap: BinaryHeap<(usize, Reverse<usize>)> = queues
            .iter()
            .enumerate()
            .filter(|(_, q)| !q.is_empty())
            .map(|(z, q)| (q.len(), Reverse(z)))
            .collect();
        let gap = self.zone_goal.saturating_sub(1);
        let mut cooling: VecDeque<(usize, usize)> = VecDeque::new();
        let mut order = Vec::with_capacity(self.k());
        while order.len() < self.k() {
            let z = match heap.pop() {
                Some((_, Reverse(z))) => z,
                // Every zone with members left is cooling: take the longest-waiting one.
                None => match cooling.iter().position(|&(_, left)| left > 0) {
                    Some(at) => cooling.remove(at).map_or(0, |(z, _)| z),
                    None => break,
                },
            };
            if let Some(i) = queues[z].pop_front() {
                order.push(i);
            }
            cooling.retain(|&(c, _)| c != z);
            cooling.push_back((z, queues[z].len()));
            while cooling.len() > gap {
                if let Some((z, left)) = cooling.pop_front()
                    && left > 0
                {
                    heap.push((left, Reverse(z)));
                }
            }
        }
        order
    }

    /// A fresh layout, then relabelled and rotated to overlap `reference` most, then
    /// repaired. Two candidates are built and the one with fewer violations kept: members
    /// striped in zone-interleaved order (guarantees the window rule when feasible), and zones
    /// striped first with each zone's members striped over the zone's partitions (better zone
    /// spread when member counts do not divide the ring evenly).
    fn fresh(&self, reference: &[u32]) -> Vec<u32> {
        let (q, k) = (self.q, self.k());
        let order = self.interleaved_order();
        let (base, extra) = (q / k, q % k);
        let mut by_order = vec![0usize; k];
        for (rank, &i) in order.iter().enumerate() {
            by_order[i] = base + usize::from(rank < extra);
        }
        let runs: Vec<(u32, usize)> = order.iter().map(|&i| (i as u32, by_order[i])).collect();
        let node_first = stripe(&runs);

        let by_zone = self.targets_by_previous(&vec![0; k]);
        let mut totals = vec![0usize; self.zone_count()];
        for i in 0..k {
            totals[self.zone_of[i] as usize] += by_zone[i];
        }
        let mut zone_runs: Vec<(u32, usize)> = (0..totals.len() as u32)
            .map(|z| (z, totals[z as usize]))
            .filter(|&(_, t)| t > 0)
            .collect();
        zone_runs.sort_by_key(|&(z, t)| (Reverse(t), z));
        let zone_layout = stripe(&zone_runs);
        let mut zone_first = vec![0u32; q];
        for &(z, _) in &zone_runs {
            let slots: Vec<usize> = (0..q).filter(|&p| zone_layout[p] == z).collect();
            let mut runs: Vec<(u32, usize)> = (0..k)
                .filter(|&i| self.zone_of[i] == z && by_zone[i] > 0)
                .map(|i| (i as u32, by_zone[i]))
                .collect();
            runs.sort_by_key(|&(i, t)| (Reverse(t), i));
            for (slot, o) in slots.into_iter().zip(stripe(&runs)) {
                zone_first[slot] = o;
            }
        }

        let (chosen, count) = if self.total_cost(&zone_first) < self.total_cost(&node_first) {
            (zone_first, by_zone)
        } else {
            (node_first, by_order)
        };
        let mut own = self.align(&chosen, reference, &count);
        let mut budget = EVAL_BUDGET;
        self.repair(&mut own, reference, &mut budget);
        self.restore(&mut own, reference, &mut budget);
        own
    }

    /// Relabels and rotates `stripe` to keep as many partitions as possible where they are in
    /// `reference`. Exchanging two members of the same zone and count, or rotating the whole
    /// ring, preserves every window property.
    fn align(&self, stripe: &[u32], reference: &[u32], count: &[usize]) -> Vec<u32> {
        let (q, k) = (self.q, self.k());
        if reference.iter().all(|&o| o == HOLE) {
            return stripe.to_vec();
        }
        let class = |i: u32| (self.zone_of[i as usize], count[i as usize]);
        let rotations = q.min((4_000_000 / q).max(1));
        let mut best: Option<(usize, usize, Vec<u32>)> = None;
        for step in 0..rotations {
            let r = step * (q / rotations);
            let mut overlap: HashMap<(u32, u32), usize> = HashMap::new();
            for p in 0..q {
                let x = stripe[(p + q - r) % q];
                let y = reference[p];
                if y != HOLE && class(x) == class(y) {
                    *overlap.entry((x, y)).or_default() += 1;
                }
            }
            let mut pairs: Vec<((u32, u32), usize)> = overlap.into_iter().collect();
            pairs.sort_by_key(|&((x, y), n)| (Reverse(n), x, y));
            let mut map: Vec<u32> = vec![HOLE; k];
            let mut taken = vec![false; k];
            let mut score = 0;
            for ((x, y), n) in pairs {
                if map[x as usize] == HOLE && !taken[y as usize] {
                    map[x as usize] = y;
                    taken[y as usize] = true;
                    score += n;
                }
            }
            if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                best = Some((score, r, map));
            }
        }
        let Some((_, r, mut map)) = best else {
            return stripe.to_vec();
        };
        // Unmatched labels take the free members of their class, in index order.
        let mut taken = vec![false; k];
        for &y in &map {
            if y != HOLE {
                taken[y as usize] = true;
            }
        }
        let mut free: HashMap<(u32, usize), VecDeque<u32>> = HashMap::new();
        for y in 0..k as u32 {
            if !taken[y as usize] {
                free.entry(class(y)).or_default().push_back(y);
            }
        }
        for x in 0..k as u32 {
            if map[x as usize] == HOLE {
                map[x as usize] = free
                    .get_mut(&class(x))
                    .and_then(|f| f.pop_front())
                    .unwrap_or(x);
            }
        }
        (0..q)
            .map(|p| map[stripe[(p + q - r) % q] as usize])
            .collect()
    }
}

/// Lays out `runs` (owner, count), largest counts first, round a ring of their total length
/// so that an owner with `c` copies has them at least `floor(len / max count)` apart: copy `j`
/// of the concatenated runs goes to block `j % m`, slot `j / m`, where `m` is the largest count
/// and block `b` holds `ceil((len - b) / m)` slots. Consecutive copies of an owner land in
/// consecutive blocks, one block length apart.
fn stripe(runs: &[(u32, usize)]) -> Vec<u32> {
    let len: usize = runs.iter().map(|&(_, n)| n).sum();
    let m = runs.iter().map(|&(_, n)| n).max().unwrap_or(0).max(1);
    let mut start = vec![0usize; m + 1];
    for b in 0..m {
        start[b + 1] = start[b] + len.saturating_sub(b).div_ceil(m);
    }
    let mut out = vec![0u32; len];
    let copies = runs.iter().flat_map(|&(o, n)| std::iter::repeat_n(o, n));
    for (j, o) in copies.enumerate() {
        out[start[j % m] + j / m] = o;
    }
    out
}

#[cfg(test)]
#[path = "claim_tests.rs"]
mod tests;
