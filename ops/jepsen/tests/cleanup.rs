//! Clean-up: a harness run killed with SIGKILL in the middle (no chance to clean up) leaves
//! namespaces behind but no node processes (they die with their parent); the next run
//! removes the leftovers and starts cleanly.

mod common;

use std::time::{Duration, Instant};

fn history_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
#[ignore = "needs root and a built riftkv binary; run by ops/jepsen/ci.sh"]
fn next_run_starts_cleanly_after_a_sigkilled_run() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("killed");
    let mut child = common::harness()
        .args([
            "--time-limit",
            "120",
            "--nemesis",
            "partition,pause",
            "--nemesis-gap",
            "2",
            "--out",
        ])
        .arg(&first)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("harness starts");
    // Wait until the workload is well under way (faults have begun).
    let deadline = Instant::now() + Duration::from_secs(120);
    let history = first.join("history.jsonl");
    while history_lines(&history) < 600
        || !std::fs::read_to_string(&history)
            .unwrap_or_default()
            .contains("start-")
    {
        assert!(Instant::now() < deadline, "the first run never got going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the first run ended early"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGKILL the harness itself (through sudo, the harness is sudo's child: kill by name of
    // the exact binary path would be too broad, so signal the pid we own or its child).
    let pid = child.id() as i32;
    let harness_pid = if common::is_root() {
        pid
    } else {
        let o = std::process::Command::new("pgrep")
            .args(["-P", &pid.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(pid)
    };
    let status = std::process::Command::new(if common::is_root() { "kill" } else { "sudo" })
        .args(if common::is_root() {
            vec!["-KILL".to_string(), harness_pid.to_string()]
        } else {
            vec![
                "-n".into(),
                "kill".into(),
                "-KILL".into(),
                harness_pid.to_string(),
            ]
        })
        .status()
        .unwrap();
    assert!(status.success());
    let _ = child.wait();
    assert!(
        !common::our_namespaces().is_empty(),
        "a SIGKILLed run cannot clean up, so its namespaces must still be there"
    );
    // Node processes died with the harness (parent-death signal).
    std::thread::sleep(Duration::from_secs(1));
    for ns in common::our_namespaces() {
        let o = std::process::Command::new("ip")
            .args(["netns", "pids", &ns])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&o.stdout).trim().is_empty(),
            "processes survived in {ns}"
        );
    }

    let second = dir.path().join("second");
    let o = common::run_harness(
        &[
            "--time-limit",
            "10",
            "--nemesis",
            "partition",
            "--nemesis-gap",
            "3",
            "--seed",
            "11",
        ],
        &second,
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("removed leftovers of an earlier run"),
        "the second run should report what it cleaned: {stderr}"
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "the second run must run and be valid"
    );
    assert_eq!(common::results(&second)["valid"], true);
    assert!(
        common::our_namespaces().is_empty(),
        "namespaces left behind"
    );
}
