//! The OpenAPI 3 document of the REST API, generated from the handlers' annotations and the
//! JSON body types (so it cannot drift from the code).

use super::{admin, buckets, error, objects, render, types, users};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The bearer token scheme (nodes with `--auth on`); every route but the probes uses it.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // Answers every route can give whatever its handler does: the token check (all but
        // the probes) and the in-flight bound (all but the probes and /metrics).
        for (path, item) in openapi.paths.paths.iter_mut() {
            let probe = matches!(path.as_str(), "/health" | "/ready");
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.head,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let answers = &mut op.responses.responses;
                if !probe {
                    for (code, what) in [
                        ("400", "bad_request: a malformed path, parameter or body"),
                        (
                            "401",
                            "unauthorized: no valid bearer token (with --auth on)",
                        ),
                        ("403", "forbidden: the token lacks this route's permission"),
                    ] {
                        answers.entry(code.to_string()).or_insert_with(|| {
                            utoipa::openapi::ResponseBuilder::new()
                                .description(what)
                                .build()
                                .into()
                        });
                    }
                }
                if !probe && path != "/metrics" {
                    answers.entry("503".to_string()).or_insert_with(|| {
                        utoipa::openapi::ResponseBuilder::new()
                            .description(
                                "overloaded (with Retry-After), timeout or quorum_unavailable",
                            )
                            .build()
                            .into()
                    });
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    info(
        title = "RiftKV",
        description = "Dynamo-style, sloppy-quorum key-value store. Every error answers \
            {\"error\": code, \"message\": sentence, ...}. With --auth on, every route but \
            /health and /ready needs Authorization: Bearer TOKEN (401 without a valid token, \
            403 without the route's permission)."
    ),
    paths(
        objects::get_object,
        objects::put_object,
        objects::post_object,
        objects::delete_object,
        buckets::list_keys,
        types::get_type,
        types::update_type,
        buckets::get_props,
        buckets::put_props,
        admin::status,
        admin::ring,
        admin::preflist,
        admin::local,
        admin::leave,
        admin::remove,
        admin::replace,
        admin::plan,
        admin::commit_plan,
        admin::backup,
        users::list_users,
        users::put_user,
        users::delete_user,
        users::create_token,
        users::revoke_token,
        users::change_grants,
        users::list_grants,
        admin::health,
        admin::ready,
        admin::metrics,
        serve,
    ),
    components(schemas(
        error::ErrorBody,
        render::ReadJson,
        render::SiblingJson,
        render::LocalJson,
        buckets::PropsBody,
        buckets::PropsPatchBody,
        buckets::QuorumValue,
        buckets::ConflictValue,
        buckets::DataTypeValue,
        types::TypeBody,
        buckets::KeysBody,
        admin::StatusBody,
        admin::MemberBody,
        admin::WorkerBody,
        admin::RingBody,
        admin::PartitionBody,
        admin::PreflistBody,
        admin::AcceptedBody,
        admin::PlanBody,
        admin::ChangeBody,
        admin::PlanTransferBody,
        admin::PartitionCountsBody,
        admin::HealthBody,
        crate::backup::BackupRequest,
        crate::backup::BackupManifest,
        users::TokenBody,
        users::UserBody,
        users::UsersBody,
        users::UserPutBody,
        users::TokenRequestBody,
        users::NewTokenBody,
        users::GrantRequestBody,
        users::GrantBody,
        users::GrantsBody,
    )),
    tags(
        (name = "objects", description = "Values under bucket and key"),
        (name = "types", description = "Convergent counters, sets and maps in buckets with a datatype"),
        (name = "buckets", description = "Per-bucket replication and consistency defaults"),
        (name = "admin", description = "Cluster status and membership commands"),
        (name = "security", description = "Users, bearer tokens and grants (the admin permission)"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "This OpenAPI 3 document", content_type = "application/json")))]
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the router, with its methods.
    pub const ROUTES: &[(&str, &[&str])] = &[
        ("/v1/kv/{bucket}/{key}", &["get", "put", "post", "delete"]),
        ("/v1/kv/{bucket}", &["get"]),
        ("/v1/types/{bucket}/{key}", &["get", "post"]),
        ("/v1/buckets/{bucket}/props", &["get", "put"]),
        ("/v1/admin/status", &["get"]),
        ("/v1/admin/ring", &["get"]),
        ("/v1/admin/preflist/{bucket}/{key}", &["get"]),
        ("/v1/admin/local/{bucket}/{key}", &["get"]),
        ("/v1/admin/leave", &["post"]),
        ("/v1/admin/remove/{node_id}", &["post"]),
        ("/v1/admin/replace/{old}/{new}", &["post"]),
        ("/v1/admin/plan", &["get"]),
        ("/v1/admin/plan/commit", &["post"]),
        ("/v1/admin/backup", &["post"]),
        ("/v1/admin/users", &["get"]),
        ("/v1/admin/users/{name}", &["put", "delete"]),
        ("/v1/admin/users/{name}/tokens", &["post"]),
        ("/v1/admin/users/{name}/tokens/{id}", &["delete"]),
        ("/v1/admin/grants", &["get", "post"]),
        ("/health", &["get"]),
        ("/ready", &["get"]),
        ("/metrics", &["get"]),
        ("/v1/openapi.json", &["get"]),
    ];

    #[test]
    fn document_has_every_route_and_method() {
        let v = serde_json::to_value(document()).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3."));
        let paths = v["paths"].as_object().unwrap();
        assert_eq!(paths.len(), ROUTES.len());
        for (path, methods) in ROUTES {
            let item = paths.get(*path).unwrap_or_else(|| panic!("missing {path}"));
            for m in *methods {
                assert!(item.get(*m).is_some(), "missing {m} {path}");
            }
        }
    }

    #[test]
    fn every_route_documents_the_refusals_it_can_give() {
        let v = serde_json::to_value(document()).unwrap();
        for (path, methods) in ROUTES {
            for m in *methods {
                let answers = &v["paths"][*path][*m]["responses"];
                let probe = matches!(*path, "/health" | "/ready");
                for code in ["400", "401", "403"] {
                    assert_eq!(answers.get(code).is_some(), !probe, "{m} {path} {code}");
                }
                let admitted = !probe && *path != "/metrics";
                assert_eq!(
                    answers.get("503").is_some(),
                    admitted || *path == "/ready",
                    "{m} {path} 503"
                );
            }
        }
    }

    #[test]
    fn document_declares_the_bearer_scheme() {
        let v = serde_json::to_value(document()).unwrap();
        assert_eq!(
            v["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(v["security"][0]["bearer"], serde_json::json!([]));
        // The probes need nothing: an empty requirement overrides the global one.
        for probe in ["/health", "/ready"] {
            assert_eq!(
                v["paths"][probe]["get"]["security"],
                serde_json::json!([{}]),
                "{probe}"
            );
        }
    }

    #[test]
    fn document_has_the_body_schemas() {
        let v = serde_json::to_value(document()).unwrap();
        let schemas = v["components"]["schemas"].as_object().unwrap();
        for name in [
            "ErrorBody",
            "ReadJson",
            "SiblingJson",
            "PropsBody",
            "StatusBody",
            "RingBody",
            "KeysBody",
            "TypeBody",
        ] {
            assert!(schemas.contains_key(name), "{name}");
        }
        let sib = &schemas["SiblingJson"]["properties"];
        for f in [
            "value_base64",
            "content_type",
            "etag",
            "last_modified",
            "deleted",
        ] {
            assert!(sib.get(f).is_some(), "{f}");
        }
    }
}
