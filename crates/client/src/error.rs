//! What can go wrong talking to a node, typed so callers can tell "the server said no" from
//! "the server could not be asked" and, for writes, "nothing happened" from "maybe it did".

use serde_json::{Map, Value};
use std::fmt;

/// A failed request.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// The request could not be built (bad base URL, bucket or key out of bounds, a header
    /// value that HTTP cannot carry). Nothing was sent.
    #[error("{0}")]
    InvalidRequest(String),
    /// `404`: nothing live at the key (or an unknown route or node). `context` is the
    /// tombstones' context when the server sent one: a write with it supersedes the delete.
    #[error("{response}")]
    NotFound {
        context: Option<String>,
        response: Box<ServerError>,
    },
    /// `412`: `If-None-Match: *` found a live value.
    #[error("{0}")]
    PreconditionFailed(Box<ServerError>),
    /// `503`: the cluster could not answer now (`quorum_unavailable`, `timeout`,
    /// `overloaded`). `needed` and `got` come from the body when it has them.
    #[error("{response}")]
    Unavailable {
        needed: Option<u64>,
        got: Option<u64>,
        response: Box<ServerError>,
    },
    /// `400`: a bad parameter or context (`bad_request`, `invalid_context`).
    #[error("{0}")]
    BadRequest(Box<ServerError>),
    /// `401`: no token, or an unknown, revoked or expired one.
    #[error("{0}")]
    Unauthorized(Box<ServerError>),
    /// `403`: a valid token without the permission.
    #[error("{0}")]
    Forbidden(Box<ServerError>),
    /// Any other refusal (`409`, `413`, `405`, `5xx` but `503`, an unexpected status).
    #[error("{0}")]
    Server(Box<ServerError>),
    /// The client stopped waiting (`connect: true` when it never got a connection).
    #[error("{0}")]
    Timeout(TransportError),
    /// The server could not be reached or the connection broke.
    #[error("{0}")]
    Connection(TransportError),
    /// The server answered something this client cannot read.
    #[error("unexpected answer from the server: {0}")]
    UnexpectedResponse(String),
}

impl Error {
    /// The server's answer, for every "no" from the server.
    pub fn server(&self) -> Option<&ServerError> {
        match self {
            Error::NotFound { response, .. } | Error::Unavailable { response, .. } => {
                Some(&**response)
            }
            Error::PreconditionFailed(r)
            | Error::BadRequest(r)
            | Error::Unauthorized(r)
            | Error::Forbidden(r)
            | Error::Server(r) => Some(&**r),
            _ => None,
        }
    }

    /// The HTTP status the server answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Timeout(t) | Error::Connection(t) => t.status,
            other => other.server().map(|s| s.status),
        }
    }

    /// The transport failure, when the server could not be asked or the answer was cut.
    pub fn transport(&self) -> Option<&TransportError> {
        match self {
            Error::Timeout(t) | Error::Connection(t) => Some(t),
            _ => None,
        }
    }

    /// True when no connection to the server was made: the request never reached it.
    pub fn is_connect(&self) -> bool {
        self.transport().is_some_and(|t| t.connect)
    }

    /// True when the client gave up waiting, or the server answered `503 timeout`.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout(_) => true,
            Error::Unavailable { response, .. } => response.code.as_deref() == Some("timeout"),
            _ => false,
        }
    }
}

/// A "no" from the server: its status and the JSON error body of the contract, when it sent
/// one (`{"error": code, "message": ..., extra fields}`).
#[derive(Clone, Debug, PartialEq)]
pub struct ServerError {
    pub status: u16,
    /// The `error` field of the body (`quorum_unavailable`, `invalid_context`, ...).
    pub code: Option<String>,
    /// The `message` field; without one, the body's first line, or a reason for the status.
    pub message: String,
    /// Every other field of the JSON body (`needed`, `got`, `limit`, `context`, ...).
    pub extras: Map<String, Value>,
    /// The body as text, unchanged.
    pub body: String,
}

impl ServerError {
    /// Reads an error answer; any body is accepted (a proxy's HTML page, nothing at all).
    pub fn from_body(status: u16, body: &[u8]) -> ServerError {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let obj = json.as_ref().and_then(Value::as_object);
        let code = obj
            .and_then(|o| o.get("error"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let message = obj
            .and_then(|o| o.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let first = text.lines().next().unwrap_or("").trim();
                if first.is_empty() {
                    default_reason(status).to_string()
                } else {
                    first.chars().take(200).collect()
                }
            });
        let extras = obj
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| k.as_str() != "error" && k.as_str() != "message")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        ServerError {
            status,
            code,
            message,
            extras,
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }

    /// An extra field as an unsigned integer (`needed`, `got`, `limit`).
    pub fn extra_u64(&self, name: &str) -> Option<u64> {
        self.extras.get(name).and_then(Value::as_u64)
    }

    /// The message with the extra fields appended, sorted by name so the line is the same
    /// whatever order the server used: `only 1 of 2 answered (got: 1, needed: 2)`.
    pub fn detail(&self) -> String {
        let mut fields: Vec<_> = self.extras.iter().collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let extras: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect();
        if extras.is_empty() {
            self.message.clone()
        } else {
            format!("{} ({})", self.message, extras.join(", "))
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(
                f,
                "server answered {} {code}: {}",
                self.status,
                self.detail()
            ),
            None => write!(f, "server answered {}: {}", self.status, self.detail()),
        }
    }
}

fn default_reason(status: u16) -> &'static str {
    match status {
        404 => "not found",
        412 => "precondition failed",
        503 => "service unavailable",
        s if s >= 500 => "server error",
        _ => "request refused",
    }
}

/// Where a transport failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Setting up the HTTP client.
    Setup,
    /// Connecting, sending, or waiting for the answer's head.
    Send,
    /// Reading the answer's body, after its status arrived.
    Body,
}

/// A request that did not get a whole answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError {
    pub stage: Stage,
    /// The node asked (its base URL).
    pub base: String,
    /// No connection was made.
    pub connect: bool,
    /// The client stopped waiting.
    pub timeout: bool,
    /// The status of the answer, when its head arrived before the failure.
    pub status: Option<u16>,
    /// The error and its causes, outermost first.
    pub chain: Vec<String>,
}

impl TransportError {
    pub(crate) fn from_reqwest(
        e: &reqwest::Error,
        stage: Stage,
        base: &str,
        status: Option<u16>,
    ) -> TransportError {
        let mut chain = vec![e.to_string()];
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            chain.push(s.to_string());
            src = s.source();
        }
        TransportError {
            stage,
            base: base.to_string(),
            connect: e.is_connect(),
            timeout: e.is_timeout(),
            status,
            chain,
        }
    }

    /// Wraps a reqwest error into the error variant its kind calls for.
    pub(crate) fn into_error(self) -> Error {
        if self.timeout {
            Error::Timeout(self)
        } else {
            Error::Connection(self)
        }
    }

    /// The innermost cause: reqwest's own message hides it, and it holds the useful part.
    pub fn root_cause(&self) -> Option<&str> {
        if self.chain.len() > 1 {
            self.chain.last().map(String::as_str)
        } else {
            None
        }
    }

    /// The whole chain on one line, `outer: inner: innermost`.
    pub fn full_chain(&self) -> String {
        self.chain.join(": ")
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outer = self.chain.first().map(String::as_str).unwrap_or("");
        match self.stage {
            Stage::Setup => write!(f, "cannot set up the HTTP client: {outer}"),
            Stage::Body => write!(f, "connection broke while reading the answer: {outer}"),
            Stage::Send => {
                let what = if self.timeout {
                    "timed out waiting for"
                } else if self.connect {
                    "cannot connect to"
                } else {
                    "request failed to"
                };
                match self.root_cause() {
                    Some(cause) => write!(f, "{what} {}: {cause}", self.base),
                    None => write!(f, "{what} {}", self.base),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_carry_code_message_and_extras() {
        let e = ServerError::from_body(
            503,
            br#"{"error":"quorum_unavailable","message":"only 1 of 2 replicas answered","needed":2,"got":1}"#,
        );
        assert_eq!(
            e.to_string(),
            "server answered 503 quorum_unavailable: only 1 of 2 replicas answered (got: 1, needed: 2)"
        );
        assert_eq!(e.extra_u64("needed"), Some(2));
        let e = ServerError::from_body(404, b"");
        assert_eq!(e.to_string(), "server answered 404: not found");
        let e = ServerError::from_body(502, b"<html>bad gateway</html>\nmore");
        assert_eq!(
            e.to_string(),
            "server answered 502: <html>bad gateway</html>"
        );
        assert_eq!(e.body, "<html>bad gateway</html>\nmore");
        let e = ServerError::from_body(409, br#"{"error":"conflict","message":"m","why":"x"}"#);
        assert_eq!(e.detail(), "m (why: x)");
    }

    #[test]
    fn transport_errors_name_the_stage_and_the_root_cause() {
        let mut t = TransportError {
            stage: Stage::Send,
            base: "http://127.0.0.1:1/".into(),
            connect: true,
            timeout: false,
            status: None,
            chain: vec![
                "error sending request".into(),
                "client error (Connect)".into(),
                "Connection refused (os error 111)".into(),
            ],
        };
        assert_eq!(
            t.to_string(),
            "cannot connect to http://127.0.0.1:1/: Connection refused (os error 111)"
        );
        assert_eq!(
            t.full_chain(),
            "error sending request: client error (Connect): Connection refused (os error 111)"
        );
        let e = t.clone().into_error();
        assert!(matches!(e, Error::Connection(_)));
        assert!(e.is_connect() && !e.is_timeout());
        t.timeout = true;
        t.chain.truncate(1);
        assert_eq!(t.to_string(), "timed out waiting for http://127.0.0.1:1/");
        assert!(t.clone().into_error().is_timeout());
        t.stage = Stage::Body;
        assert_eq!(
            t.to_string(),
            "connection broke while reading the answer: error sending request"
        );
    }
}
