//! Consistency parameters of one request: the client's `r w dw pr pw` resolved against the
//! bucket's defaults, the structured quorum failure, and the fail-fast check that refuses a
//! request the currently serving nodes cannot satisfy before anything is sent.

use super::error::KvError;
use riftkv_core::bucket::{BucketProps, Quorum};
use riftkv_core::types::NodeId;
use serde::{Deserialize, Serialize};

/// The consistency parameters as the client wrote them (`None` = bucket default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyParams {
    pub r: Option<String>,
    pub w: Option<String>,
    pub dw: Option<String>,
    pub pr: Option<String>,
    pub pw: Option<String>,
}

/// Concrete read requirements: `r` answers in total, `pr` of them from primaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadQuorum {
    pub n: u32,
    pub r: u32,
    pub pr: u32,
}

/// Concrete write requirements: `w` acks, `dw` durable, `pw` from primaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteQuorum {
    pub n: u32,
    pub w: u32,
    pub dw: u32,
    pub pw: u32,
}

fn one(
    name: &'static str,
    given: &Option<String>,
    default: Quorum,
    n: u32,
    min: u32,
) -> Result<u32, KvError> {
    let q = match given {
        None => default,
        Some(s) => s
            .trim()
            .parse::<Quorum>()
            .map_err(|e| KvError::BadRequest(format!("{name}: {e}")))?,
    };
    q.resolve_checked(name, n, min)
        .map_err(|e| KvError::BadRequest(e.to_string()))
}

impl ConsistencyParams {
    /// `r` (>= 1) and `pr` (>= 0), each at most the bucket's `n`.
    pub fn read(&self, props: &BucketProps) -> Result<ReadQuorum, KvError> {
        Ok(ReadQuorum {
            n: props.n,
            r: one("r", &self.r, props.r, props.n, 1)?,
            pr: one("pr", &self.pr, props.pr, props.n, 0)?,
        })
    }

    /// `w` (>= 1), `dw` and `pw` (>= 0), each at most the bucket's `n`.
    pub fn write(&self, props: &BucketProps) -> Result<WriteQuorum, KvError> {
        Ok(WriteQuorum {
            n: props.n,
            w: one("w", &self.w, props.w, props.n, 1)?,
            dw: one("dw", &self.dw, props.dw, props.n, 0)?,
            pw: one("pw", &self.pw, props.pw, props.n, 0)?,
        })
    }
}

/// A quorum requirement that cannot be met, with what it needed and what it could get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumError {
    pub which: &'static str,
    pub needed: u32,
    pub got: u32,
    pub errors: Vec<(NodeId, String)>,
}

impl From<QuorumError> for KvError {
    fn from(q: QuorumError) -> Self {
        KvError::Quorum {
            needed: q.needed,
            got: q.got,
            which: q.which,
            errors: q.errors,
        }
    }
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// How many of the serving nodes are primaries serving as themselves.
pub fn primaries_serving(serving: &[(NodeId, Option<NodeId>)]) -> usize {
    serving.iter().filter(|(_, h)| h.is_none()).count()
}

/// Refuses a read the serving set cannot satisfy even if every node answers.
pub fn check_read(serving: &[(NodeId, Option<NodeId>)], q: &ReadQuorum) -> Result<(), QuorumError> {
    let total = count_u32(serving.len());
    let prim = count_u32(primaries_serving(serving));
    if total < q.r {
        return Err(unavailable("r", q.r, total));
    }
    if prim < q.pr {
        return Err(unavailable("pr", q.pr, prim));
    }
    Ok(())
}

/// Refuses a write the serving set cannot satisfy, so no replica receives a write that would
/// then be answered with a quorum failure.
pub fn check_write(
    serving: &[(NodeId, Option<NodeId>)],
    q: &WriteQuorum,
) -> Result<(), QuorumError> {
    let total = count_u32(serving.len());
    let prim = count_u32(primaries_serving(serving));
    if total < q.w {
        return Err(unavailable("w", q.w, total));
    }
    if total < q.dw {
        return Err(unavailable("dw", q.dw, total));
    }
    if prim < q.pw {
        return Err(unavailable("pw", q.pw, prim));
    }
    Ok(())
}

fn unavailable(which: &'static str, needed: u32, got: u32) -> QuorumError {
    QuorumError {
        which,
        needed,
        got,
        errors: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(r: Option<&str>, w: Option<&str>) -> ConsistencyParams {
        ConsistencyParams {
            r: r.map(String::from),
            w: w.map(String::from),
            ..Default::default()
        }
    }

    fn serving(prim: &[&str], fallbacks: &[(&str, &str)]) -> Vec<(NodeId, Option<NodeId>)> {
        prim.iter()
            .map(|p| (NodeId::from(*p), None))
            .chain(
                fallbacks
                    .iter()
                    .map(|(f, p)| (NodeId::from(*f), Some(NodeId::from(*p)))),
            )
            .collect()
    }

    #[test]
    fn absent_parameters_take_bucket_defaults() {
        let props = BucketProps::with_n(3);
        let r = ConsistencyParams::default().read(&props).unwrap();
        assert_eq!(r, ReadQuorum { n: 3, r: 2, pr: 0 });
        let w = ConsistencyParams::default().write(&props).unwrap();
        assert_eq!(
            w,
            WriteQuorum {
                n: 3,
                w: 2,
                dw: 0,
                pw: 0
            }
        );
    }

    #[test]
    fn symbolic_and_numeric_values_resolve_against_n() {
        let props = BucketProps::with_n(5);
        let q = params(Some("all"), Some("one")).read(&props).unwrap();
        assert_eq!(q.r, 5);
        let w = ConsistencyParams {
            w: Some("quorum".into()),
            dw: Some("2".into()),
            pw: Some("one".into()),
            ..Default::default()
        }
        .write(&props)
        .unwrap();
        assert_eq!(
            w,
            WriteQuorum {
                n: 5,
                w: 3,
                dw: 2,
                pw: 1
            }
        );
    }

    #[test]
    fn out_of_range_and_garbage_are_bad_requests() {
        let props = BucketProps::with_n(3);
        for bad in ["4", "0", "two", "-1", ""] {
            let e = params(Some(bad), None).read(&props).unwrap_err();
            assert!(matches!(e, KvError::BadRequest(_)), "r={bad:?} gave {e:?}");
        }
        assert!(matches!(
            params(None, Some("0")).write(&props),
            Err(KvError::BadRequest(_))
        ));
        let dw_zero = ConsistencyParams {
            dw: Some("0".into()),
            pw: Some("0".into()),
            pr: Some("0".into()),
            ..Default::default()
        };
        assert!(dw_zero.write(&props).is_ok());
        assert!(dw_zero.read(&props).is_ok());
        let pw_over = ConsistencyParams {
            pw: Some("4".into()),
            ..Default::default()
        };
        assert!(matches!(pw_over.write(&props), Err(KvError::BadRequest(_))));
    }

    #[test]
    fn fail_fast_names_the_unmet_requirement() {
        // Two of three primaries down, two fallbacks stand in.
        let s = serving(&["a"], &[("d", "b"), ("e", "c")]);
        let w = WriteQuorum {
            n: 3,
            w: 2,
            dw: 0,
            pw: 2,
        };
        let e = check_write(&s, &w).unwrap_err();
        assert_eq!((e.which, e.needed, e.got), ("pw", 2, 1));
        assert!(check_write(&s, &WriteQuorum { pw: 1, ..w }).is_ok());

        // No fallback available: only one node serves.
        let s = serving(&["a"], &[]);
        let e = check_read(&s, &ReadQuorum { n: 3, r: 3, pr: 0 }).unwrap_err();
        assert_eq!((e.which, e.needed, e.got), ("r", 3, 1));
        let e = check_write(
            &s,
            &WriteQuorum {
                n: 3,
                w: 1,
                dw: 2,
                pw: 0,
            },
        )
        .unwrap_err();
        assert_eq!((e.which, e.needed, e.got), ("dw", 2, 1));
        let e = check_read(
            &serving(&[], &[("d", "a")]),
            &ReadQuorum { n: 3, r: 1, pr: 1 },
        )
        .unwrap_err();
        assert_eq!((e.which, e.needed, e.got), ("pr", 1, 0));
    }
}
