//! Authentication and authorization (CONTRACT §5) on real `riftkv server` processes: every
//! endpoint against every kind of caller, a revoke spreading by gossip, the startup refusal of
//! an open API off loopback, and the audit log that never holds a token.

mod common;

use common::*;
use reqwest::blocking::RequestBuilder;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "bootstrap-admin-token-0123456789";

/// A cluster of `n` nodes with auth on, bootstrapped with [`ADMIN_TOKEN`], settled.
fn auth_cluster(n: usize) -> Cluster {
    auth_cluster_with(n, &[])
}

/// [`auth_cluster`] with more server flags.
fn auth_cluster_with(n: usize, extra: &[&str]) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).expect("token file");
    let mut opts = ClusterOpts::default();
    opts.extra_args.extend([
        "--auth".to_string(),
        "on".into(),
        "--bootstrap-token-file".into(),
        token_file.display().to_string(),
    ]);
    opts.extra_args.extend(extra.iter().map(|a| a.to_string()));
    let c = Cluster::start(n, opts);
    // The file is read at start; keep it until every node has started.
    for i in 1..=n {
        eventually(Duration::from_secs(60), "node settled", || {
            call(
                client().get(format!("{}/v1/admin/status", c.url(i))),
                Some(ADMIN_TOKEN),
            )
            .map(|(code, body)| {
                code == 200
                    && body["ring_settled"] == true
                    && body["members"].as_array().map(Vec::len) == Some(n)
            })
            .unwrap_or(false)
        });
    }
    drop(dir);
    c
}

/// Sends a request with an optional bearer token: (status, JSON body or null).
fn call(req: RequestBuilder, token: Option<&str>) -> Option<(u16, Value)> {
    let req = match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let resp = req.send().ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.json().unwrap_or(Value::Null)))
}

/// An admin call that must succeed; returns the JSON body.
fn admin(url: &str, method: &str, path: &str, body: Value) -> Value {
    let req = client()
        .request(method.parse().expect("method"), format!("{url}{path}"))
        .json(&body);
    let (code, body) = call(req, Some(ADMIN_TOKEN)).expect("admin call");
    assert!((200..300).contains(&code), "{method} {path}: {code} {body}");
    body
}

/// A new token of `user`, with an optional lifetime.
fn token_of(url: &str, user: &str, ttl: Option<u64>) -> String {
    let body = match ttl {
        Some(t) => json!({ "ttl_seconds": t }),
        None => json!({}),
    };
    let t = admin(url, "POST", &format!("/v1/admin/users/{user}/tokens"), body);
    t["token"].as_str().expect("token").to_string()
}

fn grant(url: &str, action: &str, subject: &str, bucket: &str, perms: &[&str]) {
    admin(
        url,
        "POST",
        "/v1/admin/grants",
        json!({"action": action, "subject": subject, "bucket": bucket, "permissions": perms}),
    );
}

/// What a caller should get from an endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Unauthorized,
    Forbidden,
    /// Anything but 401 and 403.
    Allowed,
}

#[test]
fn every_endpoint_answers_each_kind_of_caller_as_the_contract_says() {
    let c = auth_cluster(1);
    let url = c.url(1);
    // `full` holds every permission the endpoints need; `nogrant` none.
    admin(
        &url,
        "PUT",
        "/v1/admin/users/full",
        json!({"groups": ["ops"]}),
    );
    admin(&url, "PUT", "/v1/admin/users/nogrant", json!({}));
    grant(
        &url,
        "grant",
        "user:full",
        "b",
        &["get", "put", "delete", "list"],
    );
    // Through a group, and on `*`.
    grant(
        &url,
        "grant",
        "group:ops",
        "*",
        &["props", "admin", "metrics"],
    );
    let full = token_of(&url, "full", None);
    let nogrant = token_of(&url, "nogrant", None);
    let expired = token_of(&url, "full", Some(1));
    let wrong = "not-a-token-of-this-cluster-0123456789";
    // One node: the bucket keeps one replica, so writes can meet their quorum.
    let (code, _) = call(
        client()
            .put(format!("{url}/v1/buckets/b/props"))
            .body(r#"{"n": 1}"#),
        Some(&full),
    )
    .expect("props");
    assert_eq!(code, 200);
    let (code, _) = call(
        client().put(format!("{url}/v1/kv/b/existing")).body("v"),
        Some(&full),
    )
    .expect("seed put");
    assert_eq!(code, 204);
    admin(&url, "PUT", "/v1/admin/users/victim", json!({}));
    std::thread::sleep(Duration::from_millis(1500));

    use Expect::*;
    // (method, path, body): a token without the grant is refused everywhere but the document.
    let endpoints: [(&str, &str, &str); 28] = [
        ("GET", "/v1/kv/b/existing", ""),
        ("GET", "/v1/kv/b/missing", ""),
        ("PUT", "/v1/kv/b/k1", "v"),
        ("POST", "/v1/kv/b/k2", "v"),
        ("DELETE", "/v1/kv/b/k3", ""),
        ("GET", "/v1/kv/b?keys=true", ""),
        ("GET", "/v1/types/b/k", ""),
        ("POST", "/v1/types/b/k", r#"{"increment": 1}"#),
        ("GET", "/v1/buckets/b/props", ""),
        ("PUT", "/v1/buckets/b/props", r#"{"r": "quorum"}"#),
        ("GET", "/v1/admin/status", ""),
        ("GET", "/v1/admin/ring", ""),
        ("GET", "/v1/admin/preflist/b/k", ""),
        ("GET", "/v1/admin/local/b/existing", ""),
        ("POST", "/v1/admin/leave", ""),
        ("POST", "/v1/admin/remove/nobody", ""),
        ("GET", "/v1/admin/plan", ""),
        // Nothing is staged: 409 after the permission check.
        ("POST", "/v1/admin/plan/commit", ""),
        // Refused as relative after the permission check: writes nothing.
        ("POST", "/v1/admin/backup", r#"{"out": "relative"}"#),
        ("GET", "/v1/admin/users", ""),
        ("PUT", "/v1/admin/users/someone", r#"{"groups": []}"#),
        ("DELETE", "/v1/admin/users/nobody", ""),
        ("POST", "/v1/admin/users/victim/tokens", "{}"),
        ("DELETE", "/v1/admin/users/victim/tokens/nope", ""),
        (
            "POST",
            "/v1/admin/grants",
            r#"{"action": "grant", "subject": "user:victim", "bucket": "x", "permissions": ["get"]}"#,
        ),
        ("GET", "/v1/admin/grants", ""),
        ("GET", "/metrics", ""),
        ("GET", "/v1/openapi.json", ""),
    ];
    let callers: [(&str, Option<&str>); 5] = [
        ("no token", None),
        ("wrong token", Some(wrong)),
        ("expired token", Some(&expired)),
        ("token without the grant", Some(&nogrant)),
        ("token with the grant", Some(&full)),
    ];
    for (method, path, payload) in endpoints {
        let without_grant = if path == "/v1/openapi.json" {
            Allowed
        } else {
            Forbidden
        };
        for (who, token) in &callers {
            let expect = match *who {
                "token without the grant" => without_grant,
                "token with the grant" => Allowed,
                _ => Unauthorized,
            };
            let mut req = client().request(method.parse().expect("method"), format!("{url}{path}"));
            if !payload.is_empty() {
                req = req.header("content-type", "application/json").body(payload);
            }
            let req = match token {
                Some(t) => req.bearer_auth(t),
                None => req,
            };
            let resp = req.send().expect("request");
            let code = resp.status().as_u16();
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let got = match code {
                401 => Unauthorized,
                403 => Forbidden,
                _ => Allowed,
            };
            assert_eq!(got, expect, "{method} {path} with {who}: {code}");
            if code == 401 {
                assert_eq!(challenge.as_deref(), Some("Bearer"), "{method} {path}");
                let b: Value = resp.json().expect("json error body");
                assert_eq!(b["error"], "unauthorized");
            } else if code == 403 {
                let b: Value = resp.json().expect("json error body");
                assert_eq!(b["error"], "forbidden");
            }
        }
    }
    // Probes need nothing, whoever asks.
    for path in ["/health", "/ready"] {
        for (who, token) in &callers {
            let (code, _) = call(client().get(format!("{url}{path}")), *token).expect("probe");
            assert_eq!(code, 200, "{path} with {who}");
        }
    }
    // A refusal says nothing about the key: the same answer for an existing and a missing one.
    for token in [None, Some(nogrant.as_str())] {
        let a = call(client().get(format!("{url}/v1/kv/b/existing")), token);
        let b = call(client().get(format!("{url}/v1/kv/b/missing")), token);
        assert_eq!(a, b, "token {token:?}");
    }

    // The audit log names refusals and admin actions, and never a token.
    let log = c.servers[0].log();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains(" audit:")).collect();
    assert!(!audit.is_empty(), "no audit line: {}", tail(&log, 20));
    for field in [
        "who=",
        "action=",
        "resource=",
        "source=",
        "request_id=",
        "status=",
    ] {
        assert!(
            audit.iter().all(|l| l.contains(field)),
            "{field}: {audit:?}"
        );
    }
    // An admin action names its caller; a refusal without a token names no one.
    assert!(
        audit
            .iter()
            .any(|l| l.contains("full") && l.contains("/v1/admin/users/{name}")),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("anonymous") && l.contains("status=401"))
    );
    assert!(
        log.contains("status=401") && log.contains("status=403"),
        "{}",
        tail(&log, 20)
    );
    for t in [
        ADMIN_TOKEN,
        full.as_str(),
        nogrant.as_str(),
        expired.as_str(),
        wrong,
    ] {
        assert!(!log.contains(t), "a token is in the log");
    }
}

#[test]
fn a_revoked_grant_is_refused_on_every_node_within_a_few_gossip_rounds() {
    let c = auth_cluster(3);
    let url1 = c.url(1);
    admin(&url1, "PUT", "/v1/admin/users/app", json!({}));
    grant(&url1, "grant", "user:app", "b", &["get"]);
    let token = token_of(&url1, "app", None);
    let code_on = |i: usize| {
        call(
            client().get(format!("{}/v1/kv/b/k", c.url(i))),
            Some(&token),
        )
        .map(|(code, _)| code)
    };
    // The grant reaches every node (404: allowed, nothing stored).
    for i in 1..=3 {
        eventually(Duration::from_secs(10), "grant spread", || {
            code_on(i) == Some(404)
        });
    }
    grant(&url1, "revoke", "user:app", "b", &["get"]);
    let revoked = Instant::now();
    // Gossip runs every 200 ms: five rounds at most (one or two in practice).
    let bound = Duration::from_millis(1000);
    for i in 2..=3 {
        loop {
            if code_on(i) == Some(403) {
                break;
            }
            assert!(
                revoked.elapsed() < bound,
                "node {i} still allows the revoked grant after {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!("revoke seen on every node after {:?}", revoked.elapsed());
    assert_eq!(code_on(1), Some(403));
}

#[test]
fn an_api_off_loopback_with_the_default_auth_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = format!("{}:8800", unique_loopback());
    let out = std::process::Command::new(BIN)
        .args([
            "server",
            "--api-addr",
            "192.0.2.10:8700",
            "--peer-addr",
            &peer,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("RIFTKV_AUTH")
        .output()
        .expect("run riftkv server");
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("set --auth on, or --auth off to serve an open API on purpose"),
        "{err}"
    );
}

/// Runs the real binary: (exit code, stdout, stderr).
fn cli(args: &[&str], env_token: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args)
        .env_remove("RIFTKV_TOKEN")
        .env_remove("RIFTKV_URL");
    if let Some(t) = env_token {
        cmd.env("RIFTKV_TOKEN", t);
    }
    let out = cmd.output().expect("run riftkv");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_manages_users_and_sends_its_token() {
    let c = auth_cluster(1);
    let url = c.url(1);
    let admin_cli = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--url", &url, "--token", ADMIN_TOKEN]);
        let (code, out, err) = cli(&a, None);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        out
    };
    admin_cli(&["user", "add", "alice", "--group", "ops"]);
    let token = admin_cli(&["user", "token", "alice"]).trim().to_string();
    assert!(token.len() >= 43, "{token}");
    admin_cli(&["user", "grant", "user:alice", "b", "put", "get"]);
    let list = admin_cli(&["user", "list"]);
    assert!(list.contains("alice") && list.contains("ops") && !list.contains(&token));

    // The token from the flag, then from RIFTKV_TOKEN.
    let (code, _, err) = cli(
        &[
            "put", "b", "k", "v", "--w", "1", "--url", &url, "--token", &token,
        ],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = cli(
        &["get", "b", "k", "--r", "1", "-o", "value", "--url", &url],
        Some(&token),
    );
    assert_eq!((code, out.as_str()), (Some(0), "v"), "{err}");
    // Without a token, and with the grant revoked: a "no" from the server, exit 1.
    let (code, _, err) = cli(&["get", "b", "k", "--r", "1", "--url", &url], None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("401"), "{err}");
    admin_cli(&["user", "revoke", "user:alice", "b", "get"]);
    let (code, _, err) = cli(&["get", "b", "k", "--r", "1", "--url", &url], Some(&token));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("403"), "{err}");
    // Revoking the token itself.
    let users: Value = serde_json::from_str(&admin_cli(&["user", "list"])).expect("json");
    let id = users["users"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == "alice"))
        .and_then(|u| u["tokens"][0]["id"].as_str())
        .expect("token id")
        .to_string();
    admin_cli(&["user", "revoke-token", "alice", &id]);
    let (code, _, err) = cli(
        &["put", "b", "k", "v", "--w", "1", "--url", &url],
        Some(&token),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("401"), "{err}");
    admin_cli(&["user", "remove", "alice"]);
}

#[test]
fn a_bootstrap_token_shorter_than_16_bytes_stops_the_node_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("short.token");
    std::fs::write(&token_file, "  too-short \n").expect("token file");
    let ip = unique_loopback();
    let out = std::process::Command::new(BIN)
        .args(["server", "--auth", "on", "--bootstrap-token-file"])
        .arg(&token_file)
        .args([
            "--api-addr",
            &format!("{ip}:8701"),
            "--peer-addr",
            &format!("{ip}:8801"),
        ])
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        // A secret, so the only startup warning (an open loopback peer port) stays away.
        .env("RIFTKV_CLUSTER_SECRET", "auth-test-secret-0123456789")
        .output()
        .expect("run riftkv server");
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(
        !dir.path().join("d").exists(),
        "checked before anything is written"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("at least 16 bytes") && !lines[0].contains("too-short"),
        "{err}"
    );
}

#[test]
fn with_json_logs_each_audit_event_is_one_json_line_with_its_fields() {
    let c = auth_cluster_with(1, &["--log-format", "json"]);
    let url = c.url(1);
    admin(&url, "PUT", "/v1/admin/users/carol", json!({}));
    let (code, _) = call(client().get(format!("{url}/v1/kv/b/k")), None).expect("call");
    assert_eq!(code, 401);
    let log = c.servers[0].log();
    let events: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect();
    let find = |status: u64, who: &str, action: &str| {
        events
            .iter()
            .find(|e| {
                let f = &e["fields"];
                f["status"] == status && f["who"] == who && f["action"] == action
            })
            .unwrap_or_else(|| panic!("no audit event {action} {status} by {who}: {events:?}"))
    };
    let put = find(200, "admin", "PUT /v1/admin/users/{name}");
    assert_eq!(put["fields"]["resource"], "/v1/admin/users/carol");
    let refused = find(401, "anonymous", "GET /v1/kv/{bucket}/{key}");
    assert_eq!(refused["fields"]["resource"], "bucket:b");
    for e in [put, refused] {
        for field in ["source", "request_id"] {
            assert!(
                e["fields"][field].as_str().is_some_and(|s| !s.is_empty()),
                "{field}: {e}"
            );
        }
    }
    assert!(!log.contains(ADMIN_TOKEN));
}
