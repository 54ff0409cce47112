//! The history: every operation of a run, in the order it happened, Jepsen style. A client
//! operation is an `invoke` followed by exactly one completion: `ok` (it happened), `fail` (it
//! certainly did not happen) or `info` (unknown: it may or may not have happened). The nemesis
//! records its faults the same way under the process `nemesis`.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What kind of event an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl OpType {
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        }
    }
}

/// Who performed an operation: a numbered client process or a named actor (`nemesis`,
/// `final`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    Client(u64),
    Named(String),
}

/// One history entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    #[serde(rename = "type")]
    pub kind: OpType,
    /// The function: `add`, `read`, `write`, `start-partition`, ...
    pub f: String,
    pub value: serde_json::Value,
    pub process: Process,
    /// Nanoseconds since the start of the run.
    pub time: u64,
    /// The node the request went to (empty for nemesis entries covering several nodes).
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Op {
    pub fn is_client(&self) -> bool {
        matches!(self.process, Process::Client(_))
    }
}

struct Inner {
    ops: Vec<Op>,
    file: Option<BufWriter<File>>,
    write_error: Option<String>,
}

/// A shared, append-only history; every entry also goes to `history.jsonl` at once so that
/// even an interrupted run leaves its history behind.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    inner: Arc<Mutex<Inner>>,
}

impl Recorder {
    /// Records into memory and, when `path` is given, into that JSON-lines file.
    pub fn new(path: Option<&Path>) -> std::io::Result<Recorder> {
        let file = match path {
            Some(p) => Some(BufWriter::new(File::create(p)?)),
            None => None,
        };
        Ok(Recorder {
            start: Instant::now(),
            inner: Arc::new(Mutex::new(Inner {
                ops: Vec::new(),
                file,
                write_error: None,
            })),
        })
    }

    /// Nanoseconds since the run started.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Appends `op`, stamping it with the current time; returns the time used.
    pub fn record(&self, mut op: Op) -> u64 {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Taken under the lock so times in the history never go backwards.
        op.time = self.now();
        let t = op.time;
        if let Some(f) = g.file.as_mut() {
            let line =
                serde_json::to_string(&op).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            if let Err(e) = writeln!(f, "{line}") {
                g.write_error.get_or_insert(e.to_string());
            }
        }
        g.ops.push(op);
        t
    }

    /// Flushes the file; reports the first write error seen, if any.
    pub fn flush(&self) -> Result<(), String> {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(f) = g.file.as_mut()
            && let Err(e) = f.flush()
        {
            g.write_error.get_or_insert(e.to_string());
        }
        match &g.write_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// A copy of every entry so far.
    pub fn snapshot(&self) -> Vec<Op> {
        match self.inner.lock() {
            Ok(g) => g.ops.clone(),
            Err(poisoned) => poisoned.into_inner().ops.clone(),
        }
    }
}

/// Builds an entry; the recorder sets its time.
pub fn op(
    kind: OpType,
    f: &str,
    value: serde_json::Value,
    process: Process,
    node: &str,
    error: Option<String>,
) -> Op {
    Op {
        kind,
        f: f.to_string(),
        value,
        process,
        time: 0,
        node: node.to_string(),
        error,
    }
}

/// A client operation paired with its completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Completed<'a> {
    pub invoke: &'a Op,
    pub completion: &'a Op,
}

impl Completed<'_> {
    /// Latency in nanoseconds.
    pub fn latency_ns(&self) -> u64 {
        self.completion.time.saturating_sub(self.invoke.time)
    }
}

/// Pairs each client invocation with the next completion of the same process (a process runs
/// one operation at a time). Invocations never completed are left out.
pub fn pair(history: &[Op]) -> Vec<Completed<'_>> {
    let mut open: std::collections::HashMap<&Process, &Op> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for o in history.iter().filter(|o| o.is_client()) {
        match o.kind {
            OpType::Invoke => {
                open.insert(&o.process, o);
            }
            _ => {
                if let Some(inv) = open.remove(&o.process) {
                    out.push(Completed {
                        invoke: inv,
                        completion: o,
                    });
                }
            }
        }
    }
    out
}

/// Reads a history back from JSON lines.
#[cfg(test)]
pub fn read_jsonl(text: &str) -> Result<Vec<Op>, serde_json::Error> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_serialise_in_jepsen_shape() {
        let o = Op {
            kind: OpType::Info,
            f: "add".into(),
            value: json!({"key": "s1", "element": 7}),
            process: Process::Client(3),
            time: 42,
            node: "n2".into(),
            error: Some("timeout".into()),
        };
        let v: serde_json::Value = serde_json::to_value(&o).unwrap();
        assert_eq!(v["type"], "info");
        assert_eq!(v["f"], "add");
        assert_eq!(v["process"], 3);
        assert_eq!(v["time"], 42);
        assert_eq!(v["node"], "n2");
        assert_eq!(v["value"]["element"], 7);
        let n = Op {
            process: Process::Named("nemesis".into()),
            error: None,
            ..o.clone()
        };
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["process"], "nemesis");
        assert!(v.get("error").is_none());
        let back = read_jsonl(&format!(
            "{}\n\n{}\n",
            serde_json::to_string(&o).unwrap(),
            serde_json::to_string(&n).unwrap()
        ))
        .unwrap();
        assert_eq!(back, vec![o, n]);
    }

    #[test]
    fn recorder_writes_lines_with_monotonic_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let r = Recorder::new(Some(&path)).unwrap();
        for i in 0..5 {
            r.record(op(
                OpType::Invoke,
                "add",
                json!(i),
                Process::Client(i),
                "n1",
                None,
            ));
        }
        r.flush().unwrap();
        let back = read_jsonl(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back.len(), 5);
        assert!(back.windows(2).all(|w| w[0].time <= w[1].time));
        assert_eq!(back, r.snapshot());
    }

    #[test]
    fn pairing_matches_each_process_to_its_completion() {
        let mk = |kind, p, t| Op {
            kind,
            f: "add".into(),
            value: json!(null),
            process: Process::Client(p),
            time: t,
            node: "n1".into(),
            error: None,
        };
        let h = vec![
            mk(OpType::Invoke, 1, 10),
            mk(OpType::Invoke, 2, 11),
            mk(OpType::Ok, 2, 15),
            mk(OpType::Info, 1, 30),
            mk(OpType::Invoke, 11, 31),
            Op {
                process: Process::Named("nemesis".into()),
                ..mk(OpType::Info, 0, 32)
            },
        ];
        let p = pair(&h);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].latency_ns(), 4);
        assert_eq!(p[1].latency_ns(), 20);
        assert_eq!(p[1].completion.kind, OpType::Info);
    }
}
