//! State-based convergent data types stored as RiftKV object values (CONTRACT §6).
//!
//! Three types, each a join-semilattice: replicas apply operations independently and merge
//! states with [`Crdt::join`] (commutative, associative, idempotent), so every replica that has
//! seen the same writes holds the same value, with no siblings. The crate is pure: no clock
//! reads, no I/O; a write's timestamp is a parameter.
//!
//! - **counter** ([`Counter`]): per-actor totals of increments and decrements. A total that
//!   would leave i64 is an error ([`CrdtError::Overflow`]), never a wrap.
//! - **set** ([`OrSet`]): add-wins observed-remove set of UTF-8 strings.
//! - **map** ([`Map`]): named fields, each a counter, set, register, flag or nested map.
//!
//! # Actors, dots and the context
//! Every write is issued by an actor (RiftKV's write identity `(node id, epoch)`) and gets a
//! *dot* `(actor, n)`, the actor's n-th write to the object. A state keeps a version vector of
//! every dot it has seen, one entry per writer (never per member or field). That vector is the
//! **context** ([`Crdt::context`]): what a reader saw. The server hands it to clients (wrapped
//! in its own token) and a remove must bring it back.
//!
//! # Add wins; removes are causal
//! A member or field is kept alive by the dots of the writes that added or updated it. A
//! remove drops only the dots its context covers, that is the writes its reader saw. A write
//! the reader did not see (a concurrent add, a concurrent update of a field) keeps its dot and
//! survives: add wins over a concurrent remove. Hence removes *require* a context; without one
//! "remove what I saw" has no meaning, and `apply` answers [`CrdtError::ContextRequired`].
//!
//! No tombstones: a removed member leaves nothing behind but the clock entry its writer
//! already had. A merge tells "removed there" from "not yet seen there" by the clock (a dot the
//! other side saw but no longer holds was removed). If a remove's context names writes the
//! applying replica has not received yet, the remove is also kept (with its context) until the
//! clock covers that context, so those writes are removed when they arrive; then it is dropped.
//!
//! # Map fields
//! A field is identified by its name **and** its type: `("a", counter)` and `("a", register)`
//! are two fields. An update names the type (`{"counter": ...}`), so it only ever touches the
//! field of that type. A remove names a field by name only, and removes every type under that
//! name (as far as its context saw). In the value JSON, a name maps to an object with one key
//! per type present: normally one (`{"a": {"counter": 3}}`, the contract's shape), two only
//! when writers used two types for one name (`{"a": {"counter": 3, "register": "x"}}`).
//!
//! Each update of a field (and of every map above it) is a write whose dot keeps the field
//! present, so a field exists from its first update, even a `disable` or a set remove, until a
//! remove that saw all its updates. Removing a field drops all the content its remover saw; a
//! concurrent update keeps the field with only the content the remover did not see (a set keeps
//! only the members added concurrently, a flag only concurrent enables, a register only
//! concurrent assignments). Counters are the exception, since a field counter keeps one running
//! total per actor: an actor that increments concurrently with the removal keeps its whole
//! total, while the totals of actors the remover saw are gone.
//!
//! - **register**: an assignment replaces every value its replica holds, so a write that saw
//!   the previous value wins even if its clock is behind (clock skew cannot lose a sequential
//!   update). Only concurrent assignments are ordered, by `(timestamp_ms, actor)`: under skew
//!   the fast clock wins among concurrent writes, and the actor breaks ties the same way on
//!   every replica.
//! - **flag**: enable wins over a concurrent disable; a disable turns off the enables it saw.
//!
//! # Strings
//! Members, field names and register values come from JSON, so they are UTF-8 `String`s; no
//! other bytes can be expressed. Sets and names sort by their UTF-8 bytes.
//!
//! # Limits and errors
//! [`Limits`] bound members, fields, nesting, string sizes and the encoded size; an operation
//! that would exceed one is refused with [`ErrorKind::TooLarge`] (413) and leaves the value
//! unchanged. Malformed operations are [`ErrorKind::BadRequest`] (400); undecodable bytes are
//! [`ErrorKind::Corrupt`]. Merges never fail on limits (that would stop convergence).
//!
//! # Encoding
//! [`Crdt::encode`] writes a format version byte then postcard; nested maps are flattened into
//! one record per field so decoding never recurses. [`Crdt::decode`] accepts only well-formed,
//! canonical data and returns an error (never panics) on anything else. Each `apply` works on a
//! copy and re-encodes it to check the size limit, so it costs time linear in the value's size,
//! like the server's read-modify-write of the stored value.

pub mod clock;
pub mod counter;
mod dots;
pub mod error;
pub mod limits;
pub mod map;
pub mod op;
mod removal;
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

/// The data type of a bucket (`"datatype"` bucket property); serialised as its lowercase name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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
        let before = self.clone();
        match (&mut *self, op) {
            (Crdt::Counter(c), Op::Counter(o)) => c.apply(actor, o, context, now_ms, limits)?,
            (Crdt::Set(s), Op::Set(o)) => s.apply(actor, o, context, now_ms, limits)?,
            (Crdt::Map(m), Op::Map(o)) => m.apply(actor, o, context, now_ms, limits)?,
            (me, op) => {
                return Err(CrdtError::TypeMismatch {
                    expected: op.data_type().as_str(),
                    actual: me.data_type().as_str(),
                });
            }
        }
        // The whole value's encoded size is checked here, above the types, since only the
        // encoding knows it.
        if let Err(e) =
            wire::check_encoded_size(|| wire::encode(&before), || wire::encode(self), limits)
        {
            *self = before;
            return Err(e);
        }
        Ok(())
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
