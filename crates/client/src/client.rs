//! The async transport.

use bytes::Bytes;
use serde_json::Value;

use crate::builder::ClientBuilder;
use crate::error::{Error, Stage, TransportError};
use crate::request::{Endpoint, Options, Request, parse_base};
use crate::response::{self, KeyPage, Object, Preflist, RawResponse, TypeValue, WriteResult};

/// An async client bound to one node. Cheap to clone; clones share the connection pool, so
/// many requests can be in flight at once.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    endpoint: Endpoint,
}

impl Client {
    /// A client of the node at `base` with the default settings.
    pub fn new(base: &str) -> Result<Client, Error> {
        ClientBuilder::new(base).build()
    }

    pub fn builder(base: &str) -> ClientBuilder {
        ClientBuilder::new(base)
    }

    pub(crate) fn from_parts(http: reqwest::Client, endpoint: Endpoint) -> Client {
        Client { http, endpoint }
    }

    /// The same client (settings and connection pool) bound to another node.
    pub fn at(&self, base: &str) -> Result<Client, Error> {
        Ok(Client {
            http: self.http.clone(),
            endpoint: self.endpoint.with_base(parse_base(base)?),
        })
    }

    /// The request builder of this node.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends one request and reads the whole answer, whatever its status.
    pub async fn execute(&self, req: Request) -> Result<RawResponse, Error> {
        let base = self.endpoint.base().as_str();
        let mut b = self.http.request(req.method, req.url).headers(req.headers);
        if let Some(body) = req.body {
            b = b.body(body);
        }
        if let Some(wait) = req.wait {
            b = b.timeout(wait);
        }
        let resp = b
            .send()
            .await
            .map_err(|e| TransportError::from_reqwest(&e, Stage::Send, base, None).into_error())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| {
            TransportError::from_reqwest(&e, Stage::Body, base, Some(status)).into_error()
        })?;
        Ok(RawResponse::new(status, headers, body))
    }

    /// Reads a key: every sibling and the context. Nothing live is [`Error::NotFound`].
    pub async fn get(&self, bucket: &str, key: &str, opts: &Options) -> Result<Object, Error> {
        let resp = self.execute(self.endpoint.get(bucket, key, opts)?).await?;
        response::decode_get(&resp)
    }

    /// Writes a value; supersedes what `opts.context` has seen.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        value: impl Into<Bytes>,
        opts: &Options,
    ) -> Result<WriteResult, Error> {
        let resp = self
            .execute(self.endpoint.put(bucket, key, value, opts)?)
            .await?;
        response::decode_put(&resp)
    }

    /// Deletes a key; supersedes what `opts.context` has seen.
    pub async fn delete(&self, bucket: &str, key: &str, opts: &Options) -> Result<(), Error> {
        let resp = self
            .execute(self.endpoint.delete(bucket, key, opts)?)
            .await?;
        response::decode_empty(&resp)
    }

    /// Reads a data type value (merged, never siblings). Nothing written is
    /// [`Error::NotFound`].
    pub async fn get_type(
        &self,
        bucket: &str,
        key: &str,
        opts: &Options,
    ) -> Result<TypeValue, Error> {
        let resp = self
            .execute(self.endpoint.get_type(bucket, key, opts)?)
            .await?;
        response::decode_json(&resp, "the data type value")
    }

    /// Applies a data type operation; with `opts.returnbody` answers the merged value.
    pub async fn update_type(
        &self,
        bucket: &str,
        key: &str,
        op: &Value,
        opts: &Options,
    ) -> Result<Option<TypeValue>, Error> {
        let resp = self
            .execute(self.endpoint.update_type(bucket, key, op, opts)?)
            .await?;
        response::decode_update(&resp)
    }

    /// One page of a bucket's live keys, in byte order, after `after`.
    pub async fn list_keys(
        &self,
        bucket: &str,
        limit: Option<u32>,
        after: Option<&str>,
    ) -> Result<KeyPage, Error> {
        let resp = self
            .execute(self.endpoint.list_keys(bucket, limit, after)?)
            .await?;
        response::decode_json(&resp, "the key listing")
    }

    /// A bucket's properties, as the server's JSON.
    pub async fn bucket_props(&self, bucket: &str) -> Result<Value, Error> {
        let resp = self
            .execute(self.endpoint.get_bucket_props(bucket)?)
            .await?;
        response::decode_json(&resp, "the bucket props")
    }

    /// Sets a bucket's properties (any subset of the fields).
    pub async fn set_bucket_props(&self, bucket: &str, props: &Value) -> Result<(), Error> {
        let resp = self
            .execute(self.endpoint.set_bucket_props(bucket, props)?)
            .await?;
        response::decode_empty(&resp)
    }

    /// `GET /v1/admin/status`, as the server's JSON.
    pub async fn status(&self) -> Result<Value, Error> {
        self.admin_json("/v1/admin/status").await
    }

    /// `GET /v1/admin/ring`, as the server's JSON.
    pub async fn ring(&self) -> Result<Value, Error> {
        self.admin_json("/v1/admin/ring").await
    }

    /// `GET /v1/admin/plan`: the pending ring change, as the server's JSON.
    pub async fn plan(&self) -> Result<Value, Error> {
        self.admin_json("/v1/admin/plan").await
    }

    /// `POST /v1/admin/plan/commit`: lets the staged ring change apply; the plan as it now
    /// stands. A 409 when nothing is staged.
    pub async fn commit_plan(&self) -> Result<Value, Error> {
        let path = "/v1/admin/plan/commit";
        let req = self
            .endpoint
            .admin_request(reqwest::Method::POST, path, &[], None)?;
        let resp = self.execute(req).await?;
        response::decode_json(&resp, path)
    }

    async fn admin_json(&self, path: &str) -> Result<Value, Error> {
        let resp = self.execute(self.endpoint.admin_get(path)?).await?;
        response::decode_json(&resp, path)
    }

    /// The key's partition, primary owners, and the nodes that would serve it now.
    pub async fn preflist(&self, bucket: &str, key: &str) -> Result<Preflist, Error> {
        let req = self.endpoint.admin_key("preflist", bucket, key)?;
        let resp = self.execute(req).await?;
        response::decode_json(&resp, "the preference list")
    }

    /// This node's own stored copy of a key, as the server's JSON; [`Error::NotFound`] when
    /// it holds nothing.
    pub async fn local(&self, bucket: &str, key: &str) -> Result<Value, Error> {
        let resp = self
            .execute(self.endpoint.admin_key("local", bucket, key)?)
            .await?;
        response::decode_json(&resp, "the local copy")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_siblings_and_writes_with_the_context() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut heads = Vec::new();
            let body =
                r#"{"context":"c1","siblings":[{"value_base64":"YQ=="},{"value_base64":"Yg=="}]}"#;
            let answers = [
                format!(
                    "HTTP/1.1 300 Multiple Choices\r\nContent-Type: application/json\r\nX-RiftKV-Context: c1\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
                "HTTP/1.1 204 No Content\r\nX-RiftKV-Context: c2\r\n\r\n".to_string(),
            ];
            let (mut sock, _) = listener.accept().await.unwrap();
            for answer in answers {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                // Head, then the body its Content-Length announces.
                loop {
                    let n = sock.read(&mut buf).await.unwrap();
                    req.extend_from_slice(&buf[..n]);
                    let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if n == 0 || req.len() >= end + 4 + len {
                        break;
                    }
                }
                heads.push(String::from_utf8_lossy(&req).into_owned());
                sock.write_all(answer.as_bytes()).await.unwrap();
            }
            heads
        });
        let c = Client::new(&url).unwrap();
        let obj = c
            .get("b", "k", &Options::new().r(crate::Quorum::All))
            .await
            .unwrap();
        assert_eq!(obj.context.as_deref(), Some("c1"));
        assert_eq!(obj.siblings.len(), 2);
        let w = c
            .put(
                "b",
                "k",
                "ab",
                &Options::new().context(obj.context.unwrap_or_default()),
            )
            .await
            .unwrap();
        assert_eq!(w.context.as_deref(), Some("c2"));
        let heads = server.await.unwrap();
        assert!(
            heads[0].starts_with("GET /v1/kv/b/k?r=all HTTP/1.1"),
            "{}",
            heads[0]
        );
        assert!(
            heads[0]
                .to_ascii_lowercase()
                .contains("accept: application/json")
        );
        assert!(
            heads[1].starts_with("PUT /v1/kv/b/k HTTP/1.1"),
            "{}",
            heads[1]
        );
        assert!(
            heads[1]
                .to_ascii_lowercase()
                .contains("x-riftkv-context: c1")
        );
        assert!(heads[1].ends_with("\r\n\r\nab"), "{}", heads[1]);
    }
}
