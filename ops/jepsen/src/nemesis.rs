//! Faults and their schedule, as plain data decided up front from the run's seed (so a run can
//! be replayed): which nemesis strikes when, for how long, and against which nodes. Carrying
//! them out is [`crate::cluster`]'s job.

use rand::Rng;
use rand::seq::SliceRandom;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A family of faults, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NemesisKind {
    Partition,
    Kill,
    Pause,
    Clock,
}

impl NemesisKind {
    pub const ALL: [NemesisKind; 4] = [
        NemesisKind::Partition,
        NemesisKind::Kill,
        NemesisKind::Pause,
        NemesisKind::Clock,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Partition => "partition",
            NemesisKind::Kill => "kill",
            NemesisKind::Pause => "pause",
            NemesisKind::Clock => "clock",
        }
    }
}

/// A nemesis list that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NemesisParseError {
    #[error("unknown nemesis '{0}' (choose from partition, kill, pause, clock, all, none)")]
    Unknown(String),
}

/// Parses `partition,kill,...` (also `all`, and `none` or an empty list for no faults).
pub fn parse_kinds(s: &str) -> Result<Vec<NemesisKind>, NemesisParseError> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "all" => out.extend(NemesisKind::ALL),
            "none" => {}
            other => {
                let k = NemesisKind::ALL
                    .into_iter()
                    .find(|k| k.name() == other)
                    .ok_or_else(|| NemesisParseError::Unknown(other.to_string()))?;
                out.insert(k);
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// The shape of a network partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionShape {
    /// Two random halves.
    Halves,
    /// One node cut off from all others.
    Isolate,
    /// Two halves plus one node that sees both.
    Bridge,
    /// Every node sees a majority, and no two nodes the same one.
    MajoritiesRing,
}

impl PartitionShape {
    pub const ALL: [PartitionShape; 4] = [
        PartitionShape::Halves,
        PartitionShape::Isolate,
        PartitionShape::Bridge,
        PartitionShape::MajoritiesRing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PartitionShape::Halves => "halves",
            PartitionShape::Isolate => "isolate",
            PartitionShape::Bridge => "bridge",
            PartitionShape::MajoritiesRing => "majorities-ring",
        }
    }
}

/// Node indexes (1-based) each node refuses traffic from.
pub type Grudge = BTreeMap<usize, BTreeSet<usize>>;

/// Every node of each component drops every node of the other components.
pub fn complete_grudge(components: &[Vec<usize>]) -> Grudge {
    let mut g = Grudge::new();
    for (i, comp) in components.iter().enumerate() {
        for &a in comp {
            let others: BTreeSet<usize> = components
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, c)| c.iter().copied())
                .collect();
            g.entry(a).or_default().extend(others);
        }
    }
    g.retain(|_, v| !v.is_empty());
    g
}

/// The grudge of a partition of `nodes` (1-based indexes) in the given shape.
pub fn partition_grudge(shape: PartitionShape, nodes: &[usize], rng: &mut impl Rng) -> Grudge {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let n = shuffled.len();
    if n < 2 {
        return Grudge::new();
    }
    match shape {
        PartitionShape::Halves => {
            let (a, b) = shuffled.split_at(n / 2);
            complete_grudge(&[a.to_vec(), b.to_vec()])
        }
        PartitionShape::Isolate => {
            let (a, b) = shuffled.split_at(1);
            complete_grudge(&[a.to_vec(), b.to_vec()])
        }
        PartitionShape::Bridge => {
            if n < 3 {
                let (a, b) = shuffled.split_at(1);
                return complete_grudge(&[a.to_vec(), b.to_vec()]);
            }
            let half = (n - 1) / 2;
            let a = shuffled[..half].to_vec();
            let b = shuffled[half + 1..].to_vec();
            complete_grudge(&[a, b])
        }
        PartitionShape::MajoritiesRing => {
            // Ring order is the shuffle; each node sees the `h` nodes on either side of it,
            // which is at least a majority.
            let majority = n / 2 + 1;
            let h = majority / 2;
            let mut g = Grudge::new();
            for (p, &x) in shuffled.iter().enumerate() {
                let seen: BTreeSet<usize> =
                    (0..=2 * h).map(|d| shuffled[(p + n + d - h) % n]).collect();
                let drop: BTreeSet<usize> = shuffled
                    .iter()
                    .copied()
                    .filter(|y| !seen.contains(y))
                    .collect();
                if !drop.is_empty() {
                    g.insert(x, drop);
                }
            }
            g
        }
    }
}

/// The nodes each node can still reach under `grudge` (itself included).
#[cfg(test)]
pub fn views(grudge: &Grudge, nodes: &[usize]) -> BTreeMap<usize, BTreeSet<usize>> {
    nodes
        .iter()
        .map(|&a| {
            let seen = nodes
                .iter()
                .copied()
                .filter(|b| {
                    !grudge.get(&a).is_some_and(|s| s.contains(b))
                        && !grudge.get(b).is_some_and(|s| s.contains(&a))
                })
                .collect();
            (a, seen)
        })
        .collect()
}

/// One fault.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Fault {
    Partition {
        shape: PartitionShape,
        grudge: Grudge,
    },
    /// SIGKILL, healed by a restart.
    Kill { nodes: Vec<usize> },
    /// SIGSTOP, healed by SIGCONT.
    Pause { nodes: Vec<usize> },
    /// Restart under a wall-clock offset in seconds, healed by a restart at offset zero.
    Clock { offsets: Vec<(usize, i64)> },
}

impl Fault {
    pub fn kind(&self) -> NemesisKind {
        match self {
            Fault::Partition { .. } => NemesisKind::Partition,
            Fault::Kill { .. } => NemesisKind::Kill,
            Fault::Pause { .. } => NemesisKind::Pause,
            Fault::Clock { .. } => NemesisKind::Clock,
        }
    }

    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        let names = |v: &[usize]| {
            v.iter()
                .map(|i| format!("n{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        match self {
            Fault::Partition { shape, grudge } => {
                let cut: Vec<String> = grudge
                    .iter()
                    .map(|(a, s)| {
                        format!("n{a}-x-{}", names(&s.iter().copied().collect::<Vec<_>>()))
                    })
                    .collect();
                format!("partition {}: {}", shape.name(), cut.join(", "))
            }
            Fault::Kill { nodes } => format!("kill {}", names(nodes)),
            Fault::Pause { nodes } => format!("pause {}", names(nodes)),
            Fault::Clock { offsets } => {
                let o: Vec<String> = offsets
                    .iter()
                    .map(|(n, s)| format!("n{n} {s:+}s"))
                    .collect();
                format!("clock {}", o.join(", "))
            }
        }
    }

    /// The detail name for per-nemesis counts (the partition shape, else the kind).
    pub fn detail(&self) -> &'static str {
        match self {
            Fault::Partition { shape, .. } => shape.name(),
            other => other.kind().name(),
        }
    }
}

/// A fault at an offset from the start of the workload, held for a while, then healed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Planned {
    pub at: Duration,
    pub hold: Duration,
    pub fault: Fault,
}

/// How faults are spaced.
#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    /// Mean quiet gap between a heal and the next fault (each gap is uniform in
    /// [mean/2, 3·mean/2], Jepsen's stagger).
    pub gap: Duration,
    /// Each fault is held for a uniform time in this range.
    pub hold_min: Duration,
    pub hold_max: Duration,
}

fn uniform(rng: &mut impl Rng, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    Duration::from_millis(rng.gen_range(lo.as_millis() as u64..=hi.as_millis() as u64))
}

/// A random minority of at least one node.
fn minority(rng: &mut impl Rng, nodes: &[usize]) -> Vec<usize> {
    let max = ((nodes.len().saturating_sub(1)) / 2).max(1);
    let k = rng.gen_range(1..=max).min(nodes.len());
    let mut v: Vec<usize> = nodes.choose_multiple(rng, k).copied().collect();
    v.sort_unstable();
    v
}

/// Largest clock bump, in seconds.
pub const MAX_CLOCK_OFFSET_SECS: i64 = 180;

/// Draws one fault of `kind` against `nodes`.
pub fn draw_fault(kind: NemesisKind, nodes: &[usize], rng: &mut impl Rng) -> Fault {
    match kind {
        NemesisKind::Partition => {
            let shape = *PartitionShape::ALL
                .choose(rng)
                .unwrap_or(&PartitionShape::Halves);
            Fault::Partition {
                shape,
                grudge: partition_grudge(shape, nodes, rng),
            }
        }
        NemesisKind::Kill => Fault::Kill {
            nodes: minority(rng, nodes),
        },
        NemesisKind::Pause => Fault::Pause {
            nodes: minority(rng, nodes),
        },
        NemesisKind::Clock => {
            let k = rng.gen_range(1..=nodes.len().max(1)).min(nodes.len());
            let mut chosen: Vec<usize> = nodes.choose_multiple(rng, k).copied().collect();
            chosen.sort_unstable();
            let offsets = chosen
                .into_iter()
                .map(|n| {
                    let mag = rng.gen_range(5..=MAX_CLOCK_OFFSET_SECS);
                    (n, if rng.gen_bool(0.5) { mag } else { -mag })
                })
                .collect();
            Fault::Clock { offsets }
        }
    }
}

/// The fault schedule of a run: faults one at a time, each fully healed before the next gap
/// starts, the last one healed no later than `total`.
pub fn plan(
    kinds: &[NemesisKind],
    nodes: &[usize],
    total: Duration,
    pacing: Pacing,
    rng: &mut impl Rng,
) -> Vec<Planned> {
    let mut out = Vec::new();
    if kinds.is_empty() || nodes.is_empty() {
        return out;
    }
    let mut t = Duration::ZERO;
    // Bounded: every round advances t by at least hold_min + gap/2 > 0 or stops.
    for _ in 0..100_000 {
        let gap = uniform(rng, pacing.gap / 2, pacing.gap * 3 / 2).max(Duration::from_millis(1));
        let hold = uniform(rng, pacing.hold_min, pacing.hold_max);
        let at = t + gap;
        if at + hold > total {
            break;
        }
        let kind = *kinds.choose(rng).unwrap_or(&kinds[0]);
        out.push(Planned {
            at,
            hold,
            fault: draw_fault(kind, nodes, rng),
        });
        t = at + hold;
    }
    out
}

/// Stretches the last fault so it is still on when the workload ends at `total`.
pub fn hold_last_until(schedule: &mut [Planned], total: Duration) {
    if let Some(last) = schedule.last_mut() {
        last.hold = total.saturating_sub(last.at).max(last.hold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn five() -> Vec<usize> {
        (1..=5).collect()
    }

    fn symmetric(g: &Grudge) -> bool {
        g.iter()
            .all(|(a, s)| s.iter().all(|b| g.get(b).is_some_and(|t| t.contains(a))))
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(
            parse_kinds("partition, kill").unwrap(),
            vec![NemesisKind::Partition, NemesisKind::Kill]
        );
        assert_eq!(parse_kinds("all").unwrap(), NemesisKind::ALL.to_vec());
        assert!(parse_kinds("none").unwrap().is_empty());
        assert!(parse_kinds("").unwrap().is_empty());
        assert_eq!(
            parse_kinds("partition,flood"),
            Err(NemesisParseError::Unknown("flood".into()))
        );
    }

    #[test]
    fn halves_split_into_two_sides_that_cannot_talk() {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let g = partition_grudge(PartitionShape::Halves, &five(), &mut rng);
            assert!(symmetric(&g));
            let v = views(&g, &five());
            let sizes: BTreeSet<usize> = v.values().map(BTreeSet::len).collect();
            assert_eq!(sizes, BTreeSet::from([2, 3]));
            // views are equivalence classes
            for (a, s) in &v {
                for b in s {
                    assert_eq!(v[b], *s, "{a} and {b} disagree");
                }
            }
        }
    }

    #[test]
    fn isolate_cuts_exactly_one_node() {
        let mut rng = StdRng::seed_from_u64(7);
        let g = partition_grudge(PartitionShape::Isolate, &five(), &mut rng);
        let v = views(&g, &five());
        let lonely: Vec<_> = v.iter().filter(|(_, s)| s.len() == 1).collect();
        assert_eq!(lonely.len(), 1);
        assert_eq!(v.values().filter(|s| s.len() == 4).count(), 4);
    }

    #[test]
    fn bridge_has_one_node_seeing_everyone() {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let g = partition_grudge(PartitionShape::Bridge, &five(), &mut rng);
            assert!(symmetric(&g));
            let v = views(&g, &five());
            assert_eq!(v.values().filter(|s| s.len() == 5).count(), 1);
            assert_eq!(v.values().filter(|s| s.len() == 3).count(), 4);
        }
    }

    #[test]
    fn majorities_ring_gives_distinct_majorities() {
        for n in [5usize, 7, 9] {
            let nodes: Vec<usize> = (1..=n).collect();
            let mut rng = StdRng::seed_from_u64(n as u64);
            let g = partition_grudge(PartitionShape::MajoritiesRing, &nodes, &mut rng);
            assert!(symmetric(&g));
            let v = views(&g, &nodes);
            let distinct: BTreeSet<&BTreeSet<usize>> = v.values().collect();
            assert_eq!(distinct.len(), n, "n={n}");
            assert!(v.values().all(|s| s.len() > n / 2 && s.len() < n), "n={n}");
        }
    }

    #[test]
    fn schedule_is_sequential_bounded_and_reproducible() {
        let pacing = Pacing {
            gap: Duration::from_secs(4),
            hold_min: Duration::from_secs(2),
            hold_max: Duration::from_secs(6),
        };
        let total = Duration::from_secs(120);
        let kinds = NemesisKind::ALL.to_vec();
        let a = plan(
            &kinds,
            &five(),
            total,
            pacing,
            &mut StdRng::seed_from_u64(9),
        );
        let b = plan(
            &kinds,
            &five(),
            total,
            pacing,
            &mut StdRng::seed_from_u64(9),
        );
        assert_eq!(a, b);
        assert!(a.len() >= 8, "{}", a.len());
        let mut end = Duration::ZERO;
        for p in &a {
            assert!(p.at >= end + Duration::from_secs(2), "gap too short");
            assert!(p.hold >= pacing.hold_min && p.hold <= pacing.hold_max);
            end = p.at + p.hold;
            match &p.fault {
                Fault::Kill { nodes } | Fault::Pause { nodes } => {
                    assert!(!nodes.is_empty() && nodes.len() <= 2)
                }
                Fault::Clock { offsets } => assert!(
                    offsets
                        .iter()
                        .all(|(_, s)| { s.abs() >= 5 && s.abs() <= MAX_CLOCK_OFFSET_SECS })
                ),
                Fault::Partition { grudge, .. } => assert!(!grudge.is_empty()),
            }
        }
        assert!(end <= total);
        let seen: BTreeSet<NemesisKind> = a.iter().map(|p| p.fault.kind()).collect();
        assert_eq!(seen.len(), 4);
        assert!(plan(&[], &five(), total, pacing, &mut StdRng::seed_from_u64(1)).is_empty());
    }

    #[test]
    fn last_fault_can_be_held_to_the_end() {
        let pacing = Pacing {
            gap: Duration::from_secs(4),
            hold_min: Duration::from_secs(2),
            hold_max: Duration::from_secs(3),
        };
        let total = Duration::from_secs(60);
        let mut s = plan(
            &[NemesisKind::Kill],
            &five(),
            total,
            pacing,
            &mut StdRng::seed_from_u64(3),
        );
        let before = s.clone();
        hold_last_until(&mut s, total);
        let last = s.last().unwrap();
        assert_eq!(last.at + last.hold, total);
        assert_eq!(s[..s.len() - 1], before[..before.len() - 1]);
        hold_last_until(&mut [], total);
    }

    #[test]
    fn descriptions_name_the_nodes() {
        let f = Fault::Kill { nodes: vec![2, 4] };
        assert_eq!(f.describe(), "kill n2 n4");
        let f = Fault::Clock {
            offsets: vec![(1, -30), (3, 120)],
        };
        assert_eq!(f.describe(), "clock n1 -30s, n3 +120s");
        let g = complete_grudge(&[vec![1], vec![2, 3]]);
        let f = Fault::Partition {
            shape: PartitionShape::Isolate,
            grudge: g,
        };
        assert_eq!(
            f.describe(),
            "partition isolate: n1-x-n2 n3, n2-x-n1, n3-x-n1"
        );
    }
}
