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
fn unread_keys<V>(keys: &[String], finals: &BTreeMap<String, BTreeMap<String, V>>) -> Vec<String> {
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

/// The (key, element)s that some node's final read of their key lacks, with those nodes.
fn missing<'a, T: Ord + Clone + 'a>(
    elems: impl Iterator<Item = &'a (String, T)>,
    finals: &FinalReads<T>,
) -> Vec<Lost<T>> {
    let mut lost = Vec::new();
    for (k, e) in elems {
        let missing_on: Vec<String> = finals
            .iter()
            .filter(|(_, m)| m.get(k).is_some_and(|s| !s.contains(e)))
            .map(|(n, _)| n.clone())
            .collect();
        if !missing_on.is_empty() {
            lost.push(Lost {
                key: k.clone(),
                value: e.clone(),
                missing_on,
            });
        }
    }
    lost
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
    let lost = missing(acked.iter(), finals);
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

/// The final counter values seen by each node: node name → key → value.
pub type CounterFinals = BTreeMap<String, BTreeMap<String, i64>>;

/// One counter key: what the clients did to it and what every node ended with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CounterKey {
    pub key: String,
    /// Sum of the acknowledged increments.
    pub ok_sum: i64,
    /// Sum of the increments with an unknown outcome.
    pub info_sum: i64,
    pub final_values: BTreeMap<String, i64>,
    /// How much of the acknowledged sum the lowest final value lacks.
    pub lost: i64,
    /// How far the highest final value exceeds everything that may have happened.
    pub double_counted: i64,
}

/// A read during the run that saw more than had been invoked before it completed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReadViolation {
    pub key: String,
    pub node: String,
    /// Completion time of the read (ns since the start of the run).
    pub time: u64,
    pub value: i64,
    /// Sum of the increments invoked before the read completed (failed ones excluded).
    pub upper_bound: i64,
}

/// Verdict of the counter checker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CounterResult {
    pub valid: bool,
    /// Increments invoked / acknowledged.
    pub attempted: usize,
    pub acked: usize,
    pub ok_sum: i64,
    pub info_sum: i64,
    /// Acknowledged increments missing from the final values, summed over keys.
    pub lost_amount: i64,
    /// Final values above acknowledged + unknown increments, summed over keys.
    pub double_counted_amount: i64,
    pub keys: Vec<CounterKey>,
    pub read_violations: Vec<ReadViolation>,
    /// Keys whose final values differ between nodes: `key: n1=5 n2=7`.
    pub disagreements: Vec<String>,
    pub unread_keys: Vec<String>,
}

/// Nodes whose final values of `key` differ: `key: n1=.. n2=..` (none when they agree).
fn disagreement<T: PartialEq + std::fmt::Debug>(
    key: &str,
    finals: &BTreeMap<String, BTreeMap<String, T>>,
) -> Option<String> {
    let vals: Vec<(&String, &T)> = finals
        .iter()
        .filter_map(|(n, m)| m.get(key).map(|v| (n, v)))
        .collect();
    let first = vals.first()?.1;
    if vals.iter().all(|(_, v)| *v == first) {
        return None;
    }
    let shown: Vec<String> = vals.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    Some(format!("{key}: {}", shown.join(" ")))
}

/// Every sum of a subset of `deltas` (positive): `out[s]` is true when some subset sums to
/// `s`. `None` when the table would be too large to compute (then only bounds are checked).
fn subset_sums(deltas: &[i64]) -> Option<Vec<bool>> {
    let total: i64 = deltas.iter().sum();
    let size = usize::try_from(total).ok()?.checked_add(1)?;
    if deltas.iter().any(|d| *d < 0) || size.saturating_mul(deltas.len()) > 200_000_000 {
        return None;
    }
    let mut out = vec![false; size];
    out[0] = true;
    let mut reach = 0usize;
    for d in deltas.iter().filter_map(|d| usize::try_from(*d).ok()) {
        for s in (0..=reach).rev() {
            if out[s] {
                out[s + d] = true;
            }
        }
        reach += d;
    }
    Some(out)
}

/// How a final value that is `extra` above the acknowledged sum fails to be explained by the
/// unknown increments (summing to `info_sum`, with `sums` their subset sums): `(lost,
/// double)`, where `lost` is the least amount that, added, would make it explainable (an
/// acknowledged increment missing) and `double` how far it exceeds every explanation.
/// `(0, 0)` when some subset of the unknown increments sums to exactly `extra`.
fn unexplained(extra: i64, info_sum: i64, sums: Option<&[bool]>) -> (i64, i64) {
    if extra < 0 {
        return (-extra, 0);
    }
    if extra > info_sum {
        return (0, extra - info_sum);
    }
    let Some(sums) = sums else { return (0, 0) };
    let from = usize::try_from(extra).unwrap_or(usize::MAX);
    match sums.iter().skip(from).position(|x| *x) {
        Some(x) => (i64::try_from(x).unwrap_or(i64::MAX), 0),
        None => (0, 0),
    }
}

/// The counter checker. `increment` operations carry `{key, delta}` (positive deltas);
/// `read` completions carry `{key, value}`. Every acknowledged increment must be counted
/// exactly once and every unknown one at most once: for each key and node, `final - sum(ok)`
/// must be the sum of some subset of the unknown increments (so that `sum(ok) <= final <=
/// sum(ok) + sum(info)`); failed increments count for nothing. All nodes must end with the
/// same value. A read during the run may be stale (an eventually consistent counter gives no
/// lower bound), but it may never exceed the sum of the increments invoked before it
/// completed (failed ones excluded).
pub fn check_counter(history: &[Op], finals: &CounterFinals, keys: &[String]) -> CounterResult {
    let key_of = |o: &Op| {
        o.value
            .get("key")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let delta_of = |o: &Op| o.value.get("delta").and_then(Value::as_i64).unwrap_or(0);
    // Each increment: (key, invoke time, delta, completion kind; None if never completed).
    let mut increments: Vec<(String, u64, i64, Option<OpType>)> = Vec::new();
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    let mut reads: Vec<&Op> = Vec::new();
    for o in history.iter().filter(|o| o.is_client()) {
        let proc_id = format!("{:?}", o.process);
        match (o.f.as_str(), o.kind) {
            ("increment", OpType::Invoke) => {
                let Some(k) = key_of(o) else { continue };
                open.insert(proc_id, increments.len());
                increments.push((k, o.time, delta_of(o), None));
            }
            ("increment", kind) => {
                if let Some(i) = open.remove(&proc_id) {
                    increments[i].3 = Some(kind);
                }
            }
            ("read", OpType::Ok) => reads.push(o),
            _ => {}
        }
    }
    let mut result = CounterResult {
        attempted: increments.len(),
        acked: increments
            .iter()
            .filter(|i| i.3 == Some(OpType::Ok))
            .count(),
        unread_keys: unread_keys(keys, finals),
        ..CounterResult::default()
    };
    for key in keys {
        let mut k = CounterKey {
            key: key.clone(),
            ..CounterKey::default()
        };
        for (_, _, d, kind) in increments.iter().filter(|i| &i.0 == key) {
            match kind {
                Some(OpType::Ok) => k.ok_sum += d,
                Some(OpType::Fail) => {}
                _ => k.info_sum += d,
            }
        }
        let unknown: Vec<i64> = increments
            .iter()
            .filter(|i| &i.0 == key && !matches!(i.3, Some(OpType::Ok | OpType::Fail)))
            .map(|i| i.2)
            .collect();
        let sums = subset_sums(&unknown);
        for (node, m) in finals {
            if let Some(v) = m.get(key) {
                k.final_values.insert(node.clone(), *v);
                let (lost, double) = unexplained(*v - k.ok_sum, k.info_sum, sums.as_deref());
                k.lost = k.lost.max(lost);
                k.double_counted = k.double_counted.max(double);
            }
        }
        result.ok_sum += k.ok_sum;
        result.info_sum += k.info_sum;
        result.lost_amount += k.lost;
        result.double_counted_amount += k.double_counted;
        result.disagreements.extend(disagreement(key, finals));
        result.keys.push(k);
    }
    for r in reads {
        let Some(key) = key_of(r) else { continue };
        let value = r
            .value
            .get("value")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MAX);
        let upper_bound: i64 = increments
            .iter()
            .filter(|i| i.0 == key && i.1 < r.time && i.3 != Some(OpType::Fail))
            .map(|i| i.2)
            .sum();
        if value > upper_bound || value < 0 {
            result.read_violations.push(ReadViolation {
                key,
                node: r.node.clone(),
                time: r.time,
                value,
                upper_bound,
            });
        }
    }
    result.valid = result.lost_amount == 0
        && result.double_counted_amount == 0
        && result.read_violations.is_empty()
        && result.disagreements.is_empty()
        && result.unread_keys.is_empty();
    result
}

/// An acknowledged remove whose element is still there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resurrected {
    pub key: String,
    pub value: String,
    pub present_on: Vec<String>,
}

/// Verdict of the convergent-set checker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CrdtSetResult {
    pub valid: bool,
    pub attempted_adds: usize,
    pub acked_adds: usize,
    pub attempted_removes: usize,
    pub acked_removes: usize,
    pub lost_count: usize,
    pub resurrected_count: usize,
    pub phantom_count: usize,
    /// Adds with an unknown or failed outcome that are present (fine).
    pub recovered_count: usize,
    pub lost: Vec<Lost<String>>,
    pub resurrected: Vec<Resurrected>,
    /// (key, element) seen in a read but never added.
    pub phantoms: Vec<(String, String)>,
    pub disagreements: Vec<String>,
    pub unread_keys: Vec<String>,
}

/// The convergent-set checker. `add` operations carry `{key, element}` (each element added
/// once); `remove` operations `{key, element, seen}`, where `seen` is what the read whose
/// context the remove carried returned; `read` completions `{key, elements}`.
///
/// - *lost*: an acknowledged add missing on some node at the end, unless a remove of that
///   element may have happened (acknowledged or unknown outcome);
/// - *resurrected*: an element removed by an acknowledged remove whose read saw it, present
///   on some node at the end (its only add was in that read's context, so it is covered);
/// - *phantom*: an element in any read (during the run or at the end) that no add attempted.
pub fn check_crdt_set(
    history: &[Op],
    finals: &FinalReads<String>,
    keys: &[String],
) -> CrdtSetResult {
    let elem_of = |o: &Op| -> Option<(String, String)> {
        let key = o.value.get("key")?.as_str()?.to_string();
        let e = o.value.get("element")?.as_str()?.to_string();
        Some((key, e))
    };
    let mut attempted: BTreeSet<(String, String)> = BTreeSet::new();
    let mut acked: BTreeSet<(String, String)> = BTreeSet::new();
    let mut removes_invoked = 0;
    // Removes that may have happened, and those acknowledged whose read saw the element.
    let mut maybe_removed: BTreeSet<(String, String)> = BTreeSet::new();
    let mut removed: BTreeSet<(String, String)> = BTreeSet::new();
    let mut acked_removes = 0;
    let mut observed: BTreeSet<(String, String)> = BTreeSet::new();
    for o in history.iter().filter(|o| o.is_client()) {
        match (o.f.as_str(), o.kind) {
            ("add", kind) => {
                let Some(e) = elem_of(o) else { continue };
                match kind {
                    OpType::Invoke => {
                        attempted.insert(e);
                    }
                    OpType::Ok => {
                        acked.insert(e);
                    }
                    _ => {}
                }
            }
            ("remove", kind) => {
                let Some(e) = elem_of(o) else { continue };
                match kind {
                    OpType::Invoke => {
                        removes_invoked += 1;
                        maybe_removed.insert(e);
                    }
                    OpType::Ok => {
                        acked_removes += 1;
                        if str_list(o.value.get("seen")).contains(&e.1) {
                            removed.insert(e);
                        }
                    }
                    _ => {}
                }
            }
            ("read", OpType::Ok) => {
                let Some(key) = o.value.get("key").and_then(Value::as_str) else {
                    continue;
                };
                for e in str_list(o.value.get("elements")) {
                    observed.insert((key.to_string(), e));
                }
            }
            _ => {}
        }
    }
    // A failed remove certainly did not happen.
    for o in history
        .iter()
        .filter(|o| o.is_client() && o.f == "remove" && o.kind == OpType::Fail)
    {
        if let Some(e) = elem_of(o) {
            // Only when no other remove of it may have happened (one remove per element is
            // the norm; two reads may pick the same element).
            let others = history.iter().any(|x| {
                x.is_client()
                    && x.f == "remove"
                    && matches!(x.kind, OpType::Ok | OpType::Info)
                    && elem_of(x).as_ref() == Some(&e)
            });
            if !others {
                maybe_removed.remove(&e);
            }
        }
    }
    let present_on = |k: &str, e: &str| -> Vec<String> {
        finals
            .iter()
            .filter(|(_, m)| m.get(k).is_some_and(|s| s.contains(e)))
            .map(|(n, _)| n.clone())
            .collect()
    };
    let lost = missing(acked.iter().filter(|x| !maybe_removed.contains(*x)), finals);
    let mut resurrected = Vec::new();
    for (k, e) in &removed {
        let on = present_on(k, e);
        if !on.is_empty() {
            resurrected.push(Resurrected {
                key: k.clone(),
                value: e.clone(),
                present_on: on,
            });
        }
    }
    let mut present: BTreeSet<(String, String)> = BTreeSet::new();
    for m in finals.values() {
        for (k, set) in m {
            present.extend(set.iter().map(|e| (k.clone(), e.clone())));
        }
    }
    observed.extend(present.iter().cloned());
    let phantoms: Vec<(String, String)> = observed.difference(&attempted).cloned().collect();
    let recovered_count = present
        .iter()
        .filter(|e| attempted.contains(*e) && !acked.contains(*e))
        .count();
    let disagreements: Vec<String> = keys
        .iter()
        .filter_map(|k| disagreement(k, finals))
        .collect();
    let unread_keys = unread_keys(keys, finals);
    CrdtSetResult {
        valid: lost.is_empty()
            && resurrected.is_empty()
            && phantoms.is_empty()
            && disagreements.is_empty()
            && unread_keys.is_empty(),
        attempted_adds: attempted.len(),
        acked_adds: acked.len(),
        attempted_removes: removes_invoked,
        acked_removes,
        lost_count: lost.len(),
        resurrected_count: resurrected.len(),
        phantom_count: phantoms.len(),
        recovered_count,
        lost,
        resurrected,
        phantoms,
        disagreements,
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
    /// An increment of `delta` on `key` by process `p`, invoked at `t` and completed at
    /// `t + 1` with `outcome`.
    fn incr(h: &mut Vec<Op>, p: u64, key: &str, delta: i64, outcome: OpType, t: u64) {
        let v = json!({"key": key, "delta": delta});
        h.push(op(OpType::Invoke, "increment", v.clone(), p, t));
        h.push(op(outcome, "increment", v, p, t + 1));
    }

    /// A read of `key` by process `p`, invoked at `t`, completed at `t + 1` with `value`.
    fn counter_read(h: &mut Vec<Op>, p: u64, key: &str, value: i64, t: u64) {
        h.push(op(OpType::Invoke, "read", json!({"key": key}), p, t));
        h.push(op(
            OpType::Ok,
            "read",
            json!({"key": key, "value": value}),
            p,
            t + 1,
        ));
    }

    fn counter_finals(nodes: &[&str], key: &str, value: i64) -> CounterFinals {
        nodes
            .iter()
            .map(|n| (n.to_string(), BTreeMap::from([(key.to_string(), value)])))
            .collect()
    }

    /// 5 (ok) + 7 (ok) + 100 (unknown) + 1000 (failed).
    fn counter_history() -> Vec<Op> {
        let mut h = Vec::new();
        incr(&mut h, 1, "c", 5, OpType::Ok, 0);
        incr(&mut h, 2, "c", 7, OpType::Ok, 10);
        incr(&mut h, 3, "c", 100, OpType::Info, 20);
        incr(&mut h, 4, "c", 1000, OpType::Fail, 30);
        h
    }

    #[test]
    fn counter_counts_acknowledged_once_and_unknown_at_most_once() {
        let keys = ["c".to_string()];
        // Without the unknown increment, and with it: both valid.
        for final_value in [12, 112] {
            let mut h = counter_history();
            // A stale read (below the acknowledged sum) is fine for an eventual counter.
            counter_read(&mut h, 5, "c", 0, 40);
            counter_read(&mut h, 5, "c", final_value, 50);
            let f = counter_finals(&["n1", "n2", "n3"], "c", final_value);
            let r = check_counter(&h, &f, &keys);
            assert!(r.valid, "{r:?}");
            assert_eq!((r.attempted, r.acked), (4, 2));
            assert_eq!((r.ok_sum, r.info_sum), (12, 100));
            assert_eq!((r.lost_amount, r.double_counted_amount), (0, 0));
        }
    }

    #[test]
    fn counter_finds_a_lost_acknowledged_increment() {
        let h = counter_history();
        // 7 was acknowledged but is not counted (the unknown 100 did not land either).
        let mut f = counter_finals(&["n1", "n2"], "c", 5);
        let r = check_counter(&h, &f, &["c".into()]);
        assert!(!r.valid);
        assert_eq!(r.lost_amount, 7);
        assert_eq!(r.double_counted_amount, 0);
        // The unknown 100 landed and hides nothing: 105 still lacks the acknowledged 7.
        f = counter_finals(&["n1", "n2"], "c", 105);
        let r = check_counter(&h, &f, &["c".into()]);
        assert!(!r.valid);
        assert_eq!(r.lost_amount, 7);
        assert_eq!(r.keys[0].final_values["n1"], 105);
    }

    #[test]
    fn counter_finds_double_counting_and_impossible_reads() {
        let mut h = counter_history();
        // 5 counted twice (or the failed 1000 counted): above 5 + 7 + 100.
        let f = counter_finals(&["n1", "n2"], "c", 117);
        let r = check_counter(&h, &f, &["c".into()]);
        assert!(!r.valid);
        assert_eq!(r.double_counted_amount, 5);
        assert_eq!(r.lost_amount, 0);
        assert!(r.read_violations.is_empty());
        // A read completed at 15 can have seen 5 and 7 (invoked at 0 and 10), not 100
        // (invoked at 20) and never the failed 1000.
        counter_read(&mut h, 6, "c", 12, 14);
        counter_read(&mut h, 6, "c", 13, 14);
        counter_read(&mut h, 7, "c", 1012, 40);
        let f = counter_finals(&["n1"], "c", 112);
        let r = check_counter(&h, &f, &["c".into()]);
        assert!(!r.valid);
        assert_eq!(r.double_counted_amount, 0);
        let bad: Vec<(i64, i64)> = r
            .read_violations
            .iter()
            .map(|v| (v.value, v.upper_bound))
            .collect();
        assert_eq!(bad, vec![(13, 12), (1012, 112)]);
    }

    #[test]
    fn counter_nodes_must_agree_and_every_key_be_read() {
        let h = counter_history();
        let mut f = counter_finals(&["n1", "n2"], "c", 12);
        f.get_mut("n2").unwrap().insert("c".into(), 112);
        let r = check_counter(&h, &f, &["c".into()]);
        assert!(!r.valid);
        assert_eq!(r.disagreements.len(), 1);
        let r = check_counter(
            &h,
            &counter_finals(&["n1"], "c", 12),
            &["c".into(), "d".into()],
        );
        assert!(!r.valid);
        assert_eq!(r.unread_keys, vec!["d".to_string()]);
    }

    fn set_add(h: &mut Vec<Op>, p: u64, key: &str, e: &str, outcome: OpType) {
        let t = h.len() as u64;
        let v = json!({"key": key, "element": e});
        h.push(op(OpType::Invoke, "add", v.clone(), p, t));
        h.push(op(outcome, "add", v, p, t + 1));
    }

    fn set_remove(h: &mut Vec<Op>, p: u64, key: &str, e: &str, seen: &[&str], outcome: OpType) {
        let t = h.len() as u64;
        let v = json!({"key": key, "element": e, "seen": seen});
        h.push(op(OpType::Invoke, "remove", v.clone(), p, t));
        h.push(op(outcome, "remove", v, p, t + 1));
    }

    /// a, b, c acknowledged; d unknown; e failed; b removed (acknowledged), c removed with
    /// an unknown outcome, a's remove failed.
    fn crdt_history() -> Vec<Op> {
        let mut h = Vec::new();
        set_add(&mut h, 1, "s", "a", OpType::Ok);
        set_add(&mut h, 2, "s", "b", OpType::Ok);
        set_add(&mut h, 3, "s", "c", OpType::Ok);
        set_add(&mut h, 4, "s", "d", OpType::Info);
        set_add(&mut h, 5, "s", "e", OpType::Fail);
        set_remove(&mut h, 1, "s", "b", &["a", "b", "c"], OpType::Ok);
        set_remove(&mut h, 2, "s", "c", &["a", "c"], OpType::Info);
        set_remove(&mut h, 6, "s", "a", &["a"], OpType::Fail);
        h
    }

    #[test]
    fn crdt_set_valid_histories() {
        let keys = ["s".to_string()];
        // c's remove may or may not have happened; d may or may not have landed.
        for present in [&["a"][..], &["a", "c"], &["a", "d"], &["a", "c", "d"]] {
            let f = finals(&["n1", "n2"], "s", &s(present));
            let r = check_crdt_set(&crdt_history(), &f, &keys);
            assert!(r.valid, "{present:?}: {r:?}");
            assert_eq!((r.attempted_adds, r.acked_adds), (5, 3));
            assert_eq!((r.attempted_removes, r.acked_removes), (3, 1));
        }
        let f = finals(&["n1"], "s", &s(&["a", "d"]));
        assert_eq!(
            check_crdt_set(&crdt_history(), &f, &keys).recovered_count,
            1
        );
    }

    #[test]
    fn crdt_set_finds_a_lost_add() {
        // a was acknowledged and its only remove failed: it must be there.
        let mut f = finals(&["n1", "n2"], "s", &s(&["a"]));
        f.get_mut("n2").unwrap().get_mut("s").unwrap().remove("a");
        let r = check_crdt_set(&crdt_history(), &f, &["s".into()]);
        assert!(!r.valid);
        assert_eq!(r.lost_count, 1);
        assert_eq!(
            r.lost,
            vec![Lost {
                key: "s".into(),
                value: "a".to_string(),
                missing_on: vec!["n2".into()]
            }]
        );
        assert_eq!((r.resurrected_count, r.phantom_count), (0, 0));
    }

    #[test]
    fn crdt_set_finds_a_resurrected_remove() {
        let f = finals(&["n1", "n2"], "s", &s(&["a", "b"]));
        let r = check_crdt_set(&crdt_history(), &f, &["s".into()]);
        assert!(!r.valid);
        assert_eq!(r.resurrected_count, 1);
        assert_eq!(r.resurrected[0].value, "b");
        assert_eq!(r.resurrected[0].present_on, vec!["n1", "n2"]);
        assert_eq!((r.lost_count, r.phantom_count), (0, 0));
    }

    #[test]
    fn crdt_set_finds_phantoms_in_final_and_intermediate_reads() {
        let mut h = crdt_history();
        h.push(op(OpType::Invoke, "read", json!({"key": "s"}), 9, 100));
        h.push(op(
            OpType::Ok,
            "read",
            json!({"key": "s", "elements": ["a", "ghost"]}),
            9,
            101,
        ));
        // e was attempted (failed): present is not a phantom, only a recovery.
        let f = finals(&["n1"], "s", &s(&["a", "e", "zzz"]));
        let r = check_crdt_set(&h, &f, &["s".into()]);
        assert!(!r.valid);
        assert_eq!(
            r.phantoms,
            vec![
                ("s".to_string(), "ghost".to_string()),
                ("s".to_string(), "zzz".to_string())
            ]
        );
        assert_eq!(r.recovered_count, 1);
        assert_eq!((r.lost_count, r.resurrected_count), (0, 0));
    }
}
