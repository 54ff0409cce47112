//! How a read is answered: one live version (200 with the value), siblings (300 with a
//! multipart body), nothing live (404), or the JSON envelope when the client asks for it.
//! Shared by GET, PUT with `returnbody=true` and the admin view of a local copy.

use super::error::ApiError;
use super::multipart::{self, Part};
use super::params::{CONTEXT_HEADER, DELETED_HEADER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use riftkv_core::version::{
    ContextKey, DEFAULT_CONTENT_TYPE, Dot, Object, Sibling, encode_context, etag,
};
use serde::Serialize;
use std::time::{Duration, UNIX_EPOCH};
use utoipa::ToSchema;

/// One version in the JSON form of a read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct SiblingJson {
    /// The value, base64 (standard alphabet, padded). Empty for a deleted version.
    pub value_base64: String,
    pub content_type: String,
    /// The version's tag, also sent as `ETag` (without quotes here).
    pub etag: String,
    /// RFC 3339 timestamp of the write, in UTC with milliseconds.
    pub last_modified: String,
    pub deleted: bool,
}

/// The JSON form of a read (`Accept: application/json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ReadJson {
    /// Causal context token covering every version below; send it back in
    /// `X-RiftKV-Context` when writing.
    pub context: String,
    pub siblings: Vec<SiblingJson>,
}

/// The admin view of this node's own copy of a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct LocalJson {
    pub context: String,
    pub siblings: Vec<SiblingJson>,
    /// The key's ring partition.
    pub partition: u32,
    /// The primary this copy is held for, when it is a hint on a fallback.
    pub hinted_for: Option<String>,
}

/// The last instant an HTTP date can show, 9999-12-31T23:59:59Z, in ms since the epoch.
const LAST_HTTP_DATE_MS: u64 = 253_402_300_799_000;

/// `Last-Modified` form of a millisecond timestamp. A later one (a node whose clock was far
/// off, a damaged record) is shown as the last HTTP date rather than failing the read.
pub fn http_date(ms: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms.min(LAST_HTTP_DATE_MS)))
}

/// RFC 3339 form (UTC, milliseconds) of a millisecond timestamp.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's civil algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn sibling_json(dot: &Dot, s: &Sibling) -> SiblingJson {
    SiblingJson {
        value_base64: base64::engine::general_purpose::STANDARD.encode(&s.value),
        content_type: s.content_type.clone(),
        etag: etag(dot),
        last_modified: rfc3339(s.last_modified_ms),
        deleted: s.deleted,
    }
}

/// What signs the context tokens of an answer: the cluster's context key and the bucket and
/// key of the request (raw bytes, as the coordinator uses them), since a token is bound to
/// the key it was read from.
#[derive(Clone, Copy, Debug)]
pub struct TokenSigner<'a> {
    pub ctx_key: &'a ContextKey,
    pub bucket: &'a [u8],
    pub key: &'a [u8],
}

impl TokenSigner<'_> {
    /// The context token of `obj` for this bucket and key.
    pub fn token(&self, obj: &Object) -> String {
        encode_context(&obj.context(), self.bucket, self.key, self.ctx_key)
    }
}

pub fn read_json(obj: &Object, signer: &TokenSigner) -> ReadJson {
    ReadJson {
        context: signer.token(obj),
        siblings: obj
            .siblings()
            .iter()
            .map(|(d, s)| sibling_json(d, s))
            .collect(),
    }
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

/// A version's content type as an answer shows it, alone or in a multipart part: a stored
/// type that is not a valid header value (a line break would end the headers) is shown as
/// the default type.
fn shown_content_type(s: &Sibling) -> &str {
    if HeaderValue::from_str(&s.content_type).is_ok() {
        &s.content_type
    } else {
        DEFAULT_CONTENT_TYPE
    }
}

/// The `X-RiftKV-Context` header of an answer about `obj`.
pub fn context_header(obj: &Object, signer: &TokenSigner) -> (HeaderName, HeaderValue) {
    let token = signer.token(obj);
    (
        HeaderName::from_static(CONTEXT_HEADER),
        // base64url text is always a valid header value.
        HeaderValue::from_str(&token).unwrap_or_else(|_| HeaderValue::from_static("")),
    )
}

/// The status of a read of `obj` at `now_ms`: 404 when nothing is live, 200 for exactly one
/// version, 300 when several versions (tombstones included) coexist beside a live one.
/// Expects the visible view ([`Object::visible_at`]): expired versions are not counted.
pub fn read_status(obj: &Object, now_ms: u64) -> StatusCode {
    let live = obj.live_siblings(now_ms).len();
    if live == 0 {
        StatusCode::NOT_FOUND
    } else if obj.sibling_count() == 1 {
        StatusCode::OK
    } else {
        StatusCode::MULTIPLE_CHOICES
    }
}

/// The 404 of a read: a JSON error, with the context of the tombstones or expired versions
/// when there are any.
pub fn not_found(obj: Option<&Object>, signer: &TokenSigner) -> ApiError {
    let mut e = ApiError::not_found("no live value is stored under this key");
    if let Some(o) = obj.filter(|o| !o.is_empty()) {
        let (n, v) = context_header(o, signer);
        e = e.with("context", signer.token(o)).with_header(n, v);
    }
    e
}

/// The full answer to a read of `obj` at `now_ms` (None = nothing stored anywhere). Expired
/// versions are left out, as if already gone; the context still covers them.
pub fn read_answer(
    obj: Option<&Object>,
    signer: &TokenSigner,
    json: bool,
    now_ms: u64,
) -> Response {
    let Some(obj) = obj else {
        return not_found(None, signer).into_response();
    };
    // Copied only when something is to be left out (a GET's object already is visible).
    let visible = obj.visible_at(now_ms);
    let obj: &Object = &visible;
    let status = read_status(obj, now_ms);
    if status == StatusCode::NOT_FOUND {
        return not_found(Some(obj), signer).into_response();
    }
    let mut headers = HeaderMap::new();
    let (n, v) = context_header(obj, signer);
    headers.insert(n, v);
    if json {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let body = serde_json::to_vec(&read_json(obj, signer)).unwrap_or_default();
        return (status, headers, body).into_response();
    }
    let siblings = obj.siblings();
    if status == StatusCode::OK {
        let Some((dot, s)) = siblings.first() else {
            return not_found(Some(obj), signer).into_response();
        };
        headers.insert(header::CONTENT_TYPE, header_value(shown_content_type(s)));
        headers.insert(header::ETAG, header_value(&format!("\"{}\"", etag(dot))));
        headers.insert(
            header::LAST_MODIFIED,
            header_value(&http_date(s.last_modified_ms)),
        );
        return (status, headers, s.value.clone()).into_response();
    }
    let parts: Vec<Part> = siblings.iter().map(|(d, s)| sibling_part(d, s)).collect();
    let bodies: Vec<&[u8]> = parts.iter().map(|p| p.body.as_slice()).collect();
    let boundary = multipart::choose_boundary(&bodies);
    headers.insert(
        header::CONTENT_TYPE,
        header_value(&format!("multipart/mixed; boundary={boundary}")),
    );
    (status, headers, multipart::render(&boundary, &parts)).into_response()
}

fn sibling_part(dot: &Dot, s: &Sibling) -> Part {
    let mut headers = Vec::new();
    if !s.deleted {
        headers.push((
            "Content-Type".to_string(),
            shown_content_type(s).to_string(),
        ));
    }
    headers.push(("ETag".to_string(), format!("\"{}\"", etag(dot))));
    headers.push(("Last-Modified".to_string(), http_date(s.last_modified_ms)));
    if s.deleted {
        headers.push((DELETED_HEADER_CANON.to_string(), "true".to_string()));
    }
    Part {
        headers,
        body: if s.deleted {
            Vec::new()
        } else {
            s.value.to_vec()
        },
    }
}

/// Canonical capitalisation of [`DELETED_HEADER`] inside multipart parts.
const DELETED_HEADER_CANON: &str = "X-RiftKV-Deleted";
const _: () = assert!(DELETED_HEADER.len() == DELETED_HEADER_CANON.len());

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_core::types::NodeId;
    use riftkv_core::version::{ConflictMode, Limits, VersionVector, decode_context};

    static KEY: std::sync::LazyLock<ContextKey> =
        std::sync::LazyLock::new(|| ContextKey::derive(b"test"));

    /// Answers below are about key `k` of bucket `b`.
    fn signer() -> TokenSigner<'static> {
        TokenSigner {
            ctx_key: &KEY,
            bucket: b"b",
            key: b"k",
        }
    }

    fn open(token: &str) -> VersionVector {
        decode_context(token, b"b", b"k", &KEY).unwrap()
    }

    fn write(stored: Option<&Object>, ctx: &VersionVector, actor: &str, s: Sibling) -> Object {
        Object::update(
            stored,
            ctx,
            NodeId::from(actor),
            s,
            ConflictMode::Siblings,
            &Limits::default(),
        )
        .unwrap()
    }

    async fn body_of(r: Response) -> Vec<u8> {
        axum::body::to_bytes(r.into_body(), 1 << 24)
            .await
            .unwrap()
            .to_vec()
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(
            http_date(1_700_000_000_000),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
    }

    /// Found by the `multipart` fuzz target: a version stamped after the year 9999 (a node
    /// whose clock was far off, or a record from a damaged disk) made the HTTP date panic, so
    /// the key could not be read on any node. It is shown as the last HTTP date instead.
    #[tokio::test]
    async fn a_version_from_the_far_future_is_still_readable() {
        assert_eq!(http_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
        for stamp in [253_402_300_800_000, u64::MAX] {
            let o = write(
                None,
                &VersionVector::new(),
                "a",
                Sibling::new(&b"v"[..], "text/plain", stamp),
            );
            let o = write(
                Some(&o),
                &VersionVector::new(),
                "b",
                Sibling::new(&b"w"[..], "text/plain", 1),
            );
            for json in [false, true] {
                let r = read_answer(Some(&o), &signer(), json, 0);
                assert_eq!(r.status(), StatusCode::MULTIPLE_CHOICES);
            }
        }
    }

    /// Found by the `multipart` fuzz target: a content type holding a line break (from a
    /// peer or a damaged record; clients cannot send one) broke the part's headers, so the
    /// 300 answer could not be parsed, and could inject headers. Such a type is replaced.
    #[tokio::test]
    async fn a_content_type_with_a_line_break_cannot_break_a_part() {
        let o = write(
            None,
            &VersionVector::new(),
            "a",
            Sibling::new(&b"v"[..], "text/plain\r\nX-Injected: 1\r\n\r\nbody", 1),
        );
        let o = write(
            Some(&o),
            &VersionVector::new(),
            "b",
            Sibling::new(&b"w"[..], "text/plain", 2),
        );
        let r = read_answer(Some(&o), &signer(), false, 0);
        assert_eq!(r.status(), StatusCode::MULTIPLE_CHOICES);
        let ct = r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let boundary = multipart::boundary_of(&ct).unwrap();
        let parts = multipart::parse(&boundary, &body_of(r).await).unwrap();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.header("x-injected").is_none()));
        let mut types: Vec<_> = parts
            .iter()
            .filter_map(|p| p.header("content-type"))
            .collect();
        types.sort();
        assert_eq!(types, ["application/octet-stream", "text/plain"]);
    }

    #[tokio::test]
    async fn one_version_is_a_plain_200() {
        let o = write(
            None,
            &VersionVector::new(),
            "a",
            Sibling::new(&b"v1"[..], "text/plain", 1_700_000_000_000),
        );
        let r = read_answer(Some(&o), &signer(), false, 0);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain");
        assert_eq!(
            r.headers()[header::LAST_MODIFIED],
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
        let et = r.headers()[header::ETAG].to_str().unwrap().to_string();
        assert!(et.starts_with('"') && et.ends_with('"') && et.len() == 18);
        let ctx = r.headers()[CONTEXT_HEADER].to_str().unwrap().to_string();
        assert_eq!(open(&ctx), o.context());
        assert!(decode_context(&ctx, b"b", b"other", &KEY).is_err());
        assert_eq!(body_of(r).await, b"v1");
    }

    fn siblings_with_tombstone() -> Object {
        let o = write(
            None,
            &VersionVector::new(),
            "a",
            Sibling::new(&b"one"[..], "text/plain", 1000),
        );
        let o = write(
            Some(&o),
            &VersionVector::new(),
            "a",
            Sibling::new(&b"two\r\n--x"[..], "application/x", 2000),
        );
        write(
            Some(&o),
            &VersionVector::new(),
            "a",
            Sibling::tombstone(3000),
        )
    }

    #[tokio::test]
    async fn siblings_are_a_300_multipart_with_one_part_each() {
        let o = siblings_with_tombstone();
        assert_eq!(o.sibling_count(), 3);
        let r = read_answer(Some(&o), &signer(), false, 0);
        assert_eq!(r.status(), StatusCode::MULTIPLE_CHOICES);
        let ct = r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(ct.starts_with("multipart/mixed; boundary="));
        assert!(r.headers().contains_key(CONTEXT_HEADER));
        let boundary = multipart::boundary_of(&ct).unwrap();
        let parts = multipart::parse(&boundary, &body_of(r).await).unwrap();
        assert_eq!(parts.len(), 3);
        let expected: Vec<(Dot, Sibling)> = o
            .siblings()
            .into_iter()
            .map(|(d, s)| (d, s.clone()))
            .collect();
        for (p, (d, s)) in parts.iter().zip(&expected) {
            assert_eq!(p.header("etag").unwrap(), format!("\"{}\"", etag(d)));
            assert_eq!(
                p.header("last-modified").unwrap(),
                http_date(s.last_modified_ms)
            );
            if s.deleted {
                assert_eq!(p.header("x-riftkv-deleted"), Some("true"));
                assert!(p.body.is_empty());
            } else {
                assert_eq!(p.header("x-riftkv-deleted"), None);
                assert_eq!(p.header("content-type").unwrap(), s.content_type);
                assert_eq!(p.body, s.value.to_vec());
            }
        }
    }

    #[tokio::test]
    async fn json_form_keeps_the_status() {
        let o = siblings_with_tombstone();
        let r = read_answer(Some(&o), &signer(), true, 0);
        assert_eq!(r.status(), StatusCode::MULTIPLE_CHOICES);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let v: ReadJson = serde_json::from_slice(&body_of(r).await).unwrap();
        assert_eq!(open(&v.context), o.context());
        assert_eq!(v.siblings.len(), 3);
        let values: Vec<Vec<u8>> = v
            .siblings
            .iter()
            .map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(&s.value_base64)
                    .unwrap()
            })
            .collect();
        assert!(values.contains(&b"one".to_vec()));
        assert!(values.contains(&b"two\r\n--x".to_vec()));
        let dead: Vec<_> = v.siblings.iter().filter(|s| s.deleted).collect();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].last_modified, "1970-01-01T00:00:03.000Z");
        let raw: serde_json::Value = serde_json::to_value(&v).unwrap();
        for field in [
            "value_base64",
            "content_type",
            "etag",
            "last_modified",
            "deleted",
        ] {
            assert!(raw["siblings"][0].get(field).is_some(), "{field}");
        }
    }

    #[tokio::test]
    async fn tombstones_only_is_a_404_with_context() {
        let o = write(
            None,
            &VersionVector::new(),
            "a",
            Sibling::new(&b"v"[..], "t/p", 1),
        );
        let o = write(Some(&o), &o.context(), "a", Sibling::tombstone(2));
        let r = read_answer(Some(&o), &signer(), false, 0);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let ctx = r.headers()[CONTEXT_HEADER].to_str().unwrap().to_string();
        assert_eq!(open(&ctx), o.context());
        let v: serde_json::Value = serde_json::from_slice(&body_of(r).await).unwrap();
        assert_eq!(v["error"], "not_found");
        assert_eq!(v["context"], ctx);
        let r = read_answer(None, &signer(), true, 0);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(!r.headers().contains_key(CONTEXT_HEADER));
    }
}
