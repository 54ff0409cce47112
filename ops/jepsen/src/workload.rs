//! Workloads: what the concurrent clients do, and the final reads after the last heal.
//!
//! - set (and the lww control, and convergence): a few keys, each holding a JSON array of
//!   integers. An `add` reads the key, unions the elements of every sibling, adds a fresh
//!   element and writes the union back with the read's context.
//! - register: reads, writes carrying a fresh read's context (`seen` lists what that read
//!   returned), and blind writes without context, of unique values.
//! - counter: increments of varied positive amounts and reads, on a counter bucket.
//! - crdt-set: adds of unique elements, reads, and removes of an element a read saw, carrying
//!   that read's context (`seen` lists what the read returned), on a set bucket.

use crate::client::{Client, Failure, Read};
use crate::history::{OpType, Process, Recorder, op};
use rand::Rng;
use rand::rngs::StdRng;
use riftkv_client::Quorum;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The workload of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Sets grown by read-modify-write with sibling union (Jepsen set checker).
    Set,
    /// Writes with and without contexts (causal register checker).
    Register,
    /// The set workload; valid only if every replica converges after the final heal.
    Convergence,
    /// The set workload on a last-write-wins bucket: must show lost writes.
    Control,
    /// Increments of a convergent counter (each acknowledged one counted exactly once).
    Counter,
    /// Adds and context removes on a convergent set (no lost add, no resurrected remove).
    #[serde(rename = "crdt-set")]
    CrdtSet,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Set => "set",
            Workload::Register => "register",
            Workload::Convergence => "convergence",
            Workload::Control => "control",
            Workload::Counter => "counter",
            Workload::CrdtSet => "crdt-set",
        }
    }

    /// The bucket the workload writes to.
    pub fn bucket(self) -> &'static str {
        match self {
            Workload::Set | Workload::Convergence => "jepsen-set",
            Workload::Register => "jepsen-register",
            Workload::Control => "jepsen-lww",
            Workload::Counter => "jepsen-counter",
            Workload::CrdtSet => "jepsen-crdt-set",
        }
    }

    /// The read-modify-write set workloads on plain values.
    pub fn is_set_like(self) -> bool {
        matches!(
            self,
            Workload::Set | Workload::Convergence | Workload::Control
        )
    }

    /// The workloads on data type buckets (`/v1/types`).
    pub fn is_typed(self) -> bool {
        matches!(self, Workload::Counter | Workload::CrdtSet)
    }

    /// Bucket properties to install before the run.
    pub fn props(self) -> Value {
        match self {
            Workload::Control => json!({"n": 3, "conflict": "lww"}),
            Workload::Counter => json!({"n": 3, "datatype": "counter"}),
            Workload::CrdtSet => json!({"n": 3, "datatype": "set"}),
            _ => json!({"n": 3, "conflict": "siblings"}),
        }
    }
}

/// Key names of a run.
pub fn keys(workload: Workload, count: usize) -> Vec<String> {
    let prefix = match workload {
        Workload::Register => "reg",
        Workload::Counter => "ctr",
        Workload::CrdtSet => "cset",
        _ => "set",
    };
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// Elements of a set value; siblings that are not a JSON array of integers are an error.
pub fn parse_set(bytes: &[u8]) -> Result<BTreeSet<u64>, String> {
    serde_json::from_slice::<Vec<u64>>(bytes)
        .map(|v| v.into_iter().collect())
        .map_err(|e| {
            format!(
                "sibling is not a set: {e}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
            )
        })
}

/// Union of every sibling's elements.
pub fn union_of(read: &Read) -> Result<BTreeSet<u64>, String> {
    let mut out = BTreeSet::new();
    for v in &read.values {
        out.extend(parse_set(v)?);
    }
    Ok(out)
}

fn values_as_strings(read: &Read) -> Vec<String> {
    let mut v: Vec<String> = read
        .values
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    v.sort();
    v
}

/// Everything a client worker shares with the others.
pub struct Shared {
    pub workload: Workload,
    pub recorder: Recorder,
    pub nodes: usize,
    pub keys: Vec<String>,
    /// Next unique element / value number.
    pub counter: AtomicU64,
    pub stop: &'static AtomicBool,
    pub until: Instant,
    /// Mean pause between one worker's operations.
    pub pace: Duration,
    pub concurrency: u64,
}

fn node_name(i: usize) -> String {
    format!("n{i}")
}

fn base(i: usize) -> String {
    crate::cluster::api_url(i)
}

/// One client worker: runs operations until the deadline or the stop flag. After an
/// operation with an unknown outcome the worker takes a fresh process number (Jepsen's
/// convention: the old process may still have a request in flight).
pub fn run_worker(shared: &Shared, worker: u64, client: &Client, rng: &mut StdRng) {
    let mut process = worker;
    // Bounded by the deadline: every iteration takes at least one request timeout or sleep.
    while Instant::now() < shared.until && !shared.stop.load(Ordering::Relaxed) {
        let node = rng.gen_range(1..=shared.nodes);
        let key = &shared.keys[rng.gen_range(0..shared.keys.len())];
        let caller = Caller {
            shared,
            client,
            process,
            node,
            key,
        };
        let outcome = match shared.workload {
            Workload::Register => match rng.gen_range(0..10) {
                0..=2 => register_read(shared, client, process, node, key),
                3..=7 => register_write(shared, client, process, node, key, true),
                _ => register_write(shared, client, process, node, key, false),
            },
            Workload::Counter => match rng.gen_range(0..10) {
                0..=1 => typed_read(&caller).0,
                _ => counter_increment(&caller, increment(rng)),
            },
            Workload::CrdtSet => match rng.gen_range(0..10) {
                0..=5 => crdt_add(&caller),
                _ => crdt_remove(&caller, rng),
            },
            _ => set_add(shared, client, process, node, key),
        };
        if outcome == OpType::Info {
            process += shared.concurrency;
        }
        let pace = shared.pace.as_millis() as u64;
        if pace > 0 {
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..=2 * pace)));
        }
    }
}

/// Records the invocation of `f` with `value`.
fn invoke(shared: &Shared, f: &str, value: Value, process: u64, node: usize) {
    shared.recorder.record(op(
        OpType::Invoke,
        f,
        value,
        Process::Client(process),
        &node_name(node),
        None,
    ));
}

fn complete(
    shared: &Shared,
    kind: OpType,
    f: &str,
    value: Value,
    process: u64,
    node: usize,
    error: Option<String>,
) -> OpType {
    shared.recorder.record(op(
        kind,
        f,
        value,
        Process::Client(process),
        &node_name(node),
        error,
    ));
    kind
}

fn failure_kind(f: &Failure) -> OpType {
    match f {
        Failure::Definite(_) => OpType::Fail,
        Failure::Indeterminate(_) => OpType::Info,
    }
}

/// One `add`: read, union, add, write back with the read's context.
pub fn set_add(shared: &Shared, client: &Client, process: u64, node: usize, key: &str) -> OpType {
    let element = shared.counter.fetch_add(1, Ordering::Relaxed);
    let value = json!({"key": key, "element": element});
    invoke(shared, "add", value.clone(), process, node);
    let bucket = shared.workload.bucket();
    let read = match client.read(&base(node), bucket, key, None) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("read before write: {}", e.message());
            return complete(shared, OpType::Fail, "add", value, process, node, Some(msg));
        }
    };
    let mut set = match union_of(&read) {
        Ok(s) => s,
        Err(e) => return complete(shared, OpType::Fail, "add", value, process, node, Some(e)),
    };
    set.insert(element);
    let body = serde_json::to_vec(&set.into_iter().collect::<Vec<u64>>()).unwrap_or_default();
    match client.write(&base(node), bucket, key, &body, read.context.as_deref()) {
        Ok(()) => complete(shared, OpType::Ok, "add", value, process, node, None),
        Err(e) => {
            let kind = failure_kind(&e);
            complete(
                shared,
                kind,
                "add",
                value,
                process,
                node,
                Some(e.message().to_string()),
            )
        }
    }
}

fn register_read(shared: &Shared, client: &Client, process: u64, node: usize, key: &str) -> OpType {
    invoke(shared, "read", json!({"key": key}), process, node);
    match client.read(&base(node), shared.workload.bucket(), key, None) {
        Ok(r) => complete(
            shared,
            OpType::Ok,
            "read",
            json!({"key": key, "values": values_as_strings(&r)}),
            process,
            node,
            None,
        ),
        Err(e) => read_failed(shared, process, node, key, &e),
    }
}

/// Completes a client read that failed (a read changes nothing: a definite failure).
fn read_failed(shared: &Shared, process: u64, node: usize, key: &str, e: &Failure) -> OpType {
    let msg = Some(e.message().to_string());
    complete(
        shared,
        OpType::Fail,
        "read",
        json!({"key": key}),
        process,
        node,
        msg,
    )
}

fn register_write(
    shared: &Shared,
    client: &Client,
    process: u64,
    node: usize,
    key: &str,
    with_context: bool,
) -> OpType {
    let v = format!("w{}", shared.counter.fetch_add(1, Ordering::Relaxed));
    invoke(
        shared,
        "write",
        json!({"key": key, "value": v}),
        process,
        node,
    );
    let bucket = shared.workload.bucket();
    let (ctx, seen) = if with_context {
        match client.read(&base(node), bucket, key, None) {
            Ok(r) => {
                let seen = values_as_strings(&r);
                (r.context, Some(seen))
            }
            Err(e) => {
                return complete(
                    shared,
                    OpType::Fail,
                    "write",
                    json!({"key": key, "value": v, "seen": null}),
                    process,
                    node,
                    Some(format!("read before write: {}", e.message())),
                );
            }
        }
    } else {
        (None, None)
    };
    let done = json!({"key": key, "value": v, "seen": seen});
    match client.write(&base(node), bucket, key, v.as_bytes(), ctx.as_deref()) {
        Ok(()) => complete(shared, OpType::Ok, "write", done, process, node, None),
        Err(e) => {
            let kind = failure_kind(&e);
            complete(
                shared,
                kind,
                "write",
                done,
                process,
                node,
                Some(e.message().to_string()),
            )
        }
    }
}

/// A positive increment of varied magnitude: mostly small, sometimes up to a thousand.
pub fn increment(rng: &mut StdRng) -> i64 {
    match rng.gen_range(0..10) {
        0..=4 => 1,
        5..=7 => rng.gen_range(2..=20),
        8 => rng.gen_range(21..=200),
        _ => rng.gen_range(201..=1000),
    }
}

/// What a data type read shows in the history: `{"value": n}` for a counter,
/// `{"elements": [...]}` for a set (a 404 is 0 or the empty set).
pub fn shown_type_value(workload: Workload, value: Option<&Value>) -> Value {
    let v = value.cloned().unwrap_or_else(|| empty_value(workload));
    match workload {
        Workload::Counter => json!({"value": v}),
        _ => json!({"elements": v}),
    }
}

/// What a key nobody wrote holds: 0 for a counter, the empty set otherwise.
pub fn empty_value(workload: Workload) -> Value {
    match workload {
        Workload::Counter => json!(0),
        _ => json!([]),
    }
}

/// Adds `key` to a `{"value": ...}` or `{"elements": ...}` object.
fn with_key(mut v: Value, key: &str) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.insert("key".into(), json!(key));
    }
    v
}

/// What a successful data type read saw: its set elements and its context.
type SeenRead = (Vec<String>, Option<String>);

/// A read of a data type value, recorded as `read`; returns its outcome and, when it
/// succeeded, the set elements it saw (empty for a counter) and its context.
fn typed_read(caller: &Caller) -> (OpType, Option<SeenRead>) {
    let Caller {
        shared,
        client,
        process,
        node,
        key,
    } = *caller;
    invoke(shared, "read", json!({"key": key}), process, node);
    let bucket = shared.workload.bucket();
    match client.read_type(&base(node), bucket, key, None) {
        Ok(v) => {
            let value = v.as_ref().map(|t| &t.value);
            let shown = with_key(shown_type_value(shared.workload, value), key);
            let elements = str_elements(value);
            let kind = complete(shared, OpType::Ok, "read", shown, process, node, None);
            (kind, Some((elements, v.map(|t| t.context))))
        }
        Err(e) => (read_failed(shared, process, node, key, &e), None),
    }
}

/// The string elements of a set value (anything else: none).
fn str_elements(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Who sends a data type request, to which node and key.
#[derive(Clone, Copy)]
struct Caller<'a> {
    shared: &'a Shared,
    client: &'a Client,
    process: u64,
    node: usize,
    key: &'a str,
}

impl Caller<'_> {
    /// One data type update (`f` with `value`), recorded as invoke and completion.
    fn update(&self, f: &str, value: Value, operation: &Value, context: Option<&str>) -> OpType {
        let (shared, process, node) = (self.shared, self.process, self.node);
        invoke(shared, f, value.clone(), process, node);
        let bucket = shared.workload.bucket();
        let base = base(node);
        match (self.client).update_type(&base, bucket, self.key, operation, context) {
            Ok(()) => complete(shared, OpType::Ok, f, value, process, node, None),
            Err(e) => {
                let msg = Some(e.message().to_string());
                complete(shared, failure_kind(&e), f, value, process, node, msg)
            }
        }
    }
}

/// One counter increment of `delta`.
fn counter_increment(caller: &Caller, delta: i64) -> OpType {
    let value = json!({"key": caller.key, "delta": delta});
    caller.update("increment", value, &json!({"increment": delta}), None)
}

/// One add of a fresh element to a convergent set.
fn crdt_add(caller: &Caller) -> OpType {
    let element = format!("e{}", caller.shared.counter.fetch_add(1, Ordering::Relaxed));
    let value = json!({"key": caller.key, "element": element});
    caller.update("add", value, &json!({"add": [element]}), None)
}

/// A read, then (when it saw something) the remove of one element it saw, with its context;
/// the remove records everything the read saw as `seen`. An empty read adds instead.
fn crdt_remove(caller: &Caller, rng: &mut StdRng) -> OpType {
    let (kind, read) = typed_read(caller);
    let Some((seen, context)) = read else {
        return kind;
    };
    if seen.is_empty() {
        return crdt_add(caller);
    }
    let element = seen[rng.gen_range(0..seen.len())].clone();
    let value = json!({"key": caller.key, "element": element, "seen": seen});
    caller.update(
        "remove",
        value,
        &json!({"remove": [element]}),
        context.as_deref(),
    )
}

/// What the final reads read: every key of the workload's bucket on every node, recorded
/// into the history.
#[derive(Clone, Copy)]
pub struct FinalTarget<'a> {
    pub workload: Workload,
    pub recorder: &'a Recorder,
    pub nodes: usize,
    pub keys: &'a [String],
}

/// Final reads of a data type workload: every key from every node (`r=all`, then the
/// bucket default if a replica keeps failing), in rounds until every node answers every key
/// with the same value, or until `deadline`. Returns node → key → value (a 404 is 0 or [])
/// of the last answers; recorded in the history under the process `final`.
pub fn final_type_reads(
    t: &FinalTarget,
    client: &Client,
    deadline: Instant,
) -> BTreeMap<String, BTreeMap<String, Value>> {
    let FinalTarget {
        workload,
        recorder,
        nodes,
        keys,
    } = *t;
    let mut out: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut round = 0u32;
    // Bounded by the deadline: every round ends with a sleep.
    loop {
        round += 1;
        let r = (round <= 5).then_some(Quorum::All);
        for i in 1..=nodes {
            for key in keys {
                let process = Process::Named("final".into());
                let node = node_name(i);
                let invoke = json!({"key": key});
                recorder.record(op(
                    OpType::Invoke,
                    "read",
                    invoke,
                    process.clone(),
                    &node,
                    None,
                ));
                match client.read_type(&base(i), workload.bucket(), key, r) {
                    Ok(v) => {
                        let value = v.map_or_else(|| empty_value(workload), |t| t.value);
                        let shown = with_key(shown_type_value(workload, Some(&value)), key);
                        recorder.record(op(OpType::Ok, "read", shown, process, &node, None));
                        out.entry(node).or_default().insert(key.clone(), value);
                    }
                    Err(e) => {
                        let msg = Some(e.message().to_string());
                        let failed = json!({"key": key});
                        recorder.record(op(OpType::Fail, "read", failed, process, &node, msg));
                    }
                }
            }
        }
        let agreed = keys.iter().all(|k| {
            let mut seen = (1..=nodes).map(|i| out.get(&node_name(i)).and_then(|m| m.get(k)));
            let first = seen.next().flatten();
            first.is_some() && seen.all(|v| v == first)
        });
        if agreed || Instant::now() >= deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Final reads: every key from every node, retried until `deadline`. Returns, per node and
/// key, the raw sibling values (keys that never answered are absent). Recorded in the
/// history under the process `final`.
pub fn final_reads(
    workload: Workload,
    recorder: &Recorder,
    client: &Client,
    nodes: usize,
    keys: &[String],
    deadline: Instant,
) -> BTreeMap<String, BTreeMap<String, Read>> {
    let mut out: BTreeMap<String, BTreeMap<String, Read>> = BTreeMap::new();
    let process = || Process::Named("final".into());
    for i in 1..=nodes {
        for key in keys {
            let mut attempt = 0u32;
            // Bounded by the deadline (each attempt sleeps or times out).
            loop {
                attempt += 1;
                // r=all first (every replica answers, read repair follows); fall back to
                // the bucket default if a replica keeps failing.
                let r = if attempt <= 5 {
                    Some(Quorum::All)
                } else {
                    None
                };
                recorder.record(op(
                    OpType::Invoke,
                    "read",
                    json!({"key": key}),
                    process(),
                    &node_name(i),
                    None,
                ));
                match client.read(&base(i), workload.bucket(), key, r) {
                    Ok(r) => {
                        let shown = if workload.is_set_like() {
                            match union_of(&r) {
                                Ok(s) => {
                                    json!({"key": key, "elements": s, "siblings": r.values.len()})
                                }
                                Err(e) => json!({"key": key, "error": e}),
                            }
                        } else {
                            json!({"key": key, "values": values_as_strings(&r)})
                        };
                        recorder.record(op(
                            OpType::Ok,
                            "read",
                            shown,
                            process(),
                            &node_name(i),
                            None,
                        ));
                        out.entry(node_name(i)).or_default().insert(key.clone(), r);
                        break;
                    }
                    Err(e) => {
                        recorder.record(op(
                            OpType::Fail,
                            "read",
                            json!({"key": key}),
                            process(),
                            &node_name(i),
                            Some(e.message().to_string()),
                        ));
                        if Instant::now() >= deadline {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_parse_and_union() {
        let r = Read {
            context: None,
            values: vec![b"[1,2,3]".to_vec(), b"[3,4]".to_vec()],
        };
        assert_eq!(union_of(&r).unwrap(), BTreeSet::from([1, 2, 3, 4]));
        assert!(parse_set(b"w12").is_err());
        assert!(union_of(&Read::default()).unwrap().is_empty());
    }

    #[test]
    fn workload_buckets_and_keys() {
        assert_eq!(keys(Workload::Set, 2), vec!["set-0", "set-1"]);
        assert_eq!(keys(Workload::Register, 1), vec!["reg-0"]);
        assert_eq!(Workload::Control.props()["conflict"], "lww");
        assert_eq!(Workload::Set.props()["conflict"], "siblings");
        assert_ne!(Workload::Control.bucket(), Workload::Set.bucket());
        assert_eq!(keys(Workload::Counter, 2), vec!["ctr-0", "ctr-1"]);
        assert_eq!(keys(Workload::CrdtSet, 1), vec!["cset-0"]);
        assert_eq!(Workload::Counter.props()["datatype"], "counter");
        assert_eq!(Workload::CrdtSet.props()["datatype"], "set");
        assert!(Workload::Counter.is_typed() && !Workload::Counter.is_set_like());
        assert!(!Workload::Set.is_typed() && Workload::Control.is_set_like());
        assert_eq!(Workload::CrdtSet.name(), "crdt-set");
        assert_eq!(
            serde_json::to_value(Workload::CrdtSet).unwrap(),
            json!("crdt-set")
        );
    }

    #[test]
    fn increments_are_positive_and_varied() {
        use rand::SeedableRng;
        let mut rng = StdRng::seed_from_u64(7);
        let v: Vec<i64> = (0..1000).map(|_| increment(&mut rng)).collect();
        assert!(v.iter().all(|x| (1..=1000).contains(x)));
        assert!(v.contains(&1) && v.iter().any(|x| *x > 200));
        assert_eq!(
            shown_type_value(Workload::Counter, None),
            json!({"value": 0})
        );
        assert_eq!(
            shown_type_value(Workload::CrdtSet, Some(&json!(["a"]))),
            json!({"elements": ["a"]})
        );
    }
}
