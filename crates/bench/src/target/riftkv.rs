//! RiftKV through `riftkv-client`, over some nodes used in turn.
//!
//! - read: `GET /v1/kv/{bucket}/{key}` at `--r`/`--pr`; siblings are a success, `404` is
//!   `not_found`.
//! - update and insert: a blind `PUT` (no context) at `--w`/`--dw`/`--pw`, as YCSB's update
//!   never reads. In a `siblings` bucket each blind write would add a sibling, so the load
//!   phase sets the bucket's `conflict` to `lww` ([`Target::prepare_load`]).
//! - scan: one page of the bucket listing, `GET /v1/kv/{bucket}?keys=true&limit=LEN&after=K`
//!   with `K` the key just before the start key, so the page starts at it. The listing
//!   answers keys only: a scan reads no values (one GET per key would make it LEN requests).
//! - read-modify-write: a `GET`, then a `PUT` carrying the read's `X-RiftKV-Context`, so the
//!   write supersedes exactly what was read.

use async_trait::async_trait;
use bytes::Bytes;
use riftkv_client::request::Request;
use riftkv_client::response::{self, KeyPage};
use riftkv_client::{Client, Error as ClientError, Options, header};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{ErrorKind, OpError, Target, TargetError, TargetOptions};

/// How long one request may take before it counts as a `timeout` error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The RiftKV target.
#[derive(Debug)]
pub struct RiftKv {
    nodes: Vec<Client>,
    next: AtomicUsize,
    bucket: String,
    token: Option<String>,
    read_opts: Options,
    write_opts: Options,
}

fn op_error(e: &ClientError) -> OpError {
    let kind = match e {
        ClientError::NotFound { .. } => ErrorKind::NotFound,
        ClientError::Unavailable { .. } if e.is_timeout() => ErrorKind::Timeout,
        ClientError::Unavailable { .. } => ErrorKind::Unavailable,
        ClientError::Timeout(_) => ErrorKind::Timeout,
        ClientError::Connection(_) => ErrorKind::Connection,
        ClientError::UnexpectedResponse(_) => ErrorKind::Protocol,
        ClientError::PreconditionFailed(_) => ErrorKind::Conflict,
        _ => ErrorKind::Refused,
    };
    OpError::new(kind, e.to_string())
}

impl RiftKv {
    pub fn new(hosts: &[String], opts: &TargetOptions) -> Result<RiftKv, TargetError> {
        let first = hosts
            .first()
            .ok_or_else(|| TargetError::Syntax(String::new()))?;
        let invalid = |e: ClientError| TargetError::Invalid {
            spec: format!("riftkv://{}", hosts.join(",")),
            reason: e.to_string(),
        };
        let base = Client::builder(&format!("http://{first}"))
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(opts.connections.max(1))
            .build()
            .map_err(invalid)?;
        let nodes = hosts
            .iter()
            .map(|h| base.at(&format!("http://{h}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let c = &opts.consistency;
        Ok(RiftKv {
            nodes,
            next: AtomicUsize::new(0),
            bucket: opts.bucket.clone(),
            token: opts.token.clone(),
            read_opts: Options {
                r: c.r,
                pr: c.pr,
                ..Options::default()
            },
            write_opts: Options {
                w: c.w,
                dw: c.dw,
                pw: c.pw,
                ..Options::default()
            },
        })
    }

    fn node(&self) -> &Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len();
        &self.nodes[i]
    }

    /// Sends a request built against `node`, with the bearer token when one was given.
    async fn send(
        &self,
        node: &Client,
        req: Result<Request, ClientError>,
    ) -> Result<riftkv_client::RawResponse, OpError> {
        let mut req = req.map_err(|e| op_error(&e))?;
        if let Some(t) = &self.token {
            req = req
                .header(header::AUTHORIZATION, &format!("Bearer {t}"))
                .map_err(|e| op_error(&e))?;
        }
        node.execute(req).await.map_err(|e| op_error(&e))
    }

    async fn get(&self, node: &Client, key: &str) -> Result<Option<String>, OpError> {
        let resp = self
            .send(
                node,
                node.endpoint().get(&self.bucket, key, &self.read_opts),
            )
            .await?;
        let obj = response::decode_get(&resp).map_err(|e| op_error(&e))?;
        Ok(obj.context)
    }

    async fn put(
        &self,
        node: &Client,
        key: &str,
        value: Bytes,
        context: Option<String>,
    ) -> Result<(), OpError> {
        let opts = Options {
            context,
            ..self.write_opts.clone()
        };
        let resp = self
            .send(node, node.endpoint().put(&self.bucket, key, value, &opts))
            .await?;
        response::decode_put(&resp).map_err(|e| op_error(&e))?;
        Ok(())
    }
}

#[async_trait]
impl Target for RiftKv {
    async fn read(&self, key: &str) -> Result<(), OpError> {
        self.get(self.node(), key).await.map(drop)
    }

    async fn update(&self, key: &str, value: Bytes) -> Result<(), OpError> {
        self.put(self.node(), key, value, None).await
    }

    async fn insert(&self, key: &str, value: Bytes) -> Result<(), OpError> {
        self.put(self.node(), key, value, None).await
    }

    async fn scan(&self, start: &str, len: usize) -> Result<usize, OpError> {
        let node = self.node();
        let after = key_before(start);
        let limit = u32::try_from(len).unwrap_or(u32::MAX);
        let req = node
            .endpoint()
            .list_keys(&self.bucket, Some(limit), after.as_deref());
        let resp = self.send(node, req).await?;
        if !resp.is_success() {
            return Err(op_error(&response::error_of(&resp)));
        }
        let page: KeyPage =
            response::decode_json(&resp, "the key listing").map_err(|e| op_error(&e))?;
        Ok(page.keys.len())
    }

    async fn read_modify_write(&self, key: &str, value: Bytes) -> Result<(), OpError> {
        // Both requests go to the same node.
        let node = self.node();
        let context = match self.get(node, key).await {
            Ok(ctx) => ctx,
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        self.put(node, key, value, context).await
    }

    async fn prepare_load(&self) -> Result<(), OpError> {
        let node = self.node();
        let props = serde_json::json!({ "conflict": "lww" });
        let resp = self
            .send(node, node.endpoint().set_bucket_props(&self.bucket, &props))
            .await?;
        response::decode_empty(&resp).map_err(|e| op_error(&e))
    }

    async fn check(&self) -> Result<(), OpError> {
        for node in &self.nodes {
            match self.get(node, "riftkv-bench-check").await {
                Ok(_) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The greatest key that sorts before `key` and is at most as long, for an `after` that
/// makes a listing start at `key` itself: `key` with its last byte decremented, or `key`
/// minus its last byte when that byte is the lowest. `None` when nothing sorts before it
/// that the listing could be asked for (a one-byte key of the lowest byte).
fn key_before(key: &str) -> Option<String> {
    let mut bytes = key.as_bytes().to_vec();
    let last = bytes.pop()?;
    if last > 1 && last <= 0x7f {
        // Still ASCII, so still UTF-8; the key sorts right after it and everything between
        // is longer than `key` with that prefix, which YCSB's fixed-width keys never are.
        bytes.push(last - 1);
        bytes.extend_from_slice(&[0x7f; 4]);
    }
    let before = String::from_utf8(bytes).ok()?;
    (!before.is_empty()).then_some(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_starts_at_its_key() {
        let k = "user000000000042";
        let before = key_before(k).unwrap_or_default();
        assert!(before.as_str() < k);
        // No fixed-width key lies between.
        assert!(before.as_str() > "user000000000041");
        assert_eq!(key_before("ab\u{1}").as_deref(), Some("ab"));
        assert_eq!(key_before("\u{1}"), None);
    }
}
