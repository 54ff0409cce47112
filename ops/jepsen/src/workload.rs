//! Workloads: what the concurrent clients do, and the final reads after the last heal.
//!
//! - set (and the lww control, and convergence): a few keys, each holding a JSON array of
//!   integers. An `add` reads the key, unions the elements of every sibling, adds a fresh
//!   element and writes the union back with the read's context.
//! - register: reads, writes carrying a fresh read's context (`seen` lists what that read
//!   returned), and blind writes without context, of unique values.

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
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Set => "set",
            Workload::Register => "register",
            Workload::Convergence => "convergence",
            Workload::Control => "control",
        }
    }

    /// The bucket the workload writes to.
    pub fn bucket(self) -> &'static str {
        match self {
            Workload::Set | Workload::Convergence => "jepsen-set",
            Workload::Register => "jepsen-register",
            Workload::Control => "jepsen-lww",
        }
    }

    pub fn is_set_like(self) -> bool {
        !matches!(self, Workload::Register)
    }

    /// Bucket properties to install before the run.
    pub fn props(self) -> Value {
        match self {
            Workload::Control => json!({"n": 3, "conflict": "lww"}),
            _ => json!({"n": 3, "conflict": "siblings"}),
        }
    }
}

/// Key names of a run.
pub fn keys(workload: Workload, count: usize) -> Vec<String> {
    let prefix = if workload.is_set_like() { "set" } else { "reg" };
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
        let outcome = if shared.workload.is_set_like() {
            set_add(shared, client, process, node, key)
        } else {
            match rng.gen_range(0..10) {
                0..=2 => register_read(shared, client, process, node, key),
                3..=7 => register_write(shared, client, process, node, key, true),
                _ => register_write(shared, client, process, node, key, false),
            }
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
    shared.recorder.record(op(
        OpType::Invoke,
        "add",
        value.clone(),
        Process::Client(process),
        &node_name(node),
        None,
    ));
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
    shared.recorder.record(op(
        OpType::Invoke,
        "read",
        json!({"key": key}),
        Process::Client(process),
        &node_name(node),
        None,
    ));
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
        Err(e) => complete(
            shared,
            OpType::Fail,
            "read",
            json!({"key": key}),
            process,
            node,
            Some(e.message().to_string()),
        ),
    }
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
    shared.recorder.record(op(
        OpType::Invoke,
        "write",
        json!({"key": key, "value": v}),
        Process::Client(process),
        &node_name(node),
        None,
    ));
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
    }
}
