//! Who may call the API: users, their bearer tokens, groups and per-bucket grants (pure data
//! and rules; the API layer decides status codes, the ring state carries this as cluster
//! metadata).
//!
//! Every entry is a last-writer-wins register ordered by `(version, author)`, like bucket
//! props, and a removal is a tombstone (an entry without a value) that wins over every older
//! write, so a removed user, a revoked token or a revoked grant never comes back through an
//! older copy's gossip. Merging is commutative, associative and idempotent.
//!
//! Tokens are 32 random bytes (base64url); only their SHA-256 is kept. A fast hash is right
//! here: the input is uniformly random and long, so there is nothing to brute-force.

use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Bytes of randomness in a token.
pub const TOKEN_BYTES: usize = 32;
/// Shortest token accepted from an operator (the bootstrap file).
pub const MIN_TOKEN_LEN: usize = 16;
/// The bucket scope of a grant that covers every bucket (and the cluster-wide permissions).
pub const ALL_BUCKETS: &str = "*";
/// The user the bootstrap token file creates.
pub const BOOTSTRAP_USER: &str = "admin";
/// Longest user or group name.
pub const MAX_NAME_LEN: usize = 64;

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Get,
    Put,
    Delete,
    List,
    Props,
    /// Cluster-wide: every `/v1/admin/*` endpoint, users and grants.
    Admin,
    /// Cluster-wide: `/metrics`.
    Metrics,
}

impl Permission {
    pub const ALL: [Permission; 7] = [
        Permission::Get,
        Permission::Put,
        Permission::Delete,
        Permission::List,
        Permission::Props,
        Permission::Admin,
        Permission::Metrics,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Permission::Get => "get",
            Permission::Put => "put",
            Permission::Delete => "delete",
            Permission::List => "list",
            Permission::Props => "props",
            Permission::Admin => "admin",
            Permission::Metrics => "metrics",
        }
    }

    /// Cluster-wide permissions are granted on `*` only.
    pub fn cluster_wide(&self) -> bool {
        matches!(self, Permission::Admin | Permission::Metrics)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = SecurityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| SecurityError::BadPermission(s.to_string()))
    }
}

/// Who a grant is for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    User(String),
    Group(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(n) => write!(f, "user:{n}"),
            Subject::Group(n) => write!(f, "group:{n}"),
        }
    }
}

impl FromStr for Subject {
    type Err = SecurityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SecurityError::BadSubject(s.to_string());
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        check_name(name).map_err(|_| bad())?;
        match kind {
            "user" => Ok(Subject::User(name.to_string())),
            "group" => Ok(Subject::Group(name.to_string())),
            _ => Err(bad()),
        }
    }
}

/// Names of users and groups: 1..=64 characters of `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<(), SecurityError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SecurityError::BadName(name.to_string()))
    }
}

/// The bucket scope of a grant: a bucket name (UTF-8, 1..=255 bytes) or `*`.
pub fn check_bucket_scope(bucket: &str) -> Result<(), SecurityError> {
    if bucket.is_empty() || bucket.len() > 255 {
        return Err(SecurityError::BadBucket(bucket.to_string()));
    }
    Ok(())
}

/// One last-writer-wins register; `value: None` is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entry<T> {
    pub value: Option<T>,
    pub version: u64,
    pub author: NodeId,
}

impl<T: Ord> Entry<T> {
    /// The deterministic winner of two writes: the higher `(version, author)`; on a full tie
    /// (which a correct author never produces) a tombstone, then the larger value.
    fn wins_over(&self, other: &Entry<T>) -> bool {
        let rank = |e: &Entry<T>| (e.version, e.author.clone(), e.value.is_none());
        match rank(self).cmp(&rank(other)) {
            std::cmp::Ordering::Equal => self.value > other.value,
            o => o == std::cmp::Ordering::Greater,
        }
    }

    pub fn live(&self) -> Option<&T> {
        self.value.as_ref()
    }
}

/// Merges `theirs` into `mine` entry by entry. Returns true on a change.
fn merge_map<K: Ord + Clone, T: Ord + Clone>(
    mine: &mut BTreeMap<K, Entry<T>>,
    theirs: &BTreeMap<K, Entry<T>>,
) -> bool {
    let mut changed = false;
    for (k, t) in theirs {
        match mine.get_mut(k) {
            Some(m) if !t.wins_over(m) => {}
            Some(m) => {
                *m = t.clone();
                changed = true;
            }
            None => {
                mine.insert(k.clone(), t.clone());
                changed = true;
            }
        }
    }
    changed
}

/// Writes `value` (or a tombstone) over the entry at `k` as a new last write by `author`.
fn write<K: Ord, T>(map: &mut BTreeMap<K, Entry<T>>, k: K, value: Option<T>, author: &NodeId) {
    let version = map.get(&k).map_or(1, |e| e.version + 1);
    map.insert(
        k,
        Entry {
            value,
            version,
            author: author.clone(),
        },
    );
}

/// A user: the groups they belong to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct User {
    pub groups: BTreeSet<String>,
}

/// A token of a user: its hash (hex SHA-256), never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TokenInfo {
    pub user: String,
    pub hash: String,
    /// Instant (ms since the Unix epoch) after which the token is refused; none = never.
    pub expires_at: Option<u64>,
}

/// A granted permission: `subject` may use `permission` on `bucket` (or `*`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    pub subject: Subject,
    pub bucket: String,
    pub permission: Permission,
}

/// The identity behind a valid token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub groups: BTreeSet<String>,
}

/// A token was refused. Unknown, revoked and expired tokens and removed users are the same
/// answer, so a caller learns nothing about which tokens exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the bearer token is not valid")]
pub struct AuthError;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    #[error("invalid name {0:?}: use 1 to 64 characters among letters, digits, '.', '_' and '-'")]
    BadName(String),
    #[error("invalid subject {0:?}: expected user:NAME or group:NAME")]
    BadSubject(String),
    #[error("unknown permission {0:?}: expected get, put, delete, list, props, admin or metrics")]
    BadPermission(String),
    #[error("invalid bucket {0:?}: expected a bucket name of 1 to 255 bytes, or *")]
    BadBucket(String),
    #[error("the {0} permission is cluster-wide: grant it on bucket *")]
    ClusterWide(Permission),
    #[error("no user named {0}")]
    NoSuchUser(String),
    #[error("user {user} has no token {id}")]
    NoSuchToken { user: String, id: String },
    #[error("name at least one permission")]
    NoPermissions,
    #[error("a token must be at least {MIN_TOKEN_LEN} bytes long")]
    ShortToken,
}

/// Users, tokens and grants of a cluster, as gossiped and persisted inside the ring state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityState {
    /// By user name.
    #[serde(default)]
    pub users: BTreeMap<String, Entry<User>>,
    /// By token id.
    #[serde(default)]
    pub tokens: BTreeMap<String, Entry<TokenInfo>>,
    /// Subject (`user:NAME`, `group:NAME`) → bucket (or `*`) → permission → granted (a
    /// revoke is a tombstone).
    #[serde(default)]
    pub grants: BTreeMap<String, BTreeMap<String, BTreeMap<Permission, Entry<bool>>>>,
}

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// What every issued token starts with: it never begins with `-` (base64url may), so it can
/// follow `--token` on a command line, and secret scanners can recognise a leaked one.
pub const TOKEN_PREFIX: &str = "rkv_";

/// A fresh token: [`TOKEN_PREFIX`] and 32 random bytes, base64url without padding.
pub fn new_token() -> String {
    use base64::Engine;
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A fresh token id: 8 random bytes, hex.
pub fn new_token_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SecurityState {
    /// Merges another node's copy into this one. Returns true when this copy changed.
    pub fn merge(&mut self, other: &SecurityState) -> bool {
        let mut changed = merge_map(&mut self.users, &other.users);
        changed |= merge_map(&mut self.tokens, &other.tokens);
        for (subject, buckets) in other.grants.iter().filter(|(_, b)| !b.is_empty()) {
            let mine = self.grants.entry(subject.clone()).or_default();
            for (bucket, perms) in buckets.iter().filter(|(_, p)| !p.is_empty()) {
                changed |= merge_map(mine.entry(bucket.clone()).or_default(), perms);
            }
        }
        changed
    }

    /// The first admin: with no user ever created, user `admin` with the `admin` permission on
    /// `*` and `token` (trimmed; at least [`MIN_TOKEN_LEN`] bytes) under token id `bootstrap`.
    /// Returns whether it was created (false: the cluster already has or had users).
    pub fn bootstrap(&mut self, token: &str, author: &NodeId) -> Result<bool, SecurityError> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(SecurityError::ShortToken);
        }
        if !self.never_had_users() {
            return Ok(false);
        }
        self.put_user(BOOTSTRAP_USER, BTreeSet::new(), author)?;
        self.add_token(BOOTSTRAP_USER, "bootstrap", hash_token(token), None, author)?;
        self.set_grant(
            &Subject::User(BOOTSTRAP_USER.to_string()),
            ALL_BUCKETS,
            &[Permission::Admin],
            true,
            author,
        )?;
        Ok(true)
    }

    /// True when no user was ever created (not even one since removed): bootstrap applies.
    pub fn never_had_users(&self) -> bool {
        self.users.is_empty()
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name).and_then(Entry::live)
    }

    /// Live users, by name.
    pub fn live_users(&self) -> impl Iterator<Item = (&String, &User)> {
        self.users
            .iter()
            .filter_map(|(n, e)| e.live().map(|u| (n, u)))
    }

    /// Live tokens of a user: (id, info).
    pub fn tokens_of<'a>(
        &'a self,
        user: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a TokenInfo)> + 'a {
        self.tokens
            .iter()
            .filter_map(|(id, e)| e.live().map(|t| (id, t)))
            .filter(move |(_, t)| t.user == user)
    }

    /// Live grants, in a stable order.
    pub fn live_grants(&self) -> Vec<Grant> {
        let mut out = Vec::new();
        for (subject, buckets) in &self.grants {
            let Ok(subject) = Subject::from_str(subject) else {
                continue;
            };
            for (bucket, perms) in buckets {
                for (p, e) in perms {
                    if e.live().is_some() {
                        out.push(Grant {
                            subject: subject.clone(),
                            bucket: bucket.clone(),
                            permission: *p,
                        });
                    }
                }
            }
        }
        out
    }

    /// Creates or updates a user (its groups).
    pub fn put_user(
        &mut self,
        name: &str,
        groups: BTreeSet<String>,
        author: &NodeId,
    ) -> Result<(), SecurityError> {
        check_name(name)?;
        for g in &groups {
            check_name(g)?;
        }
        write(
            &mut self.users,
            name.to_string(),
            Some(User { groups }),
            author,
        );
        Ok(())
    }

    /// Removes a user and every token of theirs. Grants to `user:NAME` stay (a user created
    /// again under the name gets them back, as in most databases).
    pub fn remove_user(&mut self, name: &str, author: &NodeId) -> Result<(), SecurityError> {
        if self.user(name).is_none() {
            return Err(SecurityError::NoSuchUser(name.to_string()));
        }
        write(&mut self.users, name.to_string(), None, author);
        let ids: Vec<String> = self.tokens_of(name).map(|(id, _)| id.clone()).collect();
        for id in ids {
            write(&mut self.tokens, id, None, author);
        }
        Ok(())
    }

    /// Adds a token (by its hash) to a live user.
    pub fn add_token(
        &mut self,
        user: &str,
        id: &str,
        hash: String,
        expires_at: Option<u64>,
        author: &NodeId,
    ) -> Result<(), SecurityError> {
        if self.user(user).is_none() {
            return Err(SecurityError::NoSuchUser(user.to_string()));
        }
        let info = TokenInfo {
            user: user.to_string(),
            hash,
            expires_at,
        };
        write(&mut self.tokens, id.to_string(), Some(info), author);
        Ok(())
    }

    /// Revokes a user's token (a tombstone).
    pub fn revoke_token(
        &mut self,
        user: &str,
        id: &str,
        author: &NodeId,
    ) -> Result<(), SecurityError> {
        let owned = self
            .tokens
            .get(id)
            .and_then(Entry::live)
            .is_some_and(|t| t.user == user);
        if !owned {
            return Err(SecurityError::NoSuchToken {
                user: user.to_string(),
                id: id.to_string(),
            });
        }
        write(&mut self.tokens, id.to_string(), None, author);
        Ok(())
    }

    /// Grants (`granted`) or revokes permissions of a subject on a bucket or `*`.
    pub fn set_grant(
        &mut self,
        subject: &Subject,
        bucket: &str,
        permissions: &[Permission],
        granted: bool,
        author: &NodeId,
    ) -> Result<(), SecurityError> {
        check_bucket_scope(bucket)?;
        if permissions.is_empty() {
            return Err(SecurityError::NoPermissions);
        }
        if let Some(p) = permissions
            .iter()
            .find(|p| p.cluster_wide() && bucket != ALL_BUCKETS)
        {
            return Err(SecurityError::ClusterWide(*p));
        }
        let perms = self
            .grants
            .entry(subject.to_string())
            .or_default()
            .entry(bucket.to_string())
            .or_default();
        for p in permissions {
            write(perms, *p, granted.then_some(true), author);
        }
        Ok(())
    }

    /// The principal behind `token` at `now_ms`: a live token of a live user, not expired.
    pub fn authenticate(&self, token: &str, now_ms: u64) -> Result<Principal, AuthError> {
        let hash = hash_token(token);
        let info = self
            .tokens
            .values()
            .filter_map(Entry::live)
            .find(|t| t.hash == hash)
            .ok_or(AuthError)?;
        if info.expires_at.is_some_and(|at| now_ms >= at) {
            return Err(AuthError);
        }
        let user = self.user(&info.user).ok_or(AuthError)?;
        Ok(Principal {
            user: info.user.clone(),
            groups: user.groups.clone(),
        })
    }

    /// Whether `who` may use `perm` on `bucket` (`None`: a cluster-wide permission, which
    /// only grants on `*` give). A grant to the user or to any of their groups counts, on the
    /// bucket by name (UTF-8) or on `*`.
    pub fn authorize(&self, who: &Principal, perm: Permission, bucket: Option<&[u8]>) -> bool {
        let subjects = std::iter::once(Subject::User(who.user.clone()))
            .chain(who.groups.iter().cloned().map(Subject::Group));
        let named = if perm.cluster_wide() {
            None
        } else {
            bucket.and_then(|b| std::str::from_utf8(b).ok())
        };
        for s in subjects {
            let Some(buckets) = self.grants.get(&s.to_string()) else {
                continue;
            };
            let scopes = std::iter::once(ALL_BUCKETS).chain(named);
            for scope in scopes {
                let granted = buckets
                    .get(scope)
                    .and_then(|perms| perms.get(&perm))
                    .is_some_and(|e| e.live().is_some());
                if granted {
                    return true;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests;
