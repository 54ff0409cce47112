//! Data type endpoints: `GET|POST /v1/types/{bucket}/{key}` (CONTRACT §6). A key of a typed
//! bucket reads as one merged value (never siblings) with a context token; an update is a
//! JSON operation, and a remove must bring the context of a read.

use super::AppState;
use super::error::ApiError;
use super::objects::{declared_length, read_body};
use super::params::{self, CONTEXT_HEADER};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use riftkv_cluster::coordinator::update::{UpdateRequest, read, state_of, update};
use riftkv_cluster::coordinator::{GetRequest, KvError};
use riftkv_core::bucket::DataType;
use riftkv_core::datatype::State as TypeState;
use riftkv_core::version::{ContextKey, MAX_TOKEN_CHARS, decode_type_context, encode_type_context};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A data type value as a GET (or an update with `returnbody=true`) answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TypeBody {
    /// `counter`, `set` or `map`.
    #[serde(rename = "type")]
    pub data_type: String,
    /// counter: an integer; set: a sorted array of strings; map: field name to
    /// `{"counter": n}`, `{"set": [...]}`, `{"register": "s"}`, `{"flag": bool}` or
    /// `{"map": {...}}`.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    /// What this read saw; send it back with an update that removes something.
    pub context: String,
}

/// The body of a read of `state`, with its context signed for `key` of `bucket`.
pub fn type_body(
    state: &TypeState,
    bucket: &[u8],
    key: &[u8],
    ctx_key: &ContextKey,
) -> Result<TypeBody, ApiError> {
    Ok(TypeBody {
        data_type: state.data_type().as_str().to_string(),
        value: state.value_json().map_err(KvError::from)?,
        context: encode_type_context(&state.context(), bucket, key, ctx_key),
    })
}

/// The operation's text and the context token it carries: the body's `"context"` when
/// present, else the `X-RiftKV-Context` header.
pub fn split_update(
    body: &[u8],
    headers: &HeaderMap,
) -> Result<(String, Option<String>), ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the operation must be UTF-8 JSON"))?;
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("the operation must be a JSON object: {e}")))?;
    let from_body = match v.get("context") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(t)) => Some(t.clone()),
        Some(_) => {
            return Err(ApiError::invalid_context(
                "\"context\" must be the token string a read returned",
            ));
        }
    };
    let from_header = match headers.get(CONTEXT_HEADER) {
        None => None,
        Some(h) => Some(
            h.to_str()
                .map_err(|_| ApiError::invalid_context("X-RiftKV-Context is not a valid token"))?
                .trim()
                .to_string(),
        ),
    };
    Ok((text.to_string(), from_body.or(from_header)))
}

#[utoipa::path(get, path = "/v1/types/{bucket}/{key}", tag = "types",
    params(("bucket" = String, Path, description = "1..=255 bytes, URL-encoded; a bucket with a datatype"),
           ("key" = String, Path, description = "1..=1024 bytes, URL-encoded"),
           ("r" = Option<String>, Query, description = "Answers needed: integer, one, quorum or all"),
           ("pr" = Option<String>, Query, description = "Answers needed from primary owners"),
           ("timeout" = Option<u64>, Query, description = "Milliseconds")),
    responses(
        (status = 200, description = "The merged value (concurrent updates are joined, never siblings)", body = TypeBody),
        (status = 400, description = "Bad parameter, or a bucket without a datatype", body = super::error::ErrorBody),
        (status = 404, description = "No value", body = super::error::ErrorBody),
        (status = 500, description = "The stored value cannot be read as the bucket's type", body = super::error::ErrorBody),
        (status = 503, description = "r or pr could not be met", body = super::error::ErrorBody)))]
pub async fn get_type(State(node): State<AppState>, uri: Uri) -> Result<Json<TypeBody>, ApiError> {
    let (bucket, key) = params::bucket_and_key(uri.path(), 2)?;
    let q = params::object_query(uri.query(), false)?;
    params::require_typed(&node, &bucket)?;
    let state = read(
        &node,
        GetRequest {
            bucket: bucket.clone(),
            key: key.clone(),
            params: q.consistency.to_params(),
            timeout: q.consistency.timeout,
        },
    )
    .await?
    .ok_or_else(|| ApiError::not_found("no value for this key"))?;
    Ok(Json(type_body(&state, &bucket, &key, &node.context_key)?))
}

#[utoipa::path(post, path = "/v1/types/{bucket}/{key}", tag = "types",
    params(("bucket" = String, Path, description = "1..=255 bytes, URL-encoded; a bucket with a datatype"),
           ("key" = String, Path, description = "1..=1024 bytes, URL-encoded"),
           ("w" = Option<String>, Query, description = "Acks needed: integer, one, quorum or all"),
           ("dw" = Option<String>, Query, description = "Durable (fsynced) acks needed"),
           ("pw" = Option<String>, Query, description = "Acks needed from primary owners"),
           ("timeout" = Option<u64>, Query, description = "Milliseconds"),
           ("returnbody" = Option<bool>, Query, description = "Answer like a GET"),
           ("X-RiftKV-Context" = Option<String>, Header, description = "Context of a read of this key, when the body has no \"context\"")),
    request_body(content = Object, description = "counter: {\"increment\": n}; set: {\"add\": [...], \"remove\": [...]}; map: {\"update\": {field: op}, \"remove\": [field]}; optional \"context\"", content_type = "application/json"),
    responses(
        (status = 204, description = "Applied"),
        (status = 200, description = "Applied, returnbody=true: as a GET", body = TypeBody),
        (status = 400, description = "Malformed operation, an operation of another type, a remove without the context of a read, a malformed or foreign context, a ttl (data type values never expire), or a bucket without a datatype", body = super::error::ErrorBody),
        (status = 413, description = "The value would exceed a size limit", body = super::error::ErrorBody),
        (status = 500, description = "The stored value cannot be read as the bucket's type", body = super::error::ErrorBody),
        (status = 503, description = "w, dw or pw could not be met", body = super::error::ErrorBody)))]
pub async fn update_type(
    State(node): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (bucket, key) = params::bucket_and_key(uri.path(), 2)?;
    let q = params::object_query(uri.query(), true)?;
    let data_type: DataType = params::require_typed(&node, &bucket)?;
    // Validated like a value's TTL first, so a malformed one gets the usual message.
    if params::ttl(q.ttl, &headers)?.is_some() {
        return Err(ApiError::bad_request(
            "ttl: data type values never expire (a TTL applies to plain values only)",
        ));
    }
    // An operation can never store more than the value limit; its body may also carry a
    // context token.
    let limit = (node.settings.limits.max_value_bytes + MAX_TOKEN_CHARS) as u64;
    let bytes = read_body(body, declared_length(&headers), limit).await?;
    let (op, token) = split_update(&bytes, &headers)?;
    // Decoded here, once: below this point a context is a clock of write identities.
    let context = token
        .map(|t| decode_type_context(&t, &bucket, &key, &node.context_key))
        .transpose()?;
    let object = update(
        &node,
        UpdateRequest {
            bucket: bucket.clone(),
            key: key.clone(),
            op,
            context,
            params: q.consistency.to_params(),
            timeout: q.consistency.timeout,
        },
    )
    .await?;
    if q.returnbody
        && let Some(state) = state_of(Some(&object), data_type)?
    {
        let body = type_body(&state, &bucket, &key, &node.context_key)?;
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::Code;
    use axum::http::HeaderValue;

    #[test]
    fn the_body_context_wins_over_the_header() {
        let mut h = HeaderMap::new();
        let (op, t) = split_update(br#"{"add": ["a"]}"#, &h).unwrap();
        assert_eq!((op.as_str(), t), (r#"{"add": ["a"]}"#, None));
        h.insert(CONTEXT_HEADER, HeaderValue::from_static("from-header"));
        let (_, t) = split_update(br#"{"remove": ["a"]}"#, &h).unwrap();
        assert_eq!(t.as_deref(), Some("from-header"));
        let (_, t) = split_update(br#"{"remove": ["a"], "context": "from-body"}"#, &h).unwrap();
        assert_eq!(t.as_deref(), Some("from-body"));
        for bad in [&b"not json"[..], b"\xff", b""] {
            assert_eq!(split_update(bad, &h).unwrap_err().code, Code::BadRequest);
        }
        let e = split_update(br#"{"remove": ["a"], "context": 7}"#, &h).unwrap_err();
        assert_eq!(e.code, Code::InvalidContext);
    }
}
