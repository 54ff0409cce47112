//! Bucket properties: per-bucket replication and consistency defaults, carried as cluster
//! metadata in the ring state so every node answers the same way.

pub use crate::types::quorum::{InvalidQuorum, Quorum};
use crate::version::ConflictMode;
pub use riftkv_crdt::DataType;
use serde::{Deserialize, Serialize};

/// Per-bucket settings (CONTRACT §2 "Buckets", §6).
///
/// In the ring state they travel and rest as a JSON document ([`stored`]), so a prop added
/// later only needs `#[serde(default)]`: unknown fields are ignored rather than refused, and
/// neither the gossip nor the on-disk layout changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketProps {
    pub n: u32,
    pub r: Quorum,
    pub w: Quorum,
    pub dw: Quorum,
    pub pr: Quorum,
    pub pw: Quorum,
    pub conflict: ConflictMode,
    /// The convergent data type every key of the bucket holds; `None` for plain values.
    #[serde(default)]
    pub datatype: Option<DataType>,
    /// Seconds after its write time at which a plain value expires (0 = never), unless the
    /// write gives its own TTL. Data type values do not expire.
    #[serde(default)]
    pub ttl: u64,
}

/// Serde adapter for [`BucketProps`] inside the ring state: the props as one JSON string, so
/// the surrounding postcard encoding (which is not self-describing) never depends on the
/// props' fields.
pub use crate::json_field as stored;

/// Longest TTL, per write or as a bucket's default: ten years, in seconds.
pub const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// Largest replication factor a bucket may ask for.
pub const MAX_N: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropsError {
    #[error("n must be between 1 and {MAX_N}, got {0}")]
    BadN(u32),
    /// More replicas than the ring keeps per partition: ownership handoff moves only `limit`
    /// copies, so every further replica would be drained and refilled again and again.
    #[error("n={n} is above this cluster's replication of {limit}")]
    OverReplication { n: u32, limit: u32 },
    #[error("{0}")]
    Quorum(#[from] InvalidQuorum),
    /// Last write wins would drop one of two concurrent data type states instead of merging
    /// them, losing updates.
    #[error("a bucket of datatype {0} merges concurrent updates itself: conflict must be siblings")]
    LwwDataType(&'static str),
    #[error("ttl must be at most {MAX_TTL_SECS} seconds (0 = never), got {0}")]
    BadTtl(u64),
}

impl BucketProps {
    pub fn with_n(n: u32) -> Self {
        BucketProps {
            n,
            r: Quorum::Quorum,
            w: Quorum::Quorum,
            dw: Quorum::Count(0),
            pr: Quorum::Count(0),
            pw: Quorum::Count(0),
            conflict: ConflictMode::Siblings,
            datatype: None,
            ttl: 0,
        }
    }

    /// The TTL a write of a plain value gets when it gives none: the bucket's `ttl`, if set.
    pub fn default_ttl_ms(&self) -> Option<u64> {
        (self.ttl > 0).then(|| self.ttl.saturating_mul(1000))
    }

    /// [`BucketProps::validate`], and `n` no larger than `ring_n`, the replication of the
    /// cluster's ring (`RingState::n_val`). `MAX_N` stays the bound when the ring replicates
    /// more.
    pub fn validate_for_ring(&self, ring_n: u32) -> Result<(), PropsError> {
        if self.n > ring_n && ring_n < MAX_N {
            return Err(PropsError::OverReplication {
                n: self.n,
                limit: ring_n,
            });
        }
        self.validate()
    }

    /// Checks that every default can be met by `n` replicas.
    pub fn validate(&self) -> Result<(), PropsError> {
        if self.n == 0 || self.n > MAX_N {
            return Err(PropsError::BadN(self.n));
        }
        self.r.resolve_checked("r", self.n, 1)?;
        self.w.resolve_checked("w", self.n, 1)?;
        self.dw.resolve_checked("dw", self.n, 0)?;
        self.pr.resolve_checked("pr", self.n, 0)?;
        self.pw.resolve_checked("pw", self.n, 0)?;
        if let Some(t) = self.datatype
            && self.conflict == ConflictMode::Lww
        {
            return Err(PropsError::LwwDataType(t.as_str()));
        }
        if self.ttl > MAX_TTL_SECS {
            return Err(PropsError::BadTtl(self.ttl));
        }
        Ok(())
    }
}

/// A partial update of bucket props, as a client sends it: absent fields keep their value.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BucketPropsPatch {
    pub n: Option<u32>,
    pub r: Option<Quorum>,
    pub w: Option<Quorum>,
    pub dw: Option<Quorum>,
    pub pr: Option<Quorum>,
    pub pw: Option<Quorum>,
    pub conflict: Option<ConflictMode>,
    pub datatype: Option<DataType>,
    pub ttl: Option<u64>,
}

impl BucketPropsPatch {
    pub fn apply(&self, base: &BucketProps) -> BucketProps {
        BucketProps {
            n: self.n.unwrap_or(base.n),
            r: self.r.unwrap_or(base.r),
            w: self.w.unwrap_or(base.w),
            dw: self.dw.unwrap_or(base.dw),
            pr: self.pr.unwrap_or(base.pr),
            pw: self.pw.unwrap_or(base.pw),
            conflict: self.conflict.unwrap_or(base.conflict),
            datatype: self.datatype.or(base.datatype),
            ttl: self.ttl.unwrap_or(base.ttl),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_parse_and_resolve() {
        assert_eq!("one".parse::<Quorum>(), Ok(Quorum::One));
        assert_eq!("quorum".parse::<Quorum>().map(|q| q.resolve(3)), Ok(2));
        assert_eq!("quorum".parse::<Quorum>().map(|q| q.resolve(5)), Ok(3));
        assert_eq!("all".parse::<Quorum>().map(|q| q.resolve(3)), Ok(3));
        assert_eq!("2".parse::<Quorum>(), Ok(Quorum::Count(2)));
        assert!("two".parse::<Quorum>().is_err());
        assert!("-1".parse::<Quorum>().is_err());
        assert!("".parse::<Quorum>().is_err());
    }

    #[test]
    fn quorum_bounds() {
        assert!(Quorum::Count(4).resolve_checked("w", 3, 1).is_err());
        assert!(Quorum::Count(0).resolve_checked("r", 3, 1).is_err());
        assert_eq!(Quorum::Count(0).resolve_checked("dw", 3, 0), Ok(0));
    }

    #[test]
    fn props_json_round_trip_and_validation() {
        let p: BucketProps = serde_json::from_str(
            r#"{"n":3,"r":"quorum","w":2,"dw":0,"pr":0,"pw":0,"conflict":"lww"}"#,
        )
        .unwrap();
        assert_eq!(p.w, Quorum::Count(2));
        assert_eq!(p.conflict, ConflictMode::Lww);
        assert!(p.validate().is_ok());
        let back: BucketProps = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let bad = BucketProps {
            r: Quorum::Count(4),
            ..p.clone()
        };
        assert!(bad.validate().is_err());
        assert!(serde_json::from_str::<BucketPropsPatch>(r#"{"bogus":1}"#).is_err());
        let lww_counter = BucketProps {
            datatype: Some(DataType::Counter),
            ..p.clone()
        };
        assert_eq!(
            lww_counter.validate(),
            Err(PropsError::LwwDataType("counter"))
        );
        let ttl = |ttl| BucketProps { ttl, ..p.clone() };
        assert_eq!(ttl(0).default_ttl_ms(), None);
        assert_eq!(ttl(60).default_ttl_ms(), Some(60_000));
        assert!(ttl(MAX_TTL_SECS).validate().is_ok());
        assert_eq!(
            ttl(MAX_TTL_SECS + 1).validate(),
            Err(PropsError::BadTtl(MAX_TTL_SECS + 1))
        );
        // Stored props of an older build (no ttl field) read as "never".
        let mut json = serde_json::to_value(&p).unwrap();
        json.as_object_mut().unwrap().remove("ttl");
        let old: BucketProps = serde_json::from_value(json).unwrap();
        assert_eq!(old.ttl, 0);
    }

    #[test]
    fn n_is_bounded_by_the_ring_replication() {
        let p = |n| BucketProps::with_n(n);
        assert_eq!(
            p(5).validate_for_ring(3),
            Err(PropsError::OverReplication { n: 5, limit: 3 })
        );
        assert_eq!(
            p(9).validate_for_ring(3),
            Err(PropsError::OverReplication { n: 9, limit: 3 })
        );
        assert_eq!(
            PropsError::OverReplication { n: 5, limit: 3 }.to_string(),
            "n=5 is above this cluster's replication of 3"
        );
        assert_eq!(p(3).validate_for_ring(3), Ok(()));
        assert_eq!(p(2).validate_for_ring(3), Ok(()));
        assert_eq!(p(0).validate_for_ring(3), Err(PropsError::BadN(0)));
        // A ring that replicates more than MAX_N: MAX_N is the bound.
        assert_eq!(p(5).validate_for_ring(7), Ok(()));
        assert_eq!(p(6).validate_for_ring(7), Err(PropsError::BadN(6)));
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Framed {
        #[serde(with = "stored")]
        props: BucketProps,
        after: u64,
    }

    #[test]
    fn stored_props_are_json_inside_postcard_and_tolerate_new_fields() {
        let p = BucketProps {
            datatype: Some(DataType::Set),
            ..BucketProps::with_n(3)
        };
        let framed = Framed { props: p, after: 7 };
        let bytes = postcard::to_stdvec(&framed).unwrap();
        assert_eq!(postcard::from_bytes::<Framed>(&bytes).unwrap(), framed);
        // Props written before `datatype` existed read as plain values; a field this binary
        // does not know (written by a later one) is ignored, not a decode error.
        let json = r#"{"n":2,"r":"one","w":"quorum","dw":0,"pr":0,"pw":0,"conflict":"lww"}"#;
        let old: BucketProps = serde_json::from_str(json).unwrap();
        assert_eq!(old.datatype, None);
        assert_eq!(old.n, 2);
        let later = json.replace("\"lww\"", "\"lww\",\"ttl\":60,\"datatype\":\"map\"");
        let later: BucketProps = serde_json::from_str(&later).unwrap();
        assert_eq!(later.datatype, Some(DataType::Map));
        assert!(serde_json::from_str::<BucketProps>(r#"{"n":2}"#).is_err());
        let bad = Framed {
            props: BucketProps::with_n(1),
            after: 1,
        };
        let mut bytes = postcard::to_stdvec(&bad).unwrap();
        bytes[1] = b'[';
        assert!(postcard::from_bytes::<Framed>(&bytes).is_err());
    }

    #[test]
    fn props_round_trip_through_postcard() {
        let p = BucketProps {
            w: Quorum::Count(2),
            r: Quorum::All,
            ..BucketProps::with_n(3)
        };
        let bytes = postcard::to_stdvec(&p).unwrap();
        assert_eq!(postcard::from_bytes::<BucketProps>(&bytes).unwrap(), p);
    }
}
