//! Size bounds enforced on every operation.

/// Bounds an operation must respect. They are checked when an operation is applied, never on
/// a merge: refusing a merge would stop replicas from converging, so a value built from
/// concurrent writes that each fit may end up somewhat over a bound. An operation on such a
/// value is refused only if it grows the measure that is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Members of any one set (top level or a map field).
    pub max_set_members: usize,
    /// Fields of any one map level, counting each `(name, type)` separately.
    pub max_map_fields: usize,
    /// Map levels, the top-level map counting 1.
    pub max_depth: usize,
    /// Bytes of one set member.
    pub max_member_bytes: usize,
    /// Bytes of one register value.
    pub max_register_bytes: usize,
    /// Bytes of one map field name.
    pub max_field_name_bytes: usize,
    /// Bytes of the whole value as [`crate::Crdt::encode`] writes it.
    pub max_encoded_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_set_members: 100_000,
            max_map_fields: 1_000,
            max_depth: 8,
            max_member_bytes: 1_024,
            max_register_bytes: 64 * 1_024,
            max_field_name_bytes: 256,
            max_encoded_bytes: 1_024 * 1_024,
        }
    }
}
