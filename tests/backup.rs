//! Multi-process tests of online backup and offline restore: a node backed up while it serves
//! writes, its data dir wiped and restored from the backup, must lose no acknowledged write
//! (the others repair it), bring back no deleted key, and never reuse a write identity it had
//! issued after the snapshot (basho/riak_kv#679).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(60);
const B: &str = "bk";

fn set(v: &[&str]) -> BTreeSet<Vec<u8>> {
    v.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// Runs `riftkv ARGS` to its exit.
fn riftkv(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run riftkv")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn put_ok(url: &str, key: &str, value: &str, query: &str, ctx: Option<&str>) {
    let r = put(url, B, key, value.as_bytes(), query, ctx);
    assert_eq!(r.status(), 204, "put {key}={value} via {url}{query}");
}

/// A quorum read of every replica (it read-repairs them), retried while replicas come back:
/// `None` for 404, else the context and the live values.
fn read3(url: &str, key: &str) -> Option<(String, BTreeSet<Vec<u8>>)> {
    let mut last = String::new();
    for _ in 0..100 {
        let r = get_json(url, B, key, "?r=3");
        let code = r.status().as_u16();
        if code == 404 {
            return None;
        }
        if code == 200 || code == 300 {
            let v: Value = r.json().expect("json");
            let ctx = v["context"].as_str().unwrap_or_default().to_string();
            return Some((ctx, values_of(&v)));
        }
        last = format!("{code} {}", r.text().unwrap_or_default());
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("read of {key} never met r=3: {last}");
}

/// Waits (up to `SETTLE`) until the background writer has `n` acknowledged writes.
fn wait_acked(acked: &Mutex<Vec<(String, String)>>, n: usize, when: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let seen = acked.lock().unwrap().len();
        if seen >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited {SETTLE:?} for {n} acknowledged writes {when}: the writer had {seen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn backup_via_api(url: &str, out: &str) -> (u16, Value) {
    let r = client()
        .post(format!("{url}/v1/admin/backup"))
        .json(&serde_json::json!({ "out": out }))
        .send()
        .expect("backup request");
    let code = r.status().as_u16();
    (code, r.json().unwrap_or(Value::Null))
}

#[test]
fn a_restored_node_loses_no_write_resurrects_no_delete_and_reuses_no_identity() {
    let mut c = Cluster::start(3, ClusterOpts::default());
    c.wait_settled(3, SETTLE);
    let urls: Vec<String> = (1..=3).map(|i| c.url(i)).collect();
    let u2 = c.url(2);

    // Before the backup: K written through node 2, and keys deleted after the backup.
    put_ok(&u2, "k", "v1", "?w=3", None);
    let doomed: Vec<String> = (0..30).map(|i| format!("del-{i}")).collect();
    for (i, k) in doomed.iter().enumerate() {
        put_ok(&urls[i % 3], k, "alive", "?w=3", None);
    }
    // Long values, which a node keeps in blob files beside its table files: the snapshot must
    // carry those files too.
    let big = |i: usize| format!("{i:04}").repeat(512);
    for i in 0..10 {
        put_ok(&urls[i % 3], &format!("big-{i}"), &big(i), "?w=3", None);
    }

    // A writer keeps writing through every node while node 2 is backed up.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let writer = {
        let (stop, acked, urls) = (stop.clone(), acked.clone(), urls.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let (k, v) = (format!("w-{i}"), format!("x-{i}"));
                let r = client()
                    .put(format!("{}/v1/kv/{B}/{k}?w=2", urls[i % 3]))
                    .header("content-type", "text/plain")
                    .body(v.clone())
                    .send();
                if r.is_ok_and(|r| r.status() == 204) {
                    acked.lock().unwrap().push((k, v));
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // Writes before, and (below) after the backup, counted rather than timed: a loaded machine
    // acknowledges fewer writes in a given time.
    wait_acked(&acked, 11, "before the backup");
    let backups = c.dir.path().join("backups");
    let out = backups.join("node2");
    let out_s = out.to_str().unwrap().to_string();
    let o = riftkv(&["admin", "backup", "--url", &u2, "--out", &out_s]);
    assert!(o.status.success(), "backup: {}", text(&o.stderr));
    let manifest: Value = serde_json::from_slice(&o.stdout).expect("manifest json");
    assert_eq!(manifest["node_id"], "node2");
    assert_eq!(manifest["format_version"], 1);
    assert!(out.join("db").is_dir() && out.join("backup.json").is_file());
    let blob_files = std::fs::read_dir(out.join("db"))
        .expect("backup db")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "blob"))
        .count();
    assert!(blob_files > 0, "the backup holds no blob file");
    let at_backup = acked.lock().unwrap().len();
    wait_acked(&acked, at_backup + 10, "after the backup");
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "the writer wrote: {}", acked.len());

    // The API refuses a relative path and a directory that is not empty.
    assert_eq!(backup_via_api(&u2, "relative/dir").0, 400);
    let (code, body) = backup_via_api(&u2, &out_s);
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("not empty"),
        "{body}"
    );

    // After the backup: K superseded through node 2 (a write identity node 2 issues after
    // the snapshot), and the doomed keys deleted everywhere.
    let (ctx, before) = read3(&u2, "k").expect("k");
    assert_eq!(before, set(&["v1"]));
    put_ok(&u2, "k", "v2", "?w=3", Some(&ctx));
    for (i, k) in doomed.iter().enumerate() {
        let r = client()
            .delete(format!("{}/v1/kv/{B}/{k}?w=3", urls[i % 3]))
            .send()
            .expect("delete");
        assert_eq!(r.status(), 204, "delete {k}");
    }

    // Node 2 loses its disk and is restored from the backup.
    c.node(2).kill();
    let dir = c.node(2).data_dir.clone();
    let _ = std::fs::copy(
        dir.join("server.log"),
        c.dir.path().join("node2-before.log"),
    );
    std::fs::remove_dir_all(&dir).expect("wipe node 2");
    let dir_s = dir.to_str().unwrap().to_string();
    let o = riftkv(&["admin", "restore", "--from", &out_s, "--data-dir", &dir_s]);
    assert!(o.status.success(), "restore: {}", text(&o.stderr));
    let line = text(&o.stdout);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("restored node node2"), "{line}");
    c.node(2).start();
    c.wait_settled(3, SETTLE);
    wait_all_reachable(&c, 2, SETTLE);
    wait_all_reachable(&c, 1, SETTLE);

    // The restore brought back the values deleted since the snapshot (so (b) below is not
    // vacuous): node 2's own copies still hold them until a read or anti-entropy repairs them.
    let stale = doomed
        .iter()
        .filter(|k| local(&u2, B, k).is_some_and(|v| values_of(&v) == set(&["alive"])))
        .count();
    assert!(stale > 0, "node 2 restored the pre-delete values");
    // Node 2's own copies of the long values came back from the snapshot's blob files.
    for i in 0..10 {
        let k = format!("big-{i}");
        let v = local(&u2, B, &k).unwrap_or_else(|| panic!("node 2 lost {k}"));
        assert_eq!(values_of(&v), set(&[big(i).as_str()]), "{k}");
    }

    // (c) Node 2 writes K again, without a context: its restored copy still names the
    // identity of v1, but v2 took the next counter of that identity after the snapshot. A new
    // incarnation gives v3 a fresh identity, so v2 and v3 are both kept as siblings.
    put_ok(&u2, "k", "v3", "?w=3", None);
    let (_, after) = read3(&c.url(1), "k").expect("k after restore");
    assert_eq!(
        after,
        set(&["v2", "v3"]),
        "the acknowledged post-backup write v2 must survive the restore"
    );
    assert!(
        c.node(2).log().contains("new incarnation"),
        "the restored node starts a new incarnation"
    );

    // (a) Every acknowledged write is readable at r=3.
    for (i, (k, v)) in acked.iter().enumerate() {
        let got = read3(&urls[i % 3], k).map(|(_, vals)| vals);
        assert_eq!(got, Some(set(&[v.as_str()])), "acknowledged {k}");
    }

    // (b) No deleted key comes back, and node 2's own copy ends up without a live value.
    for (i, k) in doomed.iter().enumerate() {
        assert_eq!(read3(&urls[i % 3], k), None, "deleted {k} came back");
    }
    for k in &doomed {
        eventually(
            SETTLE,
            &format!("node 2 holds no live value of {k}"),
            || {
                let _ = read3(&c.url(1), k);
                local(&u2, B, k).is_none_or(|v| values_of(&v).is_empty())
            },
        );
    }

    // Refusals of the CLI: one line, exit code 2.
    let refused = |args: &[&str], what: &str| {
        let o = riftkv(args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
        err
    };
    // Into the data dir of a node that has a database.
    let err = refused(
        &["admin", "restore", "--from", &out_s, "--data-dir", &dir_s],
        "occupied data dir",
    );
    assert!(err.contains("already holds a database"), "{err}");
    // A directory that is no backup.
    let fresh = c.dir.path().join("fresh");
    let fresh_s = fresh.to_str().unwrap().to_string();
    let err = refused(
        &[
            "admin",
            "restore",
            "--from",
            backups.to_str().unwrap(),
            "--data-dir",
            &fresh_s,
        ],
        "not a backup",
    );
    assert!(err.contains("backup.json"), "{err}");
    // A snapshot older than its tombstone grace: refused, then forced with a warning.
    let old = backups.join("old");
    copy_dir(&out, &old);
    let mut m: Value =
        serde_json::from_slice(&std::fs::read(old.join("backup.json")).unwrap()).unwrap();
    let grace = m["tombstone_grace_ms"].as_u64().unwrap();
    m["snapshot_ms"] = (m["snapshot_ms"].as_u64().unwrap() - grace - 60_000).into();
    std::fs::write(old.join("backup.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let old_s = old.to_str().unwrap().to_string();
    let err = refused(
        &["admin", "restore", "--from", &old_s, "--data-dir", &fresh_s],
        "too old",
    );
    assert!(err.contains("tombstone grace"), "{err}");
    assert!(!fresh.join("db").exists());
    let o = riftkv(&[
        "admin",
        "restore",
        "--from",
        &old_s,
        "--data-dir",
        &fresh_s,
        "--force",
    ]);
    assert!(o.status.success(), "forced: {}", text(&o.stderr));
    assert!(text(&o.stderr).contains("WARNING"), "{}", text(&o.stderr));
    assert!(fresh.join("db").is_dir());

    // The cluster-wide script backs every member up into a directory of its own.
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if have("curl") && have("jq") {
        let all = backups.join("all");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/backup-cluster.sh");
        let o = Command::new("bash")
            .args([script, &c.url(1), all.to_str().unwrap()])
            .output()
            .expect("run backup-cluster.sh");
        assert!(o.status.success(), "script: {}", text(&o.stderr));
        let mut made: Vec<String> = std::fs::read_dir(&all)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        made.sort();
        assert_eq!(made.len(), 3, "{made:?}");
        for (i, name) in made.iter().enumerate() {
            assert!(name.starts_with(&format!("node{}-", i + 1)), "{made:?}");
            let m = read_manifest(&all.join(name));
            assert_eq!(m["node_id"], format!("node{}", i + 1));
            assert!(all.join(name).join("db").is_dir());
        }
        // Usage errors: a relative OUTDIR.
        let o = Command::new("bash")
            .args([script, &c.url(1), "relative"])
            .output()
            .expect("run backup-cluster.sh");
        assert_eq!(o.status.code(), Some(2));
    } else {
        eprintln!("curl or jq missing: ops/backup-cluster.sh not exercised");
    }
}

fn read_manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("backup.json")).expect("backup.json"))
        .expect("manifest json")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
