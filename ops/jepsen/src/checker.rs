//! Checkers: pure functions from a history (and the final reads) to a verdict.
//!
//! - set: Jepsen's set semantics. Every acknowledged add must be in the final read of every
//!   node (else *lost*); nothing may appear that was never attempted (*unexpected*); adds whose
//!   outcome was unknown or failed but are present are *recovered* (fine).
//! - register: every acknowledged write is in the final siblings or causally superseded by a
//!   write that is (a write supersedes what the read whose context it carried returned); no
//!   value that was never written shows up; final siblings are pairwise concurrent.
//! - availability: share of completed client operations that succeeded while a fault was on.

use crate::history::{Op, OpType, pair};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A set element: (key, element).
pub type Elem = (String, u64);

/// The final state seen by each node: node name → key → elements (sets) or values
/// (registers). A key a node could not read is absent from that node's map.
pub type FinalReads<T> = BTreeMap<String, BTreeMap<String, BTreeSet<T>>>;

/// An acknowledged add or write that a final read does not show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lost<T> {
    pub key: String,
    pub value: T,
    /// Nodes whose final read lacks it.
    pub missing_on: Vec<String>,
}

/// Verdict of the set checker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SetResult {
    pub valid: bool,
    pub attempted: usize,
    pub acked: usize,
    pub lost_count: usize,
    pub unexpected_count: usize,
    pub recovered_count: usize,
    /// Attempted, not acknowledged, and absent (fine).
    pub not_present_unacked: usize,
    pub lost: Vec<Lost<u64>>,
    pub unexpected: Vec<Elem>,
    /// Keys no node could read at the end (the check is incomplete for them).
    pub unread_keys: Vec<String>,
}

/// Keys no node could return in the final reads (reported, and checked no further).
fn unread_keys<T>(keys: &[String], finals: &FinalReads<T>) -> Vec<String> {
    keys.iter()
        .filter(|k| !finals.values().any(|m| m.contains_key(*k)))
        .cloned()
        .collect()
}

fn add_elem(o: &Op) -> Option<Elem> {
    let key = o.value.get("key")?.as_str()?.to_string();
    let e = o.value.get("element")?.as_u64()?;
    Some((key, e))
}

/// The set checker over `history` (client `add` operations) and the final reads.
pub fn check_set(history: &[Op], finals: &FinalReads<u64>, keys: &[String]) -> SetResult {
    let mut attempted: BTreeSet<Elem> = BTreeSet::new();
    let mut acked: BTreeSet<Elem> = BTreeSet::new();
    for o in history.iter().filter(|o| o.is_client() && o.f == "add") {
        if let Some(e) = add_elem(o) {
            match o.kind {
                OpType::Invoke => {
                    attempted.insert(e);
                }
                OpType::Ok => {
                    acked.insert(e);
                }
                _ => {}
            }
        }
    }
    let unread_keys = unread_keys(keys, finals);
    let mut present: BTreeSet<Elem> = BTreeSet::new();
    for m in finals.values() {
        for (k, set) in m {
            present.extend(set.iter().map(|e| (k.clone(), *e)));
        }
    }
    let mut lost = Vec::new();
    for (k, e) in &acked {
        let missing_on: Vec<String> = finals
            .iter()
            .filter(|(_, m)| m.get(k).is_some_and(|s| !s.contains(e)))
            .map(|(n, _)| n.clone())
            .collect();
        if !missing_on.is_empty() {
            lost.push(Lost {
                key: k.clone(),
                value: *e,
                missing_on,
            });
        }
    }
    let unexpected: Vec<Elem> = present.difference(&attempted).cloned().collect();
    let recovered = present
        .iter()
        .filter(|e| attempted.contains(*e) && !acked.contains(*e))
        .count();
    let not_present_unacked = attempted
        .iter()
        .filter(|e| !acked.contains(*e) && !present.contains(*e))
        .count();
    SetResult {
        valid: lost.is_empty() && unexpected.is_empty() && unread_keys.is_empty(),
        attempted: attempted.len(),
        acked: acked.len(),
        lost_count: lost.len(),
        unexpected_count: unexpected.len(),
        recovered_count: recovered,
        not_present_unacked,
        lost,
        unexpected,
        unread_keys,
    }
}

/// Verdict of the register checker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegisterResult {
    pub valid: bool,
    pub attempted: usize,
    pub acked: usize,
    pub lost_count: usize,
    pub unexpected_count: usize,
    /// Final sibling pairs where one's context had seen the other (it should be gone).
    pub stale_sibling_count: usize,
    pub lost: Vec<Lost<String>>,
    /// (key, value) read somewhere but never written.
    pub unexpected: Vec<(String, String)>,
    /// (node, key, superseded value, superseding value).
    pub stale_siblings: Vec<(String, String, String, String)>,
    pub unread_keys: Vec<String>,
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The register checker. `write` operations carry `{key, value}` and, on completion,
/// `seen`: the values of the read whose context the write carried (absent or null for a
/// write without context). `read` operations carry `values` on completion.
pub fn check_register(
    history: &[Op],
    finals: &FinalReads<String>,
    keys: &[String],
) -> RegisterResult {
    // (key, value) → values its context had seen.
    let mut seen: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut attempted: BTreeSet<(String, String)> = BTreeSet::new();
    let mut acked: BTreeSet<(String, String)> = BTreeSet::new();
    let mut observed: BTreeSet<(String, String)> = BTreeSet::new();
    for o in history.iter().filter(|o| o.is_client()) {
        let Some(key) = o.value.get("key").and_then(Value::as_str) else {
            continue;
        };
        match (o.f.as_str(), o.kind) {
            ("write", kind) => {
                let Some(v) = o.value.get("value").and_then(Value::as_str) else {
                    continue;
                };
                let kv = (key.to_string(), v.to_string());
                match kind {
                    OpType::Invoke => {
                        attempted.insert(kv);
                    }
                    OpType::Ok | OpType::Info | OpType::Fail => {
                        let s = str_list(o.value.get("seen"));
                        if !s.is_empty() {
                            seen.insert(kv.clone(), s);
                        }
                        if kind == OpType::Ok {
                            acked.insert(kv);
                        }
                    }
                }
            }
            ("read", OpType::Ok) => {
                for v in str_list(o.value.get("values")) {
                    observed.insert((key.to_string(), v));
                }
            }
            _ => {}
        }
    }
    let unread_keys = unread_keys(keys, finals);
    // Everything a set of final values covers: themselves and, transitively, what their
    // contexts had seen.
    let closure = |key: &str, start: &BTreeSet<String>| -> BTreeSet<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<String> = start.iter().cloned().collect();
        while let Some(v) = stack.pop() {
            if !out.insert(v.clone()) {
                continue;
            }
            if let Some(s) = seen.get(&(key.to_string(), v)) {
                stack.extend(s.iter().cloned());
            }
        }
        out
    };
    let mut lost = Vec::new();
    let mut stale = Vec::new();
    let mut covered_by_node: BTreeMap<(&String, &String), BTreeSet<String>> = BTreeMap::new();
    for (node, m) in finals {
        for (key, vals) in m {
            for v in vals {
                observed.insert((key.clone(), v.clone()));
            }
            covered_by_node.insert((node, key), closure(key, vals));
            for a in vals {
                // Strictly below a: what a's context saw, transitively.
                let below: BTreeSet<String> = seen
                    .get(&(key.clone(), a.clone()))
                    .map(|s| closure(key, &s.iter().cloned().collect()))
                    .unwrap_or_default();
                for b in vals.iter().filter(|b| *b != a && below.contains(*b)) {
                    stale.push((node.clone(), key.clone(), b.clone(), a.clone()));
                }
            }
        }
    }
    for (key, v) in &acked {
        let missing_on: Vec<String> = finals
            .iter()
            .filter(|(node, m)| {
                m.contains_key(key)
                    && !covered_by_node
                        .get(&(*node, key))
                        .is_some_and(|c| c.contains(v))
            })
            .map(|(n, _)| n.clone())
            .collect();
        if !missing_on.is_empty() {
            lost.push(Lost {
                key: key.clone(),
                value: v.clone(),
                missing_on,
            });
        }
    }
    let unexpected: Vec<(String, String)> = observed.difference(&attempted).cloned().collect();
    RegisterResult {
        valid: lost.is_empty()
            && unexpected.is_empty()
            && stale.is_empty()
            && unread_keys.is_empty(),
        attempted: attempted.len(),
        acked: acked.len(),
        lost_count: lost.len(),
        unexpected_count: unexpected.len(),
        stale_sibling_count: stale.len(),
        lost,
        unexpected,
        stale_siblings: stale,
        unread_keys,
    }
}

/// A fault interval in nanoseconds since the start of the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Interval {
    pub start_ns: u64,
    pub end_ns: u64,
    pub kind: String,
    pub description: String,
}

/// Success rates of client operations.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Availability {
    /// % of client operations invoked while a fault was on that completed `ok`.
    pub during_faults_pct: Option<f64>,
    pub during_faults_ops: usize,
    /// % of all client operations that completed `ok`.
    pub overall_pct: Option<f64>,
}

fn pct(ok: usize, all: usize) -> Option<f64> {
    (all > 0).then(|| (ok as f64) * 100.0 / (all as f64))
}

/// Availability over the workload's client operations (final reads excluded: they are not
/// numbered client processes).
pub fn availability(history: &[Op], faults: &[Interval]) -> Availability {
    let done = pair(history);
    let in_fault = |t: u64| faults.iter().any(|f| t >= f.start_ns && t < f.end_ns);
    let (mut ok_f, mut all_f, mut ok, mut all) = (0, 0, 0, 0);
    for c in &done {
        let good = c.completion.kind == OpType::Ok;
        all += 1;
        ok += usize::from(good);
        if in_fault(c.invoke.time) {
            all_f += 1;
            ok_f += usize::from(good);
        }
    }
    Availability {
        during_faults_pct: pct(ok_f, all_f),
        during_faults_ops: all_f,
        overall_pct: pct(ok, all),
    }
}

/// Counts of client completions by type.
pub fn ops_by_type(history: &[Op]) -> BTreeMap<String, usize> {
    let mut m: BTreeMap<String, usize> = ["invoke", "ok", "fail", "info"]
        .iter()
        .map(|k| (k.to_string(), 0))
        .collect();
    for o in history.iter().filter(|o| o.is_client()) {
        *m.entry(o.kind.as_str().to_string()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;
    use serde_json::json;

    fn op(kind: OpType, f: &str, value: Value, p: u64, t: u64) -> Op {
        Op {
            kind,
            f: f.into(),
            value,
            process: Process::Client(p),
            time: t,
            node: "n1".into(),
            error: None,
        }
    }

    fn add(h: &mut Vec<Op>, p: u64, key: &str, e: u64, outcome: OpType) {
        let t = h.len() as u64;
        h.push(op(
            OpType::Invoke,
            "add",
            json!({"key": key, "element": e}),
            p,
            t,
        ));
        h.push(op(
            outcome,
            "add",
            json!({"key": key, "element": e}),
            p,
            t + 1,
        ));
    }

    fn finals<T: Ord + Clone>(nodes: &[&str], key: &str, vals: &[T]) -> FinalReads<T> {
        nodes
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    BTreeMap::from([(key.to_string(), vals.iter().cloned().collect())]),
                )
            })
            .collect()
    }

    #[test]
    fn set_all_present_is_valid_and_recovers_unknowns() {
        let mut h = Vec::new();
        add(&mut h, 1, "k", 1, OpType::Ok);
        add(&mut h, 2, "k", 2, OpType::Info);
        add(&mut h, 3, "k", 3, OpType::Fail);
        add(&mut h, 4, "k", 4, OpType::Info);
        let f = finals(&["n1", "n2"], "k", &[1, 2, 3]);
        let r = check_set(&h, &f, &["k".into()]);
        assert!(r.valid, "{r:?}");
        assert_eq!(r.attempted, 4);
        assert_eq!(r.acked, 1);
        assert_eq!(r.recovered_count, 2);
        assert_eq!(r.not_present_unacked, 1);
    }

    #[test]
    fn set_finds_lost_and_unexpected() {
        let mut h = Vec::new();
        add(&mut h, 1, "k", 1, OpType::Ok);
        add(&mut h, 2, "k", 2, OpType::Ok);
        let mut f = finals(&["n1", "n2"], "k", &[1, 2]);
        f.get_mut("n2").unwrap().get_mut("k").unwrap().remove(&2);
        f.get_mut("n1").unwrap().get_mut("k").unwrap().insert(99);
        let r = check_set(&h, &f, &["k".into()]);
        assert!(!r.valid);
        assert_eq!(
            r.lost,
            vec![Lost {
                key: "k".into(),
                value: 2,
                missing_on: vec!["n2".into()]
            }]
        );
        assert_eq!(r.unexpected, vec![("k".to_string(), 99)]);
    }

    #[test]
    fn set_without_any_final_read_of_a_key_is_not_valid() {
        let mut h = Vec::new();
        add(&mut h, 1, "k", 1, OpType::Ok);
        let f = finals(&["n1"], "k", &[1]);
        let r = check_set(&h, &f, &["k".into(), "j".into()]);
        assert!(!r.valid);
        assert_eq!(r.unread_keys, vec!["j".to_string()]);
    }

    fn write(h: &mut Vec<Op>, p: u64, key: &str, v: &str, seen: &[&str], outcome: OpType) {
        let t = h.len() as u64;
        h.push(op(
            OpType::Invoke,
            "write",
            json!({"key": key, "value": v}),
            p,
            t,
        ));
        let seen_v: Value = if seen.is_empty() {
            Value::Null
        } else {
            json!(seen)
        };
        h.push(op(
            outcome,
            "write",
            json!({"key": key, "value": v, "seen": seen_v}),
            p,
            t + 1,
        ));
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn register_accepts_superseded_writes() {
        let mut h = Vec::new();
        write(&mut h, 1, "r", "a", &[], OpType::Ok);
        write(&mut h, 2, "r", "b", &[], OpType::Ok);
        // c saw a and b; d saw c (an unknown outcome that evidently landed).
        write(&mut h, 1, "r", "c", &["a", "b"], OpType::Info);
        write(&mut h, 2, "r", "d", &["c"], OpType::Ok);
        write(&mut h, 3, "r", "e", &[], OpType::Ok);
        let f = finals(&["n1", "n2"], "r", &s(&["d", "e"]));
        let r = check_register(&h, &f, &["r".into()]);
        assert!(r.valid, "{r:?}");
        assert_eq!(r.acked, 4);
    }

    #[test]
    fn register_finds_lost_unexpected_and_stale_siblings() {
        let mut h = Vec::new();
        write(&mut h, 1, "r", "a", &[], OpType::Ok);
        write(&mut h, 2, "r", "b", &[], OpType::Ok);
        write(&mut h, 1, "r", "c", &["a"], OpType::Ok);
        h.push(op(
            OpType::Ok,
            "read",
            json!({"key": "r", "values": ["zzz"]}),
            5,
            99,
        ));
        // b lost, a still there next to c (c's context saw a).
        let f = finals(&["n1"], "r", &s(&["a", "c"]));
        let r = check_register(&h, &f, &["r".into()]);
        assert!(!r.valid);
        assert_eq!(r.lost.len(), 1);
        assert_eq!(r.lost[0].value, "b");
        assert_eq!(r.unexpected, vec![("r".to_string(), "zzz".to_string())]);
        assert_eq!(
            r.stale_siblings,
            vec![("n1".into(), "r".into(), "a".into(), "c".into())]
        );
    }

    #[test]
    fn availability_counts_operations_invoked_during_faults() {
        let mut h = Vec::new();
        add(&mut h, 1, "k", 1, OpType::Ok); // t 0..1
        add(&mut h, 2, "k", 2, OpType::Info); // t 2..3
        add(&mut h, 3, "k", 3, OpType::Ok); // t 4..5
        add(&mut h, 4, "k", 4, OpType::Fail); // t 6..7
        let faults = vec![Interval {
            start_ns: 2,
            end_ns: 7,
            kind: "partition".into(),
            description: String::new(),
        }];
        let a = availability(&h, &faults);
        assert_eq!(a.during_faults_ops, 3);
        assert!((a.during_faults_pct.unwrap() - 100.0 / 3.0).abs() < 1e-9);
        assert!((a.overall_pct.unwrap() - 50.0).abs() < 1e-9);
        assert_eq!(availability(&[], &faults).overall_pct, None);
        let by = ops_by_type(&h);
        assert_eq!(by["invoke"], 4);
        assert_eq!(by["ok"], 2);
        assert_eq!(by["fail"], 1);
        assert_eq!(by["info"], 1);
    }
}
