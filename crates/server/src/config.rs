//! Server configuration: command-line flags, `RIFTKV_*` environment variables and a TOML file.
//!
//! Precedence is flag > environment > file > built-in default. Clap resolves the first two (every
//! flag is optional and bound to its environment variable), the file fills what is still unset,
//! and [`ServerConfig::resolve`] applies defaults and validates everything into plain types, so
//! the rest of the node never sees a half-checked value.

use clap::{Args, ValueEnum};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use riftkv_core::types::NodeId;

/// Default client API address.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:8700";
/// Default inter-node address.
pub const DEFAULT_PEER_ADDR: &str = "127.0.0.1:8800";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./riftkv-data";
/// Default cluster name.
pub const DEFAULT_CLUSTER_NAME: &str = "riftkv";
/// Default number of ring partitions when founding a cluster.
pub const DEFAULT_RING_SIZE: u32 = 64;
/// Largest ring accepted; beyond this the ring metadata gossiped every second gets heavy.
pub const MAX_RING_SIZE: u32 = 65_536;
/// Default replication factor of new buckets.
pub const DEFAULT_N_VAL: usize = 3;
/// Default largest value accepted by a PUT.
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 8 * 1024 * 1024;
/// Hard ceiling for `max_value_bytes`: a value travels whole in one inter-node frame.
pub const MAX_MAX_VALUE_BYTES: u64 = 1024 * 1024 * 1024;
/// Longest node id, cluster name or zone accepted.
pub const MAX_NAME_LEN: usize = 128;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Flags of `riftkv server`. Every field is optional so that "not given" can fall through to the
/// environment (handled by clap), then to the config file, then to the default.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct ServerArgs {
    /// Stable node name [default: <hostname>-<peer port>]
    #[arg(long, env = "RIFTKV_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,

    /// Client REST API listen address [default: 127.0.0.1:8700]
    #[arg(long, env = "RIFTKV_API_ADDR", value_name = "IP:PORT")]
    pub api_addr: Option<String>,

    /// Inter-node protocol listen address [default: 127.0.0.1:8800]
    #[arg(long, env = "RIFTKV_PEER_ADDR", value_name = "IP:PORT")]
    pub peer_addr: Option<String>,

    /// API address other nodes and clients are told to use [default: --api-addr]
    #[arg(long, env = "RIFTKV_ADVERTISE_API_ADDR", value_name = "IP:PORT")]
    pub advertise_api_addr: Option<String>,

    /// Peer address other nodes are told to use [default: --peer-addr]
    #[arg(long, env = "RIFTKV_ADVERTISE_PEER_ADDR", value_name = "IP:PORT")]
    pub advertise_peer_addr: Option<String>,

    /// Directory for RocksDB and node state [default: ./riftkv-data]
    #[arg(long, env = "RIFTKV_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Comma-separated peer addresses of existing members; none = found a new cluster
    #[arg(long, env = "RIFTKV_SEEDS", value_name = "IP:PORT,...")]
    pub seeds: Option<String>,

    /// Cluster name; peers of another cluster are refused [default: riftkv]
    #[arg(long, env = "RIFTKV_CLUSTER_NAME", value_name = "NAME")]
    pub cluster_name: Option<String>,

    /// Shared secret that authenticates peers and signs context tokens (prefer the environment
    /// or the config file: flags are visible to other local users) [default: derived from the
    /// cluster name, insecure]
    #[arg(
        long,
        env = "RIFTKV_CLUSTER_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,

    /// Number of partitions, a power of two; used only when founding a cluster [default: 64]
    #[arg(long, env = "RIFTKV_RING_SIZE", value_name = "Q")]
    pub ring_size: Option<u32>,

    /// Placement zone; replicas of a key spread over zones where possible
    #[arg(long, env = "RIFTKV_ZONE", value_name = "NAME")]
    pub zone: Option<String>,

    /// Default replication factor (n) of new buckets [default: 3]
    #[arg(long, env = "RIFTKV_N_VAL", value_name = "N")]
    pub n_val: Option<usize>,

    /// Log line format on stderr [default: text]
    #[arg(long, env = "RIFTKV_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Store writes for unreachable owners on fallbacks and deliver them later [default: true]
    #[arg(long, env = "RIFTKV_HINTED_HANDOFF", value_name = "BOOL")]
    pub hinted_handoff: Option<bool>,

    /// Milliseconds between hinted-handoff delivery rounds [default: 1000]
    #[arg(long, env = "RIFTKV_HANDOFF_INTERVAL_MS", value_name = "MS")]
    pub handoff_interval_ms: Option<u64>,

    /// Milliseconds between gossip rounds [default: 1000]
    #[arg(long, env = "RIFTKV_GOSSIP_INTERVAL_MS", value_name = "MS")]
    pub gossip_interval_ms: Option<u64>,

    /// Milliseconds a delete's tombstone is kept before it may be reaped (once every primary
    /// holds it and no hints are pending) [default: 600000 = 10 minutes]
    #[arg(long, env = "RIFTKV_TOMBSTONE_GRACE_MS", value_name = "MS")]
    pub tombstone_grace_ms: Option<u64>,

    /// Milliseconds between anti-entropy exchanges (one partition with one peer each)
    /// [default: 60000]
    #[arg(long, env = "RIFTKV_AAE_INTERVAL_MS", value_name = "MS")]
    pub aae_interval_ms: Option<u64>,

    /// Largest value a PUT may store, in bytes [default: 8388608 = 8 MiB]
    #[arg(long, env = "RIFTKV_MAX_VALUE_BYTES", value_name = "BYTES")]
    pub max_value_bytes: Option<u64>,

    /// Default per-request timeout in milliseconds [default: 5000]
    #[arg(long, env = "RIFTKV_REQUEST_TIMEOUT_MS", value_name = "MS")]
    pub request_timeout_ms: Option<u64>,

    /// TOML file with the same keys in snake_case; flags win over env, env over the file
    #[arg(long = "config", env = "RIFTKV_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Seeds in the file may be a list of strings or one comma-separated string, like the flag.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
enum SeedList {
    One(String),
    Many(Vec<String>),
}

/// The TOML file: the same keys as the flags, in snake_case. Unknown keys are refused so a typo
/// never silently falls back to a default.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<String>,
    api_addr: Option<String>,
    peer_addr: Option<String>,
    advertise_api_addr: Option<String>,
    advertise_peer_addr: Option<String>,
    data_dir: Option<PathBuf>,
    seeds: Option<SeedList>,
    cluster_name: Option<String>,
    cluster_secret: Option<String>,
    ring_size: Option<u32>,
    zone: Option<String>,
    n_val: Option<usize>,
    log_format: Option<LogFormat>,
    hinted_handoff: Option<bool>,
    handoff_interval_ms: Option<u64>,
    gossip_interval_ms: Option<u64>,
    tombstone_grace_ms: Option<u64>,
    aae_interval_ms: Option<u64>,
    max_value_bytes: Option<u64>,
    request_timeout_ms: Option<u64>,
}

/// A configuration problem. Each renders as one line naming the setting and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A setting has a value that does not parse or is out of range.
    #[error("invalid {setting} {value}: {reason}")]
    Invalid {
        /// The flag (`--ring-size`) or, for file values, `key in FILE`.
        setting: String,
        value: String,
        reason: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    FileRead { path: String, reason: String },
    /// The config file is not valid TOML or has an unknown key or a wrongly typed value.
    #[error("config file {path}{location}: {reason}")]
    FileSyntax {
        path: String,
        /// ` line N` when known, else empty.
        location: String,
        reason: String,
    },
}

/// A secret that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The raw key material, for MACs.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The validated configuration of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub node_id: NodeId,
    pub api_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    /// The API address announced to the cluster (bind address unless overridden).
    pub advertise_api_addr: SocketAddr,
    /// The peer address announced to the cluster (bind address unless overridden).
    pub advertise_peer_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Empty = found a new cluster.
    pub seeds: Vec<SocketAddr>,
    pub cluster_name: String,
    pub cluster_secret: Secret,
    /// True when no secret was configured and one was derived from the cluster name.
    pub cluster_secret_derived: bool,
    pub ring_size: u32,
    pub zone: Option<String>,
    pub n_val: usize,
    pub log_format: LogFormat,
    pub hinted_handoff: bool,
    pub handoff_interval_ms: u64,
    pub gossip_interval_ms: u64,
    pub tombstone_grace_ms: u64,
    pub aae_interval_ms: u64,
    pub max_value_bytes: u64,
    pub request_timeout_ms: u64,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
}

/// Where a value came from, to name it correctly in an error.
#[derive(Clone, Copy)]
enum Origin<'a> {
    /// A flag or its environment variable.
    Arg,
    /// The config file at this path.
    File(&'a Path),
    /// The built-in default.
    Default,
}

impl Origin<'_> {
    fn setting(&self, key: &str) -> String {
        match self {
            Origin::Arg | Origin::Default => format!("--{}", key.replace('_', "-")),
            Origin::File(p) => format!("{key} in {}", p.display()),
        }
    }
}

/// Picks the flag/env value, else the file value, remembering where it came from.
fn pick<'a, T>(arg: Option<T>, file: Option<T>, path: Option<&'a Path>) -> Option<(T, Origin<'a>)> {
    match (arg, file, path) {
        (Some(v), _, _) => Some((v, Origin::Arg)),
        (None, Some(v), Some(p)) => Some((v, Origin::File(p))),
        (None, Some(v), None) => Some((v, Origin::Arg)),
        (None, None, _) => None,
    }
}

fn invalid(origin: Origin<'_>, key: &str, value: impl fmt::Display, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        setting: origin.setting(key),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn parse_addr(origin: Origin<'_>, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .trim()
        .parse::<SocketAddr>()
        .map_err(|_| invalid(origin, key, value, "expected IP:PORT, e.g. 127.0.0.1:8700"))
}

/// Node ids, cluster names and zones travel in gossip, metric labels and file names: keep them
/// to a conservative alphabet.
fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_name(origin: Origin<'_>, key: &str, value: &str) -> Result<String, ConfigError> {
    if is_safe_name(value) {
        Ok(value.to_string())
    } else {
        Err(invalid(
            origin,
            key,
            format!("'{value}'"),
            &format!("must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 - _ ."),
        ))
    }
}

fn parse_seeds(origin: Origin<'_>, list: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out = Vec::new();
    for item in list.iter().flat_map(|s| s.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let addr = item.parse::<SocketAddr>().map_err(|_| {
            invalid(
                origin,
                "seeds",
                format!("'{item}'"),
                "expected a comma-separated list of IP:PORT peer addresses",
            )
        })?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

/// The machine's host name, made safe for a node id; "riftkv" when it cannot be read.
pub fn host_name() -> String {
    let raw = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    sanitize_host_name(&raw)
}

fn sanitize_host_name(raw: &str) -> String {
    // Keep only the first label of a fully qualified name: it is what operators call the host.
    let first = raw.split('.').next().unwrap_or("");
    let cleaned: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME_LEN - 6)
        .collect();
    if cleaned.is_empty() {
        "riftkv".to_string()
    } else {
        cleaned
    }
}

/// The secret used when none is configured. Every node of a cluster derives the same one, so a
/// test or dev cluster works out of the box, but anyone who knows the cluster name knows it.
fn derived_secret(cluster_name: &str) -> String {
    let digest = Sha256::digest(format!(
        "riftkv insecure default secret for cluster {cluster_name}"
    ));
    hex::encode(digest)
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::FileRead {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse_file(path, &text)
}

fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        let location = e
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())]
                    .bytes()
                    .filter(|b| *b == b'\n')
                    .count()
                    + 1;
                format!(" line {line}")
            })
            .unwrap_or_default();
        ConfigError::FileSyntax {
            path: path.display().to_string(),
            location,
            // toml's message can span lines; the contract is one clear line.
            reason: e.message().trim().replace('\n', " "),
        }
    })
}

impl ServerConfig {
    /// Merges flags/env with the config file and defaults, and validates the result.
    pub fn resolve(args: ServerArgs) -> Result<ServerConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    fn merge(args: ServerArgs, file: FileConfig) -> Result<ServerConfig, ConfigError> {
        let fp = args.config.as_deref();
        let d = Origin::Default;

        let (api_s, api_o) = pick(args.api_addr, file.api_addr, fp)
            .unwrap_or_else(|| (DEFAULT_API_ADDR.to_string(), d));
        let api_addr = parse_addr(api_o, "api_addr", &api_s)?;

        let (peer_s, peer_o) = pick(args.peer_addr, file.peer_addr, fp)
            .unwrap_or_else(|| (DEFAULT_PEER_ADDR.to_string(), d));
        let peer_addr = parse_addr(peer_o, "peer_addr", &peer_s)?;

        if api_addr == peer_addr {
            return Err(invalid(
                peer_o,
                "peer_addr",
                peer_addr,
                "must differ from the API address",
            ));
        }

        let advertise_api_addr = match pick(args.advertise_api_addr, file.advertise_api_addr, fp) {
            Some((s, o)) => {
                let a = parse_addr(o, "advertise_api_addr", &s)?;
                if a.ip().is_unspecified() || a.port() == 0 {
                    return Err(invalid(
                        o,
                        "advertise_api_addr",
                        a,
                        "must be a concrete IP and port others can connect to",
                    ));
                }
                a
            }
            None => api_addr,
        };

        let advertise_peer_addr = match pick(args.advertise_peer_addr, file.advertise_peer_addr, fp)
        {
            Some((s, o)) => {
                let a = parse_addr(o, "advertise_peer_addr", &s)?;
                if a.ip().is_unspecified() || a.port() == 0 {
                    return Err(invalid(
                        o,
                        "advertise_peer_addr",
                        a,
                        "must be a concrete IP and port peers can connect to",
                    ));
                }
                a
            }
            None => {
                // Peers must be able to dial what we announce: a wildcard bind needs an explicit
                // advertised address.
                if peer_addr.ip().is_unspecified() || peer_addr.port() == 0 {
                    return Err(invalid(
                        peer_o,
                        "peer_addr",
                        peer_addr,
                        "binds a wildcard IP or port 0; also set --advertise-peer-addr",
                    ));
                }
                peer_addr
            }
        };

        let data_dir = pick(args.data_dir, file.data_dir, fp)
            .map(|(p, _)| p)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.as_os_str().is_empty() {
            return Err(invalid(Origin::Arg, "data_dir", "''", "must not be empty"));
        }

        let seed_list = match (args.seeds, file.seeds) {
            (Some(s), _) => Some((vec![s], Origin::Arg)),
            (None, Some(SeedList::One(s))) => Some((vec![s], fp.map_or(d, Origin::File))),
            (None, Some(SeedList::Many(v))) => Some((v, fp.map_or(d, Origin::File))),
            (None, None) => None,
        };
        let seeds = match seed_list {
            Some((list, o)) => parse_seeds(o, &list)?,
            None => Vec::new(),
        };

        let cluster_name = match pick(args.cluster_name, file.cluster_name, fp) {
            Some((s, o)) => check_name(o, "cluster_name", &s)?,
            None => DEFAULT_CLUSTER_NAME.to_string(),
        };

        let (cluster_secret, cluster_secret_derived) =
            match pick(args.cluster_secret, file.cluster_secret, fp) {
                Some((s, o)) => {
                    if s.is_empty() {
                        return Err(invalid(o, "cluster_secret", "''", "must not be empty"));
                    }
                    (Secret::new(s), false)
                }
                None => (Secret::new(derived_secret(&cluster_name)), true),
            };

        let (ring_size, ring_o) =
            pick(args.ring_size, file.ring_size, fp).unwrap_or((DEFAULT_RING_SIZE, d));
        if ring_size == 0 || !ring_size.is_power_of_two() {
            return Err(invalid(
                ring_o,
                "ring_size",
                ring_size,
                "must be a power of two",
            ));
        }
        if ring_size > MAX_RING_SIZE {
            return Err(invalid(
                ring_o,
                "ring_size",
                ring_size,
                &format!("must be at most {MAX_RING_SIZE}"),
            ));
        }

        let zone = match pick(args.zone, file.zone, fp) {
            Some((s, o)) => Some(check_name(o, "zone", &s)?),
            None => None,
        };

        let (n_val, n_o) = pick(args.n_val, file.n_val, fp).unwrap_or((DEFAULT_N_VAL, d));
        if n_val == 0 {
            return Err(invalid(n_o, "n_val", n_val, "must be at least 1"));
        }
        if n_val > ring_size as usize {
            return Err(invalid(
                n_o,
                "n_val",
                n_val,
                &format!("must not exceed the ring size {ring_size}"),
            ));
        }

        let log_format = pick(args.log_format, file.log_format, fp)
            .map(|(v, _)| v)
            .unwrap_or_default();
        let hinted_handoff = pick(args.hinted_handoff, file.hinted_handoff, fp)
            .map(|(v, _)| v)
            .unwrap_or(true);

        let handoff_interval_ms = positive_ms(
            pick(args.handoff_interval_ms, file.handoff_interval_ms, fp),
            "handoff_interval_ms",
            1000,
        )?;
        let gossip_interval_ms = positive_ms(
            pick(args.gossip_interval_ms, file.gossip_interval_ms, fp),
            "gossip_interval_ms",
            1000,
        )?;
        let tombstone_grace_ms = positive_ms(
            pick(args.tombstone_grace_ms, file.tombstone_grace_ms, fp),
            "tombstone_grace_ms",
            600_000,
        )?;
        let aae_interval_ms = positive_ms(
            pick(args.aae_interval_ms, file.aae_interval_ms, fp),
            "aae_interval_ms",
            60_000,
        )?;
        let request_timeout_ms = positive_ms(
            pick(args.request_timeout_ms, file.request_timeout_ms, fp),
            "request_timeout_ms",
            5000,
        )?;

        let (max_value_bytes, mv_o) = pick(args.max_value_bytes, file.max_value_bytes, fp)
            .unwrap_or((DEFAULT_MAX_VALUE_BYTES, d));
        if max_value_bytes == 0 || max_value_bytes > MAX_MAX_VALUE_BYTES {
            return Err(invalid(
                mv_o,
                "max_value_bytes",
                max_value_bytes,
                &format!("must be between 1 and {MAX_MAX_VALUE_BYTES}"),
            ));
        }

        let node_id = match pick(args.node_id, file.node_id, fp) {
            Some((s, o)) => check_name(o, "node_id", &s)?,
            None => format!("{}-{}", host_name(), advertise_peer_addr.port()),
        };

        Ok(ServerConfig {
            node_id: NodeId(node_id),
            api_addr,
            peer_addr,
            advertise_api_addr,
            advertise_peer_addr,
            data_dir,
            seeds,
            cluster_name,
            cluster_secret,
            cluster_secret_derived,
            ring_size,
            zone,
            n_val,
            log_format,
            hinted_handoff,
            handoff_interval_ms,
            gossip_interval_ms,
            tombstone_grace_ms,
            aae_interval_ms,
            max_value_bytes,
            request_timeout_ms,
            config_file: args.config,
        })
    }

    /// Things worth a warning at startup (logged once logging is up).
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.cluster_secret_derived {
            out.push(format!(
                "no cluster secret configured: using one derived from the cluster name '{}', \
                 which is insecure; set RIFTKV_CLUSTER_SECRET on every node",
                self.cluster_name
            ));
        } else if self.cluster_secret.expose().len() < 16 {
            out.push("the cluster secret is shorter than 16 bytes; use a longer one".to_string());
        }
        if !self.hinted_handoff {
            out.push("hinted handoff is disabled: writes to unreachable owners are not stored on fallbacks".to_string());
        }
        out
    }

    /// Gossip period as a duration.
    pub fn gossip_interval(&self) -> Duration {
        Duration::from_millis(self.gossip_interval_ms)
    }
    /// Hinted-handoff period as a duration.
    pub fn handoff_interval(&self) -> Duration {
        Duration::from_millis(self.handoff_interval_ms)
    }
    /// How long tombstones are kept before reaping, as a duration.
    pub fn tombstone_grace(&self) -> Duration {
        Duration::from_millis(self.tombstone_grace_ms)
    }
    /// Anti-entropy exchange period as a duration.
    pub fn aae_interval(&self) -> Duration {
        Duration::from_millis(self.aae_interval_ms)
    }
    /// Default request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    /// True when no seeds were given: this node founds a new cluster.
    pub fn founds_cluster(&self) -> bool {
        self.seeds.is_empty()
    }
}

fn positive_ms(v: Option<(u64, Origin<'_>)>, key: &str, default: u64) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some((0, o)) => Err(invalid(o, key, 0, "must be at least 1 millisecond")),
        Some((ms, o)) if ms > 24 * 3600 * 1000 => {
            Err(invalid(o, key, ms, "must be at most one day"))
        }
        Some((ms, _)) => Ok(ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::io::Write;

    #[derive(Parser, Debug)]
    struct TestCli {
        #[command(flatten)]
        args: ServerArgs,
    }

    fn parse(argv: &[&str]) -> ServerArgs {
        let mut full = vec!["riftkv"];
        full.extend_from_slice(argv);
        TestCli::try_parse_from(full)
            .expect("test argv parses")
            .args
    }

    fn args_with(f: impl FnOnce(&mut ServerArgs)) -> ServerArgs {
        let mut a = ServerArgs::default();
        f(&mut a);
        a
    }

    fn write_toml(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write temp file");
        f
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = ServerConfig::resolve(args_with(|a| a.node_id = Some("n1".into()))).unwrap();
        assert_eq!(c.api_addr, "127.0.0.1:8700".parse().unwrap());
        assert_eq!(c.peer_addr, "127.0.0.1:8800".parse().unwrap());
        assert_eq!(c.advertise_api_addr, c.api_addr);
        assert_eq!(c.advertise_peer_addr, c.peer_addr);
        assert_eq!(c.data_dir, PathBuf::from("./riftkv-data"));
        assert!(c.seeds.is_empty());
        assert!(c.founds_cluster());
        assert_eq!(c.cluster_name, "riftkv");
        assert_eq!(c.ring_size, 64);
        assert_eq!(c.zone, None);
        assert_eq!(c.n_val, 3);
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.hinted_handoff);
        assert_eq!(c.handoff_interval_ms, 1000);
        assert_eq!(c.gossip_interval_ms, 1000);
        assert_eq!(c.max_value_bytes, 8 * 1024 * 1024);
        assert_eq!(c.request_timeout(), Duration::from_secs(5));
        assert!(c.cluster_secret_derived);
    }

    #[test]
    fn default_node_id_is_host_and_peer_port() {
        let c = ServerConfig::resolve(parse(&["--peer-addr", "127.0.0.1:9123"])).unwrap();
        let id = c.node_id.as_str();
        assert!(id.ends_with("-9123"), "{id}");
        assert!(is_safe_name(id), "{id}");
        assert_eq!(id, format!("{}-9123", host_name()));
    }

    #[test]
    fn host_names_are_sanitized() {
        assert_eq!(sanitize_host_name("db-1.example.com"), "db-1");
        assert_eq!(sanitize_host_name("we ird#host"), "we-ird-host");
        assert_eq!(sanitize_host_name(""), "riftkv");
        assert!(is_safe_name(&format!(
            "{}-8800",
            sanitize_host_name(&"x".repeat(500))
        )));
    }

    #[test]
    fn flags_parse_into_args() {
        let a = parse(&[
            "--node-id",
            "a",
            "--seeds",
            "127.0.0.1:1,127.0.0.2:2",
            "--ring-size",
            "128",
            "--log-format",
            "json",
            "--hinted-handoff",
            "false",
        ]);
        let c = ServerConfig::resolve(a).unwrap();
        assert_eq!(c.node_id.as_str(), "a");
        assert_eq!(
            c.seeds,
            vec![
                "127.0.0.1:1".parse::<SocketAddr>().unwrap(),
                "127.0.0.2:2".parse().unwrap()
            ]
        );
        assert_eq!(c.ring_size, 128);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!c.hinted_handoff);
    }

    #[test]
    fn file_fills_unset_values_and_args_win() {
        let f = write_toml(
            r#"
node_id = "from-file"
api_addr = "127.0.0.1:9700"
ring_size = 256
seeds = ["127.0.0.1:9801", "127.0.0.1:9802"]
zone = "z1"
n_val = 5
log_format = "json"
hinted_handoff = false
cluster_secret = "file-secret-file-secret"
request_timeout_ms = 700
"#,
        );
        let args = args_with(|a| {
            a.config = Some(f.path().to_path_buf());
            a.node_id = Some("from-arg".into());
            a.ring_size = Some(32);
        });
        let c = ServerConfig::resolve(args).unwrap();
        assert_eq!(c.node_id.as_str(), "from-arg");
        assert_eq!(c.ring_size, 32);
        assert_eq!(c.api_addr, "127.0.0.1:9700".parse().unwrap());
        assert_eq!(c.seeds.len(), 2);
        assert_eq!(c.zone.as_deref(), Some("z1"));
        assert_eq!(c.n_val, 5);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!c.hinted_handoff);
        assert!(!c.cluster_secret_derived);
        assert_eq!(c.cluster_secret.expose(), b"file-secret-file-secret");
        assert_eq!(c.request_timeout_ms, 700);
        assert_eq!(c.config_file.as_deref(), Some(f.path()));
    }

    #[test]
    fn file_seeds_may_be_one_string() {
        let f = write_toml("seeds = \"127.0.0.1:1, 127.0.0.1:2\"\n");
        let c =
            ServerConfig::resolve(args_with(|a| a.config = Some(f.path().to_path_buf()))).unwrap();
        assert_eq!(c.seeds.len(), 2);
    }

    #[test]
    fn unknown_file_key_is_named() {
        let f = write_toml("ring_size = 64\nring_sise = 128\n");
        let err = ServerConfig::resolve(args_with(|a| a.config = Some(f.path().to_path_buf())))
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::FileSyntax { .. }), "{err:?}");
        assert!(msg.contains("ring_sise"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn wrongly_typed_file_value_is_an_error() {
        let f = write_toml("ring_size = \"big\"\n");
        let err = ServerConfig::resolve(args_with(|a| a.config = Some(f.path().to_path_buf())))
            .unwrap_err();
        assert!(matches!(err, ConfigError::FileSyntax { .. }), "{err:?}");
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        let err = ServerConfig::resolve(args_with(|a| a.config = Some(path.clone()))).unwrap_err();
        assert!(matches!(err, ConfigError::FileRead { .. }), "{err:?}");
        assert!(err.to_string().contains("absent.toml"));
    }

    #[test]
    fn ring_size_must_be_a_power_of_two_in_range() {
        let err = ServerConfig::resolve(parse(&["--ring-size", "100"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --ring-size 100: must be a power of two"
        );
        assert!(ServerConfig::resolve(parse(&["--ring-size", "0"])).is_err());
        assert!(ServerConfig::resolve(parse(&["--ring-size", "131072"])).is_err());
        for ok in [1u32, 2, 64, 65536] {
            let c = ServerConfig::resolve(parse(&["--ring-size", &ok.to_string(), "--n-val", "1"]))
                .unwrap();
            assert_eq!(c.ring_size, ok);
        }
    }

    #[test]
    fn file_errors_name_the_file() {
        let f = write_toml("ring_size = 100\n");
        let err = ServerConfig::resolve(args_with(|a| a.config = Some(f.path().to_path_buf())))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("invalid ring_size in "), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    }

    #[test]
    fn addresses_must_parse() {
        let err = ServerConfig::resolve(parse(&["--api-addr", "localhost:80"])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid --api-addr localhost:80"),
            "{err}"
        );
        assert!(ServerConfig::resolve(parse(&["--peer-addr", "1.2.3.4"])).is_err());
        assert!(ServerConfig::resolve(parse(&["--advertise-api-addr", "nope"])).is_err());
        let c =
            ServerConfig::resolve(parse(&["--api-addr", "[::1]:8700", "--node-id", "x"])).unwrap();
        assert_eq!(c.api_addr, "[::1]:8700".parse().unwrap());
    }

    #[test]
    fn api_and_peer_must_differ() {
        let err = ServerConfig::resolve(parse(&[
            "--api-addr",
            "127.0.0.1:9000",
            "--peer-addr",
            "127.0.0.1:9000",
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("--peer-addr"), "{err}");
    }

    #[test]
    fn wildcard_peer_bind_needs_advertise_addr() {
        assert!(ServerConfig::resolve(parse(&["--peer-addr", "0.0.0.0:8800"])).is_err());
        let c = ServerConfig::resolve(parse(&[
            "--peer-addr",
            "0.0.0.0:8800",
            "--advertise-peer-addr",
            "10.0.0.5:8800",
            "--api-addr",
            "0.0.0.0:8700",
        ]))
        .unwrap();
        assert_eq!(c.peer_addr, "0.0.0.0:8800".parse().unwrap());
        assert_eq!(c.advertise_peer_addr, "10.0.0.5:8800".parse().unwrap());
        assert_eq!(c.advertise_api_addr, "0.0.0.0:8700".parse().unwrap());
        assert!(ServerConfig::resolve(parse(&["--advertise-peer-addr", "0.0.0.0:1"])).is_err());
    }

    #[test]
    fn seeds_must_parse_and_are_deduplicated() {
        let err = ServerConfig::resolve(parse(&["--seeds", "127.0.0.1:1,bogus"])).unwrap_err();
        assert!(err.to_string().contains("'bogus'"), "{err}");
        let c = ServerConfig::resolve(parse(&["--seeds", " 127.0.0.1:1 ,,127.0.0.1:1,"])).unwrap();
        assert_eq!(c.seeds, vec!["127.0.0.1:1".parse::<SocketAddr>().unwrap()]);
        let c = ServerConfig::resolve(parse(&["--seeds", ""])).unwrap();
        assert!(c.founds_cluster());
    }

    #[test]
    fn names_must_be_safe() {
        for bad in ["", "a b", "a/b", "ü", &"x".repeat(129)] {
            assert!(
                ServerConfig::resolve(parse(&["--node-id", bad])).is_err(),
                "node id {bad:?}"
            );
            assert!(ServerConfig::resolve(parse(&["--cluster-name", bad])).is_err());
            assert!(ServerConfig::resolve(parse(&["--zone", bad])).is_err());
        }
        let err = ServerConfig::resolve(parse(&["--node-id", "a/b"])).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid --node-id 'a/b'"),
            "{err}"
        );
        assert!(ServerConfig::resolve(parse(&["--node-id", "node-1_a.b"])).is_ok());
    }

    #[test]
    fn numeric_ranges_are_checked() {
        assert!(ServerConfig::resolve(parse(&["--n-val", "0"])).is_err());
        assert!(ServerConfig::resolve(parse(&["--n-val", "9", "--ring-size", "8"])).is_err());
        assert!(ServerConfig::resolve(parse(&["--gossip-interval-ms", "0"])).is_err());
        assert!(ServerConfig::resolve(parse(&["--handoff-interval-ms", "0"])).is_err());
        assert!(ServerConfig::resolve(parse(&["--request-timeout-ms", "0"])).is_err());
        assert!(ServerConfig::resolve(parse(&["--max-value-bytes", "0"])).is_err());
        assert!(ServerConfig::resolve(parse(&["--cluster-secret", ""])).is_err());
    }

    #[test]
    fn derived_secret_depends_on_cluster_and_warns() {
        let a = ServerConfig::resolve(parse(&["--cluster-name", "a"])).unwrap();
        let a2 = ServerConfig::resolve(parse(&["--cluster-name", "a"])).unwrap();
        let b = ServerConfig::resolve(parse(&["--cluster-name", "b"])).unwrap();
        assert_eq!(a.cluster_secret, a2.cluster_secret);
        assert_ne!(a.cluster_secret, b.cluster_secret);
        assert!(a.startup_warnings().iter().any(|w| w.contains("insecure")));
        let s =
            ServerConfig::resolve(parse(&["--cluster-secret", "0123456789abcdef0123"])).unwrap();
        assert!(s.startup_warnings().is_empty());
        assert!(!format!("{s:?}").contains("0123456789abcdef0123"));
    }

    /// Runs in a child process (spawned by `env_sits_between_flags_and_file`) so that setting
    /// environment variables cannot race with other tests.
    #[test]
    #[ignore = "helper run in a child process"]
    fn env_precedence_child() {
        // Only meaningful with the environment the parent test sets up.
        let Ok(file) = std::env::var("RIFTKV_TEST_FILE") else {
            return;
        };
        let c = ServerConfig::resolve(parse(&["--ring-size", "16", "--config", &file])).unwrap();
        // flag beats env
        assert_eq!(c.ring_size, 16);
        // env beats file
        assert_eq!(c.node_id.as_str(), "from-env");
        assert_eq!(c.zone.as_deref(), Some("env-zone"));
        assert_eq!(
            c.seeds,
            vec!["127.0.0.1:7001".parse::<SocketAddr>().unwrap()]
        );
        assert!(!c.hinted_handoff);
        // file beats default
        assert_eq!(c.cluster_name, "file-cluster");
        assert_eq!(c.gossip_interval_ms, 250);
    }

    #[test]
    fn env_sits_between_flags_and_file() {
        let f = write_toml(
            "node_id = \"from-file\"\nzone = \"file-zone\"\ncluster_name = \"file-cluster\"\n\
             gossip_interval_ms = 250\nring_size = 8\nseeds = \"127.0.0.1:9\"\n",
        );
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "--ignored",
            "--exact",
            "config::tests::env_precedence_child",
            "--test-threads=1",
        ]);
        for (k, _) in std::env::vars() {
            if k.starts_with("RIFTKV_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RIFTKV_TEST_FILE", f.path())
            .env("RIFTKV_NODE_ID", "from-env")
            .env("RIFTKV_ZONE", "env-zone")
            .env("RIFTKV_RING_SIZE", "4")
            .env("RIFTKV_SEEDS", "127.0.0.1:7001")
            .env("RIFTKV_HINTED_HANDOFF", "false");
        let out = cmd.output().expect("run child test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 passed"), "child did not run: {stdout}");
    }
}
