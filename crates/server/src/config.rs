//! Server configuration: command-line flags, `RIFTKV_*` environment variables and a TOML file.
//!
//! Precedence is flag > environment > file > built-in default. Clap resolves the first two (every
//! flag is optional and bound to its environment variable), the file fills what is still unset,
//! and [`ServerConfig::resolve`] applies defaults and validates everything into plain types, so
//! the rest of the node never sees a half-checked value.

use clap::{Args, ValueEnum};
use serde::Deserialize;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use riftkv_core::net::tls::TlsFiles;
use riftkv_core::types::NodeId;

/// Default client API address.
pub const DEFAULT_API_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8700));
/// Default inter-node address.
pub const DEFAULT_PEER_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8800));
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./riftkv-data";
/// Default cluster name.
pub const DEFAULT_CLUSTER_NAME: &str = "riftkv";
/// The ring's own bounds and default: one source for the server and the ring code.
pub use riftkv_core::ring::{DEFAULT_RING_SIZE, MAX_RING_SIZE};
/// Default replication factor of new buckets.
pub const DEFAULT_N_VAL: usize = 3;
/// Hinted handoff is on unless turned off.
pub const DEFAULT_HINTED_HANDOFF: bool = true;
/// Default period of hinted-handoff delivery rounds.
pub const DEFAULT_HANDOFF_INTERVAL_MS: u64 = 1000;
/// Default period of gossip rounds.
pub const DEFAULT_GOSSIP_INTERVAL_MS: u64 = 1000;
/// Default age a tombstone reaches before it may be reaped (10 minutes).
pub const DEFAULT_TOMBSTONE_GRACE_MS: u64 = 600_000;
/// Default anti-entropy period: the cluster crate's own default, in milliseconds.
pub const DEFAULT_AAE_INTERVAL_MS: u64 =
    riftkv_cluster::aae::DEFAULT_AAE_INTERVAL.as_millis() as u64;
/// Default longest wait of a restarted node for its peers' hints before it is ready anyway.
pub const DEFAULT_CATCH_UP_TIMEOUT_MS: u64 = 60_000;
/// No drain window unless asked: without a load balancer nothing would act on it.
pub const DEFAULT_SHUTDOWN_DRAIN_MS: u64 = 0;
/// Default per-request timeout.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5000;
/// Default bound on API requests in flight (past it: `503 overloaded`).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;
/// Default block cache: at 1 M keys of 1 KiB it holds a quarter of a node's data, most of a
/// zipfian read set (YCSB-A there ran at 1.38x of a 64 MiB cache), while a node's RSS stays
/// well under 200 MiB plus the cache (BENCHMARKS.md, "Storage at key scale").
pub const DEFAULT_BLOCK_CACHE_MB: u64 = 256;
/// A larger cache than this is a typo, not a plan (1 TiB).
const MAX_BLOCK_CACHE_MB: u64 = 1 << 20;
/// Default: no limit on the write rate of flushes and compactions (the storage layer's
/// default, where the reason is given).
pub use riftkv_core::storage::DEFAULT_BACKGROUND_WRITE_MB_PER_SEC;
/// A faster limit than this is a typo (1 TiB/s); 0 turns the limit off.
const MAX_BACKGROUND_WRITE_MB_PER_SEC: u64 = 1 << 20;
/// Default length from which a stored object goes to a RocksDB blob file (the storage
/// layer's default, where the reason is given).
pub use riftkv_core::storage::DEFAULT_BLOB_MIN_BYTES;
/// Past the largest object a node stores (256 MiB) the threshold means "never": write 0.
const MAX_BLOB_MIN_BYTES: u64 = 1 << 28;
/// Default bound on open API connections, in total and from one IP address.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default time a client has to send a request's headers, and then its body.
pub const DEFAULT_CLIENT_TIMEOUT_MS: u64 = 30_000;
/// Largest of the connection and in-flight bounds.
const MAX_LIMIT: usize = 1 << 20;
/// Longest period accepted for a `*_ms` setting.
pub const MAX_INTERVAL_MS: u64 = 24 * 3600 * 1000;
/// Default largest value accepted by a PUT.
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 8 * 1024 * 1024;
/// Hard ceiling for `max_value_bytes` and `max_object_bytes`: an object travels whole in one
/// inter-node frame, and frames are sized from the object limit (see
/// [`ServerConfig::max_frame_bytes`]).
pub const MAX_MAX_VALUE_BYTES: u64 = 256 * 1024 * 1024;
/// Default largest total of a key's versions (all siblings together).
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = riftkv_core::version::DEFAULT_MAX_OBJECT_BYTES as u64;
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

/// Whether the API requires bearer tokens (`--auth on|off`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every request but `/health` and `/ready` needs a valid bearer token.
    On,
    /// Every client that reaches the API port may do everything.
    #[default]
    Off,
}

/// Declares every server setting once. One entry gives the setting's name (the field, which is
/// also the TOML key and, with dashes, the flag), its help (the doc comment, shown by `--help`),
/// its environment variable, the type accepted from flags/env and from the file, its default
/// (already in the resolved type) and the check that turns a given value into the resolved type.
/// From that the macro generates the clap [`ServerArgs`], the serde `FileConfig`, the
/// [`SETTINGS`] table, and `Checked::from_sources`, which picks flag/env over the file and runs
/// each check with the value's origin, so every error names the source that gave the bad value.
/// A macro rather than a runtime table because clap and serde need real struct fields; checks
/// that span settings (addresses that must differ, `n_val` within the ring, the node id derived
/// from the advertised port) stay in [`ServerConfig::resolve`].
macro_rules! settings {
    ($(
        $(#[$meta:meta])*
        $field:ident: $arg_ty:ty, file $file_ty:ty => $out:ty,
            env $env:literal, value $value_name:literal,
            default $default:expr, check $check:expr;
    )*) => {
        /// Flags of `riftkv server`. Every field is optional so that "not given" can fall through
        /// to the environment (handled by clap), then to the config file, then to the default.
        #[derive(Args, Clone, Debug, Default, PartialEq)]
        pub struct ServerArgs {
            $(
                $(#[$meta])*
                #[arg(long, env = $env, value_name = $value_name)]
                pub $field: Option<$arg_ty>,
            )*
            /// TOML file with the same keys in snake_case; flags win over env, env over the file
            #[arg(long = "config", env = "RIFTKV_CONFIG", value_name = "FILE")]
            pub config: Option<PathBuf>,
        }

        /// The TOML file: the same keys as the flags, in snake_case. Unknown keys are refused so
        /// a typo never silently falls back to a default.
        #[derive(Clone, Debug, Default, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        struct FileConfig {
            $( $field: Option<$file_ty>, )*
        }

        /// Every declared setting, for documentation and tests.
        pub const SETTINGS: &[Setting] = &[
            $( Setting { key: stringify!($field), env: $env }, )*
        ];

        /// Each setting checked on its own, with the origin of its value.
        struct Checked<'a> {
            $( $field: ($out, Origin<'a>), )*
        }

        impl<'a> Checked<'a> {
            fn from_sources(
                args: ServerArgs,
                file: FileConfig,
                path: Option<&'a Path>,
            ) -> Result<Checked<'a>, ConfigError> {
                Ok(Checked {
                    $(
                        $field: match pick(
                            args.$field.map(|v| {
                                let origin = arg_origin(&v, $env);
                                (<$file_ty>::from(v), origin)
                            }),
                            file.$field,
                            path,
                        ) {
                            Some((v, o)) => ($check(v, o, stringify!($field))?, o),
                            None => ($default, Origin::Default),
                        },
                    )*
                })
            }
        }
    };
}

/// One declared setting: its TOML key (the flag is the key with dashes) and environment variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    pub key: &'static str,
    pub env: &'static str,
}

impl Setting {
    /// The command-line flag, e.g. `--ring-size`.
    pub fn flag(&self) -> String {
        format!("--{}", self.key.replace('_', "-"))
    }
}

settings! {
    /// Stable node name [default: <hostname>-<peer port>]
    node_id: String, file String => Option<String>,
        env "RIFTKV_NODE_ID", value "ID", default None, check check_some_name;

    /// Client REST API listen address [default: 127.0.0.1:8700]
    api_addr: String, file String => SocketAddr,
        env "RIFTKV_API_ADDR", value "IP:PORT", default DEFAULT_API_ADDR, check parse_addr;

    /// Inter-node protocol listen address [default: 127.0.0.1:8800]
    peer_addr: String, file String => SocketAddr,
        env "RIFTKV_PEER_ADDR", value "IP:PORT", default DEFAULT_PEER_ADDR, check parse_addr;

    /// API address other nodes and clients are told to use [default: --api-addr]
    advertise_api_addr: String, file String => Option<SocketAddr>,
        env "RIFTKV_ADVERTISE_API_ADDR", value "IP:PORT", default None,
        check check_advertise_api;

    /// Peer address other nodes are told to use [default: --peer-addr]
    advertise_peer_addr: String, file String => Option<SocketAddr>,
        env "RIFTKV_ADVERTISE_PEER_ADDR", value "IP:PORT", default None,
        check check_advertise_peer;

    /// Directory for RocksDB and node state [default: ./riftkv-data]
    data_dir: PathBuf, file PathBuf => PathBuf,
        env "RIFTKV_DATA_DIR", value "DIR", default PathBuf::from(DEFAULT_DATA_DIR),
        check check_data_dir;

    /// Comma-separated peer addresses of existing members; none = found a new cluster
    seeds: String, file SeedList => Vec<SocketAddr>,
        env "RIFTKV_SEEDS", value "IP:PORT,...", default Vec::new(), check parse_seeds;

    /// Cluster name; peers of another cluster are refused [default: riftkv]
    cluster_name: String, file String => String,
        env "RIFTKV_CLUSTER_NAME", value "NAME", default DEFAULT_CLUSTER_NAME.to_string(),
        check check_name;

    /// Shared secret that authenticates peers and signs context tokens (prefer the environment
    /// or the config file: flags are visible to other local users). Required unless the peer
    /// address is on loopback [default: none, which runs open on loopback only]
    #[arg(hide_env_values = true)]
    cluster_secret: String, file String => Option<Secret>,
        env "RIFTKV_CLUSTER_SECRET", value "SECRET", default None, check check_secret;

    /// Number of partitions, a power of two; used only when founding a cluster [default: 64]
    ring_size: u32, file u32 => u32,
        env "RIFTKV_RING_SIZE", value "Q", default DEFAULT_RING_SIZE, check check_ring_size;

    /// Placement zone; replicas of a key spread over zones where possible
    zone: String, file String => Option<String>,
        env "RIFTKV_ZONE", value "NAME", default None, check check_some_name;

    /// Default replication factor (n) of new buckets [default: 3]
    n_val: usize, file usize => usize,
        env "RIFTKV_N_VAL", value "N", default DEFAULT_N_VAL, check check_n_val;

    /// Log line format on stderr [default: text]
    log_format: LogFormat, file LogFormat => LogFormat,
        env "RIFTKV_LOG_FORMAT", value "FORMAT", default LogFormat::default(), check accept;

    /// Store writes for unreachable owners on fallbacks and deliver them later [default: true]
    hinted_handoff: bool, file bool => bool,
        env "RIFTKV_HINTED_HANDOFF", value "BOOL", default DEFAULT_HINTED_HANDOFF, check accept;

    /// Milliseconds between hinted-handoff delivery rounds [default: 1000]
    handoff_interval_ms: u64, file u64 => u64,
        env "RIFTKV_HANDOFF_INTERVAL_MS", value "MS", default DEFAULT_HANDOFF_INTERVAL_MS,
        check positive_ms;

    /// Partition streams of ownership handoff (ring changes) a node runs at once [default: 2]
    transfer_concurrency: usize, file usize => usize,
        env "RIFTKV_TRANSFER_CONCURRENCY", value "N",
        default riftkv_cluster::handoff::ownership::DEFAULT_CONCURRENCY, check check_limit;

    /// Bytes per second a node's ownership-handoff streams may send together; 0 = no limit
    /// [default: 0]
    transfer_max_bytes_per_sec: u64, file u64 => u64,
        env "RIFTKV_TRANSFER_MAX_BYTES_PER_SEC", value "BYTES", default 0, check accept;

    /// Stage ring changes (joins, leaves, removals, replaces) instead of applying them: the
    /// plan is computed and shown (`riftkv cluster plan`) and nothing moves until
    /// `riftkv cluster commit`. Give every node the same setting [default: false]
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    staged_changes: bool, file bool => bool,
        env "RIFTKV_STAGED_CHANGES", value "BOOL", default false, check accept;

    /// Milliseconds between gossip rounds [default: 1000]
    gossip_interval_ms: u64, file u64 => u64,
        env "RIFTKV_GOSSIP_INTERVAL_MS", value "MS", default DEFAULT_GOSSIP_INTERVAL_MS,
        check positive_ms;

    /// Milliseconds a delete's tombstone is kept before it may be reaped (once every primary
    /// holds it and no hints are pending) [default: 600000 = 10 minutes]
    tombstone_grace_ms: u64, file u64 => u64,
        env "RIFTKV_TOMBSTONE_GRACE_MS", value "MS", default DEFAULT_TOMBSTONE_GRACE_MS,
        check positive_ms;

    /// Milliseconds between anti-entropy exchanges (one partition with one peer each)
    /// [default: 60000]
    aae_interval_ms: u64, file u64 => u64,
        env "RIFTKV_AAE_INTERVAL_MS", value "MS", default DEFAULT_AAE_INTERVAL_MS,
        check positive_ms;

    /// Longest wait, in milliseconds, of a restarted node for its peers to deliver the hints
    /// they hold for it; until then `/ready` answers 503 `catching_up` [default: 60000]
    catch_up_timeout_ms: u64, file u64 => u64,
        env "RIFTKV_CATCH_UP_TIMEOUT_MS", value "MS", default DEFAULT_CATCH_UP_TIMEOUT_MS,
        check positive_ms;

    /// On SIGTERM/SIGINT, milliseconds the node keeps serving clients after it has told its
    /// members it is going down, answering `GET /ready` with 503 `stopping`, before it stops
    /// accepting: a load balancer that follows `/ready` moves clients away first. Set it to the
    /// balancer's health-check interval times its failure threshold [default: 0]
    shutdown_drain_ms: u64, file u64 => u64,
        env "RIFTKV_SHUTDOWN_DRAIN_MS", value "MS", default DEFAULT_SHUTDOWN_DRAIN_MS,
        check drain_ms;

    /// Largest value a PUT may store, in bytes [default: 8388608 = 8 MiB]
    max_value_bytes: u64, file u64 => u64,
        env "RIFTKV_MAX_VALUE_BYTES", value "BYTES", default DEFAULT_MAX_VALUE_BYTES,
        check check_max_value_bytes;

    /// Largest total of a key's versions (all sibling values together), in bytes; a write
    /// that would pass it is refused with 413. At least max_value_bytes [default: 16777216 =
    /// 16 MiB]
    max_object_bytes: u64, file u64 => u64,
        env "RIFTKV_MAX_OBJECT_BYTES", value "BYTES", default DEFAULT_MAX_OBJECT_BYTES,
        check check_max_value_bytes;

    /// Default per-request timeout in milliseconds [default: 5000]
    request_timeout_ms: u64, file u64 => u64,
        env "RIFTKV_REQUEST_TIMEOUT_MS", value "MS", default DEFAULT_REQUEST_TIMEOUT_MS,
        check positive_ms;

    /// API requests handled at once; past this a request is answered `503 overloaded` with
    /// Retry-After, so memory stays bounded under overload (`/health`, `/ready` and `/metrics`
    /// are always answered) [default: 512]
    max_in_flight: usize, file usize => usize,
        env "RIFTKV_MAX_IN_FLIGHT", value "N", default DEFAULT_MAX_IN_FLIGHT, check check_limit;

    /// RocksDB block cache in MiB, shared by every column family: the hot data and the index
    /// and filter blocks stay in it; background scans bypass it [default: 256]
    block_cache_mb: u64, file u64 => u64,
        env "RIFTKV_BLOCK_CACHE_MB", value "MB", default DEFAULT_BLOCK_CACHE_MB,
        check check_block_cache_mb;

    /// Ceiling of the disk write rate of RocksDB's flushes and compactions, MiB/s, 0 for none.
    /// The rate adapts below it to what they need, down to a twentieth of it while writes are
    /// few, so a flush does not take the cores from requests in one burst; compaction may fall
    /// behind a heavy write load [default: 0, no limit]
    background_write_mb_per_sec: u64, file u64 => u64,
        env "RIFTKV_BACKGROUND_WRITE_MB_PER_SEC", value "MB",
        default DEFAULT_BACKGROUND_WRITE_MB_PER_SEC, check check_background_write_mb_per_sec;

    /// Stored objects at least this long (bytes) are kept in RocksDB blob files, out of the
    /// table files that compaction rewrites; 0 keeps every value in the tables. Blob files
    /// save compaction work and memory at the cost of disk (garbage waits for collection);
    /// applies to values written from then on [default: 512]
    blob_min_bytes: u64, file u64 => u64,
        env "RIFTKV_BLOB_MIN_BYTES", value "BYTES", default DEFAULT_BLOB_MIN_BYTES,
        check check_blob_min_bytes;

    /// Threads that run the node's requests (the async runtime's workers) [default: one per
    /// core this process may use]. Nodes sharing a machine (`riftkv dev`) split its cores
    worker_threads: usize, file usize => Option<usize>,
        env "RIFTKV_WORKER_THREADS", value "N", default None, check check_worker_threads;

    /// Open API connections accepted at once; more are closed at accept [default: 1024]
    max_connections: usize, file usize => usize,
        env "RIFTKV_MAX_CONNECTIONS", value "N", default DEFAULT_MAX_CONNECTIONS,
        check check_limit;

    /// Open API connections accepted at once from one IP address [default: 1024]
    max_connections_per_ip: usize, file usize => usize,
        env "RIFTKV_MAX_CONNECTIONS_PER_IP", value "N", default DEFAULT_MAX_CONNECTIONS,
        check check_limit;

    /// This node's TLS certificate chain (PEM): the API serves HTTPS and peers talk over mutual
    /// TLS; needs --tls-key and --tls-ca too [default: none, plain TCP]
    tls_cert: PathBuf, file PathBuf => Option<PathBuf>,
        env "RIFTKV_TLS_CERT", value "FILE", default None, check check_some_path;

    /// The private key of --tls-cert (PEM)
    tls_key: PathBuf, file PathBuf => Option<PathBuf>,
        env "RIFTKV_TLS_KEY", value "FILE", default None, check check_some_path;

    /// CA certificates (PEM) a peer's certificate must chain to (mutual TLS between nodes)
    tls_ca: PathBuf, file PathBuf => Option<PathBuf>,
        env "RIFTKV_TLS_CA", value "FILE", default None, check check_some_path;

    /// Milliseconds a client has to send a request's headers, and again its whole body;
    /// a slower client is cut off [default: 30000]
    client_timeout_ms: u64, file u64 => u64,
        env "RIFTKV_CLIENT_TIMEOUT_MS", value "MS", default DEFAULT_CLIENT_TIMEOUT_MS,
        check positive_ms;

    /// Require a bearer token on every API request except /health and /ready. A node whose
    /// --api-addr is not on loopback must be told explicitly: on, or off to serve an open API
    /// on purpose [default: off]
    auth: AuthMode, file AuthMode => Option<AuthMode>,
        env "RIFTKV_AUTH", value "on|off", default None, check accept_some;

    /// File holding the first admin's token (at least 16 bytes, surrounding whitespace
    /// trimmed): with --auth on and no users in the cluster yet, user admin is created with
    /// the admin permission and this token
    bootstrap_token_file: PathBuf, file PathBuf => Option<PathBuf>,
        env "RIFTKV_BOOTSTRAP_TOKEN_FILE", value "FILE", default None,
        check check_token_file;
}

/// Seeds in the file may be a list of strings or one comma-separated string, like the flag.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
enum SeedList {
    One(String),
    Many(Vec<String>),
}

impl From<String> for SeedList {
    fn from(s: String) -> Self {
        SeedList::One(s)
    }
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
    /// True when no secret was configured: the node runs open, which the configuration allows
    /// only with a loopback peer address (bound and advertised).
    pub cluster_secret_open: bool,
    pub ring_size: u32,
    pub zone: Option<String>,
    pub n_val: usize,
    pub log_format: LogFormat,
    pub hinted_handoff: bool,
    pub handoff_interval_ms: u64,
    pub transfer_concurrency: usize,
    pub transfer_max_bytes_per_sec: u64,
    /// Ring changes this node plans wait for an operator's commit.
    pub staged_changes: bool,
    pub gossip_interval_ms: u64,
    pub tombstone_grace_ms: u64,
    pub aae_interval_ms: u64,
    pub catch_up_timeout_ms: u64,
    pub shutdown_drain_ms: u64,
    pub max_value_bytes: u64,
    pub max_object_bytes: u64,
    pub request_timeout_ms: u64,
    pub max_in_flight: usize,
    /// RocksDB block cache, MiB.
    pub block_cache_mb: u64,
    /// Ceiling of RocksDB's background write rate, MiB/s; 0 = no limit.
    pub background_write_mb_per_sec: u64,
    /// Stored objects from this length go to blob files; 0 = never.
    pub blob_min_bytes: u64,
    /// Async runtime workers; `None` = one per core.
    pub worker_threads: Option<usize>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub client_timeout_ms: u64,
    /// TLS on the API and between peers, when configured.
    pub tls: Option<TlsFiles>,
    /// Whether the API requires bearer tokens.
    pub auth: AuthMode,
    /// True when `auth` was given (flag, env or file) rather than defaulted.
    pub auth_explicit: bool,
    pub bootstrap_token_file: Option<PathBuf>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
}

/// Where a value came from, to name it correctly in an error.
#[derive(Clone, Copy)]
enum Origin<'a> {
    /// A flag.
    Arg,
    /// This environment variable.
    Env(&'static str),
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
            Origin::Env(var) => (*var).to_string(),
        }
    }
}

/// Clap hands over a flag's value and its environment variable's value alike. A value that the
/// environment variable holds is named after the variable; if the flag holds the same value both
/// sources are equally wrong, so naming either is true.
trait FromEnv {
    fn is_env_value(&self, raw: &str) -> bool;
}

impl FromEnv for String {
    fn is_env_value(&self, raw: &str) -> bool {
        self == raw
    }
}

impl FromEnv for PathBuf {
    fn is_env_value(&self, raw: &str) -> bool {
        self.as_os_str() == raw
    }
}

impl FromEnv for bool {
    fn is_env_value(&self, raw: &str) -> bool {
        raw.parse() == Ok(*self)
    }
}

impl FromEnv for AuthMode {
    fn is_env_value(&self, raw: &str) -> bool {
        AuthMode::from_str(raw, true) == Ok(*self)
    }
}

impl FromEnv for LogFormat {
    fn is_env_value(&self, raw: &str) -> bool {
        LogFormat::from_str(raw, true) == Ok(*self)
    }
}

macro_rules! numeric_from_env {
    ($($t:ty),*) => {$(
        impl FromEnv for $t {
            fn is_env_value(&self, raw: &str) -> bool {
                raw.trim().parse::<$t>() == Ok(*self)
            }
        }
    )*};
}
numeric_from_env!(u32, u64, usize);

/// The origin of a flag/env value: the variable when it holds this value, else the flag.
fn arg_origin<T: FromEnv>(value: &T, env: &'static str) -> Origin<'static> {
    match std::env::var(env) {
        Ok(raw) if value.is_env_value(&raw) => Origin::Env(env),
        _ => Origin::Arg,
    }
}

/// Picks the flag/env value, else the file value, remembering where it came from.
fn pick<'a, T>(
    arg: Option<(T, Origin<'a>)>,
    file: Option<T>,
    path: Option<&'a Path>,
) -> Option<(T, Origin<'a>)> {
    match (arg, file, path) {
        (Some(v), _, _) => Some(v),
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

// The checks of single settings, called by `settings!` as `check(value, origin, key)`.

fn parse_addr(value: String, origin: Origin<'_>, key: &str) -> Result<SocketAddr, ConfigError> {
    value
        .trim()
        .parse::<SocketAddr>()
        .map_err(|_| invalid(origin, key, value, "expected IP:PORT, e.g. 127.0.0.1:8700"))
}

/// An advertised address must be one others can dial.
fn concrete_addr(
    value: String,
    origin: Origin<'_>,
    key: &str,
    who: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    let a = parse_addr(value, origin, key)?;
    if a.ip().is_unspecified() || a.port() == 0 {
        return Err(invalid(
            origin,
            key,
            a,
            &format!("must be a concrete IP and port {who} can connect to"),
        ));
    }
    Ok(Some(a))
}

fn check_advertise_api(
    v: String,
    o: Origin<'_>,
    k: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    concrete_addr(v, o, k, "others")
}

fn check_advertise_peer(
    v: String,
    o: Origin<'_>,
    k: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    concrete_addr(v, o, k, "peers")
}

/// Node ids, cluster names and zones travel in gossip, metric labels and file names: keep them
/// to a conservative alphabet.
fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_name(value: String, origin: Origin<'_>, key: &str) -> Result<String, ConfigError> {
    if is_safe_name(&value) {
        Ok(value)
    } else {
        Err(invalid(
            origin,
            key,
            format!("'{value}'"),
            &format!("must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 - _ ."),
        ))
    }
}

fn check_some_name(v: String, o: Origin<'_>, k: &str) -> Result<Option<String>, ConfigError> {
    check_name(v, o, k).map(Some)
}

fn check_data_dir(value: PathBuf, origin: Origin<'_>, key: &str) -> Result<PathBuf, ConfigError> {
    if value.as_os_str().is_empty() {
        return Err(invalid(origin, key, "''", "must not be empty"));
    }
    Ok(value)
}

fn check_some_path(
    value: PathBuf,
    origin: Origin<'_>,
    key: &str,
) -> Result<Option<PathBuf>, ConfigError> {
    check_data_dir(value, origin, key).map(Some)
}

fn check_secret(
    value: String,
    origin: Origin<'_>,
    key: &str,
) -> Result<Option<Secret>, ConfigError> {
    if value.is_empty() {
        return Err(invalid(origin, key, "''", "must not be empty"));
    }
    Ok(Some(Secret::new(value)))
}

fn check_ring_size(value: u32, origin: Origin<'_>, key: &str) -> Result<u32, ConfigError> {
    if value == 0 || !value.is_power_of_two() {
        return Err(invalid(origin, key, value, "must be a power of two"));
    }
    if value > MAX_RING_SIZE {
        return Err(invalid(
            origin,
            key,
            value,
            &format!("must be at most {MAX_RING_SIZE}"),
        ));
    }
    Ok(value)
}

/// The upper bound (the ring size) is checked once both are known.
fn check_n_val(value: usize, origin: Origin<'_>, key: &str) -> Result<usize, ConfigError> {
    if value == 0 {
        return Err(invalid(origin, key, value, "must be at least 1"));
    }
    Ok(value)
}

fn check_max_value_bytes(value: u64, origin: Origin<'_>, key: &str) -> Result<u64, ConfigError> {
    if value == 0 || value > MAX_MAX_VALUE_BYTES {
        return Err(invalid(
            origin,
            key,
            value,
            &format!("must be between 1 and {MAX_MAX_VALUE_BYTES}"),
        ));
    }
    Ok(value)
}

/// Longest drain window: a stop that waits longer would outlast any supervisor's patience.
const MAX_DRAIN_MS: u64 = 600_000;

fn drain_ms(value: u64, origin: Origin<'_>, key: &str) -> Result<u64, ConfigError> {
    at_most(
        MAX_DRAIN_MS,
        value,
        origin,
        key,
        "must be at most 600000 (10 minutes)",
    )
}

/// `value` when it is at most `max`, else the error `why`.
fn at_most(
    max: u64,
    value: u64,
    origin: Origin<'_>,
    key: &str,
    why: &str,
) -> Result<u64, ConfigError> {
    match value {
        v if v > max => Err(invalid(origin, key, v, why)),
        v => Ok(v),
    }
}

fn positive_ms(value: u64, origin: Origin<'_>, key: &str) -> Result<u64, ConfigError> {
    match value {
        0 => Err(invalid(origin, key, 0, "must be at least 1 millisecond")),
        ms if ms > MAX_INTERVAL_MS => Err(invalid(origin, key, ms, "must be at most one day")),
        ms => Ok(ms),
    }
}

/// More request threads than this is a typo, not a plan.
const MAX_WORKER_THREADS: usize = 1024;

fn check_worker_threads(
    value: usize,
    origin: Origin<'_>,
    key: &str,
) -> Result<Option<usize>, ConfigError> {
    one_to(MAX_WORKER_THREADS, value, origin, key).map(Some)
}

fn check_limit(value: usize, origin: Origin<'_>, key: &str) -> Result<usize, ConfigError> {
    one_to(MAX_LIMIT, value, origin, key)
}

/// `value` when it is between 1 and `max`.
fn one_to(max: usize, value: usize, origin: Origin<'_>, key: &str) -> Result<usize, ConfigError> {
    match value {
        0 => Err(invalid(origin, key, 0, "must be at least 1")),
        n if n > max => Err(invalid(origin, key, n, &format!("must be at most {max}"))),
        n => Ok(n),
    }
}

fn check_block_cache_mb(value: u64, origin: Origin<'_>, key: &str) -> Result<u64, ConfigError> {
    match value {
        0 => Err(invalid(origin, key, 0, "must be at least 1 MiB")),
        mb if mb > MAX_BLOCK_CACHE_MB => Err(invalid(
            origin,
            key,
            mb,
            &format!("must be at most {MAX_BLOCK_CACHE_MB} MiB"),
        )),
        mb => Ok(mb),
    }
}

fn check_blob_min_bytes(value: u64, origin: Origin<'_>, key: &str) -> Result<u64, ConfigError> {
    let why = format!("must be at most {MAX_BLOB_MIN_BYTES} bytes (0 keeps values in the tables)");
    at_most(MAX_BLOB_MIN_BYTES, value, origin, key, &why)
}

fn check_background_write_mb_per_sec(
    value: u64,
    origin: Origin<'_>,
    key: &str,
) -> Result<u64, ConfigError> {
    let why = format!("must be at most {MAX_BACKGROUND_WRITE_MB_PER_SEC} MiB/s (0 for no limit)");
    at_most(MAX_BACKGROUND_WRITE_MB_PER_SEC, value, origin, key, &why)
}

/// Settings whose type already says everything (enums, booleans).
fn accept<T>(value: T, _origin: Origin<'_>, _key: &str) -> Result<T, ConfigError> {
    Ok(value)
}

fn accept_some<T>(value: T, _origin: Origin<'_>, _key: &str) -> Result<Option<T>, ConfigError> {
    Ok(Some(value))
}

fn check_token_file(
    value: PathBuf,
    origin: Origin<'_>,
    key: &str,
) -> Result<Option<PathBuf>, ConfigError> {
    check_data_dir(value, origin, key).map(Some)
}

fn parse_seeds(
    list: SeedList,
    origin: Origin<'_>,
    key: &str,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let list = match list {
        SeedList::One(s) => vec![s],
        SeedList::Many(v) => v,
    };
    let mut out = Vec::new();
    for item in list.iter().flat_map(|s| s.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let addr = item.parse::<SocketAddr>().map_err(|_| {
            invalid(
                origin,
                key,
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

/// The key of a node that runs open: no cluster secret, which is allowed only while its peer
/// address is on loopback (where only this machine's processes can reach it). It is the same
/// for every open node and says nothing about the cluster: never derived from the cluster
/// name, so a node that can be reached from the network never runs on a guessable secret.
const OPEN_LOOPBACK_SECRET: &str = "riftkv open node: no cluster secret, loopback only";

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
        let config_file = args.config.clone();
        let c = Checked::from_sources(args, file, config_file.as_deref())?;

        // Checks across settings.
        let (api_addr, _) = c.api_addr;
        let (peer_addr, peer_o) = c.peer_addr;
        if api_addr == peer_addr {
            return Err(invalid(
                peer_o,
                "peer_addr",
                peer_addr,
                "must differ from the API address",
            ));
        }
        let advertise_api_addr = c.advertise_api_addr.0.unwrap_or(api_addr);
        let advertise_peer_addr = match c.advertise_peer_addr.0 {
            Some(a) => a,
            // Peers must be able to dial what we announce: a wildcard bind needs an explicit
            // advertised address.
            None if peer_addr.ip().is_unspecified() || peer_addr.port() == 0 => {
                return Err(invalid(
                    peer_o,
                    "peer_addr",
                    peer_addr,
                    "binds a wildcard IP or port 0; also set --advertise-peer-addr",
                ));
            }
            None => peer_addr,
        };
        let tls = match (c.tls_cert.0, c.tls_key.0, c.tls_ca.0) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles { cert, key, ca }),
            (cert, key, ca) => {
                // Name the first of the three that was given, with its value.
                let (o, k, v) = match (cert, key, ca) {
                    (Some(v), _, _) => (c.tls_cert.1, "tls_cert", v),
                    (None, Some(v), _) => (c.tls_key.1, "tls_key", v),
                    (None, None, v) => (c.tls_ca.1, "tls_ca", v.unwrap_or_default()),
                };
                return Err(invalid(
                    o,
                    k,
                    v.display(),
                    "TLS needs all three of --tls-cert, --tls-key and --tls-ca (peers verify \
                     each other against the CA)",
                ));
            }
        };
        let (cluster_secret, cluster_secret_open) = match c.cluster_secret.0 {
            Some(s) => (s, false),
            // Peers authenticate by mutual TLS; the open key still runs the handshake inside it.
            None if tls.is_some() => (Secret::new(OPEN_LOOPBACK_SECRET.to_string()), true),
            None => {
                // Refuse to run open where the network can reach the peer port.
                let exposed = [peer_addr, advertise_peer_addr]
                    .into_iter()
                    .find(|a| !a.ip().is_loopback());
                if let Some(addr) = exposed {
                    return Err(invalid(
                        peer_o,
                        "peer_addr",
                        addr,
                        "is not on loopback and neither a cluster secret nor TLS is configured; \
                         set RIFTKV_CLUSTER_SECRET (or --cluster-secret), the same on every \
                         node, or --tls-cert, --tls-key and --tls-ca",
                    ));
                }
                (Secret::new(OPEN_LOOPBACK_SECRET.to_string()), true)
            }
        };
        let ring_size = c.ring_size.0;
        let (n_val, n_o) = c.n_val;
        if n_val > ring_size as usize {
            return Err(invalid(
                n_o,
                "n_val",
                n_val,
                &format!("must not exceed the ring size {ring_size}"),
            ));
        }
        let (max_object_bytes, object_o) = c.max_object_bytes;
        if max_object_bytes < c.max_value_bytes.0 {
            return Err(invalid(
                object_o,
                "max_object_bytes",
                max_object_bytes,
                &format!(
                    "must be at least max_value_bytes ({}): one value alone must fit",
                    c.max_value_bytes.0
                ),
            ));
        }
        let (auth, auth_explicit) = match c.auth.0 {
            Some(mode) => (mode, true),
            None if !api_addr.ip().is_loopback() => {
                return Err(invalid(
                    Origin::Default,
                    "auth",
                    "off (the default)",
                    &format!(
                        "the API address {api_addr} is not on loopback; set --auth on, or \
                         --auth off to serve an open API on purpose"
                    ),
                ));
            }
            None => (AuthMode::Off, false),
        };
        let node_id = c
            .node_id
            .0
            .unwrap_or_else(|| format!("{}-{}", host_name(), advertise_peer_addr.port()));

        Ok(ServerConfig {
            node_id: NodeId(node_id),
            api_addr,
            peer_addr,
            advertise_api_addr,
            advertise_peer_addr,
            data_dir: c.data_dir.0,
            seeds: c.seeds.0,
            cluster_name: c.cluster_name.0,
            cluster_secret,
            cluster_secret_open,
            ring_size,
            zone: c.zone.0,
            n_val,
            log_format: c.log_format.0,
            hinted_handoff: c.hinted_handoff.0,
            handoff_interval_ms: c.handoff_interval_ms.0,
            transfer_concurrency: c.transfer_concurrency.0,
            transfer_max_bytes_per_sec: c.transfer_max_bytes_per_sec.0,
            staged_changes: c.staged_changes.0,
            gossip_interval_ms: c.gossip_interval_ms.0,
            tombstone_grace_ms: c.tombstone_grace_ms.0,
            aae_interval_ms: c.aae_interval_ms.0,
            catch_up_timeout_ms: c.catch_up_timeout_ms.0,
            shutdown_drain_ms: c.shutdown_drain_ms.0,
            max_value_bytes: c.max_value_bytes.0,
            max_object_bytes,
            request_timeout_ms: c.request_timeout_ms.0,
            max_in_flight: c.max_in_flight.0,
            block_cache_mb: c.block_cache_mb.0,
            background_write_mb_per_sec: c.background_write_mb_per_sec.0,
            blob_min_bytes: c.blob_min_bytes.0,
            worker_threads: c.worker_threads.0,
            max_connections: c.max_connections.0,
            max_connections_per_ip: c.max_connections_per_ip.0,
            client_timeout_ms: c.client_timeout_ms.0,
            tls,
            auth,
            auth_explicit,
            bootstrap_token_file: c.bootstrap_token_file.0,
            config_file,
        })
    }

    /// Things worth a warning at startup (logged once logging is up).
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.cluster_secret_open && self.tls.is_some() {
            out.push(
                "no cluster secret configured: peers authenticate by mutual TLS alone, and \
                 context tokens are signed with a key that is not secret (a client could forge \
                 one); set RIFTKV_CLUSTER_SECRET on every node"
                    .to_string(),
            );
        } else if self.cluster_secret_open {
            out.push(
                "no cluster secret configured: peers are not authenticated and context tokens \
                 are not secret, which is allowed only because the peer address is on \
                 loopback; set RIFTKV_CLUSTER_SECRET on every node to close it"
                    .to_string(),
            );
        } else if self.cluster_secret.expose().len() < 16 {
            out.push("the cluster secret is shorter than 16 bytes; use a longer one".to_string());
        }
        if self.auth == AuthMode::Off && !self.api_addr.ip().is_loopback() {
            out.push(format!(
                "--auth off: the API on {} is open to every client that reaches it (any \
                 request may read, write or administer)",
                self.api_addr
            ));
        }
        if self.auth == AuthMode::Off && self.bootstrap_token_file.is_some() {
            out.push("--bootstrap-token-file is ignored while --auth is off".to_string());
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
    /// Longest catch-up wait after a restart, as a duration.
    pub fn shutdown_drain(&self) -> Duration {
        Duration::from_millis(self.shutdown_drain_ms)
    }

    pub fn catch_up_timeout(&self) -> Duration {
        Duration::from_millis(self.catch_up_timeout_ms)
    }
    /// The time a client has for a request's headers, and again for its body.
    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.client_timeout_ms)
    }
    /// The largest inter-node frame, sized from the object limit: a replica's answer holds a
    /// whole object, and concurrent writes admitted at different coordinators can merge to
    /// a few times the limit. Every node should use the same object limit.
    pub fn max_frame_bytes(&self) -> usize {
        let object = usize::try_from(self.max_object_bytes).unwrap_or(usize::MAX);
        object
            .saturating_mul(4)
            .max(riftkv_core::net::DEFAULT_MAX_FRAME_BYTES)
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
        assert_eq!(c.max_object_bytes, 16 * 1024 * 1024);
        assert_eq!(c.max_frame_bytes(), 64 * 1024 * 1024);
        assert_eq!(c.request_timeout(), Duration::from_secs(5));
        assert!(c.cluster_secret_open);
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
        assert!(!c.cluster_secret_open);
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
            "--auth",
            "on",
            "--cluster-secret",
            "0123456789abcdef0123",
        ]))
        .unwrap();
        assert_eq!(c.peer_addr, "0.0.0.0:8800".parse().unwrap());
        assert_eq!(c.advertise_peer_addr, "10.0.0.5:8800".parse().unwrap());
        assert_eq!(c.advertise_api_addr, "0.0.0.0:8700".parse().unwrap());
        assert!(ServerConfig::resolve(parse(&["--advertise-peer-addr", "0.0.0.0:1"])).is_err());
    }

    #[test]
    fn an_api_off_loopback_needs_auth_given_explicitly() {
        let secret = ["--cluster-secret", "0123456789abcdef0123"];
        let off_loopback = ["--api-addr", "192.0.2.7:8700"];
        let err = ServerConfig::resolve(parse(&[&off_loopback[..], &secret[..]].concat()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("set --auth on, or --auth off to serve an open API on purpose")
                && err.contains("192.0.2.7:8700")
                && !err.contains('\n'),
            "{err}"
        );
        let open = ServerConfig::resolve(parse(
            &[&off_loopback[..], &secret[..], &["--auth", "off"][..]].concat(),
        ))
        .unwrap();
        assert_eq!((open.auth, open.auth_explicit), (AuthMode::Off, true));
        assert!(
            open.startup_warnings()
                .iter()
                .any(|w| w.contains("--auth off") && w.contains("open")),
            "{:?}",
            open.startup_warnings()
        );
        let on = ServerConfig::resolve(parse(
            &[&off_loopback[..], &secret[..], &["--auth", "on"][..]].concat(),
        ))
        .unwrap();
        assert_eq!(on.auth, AuthMode::On);
        assert!(on.startup_warnings().iter().all(|w| !w.contains("--auth")));
        // On loopback the default stays off, silently.
        let local = ServerConfig::resolve(parse(&[])).unwrap();
        assert_eq!((local.auth, local.auth_explicit), (AuthMode::Off, false));
        assert!(
            local
                .startup_warnings()
                .iter()
                .all(|w| !w.contains("--auth"))
        );
        // The file counts as explicit too.
        let f = write_toml("auth = \"off\"\n");
        let from_file = ServerConfig::resolve(args_with(|a| {
            a.api_addr = Some("192.0.2.7:8700".into());
            a.cluster_secret = Some("0123456789abcdef0123".into());
            a.config = Some(f.path().to_path_buf());
        }))
        .unwrap();
        assert!(from_file.auth_explicit);
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
    fn a_node_reachable_off_loopback_refuses_to_run_without_a_secret() {
        let open_cases: [&[&str]; 4] = [
            &["--peer-addr", "10.1.2.3:8800"],
            &[
                "--peer-addr",
                "0.0.0.0:8800",
                "--advertise-peer-addr",
                "10.1.2.3:8800",
            ],
            &[
                "--peer-addr",
                "127.0.0.1:8800",
                "--advertise-peer-addr",
                "10.1.2.3:8800",
            ],
            &[
                "--peer-addr",
                "[::]:8800",
                "--advertise-peer-addr",
                "[2001:db8::1]:8800",
            ],
        ];
        for args in open_cases {
            let e = ServerConfig::resolve(parse(args)).unwrap_err().to_string();
            assert!(
                e.contains("cluster secret") && e.contains("loopback"),
                "{args:?}: {e}"
            );
            assert!(!e.contains('\n'), "one line: {e}");
            let mut with_secret = args.to_vec();
            with_secret.extend(["--cluster-secret", "0123456789abcdef0123"]);
            let c = ServerConfig::resolve(parse(&with_secret)).unwrap();
            assert!(!c.cluster_secret_open);
        }
    }

    #[test]
    fn tls_comes_as_a_set_of_three_and_stands_in_for_the_secret() {
        let e = ServerConfig::resolve(parse(&["--tls-cert", "a.crt"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--tls-cert") && e.contains("--tls-ca"), "{e}");
        let e = ServerConfig::resolve(parse(&["--tls-key", "a.key", "--tls-ca", "ca.crt"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--tls-key"), "{e}");
        let e = ServerConfig::resolve(parse(&["--tls-ca", "ca.crt"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--tls-ca ca.crt"), "{e}");
        let c = ServerConfig::resolve(parse(&[
            "--peer-addr",
            "10.1.2.3:8800",
            "--tls-cert",
            "a.crt",
            "--tls-key",
            "a.key",
            "--tls-ca",
            "ca.crt",
        ]))
        .unwrap();
        assert_eq!(
            c.tls.as_ref().map(|t| t.ca.clone()),
            Some(PathBuf::from("ca.crt"))
        );
        assert!(
            c.startup_warnings()
                .iter()
                .any(|w| w.contains("mutual TLS") && w.contains("RIFTKV_CLUSTER_SECRET"))
        );
    }

    #[test]
    fn no_secret_is_derived_from_the_cluster_name() {
        let a = ServerConfig::resolve(parse(&["--cluster-name", "a"])).unwrap();
        let b = ServerConfig::resolve(parse(&["--cluster-name", "b"])).unwrap();
        assert!(a.cluster_secret_open && b.cluster_secret_open);
        // Knowing the cluster name gives nothing: an open (loopback-only) node uses no secret
        // of its own, and says so.
        assert_eq!(a.cluster_secret, b.cluster_secret);
        assert!(
            a.startup_warnings()
                .iter()
                .any(|w| w.contains("loopback") && w.contains("RIFTKV_CLUSTER_SECRET"))
        );
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

    /// A valid value for every declared setting, unlike its default: (key, flag/env text, TOML).
    const SAMPLES: &[(&str, &str, &str)] = &[
        ("node_id", "sample-node", "\"sample-node\""),
        ("api_addr", "127.0.0.1:9700", "\"127.0.0.1:9700\""),
        ("peer_addr", "127.0.0.1:9800", "\"127.0.0.1:9800\""),
        ("advertise_api_addr", "10.0.0.1:9700", "\"10.0.0.1:9700\""),
        ("advertise_peer_addr", "10.0.0.1:9800", "\"10.0.0.1:9800\""),
        (
            "data_dir",
            "/var/lib/riftkv-sample",
            "\"/var/lib/riftkv-sample\"",
        ),
        ("seeds", "127.0.0.1:9801", "\"127.0.0.1:9801\""),
        ("cluster_name", "sample", "\"sample\""),
        (
            "cluster_secret",
            "sample-secret-0123456789",
            "\"sample-secret-0123456789\"",
        ),
        ("ring_size", "128", "128"),
        ("zone", "z9", "\"z9\""),
        ("n_val", "5", "5"),
        ("log_format", "json", "\"json\""),
        ("hinted_handoff", "false", "false"),
        ("handoff_interval_ms", "11", "11"),
        ("transfer_concurrency", "3", "3"),
        ("transfer_max_bytes_per_sec", "1048576", "1048576"),
        ("staged_changes", "true", "true"),
        ("gossip_interval_ms", "12", "12"),
        ("tombstone_grace_ms", "13", "13"),
        ("aae_interval_ms", "14", "14"),
        ("catch_up_timeout_ms", "17", "17"),
        ("shutdown_drain_ms", "19", "19"),
        ("max_value_bytes", "15", "15"),
        ("max_object_bytes", "16777217", "16777217"),
        ("request_timeout_ms", "16", "16"),
        ("max_in_flight", "17", "17"),
        ("block_cache_mb", "32", "32"),
        ("background_write_mb_per_sec", "640", "640"),
        ("blob_min_bytes", "2048", "2048"),
        ("worker_threads", "3", "3"),
        ("max_connections", "18", "18"),
        ("max_connections_per_ip", "19", "19"),
        ("client_timeout_ms", "20", "20"),
        (
            "tls_cert",
            "/etc/riftkv/node.crt",
            "\"/etc/riftkv/node.crt\"",
        ),
        (
            "tls_key",
            "/etc/riftkv/node.key",
            "\"/etc/riftkv/node.key\"",
        ),
        ("tls_ca", "/etc/riftkv/ca.crt", "\"/etc/riftkv/ca.crt\""),
        ("auth", "on", "\"on\""),
        (
            "bootstrap_token_file",
            "/etc/riftkv/bootstrap-token",
            "\"/etc/riftkv/bootstrap-token\"",
        ),
    ];

    fn sample(key: &str) -> (&'static str, &'static str) {
        let (_, flag, toml) = SAMPLES
            .iter()
            .find(|(k, _, _)| *k == key)
            .unwrap_or_else(|| panic!("no sample value for setting {key}"));
        (flag, toml)
    }

    fn all_flags() -> Vec<String> {
        SETTINGS
            .iter()
            .flat_map(|s| [s.flag(), sample(s.key).0.to_string()])
            .collect()
    }

    fn resolve_argv(argv: &[String]) -> Result<ServerConfig, ConfigError> {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        ServerConfig::resolve(parse(&argv))
    }

    #[test]
    fn every_setting_has_a_flag_an_env_var_and_help() {
        use clap::CommandFactory;
        assert_eq!(SETTINGS.len(), SAMPLES.len());
        let cmd = TestCli::command();
        for s in SETTINGS {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long().map(|l| format!("--{l}")) == Some(s.flag()))
                .unwrap_or_else(|| panic!("no flag {}", s.flag()));
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(s.env));
            assert_eq!(s.env, format!("RIFTKV_{}", s.key.to_uppercase()));
            assert!(arg.get_help().is_some(), "{} has no help", s.key);
        }
    }

    #[test]
    fn every_setting_round_trips_through_flag_and_file() {
        // A secret throughout: some samples put the peer address off loopback.
        let secret = "base-secret-0123456789";
        let base = ServerConfig::resolve(parse(&["--node-id", "base", "--cluster-secret", secret]))
            .unwrap();
        for s in SETTINGS {
            let (flag_value, toml_value) = sample(s.key);
            let mut argv = vec![s.flag(), flag_value.to_string()];
            if s.key != "node_id" {
                argv.extend(["--node-id".to_string(), "base".to_string()]);
            }
            if s.key != "cluster_secret" {
                argv.extend(["--cluster-secret".to_string(), secret.to_string()]);
            }
            // TLS settings come as a set of three.
            for other in ["tls_cert", "tls_key", "tls_ca"] {
                if s.key.starts_with("tls_") && s.key != other {
                    argv.extend([
                        format!("--{}", other.replace('_', "-")),
                        sample(other).0.to_string(),
                    ]);
                }
            }
            let from_flag = resolve_argv(&argv).unwrap_or_else(|e| panic!("{}: {e}", s.key));
            assert_ne!(from_flag, base, "{} sample equals the default", s.key);

            let f = write_toml(&format!("{} = {toml_value}\n", s.key));
            let mut args = parse(&argv[2..].iter().map(String::as_str).collect::<Vec<_>>());
            args.config = Some(f.path().to_path_buf());
            let mut from_file =
                ServerConfig::resolve(args).unwrap_or_else(|e| panic!("{}: {e}", s.key));
            from_file.config_file = None;
            assert_eq!(from_file, from_flag, "{}", s.key);
        }
    }

    #[test]
    fn staged_changes_is_a_bare_flag_too() {
        let base = ["--node-id", "n"];
        let off = ServerConfig::resolve(parse(&base)).unwrap();
        assert!(!off.staged_changes);
        let bare = ServerConfig::resolve(parse(&["--staged-changes", "--node-id", "n"])).unwrap();
        assert!(bare.staged_changes);
        let last = ServerConfig::resolve(parse(&["--node-id", "n", "--staged-changes"])).unwrap();
        assert!(last.staged_changes);
        let explicit =
            ServerConfig::resolve(parse(&["--node-id", "n", "--staged-changes", "false"])).unwrap();
        assert!(!explicit.staged_changes);
    }

    /// A value every source refuses: (key, flag text or none when clap itself refuses, TOML).
    const BAD: &[(&str, Option<&str>, &str)] = &[
        ("node_id", Some("a/b"), "\"a/b\""),
        ("api_addr", Some("nowhere"), "\"nowhere\""),
        ("peer_addr", Some("nowhere"), "\"nowhere\""),
        ("advertise_api_addr", Some("0.0.0.0:1"), "\"0.0.0.0:1\""),
        ("advertise_peer_addr", Some("nowhere"), "\"nowhere\""),
        ("data_dir", None, "\"\""),
        ("seeds", Some("bogus"), "\"bogus\""),
        ("cluster_name", Some("a b"), "\"a b\""),
        ("cluster_secret", Some(""), "\"\""),
        ("ring_size", Some("100"), "100"),
        ("zone", Some("a b"), "\"a b\""),
        ("n_val", Some("0"), "0"),
        ("log_format", None, "\"xml\""),
        ("hinted_handoff", None, "\"maybe\""),
        ("handoff_interval_ms", Some("0"), "0"),
        ("transfer_concurrency", Some("0"), "0"),
        ("transfer_max_bytes_per_sec", None, "\"fast\""),
        ("staged_changes", None, "\"maybe\""),
        ("gossip_interval_ms", Some("0"), "0"),
        ("tombstone_grace_ms", Some("0"), "0"),
        ("aae_interval_ms", Some("86400001"), "86400001"),
        ("catch_up_timeout_ms", Some("0"), "0"),
        ("shutdown_drain_ms", Some("600001"), "600001"),
        ("max_value_bytes", Some("0"), "0"),
        ("max_object_bytes", Some("268435457"), "268435457"),
        ("request_timeout_ms", Some("0"), "0"),
        ("max_in_flight", Some("0"), "0"),
        ("block_cache_mb", Some("0"), "1048577"),
        ("background_write_mb_per_sec", Some("1048577"), "1048577"),
        ("blob_min_bytes", Some("268435457"), "268435457"),
        ("worker_threads", Some("0"), "1025"),
        ("max_connections", Some("2000000"), "2000000"),
        ("max_connections_per_ip", Some("0"), "0"),
        ("client_timeout_ms", Some("0"), "0"),
        ("tls_cert", None, "\"\""),
        ("tls_key", None, "\"\""),
        ("tls_ca", None, "\"\""),
        ("auth", None, "\"maybe\""),
        ("bootstrap_token_file", None, "\"\""),
    ];

    #[test]
    fn bad_flag_and_file_values_name_their_source() {
        assert_eq!(BAD.len(), SETTINGS.len());
        for s in SETTINGS {
            let (_, flag_text, toml_text) = BAD
                .iter()
                .find(|(k, _, _)| *k == s.key)
                .unwrap_or_else(|| panic!("no bad value for {}", s.key));
            if let Some(text) = flag_text {
                let err = ServerConfig::resolve(parse(&[&s.flag(), text]))
                    .unwrap_err()
                    .to_string();
                assert!(err.starts_with(&format!("invalid {} ", s.flag())), "{err}");
            }
            let f = write_toml(&format!("{} = {toml_text}\n", s.key));
            let err = ServerConfig::resolve(args_with(|a| a.config = Some(f.path().to_path_buf())))
                .unwrap_err();
            let msg = err.to_string();
            let path = f.path().display().to_string();
            match err {
                ConfigError::Invalid { setting, .. } => {
                    assert_eq!(setting, format!("{} in {path}", s.key))
                }
                // Values serde refuses by type: the file and line are named.
                ConfigError::FileSyntax { .. } => {
                    assert!(msg.contains(&path) && msg.contains("line 1"), "{msg}")
                }
                ConfigError::FileRead { .. } => panic!("{msg}"),
            }
        }
    }

    /// Runs in a child process (spawned by `env_round_trips_and_names_its_variable`) so that
    /// setting environment variables cannot race with other tests.
    #[test]
    #[ignore = "helper run in a child process"]
    fn env_round_trip_child() {
        let Ok(bad) = std::env::var("RIFTKV_TEST_BAD") else {
            return;
        };
        if bad.is_empty() {
            let from_env = ServerConfig::resolve(parse(&[])).unwrap();
            assert_eq!(from_env, resolve_argv(&all_flags()).unwrap());
        } else {
            let err = ServerConfig::resolve(parse(&[])).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid {bad} ")), "{err}");
        }
    }

    fn run_env_child(vars: &[(&str, &str)], bad: &str) {
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "--ignored",
            "--exact",
            "config::tests::env_round_trip_child",
            "--test-threads=1",
        ]);
        for (k, _) in std::env::vars() {
            if k.starts_with("RIFTKV_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RIFTKV_TEST_BAD", bad).envs(vars.iter().copied());
        let out = cmd.output().expect("run child test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed ({bad}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 passed"), "child did not run: {stdout}");
    }

    #[test]
    fn env_round_trips_and_names_its_variable() {
        let all: Vec<(&str, &str)> = SETTINGS.iter().map(|s| (s.env, sample(s.key).0)).collect();
        run_env_child(&all, "");
        run_env_child(&[("RIFTKV_RING_SIZE", "100")], "RIFTKV_RING_SIZE");
        run_env_child(
            &[("RIFTKV_GOSSIP_INTERVAL_MS", "0")],
            "RIFTKV_GOSSIP_INTERVAL_MS",
        );
        run_env_child(&[("RIFTKV_API_ADDR", "nowhere")], "RIFTKV_API_ADDR");
    }
}
