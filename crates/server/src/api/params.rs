//! Request parameters of the REST API: path segments as raw bytes, the query string, and the
//! headers that carry meaning (context, If-None-Match, Content-Type, Accept, X-Request-Id).
//! Every check is a pure function so each bad value's error is unit-tested.

use super::error::ApiError;
use axum::http::{HeaderMap, header};
use percent_encoding::percent_decode;
use riftkv_core::bucket::Quorum;
use riftkv_core::version::{ContextKey, DEFAULT_CONTENT_TYPE, VersionVector, decode_context};
use std::time::Duration;

/// Longest bucket name, in bytes after URL-decoding.
pub const MAX_BUCKET_BYTES: usize = 255;
/// Longest key, in bytes after URL-decoding.
pub const MAX_KEY_BYTES: usize = 1024;
/// Default and largest page of a key listing.
pub const DEFAULT_LIST_LIMIT: usize = 1000;
pub const MAX_LIST_LIMIT: usize = 10_000;
/// Largest `timeout` accepted, in milliseconds (ten minutes).
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// Longest TTL a write may carry, in seconds (ten years of 365 days): far beyond any cache
/// lifetime, and small enough that the expiry instant never nears the end of `u64` ms.
pub use riftkv_core::bucket::MAX_TTL_SECS;
/// Header form of `?ttl=` on PUT/POST (seconds).
pub const TTL_HEADER: &str = "x-riftkv-ttl";
/// Longest Content-Type stored with a value.
pub const MAX_CONTENT_TYPE_CHARS: usize = 256;
/// Header carrying the causal context.
pub const CONTEXT_HEADER: &str = "x-riftkv-context";
/// Header marking a deleted sibling in a multipart answer.
pub const DELETED_HEADER: &str = "x-riftkv-deleted";
/// Header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request id accepted from a client; longer ones are replaced.
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// Decodes one percent-encoded path segment to raw bytes (keys need not be UTF-8).
pub fn decode_segment(raw: &str) -> Vec<u8> {
    percent_decode(raw.as_bytes()).collect()
}

/// Splits the raw request path into its percent-decoded segments, so that `%2F` inside a key
/// stays part of the key and non-UTF-8 bytes survive.
pub fn path_segments(raw_path: &str) -> Vec<Vec<u8>> {
    raw_path
        .trim_start_matches('/')
        .split('/')
        .map(decode_segment)
        .collect()
}

pub fn check_bucket(bucket: &[u8]) -> Result<(), ApiError> {
    if bucket.is_empty() || bucket.len() > MAX_BUCKET_BYTES {
        return Err(ApiError::bad_request(format!(
            "a bucket name must be 1 to {MAX_BUCKET_BYTES} bytes, got {}",
            bucket.len()
        ))
        .with("limit", MAX_BUCKET_BYTES as u64));
    }
    Ok(())
}

pub fn check_key(key: &[u8]) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ApiError::bad_request(format!(
            "a key must be 1 to {MAX_KEY_BYTES} bytes, got {}",
            key.len()
        ))
        .with("limit", MAX_KEY_BYTES as u64));
    }
    Ok(())
}

/// The bucket and key of `/v1/<kind>/{bucket}/{key}` style paths, taken from the raw path:
/// `skip` leading segments, then bucket, then key. Both are checked for length.
pub fn bucket_and_key(raw_path: &str, skip: usize) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
    let mut segs = path_segments(raw_path).into_iter().skip(skip);
    let bucket = segs.next().unwrap_or_default();
    let key = segs.next().unwrap_or_default();
    check_bucket(&bucket)?;
    check_key(&key)?;
    Ok((bucket, key))
}

/// The bucket of `/v1/<kind>/{bucket}...` paths, checked for length.
pub fn bucket_only(raw_path: &str, skip: usize) -> Result<Vec<u8>, ApiError> {
    let bucket = path_segments(raw_path)
        .into_iter()
        .nth(skip)
        .unwrap_or_default();
    check_bucket(&bucket)?;
    Ok(bucket)
}

/// `(name, raw value bytes)` pairs of a query string, form-decoded (`+` is a space).
/// A repeated name is an error: which value wins would otherwise be a guess.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let Some(q) = query else {
        return Ok(out);
    };
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let name = form_decode(name);
        let name = String::from_utf8(name)
            .map_err(|_| ApiError::bad_request("a query parameter name is not UTF-8"))?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ApiError::bad_request(format!(
                "query parameter '{}' is given more than once",
                shorten(&name)
            )));
        }
        out.push((name, form_decode(value)));
    }
    Ok(out)
}

fn form_decode(s: &str) -> Vec<u8> {
    let spaced = s.replace('+', " ");
    percent_decode(spaced.as_bytes()).collect()
}

/// Bounded text of client input for error messages.
pub fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

fn text_value(name: &str, value: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(value.to_vec())
        .map_err(|_| ApiError::bad_request(format!("query parameter '{name}' is not UTF-8")))
}

/// The consistency and timing parameters of an object request, as given (not yet resolved
/// against the bucket's `n`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consistency {
    pub r: Option<Quorum>,
    pub w: Option<Quorum>,
    pub dw: Option<Quorum>,
    pub pr: Option<Quorum>,
    pub pw: Option<Quorum>,
    pub timeout: Option<Duration>,
}

impl Consistency {
    /// The coordinator's form, still typed: resolved and checked against the bucket's `n` by
    /// the coordinator, whose `bad_request` names the value.
    pub fn to_params(&self) -> riftkv_cluster::coordinator::ConsistencyParams {
        riftkv_cluster::coordinator::ConsistencyParams {
            r: self.r,
            w: self.w,
            dw: self.dw,
            pr: self.pr,
            pw: self.pw,
        }
    }
}

fn parse_quorum(name: &str, value: &[u8]) -> Result<Quorum, ApiError> {
    let text = text_value(name, value)?;
    text.parse::<Quorum>().map_err(|_| {
        ApiError::bad_request(format!(
            "{name}='{}' is not a quorum: use an integer, one, quorum or all",
            shorten(&text)
        ))
    })
}

fn parse_timeout(value: &[u8]) -> Result<Duration, ApiError> {
    let text = text_value("timeout", value)?;
    match text.parse::<u64>() {
        Ok(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(ApiError::bad_request(format!(
            "timeout='{}' must be a number of milliseconds from 1 to {MAX_TIMEOUT_MS}",
            shorten(&text)
        ))),
    }
}

fn parse_bool(name: &str, value: &[u8]) -> Result<bool, ApiError> {
    match value {
        b"true" => Ok(true),
        b"false" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "{name}='{}' must be true or false",
            shorten(&String::from_utf8_lossy(other))
        ))),
    }
}

fn unknown(name: &str, allowed: &[&str]) -> ApiError {
    ApiError::bad_request(format!(
        "unknown query parameter '{}' (allowed here: {})",
        shorten(name),
        allowed.join(", ")
    ))
}

/// Query of GET/PUT/POST/DELETE on an object. Every consistency name is accepted on every
/// object operation (and validated); `returnbody` and `ttl` only on writes of a value
/// (`allow_returnbody`: PUT and POST).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectQuery {
    pub consistency: Consistency,
    pub returnbody: bool,
    /// `ttl=SECONDS`: the value expires that long after the coordinator's write time.
    pub ttl: Option<Duration>,
}

/// A TTL in whole seconds, 1..=[`MAX_TTL_SECS`].
fn parse_ttl(what: &str, value: &[u8]) -> Result<Duration, ApiError> {
    let text = text_value(what, value)?;
    match text.trim().parse::<u64>() {
        Ok(s) if (1..=MAX_TTL_SECS).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(ApiError::bad_request(format!(
            "{what}='{}' must be a whole number of seconds from 1 to {MAX_TTL_SECS}",
            shorten(&text)
        ))
        .with("limit", MAX_TTL_SECS)),
    }
}

/// The TTL of a write: `?ttl=` or the `X-RiftKV-TTL` header (both: they must agree).
pub fn ttl(query_ttl: Option<Duration>, headers: &HeaderMap) -> Result<Option<Duration>, ApiError> {
    let header = match headers.get(TTL_HEADER) {
        None => None,
        Some(v) => Some(parse_ttl("X-RiftKV-TTL", v.as_bytes())?),
    };
    match (query_ttl, header) {
        (Some(q), Some(h)) if q != h => Err(ApiError::bad_request(
            "ttl in the query and the X-RiftKV-TTL header disagree",
        )),
        (q, h) => Ok(q.or(h)),
    }
}

pub fn object_query(query: Option<&str>, allow_returnbody: bool) -> Result<ObjectQuery, ApiError> {
    const WITH_RB: &[&str] = &["r", "w", "dw", "pr", "pw", "timeout", "returnbody", "ttl"];
    const WITHOUT_RB: &[&str] = &["r", "w", "dw", "pr", "pw", "timeout"];
    let allowed = if allow_returnbody {
        WITH_RB
    } else {
        WITHOUT_RB
    };
    let mut out = ObjectQuery::default();
    for (name, value) in query_pairs(query)? {
        let c = &mut out.consistency;
        match name.as_str() {
            "r" => c.r = Some(parse_quorum("r", &value)?),
            "w" => c.w = Some(parse_quorum("w", &value)?),
            "dw" => c.dw = Some(parse_quorum("dw", &value)?),
            "pr" => c.pr = Some(parse_quorum("pr", &value)?),
            "pw" => c.pw = Some(parse_quorum("pw", &value)?),
            "timeout" => c.timeout = Some(parse_timeout(&value)?),
            "returnbody" if allow_returnbody => out.returnbody = parse_bool("returnbody", &value)?,
            "ttl" if allow_returnbody => out.ttl = Some(parse_ttl("ttl", &value)?),
            other => return Err(unknown(other, allowed)),
        }
    }
    Ok(out)
}

/// Query of a key listing: `keys=true` (required), `limit`, `after`, `timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: usize,
    pub after: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

pub fn list_query(query: Option<&str>) -> Result<ListQuery, ApiError> {
    const ALLOWED: &[&str] = &["keys", "limit", "after", "timeout"];
    let mut keys = false;
    let mut out = ListQuery {
        limit: DEFAULT_LIST_LIMIT,
        after: None,
        timeout: None,
    };
    for (name, value) in query_pairs(query)? {
        match name.as_str() {
            "keys" => keys = parse_bool("keys", &value)?,
            "limit" => {
                let text = text_value("limit", &value)?;
                out.limit = match text.parse::<usize>() {
                    Ok(l) if (1..=MAX_LIST_LIMIT).contains(&l) => l,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "limit='{}' must be an integer from 1 to {MAX_LIST_LIMIT}",
                            shorten(&text)
                        ))
                        .with("limit", MAX_LIST_LIMIT as u64));
                    }
                }
            }
            "after" => {
                check_key(&value)?;
                out.after = Some(value);
            }
            "timeout" => out.timeout = Some(parse_timeout(&value)?),
            other => return Err(unknown(other, ALLOWED)),
        }
    }
    if !keys {
        return Err(ApiError::bad_request(
            "listing a bucket needs keys=true (GET /v1/kv/{bucket}?keys=true)",
        ));
    }
    Ok(out)
}

/// Refuses any query parameter (endpoints that take none).
pub fn no_query(query: Option<&str>) -> Result<(), ApiError> {
    match query_pairs(query)?.into_iter().next() {
        None => Ok(()),
        Some((name, _)) => Err(ApiError::bad_request(format!(
            "unknown query parameter '{}' (this endpoint takes none)",
            shorten(&name)
        ))),
    }
}

/// The causal context of a write on `key` of `bucket`, from `X-RiftKV-Context`; `None` when
/// absent. A token read from another key is refused like a forged one.
pub fn context_from(
    headers: &HeaderMap,
    bucket: &[u8],
    key: &[u8],
    ctx_key: &ContextKey,
) -> Result<Option<VersionVector>, ApiError> {
    let Some(v) = headers.get(CONTEXT_HEADER) else {
        return Ok(None);
    };
    let token = v
        .to_str()
        .map_err(|_| ApiError::invalid_context("X-RiftKV-Context is not a valid token"))?;
    Ok(Some(decode_context(token.trim(), bucket, key, ctx_key)?))
}

/// `If-None-Match: *` asks for create-only semantics; other forms are not supported.
pub fn if_none_match(headers: &HeaderMap) -> Result<bool, ApiError> {
    match headers.get(header::IF_NONE_MATCH) {
        None => Ok(false),
        Some(v) if v.as_bytes().trim_ascii() == b"*" => Ok(true),
        Some(_) => Err(ApiError::bad_request(
            "only 'If-None-Match: *' is supported (write only when no live value exists)",
        )),
    }
}

/// The Content-Type to store with a value (default `application/octet-stream`).
pub fn content_type(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Ok(DEFAULT_CONTENT_TYPE.to_string());
    };
    let text = v
        .to_str()
        .map_err(|_| ApiError::bad_request("Content-Type must be visible ASCII"))?
        .trim();
    if text.is_empty() {
        return Ok(DEFAULT_CONTENT_TYPE.to_string());
    }
    if text.len() > MAX_CONTENT_TYPE_CHARS {
        return Err(ApiError::bad_request(format!(
            "Content-Type is longer than {MAX_CONTENT_TYPE_CHARS} characters"
        )));
    }
    Ok(text.to_string())
}

/// True when the client asks for the JSON form of a read (`Accept: application/json`).
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/json") && !refused
        })
}

/// The request id: the client's `X-Request-Id` when it is short visible ASCII, else a new
/// UUID (so a hostile id cannot flood logs).
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| {
            !s.is_empty()
                && s.len() <= MAX_REQUEST_ID_CHARS
                && s.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Key bytes as text for JSON: UTF-8 keys as they are; other keys percent-encoded byte for
/// byte (only the bytes that are not valid UTF-8 are escaped, and `%` itself), so the text
/// can be pasted back into a URL.
pub fn key_text(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) => s.to_string(),
        Err(_) => {
            let mut out = String::new();
            for chunk in key.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if c == '%' {
                        out.push_str("%25");
                    } else {
                        out.push(c);
                    }
                }
                for b in chunk.invalid() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        }
    }
}

/// Refuses a typed bucket with `400 bad_request`: plain-value endpoints serve only buckets
/// without a `datatype` (CONTRACT §6).
pub fn require_plain(node: &riftkv_cluster::node::Node, bucket: &[u8]) -> Result<(), ApiError> {
    match node.state.read().bucket_props(bucket).datatype {
        None => Ok(()),
        Some(t) => Err(ApiError::bad_request(format!(
            "bucket {:?} holds {} values: use /v1/types/{{bucket}}/{{key}}, not /v1/kv",
            String::from_utf8_lossy(bucket),
            t.as_str()
        ))),
    }
}

/// The bucket's data type, or `400 bad_request` for a plain bucket: type endpoints serve only
/// typed buckets.
pub fn require_typed(
    node: &riftkv_cluster::node::Node,
    bucket: &[u8],
) -> Result<riftkv_core::bucket::DataType, ApiError> {
    node.state.read().bucket_props(bucket).datatype.ok_or_else(|| {
        ApiError::bad_request(format!(
            "bucket {:?} holds plain values, not a data type: set its \"datatype\" prop (on an empty bucket) or use /v1/kv",
            String::from_utf8_lossy(bucket)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::Code;
    use axum::http::HeaderValue;
    use riftkv_core::bucket::BucketProps;

    fn code_of<T: std::fmt::Debug>(r: Result<T, ApiError>) -> Code {
        r.expect_err("expected an error").code
    }

    #[test]
    fn segments_keep_encoded_slashes_and_raw_bytes() {
        let s = path_segments("/v1/kv/b%20x/a%2Fb%FF");
        assert_eq!(s[2], b"b x".to_vec());
        assert_eq!(s[3], b"a/b\xff".to_vec());
        let (b, k) = bucket_and_key("/v1/kv/my%C3%A9/k%00", 2).unwrap();
        assert_eq!(b, "myé".as_bytes());
        assert_eq!(k, b"k\0");
    }

    #[test]
    fn path_length_limits() {
        let b255 = "b".repeat(255);
        let k1024 = "k".repeat(1024);
        assert!(bucket_and_key(&format!("/v1/kv/{b255}/{k1024}"), 2).is_ok());
        let b256 = "b".repeat(256);
        assert_eq!(
            code_of(bucket_and_key(&format!("/v1/kv/{b256}/k"), 2)),
            Code::BadRequest
        );
        let k1025 = "k".repeat(1025);
        assert_eq!(
            code_of(bucket_and_key(&format!("/v1/kv/b/{k1025}"), 2)),
            Code::BadRequest
        );
        // Limits count bytes after decoding: 255 encoded bytes are 765 characters.
        let enc = "%FF".repeat(255);
        assert!(bucket_and_key(&format!("/v1/kv/{enc}/k"), 2).is_ok());
        let enc = "%FF".repeat(256);
        assert!(bucket_and_key(&format!("/v1/kv/{enc}/k"), 2).is_err());
        assert!(bucket_and_key("/v1/kv/b/", 2).is_err());
        assert!(bucket_only("/v1/buckets//props", 2).is_err());
        assert_eq!(bucket_only("/v1/buckets/x%2Fy/props", 2).unwrap(), b"x/y");
    }

    #[test]
    fn ttl_parses_on_writes_only_within_its_range() {
        let q = object_query(Some("ttl=60"), true).unwrap();
        assert_eq!(q.ttl, Some(Duration::from_secs(60)));
        assert_eq!(
            object_query(Some(&format!("ttl={MAX_TTL_SECS}")), true)
                .unwrap()
                .ttl,
            Some(Duration::from_secs(MAX_TTL_SECS))
        );
        for bad in [
            "ttl=0",
            "ttl=-5",
            "ttl=x",
            "ttl=",
            "ttl=315360001",
            "ttl=1e3",
        ] {
            assert!(object_query(Some(bad), true).is_err(), "{bad}");
        }
        assert!(object_query(Some("ttl=5"), false).is_err());
        let mut h = HeaderMap::new();
        assert_eq!(ttl(None, &h).unwrap(), None);
        h.insert(TTL_HEADER, "7".parse().unwrap());
        assert_eq!(ttl(None, &h).unwrap(), Some(Duration::from_secs(7)));
        assert_eq!(
            ttl(Some(Duration::from_secs(7)), &h).unwrap(),
            Some(Duration::from_secs(7))
        );
        assert!(ttl(Some(Duration::from_secs(8)), &h).is_err());
        h.insert(TTL_HEADER, "0".parse().unwrap());
        assert!(ttl(None, &h).is_err());
    }

    #[test]
    fn consistency_values_parse() {
        let q = object_query(Some("r=one&w=quorum&dw=all&pr=0&pw=2&timeout=250"), false).unwrap();
        let c = q.consistency;
        assert_eq!(c.r, Some(Quorum::One));
        assert_eq!(c.w, Some(Quorum::Quorum));
        assert_eq!(c.dw, Some(Quorum::All));
        assert_eq!(c.pr, Some(Quorum::Count(0)));
        assert_eq!(c.pw, Some(Quorum::Count(2)));
        assert_eq!(c.timeout, Some(Duration::from_millis(250)));
        let params = c.to_params();
        let rq = params.read(&BucketProps::with_n(3)).unwrap();
        let wq = params.write(&BucketProps::with_n(3)).unwrap();
        assert_eq!((rq.n, rq.r, rq.pr), (3, 1, 0));
        assert_eq!((wq.w, wq.dw, wq.pw), (2, 3, 2));
    }

    #[test]
    fn defaults_come_from_the_bucket() {
        let params = Consistency::default().to_params();
        let rq = params.read(&BucketProps::with_n(5)).unwrap();
        let wq = params.write(&BucketProps::with_n(5)).unwrap();
        assert_eq!((rq.r, rq.pr, wq.w, wq.dw, wq.pw), (3, 0, 3, 0, 0));
    }

    #[test]
    fn every_bad_value_is_a_bad_request() {
        for q in [
            "r=two",
            "r=",
            "w=-1",
            "dw=1.5",
            "pr=ALL",
            "pw=%FF",
            "timeout=0",
            "timeout=abc",
            "timeout=600001",
            "returnbody=yes",
            "bogus=1",
            "r=1&r=2",
        ] {
            assert_eq!(
                code_of(object_query(Some(q), true)),
                Code::BadRequest,
                "{q}"
            );
        }
        // returnbody is only for writes
        assert!(object_query(Some("returnbody=true"), false).is_err());
        assert!(
            object_query(Some("returnbody=true"), true)
                .unwrap()
                .returnbody
        );
    }

    #[test]
    fn values_over_n_or_under_min_are_refused() {
        let props = BucketProps::with_n(3);
        for q in ["r=4", "w=4", "dw=4", "pr=4", "pw=4", "r=0", "w=0"] {
            let parsed = object_query(Some(q), false).unwrap();
            let p = parsed.consistency.to_params();
            let err = p.read(&props).and_then(|_| p.write(&props)).unwrap_err();
            let api = ApiError::from(err);
            assert_eq!(api.code, Code::BadRequest, "{q}");
            assert!(
                api.message.contains(&q[..q.find('=').unwrap()]),
                "{q}: {}",
                api.message
            );
        }
        let ok = object_query(Some("dw=0&pr=0&pw=0&r=all"), false).unwrap();
        let p = ok.consistency.to_params();
        assert!(p.read(&props).is_ok() && p.write(&props).is_ok());
    }

    #[test]
    fn listing_query() {
        let q = list_query(Some("keys=true")).unwrap();
        assert_eq!(q.limit, DEFAULT_LIST_LIMIT);
        assert_eq!(q.after, None);
        let q = list_query(Some("keys=true&limit=10000&after=a%2Fb+c")).unwrap();
        assert_eq!(q.limit, 10_000);
        assert_eq!(q.after, Some(b"a/b c".to_vec()));
        for bad in [
            None,
            Some("keys=false"),
            Some("keys=true&limit=10001"),
            Some("keys=true&limit=0"),
            Some("keys=true&limit=x"),
            Some("keys=true&after="),
            Some("keys=true&r=1"),
            Some("keys=maybe"),
        ] {
            assert_eq!(code_of(list_query(bad)), Code::BadRequest, "{bad:?}");
        }
        let over = list_query(Some("keys=true&limit=20000")).unwrap_err();
        assert_eq!(over.body()["limit"], 10_000);
    }

    #[test]
    fn no_query_refuses_parameters() {
        assert!(no_query(None).is_ok());
        assert!(no_query(Some("")).is_ok());
        assert_eq!(code_of(no_query(Some("x=1"))), Code::BadRequest);
    }

    #[test]
    fn context_header_handling() {
        let key = ContextKey::derive(b"secret");
        let from = |h: &HeaderMap| context_from(h, b"b", b"k", &key);
        let mut h = HeaderMap::new();
        assert_eq!(from(&h).unwrap(), None);
        let mut vv = VersionVector::new();
        vv.observe(&"n1".into(), 3);
        let token = riftkv_core::version::encode_context(&vv, b"b", b"k", &key);
        h.insert(CONTEXT_HEADER, HeaderValue::from_str(&token).unwrap());
        assert_eq!(from(&h).unwrap(), Some(vv.clone()));
        // Read from another key: refused, with a message that says so.
        let e = context_from(&h, b"b", b"other", &key).unwrap_err();
        assert_eq!(e.code, Code::InvalidContext);
        assert!(e.message.contains("another key"), "{}", e.message);
        // Signed by another cluster: forged.
        let other =
            riftkv_core::version::encode_context(&vv, b"b", b"k", &ContextKey::derive(b"other"));
        h.insert(CONTEXT_HEADER, HeaderValue::from_str(&other).unwrap());
        assert_eq!(code_of(from(&h)), Code::InvalidContext);
        // A version-1 token: refused with its own reason.
        let v1 = riftkv_core::version::legacy_v1_token(&vv, &key);
        h.insert(CONTEXT_HEADER, HeaderValue::from_str(&v1).unwrap());
        let e = from(&h).unwrap_err();
        assert_eq!(e.code, Code::InvalidContext);
        assert!(e.message.contains("older RiftKV version"), "{}", e.message);
        for bad in ["", "garbage!", "AAAA"] {
            h.insert(CONTEXT_HEADER, HeaderValue::from_str(bad).unwrap());
            assert_eq!(code_of(from(&h)), Code::InvalidContext, "{bad}");
        }
        h.insert(
            CONTEXT_HEADER,
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(code_of(from(&h)), Code::InvalidContext);
    }

    #[test]
    fn conditional_and_type_headers() {
        let mut h = HeaderMap::new();
        assert!(!if_none_match(&h).unwrap());
        assert_eq!(content_type(&h).unwrap(), DEFAULT_CONTENT_TYPE);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(" * "));
        assert!(if_none_match(&h).unwrap());
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abc\""));
        assert_eq!(code_of(if_none_match(&h)), Code::BadRequest);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        assert_eq!(content_type(&h).unwrap(), "text/plain; charset=utf-8");
        let long = "a".repeat(MAX_CONTENT_TYPE_CHARS + 1);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(&long).unwrap());
        assert_eq!(code_of(content_type(&h)), Code::BadRequest);
    }

    #[test]
    fn accept_json_detection() {
        let mut h = HeaderMap::new();
        assert!(!wants_json(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("multipart/mixed, Application/JSON; q=0.5"),
        );
        assert!(wants_json(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;q=0"),
        );
        assert!(!wants_json(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!wants_json(&h));
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        let generated = request_id(&h);
        assert_eq!(generated.len(), 36);
        assert_ne!(generated, request_id(&h));
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        let long = "x".repeat(MAX_REQUEST_ID_CHARS + 1);
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_str(&long).unwrap());
        assert_ne!(request_id(&h), long);
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
    }

    #[test]
    fn key_text_round_trips_through_url_decoding() {
        assert_eq!(key_text(b"plain/key"), "plain/key");
        let raw = b"a%b\xffc".to_vec();
        let text = key_text(&raw);
        assert_eq!(text, "a%25b%FFc");
        assert_eq!(decode_segment(&text), raw);
    }
}
