//! A small blocking RiftKV REST client that classifies every outcome the way the history
//! needs it: done, certainly not done, or unknown.

use base64::Engine;
use serde::Deserialize;
use std::time::Duration;

/// How a request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The operation certainly did not take effect (refused before anything was written).
    Definite(String),
    /// It may or may not have taken effect (timeout, 503 after the coordinator wrote, ...).
    Indeterminate(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Definite(m) | Failure::Indeterminate(m) => m,
        }
    }
}

/// A read: live sibling values and the context covering them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Read {
    pub context: Option<String>,
    pub values: Vec<Vec<u8>>,
}

#[derive(Deserialize)]
struct JsonSibling {
    #[serde(default)]
    value_base64: Option<String>,
    #[serde(default)]
    deleted: bool,
}

#[derive(Deserialize)]
struct JsonObject {
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    siblings: Vec<JsonSibling>,
}

/// One stored copy from `/v1/admin/local`, reduced to what convergence compares.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalCopy {
    /// Sorted (value, deleted) pairs of every sibling.
    pub siblings: Vec<(String, bool)>,
    pub hinted_for: Option<String>,
}

pub struct Client {
    http: reqwest::blocking::Client,
}

/// Percent-encodes a path segment (keys and buckets here are plain ASCII words, but a name
/// with other bytes must still make a valid URL).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn object_url(base: &str, bucket: &str, key: &str) -> String {
    format!(
        "{base}/v1/kv/{}/{}",
        encode_segment(bucket),
        encode_segment(key)
    )
}

fn parse_object(body: &str) -> Result<Read, String> {
    let o: JsonObject =
        serde_json::from_str(body).map_err(|e| format!("unreadable object JSON: {e}"))?;
    let mut values = Vec::new();
    for s in o.siblings.iter().filter(|s| !s.deleted) {
        let b64 = s.value_base64.as_deref().unwrap_or("");
        let v = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("bad value_base64: {e}"))?;
        values.push(v);
    }
    Ok(Read {
        context: o.context,
        values,
    })
}

/// Reduces a `/v1/admin/local` body to its comparable content.
pub fn parse_local(body: &str) -> Result<LocalCopy, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("unreadable local copy: {e}"))?;
    let mut siblings: Vec<(String, bool)> = v
        .get("siblings")
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s.get("value_base64")
                            .and_then(|x| x.as_str())
                            .unwrap_or("")
                            .to_string(),
                        s.get("deleted").and_then(|x| x.as_bool()).unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    siblings.sort();
    Ok(LocalCopy {
        siblings,
        hinted_for: v
            .get("hinted_for")
            .and_then(|h| h.as_str())
            .map(str::to_string),
    })
}

fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

impl Client {
    pub fn new(timeout: Duration) -> Result<Client, reqwest::Error> {
        let http = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_millis(1000)))
            .pool_max_idle_per_host(2)
            .build()?;
        Ok(Client { http })
    }

    /// GET with `Accept: application/json`; a 404 is an empty read. Nothing is written by a
    /// read, so every failure is definite for the purposes of the operation it belongs to.
    pub fn read(&self, base: &str, bucket: &str, key: &str, query: &str) -> Result<Read, Failure> {
        let mut url = object_url(base, bucket, key);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let r = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .map_err(|e| Failure::Definite(describe(&e)))?;
        let status = r.status().as_u16();
        let ctx = r
            .headers()
            .get("x-riftkv-context")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = r.text().map_err(|e| Failure::Definite(describe(&e)))?;
        match status {
            200 | 300 => parse_object(&body).map_err(Failure::Definite),
            404 => Ok(Read {
                context: ctx,
                values: Vec::new(),
            }),
            s => Err(Failure::Definite(format!(
                "read answered {s}: {}",
                short(&body)
            ))),
        }
    }

    /// PUT `value` with an optional context. A refusal that happens before the coordinator
    /// writes (connection refused, 4xx) is definite; anything after it may have been stored.
    pub fn write(
        &self,
        base: &str,
        bucket: &str,
        key: &str,
        value: &[u8],
        context: Option<&str>,
    ) -> Result<(), Failure> {
        let mut req = self
            .http
            .put(object_url(base, bucket, key))
            .header("content-type", "application/json")
            .body(value.to_vec());
        if let Some(c) = context {
            req = req.header("x-riftkv-context", c);
        }
        let r = req.send().map_err(|e| {
            if e.is_connect() {
                Failure::Definite(describe(&e))
            } else {
                Failure::Indeterminate(describe(&e))
            }
        })?;
        let status = r.status().as_u16();
        let body = r.text().unwrap_or_default();
        match status {
            200..=299 => Ok(()),
            400..=499 => Err(Failure::Definite(format!(
                "write answered {status}: {}",
                short(&body)
            ))),
            _ => Err(Failure::Indeterminate(format!(
                "write answered {status}: {}",
                short(&body)
            ))),
        }
    }

    /// This node's own copy of a key (`None` when it holds nothing).
    pub fn local(&self, base: &str, bucket: &str, key: &str) -> Result<Option<LocalCopy>, String> {
        let url = format!(
            "{base}/v1/admin/local/{}/{}",
            encode_segment(bucket),
            encode_segment(key)
        );
        let r = self.http.get(url).send().map_err(|e| describe(&e))?;
        let status = r.status().as_u16();
        let body = r.text().map_err(|e| describe(&e))?;
        match status {
            200 => parse_local(&body).map(Some),
            404 => Ok(None),
            s => Err(format!("local copy answered {s}: {}", short(&body))),
        }
    }

    /// Primary owners of a key.
    pub fn primaries(&self, base: &str, bucket: &str, key: &str) -> Result<Vec<String>, String> {
        let url = format!(
            "{base}/v1/admin/preflist/{}/{}",
            encode_segment(bucket),
            encode_segment(key)
        );
        let r = self.http.get(url).send().map_err(|e| describe(&e))?;
        if !r.status().is_success() {
            return Err(format!("preflist answered {}", r.status()));
        }
        let v: serde_json::Value = r.json().map_err(|e| describe(&e))?;
        Ok(v.get("primaries")
            .and_then(|p| p.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `/v1/admin/status`, if the node answers.
    pub fn status_json(&self, base: &str) -> Option<serde_json::Value> {
        let r = self
            .http
            .get(format!("{base}/v1/admin/status"))
            .send()
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().ok()
    }

    /// Sets bucket properties (JSON).
    pub fn set_props(
        &self,
        base: &str,
        bucket: &str,
        props: &serde_json::Value,
    ) -> Result<(), String> {
        let url = format!("{base}/v1/buckets/{}/props", encode_segment(bucket));
        let r = self
            .http
            .put(url)
            .header("content-type", "application/json")
            .body(props.to_string())
            .send()
            .map_err(|e| describe(&e))?;
        if r.status().is_success() {
            Ok(())
        } else {
            let s = r.status();
            Err(format!(
                "props answered {s}: {}",
                short(&r.text().unwrap_or_default())
            ))
        }
    }

    /// Bucket properties as a node reports them.
    pub fn props(&self, base: &str, bucket: &str) -> Result<serde_json::Value, String> {
        let url = format!("{base}/v1/buckets/{}/props", encode_segment(bucket));
        let r = self.http.get(url).send().map_err(|e| describe(&e))?;
        if !r.status().is_success() {
            return Err(format!("props answered {}", r.status()));
        }
        r.json().map_err(|e| describe(&e))
    }
}

fn short(body: &str) -> String {
    let one: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 200 {
        format!("{}...", one.chars().take(200).collect::<String>())
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_parse_and_skip_tombstones() {
        let body = r#"{"context":"CTX","siblings":[
            {"value_base64":"WzEsMl0=","content_type":"application/json","etag":"a","last_modified":"x","deleted":false},
            {"value_base64":null,"deleted":true},
            {"value_base64":"WzNd","deleted":false}]}"#;
        let r = parse_object(body).unwrap();
        assert_eq!(r.context.as_deref(), Some("CTX"));
        assert_eq!(r.values, vec![b"[1,2]".to_vec(), b"[3]".to_vec()]);
        assert!(parse_object("nope").is_err());
        assert!(parse_object(r#"{"siblings":[{"value_base64":"!!"}]}"#).is_err());
    }

    #[test]
    fn local_copies_compare_by_content() {
        let a = parse_local(r#"{"context":"x","partition":3,"hinted_for":null,"siblings":[{"value_base64":"Yg==","deleted":false},{"value_base64":"YQ==","deleted":false}]}"#).unwrap();
        let b = parse_local(r#"{"context":"y","partition":3,"hinted_for":null,"siblings":[{"value_base64":"YQ==","deleted":false},{"value_base64":"Yg==","deleted":false}]}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.hinted_for, None);
        let h = parse_local(r#"{"hinted_for":"n2","siblings":[]}"#).unwrap();
        assert_eq!(h.hinted_for.as_deref(), Some("n2"));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("set-1"), "set-1");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}
