//! The ring: key hashing, partitions, the claim that assigns partitions to nodes, and the
//! preference lists derived from it.
//!
//! Everything here is pure and synchronous; membership decides *when* to claim and gossips
//! the resulting [`Ring`], the coordinator only reads preference lists.

mod claim;
mod hash;
mod nearest;
mod ownership;
mod replace;

pub use claim::{Member, RingQuality, assess, claim, claim_feasible, try_claim};
pub use hash::{
    DEFAULT_RING_SIZE, MAX_RING_SIZE, MIN_RING_SIZE, key_hash, partition_for, partition_of_hash,
    validate_ring_size,
};
pub use ownership::Ring;
pub use replace::{as_good_as, replace_owner, substitution};

/// Errors of the ring layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The ring size is not a power of two in `1..=max`.
    #[error("invalid ring size {size}: it must be a power of two between 1 and {max}")]
    InvalidRingSize { size: u64, max: u32 },
    /// A serialized ring whose owner table does not match its declared size.
    #[error("ring declares {ring_size} partitions but lists {owners} owners")]
    OwnerCount { ring_size: u32, owners: usize },
    /// A claim was asked for with no members to own the partitions.
    #[error("cannot assign partitions: the member list is empty")]
    NoMembers,
}
