//! The harness's view of the REST API, on the blocking `riftkv-client`: every outcome
//! classified the way the history needs it: done, certainly not done, or unknown.

use riftkv_client::{ClientBuilder, Error, Object, Options, Quorum, Stage, TypeValue, blocking};
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

impl Read {
    /// The live values of a decoded object (tombstones dropped).
    fn of(obj: Object) -> Read {
        Read {
            values: obj
                .siblings
                .into_iter()
                .filter(|s| !s.deleted)
                .map(|s| s.value)
                .collect(),
            context: obj.context,
        }
    }
}

/// One stored copy from `/v1/admin/local`, reduced to what convergence compares.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalCopy {
    /// Sorted (value, deleted) pairs of every sibling.
    pub siblings: Vec<(String, bool)>,
    pub hinted_for: Option<String>,
}

/// A client of every node: one connection pool, the node chosen per call by its base URL.
pub struct Client {
    http: blocking::Client,
}

/// Reduces a `/v1/admin/local` answer to its comparable content.
pub fn parse_local(v: &serde_json::Value) -> LocalCopy {
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
    LocalCopy {
        siblings,
        hinted_for: v
            .get("hinted_for")
            .and_then(|h| h.as_str())
            .map(str::to_string),
    }
}

/// One line for a failure: `{what} answered {status}: {body}` when the server said no, the
/// whole cause chain when it could not be asked.
fn describe(what: &str, e: &Error) -> String {
    match (e.server(), e.transport()) {
        (Some(s), _) => format!("{what} answered {}: {}", s.status, short(&s.body)),
        (_, Some(t)) => t.full_chain(),
        _ => e.to_string(),
    }
}

/// The outcome of a write that did not return `Ok`. Refused before the coordinator wrote
/// (no connection, or a 4xx) is definite; anything after may have been stored.
pub fn classify_write(e: &Error) -> Result<(), Failure> {
    match e {
        // Nothing was sent.
        Error::InvalidRequest(m) => Err(Failure::Definite(m.clone())),
        Error::Timeout(t) | Error::Connection(t) => {
            if t.connect {
                return Err(Failure::Definite(t.full_chain()));
            }
            match (t.stage, t.status) {
                // The status arrived and only the (unused) body broke: the status decides.
                (Stage::Body, Some(s)) if (200..300).contains(&s) => Ok(()),
                (Stage::Body, Some(s)) if (400..500).contains(&s) => {
                    Err(Failure::Definite(format!("write answered {s}: ")))
                }
                (Stage::Body, Some(s)) => {
                    Err(Failure::Indeterminate(format!("write answered {s}: ")))
                }
                _ => Err(Failure::Indeterminate(t.full_chain())),
            }
        }
        // Only a 2xx answer's echoed body can be unreadable: the write was acknowledged.
        Error::UnexpectedResponse(_) => Ok(()),
        other => match other.status() {
            Some(s) if (400..500).contains(&s) => Err(Failure::Definite(describe("write", other))),
            _ => Err(Failure::Indeterminate(describe("write", other))),
        },
    }
}

impl Client {
    pub fn new(timeout: Duration) -> Result<Client, Error> {
        let http = ClientBuilder::new(&crate::cluster::api_url(1))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_millis(1000)))
            .pool_max_idle_per_host(2)
            .build_blocking()?;
        Ok(Client { http })
    }

    fn at(&self, base: &str) -> Result<blocking::Client, Error> {
        self.http.at(base)
    }

    /// GET with `Accept: application/json` at read quorum `r` (the bucket's default when
    /// `None`); a 404 is an empty read. Nothing is written by a read, so every failure is
    /// definite for the purposes of the operation it belongs to.
    pub fn read(
        &self,
        base: &str,
        bucket: &str,
        key: &str,
        r: Option<Quorum>,
    ) -> Result<Read, Failure> {
        let opts = Options {
            r,
            ..Options::default()
        };
        match self.at(base).and_then(|c| c.get(bucket, key, &opts)) {
            Ok(obj) => Ok(Read::of(obj)),
            Err(Error::NotFound { context, .. }) => Ok(Read {
                context,
                values: Vec::new(),
            }),
            Err(e) => Err(Failure::Definite(describe("read", &e))),
        }
    }

    /// PUT `value` with an optional context, classified by [`classify_write`].
    pub fn write(
        &self,
        base: &str,
        bucket: &str,
        key: &str,
        value: &[u8],
        context: Option<&str>,
    ) -> Result<(), Failure> {
        let opts = Options {
            content_type: Some("application/json".into()),
            context: context.map(str::to_string),
            ..Options::default()
        };
        match self
            .at(base)
            .and_then(|c| c.put(bucket, key, value.to_vec(), &opts))
        {
            Ok(_) => Ok(()),
            Err(e) => classify_write(&e),
        }
    }

    /// GET of a data type value at read quorum `r` (the bucket's default when `None`);
    /// `None` for a 404 (nothing there yet). Failures are definite, as for [`Client::read`].
    pub fn read_type(
        &self,
        base: &str,
        bucket: &str,
        key: &str,
        r: Option<Quorum>,
    ) -> Result<Option<TypeValue>, Failure> {
        let opts = Options {
            r,
            ..Options::default()
        };
        match self.at(base).and_then(|c| c.get_type(bucket, key, &opts)) {
            Ok(v) => Ok(Some(v)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Failure::Definite(describe("read", &e))),
        }
    }

    /// POST of a data type operation with an optional context, classified by
    /// [`classify_write`].
    pub fn update_type(
        &self,
        base: &str,
        bucket: &str,
        key: &str,
        operation: &serde_json::Value,
        context: Option<&str>,
    ) -> Result<(), Failure> {
        let opts = Options {
            context: context.map(str::to_string),
            ..Options::default()
        };
        match self
            .at(base)
            .and_then(|c| c.update_type(bucket, key, operation, &opts))
        {
            Ok(_) => Ok(()),
            Err(e) => classify_write(&e),
        }
    }

    /// This node's own copy of a key (`None` when it holds nothing).
    pub fn local(&self, base: &str, bucket: &str, key: &str) -> Result<Option<LocalCopy>, String> {
        match self.at(base).and_then(|c| c.local(bucket, key)) {
            Ok(v) => Ok(Some(parse_local(&v))),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(describe("local copy", &e)),
        }
    }

    /// Primary owners of a key.
    pub fn primaries(&self, base: &str, bucket: &str, key: &str) -> Result<Vec<String>, String> {
        self.at(base)
            .and_then(|c| c.preflist(bucket, key))
            .map(|p| p.primaries.into_iter().map(|n| n.0).collect())
            .map_err(|e| describe("preflist", &e))
    }

    /// `/v1/admin/status`, if the node answers.
    pub fn status_json(&self, base: &str) -> Option<serde_json::Value> {
        self.at(base).and_then(|c| c.status()).ok()
    }

    /// Sets bucket properties (JSON).
    pub fn set_props(
        &self,
        base: &str,
        bucket: &str,
        props: &serde_json::Value,
    ) -> Result<(), String> {
        self.at(base)
            .and_then(|c| c.set_bucket_props(bucket, props))
            .map_err(|e| describe("props", &e))
    }

    /// Bucket properties as a node reports them.
    pub fn props(&self, base: &str, bucket: &str) -> Result<serde_json::Value, String> {
        self.at(base)
            .and_then(|c| c.bucket_props(bucket))
            .map_err(|e| describe("props", &e))
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
    use riftkv_client::response::{decode_get, decode_put, error_of};
    use riftkv_client::{RawResponse, TransportError, header::HeaderMap};

    fn answer(status: u16, body: &str) -> RawResponse {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        RawResponse::new(status, h, body.as_bytes().to_vec())
    }

    #[test]
    fn objects_parse_and_skip_tombstones() {
        let body = r#"{"context":"CTX","siblings":[
            {"value_base64":"WzEsMl0=","content_type":"application/json","etag":"a","last_modified":"x","deleted":false},
            {"value_base64":null,"deleted":true},
            {"value_base64":"WzNd","deleted":false}]}"#;
        let r = Read::of(decode_get(&answer(300, body)).unwrap());
        assert_eq!(r.context.as_deref(), Some("CTX"));
        assert_eq!(r.values, vec![b"[1,2]".to_vec(), b"[3]".to_vec()]);
        assert!(Object::from_json(b"nope").is_err());
        assert!(Object::from_json(br#"{"siblings":[{"value_base64":"!!"}]}"#).is_err());
    }

    #[test]
    fn local_copies_compare_by_content() {
        let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        let a = parse_local(&json(
            r#"{"context":"x","partition":3,"hinted_for":null,"siblings":[{"value_base64":"Yg==","deleted":false},{"value_base64":"YQ==","deleted":false}]}"#,
        ));
        let b = parse_local(&json(
            r#"{"context":"y","partition":3,"hinted_for":null,"siblings":[{"value_base64":"YQ==","deleted":false},{"value_base64":"Yg==","deleted":false}]}"#,
        ));
        assert_eq!(a, b);
        assert_eq!(a.hinted_for, None);
        let h = parse_local(&json(r#"{"hinted_for":"n2","siblings":[]}"#));
        assert_eq!(h.hinted_for.as_deref(), Some("n2"));
    }

    fn transport(stage: Stage, connect: bool, timeout: bool, status: Option<u16>) -> Error {
        let t = TransportError {
            stage,
            base: "http://10.77.0.1:8700/".into(),
            connect,
            timeout,
            status,
            chain: vec!["error sending request".into(), "cause".into()],
        };
        if timeout {
            Error::Timeout(t)
        } else {
            Error::Connection(t)
        }
    }

    #[test]
    fn writes_are_indeterminate_unless_certainly_refused() {
        let definite = |r: Result<(), Failure>| matches!(r, Err(Failure::Definite(_)));
        let unknown = |r: Result<(), Failure>| matches!(r, Err(Failure::Indeterminate(_)));
        // Never connected: nothing was sent.
        assert!(definite(classify_write(&transport(
            Stage::Send,
            true,
            false,
            None
        ))));
        assert!(definite(classify_write(&transport(
            Stage::Send,
            true,
            true,
            None
        ))));
        // Sent, then no answer: it may have been stored.
        let e = transport(Stage::Send, false, true, None);
        assert_eq!(
            classify_write(&e),
            Err(Failure::Indeterminate(
                "error sending request: cause".into()
            ))
        );
        assert!(unknown(classify_write(&transport(
            Stage::Send,
            false,
            false,
            None
        ))));
        // The status arrived, the body broke: the status decides.
        assert_eq!(
            classify_write(&transport(Stage::Body, false, false, Some(204))),
            Ok(())
        );
        assert!(definite(classify_write(&transport(
            Stage::Body,
            false,
            false,
            Some(412)
        ))));
        assert!(unknown(classify_write(&transport(
            Stage::Body,
            false,
            true,
            Some(503)
        ))));
        // The server's answers.
        let refused = |status: u16, body: &str| {
            classify_write(&decode_put(&answer(status, body)).unwrap_err())
        };
        assert_eq!(
            refused(400, r#"{"error":"invalid_context","message":"no"}"#),
            Err(Failure::Definite(
                r#"write answered 400: {"error":"invalid_context","message":"no"}"#.into()
            ))
        );
        assert!(definite(refused(412, "{}")));
        assert!(definite(refused(413, "{}")));
        assert!(unknown(refused(
            503,
            r#"{"error":"quorum_unavailable","needed":2,"got":1}"#
        )));
        assert!(unknown(refused(503, r#"{"error":"timeout"}"#)));
        assert!(unknown(refused(500, "")));
        assert!(unknown(refused(300, "")));
        assert!(definite(classify_write(&Error::InvalidRequest("x".into()))));
        assert_eq!(
            classify_write(&Error::UnexpectedResponse("x".into())),
            Ok(())
        );
        let e = error_of(&answer(404, ""));
        assert!(definite(classify_write(&e)));
    }
}
