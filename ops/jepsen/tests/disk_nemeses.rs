//! The disk nemeses for real. A `wipe` run (nodes SIGKILLed, their data dir deleted, restarted
//! empty under the same id) must be valid: a node that lost its disk rejoins through the live
//! members, and no acknowledged write may be lost for it. Without a fault-injection build,
//! naming `corrupt` must stop the run with exit code 2 and one clear line.

mod common;

#[test]
#[ignore = "needs root and a built riftkv binary; see ops/jepsen/README.md"]
fn wipe_run_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wipe");
    let o = common::run_harness(
        &[
            "--nodes",
            "5",
            "--workload",
            "set",
            "--nemesis",
            "wipe",
            "--time-limit",
            "30",
            "--nemesis-gap",
            "4",
            "--fault-min",
            "2",
            "--fault-max",
            "5",
            "--convergence-timeout",
            "30",
            "--seed",
            "11",
        ],
        &out,
    );
    let r = common::results(&out);
    assert!(
        r["nemesis"]["wipe"]["count"].as_u64().unwrap() >= 2,
        "the run must wipe nodes: {r}"
    );
    let history = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    assert!(history.contains("\"f\":\"start-wipe\""));
    assert!(history.contains("\"f\":\"stop-wipe\""));
    assert!(r["acked"].as_u64().unwrap() > 0);
    assert_eq!(
        o.status.code(),
        Some(0),
        "a wipe run must be valid: lost {}, unexpected {}",
        r["lost"],
        r["unexpected"]
    );
    assert!(
        common::our_namespaces().is_empty(),
        "namespaces left behind"
    );
}

#[test]
#[ignore = "needs root and a default riftkv build; run by ops/jepsen/ci.sh"]
fn named_fault_build_nemesis_needs_a_fault_build() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("corrupt");
    let o = common::run_harness(
        &["--nodes", "3", "--nemesis", "corrupt", "--time-limit", "5"],
        &out,
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(2),
        "this test needs the default riftkv build at $CARGO_TARGET_DIR/debug/riftkv (not a \
         fault-injection one): {stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("fault-injection"))
        .unwrap_or_else(|| panic!("no line about the fault-injection build: {stderr}"));
    assert!(line.contains("corrupt"), "{line}");
    assert!(
        common::our_namespaces().is_empty(),
        "namespaces left behind"
    );
}
