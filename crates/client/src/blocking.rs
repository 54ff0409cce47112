//! The blocking transport: the same requests and answers as the async [`crate::Client`].

use bytes::Bytes;
use serde_json::Value;

use crate::error::{Error, Stage, TransportError};
use crate::request::{Endpoint, Options, Request, parse_base};
use crate::response::{self, KeyPage, Object, Preflist, RawResponse, TypeValue, WriteResult};

/// A blocking client bound to one node. Cheap to clone; clones share the connection pool.
/// Build and use it outside of an async runtime.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::blocking::Client,
    endpoint: Endpoint,
}

impl Client {
    pub(crate) fn from_parts(http: reqwest::blocking::Client, endpoint: Endpoint) -> Client {
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
    pub fn execute(&self, req: Request) -> Result<RawResponse, Error> {
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
            .map_err(|e| TransportError::from_reqwest(&e, Stage::Send, base, None).into_error())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().map_err(|e| {
            TransportError::from_reqwest(&e, Stage::Body, base, Some(status)).into_error()
        })?;
        Ok(RawResponse::new(status, headers, body))
    }

    /// Reads a key: every sibling and the context. Nothing live is [`Error::NotFound`].
    pub fn get(&self, bucket: &str, key: &str, opts: &Options) -> Result<Object, Error> {
        let resp = self.execute(self.endpoint.get(bucket, key, opts)?)?;
        response::decode_get(&resp)
    }

    /// Writes a value; supersedes what `opts.context` has seen.
    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        value: impl Into<Bytes>,
        opts: &Options,
    ) -> Result<WriteResult, Error> {
        let resp = self.execute(self.endpoint.put(bucket, key, value, opts)?)?;
        response::decode_put(&resp)
    }

    /// Deletes a key; supersedes what `opts.context` has seen.
    pub fn delete(&self, bucket: &str, key: &str, opts: &Options) -> Result<(), Error> {
        let resp = self.execute(self.endpoint.delete(bucket, key, opts)?)?;
        response::decode_empty(&resp)
    }

    /// Reads a data type value (merged, never siblings). Nothing written is
    /// [`Error::NotFound`].
    pub fn get_type(&self, bucket: &str, key: &str, opts: &Options) -> Result<TypeValue, Error> {
        let resp = self.execute(self.endpoint.get_type(bucket, key, opts)?)?;
        response::decode_json(&resp, "the data type value")
    }

    /// Applies a data type operation; with `opts.returnbody` answers the merged value.
    pub fn update_type(
        &self,
        bucket: &str,
        key: &str,
        op: &Value,
        opts: &Options,
    ) -> Result<Option<TypeValue>, Error> {
        let resp = self.execute(self.endpoint.update_type(bucket, key, op, opts)?)?;
        response::decode_update(&resp)
    }

    /// One page of a bucket's live keys, in byte order, after `after`.
    pub fn list_keys(
        &self,
        bucket: &str,
        limit: Option<u32>,
        after: Option<&str>,
    ) -> Result<KeyPage, Error> {
        let resp = self.execute(self.endpoint.list_keys(bucket, limit, after)?)?;
        response::decode_json(&resp, "the key listing")
    }

    /// A bucket's properties, as the server's JSON.
    pub fn bucket_props(&self, bucket: &str) -> Result<Value, Error> {
        let resp = self.execute(self.endpoint.get_bucket_props(bucket)?)?;
        response::decode_json(&resp, "the bucket props")
    }

    /// Sets a bucket's properties (any subset of the fields).
    pub fn set_bucket_props(&self, bucket: &str, props: &Value) -> Result<(), Error> {
        let resp = self.execute(self.endpoint.set_bucket_props(bucket, props)?)?;
        response::decode_empty(&resp)
    }

    /// `GET /v1/admin/status`, as the server's JSON.
    pub fn status(&self) -> Result<Value, Error> {
        self.admin_json("/v1/admin/status")
    }

    /// `GET /v1/admin/ring`, as the server's JSON.
    pub fn ring(&self) -> Result<Value, Error> {
        self.admin_json("/v1/admin/ring")
    }

    /// `GET /v1/admin/plan`: the pending ring change, as the server's JSON.
    pub fn plan(&self) -> Result<Value, Error> {
        self.admin_json("/v1/admin/plan")
    }

    /// `POST /v1/admin/plan/commit`: lets the staged ring change apply; the plan as it now
    /// stands. A 409 when nothing is staged.
    pub fn commit_plan(&self) -> Result<Value, Error> {
        self.admin(reqwest::Method::POST, "/v1/admin/plan/commit", &[], None)
    }

    /// An admin call (users, tokens, grants; see [`Endpoint::admin_request`]): the answer's
    /// JSON, or null when it has no body.
    pub fn admin(
        &self,
        method: reqwest::Method,
        literal: &str,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let req = self
            .endpoint
            .admin_request(method, literal, segments, body)?;
        let resp = self.execute(req)?;
        if resp.is_success() && resp.body.is_empty() {
            return Ok(Value::Null);
        }
        response::decode_json(&resp, literal)
    }

    fn admin_json(&self, path: &str) -> Result<Value, Error> {
        let resp = self.execute(self.endpoint.admin_get(path)?)?;
        response::decode_json(&resp, path)
    }

    /// The key's partition, primary owners, and the nodes that would serve it now.
    pub fn preflist(&self, bucket: &str, key: &str) -> Result<Preflist, Error> {
        let req = self.endpoint.admin_key("preflist", bucket, key)?;
        let resp = self.execute(req)?;
        response::decode_json(&resp, "the preference list")
    }

    /// This node's own stored copy of a key, as the server's JSON; [`Error::NotFound`] when
    /// it holds nothing.
    pub fn local(&self, bucket: &str, key: &str) -> Result<Value, Error> {
        let resp = self.execute(self.endpoint.admin_key("local", bucket, key)?)?;
        response::decode_json(&resp, "the local copy")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quorum;
    use crate::builder::ClientBuilder;
    use std::io::{Read as _, Write as _};
    use std::time::Duration;

    /// Serves one canned answer (raw bytes, written as given) and hands back the request head.
    fn canned(answer: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            sock.write_all(&answer).unwrap();
            String::from_utf8_lossy(&req).into_owned()
        });
        (url, handle)
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    }

    #[test]
    fn an_unreachable_node_is_a_connection_error_with_its_cause() {
        let c = Client::new(&format!("http://127.0.0.1:{}", free_port())).unwrap();
        let e = c.status().unwrap_err();
        assert!(matches!(e, Error::Connection(_)), "{e:?}");
        assert!(e.is_connect());
        let line = e.to_string();
        assert!(
            line.starts_with("cannot connect to http://127.0.0.1:"),
            "{line}"
        );
        // The root cause (the OS's word) is in the line, not only reqwest's summary.
        let t = e.transport().unwrap();
        assert!(t.chain.len() > 1, "{t:?}");
        assert!(line.ends_with(t.chain.last().unwrap().as_str()), "{line}");
    }

    #[test]
    fn a_quorum_failure_is_typed_with_needed_and_got() {
        let body =
            br#"{"error":"quorum_unavailable","message":"not enough replicas","needed":3,"got":1}"#;
        let mut answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(body);
        let (url, server) = canned(answer);
        let c = Client::new(&url).unwrap();
        let e = c
            .delete(
                "b",
                "k",
                &Options::new()
                    .w(Quorum::All)
                    .pw(Quorum::Count(2))
                    .context("ctx")
                    .timeout(Duration::from_millis(1500)),
            )
            .unwrap_err();
        let req = server.join().unwrap();
        assert!(
            req.starts_with("DELETE /v1/kv/b/k?w=all&pw=2&timeout=1500 HTTP/1.1"),
            "{req}"
        );
        assert!(
            req.to_ascii_lowercase()
                .contains("\r\nx-riftkv-context: ctx\r\n")
        );
        assert!(
            matches!(
                e,
                Error::Unavailable {
                    needed: Some(3),
                    got: Some(1),
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_body_cut_short_keeps_the_status_it_had() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"cont".to_vec();
        let (url, server) = canned(answer);
        let c = Client::new(&url).unwrap();
        let e = c.get("b", "k", &Options::new()).unwrap_err();
        server.join().unwrap();
        let t = e.transport().expect("a transport error");
        assert_eq!(t.stage, Stage::Body);
        assert_eq!(e.status(), Some(200));
        assert!(!e.is_connect());
        assert!(
            e.to_string()
                .starts_with("connection broke while reading the answer: "),
            "{e}"
        );
    }

    #[test]
    fn a_silent_node_times_out_after_the_request_timeout_and_grace() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let c = ClientBuilder::new(&url)
            .timeout_grace(Duration::from_millis(100))
            .build_blocking()
            .unwrap();
        let started = std::time::Instant::now();
        let e = c
            .get(
                "b",
                "k",
                &Options::new().timeout(Duration::from_millis(200)),
            )
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(e, Error::Timeout(_)), "{e:?}");
        assert!(e.is_timeout() && !e.is_connect());
        assert!(e.to_string().starts_with("timed out waiting for "), "{e}");
        drop(listener);
    }

    #[test]
    fn another_node_shares_the_settings() {
        let c = Client::new("http://127.0.0.1:1").unwrap();
        let d = c.at("http://127.0.0.2:2/").unwrap();
        assert_eq!(d.endpoint().base().as_str(), "http://127.0.0.2:2/");
        assert!(matches!(c.at("ftp://x"), Err(Error::InvalidRequest(_))));
        assert!(matches!(
            Client::new("127.0.0.1:8701"),
            Err(Error::InvalidRequest(_))
        ));
    }
}
