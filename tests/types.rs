//! Multi-process tests of the data types (CONTRACT §6): counters, sets and maps over HTTP on a
//! three-node cluster of real `riftkv server` processes, including a restart that reads the
//! bucket props back from disk.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

fn set_props(url: &str, bucket: &str, body: Value) -> Value {
    let r = client()
        .put(format!("{url}/v1/buckets/{bucket}/props"))
        .json(&body)
        .send()
        .expect("props");
    assert_eq!(r.status(), 200, "props of {bucket}");
    r.json().expect("props json")
}

fn datatype_of(url: &str, bucket: &str) -> Option<String> {
    let v: Value = client()
        .get(format!("{url}/v1/buckets/{bucket}/props"))
        .send()
        .ok()?
        .json()
        .ok()?;
    v["datatype"].as_str().map(str::to_string)
}

fn post(url: &str, path: &str, body: Value) -> reqwest::blocking::Response {
    client()
        .post(format!("{url}/v1/types/{path}"))
        .json(&body)
        .send()
        .expect("update")
}

fn read(url: &str, path: &str) -> Value {
    let r = client()
        .get(format!("{url}/v1/types/{path}?r=all"))
        .send()
        .expect("read");
    assert_eq!(r.status(), 200, "read {path}");
    r.json().expect("read json")
}

#[test]
fn counters_sets_and_maps_over_http() {
    let mut c = Cluster::start(3, ClusterOpts::default());
    c.wait_settled(3, Duration::from_secs(60));
    for (bucket, t) in [("hits", "counter"), ("tags", "set"), ("users", "map")] {
        set_props(&c.url(1), bucket, json!({ "datatype": t }));
    }
    for i in 1..=3 {
        let u = c.url(i);
        eventually(Duration::from_secs(30), "props gossiped", || {
            datatype_of(&u, "users").as_deref() == Some("map")
        });
    }

    // Counter: increments from threads through every node, all acknowledged, then one sum.
    let urls: Vec<String> = (1..=3).map(|i| c.url(i)).collect();
    let threads: Vec<_> = urls
        .iter()
        .cloned()
        .map(|u| {
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let r = post(&u, "hits/page?w=1", json!({ "increment": 2 }));
                    assert_eq!(r.status(), 204);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    let r = post(
        &c.url(2),
        "hits/page?returnbody=true",
        json!({ "increment": -1 }),
    );
    assert_eq!(r.status(), 200);
    let v: Value = r.json().expect("returnbody");
    assert_eq!(
        (v["type"].as_str(), v["value"].as_i64()),
        (Some("counter"), Some(119))
    );
    eventually(Duration::from_secs(30), "every node reads the sum", || {
        urls.iter().all(|u| read(u, "hits/page")["value"] == 119)
    });
    let r = client()
        .get(format!("{}/v1/types/hits/never", c.url(3)))
        .send()
        .expect("missing");
    assert_eq!(r.status(), 404);

    // Set: add through one node, remove with the context read through another.
    assert_eq!(
        post(&c.url(1), "tags/k", json!({ "add": ["b", "a", "c"] })).status(),
        204
    );
    let seen = read(&c.url(2), "tags/k");
    assert_eq!(seen["value"], json!(["a", "b", "c"]));
    let r = post(&c.url(3), "tags/k", json!({ "remove": ["a"] }));
    assert_eq!(r.status(), 400, "a remove without a context is refused");
    let body = json!({ "remove": ["a"], "context": seen["context"] });
    assert_eq!(post(&c.url(3), "tags/k", body).status(), 204);
    assert_eq!(read(&c.url(1), "tags/k")["value"], json!(["b", "c"]));

    // Map: nested fields of every type; removing a field with the context of a read.
    let op = json!({ "update": {
        "visits": { "counter": { "increment": 3 } },
        "roles": { "set": { "add": ["admin"] } },
        "name": { "register": { "assign": "ada" } },
        "active": { "flag": "enable" },
        "address": { "map": { "update": { "city": { "register": { "assign": "paris" } } } } }
    }});
    assert_eq!(post(&c.url(1), "users/ada", op).status(), 204);
    let seen = read(&c.url(3), "users/ada");
    assert_eq!(
        seen["value"],
        json!({ "visits": { "counter": 3 }, "roles": { "set": ["admin"] },
            "name": { "register": "ada" }, "active": { "flag": true },
            "address": { "map": { "city": { "register": "paris" } } } })
    );
    let body = json!({ "remove": ["roles"], "context": seen["context"],
        "update": { "visits": { "counter": { "increment": 1 } } } });
    assert_eq!(post(&c.url(2), "users/ada", body).status(), 204);
    let v = read(&c.url(1), "users/ada");
    assert!(v["value"].get("roles").is_none(), "{v}");
    assert_eq!(v["value"]["visits"], json!({ "counter": 4 }));

    // Plain-value endpoints refuse a typed bucket; type endpoints refuse a plain one.
    let r = put(&c.url(1), "hits", "page", b"x", "", None);
    assert_eq!(r.status(), 400);
    let r = post(&c.url(1), "plain/k", json!({ "increment": 1 }));
    assert_eq!(r.status(), 400);
    // Changing the type of a bucket that holds data is a conflict.
    let r = client()
        .put(format!("{}/v1/buckets/hits/props", c.url(1)))
        .json(&json!({ "datatype": "set" }))
        .send()
        .expect("props");
    assert_eq!(r.status(), 409);

    // The CLI: counter, set and map subcommands against the same cluster.
    let cli = |args: &[&str]| -> String {
        let out = std::process::Command::new(BIN)
            .args(args)
            .args(["--url", &c.url(3)])
            .output()
            .expect("run riftkv");
        assert!(
            out.status.success(),
            "riftkv {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        cli(&["counter", "hits", "page", "--increment", "-19"]),
        "100"
    );
    assert_eq!(cli(&["counter", "hits", "page"]), "100");
    assert_eq!(
        cli(&["set", "tags", "cli", "--add", "x", "--add", "y"]),
        r#"["x","y"]"#
    );
    // A remove without --context removes what a read just before it saw.
    assert_eq!(cli(&["set", "tags", "cli", "--remove", "x"]), r#"["y"]"#);
    let op = r#"{"update": {"n": {"counter": {"increment": 7}}}}"#;
    assert_eq!(cli(&["map", "users", "cli", op]), r#"{"n":{"counter":7}}"#);
    let full: Value =
        serde_json::from_str(&cli(&["map", "users", "cli", "-o", "json"])).expect("json output");
    assert_eq!(full["type"], "map");
    assert!(full["context"].is_string());

    // A restarted node reads its props (and the data) back from its data dir.
    c.node(2).terminate();
    c.node(2).start();
    c.wait_settled(3, Duration::from_secs(60));
    wait_all_reachable(&c, 2, Duration::from_secs(30));
    assert_eq!(datatype_of(&c.url(2), "hits").as_deref(), Some("counter"));
    assert_eq!(read(&c.url(2), "hits/page")["value"], 100);
}
