//! Object endpoints: `PUT|POST|GET|DELETE /v1/kv/{bucket}/{key}`.

use super::AppState;
use super::error::ApiError;
use super::params;
use super::render::{ReadJson, TokenSigner, context_header, read_answer};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use riftkv_cluster::coordinator::{self, GetRequest, PutRequest};
use riftkv_cluster::node::Node;
use std::sync::Arc;
use std::time::Duration;

/// Reads a request body of at most `limit` bytes. A declared or actual size over the limit
/// is the contract's `too_large` (with the limit), never a bare 413 from the framework.
pub async fn read_body(body: Body, declared: Option<u64>, limit: u64) -> Result<Bytes, ApiError> {
    if let Some(len) = declared.filter(|l| *l > limit) {
        return Err(ApiError::too_large(Some(len), limit));
    }
    let mut buf = BytesMut::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match super::admission::deadline_of(&e) {
            Some(late) => ApiError::new(super::error::Code::Timeout, late.to_string()),
            None => ApiError::bad_request(format!("the request body could not be read: {e}")),
        })?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::too_large(None, limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The Content-Length a client declared, if it is a number.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The signer of context tokens for `key` of `bucket` on this node.
fn signer<'a>(node: &'a Node, bucket: &'a [u8], key: &'a [u8]) -> TokenSigner<'a> {
    TokenSigner {
        ctx_key: &node.context_key,
        bucket,
        key,
    }
}

/// A page of live keys of a bucket and the cursor of the next page, through the coordinator.
pub async fn list(
    node: &Arc<Node>,
    bucket: &[u8],
    after: Option<&[u8]>,
    limit: usize,
    timeout: Option<Duration>,
) -> Result<(Vec<Vec<u8>>, Option<Vec<u8>>), ApiError> {
    // The listing has no deadline of its own: bound it here like every other request.
    let deadline = timeout.unwrap_or(node.settings.request_timeout);
    match tokio::time::timeout(deadline, coordinator::list_keys(node, bucket, after, limit)).await {
        Ok(page) => Ok(page?),
        Err(_) => Err(coordinator::KvError::Timeout.into()),
    }
}

#[utoipa::path(get, path = "/v1/kv/{bucket}/{key}", tag = "objects",
    params(("bucket" = String, Path, description = "1..=255 bytes, URL-encoded"),
           ("key" = String, Path, description = "1..=1024 bytes, URL-encoded"),
           ("r" = Option<String>, Query, description = "Answers needed: integer, one, quorum or all"),
           ("pr" = Option<String>, Query, description = "Answers needed from primary owners"),
           ("timeout" = Option<u64>, Query, description = "Milliseconds"),
           ("Accept" = Option<String>, Header, description = "application/json for the JSON form")),
    responses(
        (status = 200, description = "One live version: the value as body",
         headers(("X-RiftKV-Context" = String, description = "Causal context to send back when writing"),
                 ("ETag" = String), ("Last-Modified" = String)),
         content((Vec<u8> = "application/octet-stream"), (ReadJson = "application/json"))),
        (status = 300, description = "Siblings: multipart/mixed, one part per version (deleted ones carry X-RiftKV-Deleted: true)",
         headers(("X-RiftKV-Context" = String, description = "Covers every version")),
         content((String = "multipart/mixed"), (ReadJson = "application/json"))),
        (status = 404, description = "Nothing live (never written, deleted or expired); carries X-RiftKV-Context when a tombstone or expired version exists", body = super::error::ErrorBody),
        (status = 400, description = "Bad parameter, or a bucket of a data type (use /v1/types)", body = super::error::ErrorBody),
        (status = 503, description = "r or pr could not be met", body = super::error::ErrorBody)))]
pub async fn get_object(
    State(node): State<AppState>,
    // The request itself rather than `Uri` and `HeaderMap` extractors, which copy both.
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (bucket, key) = params::bucket_and_key(req.uri().path(), 2)?;
    let q = params::object_query(req.uri().query(), false)?;
    params::require_plain(&node, &bucket)?;
    let json = params::wants_json(req.headers());
    let outcome = coordinator::get(
        &node,
        GetRequest {
            bucket: bucket.clone(),
            key: key.clone(),
            params: q.consistency.to_params(),
            timeout: q.consistency.timeout,
        },
    )
    .await?;
    Ok(read_answer(
        outcome.object.as_ref(),
        &signer(&node, &bucket, &key),
        json,
        node.expiry_now_ms(),
    ))
}

#[utoipa::path(put, path = "/v1/kv/{bucket}/{key}", tag = "objects",
    params(("bucket" = String, Path, description = "1..=255 bytes, URL-encoded"),
           ("key" = String, Path, description = "1..=1024 bytes, URL-encoded"),
           ("w" = Option<String>, Query, description = "Acks needed: integer, one, quorum or all"),
           ("dw" = Option<String>, Query, description = "Durable (fsynced) acks needed"),
           ("pw" = Option<String>, Query, description = "Acks needed from primary owners"),
           ("timeout" = Option<u64>, Query, description = "Milliseconds"),
           ("returnbody" = Option<bool>, Query, description = "Answer like a GET"),
           ("ttl" = Option<u64>, Query, description = "Seconds (1 to 315360000): the value expires that long after the coordinator's write time, then reads as missing everywhere"),
           ("X-RiftKV-TTL" = Option<u64>, Header, description = "Same as ttl (both given: they must agree)"),
           ("X-RiftKV-Context" = Option<String>, Header, description = "Context of an earlier read of this key: the write supersedes exactly what it saw"),
           ("If-None-Match" = Option<String>, Header, description = "* = write only when no live value exists")),
    request_body(content = Vec<u8>, description = "The value, raw bytes; its Content-Type is stored", content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Written", headers(("X-RiftKV-Context" = String, description = "Context of the new version"))),
        (status = 200, description = "Written, returnbody=true: as a GET"),
        (status = 300, description = "Written, returnbody=true, siblings remain: as a GET"),
        (status = 400, description = "Bad parameter; malformed or forged context, or the context of another key; a bucket of a data type (use /v1/types)", body = super::error::ErrorBody),
        (status = 409, description = "Too many siblings", body = super::error::ErrorBody),
        (status = 412, description = "If-None-Match: * and a live value exists", body = super::error::ErrorBody),
        (status = 413, description = "Value over the limit", body = super::error::ErrorBody),
        (status = 503, description = "w, dw or pw could not be met", body = super::error::ErrorBody)))]
pub async fn put_object(
    State(node): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    write_object(node, uri, headers, body).await
}

/// POST is the same as PUT.
#[utoipa::path(post, path = "/v1/kv/{bucket}/{key}", tag = "objects",
    params(("bucket" = String, Path), ("key" = String, Path)),
    request_body(content = Vec<u8>, description = "Same as PUT", content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Written, as PUT"),
        (status = 200, description = "Written, returnbody=true: as a GET"),
        (status = 300, description = "Written, returnbody=true, siblings remain: as a GET"),
        (status = 400, description = "As PUT", body = super::error::ErrorBody),
        (status = 409, description = "Too many siblings", body = super::error::ErrorBody),
        (status = 412, description = "If-None-Match: * and a live value exists", body = super::error::ErrorBody),
        (status = 413, description = "Value over the limit", body = super::error::ErrorBody),
        (status = 503, description = "w, dw or pw could not be met", body = super::error::ErrorBody)))]
pub async fn post_object(
    State(node): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    write_object(node, uri, headers, body).await
}

async fn write_object(
    node: Arc<Node>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (bucket, key) = params::bucket_and_key(uri.path(), 2)?;
    let q = params::object_query(uri.query(), true)?;
    params::require_plain(&node, &bucket)?;
    // Decoded here, once, before the body is read, so a bad token is always a 400.
    let context = params::context_from(&headers, &bucket, &key, &node.context_key)?;
    let if_none_match = params::if_none_match(&headers)?;
    let ttl = params::ttl(q.ttl, &headers)?;
    let content_type = params::content_type(&headers)?;
    let json = params::wants_json(&headers);
    let limit = node.settings.limits.max_value_bytes as u64;
    let value = read_body(body, declared_length(&headers), limit).await?;
    let outcome = coordinator::put(
        &node,
        PutRequest {
            bucket: bucket.clone(),
            key: key.clone(),
            value,
            content_type,
            context,
            if_none_match,
            params: q.consistency.to_params(),
            timeout: q.consistency.timeout,
            ttl,
        },
    )
    .await?;
    let signer = signer(&node, &bucket, &key);
    if q.returnbody {
        return Ok(read_answer(
            Some(&outcome.object),
            &signer,
            json,
            node.expiry_now_ms(),
        ));
    }
    let mut h = HeaderMap::new();
    let (n, v) = context_header(&outcome.object, &signer);
    h.insert(n, v);
    Ok((StatusCode::NO_CONTENT, h).into_response())
}

#[utoipa::path(delete, path = "/v1/kv/{bucket}/{key}", tag = "objects",
    params(("bucket" = String, Path, description = "1..=255 bytes, URL-encoded"),
           ("key" = String, Path, description = "1..=1024 bytes, URL-encoded"),
           ("w" = Option<String>, Query), ("dw" = Option<String>, Query), ("pw" = Option<String>, Query),
           ("timeout" = Option<u64>, Query, description = "Milliseconds"),
           ("X-RiftKV-Context" = Option<String>, Header, description = "Without it, the delete supersedes what the coordinator reads first")),
    responses(
        (status = 204, description = "Deleted (also when there was nothing to delete)"),
        (status = 400, description = "Bad parameter; malformed or forged context, or the context of another key; a bucket of a data type (use /v1/types)", body = super::error::ErrorBody),
        (status = 503, description = "w, dw or pw could not be met", body = super::error::ErrorBody)))]
pub async fn delete_object(
    State(node): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (bucket, key) = params::bucket_and_key(uri.path(), 2)?;
    let q = params::object_query(uri.query(), false)?;
    params::require_plain(&node, &bucket)?;
    let context = params::context_from(&headers, &bucket, &key, &node.context_key)?;
    let outcome = coordinator::delete(
        &node,
        coordinator::DeleteRequest {
            bucket: bucket.clone(),
            key: key.clone(),
            context,
            params: q.consistency.to_params(),
            timeout: q.consistency.timeout,
        },
    )
    .await?;
    let mut h = HeaderMap::new();
    let (n, v) = context_header(&outcome.object, &signer(&node, &bucket, &key));
    h.insert(n, v);
    Ok((StatusCode::NO_CONTENT, h).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::Code;
    use axum::http::HeaderValue;

    #[tokio::test]
    async fn body_limits() {
        let ok = read_body(Body::from("hello"), Some(5), 5).await.unwrap();
        assert_eq!(&ok[..], b"hello");
        let e = read_body(Body::from("hello"), Some(6), 5)
            .await
            .unwrap_err();
        assert_eq!(e.code, Code::TooLarge);
        assert_eq!(e.body()["limit"], 5);
        // A body longer than declared (or without a declared length) is caught while reading.
        let e = read_body(Body::from("hello!"), None, 5).await.unwrap_err();
        assert_eq!(e.code, Code::TooLarge);
        assert_eq!(e.status().as_u16(), 413);
    }

    #[test]
    fn declared_length_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(declared_length(&h), None);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("42"));
        assert_eq!(declared_length(&h), Some(42));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("x"));
        assert_eq!(declared_length(&h), None);
    }
}
