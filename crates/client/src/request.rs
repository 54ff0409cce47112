//! Building requests, without sending them: URLs with buckets and keys as single encoded path
//! segments, the query parameters of the contract, and the headers that carry meaning.

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, IF_NONE_MATCH};
use riftkv_types::Quorum;
use std::time::Duration;
use url::Url;

use crate::error::Error;

/// Header carrying the causal context token.
pub const CONTEXT_HEADER: &str = "X-RiftKV-Context";
/// Longest bucket name, in bytes.
pub const MAX_BUCKET_BYTES: usize = 255;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Everything but RFC 3986 unreserved characters is escaped, so a bucket or key is always
/// exactly one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment.
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Per-request options. Absent consistency parameters take the bucket's defaults on the
/// server; each is sent only when set, whatever the operation (the server applies each where
/// it matters: a delete without a context first reads at `r`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub r: Option<Quorum>,
    pub pr: Option<Quorum>,
    pub w: Option<Quorum>,
    pub dw: Option<Quorum>,
    pub pw: Option<Quorum>,
    /// Sent to the server as `timeout` (milliseconds); the client waits this long plus the
    /// client's grace before it gives up itself.
    pub timeout: Option<Duration>,
    /// `X-RiftKV-Context` of writes and deletes.
    pub context: Option<String>,
    /// `If-None-Match: *` on a write.
    pub if_none_match: bool,
    /// `Content-Type` of a written value (the server's default is
    /// `application/octet-stream`).
    pub content_type: Option<String>,
    /// `returnbody=true` on a write: the answer carries the object as a read would.
    pub returnbody: bool,
}

impl Options {
    pub fn new() -> Options {
        Options::default()
    }
    pub fn r(mut self, q: Quorum) -> Options {
        self.r = Some(q);
        self
    }
    pub fn pr(mut self, q: Quorum) -> Options {
        self.pr = Some(q);
        self
    }
    pub fn w(mut self, q: Quorum) -> Options {
        self.w = Some(q);
        self
    }
    pub fn dw(mut self, q: Quorum) -> Options {
        self.dw = Some(q);
        self
    }
    pub fn pw(mut self, q: Quorum) -> Options {
        self.pw = Some(q);
        self
    }
    pub fn timeout(mut self, t: Duration) -> Options {
        self.timeout = Some(t);
        self
    }
    pub fn context(mut self, token: impl Into<String>) -> Options {
        self.context = Some(token.into());
        self
    }
    pub fn if_none_match(mut self) -> Options {
        self.if_none_match = true;
        self
    }
    pub fn content_type(mut self, ct: impl Into<String>) -> Options {
        self.content_type = Some(ct.into());
        self
    }
    pub fn returnbody(mut self) -> Options {
        self.returnbody = true;
        self
    }

    /// The consistency parameters given, then `timeout`, in this fixed order.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q: Vec<(&'static str, String)> = [
            ("r", self.r),
            ("pr", self.pr),
            ("w", self.w),
            ("dw", self.dw),
            ("pw", self.pw),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (name, v.to_string())))
        .collect();
        if let Some(t) = self.timeout {
            q.push(("timeout", t.as_millis().to_string()));
        }
        q
    }
}

/// One request, ready for either transport.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
    /// How long the client waits for this request; `None` = the client's default.
    pub wait: Option<Duration>,
}

impl Request {
    pub fn new(method: Method, url: Url) -> Request {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            wait: None,
        }
    }

    /// Adds a header; a value HTTP cannot carry is refused before anything is sent.
    pub fn header(mut self, name: HeaderName, value: &str) -> Result<Request, Error> {
        let v = HeaderValue::from_str(value).map_err(|_| {
            Error::InvalidRequest(format!("{name} '{value}' is not a valid header value"))
        })?;
        self.headers.insert(name, v);
        Ok(self)
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Request {
        self.body = Some(body.into());
        self
    }

    pub fn wait(mut self, wait: Option<Duration>) -> Request {
        self.wait = wait;
        self
    }
}

/// Checks the size limits of the contract and the two names a URL path cannot carry.
pub fn validate_name(what: &str, s: &str, max: usize) -> Result<(), Error> {
    if s.is_empty() || s.len() > max {
        return Err(Error::InvalidRequest(format!(
            "{what} must be 1 to {max} bytes, got {}",
            s.len()
        )));
    }
    // URL normalisation removes "." and ".." segments even when percent-encoded.
    if s == "." || s == ".." {
        return Err(Error::InvalidRequest(format!(
            "{what} '{s}' cannot be sent as a URL path segment"
        )));
    }
    Ok(())
}

/// Parses a node's base URL: http, a host, no query or fragment (a path prefix is kept).
pub fn parse_base(s: &str) -> Result<Url, Error> {
    let url = Url::parse(s.trim())
        .map_err(|e| Error::InvalidRequest(format!("invalid base URL '{s}': {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(Error::InvalidRequest(format!(
            "invalid base URL '{s}': only http:// and https:// are supported"
        )));
    }
    if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(Error::InvalidRequest(format!(
            "invalid base URL '{s}': expected http(s)://HOST:PORT"
        )));
    }
    Ok(url)
}

/// Builds the requests of the REST API against one node's base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    base: Url,
    /// Added to a request's `timeout` to give the server time to answer its own timeout.
    grace: Duration,
}

impl Endpoint {
    pub fn new(base: Url, grace: Duration) -> Endpoint {
        Endpoint { base, grace }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The same settings against another node.
    pub fn with_base(&self, base: Url) -> Endpoint {
        Endpoint {
            base,
            grace: self.grace,
        }
    }

    /// `{base}{literal}/{segment}/...?{query}`, each segment percent-encoded.
    pub fn url(
        &self,
        literal: &str,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Url, Error> {
        let mut s = self.base.as_str().trim_end_matches('/').to_string();
        s.push_str(literal);
        for seg in segments {
            s.push('/');
            s.extend(utf8_percent_encode(seg, SEGMENT));
        }
        let mut url = Url::parse(&s)
            .map_err(|e| Error::InvalidRequest(format!("cannot build a URL: {e}")))?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// `{base}/v1/kv/{bucket}/{key}?{query}`.
    pub fn object_url(
        &self,
        bucket: &str,
        key: &str,
        query: &[(&str, String)],
    ) -> Result<Url, Error> {
        validate_name("bucket", bucket, MAX_BUCKET_BYTES)?;
        validate_name("key", key, MAX_KEY_BYTES)?;
        self.url("/v1/kv", &[bucket, key], query)
    }

    fn wait(&self, opts: &Options) -> Option<Duration> {
        opts.timeout.map(|t| t + self.grace)
    }

    fn with_context(&self, req: Request, opts: &Options) -> Result<Request, Error> {
        match &opts.context {
            Some(ctx) => req.header(HeaderName::from_static("x-riftkv-context"), ctx),
            None => Ok(req),
        }
    }

    /// `GET /v1/kv/{bucket}/{key}`, asking for the JSON form.
    pub fn get(&self, bucket: &str, key: &str, opts: &Options) -> Result<Request, Error> {
        let url = self.object_url(bucket, key, &opts.query())?;
        Request::new(Method::GET, url)
            .wait(self.wait(opts))
            .header(ACCEPT, "application/json")
    }

    /// `PUT /v1/kv/{bucket}/{key}` with the value as body.
    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        value: impl Into<Bytes>,
        opts: &Options,
    ) -> Result<Request, Error> {
        let mut query = opts.query();
        if opts.returnbody {
            query.push(("returnbody", "true".into()));
        }
        let url = self.object_url(bucket, key, &query)?;
        let mut req = Request::new(Method::PUT, url)
            .wait(self.wait(opts))
            .body(value);
        if let Some(ct) = &opts.content_type {
            req = req.header(CONTENT_TYPE, ct)?;
        }
        req = self.with_context(req, opts)?;
        if opts.if_none_match {
            req = req.header(IF_NONE_MATCH, "*")?;
        }
        if opts.returnbody {
            req = req.header(ACCEPT, "application/json")?;
        }
        Ok(req)
    }

    /// `GET /v1/types/{bucket}/{key}`: a data type value, merged.
    pub fn get_type(&self, bucket: &str, key: &str, opts: &Options) -> Result<Request, Error> {
        let url = self.type_url(bucket, key, &opts.query())?;
        Request::new(Method::GET, url)
            .wait(self.wait(opts))
            .header(ACCEPT, "application/json")
    }

    /// `POST /v1/types/{bucket}/{key}` with a JSON operation; `opts.context` (a data type
    /// context from [`Endpoint::get_type`]) travels as the context header.
    pub fn update_type(
        &self,
        bucket: &str,
        key: &str,
        op: &serde_json::Value,
        opts: &Options,
    ) -> Result<Request, Error> {
        let mut query = opts.query();
        if opts.returnbody {
            query.push(("returnbody", "true".into()));
        }
        let url = self.type_url(bucket, key, &query)?;
        let req = Request::new(Method::POST, url)
            .wait(self.wait(opts))
            .header(CONTENT_TYPE, "application/json")?
            .body(op.to_string());
        self.with_context(req, opts)
    }

    fn type_url(&self, bucket: &str, key: &str, query: &[(&str, String)]) -> Result<Url, Error> {
        validate_name("bucket", bucket, MAX_BUCKET_BYTES)?;
        validate_name("key", key, MAX_KEY_BYTES)?;
        self.url("/v1/types", &[bucket, key], query)
    }

    /// `DELETE /v1/kv/{bucket}/{key}`.
    pub fn delete(&self, bucket: &str, key: &str, opts: &Options) -> Result<Request, Error> {
        let url = self.object_url(bucket, key, &opts.query())?;
        let req = Request::new(Method::DELETE, url).wait(self.wait(opts));
        self.with_context(req, opts)
    }

    /// `GET /v1/kv/{bucket}?keys=true&limit=N&after=KEY`.
    pub fn list_keys(
        &self,
        bucket: &str,
        limit: Option<u32>,
        after: Option<&str>,
    ) -> Result<Request, Error> {
        validate_name("bucket", bucket, MAX_BUCKET_BYTES)?;
        let mut query = vec![("keys", "true".to_string())];
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        if let Some(a) = after {
            query.push(("after", a.to_string()));
        }
        let url = self.url("/v1/kv", &[bucket], &query)?;
        Request::new(Method::GET, url).header(ACCEPT, "application/json")
    }

    /// `GET /v1/buckets/{bucket}/props`.
    pub fn get_bucket_props(&self, bucket: &str) -> Result<Request, Error> {
        validate_name("bucket", bucket, MAX_BUCKET_BYTES)?;
        let url = self.url("/v1/buckets", &[bucket, "props"], &[])?;
        Request::new(Method::GET, url).header(ACCEPT, "application/json")
    }

    /// `PUT /v1/buckets/{bucket}/props` with the props as JSON.
    pub fn set_bucket_props(
        &self,
        bucket: &str,
        props: &serde_json::Value,
    ) -> Result<Request, Error> {
        validate_name("bucket", bucket, MAX_BUCKET_BYTES)?;
        let url = self.url("/v1/buckets", &[bucket, "props"], &[])?;
        Ok(Request::new(Method::PUT, url)
            .header(CONTENT_TYPE, "application/json")?
            .body(props.to_string()))
    }

    /// Any other route: `{method} {base}{path}?{query}`, with no headers (e.g. test-only
    /// routes of a fault-injection build).
    pub fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Request, Error> {
        Ok(Request::new(method, self.url(path, &[], query)?))
    }

    /// `GET {path}` of an admin endpoint (`/v1/admin/status`, `/v1/admin/ring`).
    pub fn admin_get(&self, path: &str) -> Result<Request, Error> {
        let url = self.url(path, &[], &[])?;
        Request::new(Method::GET, url).header(ACCEPT, "application/json")
    }

    /// A request to an admin route (`literal` then `segments`, each one encoded path
    /// segment) with an optional JSON body: users, tokens and grants.
    pub fn admin_request(
        &self,
        method: Method,
        literal: &str,
        segments: &[&str],
        body: Option<&serde_json::Value>,
    ) -> Result<Request, Error> {
        let url = self.url(literal, segments, &[])?;
        let req = Request::new(method, url).header(ACCEPT, "application/json")?;
        match body {
            Some(b) => {
                let bytes = serde_json::to_vec(b)
                    .map_err(|e| Error::InvalidRequest(format!("cannot encode the body: {e}")))?;
                Ok(req.header(CONTENT_TYPE, "application/json")?.body(bytes))
            }
            None => Ok(req),
        }
    }

    /// `GET /v1/admin/{what}/{bucket}/{key}` (`preflist`, `local`).
    pub fn admin_key(&self, what: &str, bucket: &str, key: &str) -> Result<Request, Error> {
        validate_name("bucket", bucket, MAX_BUCKET_BYTES)?;
        validate_name("key", key, MAX_KEY_BYTES)?;
        let url = self.url(&format!("/v1/admin/{what}"), &[bucket, key], &[])?;
        Request::new(Method::GET, url).header(ACCEPT, "application/json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Endpoint {
        Endpoint::new(
            parse_base("http://127.0.0.1:8701").unwrap(),
            Duration::from_secs(2),
        )
    }

    #[test]
    fn object_urls_encode_bucket_and_key_as_single_segments() {
        let u = base().object_url("my bucket", "a/b?c#d%e", &[]).unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8701/v1/kv/my%20bucket/a%2Fb%3Fc%23d%25e"
        );
        let u = base().object_url("b", "ключ", &[]).unwrap();
        assert_eq!(u.path(), "/v1/kv/b/%D0%BA%D0%BB%D1%8E%D1%87");
        let u = base().object_url("b", "a.b-c_d~e", &[]).unwrap();
        assert_eq!(u.path(), "/v1/kv/b/a.b-c_d~e");
        // A key with dots inside survives URL normalisation.
        let u = base().object_url("b", "...", &[]).unwrap();
        assert_eq!(u.path(), "/v1/kv/b/...");
        assert_eq!(encode_segment("set-1"), "set-1");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn base_url_with_path_and_trailing_slash() {
        let b = Endpoint::new(
            parse_base("http://localhost:9000/riftkv/").unwrap(),
            Duration::ZERO,
        );
        let u = b.object_url("b", "k", &[("r", "2".into())]).unwrap();
        assert_eq!(u.as_str(), "http://localhost:9000/riftkv/v1/kv/b/k?r=2");
        assert_eq!(
            base().admin_get("/v1/admin/status").unwrap().url.as_str(),
            "http://127.0.0.1:8701/v1/admin/status"
        );
        for bad in [
            "127.0.0.1:8701",
            "gopher://x:1",
            "https://x:1/?a=1",
            "http://x/?a=1",
            "not a url",
        ] {
            assert!(
                matches!(parse_base(bad), Err(Error::InvalidRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_are_length_checked() {
        let b = base();
        assert!(b.object_url("", "k", &[]).is_err());
        assert!(b.object_url("b", "", &[]).is_err());
        assert!(
            b.object_url(&"b".repeat(255), &"k".repeat(1024), &[])
                .is_ok()
        );
        assert!(b.object_url(&"b".repeat(256), "k", &[]).is_err());
        let e = b.object_url("b", &"k".repeat(1025), &[]).unwrap_err();
        assert_eq!(
            e,
            Error::InvalidRequest("key must be 1 to 1024 bytes, got 1025".into())
        );
        assert!(b.object_url("b", "..", &[]).is_err());
        assert!(b.object_url(".", "k", &[]).is_err());
    }

    #[test]
    fn every_quorum_option_given_becomes_a_query_parameter() {
        let o = Options {
            r: Some(Quorum::Quorum),
            pr: Some(Quorum::Count(1)),
            w: Some(Quorum::All),
            dw: Some(Quorum::Count(0)),
            pw: Some(Quorum::One),
            ..Default::default()
        };
        assert_eq!(
            o.query(),
            vec![
                ("r", "quorum".to_string()),
                ("pr", "1".to_string()),
                ("w", "all".to_string()),
                ("dw", "0".to_string()),
                ("pw", "one".to_string())
            ]
        );
        assert!(Options::default().query().is_empty());
    }

    #[test]
    fn query_parameters_are_encoded() {
        let u = base()
            .object_url(
                "b",
                "k",
                &[("w", "quorum".into()), ("timeout", "250".into())],
            )
            .unwrap();
        assert_eq!(u.query(), Some("w=quorum&timeout=250"));
        let r = base().list_keys("b b", Some(10), Some("a&b c")).unwrap();
        assert_eq!(
            r.url.as_str(),
            "http://127.0.0.1:8701/v1/kv/b%20b?keys=true&limit=10&after=a%26b+c"
        );
    }

    #[test]
    fn a_put_carries_its_options_as_headers_and_query() {
        let o = Options::new()
            .w(Quorum::Quorum)
            .timeout(Duration::from_millis(1500))
            .context("ctx")
            .if_none_match()
            .content_type("text/plain")
            .returnbody();
        let r = base().put("b", "k", b"v".to_vec(), &o).unwrap();
        assert_eq!(r.method, Method::PUT);
        assert_eq!(r.url.query(), Some("w=quorum&timeout=1500&returnbody=true"));
        assert_eq!(r.headers["x-riftkv-context"], "ctx");
        assert_eq!(r.headers["if-none-match"], "*");
        assert_eq!(r.headers["content-type"], "text/plain");
        assert_eq!(r.headers["accept"], "application/json");
        assert_eq!(r.body.as_deref(), Some(&b"v"[..]));
        assert_eq!(r.wait, Some(Duration::from_millis(3500)));
        // Nothing optional is sent unless asked for.
        let r = base().put("b", "k", Bytes::new(), &Options::new()).unwrap();
        assert_eq!(r.url.query(), None);
        assert!(r.headers.is_empty());
        assert_eq!(r.wait, None);
        let e = base()
            .delete("b", "k", &Options::new().context("bad\nctx"))
            .unwrap_err();
        assert!(matches!(e, Error::InvalidRequest(_)), "{e:?}");
    }

    #[test]
    fn buckets_and_admin_paths() {
        let b = base();
        assert_eq!(
            b.get_bucket_props("carts").unwrap().url.path(),
            "/v1/buckets/carts/props"
        );
        let r = b
            .set_bucket_props("c/d", &serde_json::json!({"n": 3}))
            .unwrap();
        assert_eq!(r.url.path(), "/v1/buckets/c%2Fd/props");
        assert_eq!(r.body.as_deref(), Some(&br#"{"n":3}"#[..]));
        assert_eq!(
            b.admin_key("preflist", "b", "k/1").unwrap().url.path(),
            "/v1/admin/preflist/b/k%2F1"
        );
    }
}
