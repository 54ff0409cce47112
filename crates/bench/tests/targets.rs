//! What each target sends, against small fakes on 127.0.0.1: the RiftKV target's requests
//! (token, context of a read-modify-write, the listing of a scan) and the Redis target's
//! commands over the hand-written RESP.

mod common;

use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::routing::any;
use bytes::{Bytes, BytesMut};
use riftkv_bench::target::redis::{INDEX, Redis};
use riftkv_bench::target::resp::{self, Value};
use riftkv_bench::target::riftkv::RiftKv;
use riftkv_bench::target::{ErrorKind, Target, TargetOptions};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::loopback;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every request the fake node saw: method, URI, context header.
type Seen = Arc<Mutex<Vec<(Method, String, Option<String>)>>>;

async fn node(
    State(seen): State<Seen>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> (StatusCode, HeaderMap, String) {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let mut out = HeaderMap::new();
    if header("authorization").as_deref() != Some("Bearer sesame") {
        return (
            StatusCode::UNAUTHORIZED,
            out,
            r#"{"error":"unauthorized","message":"no"}"#.into(),
        );
    }
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((method.clone(), uri.to_string(), header("x-riftkv-context")));
    out.insert("content-type", HeaderValue::from_static("application/json"));
    let path = uri.path();
    match method {
        Method::GET if path == "/v1/kv/b" => (
            StatusCode::OK,
            out,
            r#"{"keys":["k1","k2"],"next":null}"#.into(),
        ),
        Method::GET if path.ends_with("/missing") => (
            StatusCode::NOT_FOUND,
            out,
            r#"{"error":"not_found","message":"none"}"#.into(),
        ),
        Method::GET => {
            out.insert("x-riftkv-context", HeaderValue::from_static("ctx-of-read"));
            (
                StatusCode::OK,
                out,
                r#"{"context":"ctx-of-read","siblings":[{"value_base64":"YQ=="}]}"#.into(),
            )
        }
        Method::PUT => (StatusCode::NO_CONTENT, out, String::new()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, out, String::new()),
    }
}

async fn serve(app: Router) -> (String, tokio::task::JoinHandle<()>) {
    let (listener, addr) = loopback().await;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

#[tokio::test]
async fn riftkv_target_requests() {
    let seen: Seen = Arc::default();
    let app = Router::new().fallback(any(node)).with_state(seen.clone());
    let (addr, task) = serve(app).await;
    let opts = |token: Option<&str>| TargetOptions {
        bucket: "b".into(),
        token: token.map(String::from),
        connections: 2,
        consistency: riftkv_client::Options::new().r(riftkv_client::Quorum::All),
    };
    let hosts = [addr.clone()];
    let anonymous = RiftKv::new(&hosts, &opts(None)).unwrap_or_else(|e| panic!("{e}"));
    let refused = anonymous.read("k").await.map_err(|e| e.kind);
    assert_eq!(refused, Err(ErrorKind::Refused));

    let t = RiftKv::new(&hosts, &opts(Some("sesame"))).unwrap_or_else(|e| panic!("{e}"));
    t.check().await.unwrap_or_else(|e| panic!("{e}"));
    let missing = t.read("missing").await.map_err(|e| e.kind);
    assert_eq!(missing, Err(ErrorKind::NotFound));
    t.read_modify_write("k", Bytes::from_static(b"v"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    t.update("k", Bytes::from_static(b"v"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = t
        .scan("user000000000042", 7)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, 2);
    task.abort();

    let seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let requests: Vec<(String, String, Option<&str>)> = seen
        .iter()
        .map(|(m, u, c)| (m.to_string(), u.clone(), c.as_deref()))
        .collect();
    // check, missing, the read-modify-write's GET then PUT with its context, a blind
    // update, the scan's listing page that starts at the key.
    assert_eq!(requests.len(), 6, "{requests:?}");
    assert_eq!(requests[2].0, "GET");
    assert_eq!(requests[2].1, "/v1/kv/b/k?r=all");
    assert_eq!(
        requests[3],
        ("PUT".into(), "/v1/kv/b/k".into(), Some("ctx-of-read"))
    );
    assert_eq!(requests[4], ("PUT".into(), "/v1/kv/b/k".into(), None));
    assert_eq!(requests[5].0, "GET");
    assert!(
        requests[5]
            .1
            .starts_with("/v1/kv/b?keys=true&limit=7&after=user000000000041"),
        "{}",
        requests[5].1
    );
}

/// A fake Redis: strings, one sorted set of score-0 members, answers in RESP2.
#[derive(Default)]
struct FakeRedis {
    strings: BTreeMap<Vec<u8>, Vec<u8>>,
    index: std::collections::BTreeSet<Vec<u8>>,
}

fn bulk(b: &[u8]) -> Vec<u8> {
    [format!("${}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat()
}

impl FakeRedis {
    fn answer(&mut self, cmd: &[Vec<u8>]) -> Vec<u8> {
        let name = cmd
            .first()
            .map(|c| c.to_ascii_uppercase())
            .unwrap_or_default();
        match (name.as_slice(), &cmd[1..]) {
            (b"PING", []) => b"+PONG\r\n".to_vec(),
            (b"GET", [k]) => match self.strings.get(k) {
                Some(v) => bulk(v),
                None => b"$-1\r\n".to_vec(),
            },
            (b"SET", [k, v]) => {
                self.strings.insert(k.clone(), v.clone());
                b"+OK\r\n".to_vec()
            }
            (b"ZADD", [set, _, m]) if set == INDEX.as_bytes() => {
                self.index.insert(m.clone());
                b":1\r\n".to_vec()
            }
            (b"ZRANGEBYLEX", [_, from, _, _, _, n]) => {
                let from = from.get(1..).unwrap_or_default().to_vec();
                let n: usize = String::from_utf8_lossy(n).parse().unwrap_or(0);
                let keys: Vec<&Vec<u8>> = self.index.range(from..).take(n).collect();
                let mut out = format!("*{}\r\n", keys.len()).into_bytes();
                keys.iter().for_each(|k| out.extend(bulk(k)));
                out
            }
            (b"MGET", keys) => {
                let mut out = format!("*{}\r\n", keys.len()).into_bytes();
                for k in keys {
                    out.extend(self.strings.get(k).map_or(b"$-1\r\n".to_vec(), |v| bulk(v)));
                }
                out
            }
            _ => b"-ERR unknown command\r\n".to_vec(),
        }
    }
}

async fn fake_redis_connection(mut sock: tokio::net::TcpStream, db: Arc<Mutex<FakeRedis>>) {
    let mut buf = BytesMut::new();
    loop {
        while let Ok(Some((v, used))) = resp::parse(&buf) {
            let _ = buf.split_to(used);
            let Value::Array(Some(items)) = v else { return };
            let cmd: Vec<Vec<u8>> = items
                .into_iter()
                .filter_map(|i| match i {
                    Value::Bulk(Some(b)) => Some(b.to_vec()),
                    _ => None,
                })
                .collect();
            let answer = db
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .answer(&cmd);
            // Answers trickle out a few bytes at a time: the client must reassemble them.
            for chunk in answer.chunks(3) {
                if sock.write_all(chunk).await.is_err() {
                    return;
                }
            }
        }
        match sock.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn redis_target_commands() {
    let (listener, addr) = loopback().await;
    let db = Arc::new(Mutex::new(FakeRedis::default()));
    let server_db = db.clone();
    let server = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(fake_redis_connection(sock, server_db.clone()));
        }
    });
    let test = async {
        let t = Redis::new(
            &addr,
            &TargetOptions {
                connections: 2,
                ..TargetOptions::default()
            },
        );
        t.check().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t.read("k3").await.map_err(|e| e.kind),
            Err(ErrorKind::NotFound)
        );
        for k in ["k1", "k2", "k3", "k4"] {
            t.insert(k, Bytes::from(format!("value of {k}")))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        t.read("k3").await.unwrap_or_else(|e| panic!("{e}"));
        let rmw = t.read_modify_write("k1", Bytes::from_static(b"rmw")).await;
        assert_eq!(rmw, Ok(()));
        assert_eq!(t.update("k3", Bytes::from_static(b"new")).await, Ok(()));
        assert_eq!(t.scan("k2", 2).await, Ok(2));
        assert_eq!(t.scan("k2", 10).await, Ok(3));
        assert_eq!(t.scan("z", 10).await, Ok(0));
        let db = db.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        assert_eq!(
            db.strings.get(b"k3".as_slice()).map(Vec::as_slice),
            Some(&b"new"[..])
        );
        assert_eq!(
            db.strings.get(b"k1".as_slice()).map(Vec::as_slice),
            Some(&b"rmw"[..])
        );
        assert_eq!(db.index.len(), 4);
    };
    tokio::time::timeout(Duration::from_secs(20), test)
        .await
        .unwrap_or_else(|_| panic!("over 20 s"));
    server.abort();
}

#[tokio::test]
async fn redis_target_survives_a_hostile_server() {
    let (listener, addr) = loopback().await;
    // Answers garbage to the first connection, an error reply to the second, then closes.
    let server = tokio::spawn(async move {
        let replies: [&[u8]; 3] = [b"?garbage\r\n", b"-ERR wrong\r\n", b""];
        for reply in replies {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(reply).await;
        }
    });
    let t = Redis::new(&addr, &TargetOptions::default());
    let kinds = [
        t.read("k").await.map_err(|e| e.kind),
        t.read("k").await.map_err(|e| e.kind),
        t.read("k").await.map_err(|e| e.kind),
    ];
    assert_eq!(
        kinds,
        [
            Err(ErrorKind::Protocol),
            Err(ErrorKind::Refused),
            Err(ErrorKind::Connection)
        ]
    );
    server.abort();
}
