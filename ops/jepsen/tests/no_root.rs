//! Without root the harness says so and exits 2, touching nothing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn without_root_it_refuses_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = if common::is_root() {
        // Drop to an unprivileged user; the binary is copied where that user can run it.
        if Command::new("setpriv").arg("--help").output().is_err() {
            println!("setpriv is not installed; skipping");
            return;
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.path().join("riftkv-jepsen");
        std::fs::copy(common::HARNESS, &bin).unwrap();
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(&bin)
            .args(["--time-limit", "1", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    } else {
        Command::new(common::HARNESS)
            .args(["--time-limit", "1", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(!out.exists(), "nothing should be created without root");
}
