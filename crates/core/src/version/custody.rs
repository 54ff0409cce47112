//! Custody, the local half of a write identity (see [`super::identity`]), and the tag that
//! marks a stored copy carrying it. Kept apart so the object encoding can skip it without
//! knowing how identities are chosen.

use serde::{Deserialize, Serialize};

/// First byte of a stored copy that carries custody. Plain object encodings start with their
/// own (small) version byte, so a copy without custody is stored as the bare object.
pub const STORED_COPY_TAG: u8 = 0x80;

/// The right of this node to extend `(this node, epoch)` for one key: its stored copy has seen
/// every write issued under that actor, for as long as the node stays in `incarnation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Custody {
    pub epoch: u64,
    pub incarnation: u64,
}
