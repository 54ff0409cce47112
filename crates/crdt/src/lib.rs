//! State-based convergent data types stored as RiftKV object values.
// (crate documentation is written with the implementation)

pub mod clock;
pub mod counter;
mod dots;
pub mod error;
pub mod limits;
pub mod map;
pub mod op;
pub mod set;
mod wire;

pub use clock::{Context, Dot, VClock};
pub use counter::Counter;
pub use error::{CrdtError, ErrorKind};
pub use limits::Limits;
pub use map::Map;
pub use op::{CounterOp, FieldOp, FieldType, MapOp, Op, SetOp};
pub use set::OrSet;

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// What identifies a writer. RiftKV uses its write identity `(node id, epoch)`.
pub trait Actor: Ord + Clone + Debug + Serialize + DeserializeOwned {}
impl<T: Ord + Clone + Debug + Serialize + DeserializeOwned> Actor for T {}

/// The data type of a bucket (`"datatype"` bucket property).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    Counter,
    Set,
    Map,
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Counter => "counter",
            DataType::Set => "set",
            DataType::Map => "map",
        }
    }

    /// Parse the bucket property value.
    pub fn parse(s: &str) -> Result<DataType, CrdtError> {
        match s {
            "counter" => Ok(DataType::Counter),
            "set" => Ok(DataType::Set),
            "map" => Ok(DataType::Map),
            other => Err(CrdtError::bad(format!(
                "datatype {other:?}: expected \"counter\", \"set\" or \"map\""
            ))),
        }
    }
}

/// A value of any of the types, as the server stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Crdt<A: Actor> {
    Counter(Counter<A>),
    Set(OrSet<A>),
    Map(Map<A>),
}

impl<A: Actor> Crdt<A> {
    /// The empty value of a type (what a missing key reads as before its first write).
    pub fn new(data_type: DataType) -> Self {
        match data_type {
            DataType::Counter => Crdt::Counter(Counter::new()),
            DataType::Set => Crdt::Set(OrSet::new()),
            DataType::Map => Crdt::Map(Map::new()),
        }
    }

    pub fn data_type(&self) -> DataType {
        match self {
            Crdt::Counter(_) => DataType::Counter,
            Crdt::Set(_) => DataType::Set,
            Crdt::Map(_) => DataType::Map,
        }
    }

    /// Apply `op` as a new write of `actor`. `context` is what the client read (needed by
    /// removes); `now_ms` stamps register assignments. On error the value is unchanged.
    pub fn apply(
        &mut self,
        actor: &A,
        op: &Op,
        context: Option<&Context<A>>,
        now_ms: u64,
        limits: &Limits,
    ) -> Result<(), CrdtError> {
        match (self, op) {
            (Crdt::Counter(c), Op::Counter(o)) => c.apply(actor, o, context, now_ms, limits),
            (Crdt::Set(s), Op::Set(o)) => s.apply(actor, o, context, now_ms, limits),
            (Crdt::Map(m), Op::Map(o)) => m.apply(actor, o, context, now_ms, limits),
            (me, op) => Err(CrdtError::TypeMismatch {
                expected: op.data_type().as_str(),
                actual: me.data_type().as_str(),
            }),
        }
    }

    /// Least upper bound with another replica's value of the same type.
    pub fn join(&mut self, other: &Crdt<A>) -> Result<(), CrdtError> {
        match (self, other) {
            (Crdt::Counter(a), Crdt::Counter(b)) => a.join(b),
            (Crdt::Set(a), Crdt::Set(b)) => a.join(b),
            (Crdt::Map(a), Crdt::Map(b)) => a.join(b),
            (me, other) => {
                return Err(CrdtError::TypeMismatch {
                    expected: other.data_type().as_str(),
                    actual: me.data_type().as_str(),
                });
            }
        }
        Ok(())
    }

    /// The causal context a reader receives with the value.
    pub fn context(&self) -> Context<A> {
        match self {
            Crdt::Counter(_) => Context::new(),
            Crdt::Set(s) => s.context(),
            Crdt::Map(m) => m.context(),
        }
    }

    /// The value's JSON (CONTRACT §6). Fails only for a counter whose total, after merging
    /// concurrent increments, no longer fits an i64.
    pub fn value_json(&self) -> Result<serde_json::Value, CrdtError> {
        match self {
            Crdt::Counter(c) => c.value_json(),
            Crdt::Set(s) => Ok(s.value_json()),
            Crdt::Map(m) => m.value_json(),
        }
    }

    /// Binary form: a format version byte, then the postcard encoding.
    pub fn encode(&self) -> Result<Vec<u8>, CrdtError> {
        wire::encode(self)
    }

    /// Inverse of [`Crdt::encode`]; damaged or hostile bytes give [`CrdtError::Decode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, CrdtError> {
        wire::decode(bytes)
    }
}
