//! The API served over real HTTP (127.0.0.1) by a one-node cluster in this process.

use super::multipart;
use super::render::ReadJson;
use base64::Engine;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use riftkv_cluster::dispatch::RpcHandler;
use riftkv_cluster::metrics::Metrics;
use riftkv_cluster::node::{Node, NodeSettings};
use riftkv_core::net::SimNetwork;
use riftkv_core::storage::{MemoryStorage, ObjectKey};
use riftkv_core::types::{Clock, ManualClock, NodeId, SystemClock};
use riftkv_core::version::{ConflictMode, Object, Sibling, VersionVector};
use serde_json::Value;
use std::sync::Arc;

pub(crate) const LIMIT: usize = 64;

pub(crate) struct TestApi {
    pub node: Arc<Node>,
    pub base: String,
    pub http: reqwest::Client,
    _net: SimNetwork,
}

/// A response read in full, so a test can look at status, headers and body in any order
/// without awaiting each part.
pub(crate) struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    fn json(&self) -> Value {
        let text = self.text();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The `x-riftkv-context` header, which a later write sends back.
    fn ctx(&self) -> String {
        self.headers["x-riftkv-context"]
            .to_str()
            .unwrap()
            .to_string()
    }
}

/// Request headers as name/value pairs, for the `*_with` helpers.
type Headers<'a> = &'a [(&'a str, &'a str)];

impl TestApi {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends any request built on `self.http` (methods and bodies the helpers below lack).
    async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.unwrap();
        Resp {
            status: r.status(),
            headers: r.headers().clone(),
            body: r.bytes().await.unwrap().to_vec(),
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.get_with(path, &[]).await
    }

    async fn get_with(&self, path: &str, headers: Headers<'_>) -> Resp {
        self.send(with_headers(self.http.get(self.url(path)), headers))
            .await
    }

    async fn put(&self, path: &str, body: impl Into<reqwest::Body>) -> Resp {
        self.put_with(path, body, &[]).await
    }

    async fn put_with(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: Headers<'_>,
    ) -> Resp {
        let req = with_headers(self.http.put(self.url(path)), headers);
        self.send(req.body(body)).await
    }

    /// A POST without a body.
    async fn post(&self, path: &str) -> Resp {
        self.send(self.http.post(self.url(path))).await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.delete_with(path, &[]).await
    }

    async fn delete_with(&self, path: &str, headers: Headers<'_>) -> Resp {
        self.send(with_headers(self.http.delete(self.url(path)), headers))
            .await
    }
}

fn with_headers(mut req: reqwest::RequestBuilder, headers: Headers<'_>) -> reqwest::RequestBuilder {
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req
}

/// A one-node cluster (n = 1) with a small value limit, its API on an ephemeral port.
pub(crate) async fn start() -> TestApi {
    start_with(super::router).await
}

async fn start_with(make: impl FnOnce(Arc<Node>) -> axum::Router) -> TestApi {
    start_node(1, make).await
}

/// As [`start`], with auth on (64 requests in flight, 5 s body deadline).
async fn start_with_auth() -> TestApi {
    start_with(|node| {
        super::router_with(
            node,
            super::admission::Admission::new(64, std::time::Duration::from_secs(5)),
            true,
        )
    })
    .await
}

/// As [`start`], with a ring that replicates `n_val` (one node still holds every replica).
async fn start_replicating(n_val: u32) -> TestApi {
    start_node(n_val, super::router).await
}

async fn start_node(n_val: u32, make: impl FnOnce(Arc<Node>) -> axum::Router) -> TestApi {
    start_limited(n_val, LIMIT, make).await
}

/// As [`start_node`], storing values of at most `limit` bytes.
async fn start_limited(
    n_val: u32,
    limit: usize,
    make: impl FnOnce(Arc<Node>) -> axum::Router,
) -> TestApi {
    start_clocked(n_val, limit, make, Arc::new(SystemClock)).await
}

/// As [`start_limited`], the node reading the time from `clock`.
async fn start_clocked(
    n_val: u32,
    limit: usize,
    make: impl FnOnce(Arc<Node>) -> axum::Router,
    clock: Arc<dyn Clock>,
) -> TestApi {
    let net = SimNetwork::new(7);
    let transport = net.endpoint("n1:1", NodeId::from("n1"));
    let mut settings = NodeSettings::for_test("n1", "n1:1", "api-test");
    settings.n_val = n_val;
    settings.limits.max_value_bytes = limit;
    let node = Node::new(
        settings,
        Arc::new(MemoryStorage::new()),
        transport.clone(),
        clock,
        Metrics::new(),
    )
    .unwrap();
    transport.set_handler(Arc::new(RpcHandler(node.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = make(node.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TestApi {
        node,
        base: format!("http://{addr}"),
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap(),
        _net: net,
    }
}

fn error_of(r: Resp, status: u16, code: &str) -> Value {
    assert_eq!(r.status.as_u16(), status, "expected {status} {code}");
    assert_eq!(
        r.headers["content-type"], "application/json",
        "error bodies are JSON"
    );
    let v = r.json();
    assert_eq!(v["error"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}

/// A PUT with `Transfer-Encoding: chunked` (no declared length), over a raw socket.
async fn raw_chunked_put(api: &TestApi, path: &str, chunks: &[&[u8]]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = api.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for c in chunks {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything; that is fine.
    let _ = s.write_all(&req).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn put_get_delete_round_trip() {
    let api = start().await;
    let r = api
        .put_with("/v1/kv/b/k1", "hello", &[("content-type", "text/plain")])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let put_ctx = r.ctx();
    assert!(!put_ctx.is_empty());

    let r = api.get("/v1/kv/b/k1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "text/plain");
    assert!(r.headers.contains_key("etag"));
    let lm = r.headers["last-modified"].to_str().unwrap().to_string();
    assert!(httpdate::parse_http_date(&lm).is_ok());
    assert_eq!(r.ctx(), put_ctx);
    assert_eq!(r.text(), "hello");

    // Default content type.
    let r = api
        .send(api.http.post(api.url("/v1/kv/b/k2")).body(vec![0u8, 255]))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api.get("/v1/kv/b/k2").await;
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    assert_eq!(r.body, vec![0u8, 255]);

    let r = api
        .delete_with("/v1/kv/b/k1", &[("x-riftkv-context", &put_ctx)])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api.get("/v1/kv/b/k1").await;
    assert!(
        r.headers.contains_key("x-riftkv-context"),
        "tombstone context"
    );
    error_of(r, 404, "not_found");

    // Never written: 404 without a context; deleting it is still a 204.
    let r = api.get("/v1/kv/b/never").await;
    assert!(!r.headers.contains_key("x-riftkv-context"));
    error_of(r, 404, "not_found");
    let r = api.delete("/v1/kv/b/never").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn concurrent_writes_are_siblings_until_a_write_with_context() {
    let api = start().await;
    for v in ["a", "b"] {
        let ct = format!("text/{v}");
        let r = api
            .put_with("/v1/kv/s/k", v, &[("content-type", &ct)])
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let r = api.get("/v1/kv/s/k").await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    let ctx = r.ctx();
    let ct = r.headers["content-type"].to_str().unwrap().to_string();
    let boundary = multipart::boundary_of(&ct).expect("multipart content type");
    let parts = multipart::parse(&boundary, &r.body).unwrap();
    let mut got: Vec<(String, Vec<u8>)> = parts
        .iter()
        .map(|p| {
            (
                p.header("content-type").unwrap().to_string(),
                p.body.clone(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("text/a".into(), b"a".to_vec()),
            ("text/b".into(), b"b".to_vec())
        ]
    );
    assert!(
        parts
            .iter()
            .all(|p| p.header("etag").is_some() && p.header("last-modified").is_some())
    );

    let r = api
        .get_with("/v1/kv/s/k", &[("accept", "application/json")])
        .await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    let env: ReadJson = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(env.siblings.len(), 2);
    assert_eq!(env.context, ctx);
    let values: Vec<Vec<u8>> = env
        .siblings
        .iter()
        .map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(&s.value_base64)
                .unwrap()
        })
        .collect();
    assert!(values.contains(&b"a".to_vec()) && values.contains(&b"b".to_vec()));

    // A write with the read's context resolves both; returnbody answers like a GET.
    let r = api
        .put_with(
            "/v1/kv/s/k?returnbody=true",
            "merged",
            &[("x-riftkv-context", &ctx)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.contains_key("x-riftkv-context"));
    assert_eq!(r.text(), "merged");
}

#[tokio::test]
async fn write_errors() {
    let api = start().await;
    // Forged / malformed context.
    let r = api
        .put_with(
            "/v1/kv/b/k",
            "v",
            &[("x-riftkv-context", "AQID-not-a-token")],
        )
        .await;
    error_of(r, 400, "invalid_context");
    let r = api
        .delete_with("/v1/kv/b/k", &[("x-riftkv-context", "####")])
        .await;
    error_of(r, 400, "invalid_context");

    // If-None-Match: *
    let put = |body: &'static str| api.put_with("/v1/kv/b/once", body, &[("if-none-match", "*")]);
    assert_eq!(put("first").await.status, StatusCode::NO_CONTENT);
    error_of(put("second").await, 412, "precondition_failed");

    // Too large: declared length, and a chunked body without a length.
    let r = api.put("/v1/kv/b/big", vec![7u8; LIMIT + 1]).await;
    let v = error_of(r, 413, "too_large");
    assert_eq!(v["limit"], LIMIT as u64);
    let (status, body) = raw_chunked_put(&api, "/v1/kv/b/big", &[&[1u8; LIMIT], &[2u8; 8]]).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("\"too_large\""), "{body}");
    let r = api.put("/v1/kv/b/fits", vec![1u8; LIMIT]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    // Parameters.
    for q in [
        "w=2",
        "w=banana",
        "dw=2",
        "timeout=0",
        "returnbody=maybe",
        "nope=1",
    ] {
        let r = api.put(&format!("/v1/kv/b/k?{q}"), "v").await;
        error_of(r, 400, "bad_request");
    }
    for q in ["r=2", "pr=2", "r=0", "returnbody=true"] {
        let r = api.get(&format!("/v1/kv/b/k?{q}")).await;
        error_of(r, 400, "bad_request");
    }
    let r = api.get("/v1/kv/b/k?r=one&pr=0&timeout=500").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn paths_are_raw_bytes_with_length_limits() {
    let api = start().await;
    let r = api.put("/v1/kv/b%20x/a%2Fb%FF", "v").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let p = riftkv_core::ring::partition_for(b"b x", b"a/b\xff", api.node.state.read().ring_size());
    let stored = api
        .node
        .local_object(&ObjectKey::new(p, &b"b x"[..], &b"a/b\xff"[..]))
        .unwrap();
    assert!(stored.is_some(), "stored under the decoded bytes");
    let r = api.get("/v1/kv/b%20x/a%2Fb%FF").await;
    assert_eq!(r.text(), "v");

    let long_key = "k".repeat(1025);
    let r = api.get(&format!("/v1/kv/b/{long_key}")).await;
    error_of(r, 400, "bad_request");
    let long_bucket = "b".repeat(256);
    let r = api.put(&format!("/v1/kv/{long_bucket}/k"), "v").await;
    error_of(r, 400, "bad_request");
    let max = format!("/v1/kv/{}/{}", "b".repeat(255), "k".repeat(1024));
    let r = api.put(&max, "v").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn listing_pages_through_live_keys() {
    let api = start().await;
    for k in ["k1", "k2", "k3", "k4", "k5"] {
        let r = api.put(&format!("/v1/kv/lb/{k}"), "v").await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    api.delete("/v1/kv/lb/k3").await;
    let v = api.get("/v1/kv/lb?keys=true&limit=2").await.json();
    assert_eq!(v["keys"], serde_json::json!(["k1", "k2"]));
    assert_eq!(v["next"], "k2");
    let v = api.get("/v1/kv/lb?keys=true&limit=2&after=k2").await.json();
    assert_eq!(v["keys"], serde_json::json!(["k4", "k5"]));
    let v = api.get("/v1/kv/lb?keys=true").await.json();
    assert_eq!(v["keys"], serde_json::json!(["k1", "k2", "k4", "k5"]));
    assert_eq!(v["next"], Value::Null);
    for q in [
        "",
        "?keys=true&limit=10001",
        "?keys=true&limit=0",
        "?keys=false",
        "?keys=true&x=1",
    ] {
        let r = api.get(&format!("/v1/kv/lb{q}")).await;
        error_of(r, 400, "bad_request");
    }
}

#[tokio::test]
async fn bucket_props() {
    // A ring replicating 2, so n can change within it.
    let api = start_replicating(2).await;
    let v = api.get("/v1/buckets/p/props").await.json();
    assert_eq!(
        v,
        serde_json::json!({"n": 2, "r": "quorum", "w": "quorum", "dw": 0, "pr": 0, "pw": 0,
            "conflict": "siblings"})
    );
    let r = api
        .send(
            api.http
                .put(api.url("/v1/buckets/p/props"))
                .json(&serde_json::json!({"conflict": "lww", "w": "one"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["conflict"], "lww");
    assert_eq!(v["w"], "one");
    assert_eq!(
        api.node.state.read().bucket_props(b"p").conflict,
        ConflictMode::Lww
    );

    for bad in ["not json", r#"{"bogus": 1}"#, r#"{"n": 0}"#, r#"{"w": 3}"#] {
        let r = api.put("/v1/buckets/p/props", bad).await;
        error_of(r, 400, "bad_request");
    }
    // n may change while the bucket is empty (within the ring's 2), not once it holds data.
    let r = api.put("/v1/buckets/p/props", r#"{"n": 1}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["n"], 1);
    let r = api.put("/v1/buckets/p/props", r#"{"n": 3}"#).await;
    assert_eq!(error_of(r, 400, "bad_request")["limit"], 2);
    let r = api.put("/v1/kv/p/k", "v").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api.put("/v1/buckets/p/props", r#"{"n": 2}"#).await;
    error_of(r, 409, "conflict");
}

/// PUT `body` to a bucket's props; the answer.
async fn put_props(api: &TestApi, bucket: &str, body: &str) -> Resp {
    api.put(&format!("/v1/buckets/{bucket}/props"), body.to_string())
        .await
}

#[tokio::test]
async fn datatype_prop_needs_an_empty_bucket_and_separates_the_endpoints() {
    let api = start().await;
    let r = put_props(&api, "c", r#"{"datatype": "counter"}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["datatype"], "counter");
    let props = api.get("/v1/buckets/c/props").await.json();
    assert_eq!(props["datatype"], "counter");
    // Plain-value endpoints refuse a typed bucket, saying why.
    let put = api.http.put(api.url("/v1/kv/c/k")).body("v");
    for req in [
        put,
        api.http.get(api.url("/v1/kv/c/k")),
        api.http.delete(api.url("/v1/kv/c/k")),
    ] {
        let v = error_of(api.send(req).await, 400, "bad_request");
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("holds counter values") && msg.contains("/v1/types"),
            "{msg}"
        );
    }
    // Conflict mode last-write-wins would drop concurrent states: refused.
    let r = put_props(&api, "c", r#"{"conflict": "lww"}"#).await;
    error_of(r, 400, "bad_request");
    let r = put_props(&api, "c", r#"{"datatype": "multiset"}"#).await;
    error_of(r, 400, "bad_request");
    // A bucket holding plain values cannot become typed.
    let r = api
        .send(api.http.put(api.url("/v1/kv/plain/k")).body("v"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = put_props(&api, "plain", r#"{"datatype": "set"}"#).await;
    let v = error_of(r, 409, "conflict");
    assert!(v["message"].as_str().unwrap().contains("holds data"), "{v}");
    // The type stays what it was; other props may still change.
    let r = put_props(&api, "c", r#"{"w": 1}"#).await;
    assert_eq!(r.json()["datatype"], "counter");
}

#[tokio::test]
async fn routing_errors_are_json() {
    let api = start().await;
    let r = api.get("/v2/nothing").await;
    error_of(r, 404, "not_found");
    let r = api.send(api.http.patch(api.url("/v1/kv/b/k"))).await;
    error_of(r, 405, "method_not_allowed");
    let r = api.get("/v1/admin/leave").await;
    error_of(r, 405, "method_not_allowed");
}

#[tokio::test]
async fn request_ids_and_metrics() {
    let api = start().await;
    let r = api
        .put_with("/v1/kv/m/k", "v", &[("x-request-id", "req-42")])
        .await;
    assert_eq!(r.headers["x-request-id"], "req-42");
    let r = api.get("/v1/kv/m/k").await;
    let generated = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&generated).is_ok());

    let r = api.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text();
    assert!(
        text.contains(r#"riftkv_requests_total{code="204",op="put"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"riftkv_requests_total{code="200",op="get"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"riftkv_request_duration_seconds_count{op="get"} 1"#));
    assert!(text.contains("riftkv_storage_bytes"));
}

#[tokio::test]
async fn handler_panic_is_a_json_500_and_the_server_lives_on() {
    async fn boom() -> &'static str {
        panic!("deliberate test panic")
    }
    let api = start_with(|node| {
        axum::Router::new()
            .route("/boom", axum::routing::get(boom))
            .route("/health", axum::routing::get(super::admin::health))
            .layer(axum::middleware::from_fn_with_state(
                node.clone(),
                super::observe,
            ))
            .with_state(node)
    })
    .await;
    let r = api.get("/boom").await;
    assert!(r.headers.contains_key("x-request-id"));
    error_of(r, 500, "internal");
    let r = api.get("/health").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn admin_status_lists_the_workers() {
    let api = start().await;
    let status = || async { api.get("/v1/admin/status").await.json() };
    assert_eq!(status().await["workers"], serde_json::json!([]));
    let _hints = riftkv_cluster::handoff::hints::spawn(api.node.clone());
    let _gossip = riftkv_cluster::membership::gossip::spawn(api.node.clone());
    let mut v = status().await;
    for _ in 0..200 {
        let stepped = v["workers"].as_array().is_some_and(|w| {
            w.len() == 2 && w.iter().all(|w| w["steps"].as_u64().unwrap_or(0) > 0)
        });
        if stepped {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        v = status().await;
    }
    let names: Vec<&str> = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hinted_handoff", "gossip"], "{v}");
    let hints = &v["workers"][0];
    // No hints to deliver: idle, or active while a step happens to run.
    assert!(
        matches!(hints["state"].as_str(), Some("idle" | "active")),
        "{v}"
    );
    assert_eq!(hints["last_error"], Value::Null);
    assert_eq!(hints["last_error_at_ms"], Value::Null);
    assert_eq!(hints["errors"], 0);
    assert!(hints["steps"].as_u64().unwrap() > 0, "{v}");
    api.node.stop();
    for _ in 0..200 {
        v = status().await;
        if v["workers"][0]["state"] == "stopped" && v["workers"][1]["state"] == "stopped" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(v["workers"][0]["state"], "stopped", "{v}");
    assert_eq!(v["workers"][1]["state"], "stopped", "{v}");
}

#[tokio::test]
async fn admin_endpoints() {
    let api = start().await;
    let v = api.get("/v1/admin/status").await.json();
    assert_eq!(v["node_id"], "n1");
    assert_eq!(v["cluster_name"], "api-test");
    assert_eq!(v["members"][0]["status"], "valid");
    assert_eq!(v["members"][0]["reachable"], true);
    for f in [
        "ring_version",
        "ring_size",
        "owned_partitions",
        "hints_pending",
        "handoffs_pending",
        "ring_settled",
    ] {
        assert!(v.get(f).is_some(), "{f}");
    }
    let v = api.get("/v1/admin/ring").await.json();
    assert_eq!(
        v["partitions"].as_array().unwrap().len() as u64,
        v["ring_size"].as_u64().unwrap()
    );
    assert_eq!(v["partitions"][0]["owner"], "n1");
    let v = api.get("/v1/admin/preflist/b/k").await.json();
    assert_eq!(v["primaries"], serde_json::json!(["n1"]));
    assert_eq!(v["serving"], serde_json::json!(["n1"]));

    // Local copy: objects first, then hints.
    let r = api.get("/v1/admin/local/b/k").await;
    error_of(r, 404, "not_found");
    api.put("/v1/kv/b/k", "v").await;
    let v = api.get("/v1/admin/local/b/k").await.json();
    assert_eq!(v["hinted_for"], Value::Null);
    assert_eq!(v["siblings"][0]["value_base64"], "dg==");
    let ring_size = api.node.state.read().ring_size();
    assert_eq!(
        v["partition"],
        riftkv_core::ring::partition_for(b"b", b"k", ring_size)
    );
    let p = riftkv_core::ring::partition_for(b"b", b"h", ring_size);
    let obj = one_version(b"hinted");
    api.node
        .merge_hint(
            &ObjectKey::new(p, &b"b"[..], &b"h"[..]),
            &NodeId::from("n9"),
            &obj,
            ConflictMode::Siblings,
            false,
        )
        .unwrap();
    let v = api.get("/v1/admin/local/b/h").await.json();
    assert_eq!(v["hinted_for"], "n9");

    // Membership commands: the only member cannot leave; unknown members cannot be removed.
    let r = api.post("/v1/admin/leave").await;
    error_of(r, 409, "conflict");
    let r = api.post("/v1/admin/remove/ghost").await;
    error_of(r, 404, "not_found");
    let r = api.post("/v1/admin/remove/n1").await;
    error_of(r, 400, "bad_request");

    assert_eq!(api.get("/health").await.status, StatusCode::OK);
    assert_eq!(api.get("/ready").await.status, StatusCode::OK);
    api.node
        .joined
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        api.get("/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let v = api.get("/v1/openapi.json").await.json();
    assert!(v["paths"]["/v1/kv/{bucket}/{key}"]["put"].is_object());
    // POST answers exactly as PUT, so its document lists the same statuses (a client or a
    // schema checker otherwise meets an undocumented 409 too_many_siblings).
    let statuses = |m: &str| {
        let mut s: Vec<String> = v["paths"]["/v1/kv/{bucket}/{key}"][m]["responses"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        s.sort();
        s
    };
    assert_eq!(statuses("post"), statuses("put"));
}

/// Keys written twice without a context hold two siblings.
async fn two_siblings(api: &TestApi, path: &str) {
    for v in ["one", "two"] {
        let r = api.put(path, v).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
}

async fn sibling_count(api: &TestApi, path: &str) -> usize {
    let r = api.get_with(path, &[("accept", "application/json")]).await;
    let env: ReadJson = serde_json::from_str(&r.text()).unwrap();
    env.siblings.len()
}

#[tokio::test]
async fn a_context_is_bound_to_its_bucket_and_key() {
    let api = start().await;
    two_siblings(&api, "/v1/kv/ctx/b").await;
    let r = api.put("/v1/kv/ctx/a", "a").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api.get("/v1/kv/ctx/a").await;
    let ctx_a = r.ctx();

    // A's context on B: refused, and B keeps both siblings.
    let r = api
        .put_with("/v1/kv/ctx/b", "overwrite", &[("x-riftkv-context", &ctx_a)])
        .await;
    let v = error_of(r, 400, "invalid_context");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("another") && msg.contains("forged"), "{msg}");
    let r = api
        .delete_with("/v1/kv/ctx/b", &[("x-riftkv-context", &ctx_a)])
        .await;
    error_of(r, 400, "invalid_context");
    assert_eq!(sibling_count(&api, "/v1/kv/ctx/b").await, 2);

    // A version-1 token proves no key: refused, with a message saying what to do.
    let mut vv = VersionVector::new();
    vv.observe(&riftkv_core::version::Actor::from("n1"), 2);
    let v1 = riftkv_core::version::legacy_v1_token(&vv, &api.node.context_key);
    let r = api
        .put_with("/v1/kv/ctx/b", "x", &[("x-riftkv-context", &v1)])
        .await;
    let v = error_of(r, 400, "invalid_context");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("context token from an older RiftKV version; read the key again"),
        "{msg}"
    );
    assert_eq!(sibling_count(&api, "/v1/kv/ctx/b").await, 2);

    // The same key name in another bucket, and the same bytes split differently.
    two_siblings(&api, "/v1/kv/other/a").await;
    let r = api
        .put_with("/v1/kv/other/a", "x", &[("x-riftkv-context", &ctx_a)])
        .await;
    error_of(r, 400, "invalid_context");
    assert_eq!(sibling_count(&api, "/v1/kv/other/a").await, 2);
    two_siblings(&api, "/v1/kv/c/tx").await;
    let r = api.put("/v1/kv/ct/x", "x").await;
    let ctx_split = r.ctx();
    let r = api
        .put_with("/v1/kv/c/tx", "x", &[("x-riftkv-context", &ctx_split)])
        .await;
    error_of(r, 400, "invalid_context");
    assert_eq!(sibling_count(&api, "/v1/kv/c/tx").await, 2);

    // Keys that need URL-encoding: the context of a read (GET, returnbody, the admin view)
    // resolves the siblings of exactly that key.
    let path = "/v1/kv/ctx/a%2Fb%FF%20c";
    two_siblings(&api, path).await;
    let r = api.get(path).await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    let ctx = r.ctx();
    let r = api
        .put_with(
            &format!("{path}?returnbody=true"),
            "merged",
            &[("x-riftkv-context", &ctx)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    two_siblings(&api, path).await;
    assert_eq!(sibling_count(&api, path).await, 3);
    let local = api.get("/v1/admin/local/ctx/a%2Fb%FF%20c").await.json();
    let r = api
        .delete_with(
            path,
            &[("x-riftkv-context", local["context"].as_str().unwrap())],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api.get(path).await;
    error_of(r, 404, "not_found");
}

#[tokio::test]
async fn bucket_n_above_the_cluster_replication_is_refused() {
    // The test node's ring replicates 1.
    let api = start().await;
    let r = api.put("/v1/buckets/wide/props", r#"{"n": 2}"#).await;
    let v = error_of(r, 400, "bad_request");
    assert_eq!(v["limit"], 1, "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("n=2 is above this cluster's replication of 1"),
        "{msg}"
    );
    let v = api.get("/v1/buckets/wide/props").await.json();
    assert_eq!(v["n"], 1);
}

/// The corrupt hook is test-only: a default (release) build must not route it.
#[cfg(not(feature = "fault-injection"))]
#[tokio::test]
async fn default_build_has_no_fault_routes() {
    let api = start().await;
    for method in [reqwest::Method::POST, reqwest::Method::GET] {
        let url = api.url("/v1/admin/fault/corrupt?bucket=b&fraction=1");
        let r = api.send(api.http.request(method, url)).await;
        error_of(r, 404, "not_found");
    }
}

#[cfg(feature = "fault-injection")]
#[tokio::test]
async fn corrupt_route_damages_stored_records() {
    let api = start().await;
    for k in ["k1", "k2", "k3", "k4"] {
        let r = api.put(&format!("/v1/kv/b/{k}"), "v").await;
        assert!(r.status.is_success());
    }
    let corrupt = |q: &str| {
        let path = format!("/v1/admin/fault/corrupt?{q}");
        let api = &api;
        async move { api.post(&path).await }
    };
    // fraction=0 is the harness's probe: it damages nothing.
    let v = corrupt("bucket=b&fraction=0").await.json();
    assert_eq!(
        (v["matched"].as_u64(), v["damaged"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(v["node_id"], "n1");
    let v = corrupt("bucket=b&fraction=0.5").await.json();
    assert_eq!(
        (v["matched"].as_u64(), v["damaged"].as_u64()),
        (Some(4), Some(2))
    );
    let v = corrupt("bucket=b&key=k1").await.json();
    assert!(v["matched"].as_u64() <= Some(1));
    let ring_size = api.node.state.read().ring_size();
    let broken = ["k1", "k2", "k3", "k4"]
        .iter()
        .filter(|k| {
            let key = ObjectKey::new(
                riftkv_core::ring::partition_for(b"b", k.as_bytes(), ring_size),
                "b",
                **k,
            );
            matches!(
                api.node.storage.get_object(&key),
                Err(riftkv_core::storage::StorageError::Corrupt { .. })
            )
        })
        .count();
    assert_eq!(broken as u64, 2 + v["damaged"].as_u64().unwrap());
    let r = corrupt("fraction=1").await;
    error_of(r, 400, "bad_request");
    let r = corrupt("bucket=b&fraction=3").await;
    error_of(r, 400, "bad_request");
}

/// The read behind `If-None-Match` and a context-less delete runs at the request's `r`/`pr`,
/// not the bucket's defaults: one node of a ring replicating 3 can serve `r=one`.
#[tokio::test]
async fn conditional_put_and_contextless_delete_read_at_the_requests_r() {
    let api = start_replicating(3).await;
    let if_absent = [("if-none-match", "*")];
    let r = api
        .put_with("/v1/kv/b/k?r=one&w=one", "v", &if_absent)
        .await;
    assert!(r.status.is_success(), "{}", r.text());
    let r = api
        .put_with("/v1/kv/b/k?r=one&w=one", "v2", &if_absent)
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = api.delete("/v1/kv/b/k?r=one&w=one").await;
    assert!(r.status.is_success(), "{}", r.text());
    let r = api.get("/v1/kv/b/k?r=one").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// An object holding one plain value written by n1.
fn one_version(value: &'static [u8]) -> Object {
    Object::update(
        None,
        &VersionVector::new(),
        NodeId::from("n1"),
        Sibling::new(value, "text/plain", 5),
        ConflictMode::Siblings,
        &Default::default(),
    )
    .unwrap()
}

/// POST a data type operation; the answer.
async fn post_type(api: &TestApi, path: &str, body: &str) -> Resp {
    let url = api.url(&format!("/v1/types/{path}"));
    api.send(api.http.post(url).body(body.to_string())).await
}

async fn get_type(api: &TestApi, path: &str) -> Resp {
    api.get(&format!("/v1/types/{path}")).await
}

#[tokio::test]
async fn data_types_over_http_answer_every_status() {
    let api = start().await;
    for (bucket, t) in [("c", "counter"), ("s", "set"), ("m", "map")] {
        let r = put_props(&api, bucket, &format!(r#"{{"datatype": "{t}"}}"#)).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // Counter: 404 before the first update, 204 per update, the sum after.
    error_of(get_type(&api, "c/k").await, 404, "not_found");
    for n in [5, -2, 10] {
        let r = post_type(&api, "c/k", &format!(r#"{{"increment": {n}}}"#)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let r = get_type(&api, "c/k").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(
        (v["type"].as_str(), v["value"].as_i64()),
        (Some("counter"), Some(13))
    );
    assert!(v["context"].as_str().is_some());
    let r = api
        .send(
            api.http
                .post(api.url("/v1/types/c/k?returnbody=true&w=1"))
                .body(r#"{"increment": 1}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["value"], 14);

    // Set: adds, a remove without a context is refused, with the context of a read applied.
    let r = post_type(&api, "s/k", r#"{"add": ["b", "a"]}"#).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let v = error_of(
        post_type(&api, "s/k", r#"{"remove": ["a"]}"#).await,
        400,
        "bad_request",
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("needs the context of a read"),
        "{v}"
    );
    let read = get_type(&api, "s/k").await.json();
    assert_eq!(read["value"], serde_json::json!(["a", "b"]));
    let ctx = read["context"].as_str().unwrap().to_string();
    let body = serde_json::json!({"remove": ["a"], "context": ctx}).to_string();
    assert_eq!(
        post_type(&api, "s/k", &body).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get_type(&api, "s/k").await.json()["value"],
        serde_json::json!(["b"])
    );
    // The context may come in the header instead.
    let read = get_type(&api, "s/k").await.json();
    let r = api
        .send(
            api.http
                .post(api.url("/v1/types/s/k"))
                .header("X-RiftKV-Context", read["context"].as_str().unwrap())
                .body(r#"{"remove": ["b"]}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get_type(&api, "s/k").await.json()["value"],
        serde_json::json!([])
    );
    // A context read from another key, or an object's token, is not usable here.
    let other = get_type(&api, "c/k").await.json()["context"]
        .as_str()
        .unwrap()
        .to_string();
    let body = serde_json::json!({"remove": ["a"], "context": other}).to_string();
    error_of(post_type(&api, "s/k", &body).await, 400, "invalid_context");
    let r = api
        .send(api.http.put(api.url("/v1/kv/plain/k")).body("v"))
        .await;
    let object_token = r.ctx();
    let body = serde_json::json!({"remove": ["a"], "context": object_token}).to_string();
    let v = error_of(post_type(&api, "s/k", &body).await, 400, "invalid_context");
    assert!(
        v["message"].as_str().unwrap().contains("plain value"),
        "{v}"
    );

    // 400: malformed operations, operations of another type, bad parameters, plain buckets.
    for (path, body) in [
        ("c/k", "not json"),
        ("c/k", r#"{"add": ["a"]}"#),
        ("s/k", r#"{"increment": 1}"#),
        ("m/k", r#"{"update": {"f": {"hll": 1}}}"#),
        ("c/k", r#"{"increment": 1.5}"#),
    ] {
        error_of(post_type(&api, path, body).await, 400, "bad_request");
    }
    let r = api
        .send(
            api.http
                .post(api.url("/v1/types/c/k?w=9"))
                .body(r#"{"increment": 1}"#),
        )
        .await;
    error_of(r, 400, "bad_request");
    // Data type values never expire: a TTL, in the query or the header, is refused, not
    // silently dropped.
    let ttl_query = post_type(&api, "c/k?ttl=60", r#"{"increment": 1}"#).await;
    let url = api.url("/v1/types/c/k");
    let ttl_header = api
        .send(
            api.http
                .post(url)
                .header("x-riftkv-ttl", "60")
                .body(r#"{"increment": 1}"#),
        )
        .await;
    for r in [ttl_query, ttl_header] {
        let v = error_of(r, 400, "bad_request");
        assert!(
            v["message"].as_str().unwrap().contains("never expire"),
            "{v}"
        );
    }
    let v = error_of(get_type(&api, "plain/k").await, 400, "bad_request");
    assert!(
        v["message"].as_str().unwrap().contains("plain values"),
        "{v}"
    );
    error_of(
        post_type(&api, "plain/k", r#"{"increment": 1}"#).await,
        400,
        "bad_request",
    );

    // 413: a value that would outgrow the (test's 64-byte) value limit, or a body over it.
    let mut too_large = None;
    for i in 0..16 {
        let r = post_type(&api, "s/big", &format!(r#"{{"add": ["member-{i}"]}}"#)).await;
        if r.status != StatusCode::NO_CONTENT {
            too_large = Some(r);
            break;
        }
    }
    error_of(
        too_large.expect("the set outgrew the limit"),
        413,
        "too_large",
    );
    let big = format!(
        r#"{{"add": ["{}"]}}"#,
        "x".repeat(LIMIT + riftkv_core::version::MAX_TOKEN_CHARS)
    );
    error_of(post_type(&api, "s/k2", &big).await, 413, "too_large");

    // 500: a stored value that is not a state of the bucket's type says so.
    let ring_size = api.node.state.read().ring_size();
    let p = riftkv_core::ring::partition_for(b"c", b"bad", ring_size);
    let obj = one_version(b"garbage");
    api.node
        .merge_local(
            &ObjectKey::new(p, &b"c"[..], &b"bad"[..]),
            &obj,
            ConflictMode::Siblings,
            false,
        )
        .unwrap();
    let v = error_of(get_type(&api, "c/bad").await, 500, "internal");
    assert!(
        v["message"].as_str().unwrap().contains("cannot be read"),
        "{v}"
    );
    let r = post_type(&api, "c/bad", r#"{"increment": 1}"#).await;
    error_of(r, 500, "internal");
}

#[tokio::test]
async fn a_map_holds_every_field_type() {
    let api = start_limited(1, 64 * 1024, super::router).await;
    let r = put_props(&api, "m", r#"{"datatype": "map"}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    let op = r#"{"update": {"n": {"counter": {"increment": 2}}, "tags": {"set": {"add": ["x"]}},
        "name": {"register": {"assign": "riftkv"}}, "on": {"flag": "enable"},
        "sub": {"map": {"update": {"depth": {"counter": {"increment": 1}}}}}}}"#;
    assert_eq!(
        post_type(&api, "m/k", op).await.status,
        StatusCode::NO_CONTENT
    );
    let v = get_type(&api, "m/k").await.json();
    assert_eq!(v["type"], "map");
    assert_eq!(
        v["value"],
        serde_json::json!({"n": {"counter": 2}, "tags": {"set": ["x"]},
            "name": {"register": "riftkv"}, "on": {"flag": true},
            "sub": {"map": {"depth": {"counter": 1}}}})
    );
    // Removing a field needs the context of a read, and removes what that read saw.
    let body = serde_json::json!({"remove": ["tags"], "context": v["context"]}).to_string();
    assert_eq!(
        post_type(&api, "m/k", &body).await.status,
        StatusCode::NO_CONTENT
    );
    let v = get_type(&api, "m/k").await.json();
    assert!(v["value"].get("tags").is_none(), "{v}");
    assert_eq!(v["value"]["n"], serde_json::json!({"counter": 2}));
}

#[tokio::test]
async fn ttl_writes_expire_and_read_as_missing() {
    let clock = ManualClock::new(1_700_000_000_000);
    let api = start_clocked(1, LIMIT, super::router, Arc::new(clock.clone())).await;
    let keys = |r: Resp| r.json()["keys"].clone();
    let r = api.put("/v1/kv/b/k?ttl=60", "v").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api
        .put_with("/v1/kv/b/h", "v", &[("x-riftkv-ttl", "30")])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get("/v1/kv/b/k").await.status, StatusCode::OK);
    let list = "/v1/kv/b?keys=true";
    assert_eq!(keys(api.get(list).await), serde_json::json!(["h", "k"]));

    clock.advance(30_000);
    // The header's 30 s are up; the query's 60 s are not.
    let r = api.get("/v1/kv/b/h").await;
    assert!(
        r.headers.contains_key("x-riftkv-context"),
        "expired keeps a context"
    );
    error_of(r, 404, "not_found");
    assert_eq!(keys(api.get(list).await), serde_json::json!(["k"]));
    clock.advance(30_000);
    let r = api
        .get_with("/v1/kv/b/k", &[("accept", "application/json")])
        .await;
    let ctx = r.ctx();
    error_of(r, 404, "not_found");
    assert_eq!(keys(api.get(list).await), serde_json::json!([]));
    // Nothing live: a conditional create succeeds over the expired value.
    let r = api
        .put_with("/v1/kv/b/h", "fresh", &[("if-none-match", "*")])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // A write with the expired read's context supersedes it: one value again, no siblings.
    let r = api
        .put_with("/v1/kv/b/k", "again", &[("x-riftkv-context", &ctx)])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(sibling_count(&api, "/v1/kv/b/k").await, 1);

    // An expiring sibling beside a lasting one: 300 until it expires, then the other alone.
    assert_eq!(
        api.put("/v1/kv/b/s", "v").await.status,
        StatusCode::NO_CONTENT
    );
    let r = api.put("/v1/kv/b/s?ttl=10&returnbody=true", "v").await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    clock.advance(10_000);
    assert_eq!(api.get("/v1/kv/b/s").await.status, StatusCode::OK);
    // returnbody shows the write as a reader sees it: already-expired versions are left out.
    let r = api.put("/v1/kv/b/s?returnbody=true", "v").await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(sibling_count(&api, "/v1/kv/b/s").await, 2);

    // Bad TTLs are 400s, on writes of values only.
    for q in [
        "ttl=0",
        "ttl=-1",
        "ttl=1.5",
        "ttl=abc",
        "ttl=315360001",
        "ttl=",
    ] {
        error_of(
            api.put(&format!("/v1/kv/b/bad?{q}"), "v").await,
            400,
            "bad_request",
        );
    }
    let bad = |ttl: &'static str| [("x-riftkv-ttl", ttl)];
    error_of(
        api.put_with("/v1/kv/b/bad", "v", &bad("0")).await,
        400,
        "bad_request",
    );
    error_of(
        api.put_with("/v1/kv/b/bad?ttl=5", "v", &bad("6")).await,
        400,
        "bad_request",
    );
    let r = api.put_with("/v1/kv/b/agree?ttl=5", "v", &bad("5")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    error_of(api.get("/v1/kv/b/k?ttl=5").await, 400, "bad_request");
    error_of(api.delete("/v1/kv/b/k?ttl=5").await, 400, "bad_request");
}

#[tokio::test]
async fn the_ttl_prop_is_shown_checked_and_applied() {
    let api = start().await;
    // Absent while 0 (never), like every prop a bucket does not use.
    assert_eq!(
        api.get("/v1/buckets/t/props").await.json()["ttl"],
        Value::Null
    );
    let r = put_props(&api, "t", r#"{"ttl": 3600}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["ttl"], 3600);
    use riftkv_core::bucket::MAX_TTL_SECS;
    let over = format!(r#"{{"ttl": {}}}"#, MAX_TTL_SECS + 1);
    let v = error_of(put_props(&api, "t", &over).await, 400, "bad_request");
    assert_eq!(v["limit"], MAX_TTL_SECS);
    error_of(
        put_props(&api, "t", r#"{"ttl": -1}"#).await,
        400,
        "bad_request",
    );
    // A write without its own TTL gets the bucket's: its expiry is stamped on the version.
    let r = api.put("/v1/kv/t/k?returnbody=true", "v").await;
    assert_eq!(r.status, StatusCode::OK);
    let stored = |key: &[u8]| {
        let ring_size = api.node.state.read().ring_size();
        let p = riftkv_core::ring::partition_for(b"t", key, ring_size);
        let k = ObjectKey::new(p, &b"t"[..], key);
        api.node.local_object(&k).unwrap().unwrap()
    };
    let stored_k = stored(b"k");
    let expires = stored_k.siblings()[0].1.expires_at_ms.unwrap();
    let written = stored_k.siblings()[0].1.last_modified_ms;
    assert_eq!(expires - written, 3_600_000);
    // Back to "never": later writes do not expire.
    let r = put_props(&api, "t", r#"{"ttl": 0}"#).await;
    assert_eq!(r.json()["ttl"], Value::Null);
    api.put("/v1/kv/t/k2", "v").await;
    assert_eq!(stored(b"k2").siblings()[0].1.expires_at_ms, None);
}

/// Sends the head of a PUT whose body never completes, on a raw connection that the caller
/// keeps; the request then holds its admission place until its body deadline.
async fn start_stalled_put(api: &TestApi, key: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = api.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /v1/kv/b/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nonly-some-of-it"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn past_its_in_flight_bound_a_node_answers_overloaded_and_recovers() {
    use tokio::io::AsyncReadExt;
    let body_timeout = std::time::Duration::from_millis(800);
    let api = start_with(move |node| {
        super::router_with(
            node,
            super::admission::Admission::new(1, body_timeout),
            false,
        )
    })
    .await;
    let mut stalled = start_stalled_put(&api, "stalled").await;
    // Once the stalled PUT holds the only place, others are refused at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let refused = loop {
        let r = api.get("/v1/kv/b/k").await;
        if r.status == 503 {
            break r;
        }
        if std::time::Instant::now() >= deadline {
            let mut got = vec![0u8; 2000];
            let n = tokio::time::timeout(std::time::Duration::from_secs(2), stalled.read(&mut got))
                .await;
            panic!(
                "never refused: {} {n:?} {}",
                r.status,
                String::from_utf8_lossy(&got)
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(refused.headers["retry-after"], "1");
    let e = error_of(refused, 503, "overloaded");
    assert!(e["message"].as_str().unwrap().contains("1 requests"), "{e}");
    // Probes and scrapes are always answered.
    assert_eq!(api.get("/health").await.status, 200);
    assert_eq!(api.get("/metrics").await.status, 200);

    // The body deadline ends the stalled request with `timeout`, freeing the place.
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stalled.read_to_end(&mut answer),
    )
    .await
    .expect("the stalled request is answered by its body deadline")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"timeout\"") && answer.contains("did not arrive within 800 ms"));
    assert_eq!(api.put("/v1/kv/b/k", "v").await.status, 204);
    assert_eq!(api.get("/v1/kv/b/k").await.status, 200);
}

#[tokio::test]
async fn the_console_is_served_without_a_token_under_a_strict_policy() {
    let api = start_with_auth().await;
    // Auth is on: the data the console shows needs a token ...
    assert_eq!(api.get("/v1/admin/status").await.status, 401);
    // ... but the page and its assets do not.
    let page = api.get("/ui").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(page.headers["cache-control"], super::ui::CACHE_CONTROL);
    assert!(page.text().contains("/ui/app.js"));
    for (path, kind) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/index.html", "text/html; charset=utf-8"),
        ("/ui/", "text/html; charset=utf-8"),
    ] {
        let r = api.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.headers["content-type"], kind, "{path}");
        assert!(r.headers.contains_key("content-security-policy"), "{path}");
        // Revalidation by ETag answers 304 without a body.
        let etag = r.headers["etag"].to_str().unwrap().to_string();
        let again = api.get_with(path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
    }
    for missing in ["/ui/nope.js", "/ui/..%2Fapp.js", "/ui/APP.JS"] {
        let r = api.get(missing).await;
        assert_eq!(r.status, 404, "{missing}");
        assert_eq!(r.json()["error"], "not_found", "{missing}");
    }
    // Console requests are counted under their own operation label.
    let text = api.node.metrics.render();
    assert!(
        text.contains("riftkv_requests_total{code=\"200\",op=\"ui\"}"),
        "{text}"
    );
}

/// An error answered before the request's body was read (a refused token, here) leaves the
/// connection unusable: the unread body is still in the way. The answer says so with
/// `Connection: close`, so a client does not send its next request on that connection and see
/// it fail ("server disconnected"); without it, pooled clients failed about one request in ten.
#[tokio::test]
async fn an_error_answered_before_the_body_closes_the_connection_and_says_so() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = start_with_auth().await;
    let addr = api.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "PUT /v1/kv/b/k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n\
                Content-Length: 1\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        s.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers and closes")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");

    // A bodiless request keeps its connection.
    let r = api.get("/v1/kv/b/k").await;
    assert_eq!(r.status, 401);
    assert!(!r.headers.contains_key("connection"), "{:?}", r.headers);
}

/// `POST /v1/admin/backup` refuses bad targets with 400 before touching storage; the
/// in-memory store of this test node cannot take a checkpoint (500, and nothing is left).
#[tokio::test]
async fn backup_refuses_bad_targets() {
    let api = start().await;
    let post = |body: &str| {
        api.http
            .post(api.url("/v1/admin/backup"))
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let v = error_of(
        api.send(post(r#"{"out":"rel/dir"}"#)).await,
        400,
        "bad_request",
    );
    assert!(v["message"].as_str().unwrap().contains("absolute"), "{v}");
    error_of(api.send(post("{}")).await, 400, "bad_request");
    error_of(api.send(post("not json")).await, 400, "bad_request");
    error_of(
        api.send(post(r#"{"out":"/x","extra":1}"#)).await,
        400,
        "bad_request",
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), b"x").unwrap();
    let body = serde_json::json!({ "out": tmp.path() }).to_string();
    let v = error_of(api.send(post(&body)).await, 400, "bad_request");
    assert!(v["message"].as_str().unwrap().contains("not empty"), "{v}");
    let fresh = tmp.path().join("new");
    let body = serde_json::json!({ "out": fresh }).to_string();
    let v = error_of(api.send(post(&body)).await, 500, "internal");
    assert!(v["message"].as_str().unwrap().contains("checkpoint"), "{v}");
    assert!(
        !fresh.exists(),
        "a failed backup removes the directory it made"
    );
}

/// Adds `id` to the node's ring state as a member that joined (no partitions yet).
fn join_member(node: &Node, id: &str) {
    use riftkv_core::membership::state::MemberInfo;
    node.update_state_soon(|s| {
        let info = MemberInfo::new(
            NodeId::from(id),
            format!("{id}-api"),
            format!("{id}-peer"),
            None,
        );
        (s.add_member(info).is_ok(), ())
    });
}

/// Runs the claimant and marks its transfers done until nothing is pending (bounded).
fn settle_state(node: &Node) {
    use riftkv_core::membership::state::TransferDone;
    for _ in 0..20 {
        node.update_state_soon(|s| {
            let me = NodeId::from("n1");
            s.claimant_step(&me);
            if let Some(plan) = s.plan.clone() {
                for t in &plan.transfers {
                    let done = TransferDone {
                        plan: plan.id,
                        partition: t.partition,
                        to: t.to.clone(),
                    };
                    s.mark_transfer_done(&t.from, done);
                }
            }
            (true, ())
        });
        if node.state.read().locally_settled() {
            return;
        }
    }
    panic!("the ring state did not settle");
}

#[tokio::test]
async fn replace_refuses_what_it_cannot_do_and_shows_its_progress() {
    let api = start_replicating(2).await;
    join_member(&api.node, "n2");
    settle_state(&api.node);
    let owned_by_n2 = api
        .node
        .state
        .read()
        .ring
        .partitions_of(&NodeId::from("n2"));
    assert!(!owned_by_n2.is_empty());
    // No transfers while nothing moves.
    let v = api.get("/v1/admin/status").await.json();
    assert!(v.get("transfers").is_none(), "{v}");
    join_member(&api.node, "n3");

    error_of(
        api.post("/v1/admin/replace/n2/n2").await,
        400,
        "bad_request",
    );
    error_of(
        api.post("/v1/admin/replace/n1/n3").await,
        400,
        "bad_request",
    );
    error_of(
        api.post("/v1/admin/replace/ghost/n3").await,
        404,
        "not_found",
    );
    error_of(
        api.post("/v1/admin/replace/n2/ghost").await,
        404,
        "not_found",
    );
    // n1 already owns partitions: it cannot take over n2's share as well.
    error_of(api.post("/v1/admin/replace/n2/n1").await, 409, "conflict");
    error_of(
        api.post("/v1/admin/replace/n2/n3?x=1").await,
        400,
        "bad_request",
    );

    let r = api.post("/v1/admin/replace/n2/n3").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.json()["message"].as_str().unwrap().contains("n3"));
    let v = api.get("/v1/admin/status").await.json();
    let t = &v["transfers"];
    assert_eq!(t["partitions_done"], 0, "{v}");
    assert!(t["partitions_total"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(t["bytes_moved"], 0);
    assert_eq!(t["concurrency"], 2);
    assert_eq!(t["max_bytes_per_sec"], 0);
    assert_eq!(t["replacing"]["old"], "n2");
    assert_eq!(t["replacing"]["new"], "n3");
    let members: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["n1", "n3"], "the old node is removed at once");
    // Asking again: n2 is gone now.
    error_of(api.post("/v1/admin/replace/n2/n3").await, 409, "conflict");

    // Once the survivors' transfers are done, n3 owns exactly n2's partitions.
    settle_state(&api.node);
    let ring = api.node.state.read().ring.clone();
    assert_eq!(ring.partitions_of(&NodeId::from("n3")), owned_by_n2);
    let v = api.get("/v1/admin/status").await.json();
    assert!(v.get("transfers").is_none(), "{v}");
}

#[tokio::test]
async fn plan_shows_a_staged_change_and_commit_applies_it() {
    use riftkv_core::membership::state::ChangeMode;
    let api = start_replicating(2).await;
    join_member(&api.node, "n2");
    settle_state(&api.node);
    // Nothing pending: 200 with pending false, and nothing to commit.
    let v = api.get("/v1/admin/plan").await.json();
    assert_eq!(v["pending"], false, "{v}");
    assert_eq!(v["staged"], false, "{v}");
    assert_eq!(v["changes"], serde_json::json!([]));
    let v = error_of(api.post("/v1/admin/plan/commit").await, 409, "conflict");
    assert!(
        v["message"].as_str().unwrap().contains("nothing to commit"),
        "{v}"
    );
    error_of(
        api.post("/v1/admin/plan/commit?x=1").await,
        400,
        "bad_request",
    );

    // n3 joins and the claimant stages the plan.
    join_member(&api.node, "n3");
    let version = api
        .node
        .update_state(|s| {
            s.claimant_step_in(&NodeId::from("n1"), ChangeMode::Staged);
            (true, s.ring_version)
        })
        .await
        .unwrap();
    let v = api.get("/v1/admin/plan").await.json();
    assert_eq!(v["pending"], true, "{v}");
    assert_eq!(v["staged"], true, "{v}");
    assert_eq!(v["ring_version"], version);
    assert_eq!(v["changes"][0]["action"], "join");
    assert_eq!(v["changes"][0]["node"], "n3");
    assert_eq!(v["partitions"]["n3"]["before"], 0);
    assert!(v["partitions"]["n3"]["after"].as_u64().unwrap() > 0, "{v}");
    assert!(!v["transfers"].as_array().unwrap().is_empty(), "{v}");
    let status = api.get("/v1/admin/status").await.json();
    assert!(status.get("transfers").is_none(), "nothing moves: {status}");
    assert_eq!(status["staged_plan"], v["plan_id"], "{status}");

    let r = api.post("/v1/admin/plan/commit").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let v = r.json();
    assert_eq!(v["pending"], true, "{v}");
    assert_eq!(v["staged"], false, "{v}");
    assert!(api.node.state.read().ring_version > version);
    let status = api.get("/v1/admin/status").await.json();
    assert!(status["transfers"]["partitions_total"].as_u64().unwrap() > 0);
    assert!(status.get("staged_plan").is_none(), "{status}");
    // Already applying: nothing staged.
    let v = error_of(api.post("/v1/admin/plan/commit").await, 409, "conflict");
    assert!(
        v["message"].as_str().unwrap().contains("already applying"),
        "{v}"
    );
    settle_state(&api.node);
    let v = api.get("/v1/admin/plan").await.json();
    assert_eq!(v["pending"], false, "{v}");
    assert_eq!(
        v["partitions"]["n3"]["before"],
        v["partitions"]["n3"]["after"]
    );
}

#[tokio::test]
async fn plan_endpoints_need_the_admin_permission() {
    let api = start_with_auth().await;
    error_of(api.get("/v1/admin/plan").await, 401, "unauthorized");
    error_of(api.post("/v1/admin/plan/commit").await, 401, "unauthorized");
}

#[tokio::test]
async fn replace_needs_the_admin_permission() {
    let api = start_with_auth().await;
    error_of(api.post("/v1/admin/replace/a/b").await, 401, "unauthorized");
}
