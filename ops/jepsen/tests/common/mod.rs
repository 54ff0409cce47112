//! Helpers for tests that run the harness binary for real (root, namespaces, a built
//! `riftkv`). Those tests are `#[ignore]`d in plain `cargo test` and run by `ops/jepsen/ci.sh`.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The harness binary cargo built for this test.
pub const HARNESS: &str = env!("CARGO_BIN_EXE_riftkv-jepsen");

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command running the harness, through `sudo -n` when the test is not root.
pub fn harness() -> Command {
    if is_root() {
        Command::new(HARNESS)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", "-E", HARNESS]);
        c
    }
}

/// Runs the harness with `args` and `--out out`, echoing its output for the test log.
pub fn run_harness(args: &[&str], out: &Path) -> Output {
    let o = harness()
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("the harness binary runs");
    println!("--- stdout\n{}", String::from_utf8_lossy(&o.stdout));
    println!("--- stderr\n{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// `results.json` of a run.
pub fn results(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json exists");
    serde_json::from_str(&text).expect("results.json is JSON")
}

/// Harness namespaces present now.
pub fn our_namespaces() -> Vec<String> {
    let o = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("rkvj-"))
        .map(str::to_string)
        .collect()
}
