//! Bucket endpoints: key listing and bucket props (cluster metadata set through the ring
//! state, so gossip carries a change to every node).

use super::AppState;
use super::error::{ApiError, Code};
use super::objects::read_body;
use super::params;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::Uri;
use riftkv_core::bucket::{BucketProps, BucketPropsPatch, DataType, Quorum};
use riftkv_core::version::ConflictMode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Largest accepted props document.
const MAX_PROPS_BYTES: usize = 64 * 1024;

/// A quorum as JSON: an integer, or `one`, `quorum` (= n/2+1), `all`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum QuorumValue {
    Count(u32),
    /// `one`, `quorum` or `all`.
    Named(String),
}

/// How a bucket settles concurrent writes.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub enum ConflictValue {
    /// Keep concurrent versions as siblings; clients resolve them.
    Siblings,
    /// Last write wins by timestamp.
    Lww,
}

/// The convergent data type of a typed bucket.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub enum DataTypeValue {
    Counter,
    Set,
    Map,
}

/// Bucket props as `GET /v1/buckets/{bucket}/props` returns them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PropsBody {
    /// Replicas of every key (1..=5, and at most the cluster's replication).
    pub n: u32,
    #[schema(value_type = QuorumValue)]
    pub r: Quorum,
    #[schema(value_type = QuorumValue)]
    pub w: Quorum,
    #[schema(value_type = QuorumValue)]
    pub dw: Quorum,
    #[schema(value_type = QuorumValue)]
    pub pr: Quorum,
    #[schema(value_type = QuorumValue)]
    pub pw: Quorum,
    #[schema(value_type = ConflictValue)]
    pub conflict: ConflictMode,
    /// The data type every key holds (`/v1/types`); absent for plain values (`/v1/kv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DataTypeValue>)]
    pub datatype: Option<DataType>,
    /// Seconds after which a plain value written without its own TTL expires; absent (0) =
    /// never.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ttl: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl From<BucketProps> for PropsBody {
    fn from(p: BucketProps) -> PropsBody {
        PropsBody {
            n: p.n,
            r: p.r,
            w: p.w,
            dw: p.dw,
            pr: p.pr,
            pw: p.pw,
            conflict: p.conflict,
            datatype: p.datatype,
            ttl: p.ttl,
        }
    }
}

/// A props change: absent fields keep their value; unknown fields are refused.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PropsPatchBody {
    pub n: Option<u32>,
    #[schema(value_type = Option<QuorumValue>)]
    pub r: Option<Quorum>,
    #[schema(value_type = Option<QuorumValue>)]
    pub w: Option<Quorum>,
    #[schema(value_type = Option<QuorumValue>)]
    pub dw: Option<Quorum>,
    #[schema(value_type = Option<QuorumValue>)]
    pub pr: Option<Quorum>,
    #[schema(value_type = Option<QuorumValue>)]
    pub pw: Option<Quorum>,
    #[schema(value_type = Option<ConflictValue>)]
    pub conflict: Option<ConflictMode>,
    /// Settable only while the bucket holds no data.
    #[schema(value_type = Option<DataTypeValue>)]
    pub datatype: Option<DataType>,
    /// Seconds, 0..=315360000 (0 = never); applies to writes made after the change.
    pub ttl: Option<u64>,
}

impl From<PropsPatchBody> for BucketPropsPatch {
    fn from(p: PropsPatchBody) -> BucketPropsPatch {
        BucketPropsPatch {
            n: p.n,
            r: p.r,
            w: p.w,
            dw: p.dw,
            pr: p.pr,
            pw: p.pw,
            conflict: p.conflict,
            datatype: p.datatype,
            ttl: p.ttl,
        }
    }
}

/// Parses a props document; every failure is a `bad_request` naming the problem.
pub fn parse_patch(body: &[u8]) -> Result<BucketPropsPatch, ApiError> {
    serde_json::from_slice::<PropsPatchBody>(body)
        .map(Into::into)
        .map_err(|e| {
            ApiError::bad_request(format!(
                "bucket props must be a JSON object like {{\"n\": 3, \"w\": \"quorum\"}}: {e}"
            ))
        })
}

/// The props a patch leads to, or why it is refused. `ring_n` is the replication of this
/// node's ring (`RingState::n_val`): a bucket cannot ask for more replicas than ownership
/// handoff keeps. `holds_data` is asked only when `n` or `datatype` changes (it costs a
/// listing), and only once the props are otherwise valid.
///
/// Both changes would misread stored data (replicas placed for another `n`, plain values read
/// as data types or the reverse), so they need an empty bucket. The check is a listing, not a
/// lock: a write racing the change on another node can still land just before the new props
/// reach it. A typed read of such a plain value answers that it cannot be decoded, and the
/// plain value can still be deleted after changing the type back on the then empty bucket.
pub async fn plan_props<F, Fut>(
    current: &BucketProps,
    patch: &BucketPropsPatch,
    ring_n: u32,
    holds_data: F,
) -> Result<BucketProps, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<bool, ApiError>>,
{
    let next = patch.apply(current);
    next.validate_for_ring(ring_n)?;
    let refusal = if next.n != current.n {
        Some(format!(
            "cannot change n from {} to {} on a bucket that holds data",
            current.n, next.n
        ))
    } else if next.datatype != current.datatype {
        Some(format!(
            "cannot change datatype from {} to {} on a bucket that holds data",
            datatype_name(current.datatype),
            datatype_name(next.datatype)
        ))
    } else {
        None
    };
    match refusal {
        Some(msg) if holds_data().await? => Err(ApiError::new(Code::Conflict, msg)),
        _ => Ok(next),
    }
}

/// A bucket's datatype as its props name it (plain values when none).
pub fn datatype_name(t: Option<DataType>) -> &'static str {
    t.map_or("plain values", DataType::as_str)
}

#[utoipa::path(get, path = "/v1/buckets/{bucket}/props", tag = "buckets",
    params(("bucket" = String, Path, description = "1..=255 bytes, URL-encoded")),
    responses((status = 200, description = "The bucket's props (defaults when never set)", body = PropsBody),
              (status = 400, description = "Bad bucket name", body = super::error::ErrorBody)))]
pub async fn get_props(
    State(node): State<AppState>,
    uri: Uri,
) -> Result<Json<PropsBody>, ApiError> {
    let bucket = params::bucket_only(uri.path(), 2)?;
    params::no_query(uri.query())?;
    let props = node.state.read().bucket_props(&bucket);
    Ok(Json(props.into()))
}

#[utoipa::path(put, path = "/v1/buckets/{bucket}/props", tag = "buckets",
    params(("bucket" = String, Path, description = "1..=255 bytes, URL-encoded")),
    request_body(content = PropsPatchBody, description = "Fields to change", content_type = "application/json"),
    responses((status = 200, description = "The bucket's props after the change", body = PropsBody),
              (status = 400, description = "Not JSON, unknown field, a value n cannot meet, or n above the cluster's replication (`limit`)", body = super::error::ErrorBody),
              (status = 409, description = "n or datatype changed on a bucket that holds data", body = super::error::ErrorBody),
              (status = 503, description = "Could not check whether the bucket holds data", body = super::error::ErrorBody)))]
pub async fn put_props(
    State(node): State<AppState>,
    uri: Uri,
    body: Body,
) -> Result<Json<PropsBody>, ApiError> {
    let bucket = params::bucket_only(uri.path(), 2)?;
    params::no_query(uri.query())?;
    let bytes = read_body(body, None, MAX_PROPS_BYTES as u64).await?;
    let patch = parse_patch(&bytes)?;
    let (current, stored, ring_n) = {
        let s = node.state.read();
        let stored = s.buckets.get(&bucket).map(|e| e.props.clone());
        (s.bucket_props(&bucket), stored, s.n_val)
    };
    let next = plan_props(&current, &patch, ring_n, || {
        let node = node.clone();
        let bucket = bucket.clone();
        async move {
            let (keys, _) = super::objects::list(&node, &bucket, None, 1, None).await?;
            Ok(!keys.is_empty())
        }
    })
    .await?;
    // A stored n above the ring's is read back clamped; writing the plan replaces it.
    if next != current || stored.is_some_and(|p| p != next) {
        let me = node.id.clone();
        let b = bucket.clone();
        let stored = next.clone();
        // Answered only once durable: the client may rely on the props at once.
        node.update_state(move |s| {
            s.set_bucket_props(&b, stored, &me);
            (true, ())
        })
        .await?;
        tracing::info!(
            bucket = %String::from_utf8_lossy(&bucket),
            n = next.n,
            conflict = %next.conflict,
            "bucket props changed"
        );
    }
    Ok(Json(next.into()))
}

/// Answer of a key listing.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct KeysBody {
    /// Live keys in byte order. Keys that are not UTF-8 are given percent-encoded.
    pub keys: Vec<String>,
    /// The key to pass as `after` for the next page, or null at the end.
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/v1/kv/{bucket}", tag = "objects",
    params(("bucket" = String, Path, description = "1..=255 bytes, URL-encoded"),
           ("keys" = bool, Query, description = "Must be true"),
           ("limit" = Option<u32>, Query, description = "Page size, default 1000, max 10000"),
           ("after" = Option<String>, Query, description = "List keys strictly after this one"),
           ("timeout" = Option<u64>, Query, description = "Milliseconds")),
    responses((status = 200, description = "One page of live keys", body = KeysBody),
              (status = 400, description = "Bad parameter", body = super::error::ErrorBody),
              (status = 503, description = "Some partitions could not be listed", body = super::error::ErrorBody)))]
pub async fn list_keys(State(node): State<AppState>, uri: Uri) -> Result<Json<KeysBody>, ApiError> {
    let bucket = params::bucket_only(uri.path(), 2)?;
    let q = params::list_query(uri.query())?;
    let (keys, next) =
        super::objects::list(&node, &bucket, q.after.as_deref(), q.limit, q.timeout).await?;
    Ok(Json(KeysBody {
        keys: keys.iter().map(|k| params::key_text(k)).collect(),
        next: next.as_deref().map(params::key_text),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T: std::fmt::Debug>(r: Result<T, ApiError>) -> Code {
        r.unwrap_err().code
    }

    #[test]
    fn patch_parsing() {
        let p = parse_patch(br#"{"n": 2, "w": "one", "dw": 1, "conflict": "lww"}"#).unwrap();
        assert_eq!(p.n, Some(2));
        assert_eq!(p.w, Some(Quorum::One));
        assert_eq!(p.dw, Some(Quorum::Count(1)));
        assert_eq!(p.conflict, Some(ConflictMode::Lww));
        assert_eq!(p.r, None);
        for bad in [
            &b"n=3"[..],
            b"",
            b"[1]",
            br#"{"bogus": 1}"#,
            br#"{"n": "three"}"#,
            br#"{"w": "most"}"#,
            br#"{"conflict": "merge"}"#,
            br#"{"n": -1}"#,
            br#"{"datatype": "hll"}"#,
            br#"{"datatype": 1}"#,
        ] {
            assert_eq!(
                code(parse_patch(bad)),
                Code::BadRequest,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn n_change_on_a_bucket_with_data_is_a_conflict() {
        let cur = BucketProps::with_n(3);
        let change_n = parse_patch(br#"{"n": 2}"#).unwrap();
        let e = plan_props(&cur, &change_n, 3, || async { Ok(true) })
            .await
            .unwrap_err();
        assert_eq!(e.code, Code::Conflict);
        assert_eq!(e.status().as_u16(), 409);
        let ok = plan_props(&cur, &change_n, 3, || async { Ok(false) })
            .await
            .unwrap();
        assert_eq!(ok.n, 2);
        // Other fields may change freely; the listing is not even asked.
        let other = parse_patch(br#"{"conflict": "lww", "r": 1}"#).unwrap();
        let ok = plan_props(&cur, &other, 3, || async { panic!("listing not needed") })
            .await
            .unwrap();
        assert_eq!(ok.conflict, ConflictMode::Lww);
        assert_eq!(ok.r, Quorum::Count(1));
    }

    #[tokio::test]
    async fn datatype_is_settable_only_on_an_empty_bucket() {
        let cur = BucketProps::with_n(3);
        let set = parse_patch(br#"{"datatype": "counter"}"#).unwrap();
        assert_eq!(set.datatype, Some(DataType::Counter));
        let e = plan_props(&cur, &set, 3, || async { Ok(true) })
            .await
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 409);
        let msg = e.body()["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains("datatype from plain values to counter"),
            "{msg}"
        );
        let next = plan_props(&cur, &set, 3, || async { Ok(false) })
            .await
            .unwrap();
        assert_eq!(next.datatype, Some(DataType::Counter));
        // Unchanged datatype (or a patch without it) needs no listing.
        let same = plan_props(&next, &set, 3, || async { panic!("listing not needed") })
            .await
            .unwrap();
        assert_eq!(same.datatype, Some(DataType::Counter));
        let other = parse_patch(br#"{"w": 1}"#).unwrap();
        let kept = plan_props(&next, &other, 3, || async { panic!("listing not needed") })
            .await
            .unwrap();
        assert_eq!(kept.datatype, Some(DataType::Counter));
        let to_map = parse_patch(br#"{"datatype": "map"}"#).unwrap();
        let e = plan_props(&next, &to_map, 3, || async { Ok(true) })
            .await
            .unwrap_err();
        assert_eq!(e.code, Code::Conflict);
    }

    #[tokio::test]
    async fn props_that_n_cannot_meet_are_refused() {
        let cur = BucketProps::with_n(3);
        for bad in [
            &br#"{"w": 4}"#[..],
            br#"{"n": 0}"#,
            br#"{"n": 9}"#,
            br#"{"n": 1, "r": 2}"#,
        ] {
            let p = parse_patch(bad).unwrap();
            let e = plan_props(&cur, &p, 5, || async { Ok(false) })
                .await
                .unwrap_err();
            assert_eq!(e.code, Code::BadRequest, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[tokio::test]
    async fn n_above_the_ring_replication_is_refused_with_the_limit() {
        let cur = BucketProps::with_n(3);
        for (body, n) in [(&br#"{"n": 5}"#[..], 5), (br#"{"n": 4, "w": 1}"#, 4)] {
            let p = parse_patch(body).unwrap();
            // Refused before the listing: a 400 even on a bucket that holds data.
            let e = plan_props(&cur, &p, 3, || async { panic!("listing not needed") })
                .await
                .unwrap_err();
            assert_eq!(e.code, Code::BadRequest);
            assert_eq!(e.status().as_u16(), 400);
            let b = e.body();
            assert_eq!(b["limit"], 3);
            let msg = b["message"].as_str().unwrap();
            assert!(
                msg.contains(&format!("n={n} is above this cluster's replication of 3")),
                "{msg}"
            );
        }
        // Within the ring: accepted on an empty bucket, 409 on one with data, as before.
        let two = parse_patch(br#"{"n": 2}"#).unwrap();
        assert_eq!(
            plan_props(&cur, &two, 3, || async { Ok(false) })
                .await
                .unwrap()
                .n,
            2
        );
        let e = plan_props(&cur, &two, 3, || async { Ok(true) })
            .await
            .unwrap_err();
        assert_eq!(e.code, Code::Conflict);
        // Other errors keep their answer (no limit field).
        let zero = parse_patch(br#"{"n": 0}"#).unwrap();
        let e = plan_props(&cur, &zero, 3, || async { Ok(false) })
            .await
            .unwrap_err();
        assert_eq!(e.code, Code::BadRequest);
        assert!(e.body().get("limit").is_none());
    }

    #[test]
    fn props_body_json_shape() {
        let v = serde_json::to_value(PropsBody::from(BucketProps::with_n(3))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"n": 3, "r": "quorum", "w": "quorum", "dw": 0, "pr": 0, "pw": 0,
                "conflict": "siblings"})
        );
        let typed = BucketProps {
            datatype: Some(DataType::Set),
            ..BucketProps::with_n(3)
        };
        let v = serde_json::to_value(PropsBody::from(typed)).unwrap();
        assert_eq!(v["datatype"], "set");
    }
}
