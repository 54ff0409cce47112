//! The recorded history of a run and the checker: pure functions over plain data.
//!
//! What a write supersedes is derived from the reads clients made, never from the database's
//! own clocks (those are what is under test):
//! - a write with a context supersedes what the read that produced the context returned, and
//!   everything those values superseded, transitively;
//! - a read that returned tombstones may have seen any delete of the key that had started
//!   before the read ended (tombstones carry no value to tell them apart);
//! - a delete without a context supersedes an unknown part of what its own quorum read saw:
//!   any write of the key that started before the delete ended.
//!
//! These are over-approximations ("possibly seen"), so a write counted as lost really is.
//! The resurrection check uses the exact part ("surely seen": values a read returned) instead,
//! so a value counted as resurrected really was superseded.
//!
//! A destructive fault (wiped disk, damaged record, power cut) may really lose an acknowledged
//! write whose only copy was on that node. The runner records, at the fault, the values every
//! other node still held (objects and hints); a write missing from them is excused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// How a write ended, as far as the client can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still running (or never answered within the run's bounds): treated as indeterminate.
    Pending,
    Acked,
    /// Refused before anything was stored anywhere (bad request, fail-fast quorum check, the
    /// quorum read of a context-less delete): it must never become visible.
    Failed,
    /// Timeout or a quorum failure after the coordinator stored it: it may or may not be applied.
    Indeterminate,
}

/// Where a write's context came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteCtx {
    /// A put without a context: supersedes nothing.
    None,
    /// The context of recorded read number `n`.
    Read(usize),
    /// A delete without a context: the coordinator's quorum read decides what it supersedes.
    Blind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The schedule's write id (names the value).
    pub id: u32,
    pub key: u8,
    /// The value of a put; `None` for a delete.
    pub value: Option<String>,
    pub ctx: WriteCtx,
    /// Event sequence numbers (one counter for every event of the run).
    pub start: u64,
    pub end: Option<u64>,
    pub outcome: Outcome,
    /// The node the client sent it to, and the error text when it failed.
    pub via: u8,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    pub key: u8,
    /// Live values returned, sorted.
    pub values: Vec<String>,
    /// Whether the returned object held tombstones.
    pub tombstones: bool,
    pub start: u64,
    pub end: u64,
    pub via: u8,
}

/// A destructive fault and what survived it elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub at: u64,
    pub node: u8,
    pub what: String,
    /// For each key the fault may have touched: the live values held by other nodes.
    pub survivors: BTreeMap<u8, BTreeSet<String>>,
}

/// What the end of the run saw after healing and convergence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Final {
    /// (key, node, live values read with r = all, or the error of the last attempt).
    pub answers: Vec<(u8, u8, Result<Vec<String>, String>)>,
    /// Keys whose primaries' local copies still differed, with a description.
    pub unconverged: Vec<(u8, String)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub writes: Vec<Write>,
    pub reads: Vec<Read>,
    pub faults: Vec<Fault>,
    pub fin: Option<Final>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A read returned a value no write ever wrote.
    Phantom,
    /// A value of a write reported as failed before anything was sent became visible.
    FailedApplied,
    /// An acknowledged write is gone, and nothing that saw it replaced it.
    LostWrite,
    /// A value superseded by an acknowledged write came back.
    Resurrected,
    /// Nodes answered different values for one key after convergence.
    Divergent,
    /// Replicas did not converge within the bounded wait, or a final read failed.
    NotConverged,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: Kind,
    pub key: u8,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} on k{}: {}", self.kind, self.key, self.detail)
    }
}

/// Checks one read against the writes recorded so far (run after every read).
pub fn check_read(h: &History, r: &Read) -> Vec<Violation> {
    let mut out = Vec::new();
    for v in &r.values {
        match h
            .writes
            .iter()
            .find(|w| w.key == r.key && w.value.as_ref() == Some(v))
        {
            None => out.push(Violation {
                kind: Kind::Phantom,
                key: r.key,
                detail: format!(
                    "read via n{} returned {v}, which no write of k{} wrote",
                    r.via, r.key
                ),
            }),
            Some(w) if w.outcome == Outcome::Failed => out.push(Violation {
                kind: Kind::FailedApplied,
                key: r.key,
                detail: format!(
                    "read via n{} returned {v}, whose write failed before sending: {}",
                    r.via,
                    w.error.as_deref().unwrap_or("?")
                ),
            }),
            Some(_) => {}
        }
    }
    out
}

/// Direct "possibly seen" edges of write `i` (indexes into `h.writes`).
fn possibly_seen(h: &History, i: usize) -> BTreeSet<usize> {
    let w = &h.writes[i];
    let same_key = |j: usize| j != i && h.writes[j].key == w.key;
    let applied = |j: usize| h.writes[j].outcome != Outcome::Failed;
    match w.ctx {
        WriteCtx::None => BTreeSet::new(),
        WriteCtx::Blind => {
            let end = w.end.unwrap_or(u64::MAX);
            (0..h.writes.len())
                .filter(|&j| same_key(j) && applied(j) && h.writes[j].start < end)
                .collect()
        }
        WriteCtx::Read(r) => {
            let Some(read) = h.reads.get(r) else {
                return BTreeSet::new();
            };
            (0..h.writes.len())
                .filter(|&j| same_key(j) && applied(j))
                .filter(|&j| {
                    let o = &h.writes[j];
                    match &o.value {
                        Some(v) => read.values.contains(v),
                        None => read.tombstones && o.start < read.end,
                    }
                })
                .collect()
        }
    }
}

/// Direct "surely seen" edges of write `i`: the values its context's read returned.
fn surely_seen(h: &History, i: usize) -> BTreeSet<usize> {
    let w = &h.writes[i];
    let WriteCtx::Read(r) = w.ctx else {
        return BTreeSet::new();
    };
    let Some(read) = h.reads.get(r) else {
        return BTreeSet::new();
    };
    (0..h.writes.len())
        .filter(|&j| {
            j != i
                && h.writes[j].key == w.key
                && h.writes[j]
                    .value
                    .as_ref()
                    .is_some_and(|v| read.values.contains(v))
        })
        .collect()
}

/// Transitive closure of `edges` from every write.
fn closure(n: usize, edges: impl Fn(usize) -> BTreeSet<usize>) -> Vec<BTreeSet<usize>> {
    let direct: Vec<BTreeSet<usize>> = (0..n).map(edges).collect();
    (0..n)
        .map(|i| {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<usize> = direct[i].iter().copied().collect();
            while let Some(j) = stack.pop() {
                if seen.insert(j) {
                    stack.extend(direct[j].iter().copied());
                }
            }
            seen
        })
        .collect()
}

/// How the final check judged the acknowledged puts of a history (how much it really tested).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    pub present: usize,
    /// Absent, and some write that possibly saw it was applied.
    pub superseded: usize,
    /// Absent, and a destructive fault may have destroyed its only copy.
    pub excused: usize,
    pub lost: usize,
    /// Values an acknowledged write surely superseded (they must not be present).
    pub resurrection_armed: usize,
}

impl Coverage {
    pub fn add(&mut self, o: &Coverage) {
        self.present += o.present;
        self.superseded += o.superseded;
        self.excused += o.excused;
        self.lost += o.lost;
        self.resurrection_armed += o.resurrection_armed;
    }
}

/// The whole check: every read, then the final state.
pub fn check(h: &History) -> Vec<Violation> {
    check_with_coverage(h).0
}

/// [`check`] and how it judged the acknowledged puts.
pub fn check_with_coverage(h: &History) -> (Vec<Violation>, Coverage) {
    let mut cov = Coverage::default();
    let mut out: Vec<Violation> = h.reads.iter().flat_map(|r| check_read(h, r)).collect();
    let Some(fin) = &h.fin else {
        return (out, cov);
    };
    for (key, why) in &fin.unconverged {
        out.push(Violation {
            kind: Kind::NotConverged,
            key: *key,
            detail: why.clone(),
        });
    }
    // Final values per key: every node must answer the same; the union is checked below.
    let mut finals: BTreeMap<u8, BTreeSet<String>> = BTreeMap::new();
    let mut answers: BTreeMap<u8, Vec<(u8, Vec<String>)>> = BTreeMap::new();
    for (key, node, a) in &fin.answers {
        match a {
            Ok(v) => {
                finals.entry(*key).or_default().extend(v.iter().cloned());
                answers.entry(*key).or_default().push((*node, v.clone()));
                for value in v {
                    out.extend(check_read(
                        h,
                        &Read {
                            key: *key,
                            values: vec![value.clone()],
                            tombstones: false,
                            start: u64::MAX,
                            end: u64::MAX,
                            via: *node,
                        },
                    ));
                }
            }
            Err(e) => out.push(Violation {
                kind: Kind::NotConverged,
                key: *key,
                detail: format!("final read via n{node} failed: {e}"),
            }),
        }
    }
    for (key, a) in &answers {
        if a.windows(2).any(|p| p[0].1 != p[1].1) {
            let desc: Vec<String> = a.iter().map(|(n, v)| format!("n{n}={v:?}")).collect();
            out.push(Violation {
                kind: Kind::Divergent,
                key: *key,
                detail: format!("nodes answer differently: {}", desc.join(" ")),
            });
        }
    }
    let n = h.writes.len();
    let possibly = closure(n, |i| possibly_seen(h, i));
    let surely = closure(n, |i| surely_seen(h, i));
    let empty = BTreeSet::new();
    for (i, w) in h.writes.iter().enumerate() {
        let Some(v) = &w.value else { continue };
        let present = finals.get(&w.key).unwrap_or(&empty).contains(v);
        if present && w.outcome == Outcome::Acked {
            cov.present += 1;
        }
        if !present && w.outcome == Outcome::Acked {
            let superseded =
                h.writes.iter().enumerate().any(|(j, x)| {
                    j != i && x.outcome != Outcome::Failed && possibly[j].contains(&i)
                });
            let excused = h
                .faults
                .iter()
                .any(|f| f.at > w.start && f.survivors.get(&w.key).is_some_and(|s| !s.contains(v)));
            if superseded {
                cov.superseded += 1;
            } else if excused {
                cov.excused += 1;
            } else {
                cov.lost += 1;
                out.push(Violation {
                    kind: Kind::LostWrite,
                    key: w.key,
                    detail: format!(
                        "acknowledged write {v} (via n{}) is gone and no write that saw it \
                         replaced it; final values {:?}",
                        w.via,
                        finals.get(&w.key).unwrap_or(&empty)
                    ),
                });
            }
        }
        // Armed when an acknowledged write surely saw this value and no destructive fault may
        // have destroyed that write since.
        let by = h.writes.iter().enumerate().find(|(j, x)| {
            *j != i
                && x.outcome == Outcome::Acked
                && surely[*j].contains(&i)
                && !h
                    .faults
                    .iter()
                    .any(|f| f.at > x.start && f.survivors.contains_key(&x.key))
        });
        if let Some((_, x)) = by {
            cov.resurrection_armed += 1;
            if present {
                out.push(Violation {
                    kind: Kind::Resurrected,
                    key: w.key,
                    detail: format!(
                        "{v} is back although acknowledged write w{} (via n{}) superseded it",
                        x.id, x.via
                    ),
                });
            }
        }
    }
    (out, cov)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small history builder: events get increasing sequence numbers.
    #[derive(Default)]
    struct B {
        h: History,
        seq: u64,
    }

    impl B {
        fn tick(&mut self) -> u64 {
            self.seq += 1;
            self.seq
        }
        fn put(&mut self, key: u8, v: &str, ctx: WriteCtx, outcome: Outcome) -> usize {
            let start = self.tick();
            let end = self.tick();
            self.h.writes.push(Write {
                id: self.h.writes.len() as u32,
                key,
                value: Some(v.to_string()),
                ctx,
                start,
                end: Some(end),
                outcome,
                via: 1,
                error: None,
            });
            self.h.writes.len() - 1
        }
        fn delete(&mut self, key: u8, ctx: WriteCtx) -> usize {
            let start = self.tick();
            let end = self.tick();
            self.h.writes.push(Write {
                id: self.h.writes.len() as u32,
                key,
                value: None,
                ctx,
                start,
                end: Some(end),
                outcome: Outcome::Acked,
                via: 1,
                error: None,
            });
            self.h.writes.len() - 1
        }
        fn read(&mut self, key: u8, values: &[&str], tombstones: bool) -> WriteCtx {
            let start = self.tick();
            let end = self.tick();
            self.h.reads.push(Read {
                key,
                values: values.iter().map(|s| s.to_string()).collect(),
                tombstones,
                start,
                end,
                via: 1,
            });
            WriteCtx::Read(self.h.reads.len() - 1)
        }
        fn fault(&mut self, key: u8, survivors: &[&str]) {
            let at = self.tick();
            self.h.faults.push(Fault {
                at,
                node: 1,
                what: "wipe".into(),
                survivors: [(key, survivors.iter().map(|s| s.to_string()).collect())].into(),
            });
        }
        fn finish(mut self, key: u8, values: &[&str]) -> History {
            let v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
            self.h.fin = Some(Final {
                answers: vec![(key, 1, Ok(v.clone())), (key, 2, Ok(v))],
                unconverged: vec![],
            });
            self.h
        }
    }

    fn kinds(h: &History) -> Vec<Kind> {
        check(h).into_iter().map(|v| v.kind).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        let r = b.read(0, &["a"], false);
        b.put(0, "b", r, Outcome::Acked);
        b.put(0, "c", WriteCtx::None, Outcome::Acked);
        assert_eq!(kinds(&b.finish(0, &["b", "c"])), vec![]);
    }

    #[test]
    fn a_missing_acked_write_is_lost() {
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        b.put(0, "b", WriteCtx::None, Outcome::Acked);
        assert_eq!(kinds(&b.finish(0, &["b"])), vec![Kind::LostWrite]);
    }

    #[test]
    fn missing_indeterminate_or_failed_writes_are_fine() {
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Indeterminate);
        b.put(0, "b", WriteCtx::None, Outcome::Failed);
        assert_eq!(kinds(&b.finish(0, &[])), vec![]);
    }

    #[test]
    fn supersession_is_transitive_and_indeterminate_writes_count() {
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        let r1 = b.read(0, &["a"], false);
        b.put(0, "b", r1, Outcome::Acked);
        let r2 = b.read(0, &["b"], false);
        b.put(0, "c", r2, Outcome::Indeterminate);
        assert_eq!(kinds(&b.finish(0, &["c"])), vec![]);
    }

    #[test]
    fn a_write_that_never_answered_counts_as_indeterminate() {
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        let r = b.read(0, &["a"], false);
        b.put(0, "b", r, Outcome::Pending);
        assert_eq!(kinds(&b.finish(0, &["b"])), vec![]);
    }

    #[test]
    fn a_failed_write_supersedes_nothing() {
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        let r = b.read(0, &["a"], false);
        b.put(0, "b", r, Outcome::Failed);
        assert_eq!(kinds(&b.finish(0, &[])), vec![Kind::LostWrite]);
    }

    #[test]
    fn a_context_from_another_key_or_an_unrelated_read_does_not_supersede() {
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        let r = b.read(0, &[], false);
        b.put(0, "b", r, Outcome::Acked);
        assert_eq!(kinds(&b.finish(0, &["b"])), vec![Kind::LostWrite]);
    }

    #[test]
    fn deletes_supersede_what_they_saw() {
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        let r = b.read(0, &["a"], false);
        b.delete(0, r);
        assert_eq!(kinds(&b.finish(0, &[])), vec![]);
        // A blind delete may have seen anything started before it ended.
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        b.delete(0, WriteCtx::Blind);
        assert_eq!(kinds(&b.finish(0, &[])), vec![]);
        // ...but not what started after it.
        let mut b = B::default();
        b.delete(0, WriteCtx::Blind);
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        assert_eq!(kinds(&b.finish(0, &[])), vec![Kind::LostWrite]);
    }

    #[test]
    fn a_context_with_tombstones_covers_what_the_deletes_saw() {
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        b.delete(0, WriteCtx::Blind);
        let r = b.read(0, &[], true);
        b.put(0, "b", WriteCtx::None, Outcome::Acked);
        b.delete(0, r);
        let h = b.h.clone();
        // "a" went with the deletes; "b" started after the read, so no delete saw it.
        assert_eq!(kinds(&b.finish(0, &["b"])), vec![]);
        let b = B { h, seq: 100 };
        assert_eq!(kinds(&b.finish(0, &[])), vec![Kind::LostWrite]);
    }

    #[test]
    fn faults_excuse_writes_that_had_no_other_copy() {
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        b.put(0, "b", WriteCtx::None, Outcome::Acked);
        b.fault(0, &["b"]);
        // "a" lived only on the wiped node: excused. "b" survived elsewhere: lost for real.
        assert_eq!(kinds(&b.finish(0, &[])), vec![Kind::LostWrite]);
        // A write after the fault is not excused by it.
        let mut b = B::default();
        b.fault(0, &[]);
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        assert_eq!(kinds(&b.finish(0, &[])), vec![Kind::LostWrite]);
        // Another key's fault excuses nothing.
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        b.fault(1, &[]);
        assert_eq!(kinds(&b.finish(0, &[])), vec![Kind::LostWrite]);
    }

    #[test]
    fn phantom_and_failed_values_are_caught_in_reads() {
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Failed);
        b.read(0, &["a", "zz"], false);
        let mut k = kinds(&b.finish(0, &[]));
        k.sort();
        assert_eq!(k, vec![Kind::Phantom, Kind::FailedApplied]);
        // A value of another key is a phantom too.
        let mut b = B::default();
        b.put(1, "a", WriteCtx::None, Outcome::Acked);
        b.read(0, &["a"], false);
        assert_eq!(
            check_read(&b.h, &b.h.reads[0].clone())[0].kind,
            Kind::Phantom
        );
    }

    #[test]
    fn resurrection_needs_an_acked_write_that_surely_saw_the_value() {
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        let r = b.read(0, &["a"], false);
        b.delete(0, r);
        assert_eq!(kinds(&b.finish(0, &["a"])), vec![Kind::Resurrected]);
        // Possibly seen (a blind delete) is not enough.
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        b.delete(0, WriteCtx::Blind);
        assert_eq!(kinds(&b.finish(0, &["a"])), vec![]);
        // A destructive fault after the superseding write may have destroyed it.
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Acked);
        let r = b.read(0, &["a"], false);
        b.delete(0, r);
        b.fault(0, &["a"]);
        assert_eq!(kinds(&b.finish(0, &["a"])), vec![]);
    }

    #[test]
    fn nodes_must_agree_and_converge() {
        let mut b = B::default();
        b.put(0, "a", WriteCtx::None, Outcome::Indeterminate);
        let mut h = b.finish(0, &["a"]);
        let fin = h.fin.as_mut().unwrap();
        fin.answers.push((0, 3, Ok(vec![])));
        fin.answers.push((0, 4, Err("timeout".into())));
        fin.unconverged.push((0, "n1 != n2".into()));
        let mut k = kinds(&h);
        k.sort();
        assert_eq!(
            k,
            vec![Kind::Divergent, Kind::NotConverged, Kind::NotConverged]
        );
    }
}
