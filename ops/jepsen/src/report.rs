//! Results of a run: `results.json`, `latency.png` and `rate.png` (fault intervals shaded),
//! and `report.html` tying them together.

use crate::checker::{
    Availability, CounterResult, CrdtSetResult, Interval, RegisterResult, SetResult,
};
use crate::convergence::Convergence;
use crate::history::{Op, OpType, pair};
use plotters::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Counts of one nemesis family.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NemesisCount {
    pub count: usize,
    /// Per detail (partition shape), when there is more than one.
    pub details: BTreeMap<String, usize>,
}

/// Everything `results.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub valid: bool,
    /// `valid`, `anomalies` or `unknown` (the check could not be completed).
    pub verdict: String,
    pub workload: String,
    pub nodes: usize,
    pub concurrency: usize,
    pub time_limit_secs: u64,
    pub seed: u64,
    pub nemeses: Vec<String>,
    /// Client operations by type.
    pub ops: BTreeMap<String, usize>,
    pub attempted: usize,
    pub acked: usize,
    pub lost: usize,
    pub recovered: usize,
    pub unexpected: usize,
    pub availability_during_faults_pct: Option<f64>,
    pub availability_overall_pct: Option<f64>,
    pub availability: Availability,
    pub convergence_seconds: Option<f64>,
    pub convergence: Convergence,
    pub nemesis: BTreeMap<String, NemesisCount>,
    pub faults: Vec<Interval>,
    pub anomalies: Vec<String>,
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<SetResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register: Option<RegisterResult>,
    /// The counter checker's output (lost and double-counted amounts per key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter: Option<CounterResult>,
    /// The convergent-set checker's output (lost adds, resurrected removes, phantoms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crdt_set: Option<CrdtSetResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_drop_writes: Option<f64>,
    pub duration_secs: f64,
}

/// Per-nemesis counts from the fault intervals.
pub fn nemesis_counts(faults: &[Interval], details: &[&str]) -> BTreeMap<String, NemesisCount> {
    let mut m: BTreeMap<String, NemesisCount> = BTreeMap::new();
    for (f, d) in faults.iter().zip(details) {
        let c = m.entry(f.kind.clone()).or_default();
        c.count += 1;
        if *d != f.kind {
            *c.details.entry(d.to_string()).or_default() += 1;
        }
    }
    m
}

const FONT_FAMILY: &str = "sans-serif";

/// Registers a TTF for chart text; false when none is installed (charts are then drawn
/// without text).
fn load_font() -> bool {
    use std::sync::OnceLock;
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        const CANDIDATES: &[&str] = &[
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        ];
        for path in CANDIDATES {
            if let Ok(bytes) = std::fs::read(path) {
                // Leaked once per process: the font registry wants 'static bytes.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Shade of each nemesis in the charts (and the report's legend), in legend order.
pub const FAULT_COLORS: [(&str, RGBColor); 7] = [
    ("partition", RGBColor(255, 205, 205)),
    ("kill", RGBColor(215, 215, 215)),
    ("pause", RGBColor(200, 220, 255)),
    ("clock", RGBColor(255, 240, 190)),
    ("wipe", RGBColor(225, 200, 245)),
    ("corrupt", RGBColor(190, 235, 235)),
    ("powerloss", RGBColor(160, 160, 160)),
];

fn fault_color(kind: &str) -> RGBColor {
    FAULT_COLORS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(RGBColor(255, 240, 190), |(_, c)| *c)
}

/// The chart legend of the report: one swatch per nemesis.
fn legend() -> String {
    let spans: String = FAULT_COLORS
        .iter()
        .map(|(k, c)| {
            format!(
                "<span style=\"background:#{:02x}{:02x}{:02x}\">{k}</span>",
                c.0, c.1, c.2
            )
        })
        .collect();
    format!("<p class=\"legend\">Shaded: {spans}</p>")
}

fn op_color(kind: OpType) -> RGBColor {
    match kind {
        OpType::Ok => RGBColor(40, 150, 60),
        OpType::Fail => RGBColor(210, 40, 40),
        _ => RGBColor(230, 150, 0),
    }
}

type PlotError = Box<dyn std::error::Error>;

/// One shaded band per fault, over the y range `y0..y1`, so every chart marks faults alike.
fn fault_bands(
    faults: &[Interval],
    y0: f64,
    y1: f64,
) -> impl Iterator<Item = Rectangle<(f64, f64)>> + '_ {
    faults.iter().map(move |f| {
        Rectangle::new(
            [(f.start_ns as f64 / 1e9, y0), (f.end_ns as f64 / 1e9, y1)],
            fault_color(&f.kind).mix(0.6).filled(),
        )
    })
}

/// Latency of every client operation over time, by outcome.
pub fn latency_plot(path: &Path, history: &[Op], faults: &[Interval]) -> Result<(), PlotError> {
    let text = load_font();
    let points: Vec<(f64, f64, OpType)> = pair(history)
        .iter()
        .map(|c| {
            (
                c.invoke.time as f64 / 1e9,
                (c.latency_ns() as f64 / 1e6).max(0.1),
                c.completion.kind,
            )
        })
        .collect();
    let t_max = points
        .iter()
        .map(|p| p.0)
        .chain(faults.iter().map(|f| f.end_ns as f64 / 1e9))
        .fold(1.0f64, f64::max);
    let l_max = points.iter().map(|p| p.1).fold(10.0f64, f64::max) * 1.5;
    let root = BitMapBackend::new(path, (1200, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut b = ChartBuilder::on(&root);
    b.margin(15);
    if text {
        b.caption("Latency of client operations", (FONT_FAMILY, 22))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = b.build_cartesian_2d(0f64..t_max, (0.1f64..l_max).log_scale())?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("time (s)").y_desc("latency (ms)");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    chart.draw_series(fault_bands(faults, 0.1, l_max))?;
    for kind in [OpType::Ok, OpType::Info, OpType::Fail] {
        let color = op_color(kind);
        let series = chart.draw_series(
            points
                .iter()
                .filter(|p| p.2 == kind)
                .map(|p| Circle::new((p.0, p.1), 2, color.filled())),
        )?;
        if text {
            series
                .label(kind.as_str())
                .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FONT_FAMILY, 14))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Completions per second, by outcome, as counted in one-second buckets.
pub fn rate_series(history: &[Op]) -> BTreeMap<OpType, Vec<(f64, f64)>> {
    let done = pair(history);
    let secs = done
        .iter()
        .map(|c| (c.completion.time / 1_000_000_000) as usize)
        .max()
        .map_or(0, |m| m + 1);
    let mut out = BTreeMap::new();
    for kind in [OpType::Ok, OpType::Fail, OpType::Info] {
        let mut buckets = vec![0u64; secs];
        for c in done.iter().filter(|c| c.completion.kind == kind) {
            let s = (c.completion.time / 1_000_000_000) as usize;
            if let Some(b) = buckets.get_mut(s) {
                *b += 1;
            }
        }
        out.insert(
            kind,
            buckets
                .iter()
                .enumerate()
                .map(|(s, n)| (s as f64 + 0.5, *n as f64))
                .collect(),
        );
    }
    out
}

/// Throughput over time, by outcome.
pub fn rate_plot(path: &Path, history: &[Op], faults: &[Interval]) -> Result<(), PlotError> {
    let text = load_font();
    let series = rate_series(history);
    let t_max = series
        .values()
        .flat_map(|v| v.iter().map(|p| p.0))
        .chain(faults.iter().map(|f| f.end_ns as f64 / 1e9))
        .fold(1.0f64, f64::max);
    let r_max = series
        .values()
        .flat_map(|v| v.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.2;
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut b = ChartBuilder::on(&root);
    b.margin(15);
    if text {
        b.caption("Client operations per second", (FONT_FAMILY, 22))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = b.build_cartesian_2d(0f64..t_max, 0f64..r_max)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("time (s)").y_desc("ops/s");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    chart.draw_series(fault_bands(faults, 0.0, r_max))?;
    for (kind, points) in &series {
        let color = op_color(*kind);
        let s = chart.draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))?;
        if text {
            s.label(kind.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FONT_FAMILY, 14))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn opt_num(v: Option<f64>, unit: &str) -> String {
    v.map_or("n/a".to_string(), |x| format!("{x:.1}{unit}"))
}

/// The HTML report.
/// Summary rows of the data type checkers.
fn typed_rows(r: &Results) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    if let Some(c) = &r.counter {
        rows.push((
            "increments: acknowledged sum / unknown sum",
            format!("{} / {}", c.ok_sum, c.info_sum),
        ));
        rows.push((
            "lost (acknowledged amount not counted)",
            c.lost_amount.to_string(),
        ));
        rows.push((
            "double-counted (amount)",
            c.double_counted_amount.to_string(),
        ));
        rows.push((
            "reads above what was invoked",
            c.read_violations.len().to_string(),
        ));
        let finals: Vec<String> = c
            .keys
            .iter()
            .map(|k| {
                let vals: BTreeSet<i64> = k.final_values.values().copied().collect();
                format!("{}={vals:?}", k.key)
            })
            .collect();
        rows.push(("final values", finals.join(", ")));
    }
    if let Some(c) = &r.crdt_set {
        rows.push((
            "removes attempted / acknowledged",
            format!("{} / {}", c.attempted_removes, c.acked_removes),
        ));
        rows.push(("lost adds", c.lost_count.to_string()));
        rows.push(("resurrected removes", c.resurrected_count.to_string()));
        rows.push(("phantom elements", c.phantom_count.to_string()));
    }
    rows
}

pub fn html(r: &Results, logs: &[String]) -> String {
    let verdict_color = match r.verdict.as_str() {
        "valid" => "#2a7",
        "anomalies" => "#c33",
        _ => "#c80",
    };
    let mut s = String::new();
    s.push_str(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>RiftKV partition test</title>",
    );
    s.push_str("<style>body{font-family:sans-serif;max-width:1250px;margin:2em auto;color:#222}td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #ddd}table{border-collapse:collapse}code{background:#f4f4f4;padding:1px 4px}.legend span{display:inline-block;padding:2px 8px;margin-right:6px}</style></head><body>");
    s.push_str(&format!(
        "<h1>RiftKV partition test: <span style=\"color:{verdict_color}\">{}</span></h1>",
        esc(&r.verdict)
    ));
    s.push_str(&format!(
        "<p>Workload <b>{}</b> on {} nodes, {} clients, {} s, nemeses <b>{}</b>, seed <code>{}</code>.</p>",
        esc(&r.workload),
        r.nodes,
        r.concurrency,
        r.time_limit_secs,
        esc(&if r.nemeses.is_empty() {
            "none".to_string()
        } else {
            r.nemeses.join(", ")
        }),
        r.seed
    ));
    s.push_str("<h2>Summary</h2><table>");
    let mut rows: Vec<(&str, String)> = vec![
        ("valid", r.valid.to_string()),
        ("attempted", r.attempted.to_string()),
        ("acknowledged", r.acked.to_string()),
        ("lost", r.lost.to_string()),
        (
            "recovered (unknown outcome, present)",
            r.recovered.to_string(),
        ),
        ("unexpected", r.unexpected.to_string()),
        (
            "ops ok / fail / info",
            format!(
                "{} / {} / {}",
                r.ops.get("ok").unwrap_or(&0),
                r.ops.get("fail").unwrap_or(&0),
                r.ops.get("info").unwrap_or(&0)
            ),
        ),
        (
            "availability during faults",
            format!(
                "{} of {} ops",
                opt_num(r.availability_during_faults_pct, "%"),
                r.availability.during_faults_ops
            ),
        ),
        (
            "availability overall",
            opt_num(r.availability_overall_pct, "%"),
        ),
        (
            "convergence after the final heal",
            match r.convergence_seconds {
                Some(x) => format!("{x:.1} s"),
                None => "did not converge".into(),
            },
        ),
        ("run time", format!("{:.0} s", r.duration_secs)),
    ];
    rows.extend(typed_rows(r));
    for (k, v) in rows {
        s.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v)));
    }
    s.push_str("</table>");
    if !r.nemesis.is_empty() {
        s.push_str("<h2>Faults per nemesis</h2><table>");
        for (kind, c) in &r.nemesis {
            let details: Vec<String> = c.details.iter().map(|(d, n)| format!("{d} {n}")).collect();
            s.push_str(&format!(
                "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
                esc(kind),
                c.count,
                esc(&details.join(", "))
            ));
        }
        s.push_str("</table>");
    }
    if !r.anomalies.is_empty() {
        s.push_str("<h2>Anomalies</h2><ul>");
        for a in &r.anomalies {
            s.push_str(&format!("<li>{}</li>", esc(a)));
        }
        s.push_str("</ul>");
    }
    if !r.notes.is_empty() {
        s.push_str("<h2>Notes</h2><ul>");
        for a in &r.notes {
            s.push_str(&format!("<li>{}</li>", esc(a)));
        }
        s.push_str("</ul>");
    }
    s.push_str("<h2>Charts</h2>");
    s.push_str(&legend());
    s.push_str("<p><img src=\"latency.png\" width=\"1200\" alt=\"latency\"></p><p><img src=\"rate.png\" width=\"1200\" alt=\"rate\"></p>");
    s.push_str(
        "<h2>Faults</h2><table><tr><th>start (s)</th><th>healed (s)</th><th>fault</th></tr>",
    );
    for f in &r.faults {
        s.push_str(&format!(
            "<tr><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>",
            f.start_ns as f64 / 1e9,
            f.end_ns as f64 / 1e9,
            esc(&f.description)
        ));
    }
    s.push_str("</table><h2>Files</h2><ul><li><a href=\"history.jsonl\">history.jsonl</a>: every operation (invoke/ok/fail/info)</li><li><a href=\"results.json\">results.json</a>: the checker's full output</li>");
    for l in logs {
        s.push_str(&format!("<li><a href=\"{0}\">{0}</a></li>", esc(l)));
    }
    s.push_str("</ul></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;
    use serde_json::json;

    fn h() -> Vec<Op> {
        let mut v = Vec::new();
        for (i, kind) in [OpType::Ok, OpType::Fail, OpType::Info, OpType::Ok]
            .into_iter()
            .enumerate()
        {
            let t = i as u64 * 700_000_000;
            for (k, tt) in [(OpType::Invoke, t), (kind, t + 20_000_000)] {
                v.push(Op {
                    kind: k,
                    f: "add".into(),
                    value: json!(null),
                    process: Process::Client(i as u64),
                    time: tt,
                    node: "n1".into(),
                    error: None,
                });
            }
        }
        v
    }

    fn faults() -> Vec<Interval> {
        vec![Interval {
            start_ns: 500_000_000,
            end_ns: 1_500_000_000,
            kind: "partition".into(),
            description: "partition halves".into(),
        }]
    }

    #[test]
    fn rates_bucket_per_second() {
        let r = rate_series(&h());
        assert_eq!(r[&OpType::Ok], vec![(0.5, 1.0), (1.5, 0.0), (2.5, 1.0)]);
        assert_eq!(r[&OpType::Fail], vec![(0.5, 1.0), (1.5, 0.0), (2.5, 0.0)]);
        assert_eq!(r[&OpType::Info][1], (1.5, 1.0));
    }

    #[test]
    fn charts_are_written_as_png() {
        let dir = tempfile::tempdir().unwrap();
        for (name, f) in [
            (
                "l.png",
                latency_plot as fn(&Path, &[Op], &[Interval]) -> Result<(), PlotError>,
            ),
            ("r.png", rate_plot),
        ] {
            let p = dir.path().join(name);
            f(&p, &h(), &faults()).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(&bytes[1..4], b"PNG");
            // empty histories still draw
            f(&p, &[], &[]).unwrap();
        }
    }

    #[test]
    fn html_shows_verdict_counts_and_escaped_anomalies() {
        let conv = Convergence {
            converged: true,
            seconds: Some(1.5),
            diverging: Vec::new(),
        };
        let f = faults();
        let r = Results {
            valid: false,
            verdict: "anomalies".into(),
            workload: "set".into(),
            nodes: 5,
            concurrency: 10,
            time_limit_secs: 60,
            seed: 42,
            nemeses: vec!["partition".into()],
            ops: BTreeMap::from([("ok".to_string(), 7)]),
            attempted: 9,
            acked: 7,
            lost: 1,
            recovered: 0,
            unexpected: 0,
            availability_during_faults_pct: Some(50.0),
            availability_overall_pct: Some(77.7),
            availability: Availability {
                during_faults_pct: Some(50.0),
                during_faults_ops: 4,
                overall_pct: Some(77.7),
            },
            convergence_seconds: Some(1.5),
            convergence: conv,
            nemesis: nemesis_counts(&f, &["halves"]),
            faults: f,
            anomalies: vec!["lost: <set-0> element 3".into()],
            notes: Vec::new(),
            set: None,
            register: None,
            counter: None,
            crdt_set: None,
            fault_drop_writes: None,
            duration_secs: 70.0,
        };
        let h = html(&r, &["logs/n1.log".into()]);
        assert!(h.contains(">anomalies</span>"));
        assert!(h.contains("lost: &lt;set-0&gt; element 3"));
        assert!(h.contains("50.0% of 4 ops"));
        assert!(h.contains("<th>partition</th><td>1</td><td>halves 1</td>"));
        assert!(h.contains("href=\"logs/n1.log\""));
        assert!(h.contains("<span style=\"background:#ffcdcd\">partition</span>"));
        assert!(h.contains("<span style=\"background:#e1c8f5\">wipe</span>"));
        let j: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(j["lost"], 1);
        assert_eq!(j["convergence_seconds"], 1.5);
        assert!(j.get("set").is_none());
    }

    #[test]
    fn every_nemesis_has_its_own_shade() {
        use crate::nemesis::NemesisKind;
        let names: Vec<&str> = FAULT_COLORS.iter().map(|(k, _)| *k).collect();
        let kinds: Vec<&str> = NemesisKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, kinds);
        let shades: std::collections::BTreeSet<(u8, u8, u8)> =
            FAULT_COLORS.iter().map(|(_, c)| (c.0, c.1, c.2)).collect();
        assert_eq!(shades.len(), FAULT_COLORS.len());
        assert_eq!(fault_color("wipe"), RGBColor(225, 200, 245));
    }

    #[test]
    fn counts_group_partitions_by_shape() {
        let mut f = faults();
        f.push(Interval {
            kind: "kill".into(),
            ..f[0].clone()
        });
        f.push(f[0].clone());
        let c = nemesis_counts(&f, &["halves", "kill", "bridge"]);
        assert_eq!(c["partition"].count, 2);
        assert_eq!(c["partition"].details["bridge"], 1);
        assert_eq!(c["kill"].count, 1);
        assert!(c["kill"].details.is_empty());
    }
}
