//! YCSB's core workloads A–F (Cooper et al., "Benchmarking Cloud Serving Systems with YCSB",
//! SoCC 2010, and YCSB's `workloads/workloada`..`workloadf`): which operations, in which
//! proportions, over which key distribution.

use rand::Rng;
use std::fmt;

use crate::generator::Distribution;

/// One kind of operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Read,
    Update,
    Insert,
    Scan,
    /// Read-modify-write: a read, then a write of the same key that supersedes what it read.
    Rmw,
}

impl OpKind {
    pub const ALL: [OpKind; 5] = [
        OpKind::Read,
        OpKind::Update,
        OpKind::Insert,
        OpKind::Scan,
        OpKind::Rmw,
    ];

    /// The name in reports and in the JSON document.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Update => "update",
            OpKind::Insert => "insert",
            OpKind::Scan => "scan",
            OpKind::Rmw => "rmw",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A core workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Update heavy: 50% read, 50% update.
    A,
    /// Read mostly: 95% read, 5% update.
    B,
    /// Read only.
    C,
    /// Read latest: 95% read, 5% insert, reads favour the newest keys.
    D,
    /// Short ranges: 95% scan (length uniform in 1..=100), 5% insert.
    E,
    /// Read-modify-write: 50% read, 50% read-modify-write.
    F,
}

/// Longest scan of workload E (YCSB's `maxscanlength`).
pub const MAX_SCAN_LENGTH: usize = 100;

impl Workload {
    pub const ALL: [Workload; 6] = [
        Workload::A,
        Workload::B,
        Workload::C,
        Workload::D,
        Workload::E,
        Workload::F,
    ];

    pub fn parse(s: &str) -> Option<Workload> {
        match s.trim().to_ascii_lowercase().as_str() {
            "a" => Some(Workload::A),
            "b" => Some(Workload::B),
            "c" => Some(Workload::C),
            "d" => Some(Workload::D),
            "e" => Some(Workload::E),
            "f" => Some(Workload::F),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Workload::A => "a",
            Workload::B => "b",
            Workload::C => "c",
            Workload::D => "d",
            Workload::E => "e",
            Workload::F => "f",
        }
    }

    /// The proportion of each operation, summing to 1.
    pub fn mix(self) -> Vec<(OpKind, f64)> {
        use OpKind::*;
        match self {
            Workload::A => vec![(Read, 0.5), (Update, 0.5)],
            Workload::B => vec![(Read, 0.95), (Update, 0.05)],
            Workload::C => vec![(Read, 1.0)],
            Workload::D => vec![(Read, 0.95), (Insert, 0.05)],
            Workload::E => vec![(Scan, 0.95), (Insert, 0.05)],
            Workload::F => vec![(Read, 0.5), (Rmw, 0.5)],
        }
    }

    /// YCSB's request distribution of the workload: latest for D, zipfian for the others.
    pub fn default_distribution(self) -> Distribution {
        match self {
            Workload::D => Distribution::Latest,
            _ => Distribution::Zipfian,
        }
    }
}

/// Draws operation kinds in a workload's proportions.
#[derive(Clone, Debug)]
pub struct OpChooser {
    /// Cumulative proportions, ascending; the last is 1.
    cumulative: Vec<(f64, OpKind)>,
}

impl OpChooser {
    pub fn new(workload: Workload) -> OpChooser {
        let mut acc = 0.0;
        let cumulative = workload
            .mix()
            .into_iter()
            .map(|(op, p)| {
                acc += p;
                (acc, op)
            })
            .collect();
        OpChooser { cumulative }
    }

    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> OpKind {
        let u: f64 = rng.r#gen();
        self.cumulative
            .iter()
            .find(|(c, _)| u < *c)
            .or(self.cumulative.last())
            .map_or(OpKind::Read, |(_, op)| *op)
    }
}

/// Length of one scan: uniform in `1..=MAX_SCAN_LENGTH`.
pub fn scan_length<R: Rng + ?Sized>(rng: &mut R) -> usize {
    rng.gen_range(1..=MAX_SCAN_LENGTH)
}

/// The key of a key number: `user` and the number, zero-padded so byte order is numeric
/// order (YCSB's `insertorder=ordered`), which keeps scans and "latest" meaningful.
pub fn key_name(n: u64) -> String {
    format!("user{n:012}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn proportions_over_many_draws() {
        let draws = 200_000;
        for w in Workload::ALL {
            let chooser = OpChooser::new(w);
            let mut rng = StdRng::seed_from_u64(3);
            let mut seen = [0usize; 5];
            for _ in 0..draws {
                seen[chooser.next(&mut rng).index()] += 1;
            }
            let mix = w.mix();
            let total: f64 = mix.iter().map(|(_, p)| p).sum();
            assert!((total - 1.0).abs() < 1e-12, "{w:?} sums to {total}");
            for op in OpKind::ALL {
                let p = mix.iter().find(|(o, _)| *o == op).map_or(0.0, |(_, p)| *p);
                let got = seen[op.index()] as f64 / draws as f64;
                assert!((got - p).abs() < 0.005, "{w:?} {op}: {got} vs {p}");
            }
        }
    }

    #[test]
    fn the_paper_s_mixes() {
        use OpKind::*;
        // Cooper et al. 2010, table 2, and YCSB's workloads/workloada..f.
        let expected: [(Workload, &[(OpKind, f64)]); 6] = [
            (Workload::A, &[(Read, 0.5), (Update, 0.5)]),
            (Workload::B, &[(Read, 0.95), (Update, 0.05)]),
            (Workload::C, &[(Read, 1.0)]),
            (Workload::D, &[(Read, 0.95), (Insert, 0.05)]),
            (Workload::E, &[(Scan, 0.95), (Insert, 0.05)]),
            (Workload::F, &[(Read, 0.5), (Rmw, 0.5)]),
        ];
        for (w, mix) in expected {
            assert_eq!(w.mix(), mix.to_vec(), "{w:?}");
            assert_eq!(Workload::parse(w.as_str()), Some(w));
        }
        assert_eq!(Workload::D.default_distribution(), Distribution::Latest);
        assert_eq!(Workload::F.default_distribution(), Distribution::Zipfian);
        assert_eq!(Workload::parse("F"), Some(Workload::F));
        assert_eq!(Workload::parse("g"), None);
    }

    #[test]
    fn scan_lengths_are_uniform_in_range() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut seen = [0usize; MAX_SCAN_LENGTH + 1];
        for _ in 0..100_000 {
            seen[scan_length(&mut rng)] += 1;
        }
        assert_eq!(seen[0], 0);
        assert!(seen[1..].iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
    }

    #[test]
    fn keys_sort_numerically() {
        assert!(key_name(9) < key_name(10));
        assert_eq!(key_name(42), "user000000000042");
    }
}
