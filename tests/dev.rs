//! `riftkv dev`: starts a local cluster, settles, serves, and stops cleanly on SIGINT.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("addr"),
        Duration::from_millis(200),
    )
    .is_ok()
}

#[test]
fn dev_starts_settles_serves_and_stops_on_sigint() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A base port below the kernel's ephemeral range (32768+), where outgoing connections
    // could hold a port, and away from other tests (which use 87xx/88xx on 127.x.y.z).
    let free = |base: u16| {
        (1..=3)
            .chain(101..=103)
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", base + p)).is_ok())
    };
    let first = (std::process::id() % 1200) as u16;
    let base: u16 = (0..1200u16)
        .map(|i| 20000 + ((first + i * 7) % 1200) * 10)
        .find(|b| free(*b))
        .expect("a free block of ports");
    let mut child = Command::new(BIN)
        .args([
            "dev",
            "--nodes",
            "3",
            "--base-port",
            &base.to_string(),
            "--data-dir",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn riftkv dev");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut printed = String::new();
    let mut urls_seen = 0;
    while (urls_seen < 3 || !printed.contains("curl")) && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            for k in 1..=3 {
                if line.contains(&format!("http://127.0.0.1:{}", base + k)) {
                    urls_seen += 1;
                }
            }
            printed.push_str(&line);
            printed.push('\n');
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("riftkv dev exited early with {status}: {printed}");
        }
    }
    let guard = scopeguard(child.id());
    assert!(urls_seen >= 3, "dev printed the node URLs: {printed}");
    assert!(
        printed.contains("curl"),
        "dev printed a curl example: {printed}"
    );

    let console = format!("Console: http://127.0.0.1:{}/ui\n", base + 1);
    assert!(
        printed.contains(&console),
        "dev printed the console URL: {printed}"
    );

    let u = format!("http://127.0.0.1:{}", base + 2);
    let page = client().get(format!("{u}/ui")).send().expect("console");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let st = status(&u).expect("status");
    assert_eq!(st["ring_settled"], true);
    assert_eq!(st["members"].as_array().map(|m| m.len()), Some(3));
    let r = client()
        .put(format!("{u}/v1/kv/dev/hello"))
        .body("world")
        .send()
        .expect("put");
    assert_eq!(r.status(), 204);
    let r = client()
        .get(format!("http://127.0.0.1:{}/v1/kv/dev/hello", base + 3))
        .send()
        .expect("get");
    assert_eq!(r.text().expect("body"), "world");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("sigint");
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        assert!(Instant::now() < deadline, "riftkv dev did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(guard);
    assert_eq!(status.code(), Some(0));
    // The nodes shared a generated secret, kept private, instead of running open.
    use std::os::unix::fs::PermissionsExt;
    let secret = dir.path().join("cluster.secret");
    let meta = std::fs::metadata(&secret).expect("riftkv dev wrote cluster.secret");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&secret)
            .expect("secret")
            .trim()
            .len(),
        64
    );
    let mut memtables = std::collections::BTreeSet::new();
    for k in 1..=3 {
        let log = std::fs::read_to_string(dir.path().join(format!("node{k}/server.log")))
            .expect("node log");
        // Replicas take the same writes: each node's memtable has its own size, so the three
        // do not flush in the same second.
        let memtable = log
            .split_whitespace()
            .find_map(|field| field.strip_prefix("objects_memtable_mib="))
            .unwrap_or_else(|| panic!("node {k} logs its memtable size: {log}"))
            .to_string();
        memtables.insert(memtable);
        assert!(log.contains("riftkv dev: starting"), "node {k} log: {log}");
        // Three nodes on one machine share its cores instead of each taking all of them.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let share = (cores / 3).max(1);
        assert!(
            log.contains(&format!(" request_threads={share} ")),
            "node {k} runs {share} request threads: {log}"
        );
        // The supervisor's SIGTERM is a graceful stop: each node told the others first.
        assert!(
            log.contains("announced going down to"),
            "node {k} log: {log}"
        );
        assert!(
            !log.contains("no cluster secret configured"),
            "node {k} ran open: {log}"
        );
    }
    assert_eq!(memtables.len(), 3, "memtable sizes {memtables:?}");
    for k in 1..=3 {
        assert!(!port_open(base + k), "node {k} API still listening");
        assert!(
            !port_open(base + 100 + k),
            "node {k} peer port still listening"
        );
    }
}

/// Stops the dev supervisor (and so its servers) if the test fails midway.
struct Guard(u32);
fn scopeguard(pid: u32) -> Guard {
    Guard(pid)
}
impl Drop for Guard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0 as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            // The supervisor stops its servers on SIGTERM; give it the time it needs.
            std::thread::sleep(Duration::from_secs(12));
        }
    }
}
