//! Nearest ring: among the rings whose every window of `N` consecutive partitions has `N`
//! distinct owners, the one that differs least from the previous ring.
//!
//! The window rule only links partitions less than `N` apart, so a dynamic programme walks the
//! ring once with the owners of the last `N-1` partitions as its state (`k^(N-1)` states, a few
//! dozen to a few hundred for the small clusters it serves) and finds the cheapest ring
//! exactly. Repeated zones in a window cost more than any number of moves, so zone spread
//! keeps its priority over movement. A per-member penalty on every partition a member gets
//! lets the caller steer balance (a Lagrangian relaxation: raise the penalty of members that
//! got too much and walk again).
//!
//! The ring is a cycle: a first, open walk finds the cheapest line of owners; a second walk
//! starts from that line's owners half-way round and must close onto them. The result is the
//! cheapest ring that agrees with the open optimum there, which in practice is the optimum.

/// Weight of one partition whose owner differs from the previous ring; penalties are in the
/// same unit, so a penalty of `MOVE / 2` is worth half a move.
pub(super) const MOVE: i64 = 1 << 20;

/// Largest `states * ring size` walked; larger problems are left to the other layouts.
const MAX_CELLS: usize = 1 << 17;
/// Largest member count: owner and zone sets are bit masks, and states grow as `k^(N-1)`.
const MAX_MEMBERS: usize = 16;

/// A nearest-ring problem over member indices `0..k`.
pub(super) struct Nearest<'a> {
    /// Previous owner of each partition; a value `>= k` (a leaver) matches nobody.
    pub prev: &'a [u32],
    /// Zone index of each member (`< k`: members without a zone have one of their own).
    pub zone_of: &'a [u32],
    /// Window length `N`.
    pub win: usize,
    /// Distinct zones wanted per window.
    pub zone_goal: usize,
}

impl Nearest<'_> {
    fn k(&self) -> usize {
        self.zone_of.len()
    }

    /// Number of states, `k^(N-1)`, when the problem is small enough to walk.
    fn states(&self) -> Option<usize> {
        let (k, q) = (self.k(), self.prev.len());
        if self.win < 2 || k < self.win || k > MAX_MEMBERS || q < 2 * self.win {
            return None;
        }
        if self.zone_of.iter().any(|&z| z as usize >= MAX_MEMBERS) {
            return None;
        }
        let mut s: usize = 1;
        for _ in 1..self.win {
            s = s.checked_mul(k)?;
        }
        (s.checked_mul(q)? <= MAX_CELLS).then_some(s)
    }

    /// True when the problem is small enough for [`Nearest::solve`].
    pub(super) fn applies(&self) -> bool {
        self.states().is_some()
    }

    /// The ring with no repeated owner in any window that minimises, in this order, the
    /// repeated zones, then `MOVE` per partition changed from `prev` plus `penalty` of each
    /// partition's owner. `None` when the problem is too large or has no such ring.
    pub(super) fn solve(&self, penalty: &[i64]) -> Option<Vec<u32>> {
        let s = self.states()?;
        let (k, q, m) = (self.k(), self.prev.len(), self.win - 1);
        let tables = Tables::new(self, s);
        let spread = penalty.iter().map(|p| p.abs()).max().unwrap_or(0);
        // One repeated zone outweighs moving every partition at any penalty.
        let zone_weight = (MOVE + 2 * spread + 1).checked_mul(q as i64 + 1)?;
        let walk = Walk {
            nearest: self,
            tables: &tables,
            penalty,
            zone_weight,
            k,
            q,
            m,
            s,
        };
        // Open walk from partition 0: every starting state allowed.
        let open = walk.run(0, None)?;
        let (line, _) = walk.best_end(&open, None)?;
        // Closed walk from the open optimum's owners half-way round.
        let start = (q / 2).saturating_sub(m);
        let pinned = (0..m).fold(0usize, |st, d| st * k + line[start + d] as usize);
        let closed = walk.run(start, Some(pinned))?;
        let (ring_from_start, _) = walk.best_end(&closed, Some(pinned))?;
        let mut own = vec![0u32; q];
        for (d, &o) in ring_from_start.iter().enumerate() {
            own[(start + d) % q] = o;
        }
        Some(own)
    }
}

/// Per-state facts: owners in order, owner set and zone set.
struct Tables {
    digits: Vec<Vec<u32>>,
    owners: Vec<u64>,
    zones: Vec<u64>,
}

impl Tables {
    fn new(n: &Nearest<'_>, s: usize) -> Tables {
        let (k, m) = (n.k(), n.win - 1);
        let mut digits = Vec::with_capacity(s);
        let mut owners = Vec::with_capacity(s);
        let mut zones = Vec::with_capacity(s);
        for st in 0..s {
            // Most recent owner in the lowest digit.
            let mut d: Vec<u32> = (0..m)
                .scan(st, |rest, _| {
                    let o = (*rest % k) as u32;
                    *rest /= k;
                    Some(o)
                })
                .collect();
            d.reverse();
            let mut own = 0u64;
            let mut zone = 0u64;
            let mut distinct = true;
            for &o in &d {
                distinct &= own & (1 << o) == 0;
                own |= 1 << o;
                zone |= 1 << n.zone_of[o as usize];
            }
            // A state repeating an owner is unreachable: marked by an empty owner set.
            owners.push(if distinct { own } else { 0 });
            zones.push(zone);
            digits.push(d);
        }
        Tables {
            digits,
            owners,
            zones,
        }
    }
}

/// The walk's fixed inputs.
struct Walk<'a> {
    nearest: &'a Nearest<'a>,
    tables: &'a Tables,
    penalty: &'a [i64],
    zone_weight: i64,
    k: usize,
    q: usize,
    m: usize,
    s: usize,
}

/// Cheapest cost of each state after the last partition, and the way back.
struct Run {
    cost: Vec<i64>,
    /// `back[i][state]`: the state before partition `start + m + i` was assigned.
    back: Vec<Vec<u16>>,
}

const UNREACHED: i64 = i64::MAX;

impl Walk<'_> {
    fn at(&self, p: usize, o: u32) -> i64 {
        let prev = self.nearest.prev[p % self.q];
        MOVE * i64::from(prev != o) + self.penalty.get(o as usize).copied().unwrap_or(0)
    }

    /// Cost of the window made of `state`'s owners followed by `o`, or `None` when `o`
    /// repeats an owner.
    fn window(&self, state: usize, o: u32) -> Option<i64> {
        if self.tables.owners[state] & (1 << o) != 0 {
            return None;
        }
        let zones = self.tables.zones[state] | (1 << self.nearest.zone_of[o as usize]);
        let missing = self
            .nearest
            .zone_goal
            .saturating_sub(zones.count_ones() as usize);
        Some(missing as i64 * self.zone_weight)
    }

    /// Walks partitions `start..start + q`; the first `m` form the starting state (only
    /// `pinned` when given).
    fn run(&self, start: usize, pinned: Option<usize>) -> Option<Run> {
        if self.s > u16::MAX as usize + 1 {
            return None;
        }
        let mut cost = vec![UNREACHED; self.s];
        for (st, c) in cost.iter_mut().enumerate() {
            if self.tables.owners[st] == 0 || pinned.is_some_and(|p| p != st) {
                continue;
            }
            *c = self.tables.digits[st]
                .iter()
                .enumerate()
                .map(|(d, &o)| self.at(start + d, o))
                .sum();
        }
        let mut back = Vec::with_capacity(self.q - self.m);
        let mut next = vec![UNREACHED; self.s];
        for p in start + self.m..start + self.q {
            next.fill(UNREACHED);
            let mut from = vec![0u16; self.s];
            let at: Vec<i64> = (0..self.k as u32).map(|o| self.at(p, o)).collect();
            for (st, &c) in cost.iter().enumerate() {
                if c == UNREACHED {
                    continue;
                }
                for o in 0..self.k as u32 {
                    let Some(w) = self.window(st, o) else {
                        continue;
                    };
                    let ns = (st * self.k + o as usize) % self.s;
                    let nc = c + w + at[o as usize];
                    if nc < next[ns] {
                        next[ns] = nc;
                        from[ns] = st as u16;
                    }
                }
            }
            std::mem::swap(&mut cost, &mut next);
            back.push(from);
        }
        Some(Run { cost, back })
    }

    /// The cheapest line of owners of `run` (from its first partition), with its cost. With `close`,
    /// the line must continue into `close`'s owners without breaking a window, and the
    /// windows across that seam are charged.
    fn best_end(&self, run: &Run, close: Option<usize>) -> Option<(Vec<u32>, i64)> {
        let mut best: Option<(i64, usize)> = None;
        for (st, &c) in run.cost.iter().enumerate() {
            if c == UNREACHED {
                continue;
            }
            let seam = match close {
                None => 0,
                Some(first) => match self.seam(st, first) {
                    Some(w) => w,
                    None => continue,
                },
            };
            let total = c + seam;
            if best.is_none_or(|(b, _)| total < b) {
                best = Some((total, st));
            }
        }
        let (total, mut st) = best?;
        let mut line = vec![0u32; self.q];
        for (i, from) in run.back.iter().enumerate().rev() {
            line[self.m + i] = (st % self.k) as u32;
            st = from[st] as usize;
        }
        line[..self.m].copy_from_slice(&self.tables.digits[st]);
        Some((line, total))
    }

    /// Cost of the windows that end in `first`'s owners after the line ending in `last`.
    fn seam(&self, last: usize, first: usize) -> Option<i64> {
        let mut total = 0;
        let mut st = last;
        for &o in &self.tables.digits[first] {
            total += self.window(st, o)?;
            st = (st * self.k + o as usize) % self.s;
        }
        Some(total)
    }
}
