//! The client REST API (CONTRACT §2): routes, parameters, read rendering and error mapping.
//!
//! Handlers take bucket and key from the *raw* request path (see [`params::path_segments`]) so
//! keys may hold any bytes, `%2F` included. Every answer passes through [`observe`], which gives
//! it a request id, a tracing span, the request metrics, and turns a handler panic into a JSON
//! 500 instead of a dropped connection.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod buckets;
pub mod error;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod multipart;
pub mod objects;
pub mod openapi;
pub mod params;
pub mod render;
pub mod types;
pub mod ui;
pub mod users;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use error::{ApiError, Code};
use futures::FutureExt;
use riftkv_cluster::node::Node;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Requests (and the inter-node calls made for them) taking at least this long are logged at
/// `info`, with their request id, so a slow request can be followed across nodes without
/// debug logging.
pub use riftkv_cluster::trace::SLOW_REQUEST;

/// Shared state of every handler.
pub type AppState = Arc<Node>;

/// The id of a request (from `observe`), for the audit log.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The whole API of one node, with the default admission bounds and auth off.
pub fn router(node: Arc<Node>) -> Router {
    use crate::config::{DEFAULT_CLIENT_TIMEOUT_MS, DEFAULT_MAX_IN_FLIGHT};
    let body_timeout = std::time::Duration::from_millis(DEFAULT_CLIENT_TIMEOUT_MS);
    router_with(
        node,
        admission::Admission::new(DEFAULT_MAX_IN_FLIGHT, body_timeout),
        false,
    )
}

/// The whole API of one node, admitting requests through `admission`; with `auth`, every
/// request but the probes needs a bearer token with the route's permission.
pub fn router_with(node: Arc<Node>, admission: Arc<admission::Admission>, auth: bool) -> Router {
    let auth = auth::Auth {
        node: node.clone(),
        enabled: auth,
    };
    let routes = Router::new()
        .route(
            "/v1/kv/{bucket}/{key}",
            get(objects::get_object)
                .put(objects::put_object)
                .post(objects::post_object)
                .delete(objects::delete_object),
        )
        .route("/v1/kv/{bucket}", get(buckets::list_keys))
        .route(
            "/v1/types/{bucket}/{key}",
            get(types::get_type).post(types::update_type),
        )
        .route(
            "/v1/buckets/{bucket}/props",
            get(buckets::get_props).put(buckets::put_props),
        )
        .route("/v1/admin/status", get(admin::status))
        .route("/v1/admin/ring", get(admin::ring))
        .route("/v1/admin/preflist/{bucket}/{key}", get(admin::preflist))
        .route("/v1/admin/local/{bucket}/{key}", get(admin::local))
        .route("/v1/admin/leave", post(admin::leave))
        .route("/v1/admin/remove/{node_id}", post(admin::remove))
        .route("/v1/admin/replace/{old}/{new}", post(admin::replace))
        .route("/v1/admin/plan", get(admin::plan))
        .route("/v1/admin/plan/commit", post(admin::commit_plan))
        .route("/v1/admin/backup", post(admin::backup))
        .route("/v1/admin/users", get(users::list_users))
        .route(
            "/v1/admin/users/{name}",
            put(users::put_user).delete(users::delete_user),
        )
        .route("/v1/admin/users/{name}/tokens", post(users::create_token))
        .route(
            "/v1/admin/users/{name}/tokens/{id}",
            delete(users::revoke_token),
        )
        .route(
            "/v1/admin/grants",
            get(users::list_grants).post(users::change_grants),
        )
        .route("/health", get(admin::health))
        .route("/ready", get(admin::ready))
        .route("/metrics", get(admin::metrics))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/{asset}", get(ui::asset));
    // Test-only: absent (404) unless built with the `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    let routes = routes.route("/v1/admin/fault/corrupt", post(fault::corrupt));
    routes
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(no_route)
        // Bodies are read and bounded by the handlers themselves, so an oversized value gets
        // the contract's JSON `too_large` answer rather than a bare 413.
        .layer(axum::extract::DefaultBodyLimit::disable())
        // Inside admission: a refused request costs no permit beyond its check, and an
        // overloaded node refuses before it reads the ring state.
        .layer(middleware::from_fn_with_state(auth, auth::check))
        // Inside `observe`, so refusals are counted and logged like every answer.
        .layer(middleware::from_fn_with_state(admission, admission::admit))
        .layer(middleware::from_fn_with_state(node.clone(), observe))
        .with_state(node)
}

async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint (see /v1/openapi.json)")
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        format!("method {method} is not allowed on this endpoint"),
    )
}

/// The operation label of a request, from a small fixed set (bounded metric labels).
pub fn op_for(method: &Method, matched: Option<&str>) -> &'static str {
    let Some(path) = matched else {
        return "unknown";
    };
    match (path, method.as_str()) {
        ("/v1/kv/{bucket}/{key}", "GET" | "HEAD") => "get",
        ("/v1/kv/{bucket}/{key}", "PUT" | "POST") => "put",
        ("/v1/kv/{bucket}/{key}", "DELETE") => "delete",
        ("/v1/kv/{bucket}", _) => "list",
        ("/v1/types/{bucket}/{key}", "POST") => "type_update",
        ("/v1/types/{bucket}/{key}", _) => "type_get",
        ("/v1/buckets/{bucket}/props", "PUT") => "props_put",
        ("/v1/buckets/{bucket}/props", _) => "props_get",
        ("/health", _) => "health",
        ("/ready", _) => "ready",
        ("/metrics", _) => "metrics",
        ("/v1/openapi.json", _) => "openapi",
        ("/ui" | "/ui/" | "/ui/{asset}", _) => "ui",
        (p, _) if p.starts_with("/v1/admin/") => "admin",
        _ => "unknown",
    }
}

/// Per-request bookkeeping around every handler: request id, span, metrics, panic guard.
async fn observe(State(node): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = params::request_id(req.headers());
    req.extensions_mut().insert(RequestId(id.clone()));
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let op = op_for(req.method(), matched.as_deref());
    // Bucket names are operator-chosen metadata; keys are user data and only their length
    // is logged.
    let (bucket, key_len) = match op {
        "get" | "put" | "delete" | "list" | "props_get" | "props_put" | "type_get"
        | "type_update" => {
            let segs = params::path_segments(req.uri().path());
            let b = segs
                .get(2)
                .map(|b| params::shorten(&String::from_utf8_lossy(b)));
            (b.unwrap_or_default(), segs.get(3).map_or(0, Vec::len))
        }
        _ => (String::new(), 0),
    };
    let span = tracing::info_span!("request", request_id = %id, op, bucket = %bucket, key_len);
    let method = req.method().clone();
    let sends_body = req.version() < axum::http::Version::HTTP_2 && declares_body(req.headers());
    // Inter-node calls made for this request carry its id (see `riftkv_cluster::rpc::RequestMeta`).
    let scoped = riftkv_cluster::trace::with_request_id(Arc::from(id.as_str()), next.run(req));
    let answer = AssertUnwindSafe(scoped)
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let mut resp = match answer {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            span.in_scope(|| tracing::error!(panic = %what, "request handler panicked"));
            ApiError::internal("the server failed while handling this request").into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(params::REQUEST_ID_HEADER, v);
    }
    let status = resp.status();
    // Refusals (auth, admission, bad parameters) answer before the body is read; its unread
    // rest makes the connection unusable, so say that it closes rather than let a client's
    // next request on it fail.
    if sends_body && (status.is_client_error() || status.is_server_error()) {
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    let elapsed = started.elapsed();
    node.metrics.observe_request(op, status.as_str(), elapsed);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(%method, status = status.as_u16(), ms = elapsed.as_millis() as u64, "request failed");
        } else if elapsed >= SLOW_REQUEST {
            tracing::info!(%method, status = status.as_u16(), ms = elapsed.as_millis() as u64, "slow request");
        } else if matches!(op, "metrics" | "health" | "ready") {
            // Scrapes and probes arrive every few seconds: only at trace, not to drown requests.
            tracing::trace!(%method, status = status.as_u16(), ms = elapsed.as_millis() as u64, "request done");
        } else {
            tracing::debug!(%method, status = status.as_u16(), ms = elapsed.as_millis() as u64, "request done");
        }
    });
    resp
}

/// True when an HTTP/1 request announces a body (a non-zero length, or chunked).
fn declares_body(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(axum::http::header::TRANSFER_ENCODING)
        || headers
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

#[cfg(test)]
pub(crate) mod tests;
