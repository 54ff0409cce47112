//! Client-facing errors: every failure of the REST API is one JSON body
//! `{"error": code, "message": sentence, ...extra}` with a fixed HTTP status per code.
//! Typed errors of lower layers are turned into HTTP here and nowhere else.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use riftkv_cluster::coordinator::KvError;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The error codes of the contract (plus the routing ones), each with its HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    BadRequest,
    InvalidContext,
    PreconditionFailed,
    TooLarge,
    TooManySiblings,
    QuorumUnavailable,
    Timeout,
    Unauthorized,
    Forbidden,
    Overloaded,
    Conflict,
    NotFound,
    MethodNotAllowed,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::InvalidContext => "invalid_context",
            Code::PreconditionFailed => "precondition_failed",
            Code::TooLarge => "too_large",
            Code::TooManySiblings => "too_many_siblings",
            Code::QuorumUnavailable => "quorum_unavailable",
            Code::Timeout => "timeout",
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::Overloaded => "overloaded",
            Code::Conflict => "conflict",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::Internal => "internal",
        }
    }

    /// The HTTP status of a code. A timeout is a 503 like a missed quorum: both mean "the
    /// cluster could not answer now", and clients retry both the same way.
    pub fn status(self) -> StatusCode {
        match self {
            Code::BadRequest | Code::InvalidContext => StatusCode::BAD_REQUEST,
            Code::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Code::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            // The write would pile up more concurrent versions than allowed: the client must
            // read, resolve the siblings and write back with the context.
            Code::TooManySiblings => StatusCode::CONFLICT,
            Code::QuorumUnavailable | Code::Timeout | Code::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::Conflict => StatusCode::CONFLICT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The JSON shape of every error answer (for the OpenAPI document; answers are built by
/// [`ApiError`], which may add further fields such as `context` or `errors`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `quorum_unavailable`.
    pub error: String,
    /// One human sentence.
    pub message: String,
    /// Replies the request needed (`quorum_unavailable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needed: Option<u32>,
    /// Replies the request got (`quorum_unavailable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub got: Option<u32>,
    /// The limit that was exceeded (`too_large`, `too_many_siblings`, listing `limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// An error answer under construction.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Extra top-level fields of the JSON body.
    pub extra: Map<String, Value>,
    /// Headers to send with the error (e.g. the context of a tombstone on a 404).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            extra: Map::new(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::BadRequest, message)
    }

    pub fn invalid_context(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::InvalidContext, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::Internal, message)
    }

    pub fn too_large(size: Option<u64>, limit: u64) -> ApiError {
        let message = match size {
            Some(s) => format!("the value of {s} bytes is over the limit of {limit} bytes"),
            None => format!("the value is over the limit of {limit} bytes"),
        };
        let mut e = ApiError::new(Code::TooLarge, message).with("limit", limit);
        if let Some(s) = size {
            e = e.with("size", s);
        }
        e
    }

    /// Adds an extra field to the JSON body.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> ApiError {
        self.extra.insert(name.to_string(), value.into());
        self
    }

    /// Adds a header to the answer.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The JSON body: code and message first, then the extra fields.
    pub fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("error".into(), Value::from(self.code.as_str()));
        m.insert("message".into(), Value::from(self.message.clone()));
        for (k, v) in &self.extra {
            if k != "error" && k != "message" {
                m.insert(k.clone(), v.clone());
            }
        }
        Value::Object(m)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self.body()).unwrap_or_else(|_| b"{}".to_vec());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE && self.code == Code::Overloaded {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.code == Code::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        for (k, v) in self.headers {
            headers.append(k, v);
        }
        (status, headers, body).into_response()
    }
}

impl From<KvError> for ApiError {
    fn from(e: KvError) -> ApiError {
        match e {
            KvError::BadRequest(m) => ApiError::bad_request(m),
            KvError::PreconditionFailed => ApiError::new(
                Code::PreconditionFailed,
                "a live value already exists for this key (If-None-Match: *)",
            ),
            KvError::TooLarge { size, limit } => {
                ApiError::too_large(Some(size as u64), limit as u64)
            }
            KvError::TooManySiblings { count, limit } => ApiError::new(
                Code::TooManySiblings,
                format!(
                    "the write would leave {count} concurrent versions, over the limit of \
                     {limit}: read the key, resolve its siblings and write back with the context"
                ),
            )
            .with("count", count as u64)
            .with("limit", limit as u64),
            KvError::ObjectTooLarge { size, limit } => ApiError::new(
                Code::TooLarge,
                format!(
                    "the key's versions would hold {size} bytes together, over the object limit \
                     of {limit} bytes: read the key, resolve its siblings and write back with the \
                     context"
                ),
            )
            .with("size", size as u64)
            .with("limit", limit as u64),
            KvError::Quorum {
                needed,
                got,
                which,
                errors,
            } => {
                let errs: Vec<Value> = errors
                    .iter()
                    .map(|(node, why)| serde_json::json!({"node": node.as_str(), "error": why}))
                    .collect();
                ApiError::new(
                    Code::QuorumUnavailable,
                    format!("{which}={needed} cannot be met: only {got} replicas could answer"),
                )
                .with("needed", needed)
                .with("got", got)
                .with("which", which)
                .with("errors", Value::Array(errs))
            }
            KvError::Timeout => ApiError::new(
                Code::Timeout,
                "the request timed out before enough replicas answered",
            ),
            KvError::Internal(m) => {
                tracing::error!(error = %m, "internal error in a key-value request");
                ApiError::internal(format!("internal error: {m}"))
            }
            KvError::DataType { kind, message } => match kind {
                riftkv_crdt::ErrorKind::BadRequest => ApiError::bad_request(message),
                riftkv_crdt::ErrorKind::TooLarge => ApiError::new(Code::TooLarge, message),
                riftkv_crdt::ErrorKind::Corrupt => {
                    tracing::error!(error = %message, "stored data type value cannot be read");
                    ApiError::internal(format!(
                        "the stored data type value cannot be read: {message}"
                    ))
                }
            },
        }
    }
}

impl From<riftkv_core::bucket::InvalidQuorum> for ApiError {
    fn from(e: riftkv_core::bucket::InvalidQuorum) -> ApiError {
        ApiError::bad_request(e.to_string())
    }
}

impl From<riftkv_core::bucket::PropsError> for ApiError {
    fn from(e: riftkv_core::bucket::PropsError) -> ApiError {
        let err = ApiError::bad_request(format!("invalid bucket props: {e}"));
        match e {
            riftkv_core::bucket::PropsError::OverReplication { limit, .. } => {
                err.with("limit", limit)
            }
            riftkv_core::bucket::PropsError::BadTtl(_) => {
                err.with("limit", riftkv_core::bucket::MAX_TTL_SECS)
            }
            _ => err,
        }
    }
}

impl From<riftkv_core::version::ContextError> for ApiError {
    fn from(e: riftkv_core::version::ContextError) -> ApiError {
        ApiError::invalid_context(format!("X-RiftKV-Context is not usable: {e}"))
    }
}

impl From<riftkv_core::security::SecurityError> for ApiError {
    fn from(e: riftkv_core::security::SecurityError) -> ApiError {
        use riftkv_core::security::SecurityError as E;
        match e {
            E::NoSuchUser(_) | E::NoSuchToken { .. } => ApiError::not_found(e.to_string()),
            _ => ApiError::bad_request(e.to_string()),
        }
    }
}

impl From<riftkv_cluster::node::NodeError> for ApiError {
    fn from(e: riftkv_cluster::node::NodeError) -> ApiError {
        tracing::error!(error = %e, "node state could not be updated");
        ApiError::internal(format!("the node could not update its state: {e}"))
    }
}

impl From<riftkv_cluster::replica::store::StoreError> for ApiError {
    fn from(e: riftkv_cluster::replica::store::StoreError) -> ApiError {
        tracing::error!(error = %e, "local storage failed");
        ApiError::internal(format!("local storage failed: {e}"))
    }
}

impl From<riftkv_core::storage::StorageError> for ApiError {
    fn from(e: riftkv_core::storage::StorageError) -> ApiError {
        tracing::error!(error = %e, "local storage failed");
        ApiError::internal(format!("local storage failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Code; 14] = [
        Code::BadRequest,
        Code::InvalidContext,
        Code::PreconditionFailed,
        Code::TooLarge,
        Code::TooManySiblings,
        Code::QuorumUnavailable,
        Code::Timeout,
        Code::Unauthorized,
        Code::Forbidden,
        Code::Overloaded,
        Code::Conflict,
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::Internal,
    ];

    #[test]
    fn codes_have_the_contract_statuses() {
        let expect = [
            ("bad_request", 400),
            ("invalid_context", 400),
            ("precondition_failed", 412),
            ("too_large", 413),
            ("too_many_siblings", 409),
            ("quorum_unavailable", 503),
            ("timeout", 503),
            ("unauthorized", 401),
            ("forbidden", 403),
            ("overloaded", 503),
            ("conflict", 409),
            ("not_found", 404),
            ("method_not_allowed", 405),
            ("internal", 500),
        ];
        for (code, (name, status)) in ALL.iter().zip(expect) {
            assert_eq!(code.as_str(), name);
            assert_eq!(code.status().as_u16(), status, "{name}");
        }
    }

    #[tokio::test]
    async fn error_answer_is_json_with_code_message_and_extras() {
        let e = ApiError::new(Code::QuorumUnavailable, "needed 2 replies, got 1")
            .with("needed", 2)
            .with("got", 1)
            .with("error", "spoofed");
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"], "quorum_unavailable");
        assert_eq!(v["message"], "needed 2 replies, got 1");
        assert_eq!(v["needed"], 2);
        assert_eq!(v["got"], 1);
    }

    #[test]
    fn too_large_carries_the_limit() {
        let e = ApiError::too_large(Some(10), 5);
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let b = e.body();
        assert_eq!(b["limit"], 5);
        assert_eq!(b["size"], 10);
        assert!(b["message"].as_str().unwrap().contains("limit of 5 bytes"));
    }

    #[test]
    fn every_kv_error_maps_to_its_code_and_status() {
        use riftkv_core::types::NodeId;
        let cases: Vec<(KvError, &str, u16)> = vec![
            (
                KvError::BadRequest("w=9 is more than n=3".into()),
                "bad_request",
                400,
            ),
            (KvError::PreconditionFailed, "precondition_failed", 412),
            (KvError::TooLarge { size: 9, limit: 8 }, "too_large", 413),
            (
                KvError::TooManySiblings {
                    count: 101,
                    limit: 100,
                },
                "too_many_siblings",
                409,
            ),
            (
                KvError::ObjectTooLarge {
                    size: 17 << 20,
                    limit: 16 << 20,
                },
                "too_large",
                413,
            ),
            (
                KvError::Quorum {
                    needed: 2,
                    got: 1,
                    which: "w",
                    errors: vec![(NodeId::from("n2"), "unreachable".into())],
                },
                "quorum_unavailable",
                503,
            ),
            (KvError::Timeout, "timeout", 503),
            (KvError::Internal("disk".into()), "internal", 500),
        ];
        for (kv, code, status) in cases {
            let e = ApiError::from(kv);
            assert_eq!(e.code.as_str(), code);
            assert_eq!(e.status().as_u16(), status, "{code}");
            let b = e.body();
            assert_eq!(b["error"], code);
            let msg = b["message"].as_str().unwrap();
            assert!(!msg.is_empty() && !msg.contains('\n'), "{code}: {msg}");
            match code {
                "too_large" if b["size"] == 9 => assert_eq!(b["limit"], 8),
                "too_large" => {
                    assert_eq!(b["limit"], 16 << 20);
                    assert_eq!(b["size"], 17 << 20);
                }
                "too_many_siblings" => assert_eq!(b["limit"], 100),
                "quorum_unavailable" => {
                    assert_eq!(b["needed"], 2);
                    assert_eq!(b["got"], 1);
                    assert_eq!(b["errors"][0]["node"], "n2");
                }
                _ => {}
            }
        }
    }

    #[test]
    fn context_errors_are_invalid_context() {
        let key = riftkv_core::version::ContextKey::derive(b"k");
        let err = riftkv_core::version::decode_context("!!!", b"b", b"k", &key).unwrap_err();
        let e = ApiError::from(err);
        assert_eq!(e.code, Code::InvalidContext);
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}
