//! The CI smoke bench: `riftkv bench` through the real binary against a real 2-node cluster,
//! checking the exit code, the error count and the JSON document of CONTRACT §4.

mod common;

use common::{BIN, Cluster, ClusterOpts};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bench process, killed if the test ends before it does.
struct Bench(Child);

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `riftkv bench ARGS`; answers (exit code, stdout, stderr). Panics after `limit`.
fn bench(args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let child = Command::new(BIN)
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn riftkv bench");
    let mut guard = Bench(child);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(status)) = guard.0.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "riftkv bench ran over {limit:?}; stderr: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status.code(),
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    )
}

#[test]
fn workload_a_against_a_two_node_cluster() {
    let mut c = Cluster::start(2, ClusterOpts::default());
    c.wait_settled(2, Duration::from_secs(60));
    let target = format!("riftkv://{},{}", c.servers[0].api, c.servers[1].api);
    let outdir = tempfile::tempdir().expect("tempdir");
    let outpath = outdir.path().join("run");
    let (code, stdout, stderr) = bench(
        &[
            "--target",
            &target,
            "--load",
            "--records",
            "1000",
            "--workload",
            "a",
            "--duration",
            "10",
            "--concurrency",
            "8",
            "--json",
            "--out",
            outpath.to_str().expect("utf-8 path"),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("--json printed no JSON document ({e}): {stdout}"));
    assert_eq!(doc["target"], target.as_str());
    assert_eq!(doc["workload"], "a");
    let secs = doc["duration_s"].as_f64().expect("duration_s");
    assert!((10.0..20.0).contains(&secs), "duration_s {secs}");
    assert!(doc["throughput"].as_f64().expect("throughput") > 0.0);
    assert_eq!(doc["errors"], 0, "{doc:#}");
    assert_eq!(doc["load"]["records"], 1000);
    assert_eq!(doc["load"]["errors"], 0);
    let ops = doc["ops"].as_object().expect("ops");
    assert_eq!(
        ops.keys().map(String::as_str).collect::<Vec<_>>(),
        ["read", "update"]
    );
    for (name, op) in ops {
        assert!(op["count"].as_u64().expect("count") > 0, "{name}: {op}");
        assert_eq!(op["errors"], 0, "{name}: {op}");
        let p = |f: &str| op[f].as_f64().unwrap_or_else(|| panic!("{name}.{f}: {op}"));
        let (p50, p90, p99, p999, max) = (
            p("p50_ms"),
            p("p90_ms"),
            p("p99_ms"),
            p("p999_ms"),
            p("max_ms"),
        );
        assert!(
            0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
            "{name}: {op}"
        );
    }
    let saved: Value =
        serde_json::from_slice(&std::fs::read(outpath.join("results.json")).expect("results.json"))
            .expect("results.json is JSON");
    assert_eq!(saved, doc);
    let png = std::fs::read(outpath.join("latency.png")).expect("latency.png");
    assert!(png.starts_with(b"\x89PNG"));
    // Scans through the listing and read-modify-writes with the read's context, on the
    // loaded bucket, both in the table form.
    for workload in ["e", "f"] {
        let (code, stdout, stderr) = bench(
            &[
                "--target",
                &target,
                "--records",
                "1000",
                "--workload",
                workload,
                "--operations",
                "300",
                "--concurrency",
                "4",
            ],
            Duration::from_secs(60),
        );
        assert_eq!(code, Some(0), "{workload}: {stdout}\n{stderr}");
        let total = stdout
            .lines()
            .find(|l| l.starts_with("total"))
            .unwrap_or_else(|| panic!("no total line: {stdout}"));
        let fields: Vec<&str> = total.split_whitespace().collect();
        assert_eq!(fields.get(1..3), Some(&["300", "0"][..]), "{stdout}");
    }
    // An unreachable target is a connection error.
    let (code, _, stderr) = bench(
        &[
            "--target",
            &format!("riftkv://{}:1", c.ip),
            "--operations",
            "10",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
}
