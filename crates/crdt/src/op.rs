//! Operations and their JSON form (CONTRACT §6).

use crate::DataType;
use crate::error::CrdtError;
use serde_json::{Map as JsonMap, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The type of one map field. Part of the field's identity: `("a", Counter)` and
/// `("a", Register)` are two fields.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum FieldType {
    Counter,
    Set,
    Register,
    Flag,
    Map,
}

impl FieldType {
    /// The JSON key naming this type.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Counter => "counter",
            FieldType::Set => "set",
            FieldType::Register => "register",
            FieldType::Flag => "flag",
            FieldType::Map => "map",
        }
    }
}

/// `{"increment": n}`; a negative `n` decrements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterOp {
    pub increment: i64,
}

/// `{"add": [...], "remove": [...]}`; a member may not be in both.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SetOp {
    pub add: BTreeSet<String>,
    pub remove: BTreeSet<String>,
}

/// `{"update": {name: op}, "remove": [name]}`; a name may not be in both.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MapOp {
    pub update: BTreeMap<String, FieldOp>,
    pub remove: BTreeSet<String>,
}

/// The operation on one map field; its variant is the field's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldOp {
    Counter(CounterOp),
    Set(SetOp),
    /// `{"register": {"assign": "s"}}`
    Register(String),
    /// `{"flag": "enable"}` is `Flag(true)`, `"disable"` is `Flag(false)`.
    Flag(bool),
    Map(MapOp),
}

impl FieldOp {
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldOp::Counter(_) => FieldType::Counter,
            FieldOp::Set(_) => FieldType::Set,
            FieldOp::Register(_) => FieldType::Register,
            FieldOp::Flag(_) => FieldType::Flag,
            FieldOp::Map(_) => FieldType::Map,
        }
    }
}

/// An operation on a whole value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Counter(CounterOp),
    Set(SetOp),
    Map(MapOp),
}

impl Op {
    pub fn data_type(&self) -> DataType {
        match self {
            Op::Counter(_) => DataType::Counter,
            Op::Set(_) => DataType::Set,
            Op::Map(_) => DataType::Map,
        }
    }

    /// Whether applying this operation needs the context of a read (it removes something).
    pub fn needs_context(&self) -> bool {
        match self {
            Op::Counter(_) => false,
            Op::Set(s) => !s.remove.is_empty(),
            Op::Map(m) => m.needs_context(),
        }
    }

    /// Parse the JSON operation for a value of type `data_type`.
    ///
    /// The request body may also carry the read's `"context"` at its top level (CONTRACT §6);
    /// that key is skipped here because the server reads and verifies it. Any other unknown
    /// key or shape is refused with a message naming where it is.
    pub fn from_json(data_type: DataType, v: &Value) -> Result<Op, CrdtError> {
        parse_top(data_type, v)
    }

    /// [`Op::from_json`] from JSON text.
    pub fn from_json_str(data_type: DataType, s: &str) -> Result<Op, CrdtError> {
        let v: Value = serde_json::from_str(s)
            .map_err(|e| CrdtError::bad(format!("operation: not JSON: {e}")))?;
        Op::from_json(data_type, &v)
    }
}

impl MapOp {
    pub fn needs_context(&self) -> bool {
        !self.remove.is_empty()
            || self.update.values().any(|op| match op {
                FieldOp::Set(s) => !s.remove.is_empty(),
                FieldOp::Map(m) => m.needs_context(),
                _ => false,
            })
    }

    /// Map levels this operation reaches, itself counting 1.
    pub fn depth(&self) -> usize {
        1 + self
            .update
            .values()
            .map(|op| match op {
                FieldOp::Map(m) => m.depth(),
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }
}

fn parse_top(data_type: DataType, v: &Value) -> Result<Op, CrdtError> {
    let what = match data_type {
        DataType::Counter => "counter operation",
        DataType::Set => "set operation",
        DataType::Map => "map operation",
    };
    let mut p = Parser {
        what,
        at: String::new(),
    };
    match data_type {
        DataType::Counter => p.counter(v, true).map(Op::Counter),
        DataType::Set => p.set(v, true).map(Op::Set),
        DataType::Map => p.map(v, true).map(Op::Map),
    }
}

/// Walks the JSON keeping the location (`update."f".map...`) for error messages.
struct Parser {
    what: &'static str,
    at: String,
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Parser {
    fn err(&self, msg: impl std::fmt::Display) -> CrdtError {
        if self.at.is_empty() {
            CrdtError::bad(format!("{}: {msg}", self.what))
        } else {
            CrdtError::bad(format!("{}: {}: {msg}", self.what, self.at))
        }
    }

    /// The object at this location, with only `allowed` keys (plus `"context"` at the top).
    fn object<'v>(
        &self,
        v: &'v Value,
        allowed: &[&str],
        shape: &str,
        top: bool,
    ) -> Result<&'v JsonMap<String, Value>, CrdtError> {
        let o = v.as_object().ok_or_else(|| {
            self.err(format!(
                "expected an object like {shape}, got {}",
                kind_of(v)
            ))
        })?;
        for k in o.keys() {
            let skipped = top && k == "context";
            if !allowed.contains(&k.as_str()) && !skipped {
                let expected: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
                return Err(self.err(format!(
                    "unknown key {k:?}; expected {}",
                    expected.join(" or ")
                )));
            }
        }
        Ok(o)
    }

    fn strings(
        &self,
        o: &JsonMap<String, Value>,
        key: &str,
    ) -> Result<BTreeSet<String>, CrdtError> {
        let Some(v) = o.get(key) else {
            return Ok(BTreeSet::new());
        };
        let arr = v.as_array().ok_or_else(|| {
            self.err(format!(
                "{key:?} must be an array of strings, got {}",
                kind_of(v)
            ))
        })?;
        let mut out = BTreeSet::new();
        for (i, x) in arr.iter().enumerate() {
            let s = x.as_str().ok_or_else(|| {
                self.err(format!("{key:?}[{i}] must be a string, got {}", kind_of(x)))
            })?;
            out.insert(s.to_owned());
        }
        Ok(out)
    }

    fn counter(&mut self, v: &Value, top: bool) -> Result<CounterOp, CrdtError> {
        let o = self.object(v, &["increment"], r#"{"increment": n}"#, top)?;
        let n = o
            .get("increment")
            .ok_or_else(|| self.err(r#""increment" is required"#))?;
        let increment = n.as_i64().ok_or_else(|| {
            let got = if n.is_number() {
                "a number with a fraction or out of that range"
            } else {
                kind_of(n)
            };
            self.err(format!(
                r#""increment" must be an integer from -2^63 to 2^63-1, got {got}"#
            ))
        })?;
        Ok(CounterOp { increment })
    }

    fn set(&mut self, v: &Value, top: bool) -> Result<SetOp, CrdtError> {
        let o = self.object(
            v,
            &["add", "remove"],
            r#"{"add": [...], "remove": [...]}"#,
            top,
        )?;
        if !o.contains_key("add") && !o.contains_key("remove") {
            return Err(self.err(r#"needs "add" or "remove""#));
        }
        let add = self.strings(o, "add")?;
        let remove = self.strings(o, "remove")?;
        if let Some(m) = add.intersection(&remove).next() {
            return Err(self.err(format!("member {m:?} is both added and removed")));
        }
        Ok(SetOp { add, remove })
    }

    fn map(&mut self, v: &Value, top: bool) -> Result<MapOp, CrdtError> {
        let o = self.object(
            v,
            &["update", "remove"],
            r#"{"update": {...}, "remove": [...]}"#,
            top,
        )?;
        if !o.contains_key("update") && !o.contains_key("remove") {
            return Err(self.err(r#"needs "update" or "remove""#));
        }
        let remove = self.strings(o, "remove")?;
        let mut update = BTreeMap::new();
        if let Some(u) = o.get("update") {
            let u = u.as_object().ok_or_else(|| {
                self.err(format!(
                    r#""update" must be an object of field name to operation, got {}"#,
                    kind_of(u)
                ))
            })?;
            for (name, fop) in u {
                if remove.contains(name) {
                    return Err(self.err(format!("field {name:?} is both updated and removed")));
                }
                let saved = self.at.len();
                if !self.at.is_empty() {
                    self.at.push('.');
                }
                self.at.push_str(&format!("update.{name:?}"));
                let op = self.field(fop)?;
                self.at.truncate(saved);
                update.insert(name.clone(), op);
            }
        }
        Ok(MapOp { update, remove })
    }

    fn field(&mut self, v: &Value) -> Result<FieldOp, CrdtError> {
        const TYPES: &str = r#""counter", "set", "register", "flag" or "map""#;
        let o = v.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
            self.err(format!(
                "expected an object with one of {TYPES} as its only key"
            ))
        })?;
        let Some((t, inner)) = o.iter().next() else {
            return Err(self.err(format!("expected an object with one of {TYPES}")));
        };
        let saved = self.at.len();
        self.at.push('.');
        self.at.push_str(t);
        let op = match t.as_str() {
            "counter" => FieldOp::Counter(self.counter(inner, false)?),
            "set" => FieldOp::Set(self.set(inner, false)?),
            "map" => FieldOp::Map(self.map(inner, false)?),
            "register" => {
                let r = self.object(inner, &["assign"], r#"{"assign": "s"}"#, false)?;
                let s = r
                    .get("assign")
                    .ok_or_else(|| self.err(r#""assign" is required"#))?;
                let s = s.as_str().ok_or_else(|| {
                    self.err(format!(r#""assign" must be a string, got {}"#, kind_of(s)))
                })?;
                FieldOp::Register(s.to_owned())
            }
            "flag" => match inner.as_str() {
                Some("enable") => FieldOp::Flag(true),
                Some("disable") => FieldOp::Flag(false),
                _ => return Err(self.err(r#"must be "enable" or "disable""#)),
            },
            other => {
                self.at.truncate(saved);
                return Err(self.err(format!("unknown type {other:?}; expected one of {TYPES}")));
            }
        };
        self.at.truncate(saved);
        Ok(op)
    }
}
