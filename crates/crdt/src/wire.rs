//! The binary encoding.

use crate::error::CrdtError;
use crate::{Actor, Crdt};

pub(crate) fn encode<A: Actor>(_v: &Crdt<A>) -> Result<Vec<u8>, CrdtError> {
    todo!()
}

pub(crate) fn decode<A: Actor>(_b: &[u8]) -> Result<Crdt<A>, CrdtError> {
    todo!()
}
