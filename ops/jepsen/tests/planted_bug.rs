//! The harness must find a planted bug: nodes that acknowledge writes and drop a share of
//! them (the test-only `RIFTKV_FAULT_DROP_WRITES` switch of `riftkv server`). The run must
//! end with exit code 1 and report the lost elements.

mod common;

#[test]
#[ignore = "needs root and a built riftkv binary; run by ops/jepsen/ci.sh"]
fn harness_finds_writes_dropped_by_a_planted_bug() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("planted");
    let o = common::run_harness(
        &[
            "--nodes",
            "5",
            "--workload",
            "set",
            "--nemesis",
            "partition",
            "--time-limit",
            "20",
            "--fault-drop-writes",
            "0.4",
            "--convergence-timeout",
            "10",
            "--seed",
            "7",
        ],
        &out,
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "a planted bug must give exit code 1"
    );
    let r = common::results(&out);
    assert_eq!(r["valid"], false);
    assert_eq!(r["verdict"], "anomalies");
    let lost = r["lost"].as_u64().unwrap();
    assert!(lost > 0, "the checker must see lost writes: {r}");
    assert!(lost <= r["acked"].as_u64().unwrap());
    assert_eq!(r["fault_drop_writes"], 0.4);
    // Every lost element was acknowledged in the history.
    let history = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    let first = &r["set"]["lost"][0];
    let needle = format!(
        "{{\"type\":\"ok\",\"f\":\"add\",\"value\":{{\"element\":{},\"key\":\"{}\"}}",
        first["value"],
        first["key"].as_str().unwrap()
    );
    assert!(history.contains(&needle), "no ok entry {needle}");
    assert!(
        common::our_namespaces().is_empty(),
        "namespaces left behind"
    );
}
