//! Who may call what (CONTRACT §5): with auth on, every request but `/health`, `/ready` and
//! the console's static assets (`/ui`) needs `Authorization: Bearer TOKEN`, and the route's
//! permission on its bucket (or the cluster). The check runs before any handler, so neither
//! refusal reveals whether a key exists. Refusals and every `/v1/admin/*` request are written
//! to the `audit` log target.

use super::error::{ApiError, Code};
use super::{RequestId, params};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use riftkv_cluster::node::Node;
use riftkv_core::security::{Permission, Principal};
use std::net::SocketAddr;
use std::sync::Arc;

/// The API's authentication setting.
#[derive(Clone)]
pub struct Auth {
    pub node: Arc<Node>,
    pub enabled: bool,
}

/// The authenticated caller of a request (none while auth is off), for handlers and the audit.
#[derive(Clone, Debug)]
pub struct Caller(pub Option<Principal>);

impl Caller {
    /// The name the audit log gives the caller.
    pub fn name(&self) -> &str {
        self.0.as_ref().map_or("anonymous", |p| p.user.as_str())
    }
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing: probes.
    Nothing,
    /// Any valid token.
    Token,
    /// A permission on the request's bucket (path segment 3).
    Bucket(Permission),
    /// A cluster-wide permission.
    Cluster(Permission),
}

/// The permission of a route, from its operation label ([`super::op_for`]: the same route
/// table the metrics use, so the two cannot disagree about what a request is).
pub fn need_for(method: &Method, matched: Option<&str>) -> Need {
    match super::op_for(method, matched) {
        // The console's page and assets are public; the data it fetches needs the token.
        "health" | "ready" | "ui" => Need::Nothing,
        "metrics" => Need::Cluster(Permission::Metrics),
        "admin" => Need::Cluster(Permission::Admin),
        "get" | "type_get" => Need::Bucket(Permission::Get),
        "put" | "type_update" => Need::Bucket(Permission::Put),
        "delete" => Need::Bucket(Permission::Delete),
        "list" => Need::Bucket(Permission::List),
        "props_get" | "props_put" => Need::Bucket(Permission::Props),
        // The document, other methods on known routes, and unknown routes (404 to
        // authenticated callers only).
        _ => Need::Token,
    }
}

/// The bearer token of a request, if it carries one.
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// One audit event: one line on the `audit` target, never a token or a value.
pub fn audit(req_id: &str, source: &str, who: &str, action: &str, resource: &str, status: u16) {
    tracing::info!(
        target: "audit",
        who,
        action,
        resource,
        source,
        request_id = req_id,
        status,
        "audit"
    );
}

/// What an audit line says of a request.
struct AuditContext {
    request_id: String,
    source: String,
    action: String,
    resource: String,
}

impl AuditContext {
    fn of(req: &Request, matched: Option<&str>, need: Need) -> AuditContext {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map_or_else(String::new, |r| r.0.clone());
        let source = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.to_string());
        let action = format!("{} {}", req.method(), matched.unwrap_or("unknown"));
        // The resource names the bucket (operator-chosen metadata), never a key (user data).
        let resource = match need {
            Need::Bucket(_) => bucket_of(req)
                .map(|b| format!("bucket:{}", params::shorten(&String::from_utf8_lossy(&b))))
                .unwrap_or_default(),
            _ => params::shorten(req.uri().path()),
        };
        AuditContext {
            request_id,
            source,
            action,
            resource,
        }
    }

    fn write(&self, who: &str, status: u16) {
        audit(
            &self.request_id,
            &self.source,
            who,
            &self.action,
            &self.resource,
            status,
        );
    }
}

/// The bucket a request names (path segment 3), raw.
fn bucket_of(req: &Request) -> Option<Vec<u8>> {
    params::path_segments(req.uri().path()).into_iter().nth(2)
}

/// The middleware: authenticates and authorizes, or answers 401/403.
pub async fn check(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let need = need_for(req.method(), matched.as_deref());
    let is_admin = need == Need::Cluster(Permission::Admin);
    let checked = auth.enabled && need != Need::Nothing;
    if !checked && !is_admin {
        // Nothing to check and nothing to audit: no work on the request path.
        req.extensions_mut().insert(Caller(None));
        return next.run(req).await;
    }
    let ctx = AuditContext::of(&req, matched.as_deref(), need);
    let caller = if !checked {
        Caller(None)
    } else {
        let now = auth.node.clock.now_ms();
        let bucket = match need {
            Need::Bucket(_) => bucket_of(&req),
            _ => None,
        };
        // One view of the security state for both questions.
        let verdict = {
            let state = auth.node.state.read();
            bearer(&req)
                .and_then(|t| state.security.authenticate(t, now).ok())
                .map(|principal| {
                    let allowed = match need {
                        Need::Nothing | Need::Token => true,
                        Need::Bucket(p) => {
                            state.security.authorize(&principal, p, bucket.as_deref())
                        }
                        Need::Cluster(p) => state.security.authorize(&principal, p, None),
                    };
                    (principal, allowed)
                })
        };
        let Some((principal, allowed)) = verdict else {
            ctx.write("anonymous", 401);
            return ApiError::new(
                Code::Unauthorized,
                "this request needs a valid bearer token (Authorization: Bearer TOKEN)",
            )
            .into_response();
        };
        if !allowed {
            ctx.write(&principal.user, 403);
            let what = match need {
                Need::Bucket(p) | Need::Cluster(p) => p.as_str(),
                _ => "",
            };
            return ApiError::new(
                Code::Forbidden,
                format!(
                    "user {} does not have the {what} permission here",
                    principal.user
                ),
            )
            .into_response();
        }
        Caller(Some(principal))
    };
    let who = caller.name().to_string();
    req.extensions_mut().insert(caller);
    let resp = next.run(req).await;
    if is_admin {
        ctx.write(&who, resp.status().as_u16());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_permission() {
        let get = Method::GET;
        let b = |p| Need::Bucket(p);
        let cases = [
            (Method::GET, "/v1/kv/{bucket}/{key}", b(Permission::Get)),
            (Method::HEAD, "/v1/kv/{bucket}/{key}", b(Permission::Get)),
            (Method::PUT, "/v1/kv/{bucket}/{key}", b(Permission::Put)),
            (Method::POST, "/v1/kv/{bucket}/{key}", b(Permission::Put)),
            (
                Method::DELETE,
                "/v1/kv/{bucket}/{key}",
                b(Permission::Delete),
            ),
            (get.clone(), "/v1/kv/{bucket}", b(Permission::List)),
            (get.clone(), "/v1/types/{bucket}/{key}", b(Permission::Get)),
            (Method::POST, "/v1/types/{bucket}/{key}", b(Permission::Put)),
            (
                get.clone(),
                "/v1/buckets/{bucket}/props",
                b(Permission::Props),
            ),
            (
                Method::PUT,
                "/v1/buckets/{bucket}/props",
                b(Permission::Props),
            ),
            (
                get.clone(),
                "/v1/admin/status",
                Need::Cluster(Permission::Admin),
            ),
            (
                Method::POST,
                "/v1/admin/grants",
                Need::Cluster(Permission::Admin),
            ),
            (
                Method::POST,
                "/v1/admin/replace/{old}/{new}",
                Need::Cluster(Permission::Admin),
            ),
            (
                get.clone(),
                "/v1/admin/plan",
                Need::Cluster(Permission::Admin),
            ),
            (
                Method::POST,
                "/v1/admin/plan/commit",
                Need::Cluster(Permission::Admin),
            ),
            (get.clone(), "/metrics", Need::Cluster(Permission::Metrics)),
            (get.clone(), "/v1/openapi.json", Need::Token),
            (get.clone(), "/health", Need::Nothing),
            (get.clone(), "/ready", Need::Nothing),
            (get.clone(), "/ui", Need::Nothing),
            (get.clone(), "/ui/", Need::Nothing),
            (get.clone(), "/ui/{asset}", Need::Nothing),
        ];
        for (m, path, need) in cases {
            assert_eq!(need_for(&m, Some(path)), need, "{m} {path}");
        }
        assert_eq!(need_for(&get, None), Need::Token);
    }
}
