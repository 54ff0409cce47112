//! Consistency parameters of one request: the client's `r w dw pr pw` resolved against the
//! bucket's defaults, the structured quorum failure, and the fail-fast check that refuses a
//! request the currently serving nodes cannot satisfy before anything is sent.

use super::error::KvError;
pub use super::tracker::QuorumError;
use super::tracker::{Counts, Decision, Need, QuorumTracker};
use crate::preflist::Serving;
use riftkv_core::bucket::{BucketProps, Quorum};
use serde::{Deserialize, Serialize};

/// The consistency parameters as the client gave them, parsed at the edge (`None` = the
/// bucket's default). Resolved against the bucket's `n` only here, where the props are known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyParams {
    pub r: Option<Quorum>,
    pub w: Option<Quorum>,
    pub dw: Option<Quorum>,
    pub pr: Option<Quorum>,
    pub pw: Option<Quorum>,
}

/// Concrete read requirements: `r` answers in total, `pr` of them from primaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadQuorum {
    pub n: u32,
    pub r: u32,
    pub pr: u32,
}

impl ReadQuorum {
    /// The requirements of a read, in the order a failure reports them.
    pub fn needs(&self) -> Vec<Need> {
        vec![
            Need::new("r", self.r, Counts::Answers),
            Need::new("pr", self.pr, Counts::Primaries),
        ]
    }
}

/// Concrete write requirements: `w` acks, `dw` durable, `pw` from primaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteQuorum {
    pub n: u32,
    pub w: u32,
    pub dw: u32,
    pub pw: u32,
}

impl WriteQuorum {
    /// The requirements of a write, in the order a failure reports them.
    pub fn needs(&self) -> Vec<Need> {
        vec![
            Need::new("w", self.w, Counts::Answers),
            Need::new("dw", self.dw, Counts::Durable),
            Need::new("pw", self.pw, Counts::Primaries),
        ]
    }
}

fn one(
    name: &'static str,
    given: Option<Quorum>,
    default: Quorum,
    n: u32,
    min: u32,
) -> Result<u32, KvError> {
    given
        .unwrap_or(default)
        .resolve_checked(name, n, min)
        .map_err(|e| KvError::BadRequest(e.to_string()))
}

impl ConsistencyParams {
    /// `r` (>= 1) and `pr` (>= 0), each at most the bucket's `n`.
    pub fn read(&self, props: &BucketProps) -> Result<ReadQuorum, KvError> {
        Ok(ReadQuorum {
            n: props.n,
            r: one("r", self.r, props.r, props.n, 1)?,
            pr: one("pr", self.pr, props.pr, props.n, 0)?,
        })
    }

    /// `w` (>= 1), `dw` and `pw` (>= 0), each at most the bucket's `n`.
    pub fn write(&self, props: &BucketProps) -> Result<WriteQuorum, KvError> {
        Ok(WriteQuorum {
            n: props.n,
            w: one("w", self.w, props.w, props.n, 1)?,
            dw: one("dw", self.dw, props.dw, props.n, 0)?,
            pw: one("pw", self.pw, props.pw, props.n, 0)?,
        })
    }
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

/// The tracker's verdict before any reply: unmet when even every serving node answering
/// could not satisfy the request.
fn fail_fast<T>(tracker: QuorumTracker<T>) -> Result<(), QuorumError> {
    match tracker.decision() {
        Decision::Unmet(q) => Err(q),
        Decision::Met | Decision::Pending => Ok(()),
    }
}

/// Refuses a read the serving set cannot satisfy even if every node answers. The serving set
/// holds every replica not known down, suspected ones included
/// ([`crate::preflist::serving_set`]), so nothing is refused here for suspicion alone.
pub fn check_read(serving: &Serving, q: &ReadQuorum) -> Result<(), QuorumError> {
    let needs = q.needs();
    fail_fast(QuorumTracker::<()>::new(serving.clone(), needs, |_| false))
}

/// Refuses a write the serving set cannot satisfy, so no replica receives a write that would
/// then be answered with a quorum failure.
pub fn check_write(serving: &Serving, q: &WriteQuorum) -> Result<(), QuorumError> {
    let needs = q.needs();
    fail_fast(QuorumTracker::<bool>::new(serving.clone(), needs, |_| true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflist::Role;
    use riftkv_core::types::NodeId;

    /// A value as a client spells it, parsed as the API does.
    fn quorum(text: &str) -> Quorum {
        text.parse().unwrap()
    }

    fn params(r: Option<&str>, w: Option<&str>) -> ConsistencyParams {
        ConsistencyParams {
            r: r.map(quorum),
            w: w.map(quorum),
            ..Default::default()
        }
    }

    fn serving(prim: &[&str], fallbacks: &[(&str, &str)]) -> Serving {
        prim.iter()
            .map(|p| (NodeId::from(*p), Role::Primary))
            .chain(fallbacks.iter().map(|(f, p)| {
                (
                    NodeId::from(*f),
                    Role::Fallback {
                        for_node: NodeId::from(*p),
                    },
                )
            }))
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
            w: Some(quorum("quorum")),
            dw: Some(quorum("2")),
            pw: Some(quorum("one")),
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
        for bad in ["4", "0"] {
            let e = params(Some(bad), None).read(&props).unwrap_err();
            assert!(matches!(e, KvError::BadRequest(_)), "r={bad:?} gave {e:?}");
        }
        // Garbage never reaches the coordinator: it fails to parse at the edge.
        for bad in ["two", "-1", ""] {
            assert!(bad.parse::<Quorum>().is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            params(None, Some("0")).write(&props),
            Err(KvError::BadRequest(_))
        ));
        let dw_zero = ConsistencyParams {
            dw: Some(quorum("0")),
            pw: Some(quorum("0")),
            pr: Some(quorum("0")),
            ..Default::default()
        };
        assert!(dw_zero.write(&props).is_ok());
        assert!(dw_zero.read(&props).is_ok());
        let pw_over = ConsistencyParams {
            pw: Some(quorum("4")),
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

    /// The fail-fast decision over a serving set built from the detector's view: merely
    /// suspected replicas are counted as able to answer (they are asked with the normal
    /// timeout); only replicas known down make a request refused before anything is sent.
    #[test]
    fn suspected_replicas_are_tried_and_only_known_down_ones_refuse_at_once() {
        use crate::preflist::serving_set;
        use crate::preflist::tests::health as view;
        let ids = |v: &[&str]| v.iter().map(|s| NodeId::from(*s)).collect::<Vec<_>>();
        let prim = ids(&["a", "b", "c"]);
        let read = ReadQuorum { n: 3, r: 2, pr: 0 };
        let write = WriteQuorum {
            n: 3,
            w: 2,
            dw: 0,
            pw: 2,
        };
        // Right after a stall of the whole machine, a's peers are suspected: nothing refused.
        let s = serving_set(&prim, || prim.clone(), view(&["b", "c"], &[]));
        assert!(check_read(&s, &read).is_ok());
        assert!(check_write(&s, &write).is_ok());
        assert!(
            check_read(
                &s,
                &ReadQuorum {
                    r: 3,
                    pr: 3,
                    ..read
                }
            )
            .is_ok()
        );
        // The same peers known down: refused at once, naming the requirement.
        let s = serving_set(&prim, || prim.clone(), view(&[], &["b", "c"]));
        let e = check_read(&s, &read).unwrap_err();
        assert_eq!((e.which, e.needed, e.got), ("r", 2, 1));
        let e = check_write(&s, &write).unwrap_err();
        assert_eq!((e.which, e.needed, e.got), ("w", 2, 1));
        // b down, c suspected, d up beyond the primaries: the sloppy w=3 counts d standing in
        // for b, and pw=2 counts the suspected primary c; pw=3 cannot be met.
        let s = serving_set(&prim, || ids(&["a", "b", "c", "d"]), view(&["c"], &["b"]));
        assert!(check_write(&s, &WriteQuorum { w: 3, ..write }).is_ok());
        let e = check_write(
            &s,
            &WriteQuorum {
                w: 3,
                pw: 3,
                ..write
            },
        )
        .unwrap_err();
        assert_eq!((e.which, e.needed, e.got), ("pw", 3, 2));
    }
}
