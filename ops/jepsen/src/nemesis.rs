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
    /// SIGKILL, delete the data dir, restart empty under the same node id.
    Wipe,
    /// Damage stored records so their checksum fails (needs a fault-injection build).
    Corrupt,
    /// SIGKILL of nodes whose unsynced writes live only in the process (needs a
    /// fault-injection build).
    Powerloss,
}

impl NemesisKind {
    pub const ALL: [NemesisKind; 7] = [
        NemesisKind::Partition,
        NemesisKind::Kill,
        NemesisKind::Pause,
        NemesisKind::Clock,
        NemesisKind::Wipe,
        NemesisKind::Corrupt,
        NemesisKind::Powerloss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Partition => "partition",
            NemesisKind::Kill => "kill",
            NemesisKind::Pause => "pause",
            NemesisKind::Clock => "clock",
            NemesisKind::Wipe => "wipe",
            NemesisKind::Corrupt => "corrupt",
            NemesisKind::Powerloss => "powerloss",
        }
    }

    /// Whether `riftkv` must be built with `--features fault-injection` for this nemesis.
    pub fn needs_fault_build(self) -> bool {
        matches!(self, NemesisKind::Corrupt | NemesisKind::Powerloss)
    }
}

/// A nemesis list that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NemesisParseError {
    #[error(
        "unknown nemesis '{0}' (choose from partition, kill, pause, clock, wipe, corrupt, \
         powerloss, all, none)"
    )]
    Unknown(String),
}

/// The nemeses asked for on the command line, before the binary is known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Everything asked for, `all` expanded.
    pub kinds: Vec<NemesisKind>,
    /// Those named one by one (not only through `all`): they are required.
    pub named: BTreeSet<NemesisKind>,
}

/// Nemeses that were named but need a fault-injection build the binary is not.
#[derive(Debug, PartialEq, Eq)]
pub struct NeedsFaultBuild(pub Vec<NemesisKind>);

impl std::fmt::Display for NeedsFaultBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|k| k.name()).collect();
        let (noun, verb) = if names.len() == 1 {
            ("nemesis", "needs")
        } else {
            ("nemeses", "need")
        };
        write!(
            f,
            "the {noun} {} {verb} a riftkv built with `--features fault-injection` (give it \
             with --riftkv-bin); this one is not",
            names.join(", ")
        )
    }
}

impl std::error::Error for NeedsFaultBuild {}

impl Selection {
    /// Whether any selected nemesis depends on a fault-injection build.
    pub fn wants_fault_build(&self) -> bool {
        self.kinds.iter().any(|k| k.needs_fault_build())
    }

    /// The nemeses to run once it is known whether the binary is a fault-injection build:
    /// without one, `all` quietly means the nemeses it supports, but a named one is an error.
    /// The second value lists what `all` left out.
    pub fn resolve(
        &self,
        fault_build: bool,
    ) -> Result<(Vec<NemesisKind>, Vec<NemesisKind>), NeedsFaultBuild> {
        if fault_build {
            return Ok((self.kinds.clone(), Vec::new()));
        }
        let missing: Vec<NemesisKind> = self
            .named
            .iter()
            .copied()
            .filter(|k| k.needs_fault_build())
            .collect();
        if !missing.is_empty() {
            return Err(NeedsFaultBuild(missing));
        }
        let (left_out, kinds): (Vec<NemesisKind>, Vec<NemesisKind>) =
            self.kinds.iter().partition(|k| k.needs_fault_build());
        Ok((kinds, left_out))
    }
}

/// Parses `partition,kill,...` (also `all`, and `none` or an empty list for no faults).
pub fn parse_kinds(s: &str) -> Result<Selection, NemesisParseError> {
    let mut out = BTreeSet::new();
    let mut named = BTreeSet::new();
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
                named.insert(k);
            }
        }
    }
    Ok(Selection {
        kinds: out.into_iter().collect(),
        named,
    })
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
    /// SIGKILL and delete the data dir; healed by a restart with an empty one.
    Wipe { nodes: Vec<usize> },
    /// Damage `fraction` of each node's stored records of the workload's bucket; nothing to
    /// heal (repair is the database's job), the hold is an observation window.
    Corrupt { nodes: Vec<usize>, fraction: f64 },
    /// SIGKILL of nodes in the power-loss storage mode (their unsynced writes die with them);
    /// healed by a restart.
    Powerloss { nodes: Vec<usize> },
}

impl Fault {
    pub fn kind(&self) -> NemesisKind {
        match self {
            Fault::Partition { .. } => NemesisKind::Partition,
            Fault::Kill { .. } => NemesisKind::Kill,
            Fault::Pause { .. } => NemesisKind::Pause,
            Fault::Clock { .. } => NemesisKind::Clock,
            Fault::Wipe { .. } => NemesisKind::Wipe,
            Fault::Corrupt { .. } => NemesisKind::Corrupt,
            Fault::Powerloss { .. } => NemesisKind::Powerloss,
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
            Fault::Wipe { nodes } => format!("wipe {}", names(nodes)),
            Fault::Corrupt { nodes, fraction } => {
                format!(
                    "corrupt {} ({:.0}% of records)",
                    names(nodes),
                    fraction * 100.0
                )
            }
            Fault::Powerloss { nodes } => format!("powerloss {}", names(nodes)),
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

/// One random node.
fn one(rng: &mut impl Rng, nodes: &[usize]) -> Vec<usize> {
    nodes.choose(rng).map(|&n| vec![n]).unwrap_or_default()
}

/// Smallest share of records a corrupt fault damages.
pub const MIN_CORRUPT_FRACTION: f64 = 0.1;

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
        // One node at a time: wiping two replicas of a key before either is repaired would
        // destroy data no database could keep, which is not what this nemesis looks for.
        NemesisKind::Wipe => Fault::Wipe {
            nodes: one(rng, nodes),
        },
        NemesisKind::Corrupt => {
            // A minority: every key keeps at least one intact replica.
            let nodes = minority(rng, nodes);
            let steps = rng.gen_range((MIN_CORRUPT_FRACTION * 20.0) as u32..=20);
            Fault::Corrupt {
                nodes,
                fraction: f64::from(steps) / 20.0,
            }
        }
        NemesisKind::Powerloss => Fault::Powerloss {
            nodes: minority(rng, nodes),
        },
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
            parse_kinds("partition, kill").unwrap().kinds,
            vec![NemesisKind::Partition, NemesisKind::Kill]
        );
        assert_eq!(parse_kinds("all").unwrap().kinds, NemesisKind::ALL.to_vec());
        assert!(parse_kinds("all").unwrap().named.is_empty());
        assert!(parse_kinds("none").unwrap().kinds.is_empty());
        assert!(parse_kinds("").unwrap().kinds.is_empty());
        assert_eq!(
            parse_kinds("partition,flood"),
            Err(NemesisParseError::Unknown("flood".into()))
        );
        let s = parse_kinds("wipe,corrupt,powerloss,partition,kill").unwrap();
        assert_eq!(
            s.kinds,
            vec![
                NemesisKind::Partition,
                NemesisKind::Kill,
                NemesisKind::Wipe,
                NemesisKind::Corrupt,
                NemesisKind::Powerloss
            ]
        );
        assert_eq!(s.named.len(), 5);
        let names: Vec<&str> = NemesisKind::ALL.iter().map(|k| k.name()).collect();
        for n in names {
            assert_eq!(parse_kinds(n).unwrap().kinds.len(), 1, "{n}");
        }
    }

    #[test]
    fn fault_build_nemeses_are_required_when_named_and_dropped_from_all() {
        use NemesisKind::*;
        assert!(Corrupt.needs_fault_build() && Powerloss.needs_fault_build());
        assert!(!Wipe.needs_fault_build() && !Kill.needs_fault_build());
        // `all` without a fault build: what the binary supports, and what was left out.
        let all = parse_kinds("all").unwrap();
        assert!(all.wants_fault_build());
        let (kinds, left_out) = all.resolve(false).unwrap();
        assert_eq!(kinds, vec![Partition, Kill, Pause, Clock, Wipe]);
        assert_eq!(left_out, vec![Corrupt, Powerloss]);
        assert_eq!(
            all.resolve(true).unwrap(),
            (NemesisKind::ALL.to_vec(), vec![])
        );
        // Named ones are required: a clear error, not a quiet omission.
        let named = parse_kinds("all,powerloss").unwrap();
        let e = named.resolve(false).unwrap_err();
        assert_eq!(e, NeedsFaultBuild(vec![Powerloss]));
        assert!(
            e.to_string()
                .contains("nemesis powerloss needs a riftkv built with")
        );
        assert!(!e.to_string().contains('\n'));
        let e = parse_kinds("corrupt,wipe,powerloss")
            .unwrap()
            .resolve(false);
        assert_eq!(e, Err(NeedsFaultBuild(vec![Corrupt, Powerloss])));
        let msg = NeedsFaultBuild(vec![Corrupt, Powerloss]).to_string();
        assert!(
            msg.starts_with("the nemeses corrupt, powerloss need a riftkv built"),
            "{msg}"
        );
        // Wipe needs nothing special.
        let w = parse_kinds("wipe,partition").unwrap();
        assert!(!w.wants_fault_build());
        assert_eq!(w.resolve(false).unwrap(), (vec![Partition, Wipe], vec![]));
    }

    #[test]
    fn disk_faults_pick_sensible_targets() {
        for seed in 0..100 {
            let mut rng = StdRng::seed_from_u64(seed);
            match draw_fault(NemesisKind::Wipe, &five(), &mut rng) {
                Fault::Wipe { nodes } => assert!(nodes.len() == 1 && five().contains(&nodes[0])),
                f => panic!("{f:?}"),
            }
            match draw_fault(NemesisKind::Corrupt, &five(), &mut rng) {
                Fault::Corrupt { nodes, fraction } => {
                    assert!(!nodes.is_empty() && nodes.len() <= 2);
                    assert!(
                        (MIN_CORRUPT_FRACTION..=1.0).contains(&fraction),
                        "{fraction}"
                    );
                }
                f => panic!("{f:?}"),
            }
            match draw_fault(NemesisKind::Powerloss, &five(), &mut rng) {
                Fault::Powerloss { nodes } => assert!(!nodes.is_empty() && nodes.len() <= 2),
                f => panic!("{f:?}"),
            }
        }
        let three: Vec<usize> = (1..=3).collect();
        let mut rng = StdRng::seed_from_u64(5);
        match draw_fault(NemesisKind::Powerloss, &three, &mut rng) {
            Fault::Powerloss { nodes } => assert_eq!(nodes.len(), 1),
            f => panic!("{f:?}"),
        }
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
        let total = Duration::from_secs(300);
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
                Fault::Kill { nodes }
                | Fault::Pause { nodes }
                | Fault::Powerloss { nodes }
                | Fault::Corrupt { nodes, .. } => {
                    assert!(!nodes.is_empty() && nodes.len() <= 2)
                }
                Fault::Wipe { nodes } => assert_eq!(nodes.len(), 1),
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
        assert_eq!(seen.len(), NemesisKind::ALL.len());
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
        let f = Fault::Wipe { nodes: vec![3] };
        assert_eq!(f.describe(), "wipe n3");
        assert_eq!(f.detail(), "wipe");
        let f = Fault::Corrupt {
            nodes: vec![1, 5],
            fraction: 0.35,
        };
        assert_eq!(f.describe(), "corrupt n1 n5 (35% of records)");
        let f = Fault::Powerloss { nodes: vec![2] };
        assert_eq!(f.describe(), "powerloss n2");
        assert_eq!(f.kind(), NemesisKind::Powerloss);
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
