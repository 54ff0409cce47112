//! Quorum sizes as clients, bucket props and coordinators spell them: one type from the
//! HTTP query string and the CLI flag down to the quorum cores.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A quorum size as a client writes it: an integer, or a symbolic value resolved against `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quorum {
    One,
    Quorum,
    All,
    Count(u32),
}

/// A quorum value that cannot be used: unparsable, or out of `min..=n`. (A requirement that
/// is valid but cannot be met by the replicas is the coordinator's `QuorumError`.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidQuorum {
    #[error("'{0}' is not a quorum: use an integer, one, quorum or all")]
    Unparsable(String),
    #[error("{name}={value} is more than n={n}")]
    OverN {
        name: &'static str,
        value: u32,
        n: u32,
    },
    #[error("{name} must be at least {min}")]
    UnderMin { name: &'static str, min: u32 },
}

impl Quorum {
    /// The concrete count for a bucket with `n` replicas.
    pub fn resolve(self, n: u32) -> u32 {
        match self {
            Quorum::One => 1,
            Quorum::Quorum => n / 2 + 1,
            Quorum::All => n,
            Quorum::Count(c) => c,
        }
    }

    /// Resolves and checks the contract's bounds: `min` (1 for r/w, 0 for dw/pr/pw) ..= n.
    pub fn resolve_checked(
        self,
        name: &'static str,
        n: u32,
        min: u32,
    ) -> Result<u32, InvalidQuorum> {
        let v = self.resolve(n);
        if v < min {
            return Err(InvalidQuorum::UnderMin { name, min });
        }
        if v > n {
            return Err(InvalidQuorum::OverN { name, value: v, n });
        }
        Ok(v)
    }
}

impl FromStr for Quorum {
    type Err = InvalidQuorum;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "one" => Ok(Quorum::One),
            "quorum" => Ok(Quorum::Quorum),
            "all" => Ok(Quorum::All),
            other => other
                .parse::<u32>()
                .map(Quorum::Count)
                .map_err(|_| InvalidQuorum::Unparsable(other.chars().take(64).collect())),
        }
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quorum::One => f.write_str("one"),
            Quorum::Quorum => f.write_str("quorum"),
            Quorum::All => f.write_str("all"),
            Quorum::Count(c) => write!(f, "{c}"),
        }
    }
}

/// Compact form for binary formats (postcard cannot read self-describing input).
#[derive(Serialize, Deserialize)]
enum QuorumRepr {
    One,
    Quorum,
    All,
    Count(u32),
}

impl Serialize for Quorum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            let r = match *self {
                Quorum::One => QuorumRepr::One,
                Quorum::Quorum => QuorumRepr::Quorum,
                Quorum::All => QuorumRepr::All,
                Quorum::Count(c) => QuorumRepr::Count(c),
            };
            return r.serialize(s);
        }
        match self {
            Quorum::Count(c) => s.serialize_u32(*c),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Quorum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Quorum;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or one of \"one\", \"quorum\", \"all\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quorum, E> {
                u32::try_from(v)
                    .map(Quorum::Count)
                    .map_err(|_| E::custom("quorum out of range"))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quorum, E> {
                u32::try_from(v)
                    .map(Quorum::Count)
                    .map_err(|_| E::custom("quorum out of range"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quorum, E> {
                v.parse().map_err(E::custom)
            }
        }
        if !d.is_human_readable() {
            return Ok(match QuorumRepr::deserialize(d)? {
                QuorumRepr::One => Quorum::One,
                QuorumRepr::Quorum => Quorum::Quorum,
                QuorumRepr::All => Quorum::All,
                QuorumRepr::Count(c) => Quorum::Count(c),
            });
        }
        d.deserialize_any(V)
    }
}
