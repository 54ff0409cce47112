//! Turning server answers into what the client subcommands print.
//!
//! Answers arrive decoded by [`riftkv_client`] (a read is an [`Object`] whichever of its three
//! shapes came back); this module only decides how they look on a terminal.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use riftkv_client::{Object, Sibling};
use std::fmt::Write as _;

/// Largest binary value shown inline as base64 in human output.
const MAX_INLINE_BINARY: usize = 4096;

/// Text is printed as is; anything else as base64 (or a pointer to `--output value`).
fn render_value(out: &mut String, value: &[u8]) {
    match std::str::from_utf8(value) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) =>
        {
            out.push_str(text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        _ if value.len() <= MAX_INLINE_BINARY => {
            let _ = writeln!(
                out,
                "<binary value, {} bytes; base64: {}>",
                value.len(),
                B64.encode(value)
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "<binary value, {} bytes; use --output value or --output json>",
                value.len()
            );
        }
    }
}

fn render_meta(out: &mut String, s: &Sibling) {
    if let Some(ct) = &s.content_type {
        let _ = writeln!(out, "content-type: {ct}");
    }
    if let Some(etag) = &s.etag {
        let _ = writeln!(out, "etag: {etag}");
    }
    if let Some(lm) = &s.last_modified {
        let _ = writeln!(out, "last-modified: {lm}");
    }
}

/// The human form of a GET answer: the context, then each sibling's metadata and value.
pub fn render_object(view: &Object) -> String {
    let mut out = String::new();
    if let Some(ctx) = &view.context {
        let _ = writeln!(out, "context: {ctx}");
    }
    match view.siblings.as_slice() {
        [] => out.push_str("(no versions)\n"),
        [one] => {
            if one.deleted {
                out.push_str("deleted: true\n");
            }
            render_meta(&mut out, one);
            if !one.deleted {
                out.push('\n');
                render_value(&mut out, &one.value);
            }
        }
        many => {
            let _ = writeln!(out, "siblings: {}", many.len());
            for (i, s) in many.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "\n--- sibling {} of {}{}",
                    i + 1,
                    many.len(),
                    if s.deleted { " (deleted)" } else { "" }
                );
                render_meta(&mut out, s);
                if !s.deleted {
                    out.push('\n');
                    render_value(&mut out, &s.value);
                }
            }
        }
    }
    out
}

fn field<'a>(v: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    v.get(key).unwrap_or(&serde_json::Value::Null)
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Pads columns to their widest cell.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The human form of `GET /v1/admin/status`.
pub fn render_status(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let settled = match field(v, "ring_settled").as_bool() {
        Some(true) => "settled",
        Some(false) => "not settled",
        None => "settled: unknown",
    };
    let _ = writeln!(out, "node:              {}", text(field(v, "node_id")));
    let _ = writeln!(out, "cluster:           {}", text(field(v, "cluster_name")));
    let _ = writeln!(
        out,
        "ring:              version {}, {} partitions, {settled}",
        text(field(v, "ring_version")),
        text(field(v, "ring_size"))
    );
    let _ = writeln!(
        out,
        "owned partitions:  {}",
        text(field(v, "owned_partitions"))
    );
    let _ = writeln!(
        out,
        "hints pending:     {}",
        text(field(v, "hints_pending"))
    );
    let _ = writeln!(
        out,
        "handoffs pending:  {}",
        text(field(v, "handoffs_pending"))
    );
    // Shown only while true: a restarted node whose peers still hold hints for it.
    if field(v, "catching_up").as_bool() == Some(true) {
        let _ = writeln!(
            out,
            "catching up:       yes (not ready: peers hold hints for it)"
        );
    }
    if let Some(t) = v.get("transfers").filter(|t| t.is_object()) {
        out.push_str(&render_transfers(t));
    }
    if let Some(id) = v.get("staged_plan").and_then(|p| p.as_u64()) {
        let _ = writeln!(
            out,
            "ring change:       plan {id} staged, waiting for `riftkv cluster commit` (see `riftkv cluster plan`)"
        );
    }
    let members = field(v, "members").as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "\nmembers: {}", members.len());
    let mut rows = vec![vec![
        "NODE".to_string(),
        "STATUS".into(),
        "REACHABLE".into(),
        "ZONE".into(),
        "API".into(),
        "PEER".into(),
    ]];
    for m in &members {
        rows.push(vec![
            text(field(m, "node_id")),
            text(field(m, "status")),
            match field(m, "reachable").as_bool() {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "?".into(),
            },
            text(field(m, "zone")),
            text(field(m, "api_addr")),
            text(field(m, "peer_addr")),
        ]);
    }
    out.push_str(&table(&rows));
    // Older servers send no workers: print nothing rather than an empty table.
    if let Some(workers) = field(v, "workers").as_array().filter(|w| !w.is_empty()) {
        let _ = writeln!(out, "\nworkers: {}", workers.len());
        let mut rows = vec![vec![
            "WORKER".to_string(),
            "STATE".into(),
            "STEPS".into(),
            "LAST ERROR".into(),
        ]];
        for w in workers {
            rows.push(vec![
                text(field(w, "name")),
                text(field(w, "state")),
                text(field(w, "steps")),
                text(field(w, "last_error")),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

/// The lines of a pending ring change: progress, bytes and this node's limits.
fn render_transfers(t: &serde_json::Value) -> String {
    let mut out = String::new();
    let done = field(t, "partitions_done").as_u64().unwrap_or(0);
    let total = field(t, "partitions_total").as_u64().unwrap_or(0);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let eta = match field(t, "eta_secs").as_u64() {
        Some(s) => format!(", about {s} s left"),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "transfers:         {done}/{total} partitions ({percent}%), {} bytes moved here{eta}",
        text(field(t, "bytes_moved"))
    );
    if let Some(r) = t.get("replacing").filter(|r| r.is_object()) {
        let _ = writeln!(
            out,
            "replacing:         {} by {}",
            text(field(r, "old")),
            text(field(r, "new"))
        );
    }
    let limit = match field(t, "max_bytes_per_sec").as_u64() {
        Some(0) | None => "no byte limit".to_string(),
        Some(b) => format!("at most {b} bytes/s"),
    };
    let _ = writeln!(
        out,
        "transfer limits:   {} streams, {limit}",
        text(field(t, "concurrency"))
    );
    out
}

/// The human form of `GET /v1/admin/ring`: a summary per owner, then every partition.
pub fn render_ring(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let partitions = field(v, "partitions")
        .as_array()
        .cloned()
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "ring version {}, {} partitions, n = {}",
        text(field(v, "ring_version")),
        text(field(v, "ring_size")),
        text(field(v, "n"))
    );
    let mut owners: Vec<(String, usize)> = Vec::new();
    for p in &partitions {
        let owner = text(field(p, "owner"));
        match owners.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, n)) => *n += 1,
            None => owners.push((owner, 1)),
        }
    }
    owners.sort();
    out.push_str("\npartitions per owner:\n");
    let mut rows: Vec<Vec<String>> = owners
        .iter()
        .map(|(o, n)| vec![format!("  {o}"), n.to_string()])
        .collect();
    out.push_str(&table(&rows));
    out.push('\n');
    rows = vec![vec![
        "PARTITION".into(),
        "OWNER".into(),
        "PREFERENCE LIST".into(),
    ]];
    for p in &partitions {
        let pref = field(p, "preference_list")
            .as_array()
            .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| "-".into());
        rows.push(vec![text(field(p, "id")), text(field(p, "owner")), pref]);
    }
    out.push_str(&table(&rows));
    out
}

/// The human form of `GET /v1/admin/plan`: whether a change is staged or applying, its
/// membership changes, the partitions per node before and after, and the transfers.
pub fn render_plan(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let transfers = field(v, "transfers")
        .as_array()
        .cloned()
        .unwrap_or_default();
    let done = transfers
        .iter()
        .filter(|t| field(t, "done").as_bool() == Some(true))
        .count();
    let pending = field(v, "pending").as_bool() == Some(true);
    let staged = field(v, "staged").as_bool() == Some(true);
    let state = match (pending, staged) {
        (false, _) => format!(
            "no ring change pending (ring version {})",
            text(field(v, "ring_version"))
        ),
        (true, true) => format!(
            "plan {}: staged, waiting for `riftkv cluster commit`",
            text(field(v, "plan_id"))
        ),
        (true, false) => format!(
            "plan {}: applying, {done}/{} transfers done",
            text(field(v, "plan_id")),
            transfers.len()
        ),
    };
    let _ = writeln!(out, "{state}");
    let changes = field(v, "changes").as_array().cloned().unwrap_or_default();
    if !changes.is_empty() {
        out.push_str("\nchanges:\n");
        let rows: Vec<Vec<String>> = changes
            .iter()
            .map(|c| {
                let mut row = vec![
                    format!("  {}", text(field(c, "action"))),
                    text(field(c, "node")),
                ];
                if let Some(by) = field(c, "by").as_str() {
                    row.push(format!("by {by}"));
                }
                if field(c, "planned").as_bool() == Some(false) {
                    row.push("(not in the plan yet)".into());
                }
                row
            })
            .collect();
        out.push_str(&table(&rows));
    }
    let mut rows = vec![vec![
        "NODE".to_string(),
        "BEFORE".into(),
        "AFTER".into(),
        "DIFF".into(),
    ]];
    if let Some(nodes) = field(v, "partitions").as_object() {
        for (node, c) in nodes {
            let before = field(c, "before").as_i64().unwrap_or(0);
            let after = field(c, "after").as_i64().unwrap_or(0);
            let diff = match after - before {
                0 => "0".to_string(),
                d => format!("{d:+}"),
            };
            rows.push(vec![
                node.clone(),
                before.to_string(),
                after.to_string(),
                diff,
            ]);
        }
    }
    out.push('\n');
    out.push_str(&table(&rows));
    let _ = writeln!(out, "\ntransfers: {}", transfers.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_SIBLINGS: &str = r#"{
        "context": "ctx-abc",
        "siblings": [
            {"value_base64": "aGVsbG8=", "content_type": "text/plain", "etag": "\"e1\"",
             "last_modified": "2024-05-01T10:00:00Z", "deleted": false},
            {"value_base64": null, "content_type": null, "etag": "\"e2\"",
             "last_modified": "2024-05-01T10:00:01Z", "deleted": true}
        ]}"#;

    #[test]
    fn json_envelope_decodes_and_renders_every_sibling() {
        let v = Object::from_json(TWO_SIBLINGS.as_bytes()).unwrap();
        assert_eq!(v.context.as_deref(), Some("ctx-abc"));
        assert_eq!(v.siblings.len(), 2);
        assert_eq!(v.siblings[0].value, b"hello");
        assert!(v.siblings[1].deleted);
        assert_eq!(v.live().count(), 1);
        let text = render_object(&v);
        assert!(
            text.starts_with("context: ctx-abc\nsiblings: 2\n"),
            "{text}"
        );
        assert!(text.contains("--- sibling 1 of 2\ncontent-type: text/plain\netag: \"e1\"\n"));
        assert!(text.contains("\nhello\n"));
        assert!(text.contains("--- sibling 2 of 2 (deleted)\netag: \"e2\"\n"));
    }

    #[test]
    fn single_value_renders_metadata_then_value() {
        let v = Object {
            context: Some("c1".into()),
            siblings: vec![Sibling {
                value: b"v".to_vec(),
                content_type: Some("text/plain".into()),
                etag: Some("\"x\"".into()),
                last_modified: None,
                deleted: false,
            }],
        };
        assert_eq!(
            render_object(&v),
            "context: c1\ncontent-type: text/plain\netag: \"x\"\n\nv\n"
        );
    }

    #[test]
    fn binary_values_are_base64() {
        let v = Object {
            context: None,
            siblings: vec![Sibling {
                value: vec![0, 159, 146, 150],
                ..Default::default()
            }],
        };
        assert!(render_object(&v).contains("<binary value, 4 bytes; base64: AJ+Slg==>"));
        let big = Object {
            context: None,
            siblings: vec![Sibling {
                value: vec![0; 10_000],
                ..Default::default()
            }],
        };
        assert!(render_object(&big).contains("10000 bytes; use --output value"));
    }

    #[test]
    fn status_renders_workers() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"node_id":"node1","members":[],"workers":[
            {"name":"gossip","state":"active","last_error":null,"steps":12},
            {"name":"reaper","state":"error","last_error":"peer down","steps":3}]}"#,
        )
        .unwrap();
        let text = render_status(&v);
        assert!(text.contains("workers: 2"), "{text}");
        let row = |name: &str| {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        assert_eq!(row("gossip"), "gossip active 12 -");
        assert_eq!(row("reaper"), "reaper error 3 peer down");
        let without: serde_json::Value = serde_json::from_str(r#"{"members":[]}"#).unwrap();
        assert!(!render_status(&without).contains("workers"));
    }

    #[test]
    fn status_says_when_the_node_is_catching_up() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"members":[],"catching_up":true}"#).unwrap();
        assert!(render_status(&v).contains("catching up:       yes"));
        let ready: serde_json::Value =
            serde_json::from_str(r#"{"members":[],"catching_up":false}"#).unwrap();
        assert!(!render_status(&ready).contains("catching up"));
    }

    #[test]
    fn status_renders_transfers_while_partitions_move() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"node_id":"node1","members":[],"transfers":{"partitions_done":12,
            "partitions_total":48,"bytes_moved":1048576,"concurrency":2,
            "max_bytes_per_sec":0,"replacing":{"old":"node2","new":"node4"},"eta_secs":90}}"#,
        )
        .unwrap();
        let text = render_status(&v);
        assert!(
            text.contains(
                "transfers:         12/48 partitions (25%), 1048576 bytes moved here, about 90 s left"
            ),
            "{text}"
        );
        assert!(text.contains("replacing:         node2 by node4"), "{text}");
        assert!(
            text.contains("transfer limits:   2 streams, no byte limit"),
            "{text}"
        );
        let idle: serde_json::Value = serde_json::from_str(r#"{"members":[]}"#).unwrap();
        assert!(!render_status(&idle).contains("transfers"));
        assert!(!render_status(&idle).contains("ring change"));
    }

    #[test]
    fn status_says_when_a_ring_change_waits_for_commit() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"node_id":"node1","members":[],"staged_plan":7}"#).unwrap();
        let text = render_status(&v);
        assert!(
            text.contains("ring change:       plan 7 staged, waiting for `riftkv cluster commit`"),
            "{text}"
        );
    }

    #[test]
    fn status_renders_members() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"node_id":"node1","cluster_name":"riftkv-dev","ring_version":7,"ring_size":64,
            "members":[{"node_id":"node1","api_addr":"127.0.0.1:8701","peer_addr":"127.0.0.1:8801",
            "zone":null,"status":"valid","reachable":true},
            {"node_id":"node2","api_addr":"127.0.0.1:8702","peer_addr":"127.0.0.1:8802",
            "zone":"z2","status":"joining","reachable":false}],
            "owned_partitions":32,"hints_pending":0,"handoffs_pending":3,"ring_settled":false}"#,
        )
        .unwrap();
        let text = render_status(&v);
        assert!(text.contains("node:              node1"), "{text}");
        assert!(text.contains("version 7, 64 partitions, not settled"));
        assert!(text.contains("handoffs pending:  3"));
        assert!(text.contains("members: 2"));
        let line = text.lines().find(|l| l.starts_with("node2")).unwrap();
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            [
                "node2",
                "joining",
                "NO",
                "z2",
                "127.0.0.1:8702",
                "127.0.0.1:8802"
            ]
        );
    }

    #[test]
    fn ring_renders_owners_and_preference_lists() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"ring_version":3,"ring_size":4,"n":2,"partitions":[
            {"id":0,"owner":"a","preference_list":["a","b"]},
            {"id":1,"owner":"b","preference_list":["b","a"]},
            {"id":2,"owner":"a","preference_list":["a","b"]},
            {"id":3,"owner":"b","preference_list":["b","a"]}]}"#,
        )
        .unwrap();
        let text = render_ring(&v);
        assert!(
            text.starts_with("ring version 3, 4 partitions, n = 2\n"),
            "{text}"
        );
        assert!(text.contains("  a  2\n"), "{text}");
        let line = text.lines().find(|l| l.starts_with("1 ")).unwrap();
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            ["1", "b", "b,a"]
        );
    }

    #[test]
    fn plan_renders_the_staged_table() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"pending":true,"staged":true,"plan_id":9,"ring_version":12,
            "changes":[{"action":"join","node":"d","by":null,"planned":true},
                       {"action":"replace","node":"b","by":"e","planned":true},
                       {"action":"leave","node":"f","by":null,"planned":false}],
            "transfers":[{"partition":1,"from":"a","to":"d","done":false},
                         {"partition":2,"from":"c","to":"d","done":true}],
            "partitions":{"a":{"before":11,"after":8},"c":{"before":10,"after":10},
                          "d":{"before":0,"after":8}}}"#,
        )
        .unwrap();
        let text = render_plan(&v);
        assert!(
            text.starts_with("plan 9: staged, waiting for `riftkv cluster commit`\n"),
            "{text}"
        );
        let words = |start: &str| -> Vec<String> {
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(start))
                .unwrap_or_else(|| panic!("no line {start}: {text}"));
            line.split_whitespace().map(str::to_string).collect()
        };
        assert_eq!(words("NODE"), ["NODE", "BEFORE", "AFTER", "DIFF"]);
        assert_eq!(words("a "), ["a", "11", "8", "-3"]);
        assert_eq!(words("c "), ["c", "10", "10", "0"]);
        assert_eq!(words("d "), ["d", "0", "8", "+8"]);
        assert_eq!(words("join"), ["join", "d"]);
        assert_eq!(words("replace"), ["replace", "b", "by", "e"]);
        assert_eq!(
            words("leave"),
            ["leave", "f", "(not", "in", "the", "plan", "yet)"]
        );
        assert!(text.contains("\ntransfers: 2\n"), "{text}");

        let mut applying = v.clone();
        applying["staged"] = false.into();
        let text = render_plan(&applying);
        assert!(
            text.starts_with("plan 9: applying, 1/2 transfers done\n"),
            "{text}"
        );
        let idle: serde_json::Value = serde_json::from_str(
            r#"{"pending":false,"staged":false,"plan_id":null,"ring_version":4,
            "changes":[],"transfers":[],"partitions":{"a":{"before":4,"after":4}}}"#,
        )
        .unwrap();
        let text = render_plan(&idle);
        assert!(
            text.starts_with("no ring change pending (ring version 4)\n"),
            "{text}"
        );
        assert!(!text.contains("changes:"), "{text}");
    }
}
