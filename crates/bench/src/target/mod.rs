//! Systems under test. One [`Target`] trait with the five YCSB operations; implementations
//! for RiftKV ([`riftkv`]), etcd's v3 JSON gateway ([`etcd`]) and Redis ([`redis`]). How
//! each maps an operation is documented on its type and in `docs/bench.md`.

pub mod etcd;
pub mod redis;
pub mod resp;
pub mod riftkv;

use async_trait::async_trait;
use bytes::Bytes;
use std::fmt;
use std::sync::Arc;

/// Why one operation failed, as reported in "errors by kind".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The key holds nothing (a read of a key that was never loaded).
    NotFound,
    /// The system answered that it cannot serve now (quorum unavailable, overloaded).
    Unavailable,
    /// The client or the server gave up waiting.
    Timeout,
    /// No connection, or the connection broke.
    Connection,
    /// A conditional write lost (etcd's compare failed).
    Conflict,
    /// Any other refusal by the system (bad request, too large, too many siblings, ...).
    Refused,
    /// An answer the client could not read.
    Protocol,
    /// Open loop only: not sent at all, the target fell too far behind the rate.
    Missed,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Refused => "refused",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Missed => "missed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct OpError {
    pub kind: ErrorKind,
    pub message: String,
}

impl OpError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> OpError {
        OpError {
            kind,
            message: message.into(),
        }
    }
}

/// A `--target` that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "invalid --target '{0}': expected riftkv://HOST:PORT,..., etcd://HOST:PORT,... or redis://HOST:PORT"
    )]
    Syntax(String),
    #[error("invalid --target '{spec}': {reason}")]
    Invalid { spec: String, reason: String },
    #[error("cannot reach {target}: {reason}")]
    Unreachable { target: String, reason: String },
}

/// A system under test. Every method is one measured operation; implementations are shared
/// by all workers (`&self`) and keep their own connection pools.
#[async_trait]
pub trait Target: Send + Sync {
    /// Reads one record.
    async fn read(&self, key: &str) -> Result<(), OpError>;
    /// Overwrites one existing record, without reading it first.
    async fn update(&self, key: &str, value: Bytes) -> Result<(), OpError>;
    /// Writes a new record.
    async fn insert(&self, key: &str, value: Bytes) -> Result<(), OpError>;
    /// Reads up to `len` records in key order from `start`; answers how many it got.
    async fn scan(&self, start: &str, len: usize) -> Result<usize, OpError>;
    /// Reads one record, then writes it so that the write follows the read.
    async fn read_modify_write(&self, key: &str, value: Bytes) -> Result<(), OpError>;
    /// Prepares the system for a load phase (e.g. the bucket's conflict mode); called once.
    async fn prepare_load(&self) -> Result<(), OpError> {
        Ok(())
    }
    /// One harmless request, to tell "unreachable" (exit 2) from a run with errors.
    async fn check(&self) -> Result<(), OpError>;
}

/// A parsed `--target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    /// `riftkv://HOST:PORT,...`: the REST APIs of some nodes, used in turn.
    Riftkv(Vec<String>),
    /// `etcd://HOST:PORT,...`: the v3 JSON gateways of some members, used in turn.
    Etcd(Vec<String>),
    /// `redis://HOST:PORT`.
    Redis(String),
}

impl TargetSpec {
    pub fn parse(s: &str) -> Result<TargetSpec, TargetError> {
        let s = s.trim();
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| TargetError::Syntax(s.to_string()))?;
        let hosts: Vec<String> = rest
            .split(',')
            .map(|h| h.trim().trim_end_matches('/').to_string())
            .collect();
        for h in &hosts {
            let ok = h
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(TargetError::Invalid {
                    spec: s.to_string(),
                    reason: format!("'{h}' is not HOST:PORT"),
                });
            }
        }
        match scheme.to_ascii_lowercase().as_str() {
            "riftkv" => Ok(TargetSpec::Riftkv(hosts)),
            "etcd" => Ok(TargetSpec::Etcd(hosts)),
            "redis" => match <[String; 1]>::try_from(hosts) {
                Ok([one]) => Ok(TargetSpec::Redis(one)),
                Err(_) => Err(TargetError::Invalid {
                    spec: s.to_string(),
                    reason: "redis takes exactly one HOST:PORT".into(),
                }),
            },
            _ => Err(TargetError::Syntax(s.to_string())),
        }
    }

    /// The system's name: `riftkv`, `etcd` or `redis`.
    pub fn system(&self) -> &'static str {
        match self {
            TargetSpec::Riftkv(_) => "riftkv",
            TargetSpec::Etcd(_) => "etcd",
            TargetSpec::Redis(_) => "redis",
        }
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts = match self {
            TargetSpec::Riftkv(h) | TargetSpec::Etcd(h) => h.join(","),
            TargetSpec::Redis(h) => h.clone(),
        };
        write!(f, "{}://{hosts}", self.system())
    }
}

/// Settings every target may use.
#[derive(Clone, Debug, Default)]
pub struct TargetOptions {
    /// RiftKV's bucket.
    pub bucket: String,
    /// RiftKV's consistency parameters (`r`, `w`, `dw`, `pr`, `pw`; the rest is unused).
    pub consistency: riftkv_client::Options,
    /// Bearer token for RiftKV's API.
    pub token: Option<String>,
    /// Connections a target may keep open (the concurrency).
    pub connections: usize,
}

/// Builds the target of a spec.
pub fn connect(spec: &TargetSpec, opts: &TargetOptions) -> Result<Arc<dyn Target>, TargetError> {
    Ok(match spec {
        TargetSpec::Riftkv(hosts) => Arc::new(riftkv::RiftKv::new(hosts, opts)?),
        TargetSpec::Etcd(hosts) => Arc::new(etcd::Etcd::new(hosts, opts)?),
        TargetSpec::Redis(host) => Arc::new(redis::Redis::new(host, opts)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_specs_parse() {
        assert_eq!(
            TargetSpec::parse("riftkv://127.0.0.1:8701,127.0.0.1:8702"),
            Ok(TargetSpec::Riftkv(vec![
                "127.0.0.1:8701".into(),
                "127.0.0.1:8702".into()
            ]))
        );
        assert_eq!(
            TargetSpec::parse("redis://localhost:6379"),
            Ok(TargetSpec::Redis("localhost:6379".into()))
        );
        assert!(matches!(
            TargetSpec::parse("etcd://a:1,b"),
            Err(TargetError::Invalid { .. })
        ));
        assert!(matches!(
            TargetSpec::parse("redis://a:1,b:2"),
            Err(TargetError::Invalid { .. })
        ));
        assert!(matches!(
            TargetSpec::parse("mongo://a:1"),
            Err(TargetError::Syntax(_))
        ));
        assert!(matches!(
            TargetSpec::parse("127.0.0.1:8701"),
            Err(TargetError::Syntax(_))
        ));
        assert_eq!(
            TargetSpec::parse("etcd://h:2379").map(|t| t.to_string()),
            Ok("etcd://h:2379".to_string())
        );
    }
}
