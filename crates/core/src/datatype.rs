//! Data type values (`riftkv_crdt`) kept as the siblings of ordinary objects.
//!
//! A key of a typed bucket is an [`Object`] like any other, so placement, replication, hinted
//! handoff, read repair and anti-entropy need nothing new. Each live sibling holds one encoded
//! state: a coordinator's update supersedes every version its own copy held, so siblings exist
//! only where two coordinators updated concurrently. Reading joins all of them; the join is the
//! merge, so a reader never sees siblings.

use crate::version::{Actor, Object};
use riftkv_crdt::{Crdt, CrdtError, DataType, Limits};

/// Content type of a stored data type state (never served: the types API renders JSON).
pub const CONTENT_TYPE: &str = "application/vnd.riftkv.crdt";

/// A data type state whose writers are write identities.
pub type State = Crdt<Actor>;

/// The join of every live sibling's state, or `None` when the object holds nothing live.
///
/// A sibling that does not decode, or decodes to another type than the bucket's, is
/// [`CrdtError::Decode`] (the `Corrupt` kind): the stored value is damaged or was written as a
/// plain value, and guessing would lose data.
pub fn merged_state(obj: Option<&Object>, data_type: DataType) -> Result<Option<State>, CrdtError> {
    let Some(obj) = obj else {
        return Ok(None);
    };
    // Data type states carry no expiry (TTLs are for plain values), so every version that is
    // not a tombstone is live whatever the clock says.
    let live: Vec<_> = obj
        .siblings()
        .into_iter()
        .filter(|(_, s)| !s.deleted)
        .collect();
    if live.is_empty() {
        return Ok(None);
    }
    let mut state = State::new(data_type);
    for (_, sibling) in live {
        let s = State::decode(&sibling.value)?;
        if s.data_type() != data_type {
            return Err(CrdtError::Decode(format!(
                "the stored value is a {}, the bucket's datatype is {}",
                s.data_type().as_str(),
                data_type.as_str()
            )));
        }
        state.join(&s)?;
    }
    Ok(Some(state))
}

/// The data type limits under the node's value limit: an encoded state is stored as one
/// value, so it may not outgrow what a plain write may store.
pub fn limits(max_value_bytes: usize) -> Limits {
    let mut l = Limits::default();
    l.max_encoded_bytes = l.max_encoded_bytes.min(max_value_bytes);
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{ConflictMode, Limits as ValueLimits, Sibling, VersionVector};
    use bytes::Bytes;
    use riftkv_crdt::Op;

    fn counter_by(actor: &Actor, n: i64) -> State {
        let mut s = State::new(DataType::Counter);
        let op = Op::from_json_str(DataType::Counter, &format!("{{\"increment\": {n}}}")).unwrap();
        s.apply(actor, &op, None, 0, &Limits::default()).unwrap();
        s
    }

    fn written(prev: Option<&Object>, actor: &Actor, value: Vec<u8>) -> Object {
        let sibling = Sibling::new(Bytes::from(value), CONTENT_TYPE, 1);
        Object::update(
            prev,
            &VersionVector::new(),
            actor,
            sibling,
            ConflictMode::Siblings,
            &ValueLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn siblings_join_into_one_state() {
        let (a, b) = (Actor::new("a", 1), Actor::new("b", 2));
        let one = written(None, &a, counter_by(&a, 2).encode().unwrap());
        // Written without a context: concurrent with `one`, so both are siblings.
        let both = written(Some(&one), &b, counter_by(&b, 5).encode().unwrap());
        assert_eq!(both.live_siblings(0).len(), 2);
        let s = merged_state(Some(&both), DataType::Counter)
            .unwrap()
            .unwrap();
        assert_eq!(s.value_json().unwrap(), serde_json::json!(7));
        assert_eq!(merged_state(None, DataType::Counter).unwrap(), None);
        assert_eq!(
            merged_state(Some(&Object::new()), DataType::Set).unwrap(),
            None
        );
    }

    #[test]
    fn undecodable_or_mistyped_values_are_corrupt_not_panics() {
        let a = Actor::new("a", 1);
        let plain = written(None, &a, b"plain bytes".to_vec());
        let e = merged_state(Some(&plain), DataType::Counter).unwrap_err();
        assert_eq!(e.kind(), riftkv_crdt::ErrorKind::Corrupt);
        let counter = written(None, &a, counter_by(&a, 1).encode().unwrap());
        let e = merged_state(Some(&counter), DataType::Set).unwrap_err();
        assert_eq!(e.kind(), riftkv_crdt::ErrorKind::Corrupt);
        assert!(e.to_string().contains("is a counter"), "{e}");
    }

    #[test]
    fn limits_follow_the_value_limit() {
        assert_eq!(limits(64).max_encoded_bytes, 64);
        assert_eq!(
            limits(usize::MAX).max_encoded_bytes,
            Limits::default().max_encoded_bytes
        );
    }
}
