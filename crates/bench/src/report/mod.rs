//! What a run measured: per-operation HdrHistograms, counts and errors by kind, a per-second
//! timeline; rendered as the human table, the `--json` document (CONTRACT §4) and, with
//! `--out`, `results.json` and `latency.png`.

mod chart;

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::target::ErrorKind;
use crate::workload::OpKind;

/// Highest latency a histogram records, in microseconds (longer ones are clamped to it).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode the results: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot draw {path}: {reason}")]
    Chart { path: String, reason: String },
}

fn histogram() -> Histogram<u64> {
    // 3 significant figures over 1 µs..1 h: constant bounds, valid by construction.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds")
}

/// Counts and latencies of one operation kind.
#[derive(Clone, Debug)]
pub struct OpStats {
    pub latency: Histogram<u64>,
    pub count: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            latency: histogram(),
            count: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl OpStats {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn record(&mut self, latency: Duration, error: Option<ErrorKind>) {
        self.count += 1;
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(us.clamp(1, MAX_LATENCY_US));
        if let Some(kind) = error {
            *self.errors.entry(kind).or_default() += 1;
        }
    }

    fn merge(&mut self, other: &OpStats) {
        self.count += other.count;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_default() += v;
        }
    }
}

/// One second of the timeline (operations completed in it).
#[derive(Clone, Debug)]
pub struct Second {
    pub ops: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

/// Everything one worker (or a whole run, after merging) recorded.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    pub ops: BTreeMap<OpKind, OpStats>,
    pub timeline: Vec<Second>,
}

impl Recorder {
    /// Records one operation: `latency` from its (intended) start, completed `at` after the
    /// start of the run.
    pub fn record(
        &mut self,
        op: OpKind,
        latency: Duration,
        error: Option<ErrorKind>,
        at: Duration,
    ) {
        self.ops.entry(op).or_default().record(latency, error);
        let sec = at.as_secs() as usize;
        if self.timeline.len() <= sec {
            self.timeline.resize_with(sec + 1, || Second {
                ops: 0,
                errors: 0,
                latency: histogram(),
            });
        }
        let s = &mut self.timeline[sec];
        s.ops += 1;
        s.errors += u64::from(error.is_some());
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        s.latency.saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (op, st) in &other.ops {
            self.ops.entry(*op).or_default().merge(st);
        }
        for (i, s) in other.timeline.iter().enumerate() {
            if self.timeline.len() <= i {
                self.timeline.push(s.clone());
            } else {
                let t = &mut self.timeline[i];
                t.ops += s.ops;
                t.errors += s.errors;
                let _ = t.latency.add(&s.latency);
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.ops.values().map(|s| s.count).sum()
    }

    pub fn errors(&self) -> u64 {
        self.ops.values().map(OpStats::error_count).sum()
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    round3(h.value_at_quantile(q) as f64 / 1000.0)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The summary of one operation kind in the JSON document.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OpSummary {
    pub count: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub throughput: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

fn summarize(st: &OpStats, secs: f64) -> OpSummary {
    let h = &st.latency;
    OpSummary {
        count: st.count,
        errors: st.error_count(),
        errors_by_kind: st
            .errors
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), *v))
            .collect(),
        throughput: round3(st.count as f64 / secs.max(1e-9)),
        mean_ms: if h.is_empty() {
            0.0
        } else {
            round3(h.mean() / 1000.0)
        },
        p50_ms: ms(h, 0.50),
        p90_ms: ms(h, 0.90),
        p99_ms: ms(h, 0.99),
        p999_ms: ms(h, 0.999),
        max_ms: if h.is_empty() {
            0.0
        } else {
            round3(h.max() as f64 / 1000.0)
        },
    }
}

/// One second of the timeline in the JSON document.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SecondSummary {
    pub second: usize,
    pub ops: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The load phase, when there was one.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LoadSummary {
    pub records: u64,
    pub errors: u64,
    pub duration_s: f64,
    pub throughput: f64,
}

/// How the run was driven.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunInfo {
    pub target: String,
    pub workload: String,
    pub distribution: String,
    /// `closed` (at `concurrency`) or `open` (at `target_rate`).
    pub mode: String,
    pub concurrency: usize,
    pub target_rate: Option<f64>,
    pub records: u64,
    pub value_size: usize,
}

/// The `--json` document and `results.json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    #[serde(flatten)]
    pub run: RunInfo,
    pub duration_s: f64,
    pub operations: u64,
    pub throughput: f64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub ops: BTreeMap<String, OpSummary>,
    pub load: Option<LoadSummary>,
    pub timeline: Vec<SecondSummary>,
}

impl Summary {
    /// Summarizes a run of `elapsed`; `kinds` are the operations of the workload (each gets
    /// an entry, also when it never ran).
    pub fn new(
        info: RunInfo,
        rec: &Recorder,
        kinds: &[OpKind],
        elapsed: Duration,
        load: Option<LoadSummary>,
    ) -> Summary {
        let secs = elapsed.as_secs_f64();
        let empty = OpStats::default();
        let ops = kinds
            .iter()
            .map(|k| {
                let st = rec.ops.get(k).unwrap_or(&empty);
                (k.as_str().to_string(), summarize(st, secs))
            })
            .collect::<BTreeMap<_, _>>();
        let mut errors_by_kind = BTreeMap::new();
        for st in rec.ops.values() {
            for (k, v) in &st.errors {
                *errors_by_kind.entry(k.as_str().to_string()).or_default() += *v;
            }
        }
        let timeline = rec
            .timeline
            .iter()
            .enumerate()
            .map(|(i, s)| SecondSummary {
                second: i,
                ops: s.ops,
                errors: s.errors,
                p50_ms: ms(&s.latency, 0.5),
                p99_ms: ms(&s.latency, 0.99),
                max_ms: if s.latency.is_empty() {
                    0.0
                } else {
                    round3(s.latency.max() as f64 / 1000.0)
                },
            })
            .collect();
        Summary {
            run: info,
            duration_s: round3(secs),
            operations: rec.total(),
            throughput: round3(rec.total() as f64 / secs.max(1e-9)),
            errors: rec.errors(),
            errors_by_kind,
            ops,
            load,
            timeline,
        }
    }

    /// True when more than 1% of the operations (load included) failed: exit code 1.
    pub fn too_many_errors(&self) -> bool {
        let (load_ops, load_err) = self.load.as_ref().map_or((0, 0), |l| (l.records, l.errors));
        let ops = self.operations + load_ops;
        let errors = self.errors + load_err;
        errors * 100 > ops
    }

    pub fn to_json(&self) -> Result<String, ReportError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let run = &self.run;
        let rate = run
            .target_rate
            .map_or(String::new(), |r| format!(" at {r} ops/s"));
        out.push_str(&format!(
            "workload {} ({}) against {}: {} loop{}, {} clients, {:.1} s\n",
            run.workload,
            run.distribution,
            run.target,
            run.mode,
            rate,
            run.concurrency,
            self.duration_s
        ));
        if let Some(l) = &self.load {
            out.push_str(&format!(
                "load: {} records in {:.1} s ({:.0} ops/s), {} errors\n",
                l.records, l.duration_s, l.throughput, l.errors
            ));
        }
        out.push_str(&format!(
            "\n{:<8} {:>10} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "op", "count", "errors", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        ));
        for (name, s) in &self.ops {
            out.push_str(&format!(
                "{:<8} {:>10} {:>8} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}\n",
                name,
                s.count,
                s.errors,
                s.throughput,
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                s.p999_ms,
                s.max_ms
            ));
        }
        out.push_str(&format!(
            "{:<8} {:>10} {:>8} {:>10.1}\n",
            "total", self.operations, self.errors, self.throughput
        ));
        for (name, s) in &self.ops {
            if !s.errors_by_kind.is_empty() {
                let kinds: Vec<String> = s
                    .errors_by_kind
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                out.push_str(&format!("errors of {name}: {}\n", kinds.join(", ")));
            }
        }
        out
    }

    /// Writes `results.json` and `latency.png` into `dir` (created if missing).
    pub fn write_dir(&self, dir: &Path) -> Result<(), ReportError> {
        let io = |path: &Path, source| ReportError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let json = dir.join("results.json");
        std::fs::write(&json, self.to_json()? + "\n").map_err(|e| io(&json, e))?;
        let png = dir.join("latency.png");
        chart::draw(&png, self).map_err(|reason| ReportError::Chart {
            path: png.display().to_string(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo {
            target: "riftkv://127.0.0.1:1".into(),
            workload: "a".into(),
            distribution: "zipfian".into(),
            mode: "closed".into(),
            concurrency: 2,
            target_rate: None,
            records: 10,
            value_size: 5,
        }
    }

    #[test]
    fn summary_counts_percentiles_and_errors() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for i in 1..=100u64 {
            a.record(
                OpKind::Read,
                Duration::from_millis(i),
                None,
                Duration::from_millis(i * 10),
            );
        }
        b.record(
            OpKind::Update,
            Duration::from_millis(3),
            Some(ErrorKind::Timeout),
            Duration::from_millis(2500),
        );
        a.merge(&b);
        let s = Summary::new(
            info(),
            &a,
            &[OpKind::Read, OpKind::Update],
            Duration::from_secs(2),
            None,
        );
        assert_eq!(s.operations, 101);
        assert_eq!(s.errors, 1);
        assert_eq!(s.errors_by_kind.get("timeout"), Some(&1));
        let read = &s.ops["read"];
        assert_eq!(read.count, 100);
        assert!((read.p50_ms - 50.0).abs() < 0.1, "{}", read.p50_ms);
        assert!((read.p99_ms - 99.0).abs() < 0.1, "{}", read.p99_ms);
        assert!((read.max_ms - 100.0).abs() < 0.1, "{}", read.max_ms);
        assert!((s.throughput - 50.5).abs() < 1e-9);
        assert_eq!(s.timeline.len(), 3);
        assert_eq!(s.timeline.iter().map(|t| t.ops).sum::<u64>(), 101);
        assert!(!s.too_many_errors(), "1 in 101 is under 1%");
        let json: serde_json::Value =
            serde_json::from_str(&s.to_json().unwrap_or_default()).unwrap_or_default();
        for field in [
            "target",
            "workload",
            "duration_s",
            "throughput",
            "errors",
            "ops",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        for field in [
            "count", "errors", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
        ] {
            assert!(
                json["ops"]["update"].get(field).is_some(),
                "missing {field}"
            );
        }
        assert!(s.table().contains("update"));
    }

    #[test]
    fn more_than_one_percent_of_errors_fails_the_run() {
        let mut r = Recorder::default();
        for i in 0..98 {
            r.record(OpKind::Read, Duration::from_millis(1), None, Duration::ZERO);
            let _ = i;
        }
        for _ in 0..2 {
            r.record(
                OpKind::Read,
                Duration::from_millis(1),
                Some(ErrorKind::NotFound),
                Duration::ZERO,
            );
        }
        let s = Summary::new(info(), &r, &[OpKind::Read], Duration::from_secs(1), None);
        assert!(s.too_many_errors());
    }

    #[test]
    fn writes_results_and_chart() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut r = Recorder::default();
        for i in 0..300u64 {
            r.record(
                OpKind::Read,
                Duration::from_micros(500 + i * 7),
                None,
                Duration::from_millis(i * 10),
            );
        }
        let s = Summary::new(info(), &r, &[OpKind::Read], Duration::from_secs(3), None);
        s.write_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let png = std::fs::read(dir.path().join("latency.png")).unwrap_or_default();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let json = std::fs::read_to_string(dir.path().join("results.json")).unwrap_or_default();
        assert!(json.contains("\"p999_ms\""));
    }
}
