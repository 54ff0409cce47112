//! Multi-process tests of the key-value API: quorum reads and writes, siblings, sloppy quorum
//! with hinted handoff, strict quorum, read repair, durability and bad input, against real
//! `riftkv server` processes.

mod common;

use common::*;
use reqwest::blocking::Response;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn round_trip_not_found_delete_and_listing() {
    let mut c = Cluster::start(3, ClusterOpts::default());
    c.wait_settled(3, Duration::from_secs(60));
    let u1 = c.url(1);
    let u2 = c.url(2);

    let r = put(&u1, "b", "k", b"hello", "", None);
    assert_eq!(r.status(), 204);
    assert!(r.headers().contains_key("x-riftkv-context"));
    let r = client().get(format!("{u2}/v1/kv/b/k")).send().expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert!(r.headers().contains_key("etag"));
    assert!(r.headers().contains_key("last-modified"));
    let ctx = r.headers()["x-riftkv-context"]
        .to_str()
        .expect("ctx")
        .to_string();
    assert_eq!(r.bytes().expect("body").as_ref(), b"hello");

    let r = client()
        .get(format!("{u1}/v1/kv/b/missing"))
        .send()
        .expect("get");
    assert_eq!(r.status(), 404);
    let body: Value = r.json().expect("error json");
    assert!(body["error"].is_string() && body["message"].is_string());

    let r = client()
        .delete(format!("{u1}/v1/kv/b/k"))
        .header("x-riftkv-context", &ctx)
        .send()
        .expect("delete");
    assert_eq!(r.status(), 204);
    let r = client().get(format!("{u2}/v1/kv/b/k")).send().expect("get");
    assert_eq!(r.status(), 404);
    assert!(
        r.headers().contains_key("x-riftkv-context"),
        "tombstone context is returned"
    );

    // Listing 2500 keys across pages, in byte order, with deleted keys excluded.
    let mut expected: Vec<String> = (0..2500).map(|i| format!("key-{i:05}")).collect();
    for (i, k) in expected.iter().enumerate() {
        let r = put(&c.url(1 + i % 3), "list", k, b"v", "?w=1", None);
        assert_eq!(r.status(), 204, "put {k}");
    }
    expected.sort();
    let mut got: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = format!("{u1}/v1/kv/list?keys=true&limit=700");
        if let Some(a) = &after {
            url.push_str(&format!("&after={}", seg(a)));
        }
        let v: Value = client()
            .get(url)
            .send()
            .expect("list")
            .json()
            .expect("list json");
        pages += 1;
        got.extend(
            v["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .map(|k| k.as_str().expect("key").to_string()),
        );
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
        assert!(pages < 20, "listing does not terminate");
    }
    assert_eq!(pages, 4);
    assert_eq!(got, expected);
}

/// A value written with a TTL reads as missing on every node once expired, also after a
/// restart (RocksDB holds the expiry in the version), and leaves the listing.
#[test]
fn expired_values_read_as_missing_on_every_node() {
    let mut c = Cluster::start(3, ClusterOpts::default());
    c.wait_settled(3, Duration::from_secs(60));
    let r = put(&c.url(1), "ttl", "k", b"short-lived", "?ttl=1&w=3", None);
    assert_eq!(r.status(), 204);
    let r = put(&c.url(2), "ttl", "stays", b"v", "?w=3", None);
    assert_eq!(r.status(), 204);
    for i in 1..=3 {
        let r = get_json(&c.url(i), "ttl", "k", "");
        assert_eq!(r.status(), 200, "node {i} before expiry");
    }
    std::thread::sleep(Duration::from_millis(1200));
    c.node(3).terminate();
    c.node(3).start();
    for i in [1, 3] {
        wait_all_reachable(&c, i, Duration::from_secs(60));
    }
    for i in 1..=3 {
        let r = get_json(&c.url(i), "ttl", "k", "");
        assert_eq!(r.status(), 404, "node {i} after expiry");
        assert!(r.headers().contains_key("x-riftkv-context"));
        let local = local(&c.url(i), "ttl", "k").expect("the copy is kept until reaped");
        assert!(values_of(&local).is_empty(), "node {i}: {local}");
        let keys: Value = client()
            .get(format!("{}/v1/kv/ttl?keys=true", c.url(i)))
            .send()
            .expect("list")
            .json()
            .expect("list json");
        assert_eq!(keys["keys"], serde_json::json!(["stays"]), "node {i}");
    }
}

#[test]
fn siblings_and_their_resolution() {
    let mut c = Cluster::start(3, ClusterOpts::default());
    c.wait_settled(3, Duration::from_secs(60));
    let u = c.url(1);
    assert_eq!(put(&u, "s", "cart", b"apple", "", None).status(), 204);
    assert_eq!(put(&c.url(2), "s", "cart", b"pear", "", None).status(), 204);

    let r = get_json(&u, "s", "cart", "?r=3");
    assert_eq!(r.status(), 300);
    let v: Value = r.json().expect("json");
    assert_eq!(
        values_of(&v),
        BTreeSet::from([b"apple".to_vec(), b"pear".to_vec()])
    );
    let ctx = v["context"].as_str().expect("context").to_string();

    let r = client()
        .get(format!("{u}/v1/kv/s/cart?r=3"))
        .send()
        .expect("get");
    assert_eq!(r.status(), 300);
    let ct = r.headers()["content-type"]
        .to_str()
        .expect("ct")
        .to_string();
    assert!(ct.starts_with("multipart/mixed"), "{ct}");
    let boundary = ct
        .split("boundary=")
        .nth(1)
        .expect("boundary")
        .trim_matches('"')
        .to_string();
    let body = String::from_utf8_lossy(&r.bytes().expect("body")).to_string();
    assert_eq!(body.matches(&format!("--{boundary}\r\n")).count(), 2);
    assert!(body.contains("apple") && body.contains("pear"));
    assert!(body.contains(&format!("--{boundary}--")));

    assert_eq!(
        put(&u, "s", "cart", b"apple+pear", "", Some(&ctx)).status(),
        204
    );
    let r = get_json(&c.url(3), "s", "cart", "?r=3");
    assert_eq!(r.status(), 200);
    assert_eq!(
        values_of(&r.json().expect("json")),
        BTreeSet::from([b"apple+pear".to_vec()])
    );
}

#[test]
fn a_context_read_from_another_key_is_refused() {
    let mut c = Cluster::start(3, ClusterOpts::default());
    c.wait_settled(3, Duration::from_secs(60));
    let u = c.url(1);
    // B holds two siblings, written through two coordinators.
    assert_eq!(put(&u, "bind", "b", b"pear", "?w=3", None).status(), 204);
    assert_eq!(
        put(&c.url(2), "bind", "b", b"plum", "?w=3", None).status(),
        204
    );
    assert_eq!(
        put(&c.url(3), "bind", "a", b"apple", "?w=3", None).status(),
        204
    );
    let r = get_json(&u, "bind", "a", "?r=3");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().expect("json");
    let ctx_a = v["context"].as_str().expect("context").to_string();

    // A's context on B, through every node (forwarded or coordinated there): refused.
    for i in 1..=3 {
        let r = put(&c.url(i), "bind", "b", b"apple", "", Some(&ctx_a));
        assert_eq!(r.status(), 400, "node {i}");
        let body: Value = r.json().expect("error json");
        assert_eq!(body["error"], "invalid_context", "node {i}: {body}");
        let msg = body["message"].as_str().unwrap_or("");
        assert!(msg.contains("another"), "node {i}: {msg}");
    }
    let r = client()
        .delete(format!("{u}/v1/kv/bind/b"))
        .header("x-riftkv-context", &ctx_a)
        .send()
        .expect("delete");
    assert_eq!(r.status(), 400);

    // B's siblings are untouched on every replica.
    let r = get_json(&c.url(3), "bind", "b", "?r=3");
    assert_eq!(r.status(), 300);
    assert_eq!(
        values_of(&r.json().expect("json")),
        BTreeSet::from([b"pear".to_vec(), b"plum".to_vec()])
    );
    for i in 1..=3 {
        let copy = local(&c.url(i), "bind", "b").expect("each node holds a copy");
        assert_eq!(
            values_of(&copy),
            BTreeSet::from([b"pear".to_vec(), b"plum".to_vec()]),
            "node {i}"
        );
    }
}

#[test]
fn bucket_n_above_the_ring_replication_is_refused_on_every_node() {
    let mut c = Cluster::start(3, ClusterOpts::default());
    c.wait_settled(3, Duration::from_secs(60));
    let props_put = |i: usize, body: &str| {
        client()
            .put(format!("{}/v1/buckets/wide/props", c.url(i)))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .expect("props put")
    };
    for i in 1..=3 {
        let r = props_put(i, r#"{"n": 5}"#);
        assert_eq!(r.status(), 400, "node {i}");
        let v: Value = r.json().expect("error json");
        assert_eq!(v["error"], "bad_request", "node {i}: {v}");
        assert_eq!(v["limit"], 3, "node {i}: {v}");
        let msg = v["message"].as_str().unwrap_or("");
        assert!(msg.contains("replication of 3"), "node {i}: {msg}");
    }
    let r = props_put(2, r#"{"n": 2}"#);
    assert_eq!(r.status(), 200);
    let v: Value = r.json().expect("props json");
    assert_eq!(v["n"], 2);
    eventually(Duration::from_secs(20), "every node shows n = 2", || {
        (1..=3).all(|i| {
            client()
                .get(format!("{}/v1/buckets/wide/props", c.url(i)))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["n"] == 2)
        })
    });
}

fn five_node_outage() -> (Cluster, String, Vec<String>) {
    let mut c = Cluster::start(5, ClusterOpts::default());
    c.wait_settled(5, Duration::from_secs(90));
    let key = "outage-key".to_string();
    let (primaries, _) = preflist(&c.url(1), "o", &key);
    assert_eq!(primaries.len(), 3);
    (c, key, primaries)
}

#[test]
fn sloppy_quorum_with_hinted_handoff_and_strict_quorum() {
    let (mut c, key, primaries) = five_node_outage();
    let keeper = c.index_of(&primaries[0]);
    let down: Vec<String> = primaries[1..].to_vec();
    for id in &down {
        let i = c.index_of(id);
        c.node(i).terminate();
    }
    wait_unreachable(&c, keeper, &down);
    let u = c.url(keeper);

    // Strict quorum cannot be met by one primary.
    let r = put(&u, "o", &key, b"strict", "?pw=2", None);
    assert_eq!(r.status(), 503);
    let v: Value = r.json().expect("json");
    assert_eq!(v["error"], "quorum_unavailable");
    assert_eq!(v["needed"], 2);
    assert_eq!(v["got"], 1);
    // Reads count fallbacks' answers (sloppy), so the strict form is pr.
    let r = get_json(&u, "o", &key, "?pr=2");
    assert_eq!(r.status(), 503);
    let v: Value = r.json().expect("json");
    assert_eq!(
        (v["needed"].as_u64(), v["got"].as_u64()),
        (Some(2), Some(1))
    );

    // Sloppy quorum: fallbacks take the write and hold hints.
    let r = put(&u, "o", &key, b"sloppy", "?w=2", None);
    assert_eq!(r.status(), 204);
    let (_, serving) = preflist(&u, "o", &key);
    let fallbacks: Vec<&String> = serving.iter().filter(|s| !primaries.contains(s)).collect();
    assert!(!fallbacks.is_empty(), "fallbacks serve: {serving:?}");
    eventually(Duration::from_secs(10), "a fallback holds hints", || {
        fallbacks
            .iter()
            .any(|f| hints_pending(&c.url(c.index_of(f))) > 0)
    });

    for id in &down {
        let i = c.index_of(id);
        c.node(i).start();
    }
    eventually(
        Duration::from_secs(60),
        "hints delivered to the primaries",
        || {
            down.iter().all(|id| {
                local(&c.url(c.index_of(id)), "o", &key)
                    .is_some_and(|v| values_of(&v).contains(b"sloppy".as_slice()))
            })
        },
    );
    eventually(Duration::from_secs(30), "no hints pending anywhere", || {
        (1..=5).all(|i| hints_pending(&c.url(i)) == 0)
    });
}

#[test]
fn read_repair_fills_a_replica_that_missed_a_write() {
    let mut opts = ClusterOpts::default();
    opts.extra_args.push("--hinted-handoff".into());
    opts.extra_args.push("false".into());
    let mut c = Cluster::start(3, opts);
    c.wait_settled(3, Duration::from_secs(60));
    let key = "rr";
    let (primaries, _) = preflist(&c.url(1), "r", key);
    let victim = c.index_of(&primaries[2]);
    let other = c.index_of(&primaries[0]);
    c.node(victim).terminate();
    wait_unreachable(&c, other, &[primaries[2].clone()]);
    assert_eq!(
        put(&c.url(other), "r", key, b"repaired", "?w=2", None).status(),
        204
    );
    // With one of three nodes down there is no fallback: r=3 cannot be met.
    let r = get_json(&c.url(other), "r", key, "?r=3");
    assert_eq!(r.status(), 503);
    let v: Value = r.json().expect("json");
    assert_eq!(v["error"], "quorum_unavailable");
    assert_eq!(
        (v["needed"].as_u64(), v["got"].as_u64()),
        (Some(3), Some(2))
    );
    c.node(victim).start();
    c.wait_settled(3, Duration::from_secs(60));
    wait_all_reachable(&c, other, Duration::from_secs(30));
    assert!(
        local(&c.url(victim), "r", key).is_none(),
        "no hinted handoff in this test"
    );
    // r=3: a read asks only its first r replicas, and this one must reach the stale one.
    let r = get_json(&c.url(other), "r", key, "?r=3");
    assert_eq!(r.status(), 200);
    eventually(
        Duration::from_secs(5),
        "read repair reached the replica",
        || {
            local(&c.url(victim), "r", key)
                .is_some_and(|v| values_of(&v).contains(b"repaired".as_slice()))
        },
    );
}

#[test]
fn acknowledged_writes_survive_sigkill_of_a_replica() {
    let mut c = Cluster::start(3, ClusterOpts::default());
    c.wait_settled(3, Duration::from_secs(60));
    let u1 = c.url(1);
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    for round in 0..300 {
        if round == 100 {
            c.node(3).kill();
        }
        if round == 200 {
            c.node(3).start();
        }
        let key = format!("d{}", round % 60);
        let value = format!("v{round}").into_bytes();
        // Read-modify-write with the context, so each acknowledged write supersedes the last.
        let ctx = get_json(&u1, "dur", &key, "")
            .headers()
            .get("x-riftkv-context")
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let r = client()
            .put(format!("{u1}/v1/kv/dur/{key}?w=2"))
            .header("content-type", "text/plain")
            .headers({
                let mut h = reqwest::header::HeaderMap::new();
                if let Some(ctx) = &ctx {
                    h.insert("x-riftkv-context", ctx.parse().expect("header"));
                }
                h
            })
            .body(value.clone())
            .send();
        if let Ok(r) = r
            && r.status() == 204
        {
            acked.retain(|(k, _)| k != &key);
            acked.push((key, value));
        }
    }
    c.wait_settled(3, Duration::from_secs(60));
    // Settled ignores unreachable members: also wait until node 2 sees node 3 again.
    wait_all_reachable(&c, 2, Duration::from_secs(30));
    assert!(acked.len() >= 50, "most writes were acknowledged");
    for (key, value) in &acked {
        // This test is about loss, not availability: a 503 (a replica not yet routable after
        // its restart) is retried briefly; a 404 or a missing value fails at once.
        let mut r = get_json(&c.url(2), "dur", key, "?r=3");
        for _ in 0..20 {
            if r.status() != 503 {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
            r = get_json(&c.url(2), "dur", key, "?r=3");
        }
        assert!(
            r.status() == 200 || r.status() == 300,
            "{key}: {}",
            r.status()
        );
        let vals = values_of(&r.json().expect("json"));
        assert!(
            vals.contains(value),
            "{key}: last acknowledged value {value:?} not in {vals:?}"
        );
    }
}

#[test]
fn bad_input_gets_4xx_json_and_never_a_500() {
    let mut c = Cluster::start(3, ClusterOpts::default());
    c.wait_settled(3, Duration::from_secs(60));
    let u = c.url(1);
    let code_of = |r: Response| -> (u16, String) {
        let s = r.status().as_u16();
        let v: Value = r.json().unwrap_or(Value::Null);
        (s, v["error"].as_str().unwrap_or("").to_string())
    };
    let cases: Vec<(Response, u16, &str)> = vec![
        (
            put(&u, "b", "k", b"x", "", Some("garbage!!")),
            400,
            "invalid_context",
        ),
        (
            put(
                &u,
                "b",
                "k",
                b"x",
                "",
                Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ),
            400,
            "invalid_context",
        ),
        (put(&u, "b", "k", b"x", "?w=4", None), 400, "bad_request"),
        (get_json(&u, "b", "k", "?r=0"), 400, "bad_request"),
        (get_json(&u, "b", "k", "?r=most"), 400, "bad_request"),
        (put(&u, "b", "k", b"x", "?dw=-1", None), 400, "bad_request"),
        (
            put(&u, &"b".repeat(256), "k", b"x", "", None),
            400,
            "bad_request",
        ),
        (
            put(&u, "b", &"k".repeat(1025), b"x", "", None),
            400,
            "bad_request",
        ),
        (
            client()
                .put(format!("{u}/v1/buckets/b/props"))
                .body("not json")
                .send()
                .expect("props"),
            400,
            "bad_request",
        ),
        (
            client()
                .get(format!("{u}/v1/kv/b?keys=true&limit=10001"))
                .send()
                .expect("list"),
            400,
            "bad_request",
        ),
    ];
    for (i, (r, status, code)) in cases.into_iter().enumerate() {
        let (s, e) = code_of(r);
        assert_eq!((s, e.as_str()), (status, code), "case {i}");
    }
    // A value over the limit is refused from its Content-Length alone, before the body is
    // read (so the answer cannot race with the upload): only the headers are sent here.
    {
        use std::io::{Read, Write};
        let addr = u.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "PUT /v1/kv/b/big HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            8 * 1024 * 1024 + 1
        )
        .expect("write");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"too_large\""), "{answer}");
    }
    // A forged context: a real token with one character changed.
    let r = put(&u, "b", "k", b"x", "", None);
    let token = r.headers()["x-riftkv-context"]
        .to_str()
        .expect("ctx")
        .to_string();
    let mut forged: Vec<char> = token.chars().collect();
    let mid = forged.len() / 2;
    forged[mid] = if forged[mid] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let (s, e) = code_of(put(&u, "b", "k", b"x", "", Some(&forged)));
    assert_eq!((s, e.as_str()), (400, "invalid_context"));

    // A few hundred random malformed requests never produce a 500 or a crash.
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let methods = ["GET", "PUT", "POST", "DELETE", "PATCH"];
    let params = [
        "r",
        "w",
        "dw",
        "pr",
        "pw",
        "timeout",
        "keys",
        "limit",
        "after",
        "returnbody",
    ];
    let junk = [
        "",
        "-1",
        "0",
        "99999999999999999999",
        "quorum",
        "all",
        "one",
        "%00",
        "x",
        "1.5",
    ];
    for _ in 0..300 {
        let m = methods[rng.gen_range(0..methods.len())];
        let mut path = match rng.gen_range(0..6) {
            0 => format!(
                "/v1/kv/{}/{}",
                seg(&rand_str(&mut rng)),
                seg(&rand_str(&mut rng))
            ),
            1 => format!("/v1/kv/{}", seg(&rand_str(&mut rng))),
            2 => format!("/v1/buckets/{}/props", seg(&rand_str(&mut rng))),
            3 => format!(
                "/v1/admin/preflist/{}/{}",
                seg(&rand_str(&mut rng)),
                seg(&rand_str(&mut rng))
            ),
            4 => format!(
                "/v1/admin/local/{}/{}",
                seg(&rand_str(&mut rng)),
                seg(&rand_str(&mut rng))
            ),
            _ => format!("/v1/{}", seg(&rand_str(&mut rng))),
        };
        path.push('?');
        for _ in 0..rng.gen_range(0..4) {
            let p = params[rng.gen_range(0..params.len())];
            let j = junk[rng.gen_range(0..junk.len())];
            path.push_str(&format!("{p}={j}&"));
        }
        let mut req = client().request(m.parse().expect("method"), format!("{u}{path}"));
        if rng.gen_bool(0.3) {
            req = req.header("x-riftkv-context", rand_str(&mut rng));
        }
        if rng.gen_bool(0.2) {
            req = req.header("if-none-match", "*");
        }
        let body: Vec<u8> = (0..rng.gen_range(0..64)).map(|_| rng.r#gen()).collect();
        let r = req.body(body).send().expect("server answers");
        assert!(
            r.status().as_u16() < 500 || r.status().as_u16() == 503,
            "{m} {path}: {}",
            r.status()
        );
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if r.status().is_client_error() {
            assert!(
                ct.starts_with("application/json"),
                "{m} {path}: error body is JSON, got {ct}"
            );
        }
    }
    assert!(c.node(1).is_running(), "server survived");
    assert_eq!(
        client()
            .get(format!("{u}/health"))
            .send()
            .expect("health")
            .status(),
        200
    );
}

fn rand_str(rng: &mut rand::rngs::StdRng) -> String {
    use rand::Rng;
    let len = rng.gen_range(1..20);
    (0..len)
        .map(|_| char::from(rng.gen_range(32u8..127)))
        .collect()
}
