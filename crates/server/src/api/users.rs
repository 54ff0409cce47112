//! Users, tokens and grants (`/v1/admin/users`, `/v1/admin/grants`; CONTRACT §5). Changes go
//! into the ring state's security state and spread by gossip like bucket props; the
//! middleware in [`super::auth`] has already checked the `admin` permission.

use super::AppState;
use super::error::ApiError;
use super::objects::read_body;
use super::params;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use riftkv_core::membership::state::RingState;
use riftkv_core::security::{self, Permission, SecurityError, Subject};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use utoipa::ToSchema;

/// Largest body of a users or grants request.
const MAX_BODY_BYTES: u64 = 64 * 1024;
/// Longest token lifetime: ten years.
const MAX_TTL_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// A token of a user, without its value.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenBody {
    pub id: String,
    /// Milliseconds since the Unix epoch after which the token is refused; null = never.
    pub expires_at: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UserBody {
    pub name: String,
    pub groups: Vec<String>,
    pub tokens: Vec<TokenBody>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UsersBody {
    pub users: Vec<UserBody>,
}

/// Body of `PUT /v1/admin/users/{name}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPutBody {
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Body of `POST /v1/admin/users/{name}/tokens` (optional).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequestBody {
    /// Lifetime in seconds; absent = the token never expires.
    pub ttl_seconds: Option<u64>,
}

/// A new token: the only answer that ever shows its value.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NewTokenBody {
    pub id: String,
    pub token: String,
    pub expires_at: Option<u64>,
}

/// Body of `POST /v1/admin/grants`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequestBody {
    /// `grant` or `revoke`.
    pub action: String,
    /// `user:NAME` or `group:NAME`.
    pub subject: String,
    /// A bucket name or `*`.
    pub bucket: String,
    /// Among get, put, delete, list, props, admin, metrics (the last two on `*` only).
    pub permissions: Vec<String>,
}

/// The permissions a subject holds on a bucket (or `*`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GrantBody {
    pub subject: String,
    pub bucket: String,
    pub permissions: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GrantsBody {
    pub grants: Vec<GrantBody>,
}

/// Path segment `i` as a user name.
fn name_at(uri: &Uri, i: usize) -> Result<String, ApiError> {
    let raw = params::path_segments(uri.path())
        .into_iter()
        .nth(i)
        .unwrap_or_default();
    let name = String::from_utf8(raw).map_err(|_| ApiError::bad_request("a name is UTF-8 text"))?;
    security::check_name(&name)?;
    Ok(name)
}

/// Parses a JSON body; an empty body is `T::default()` when `empty_ok`.
async fn json_body<T: for<'de> Deserialize<'de> + Default>(
    body: Body,
    empty_ok: bool,
) -> Result<T, ApiError> {
    let bytes = read_body(body, None, MAX_BODY_BYTES).await?;
    if empty_ok && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not the expected JSON: {e}")))
}

/// Applies a change to the security state as a new write of this node, persisted and gossiped.
async fn change(
    node: &AppState,
    f: impl FnOnce(&mut RingState, &riftkv_core::types::NodeId) -> Result<(), SecurityError>,
) -> Result<(), ApiError> {
    let me = node.id.clone();
    node.update_state(move |s| {
        let r = f(s, &me);
        (r.is_ok(), r)
    })
    .await??;
    Ok(())
}

fn user_body(s: &RingState, name: &str, groups: &BTreeSet<String>) -> UserBody {
    UserBody {
        name: name.to_string(),
        groups: groups.iter().cloned().collect(),
        tokens: s
            .security
            .tokens_of(name)
            .map(|(id, t)| TokenBody {
                id: id.clone(),
                expires_at: t.expires_at,
            })
            .collect(),
    }
}

#[utoipa::path(get, path = "/v1/admin/users", tag = "security",
    responses((status = 200, description = "Every user with their groups and token ids (never token values)", body = UsersBody)))]
pub async fn list_users(State(node): State<AppState>) -> Json<UsersBody> {
    let s = node.state.read();
    let users = s
        .security
        .live_users()
        .map(|(name, u)| user_body(&s, name, &u.groups))
        .collect();
    Json(UsersBody { users })
}

#[utoipa::path(put, path = "/v1/admin/users/{name}", tag = "security",
    params(("name" = String, Path, description = "1..=64 of letters, digits, '.', '_', '-'")),
    request_body(content = UserPutBody, content_type = "application/json"),
    responses((status = 200, description = "The user after the change", body = UserBody),
              (status = 400, description = "Bad name, group or body", body = super::error::ErrorBody)))]
pub async fn put_user(
    State(node): State<AppState>,
    uri: Uri,
    body: Body,
) -> Result<Json<UserBody>, ApiError> {
    let name = name_at(&uri, 3)?;
    let req: UserPutBody = json_body(body, true).await?;
    let groups: BTreeSet<String> = req.groups.into_iter().collect();
    let g = groups.clone();
    let n = name.clone();
    change(&node, move |s, me| s.security.put_user(&n, g, me)).await?;
    let s = node.state.read();
    Ok(Json(user_body(&s, &name, &groups)))
}

#[utoipa::path(delete, path = "/v1/admin/users/{name}", tag = "security",
    params(("name" = String, Path, description = "The user")),
    responses((status = 204, description = "The user and every token of theirs are removed"),
              (status = 404, description = "No such user", body = super::error::ErrorBody)))]
pub async fn delete_user(State(node): State<AppState>, uri: Uri) -> Result<StatusCode, ApiError> {
    let name = name_at(&uri, 3)?;
    change(&node, move |s, me| s.security.remove_user(&name, me)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/admin/users/{name}/tokens", tag = "security",
    params(("name" = String, Path, description = "The user")),
    request_body(content = TokenRequestBody, description = "Optional", content_type = "application/json"),
    responses((status = 201, description = "The new token; its value is shown only here", body = NewTokenBody),
              (status = 404, description = "No such user", body = super::error::ErrorBody)))]
pub async fn create_token(
    State(node): State<AppState>,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let name = name_at(&uri, 3)?;
    let req: TokenRequestBody = json_body(body, true).await?;
    let expires_at = match req.ttl_seconds {
        None => None,
        Some(t) if t == 0 || t > MAX_TTL_SECONDS => {
            return Err(ApiError::bad_request(format!(
                "ttl_seconds must be between 1 and {MAX_TTL_SECONDS}"
            )));
        }
        Some(t) => Some(node.clock.now_ms().saturating_add(t * 1000)),
    };
    let token = security::new_token();
    let id = security::new_token_id();
    let hash = security::hash_token(&token);
    let token_id = id.clone();
    change(&node, move |s, me| {
        s.security.add_token(&name, &token_id, hash, expires_at, me)
    })
    .await?;
    let answer = NewTokenBody {
        id,
        token,
        expires_at,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[utoipa::path(delete, path = "/v1/admin/users/{name}/tokens/{id}", tag = "security",
    params(("name" = String, Path, description = "The user"), ("id" = String, Path, description = "The token's id")),
    responses((status = 204, description = "The token is revoked"),
              (status = 404, description = "No such token of this user", body = super::error::ErrorBody)))]
pub async fn revoke_token(State(node): State<AppState>, uri: Uri) -> Result<StatusCode, ApiError> {
    let name = name_at(&uri, 3)?;
    let id = String::from_utf8(
        params::path_segments(uri.path())
            .into_iter()
            .nth(5)
            .unwrap_or_default(),
    )
    .map_err(|_| ApiError::bad_request("a token id is UTF-8 text"))?;
    change(&node, move |s, me| s.security.revoke_token(&name, &id, me)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/admin/grants", tag = "security",
    request_body(content = GrantRequestBody, content_type = "application/json"),
    responses((status = 204, description = "The permissions are granted or revoked"),
              (status = 400, description = "Bad action, subject, bucket or permission", body = super::error::ErrorBody)))]
pub async fn change_grants(
    State(node): State<AppState>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let req: GrantRequestBody = json_body(body, false).await?;
    let granted = match req.action.as_str() {
        "grant" => true,
        "revoke" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "action must be grant or revoke, got {other:?}"
            )));
        }
    };
    let subject: Subject = req.subject.parse()?;
    let permissions = req
        .permissions
        .iter()
        .map(|p| p.parse::<Permission>())
        .collect::<Result<Vec<_>, _>>()?;
    change(&node, move |s, me| {
        s.security
            .set_grant(&subject, &req.bucket, &permissions, granted, me)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/admin/grants", tag = "security",
    responses((status = 200, description = "Every grant, by subject and bucket", body = GrantsBody)))]
pub async fn list_grants(State(node): State<AppState>) -> Json<GrantsBody> {
    let mut by: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for g in node.state.read().security.live_grants() {
        by.entry((g.subject.to_string(), g.bucket))
            .or_default()
            .push(g.permission.as_str().to_string());
    }
    let grants = by
        .into_iter()
        .map(|((subject, bucket), permissions)| GrantBody {
            subject,
            bucket,
            permissions,
        })
        .collect();
    Json(GrantsBody { grants })
}
