//! Reading answers, without a connection: status, headers and body in, a typed result out.
//!
//! A read arrives in one of three shapes: the JSON envelope (what this client asks for), a raw
//! single value, or `multipart/mixed` siblings (if a server or proxy ignores `Accept`). All
//! three decode into the same [`Object`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, ETAG, HeaderMap, LAST_MODIFIED};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ServerError};
use crate::request::CONTEXT_HEADER;

/// An answer as it came off the wire.
#[derive(Clone, Debug, Default)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    pub fn new(status: u16, headers: HeaderMap, body: impl Into<Bytes>) -> RawResponse {
        RawResponse {
            status,
            headers,
            body: body.into(),
        }
    }

    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The `X-RiftKV-Context` header.
    pub fn context(&self) -> Option<String> {
        self.header(CONTEXT_HEADER)
    }
}

/// One version of a value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sibling {
    pub value: Vec<u8>,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// A tombstone: a delete concurrent with the other siblings (it has no value).
    pub deleted: bool,
}

/// A read: every sibling and the context covering them all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Object {
    pub context: Option<String>,
    pub siblings: Vec<Sibling>,
}

impl Object {
    /// Decodes the JSON envelope.
    pub fn from_json(body: &[u8]) -> Result<Object, String> {
        let env: Envelope =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON object body: {e}"))?;
        env.into_object()
    }

    /// Back to the JSON envelope.
    pub fn to_envelope(&self) -> Envelope {
        Envelope {
            context: self.context.clone(),
            siblings: self
                .siblings
                .iter()
                .map(|s| EnvelopeSibling {
                    value_base64: if s.deleted {
                        None
                    } else {
                        Some(B64.encode(&s.value))
                    },
                    content_type: s.content_type.clone(),
                    etag: s.etag.clone(),
                    last_modified: s.last_modified.clone(),
                    deleted: s.deleted,
                })
                .collect(),
        }
    }

    /// Live (not deleted) siblings.
    pub fn live(&self) -> impl Iterator<Item = &Sibling> {
        self.siblings.iter().filter(|s| !s.deleted)
    }
}

/// The JSON form of a read (CONTRACT §2).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Envelope {
    #[serde(default)]
    pub context: Option<String>,
    pub siblings: Vec<EnvelopeSibling>,
}

/// One sibling of the JSON envelope.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct EnvelopeSibling {
    #[serde(default)]
    pub value_base64: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
    #[serde(default)]
    pub deleted: bool,
}

impl Envelope {
    pub fn into_object(self) -> Result<Object, String> {
        let mut siblings = Vec::with_capacity(self.siblings.len());
        for (i, s) in self.siblings.into_iter().enumerate() {
            let value = match &s.value_base64 {
                Some(b) => B64
                    .decode(b.as_bytes())
                    .map_err(|e| format!("sibling {}: invalid value_base64: {e}", i + 1))?,
                None => Vec::new(),
            };
            siblings.push(Sibling {
                value,
                content_type: s.content_type,
                etag: s.etag,
                last_modified: s.last_modified,
                deleted: s.deleted,
            });
        }
        Ok(Object {
            context: self.context,
            siblings,
        })
    }
}

/// What a write answered: the new context, and with `returnbody` the object as a read would.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteResult {
    pub context: Option<String>,
    pub object: Option<Object>,
}

/// A page of a bucket's live keys.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    /// Pass as `after` for the next page; `None` on the last page.
    #[serde(default)]
    pub next: Option<String>,
}

/// Where a key lives: its partition, its primary owners, and who would serve it now.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Preflist {
    #[serde(default)]
    pub partition: u32,
    #[serde(default)]
    pub primaries: Vec<riftkv_types::NodeId>,
    #[serde(default)]
    pub serving: Vec<riftkv_types::NodeId>,
}

/// The typed error of a refusal, by status.
pub fn error_of(resp: &RawResponse) -> Error {
    let e = Box::new(ServerError::from_body(resp.status, &resp.body));
    match resp.status {
        400 => Error::BadRequest(e),
        401 => Error::Unauthorized(e),
        403 => Error::Forbidden(e),
        404 => Error::NotFound {
            context: resp.context().or_else(|| {
                e.extras
                    .get("context")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
            }),
            response: e,
        },
        412 => Error::PreconditionFailed(e),
        503 => Error::Unavailable {
            needed: e.extra_u64("needed"),
            got: e.extra_u64("got"),
            response: e,
        },
        _ => Error::Server(e),
    }
}

/// The object in a `200` or `300` answer, in whichever of the three shapes it came.
pub fn decode_object_body(resp: &RawResponse) -> Result<Object, Error> {
    let ctype = resp.header(CONTENT_TYPE.as_str()).unwrap_or_default();
    let context = resp.context();
    let mime = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // A stored JSON value answers with its own content type too: only a body shaped like the
    // envelope is one.
    if mime == "application/json"
        && let Ok(mut obj) = Object::from_json(&resp.body)
    {
        if obj.context.is_none() {
            obj.context = context;
        }
        return Ok(obj);
    }
    if mime == "multipart/mixed" {
        let siblings = parse_multipart(&ctype, &resp.body).map_err(Error::UnexpectedResponse)?;
        return Ok(Object { context, siblings });
    }
    if resp.status == 300 {
        return Err(Error::UnexpectedResponse(format!(
            "300 Multiple Choices with content type '{ctype}'"
        )));
    }
    Ok(Object {
        context,
        siblings: vec![Sibling {
            value: resp.body.to_vec(),
            content_type: (!ctype.is_empty()).then_some(ctype),
            etag: resp.header(ETAG.as_str()),
            last_modified: resp.header(LAST_MODIFIED.as_str()),
            deleted: false,
        }],
    })
}

/// A GET of an object: `200`/`300` are the object, `404` is [`Error::NotFound`].
pub fn decode_get(resp: &RawResponse) -> Result<Object, Error> {
    match resp.status {
        200 | 300 => decode_object_body(resp),
        _ => Err(error_of(resp)),
    }
}

/// A PUT: `2xx`, with the object when the answer carries one (`returnbody=true`).
pub fn decode_put(resp: &RawResponse) -> Result<WriteResult, Error> {
    if !resp.is_success() {
        return Err(error_of(resp));
    }
    let object = match resp.status {
        200 | 300 if !resp.body.is_empty() => Some(decode_object_body(resp)?),
        _ => None,
    };
    let context = resp
        .context()
        .or_else(|| object.as_ref().and_then(|o| o.context.clone()));
    Ok(WriteResult { context, object })
}

/// A data type value as `GET /v1/types/{bucket}/{key}` answers it (CONTRACT §6).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct TypeValue {
    /// `counter`, `set` or `map`.
    #[serde(rename = "type")]
    pub data_type: String,
    pub value: serde_json::Value,
    /// What the read saw: send it back with an update that removes something.
    pub context: String,
}

/// An update's answer: `None` for `204`, the merged value with `returnbody`.
pub fn decode_update(resp: &RawResponse) -> Result<Option<TypeValue>, Error> {
    if resp.is_success() && resp.body.is_empty() {
        return Ok(None);
    }
    decode_json(resp, "the data type update").map(Some)
}

/// An answer whose body does not matter: any `2xx`.
pub fn decode_empty(resp: &RawResponse) -> Result<(), Error> {
    if resp.is_success() {
        Ok(())
    } else {
        Err(error_of(resp))
    }
}

/// A `2xx` JSON answer; `what` names it in the error (e.g. the path).
pub fn decode_json<T: serde::de::DeserializeOwned>(
    resp: &RawResponse,
    what: &str,
) -> Result<T, Error> {
    if !resp.is_success() {
        return Err(error_of(resp));
    }
    serde_json::from_slice(&resp.body)
        .map_err(|e| Error::UnexpectedResponse(format!("invalid JSON from {what}: {e}")))
}

/// Finds a parameter (e.g. `boundary`) of a header value like `multipart/mixed; boundary=x`.
pub fn header_param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case(name) {
            Some(v.trim().trim_matches('"').to_string())
        } else {
            None
        }
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Parses a `multipart/mixed` sibling body (one part per sibling, each with its own headers).
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Result<Vec<Sibling>, String> {
    let boundary = header_param(content_type, "boundary")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("multipart answer without a boundary: {content_type}"))?;
    let delim = format!("--{boundary}").into_bytes();
    let mut pos = find(body, &delim, 0).ok_or("multipart body without its boundary")? + delim.len();
    let mut parts = Vec::new();
    // Bounded by the body: every iteration moves `pos` forward past a delimiter.
    loop {
        if body[pos..].starts_with(b"--") {
            break;
        }
        // Skip the rest of the delimiter line.
        let line_end = find(body, b"\n", pos).ok_or("multipart part without a line break")?;
        let start = line_end + 1;
        let mut next_delim = Vec::with_capacity(delim.len() + 2);
        next_delim.extend_from_slice(b"\n");
        next_delim.extend_from_slice(&delim);
        let next = find(body, &next_delim, start).ok_or("multipart body is not terminated")?;
        let mut end = next;
        if end > start && body[end - 1] == b'\r' {
            end -= 1;
        }
        parts.push(parse_part(&body[start..end.max(start)])?);
        pos = next + next_delim.len();
        if pos > body.len() {
            return Err("multipart body is truncated".into());
        }
    }
    Ok(parts)
}

fn parse_part(part: &[u8]) -> Result<Sibling, String> {
    let (head, value) = if part.starts_with(b"\r\n") {
        (&part[..0], &part[2..])
    } else if part.starts_with(b"\n") {
        (&part[..0], &part[1..])
    } else if let Some(i) = find(part, b"\r\n\r\n", 0) {
        (&part[..i], &part[i + 4..])
    } else if let Some(i) = find(part, b"\n\n", 0) {
        (&part[..i], &part[i + 2..])
    } else {
        (part, &part[part.len()..])
    };
    let head = std::str::from_utf8(head).map_err(|_| "multipart part headers are not UTF-8")?;
    let mut s = Sibling::default();
    for line in head.lines() {
        let Some((name, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim().to_string();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => s.content_type = Some(v),
            "etag" => s.etag = Some(v),
            "last-modified" => s.last_modified = Some(v),
            "x-riftkv-deleted" => s.deleted = v.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    if !s.deleted {
        s.value = value.to_vec();
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const TWO_SIBLINGS: &str = r#"{
        "context": "ctx-abc",
        "siblings": [
            {"value_base64": "aGVsbG8=", "content_type": "text/plain", "etag": "\"e1\"",
             "last_modified": "2024-05-01T10:00:00Z", "deleted": false},
            {"value_base64": null, "content_type": null, "etag": "\"e2\"",
             "last_modified": "2024-05-01T10:00:01Z", "deleted": true}
        ]}"#;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn resp(status: u16, pairs: &[(&'static str, &str)], body: &[u8]) -> RawResponse {
        RawResponse::new(status, headers(pairs), body.to_vec())
    }

    #[test]
    fn json_envelope_decodes_every_sibling() {
        let v = Object::from_json(TWO_SIBLINGS.as_bytes()).unwrap();
        assert_eq!(v.context.as_deref(), Some("ctx-abc"));
        assert_eq!(v.siblings.len(), 2);
        assert_eq!(v.siblings[0].value, b"hello");
        assert!(v.siblings[1].deleted);
        assert_eq!(v.live().count(), 1);
    }

    #[test]
    fn envelope_round_trips() {
        let v = Object::from_json(TWO_SIBLINGS.as_bytes()).unwrap();
        let back = serde_json::to_vec(&v.to_envelope()).unwrap();
        assert_eq!(Object::from_json(&back).unwrap(), v);
    }

    #[test]
    fn bad_base64_is_an_error() {
        let body = r#"{"context":"c","siblings":[{"value_base64":"!!!"}]}"#;
        assert!(Object::from_json(body.as_bytes()).is_err());
        assert!(Object::from_json(b"{}").is_err());
    }

    #[test]
    fn decodes_json_siblings() {
        let body = br#"{"context":"c9","siblings":[
            {"value_base64":"YQ==","content_type":"text/plain","etag":"\"1\"","last_modified":"2024-01-01T00:00:00Z","deleted":false},
            {"value_base64":"Yg==","content_type":"text/plain","etag":"\"2\"","last_modified":"2024-01-01T00:00:01Z","deleted":false}]}"#;
        let r = resp(
            300,
            &[
                ("content-type", "application/json"),
                ("x-riftkv-context", "c9"),
            ],
            body,
        );
        let v = decode_get(&r).unwrap();
        assert_eq!(v.context.as_deref(), Some("c9"));
        assert_eq!(v.siblings.len(), 2);
        assert_eq!(v.siblings[1].value, b"b");
        assert_eq!(v.siblings[1].etag.as_deref(), Some("\"2\""));
    }

    #[test]
    fn decodes_a_raw_single_value_from_headers() {
        let r = resp(
            200,
            &[
                ("content-type", "text/plain"),
                ("x-riftkv-context", "ctx"),
                ("etag", "\"e\""),
                ("last-modified", "Wed, 01 May 2024 10:00:00 GMT"),
            ],
            b"hello",
        );
        let v = decode_get(&r).unwrap();
        assert_eq!(v.context.as_deref(), Some("ctx"));
        let [one] = v.siblings.as_slice() else {
            panic!("{v:?}")
        };
        assert_eq!(one.value, b"hello");
        assert_eq!(one.etag.as_deref(), Some("\"e\""));
        assert_eq!(one.content_type.as_deref(), Some("text/plain"));
        assert_eq!(
            one.last_modified.as_deref(),
            Some("Wed, 01 May 2024 10:00:00 GMT")
        );
    }

    #[test]
    fn a_stored_json_value_is_not_mistaken_for_an_envelope() {
        let r = resp(
            200,
            &[("content-type", "application/json")],
            br#"{"name":"x"}"#,
        );
        let v = decode_get(&r).unwrap();
        assert_eq!(v.siblings.len(), 1);
        assert_eq!(v.siblings[0].value, br#"{"name":"x"}"#);
    }

    #[test]
    fn decodes_multipart_siblings() {
        let body = b"--b0\r\nContent-Type: text/plain\r\n\r\none\r\n--b0\r\nX-RiftKV-Deleted: true\r\n\r\n\r\n--b0--\r\n";
        let r = resp(
            300,
            &[
                ("content-type", "multipart/mixed; boundary=b0"),
                ("x-riftkv-context", "ctx2"),
            ],
            body,
        );
        let v = decode_get(&r).unwrap();
        assert_eq!(v.context.as_deref(), Some("ctx2"));
        assert_eq!(v.siblings.len(), 2);
        assert_eq!(v.siblings[0].value, b"one");
        assert!(v.siblings[1].deleted);
        let r = resp(300, &[("content-type", "text/plain")], b"x");
        assert!(matches!(decode_get(&r), Err(Error::UnexpectedResponse(_))));
    }

    #[test]
    fn multipart_siblings_parse() {
        let body = b"--XyZ\r\nContent-Type: text/plain\r\nETag: \"a\"\r\nLast-Modified: Wed, 01 May 2024 10:00:00 GMT\r\n\r\nfirst\r\nline\r\n--XyZ\r\nETag: \"b\"\r\nX-RiftKV-Deleted: true\r\n\r\n\r\n--XyZ\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01--XyZ-not\r\n--XyZ--\r\n";
        let parts = parse_multipart("multipart/mixed; boundary=\"XyZ\"", body).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].value, b"first\r\nline");
        assert_eq!(parts[0].content_type.as_deref(), Some("text/plain"));
        assert_eq!(parts[0].etag.as_deref(), Some("\"a\""));
        assert!(parts[0].last_modified.is_some());
        assert!(parts[1].deleted);
        assert!(parts[1].value.is_empty());
        assert_eq!(parts[2].value, b"\x00\x01--XyZ-not");
    }

    #[test]
    fn malformed_multipart_is_an_error_not_a_panic() {
        assert!(parse_multipart("multipart/mixed", b"--a\r\n\r\nx\r\n--a--").is_err());
        assert!(parse_multipart("multipart/mixed; boundary=a", b"nothing").is_err());
        assert!(parse_multipart("multipart/mixed; boundary=a", b"--a\r\n\r\nx").is_err());
        assert!(parse_multipart("multipart/mixed; boundary=a", b"--a").is_err());
        assert_eq!(
            parse_multipart("multipart/mixed; boundary=a", b"--a--").unwrap(),
            vec![]
        );
    }

    #[test]
    fn header_params_are_found() {
        assert_eq!(
            header_param("multipart/mixed; charset=x; Boundary=\"q r\"", "boundary").as_deref(),
            Some("q r")
        );
        assert_eq!(header_param("text/plain", "boundary"), None);
    }

    #[test]
    fn refusals_are_typed_by_status() {
        let json = [("content-type", "application/json")];
        let r = resp(
            503,
            &json,
            br#"{"error":"quorum_unavailable","message":"not enough replicas","needed":3,"got":1}"#,
        );
        match decode_get(&r) {
            Err(Error::Unavailable {
                needed: Some(3),
                got: Some(1),
                response,
            }) => {
                assert_eq!(response.code.as_deref(), Some("quorum_unavailable"));
                assert!(response.to_string().contains("(got: 1, needed: 3)"));
            }
            other => panic!("{other:?}"),
        }
        let r = resp(503, &json, br#"{"error":"timeout","message":"m"}"#);
        let e = decode_empty(&r).unwrap_err();
        assert!(e.is_timeout() && matches!(e, Error::Unavailable { needed: None, .. }));
        // A tombstone's context comes with the 404.
        let r = resp(
            404,
            &[("x-riftkv-context", "tomb")],
            br#"{"error":"not_found","message":"no live value","context":"tomb"}"#,
        );
        match decode_get(&r) {
            Err(Error::NotFound { context, response }) => {
                assert_eq!(context.as_deref(), Some("tomb"));
                assert_eq!(response.status, 404);
            }
            other => panic!("{other:?}"),
        }
        let r = resp(404, &[], b"");
        assert!(matches!(
            decode_get(&r),
            Err(Error::NotFound { context: None, .. })
        ));
        for (status, check) in [
            (
                400u16,
                (|e: &Error| matches!(e, Error::BadRequest(_))) as fn(&Error) -> bool,
            ),
            (401, |e| matches!(e, Error::Unauthorized(_))),
            (403, |e| matches!(e, Error::Forbidden(_))),
            (412, |e| matches!(e, Error::PreconditionFailed(_))),
            (409, |e| matches!(e, Error::Server(_))),
            (500, |e| matches!(e, Error::Server(_))),
        ] {
            let e = decode_put(&resp(status, &[], b"{}")).unwrap_err();
            assert!(check(&e), "{status}: {e:?}");
            assert_eq!(e.status(), Some(status));
        }
        // A GET answering an odd success is a refusal too, not a value.
        assert!(matches!(
            decode_get(&resp(204, &[], b"")),
            Err(Error::Server(_))
        ));
    }

    #[test]
    fn writes_return_the_context_and_with_returnbody_the_object() {
        let r = resp(204, &[("x-riftkv-context", "new")], b"");
        assert_eq!(
            decode_put(&r).unwrap(),
            WriteResult {
                context: Some("new".into()),
                object: None
            }
        );
        let r = resp(
            200,
            &[
                ("content-type", "application/json"),
                ("x-riftkv-context", "c"),
            ],
            br#"{"context":"c","siblings":[{"value_base64":"YQ==","deleted":false}]}"#,
        );
        let w = decode_put(&r).unwrap();
        assert_eq!(w.context.as_deref(), Some("c"));
        assert_eq!(w.object.map(|o| o.siblings.len()), Some(1));
    }

    #[test]
    fn json_answers_decode_or_say_what_was_wrong() {
        let r = resp(200, &[], br#"{"keys":["a","b"],"next":"b"}"#);
        let page: KeyPage = decode_json(&r, "keys").unwrap();
        assert_eq!(page.keys, ["a", "b"]);
        assert_eq!(page.next.as_deref(), Some("b"));
        let r = resp(200, &[], br#"{"keys":[],"next":null}"#);
        assert_eq!(decode_json::<KeyPage>(&r, "keys").unwrap().next, None);
        let r = resp(200, &[], b"{nope");
        let e = decode_json::<serde_json::Value>(&r, "/v1/admin/status").unwrap_err();
        match e {
            Error::UnexpectedResponse(m) => {
                assert!(m.starts_with("invalid JSON from /v1/admin/status"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        let r = resp(
            200,
            &[],
            br#"{"partition":3,"primaries":["n1","n2"],"serving":["n1","n3"]}"#,
        );
        let p: Preflist = decode_json(&r, "preflist").unwrap();
        assert_eq!(p.partition, 3);
        assert_eq!(p.primaries[1].as_str(), "n2");
    }
}
