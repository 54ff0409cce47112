//! etcd through its v3 JSON gateway (`POST /v3/kv/...`, keys and values base64), over some
//! members used in turn.
//!
//! - read: `range` of the key; no `kvs` is `not_found`.
//! - update and insert: `put`.
//! - scan: `range` from the start key to the end of the key space (`range_end` = `\0`) with
//!   `limit` = the scan length; values included.
//! - read-modify-write: `range`, then a `txn` whose compare is the read's `mod_revision`
//!   (or "the key does not exist" when the read found nothing) and whose success branch is
//!   the `put`: the write happens only if nothing was written in between, etcd's way of
//!   making the write follow the read. A lost compare is a `conflict` error.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{ErrorKind, OpError, Target, TargetError, TargetOptions};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The etcd target.
#[derive(Debug)]
pub struct Etcd {
    http: reqwest::Client,
    members: Vec<String>,
    next: AtomicUsize,
}

fn transport_error(e: &reqwest::Error) -> OpError {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_decode() {
        ErrorKind::Protocol
    } else {
        ErrorKind::Connection
    };
    OpError::new(kind, e.to_string())
}

/// An `int64` of the gateway's JSON: a string or a number.
fn int64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

impl Etcd {
    pub fn new(hosts: &[String], opts: &TargetOptions) -> Result<Etcd, TargetError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(opts.connections.max(1))
            .build()
            .map_err(|e| TargetError::Invalid {
                spec: format!("etcd://{}", hosts.join(",")),
                reason: e.to_string(),
            })?;
        Ok(Etcd {
            http,
            members: hosts.iter().map(|h| format!("http://{h}")).collect(),
            next: AtomicUsize::new(0),
        })
    }

    fn member(&self) -> &str {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.members.len();
        &self.members[i]
    }

    async fn call(&self, member: &str, path: &str, body: &Value) -> Result<Value, OpError> {
        let resp = self
            .http
            .post(format!("{member}{path}"))
            .json(body)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
        if !status.is_success() {
            let kind = match status.as_u16() {
                503 => ErrorKind::Unavailable,
                504 | 408 => ErrorKind::Timeout,
                _ => ErrorKind::Refused,
            };
            let text = String::from_utf8_lossy(&bytes);
            return Err(OpError::new(kind, format!("{status}: {}", text.trim())));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| OpError::new(ErrorKind::Protocol, format!("{path} answered: {e}")))
    }

    /// The key's `mod_revision`, `None` when it does not exist.
    async fn range_one(&self, member: &str, key: &str) -> Result<Option<i64>, OpError> {
        let v = self
            .call(member, "/v3/kv/range", &json!({ "key": B64.encode(key) }))
            .await?;
        match v
            .get("kvs")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            None => Ok(None),
            Some(kv) => Ok(Some(kv.get("mod_revision").and_then(int64).unwrap_or(0))),
        }
    }

    async fn put(&self, member: &str, key: &str, value: &[u8]) -> Result<(), OpError> {
        let body = json!({ "key": B64.encode(key), "value": B64.encode(value) });
        self.call(member, "/v3/kv/put", &body).await.map(drop)
    }
}

#[async_trait]
impl Target for Etcd {
    async fn read(&self, key: &str) -> Result<(), OpError> {
        match self.range_one(self.member(), key).await? {
            Some(_) => Ok(()),
            None => Err(OpError::new(
                ErrorKind::NotFound,
                format!("{key} not found"),
            )),
        }
    }

    async fn update(&self, key: &str, value: Bytes) -> Result<(), OpError> {
        self.put(self.member(), key, &value).await
    }

    async fn insert(&self, key: &str, value: Bytes) -> Result<(), OpError> {
        self.put(self.member(), key, &value).await
    }

    async fn scan(&self, start: &str, len: usize) -> Result<usize, OpError> {
        let body = json!({
            "key": B64.encode(start),
            "range_end": B64.encode([0u8]),
            "limit": len,
        });
        let v = self.call(self.member(), "/v3/kv/range", &body).await?;
        Ok(v.get("kvs").and_then(Value::as_array).map_or(0, Vec::len))
    }

    async fn read_modify_write(&self, key: &str, value: Bytes) -> Result<(), OpError> {
        let member = self.member();
        let rev = self.range_one(member, key).await?;
        let k = B64.encode(key);
        // A key that does not exist has create_revision 0.
        let compare = match rev {
            Some(rev) => {
                json!({ "key": k, "target": "MOD", "result": "EQUAL", "mod_revision": rev })
            }
            None => {
                json!({ "key": k, "target": "CREATE", "result": "EQUAL", "create_revision": 0 })
            }
        };
        let body = json!({
            "compare": [compare],
            "success": [{ "request_put": { "key": k, "value": B64.encode(&value) } }],
        });
        let v = self.call(member, "/v3/kv/txn", &body).await?;
        if v.get("succeeded").and_then(Value::as_bool) == Some(true) {
            Ok(())
        } else {
            Err(OpError::new(
                ErrorKind::Conflict,
                format!("{key} was written between the read and the write"),
            ))
        }
    }

    async fn check(&self) -> Result<(), OpError> {
        for m in &self.members {
            self.range_one(m, "riftkv-bench-check").await?;
        }
        Ok(())
    }
}
