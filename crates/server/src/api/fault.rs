//! Test-only fault routes, compiled only with the `fault-injection` cargo feature (the
//! `corrupt` nemesis of riftkv-jepsen). A default or release build has none of them: their
//! paths answer 404 like any unknown endpoint.

use super::AppState;
use super::error::ApiError;
use super::params;
use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use serde::Serialize;

/// Answer of `POST /v1/admin/fault/corrupt`.
#[derive(Clone, Debug, Serialize)]
pub struct CorruptBody {
    pub node_id: String,
    /// Intact records of the bucket (or key) this node held.
    pub matched: u64,
    /// How many of them are now damaged.
    pub damaged: u64,
}

/// What a corrupt request asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct CorruptQuery {
    pub bucket: Vec<u8>,
    pub key: Option<Vec<u8>>,
    pub fraction: f64,
}

/// `bucket` (required), `fraction` in 0..=1 (default 1) and optionally one `key`.
pub fn corrupt_query(query: Option<&str>) -> Result<CorruptQuery, ApiError> {
    let (mut bucket, mut key, mut fraction) = (None, None, 1.0);
    for (name, value) in params::query_pairs(query)? {
        match name.as_str() {
            "bucket" => {
                params::check_bucket(&value)?;
                bucket = Some(value);
            }
            "key" => {
                params::check_key(&value)?;
                key = Some(value);
            }
            "fraction" => {
                fraction = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|f| (0.0..=1.0).contains(f))
                    .ok_or_else(|| ApiError::bad_request("fraction must be a number in 0..=1"))?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter '{}'",
                    params::shorten(other)
                )));
            }
        }
    }
    let bucket = bucket.ok_or_else(|| ApiError::bad_request("bucket is required"))?;
    Ok(CorruptQuery {
        bucket,
        key,
        fraction,
    })
}

/// `POST /v1/admin/fault/corrupt?bucket=B&fraction=F[&key=K]`: damages that share of this
/// node's stored records of the bucket (or key) so their checksum fails, as disk damage
/// would. `fraction=0` damages nothing, so it doubles as a probe for a fault-injection build.
pub async fn corrupt(
    State(node): State<AppState>,
    uri: Uri,
) -> Result<Json<CorruptBody>, ApiError> {
    let q = corrupt_query(uri.query())?;
    let n = node.clone();
    let d = tokio::task::spawn_blocking(move || {
        n.storage
            .damage_objects_for_test(&q.bucket, q.key.as_deref(), q.fraction)
    })
    .await
    .map_err(|e| ApiError::internal(format!("storage task failed: {e}")))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    if d.damaged > 0 {
        tracing::warn!(
            matched = d.matched,
            damaged = d.damaged,
            "fault injection: damaged stored records on request"
        );
    }
    Ok(Json(CorruptBody {
        node_id: node.id.0.clone(),
        matched: d.matched,
        damaged: d.damaged,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_needs_a_bucket_and_a_fraction_in_range() {
        let q = corrupt_query(Some("bucket=b&fraction=0.25")).unwrap();
        assert_eq!(q.bucket, b"b");
        assert_eq!(q.key, None);
        assert_eq!(q.fraction, 0.25);
        let q = corrupt_query(Some("bucket=b&key=k%2F1")).unwrap();
        assert_eq!(q.key.as_deref(), Some(&b"k/1"[..]));
        assert_eq!(q.fraction, 1.0);
        for bad in [
            None,
            Some("fraction=0.5"),
            Some("bucket=b&fraction=2"),
            Some("bucket=b&fraction=x"),
            Some("bucket=b&fraction=NaN"),
            Some("bucket=b&what=1"),
            Some("bucket="),
        ] {
            assert!(corrupt_query(bad).is_err(), "{bad:?}");
        }
    }
}
