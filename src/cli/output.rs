//! Turning server answers into what the client subcommands print.
//!
//! A GET answer arrives in one of three shapes: the JSON envelope (what the client asks for), a
//! raw single value, or `multipart/mixed` siblings (if a server or proxy ignores `Accept`). All
//! three are read into the same [`ObjectView`] so printing does not care which came back.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The JSON form of a GET answer (CONTRACT §2).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Envelope {
    #[serde(default)]
    pub context: Option<String>,
    pub siblings: Vec<EnvelopeSibling>,
}

/// One sibling of the JSON envelope.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct EnvelopeSibling {
    #[serde(default)]
    pub value_base64: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
    #[serde(default)]
    pub deleted: bool,
}

/// A decoded sibling.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiblingView {
    pub value: Vec<u8>,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub deleted: bool,
}

/// A decoded GET answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectView {
    pub context: Option<String>,
    pub siblings: Vec<SiblingView>,
}

impl ObjectView {
    /// Decodes the JSON envelope.
    pub fn from_json(body: &[u8]) -> Result<ObjectView, String> {
        let env: Envelope =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON object body: {e}"))?;
        let mut siblings = Vec::with_capacity(env.siblings.len());
        for (i, s) in env.siblings.into_iter().enumerate() {
            let value = match &s.value_base64 {
                Some(b) => B64
                    .decode(b.as_bytes())
                    .map_err(|e| format!("sibling {}: invalid value_base64: {e}", i + 1))?,
                None => Vec::new(),
            };
            siblings.push(SiblingView {
                value,
                content_type: s.content_type,
                etag: s.etag,
                last_modified: s.last_modified,
                deleted: s.deleted,
            });
        }
        Ok(ObjectView {
            context: env.context,
            siblings,
        })
    }

    /// Back to the JSON envelope, for `--output json`.
    pub fn to_envelope(&self) -> Envelope {
        Envelope {
            context: self.context.clone(),
            siblings: self
                .siblings
                .iter()
                .map(|s| EnvelopeSibling {
                    value_base64: if s.deleted {
                        None
                    } else {
                        Some(B64.encode(&s.value))
                    },
                    content_type: s.content_type.clone(),
                    etag: s.etag.clone(),
                    last_modified: s.last_modified.clone(),
                    deleted: s.deleted,
                })
                .collect(),
        }
    }

    /// Live (not deleted) siblings.
    pub fn live(&self) -> impl Iterator<Item = &SiblingView> {
        self.siblings.iter().filter(|s| !s.deleted)
    }
}

/// Finds a parameter (e.g. `boundary`) of a header value like `multipart/mixed; boundary=x`.
pub fn header_param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case(name) {
            Some(v.trim().trim_matches('"').to_string())
        } else {
            None
        }
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Parses a `multipart/mixed` sibling body (one part per sibling, each with its own headers).
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Result<Vec<SiblingView>, String> {
    let boundary = header_param(content_type, "boundary")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("multipart answer without a boundary: {content_type}"))?;
    let delim = format!("--{boundary}").into_bytes();
    let mut pos = find(body, &delim, 0).ok_or("multipart body without its boundary")? + delim.len();
    let mut parts = Vec::new();
    // Bounded by the body: every iteration moves `pos` forward past a delimiter.
    loop {
        if body[pos..].starts_with(b"--") {
            break;
        }
        // Skip the rest of the delimiter line.
        let line_end = find(body, b"\n", pos).ok_or("multipart part without a line break")?;
        let start = line_end + 1;
        let mut next_delim = Vec::with_capacity(delim.len() + 2);
        next_delim.extend_from_slice(b"\n");
        next_delim.extend_from_slice(&delim);
        let next = find(body, &next_delim, start).ok_or("multipart body is not terminated")?;
        let mut end = next;
        if end > start && body[end - 1] == b'\r' {
            end -= 1;
        }
        parts.push(parse_part(&body[start..end.max(start)])?);
        pos = next + next_delim.len();
        if pos > body.len() {
            return Err("multipart body is truncated".into());
        }
    }
    Ok(parts)
}

fn parse_part(part: &[u8]) -> Result<SiblingView, String> {
    let (head, value) = if part.starts_with(b"\r\n") {
        (&part[..0], &part[2..])
    } else if part.starts_with(b"\n") {
        (&part[..0], &part[1..])
    } else if let Some(i) = find(part, b"\r\n\r\n", 0) {
        (&part[..i], &part[i + 4..])
    } else if let Some(i) = find(part, b"\n\n", 0) {
        (&part[..i], &part[i + 2..])
    } else {
        (part, &part[part.len()..])
    };
    let head = std::str::from_utf8(head).map_err(|_| "multipart part headers are not UTF-8")?;
    let mut s = SiblingView::default();
    for line in head.lines() {
        let Some((name, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim().to_string();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => s.content_type = Some(v),
            "etag" => s.etag = Some(v),
            "last-modified" => s.last_modified = Some(v),
            "x-riftkv-deleted" => s.deleted = v.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    if !s.deleted {
        s.value = value.to_vec();
    }
    Ok(s)
}

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

fn render_meta(out: &mut String, s: &SiblingView) {
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
pub fn render_object(view: &ObjectView) -> String {
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
        let v = ObjectView::from_json(TWO_SIBLINGS.as_bytes()).unwrap();
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
    fn envelope_round_trips() {
        let v = ObjectView::from_json(TWO_SIBLINGS.as_bytes()).unwrap();
        let back = serde_json::to_vec(&v.to_envelope()).unwrap();
        assert_eq!(ObjectView::from_json(&back).unwrap(), v);
    }

    #[test]
    fn bad_base64_is_an_error() {
        let body = r#"{"context":"c","siblings":[{"value_base64":"!!!"}]}"#;
        assert!(ObjectView::from_json(body.as_bytes()).is_err());
        assert!(ObjectView::from_json(b"{}").is_err());
    }

    #[test]
    fn single_value_renders_metadata_then_value() {
        let v = ObjectView {
            context: Some("c1".into()),
            siblings: vec![SiblingView {
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
        let v = ObjectView {
            context: None,
            siblings: vec![SiblingView {
                value: vec![0, 159, 146, 150],
                ..Default::default()
            }],
        };
        assert!(render_object(&v).contains("<binary value, 4 bytes; base64: AJ+Slg==>"));
        let big = ObjectView {
            context: None,
            siblings: vec![SiblingView {
                value: vec![0; 10_000],
                ..Default::default()
            }],
        };
        assert!(render_object(&big).contains("10000 bytes; use --output value"));
    }

    #[test]
    fn multipart_siblings_parse() {
        let body = b"--XyZ\r\nContent-Type: text/plain\r\nETag: \"a\"\r\nLast-Modified: Wed, 01 May 2024 10:00:00 GMT\r\n\r\nfirst\r\nline\r\n--XyZ\r\nETag: \"b\"\r\nX-RiftKV-Deleted: true\r\n\r\n\r\n--XyZ\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01--XyZ-not\r\n--XyZ--\r\n";
        let parts = parse_multipart("multipart/mixed; boundary=\"XyZ\"", body).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].value, b"first\r\nline");
        assert_eq!(parts[0].content_type.as_deref(), Some("text/plain"));
        assert_eq!(parts[0].etag.as_deref(), Some("\"a\""));
        assert!(parts[0].last_modified.is_some());
        assert!(parts[1].deleted);
        assert!(parts[1].value.is_empty());
        assert_eq!(parts[2].value, b"\x00\x01--XyZ-not");
    }

    #[test]
    fn malformed_multipart_is_an_error_not_a_panic() {
        assert!(parse_multipart("multipart/mixed", b"--a\r\n\r\nx\r\n--a--").is_err());
        assert!(parse_multipart("multipart/mixed; boundary=a", b"nothing").is_err());
        assert!(parse_multipart("multipart/mixed; boundary=a", b"--a\r\n\r\nx").is_err());
        assert!(parse_multipart("multipart/mixed; boundary=a", b"--a").is_err());
        assert_eq!(
            parse_multipart("multipart/mixed; boundary=a", b"--a--").unwrap(),
            vec![]
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
    fn header_params_are_found() {
        assert_eq!(
            header_param("multipart/mixed; charset=x; Boundary=\"q r\"", "boundary").as_deref(),
            Some("q r")
        );
        assert_eq!(header_param("text/plain", "boundary"), None);
    }
}
