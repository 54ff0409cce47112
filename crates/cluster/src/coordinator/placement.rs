//! Where a key lives right now: its partition, its bucket's props, its primaries and the
//! nodes serving it (primaries that are up, fallbacks for those that are not).

use super::error::KvError;
use crate::node::Node;
use crate::preflist::{Role, Serving};
use riftkv_core::bucket::{BucketProps, DataType};
use riftkv_core::types::{NodeId, PartitionId};

/// Longest bucket name, in bytes (CONTRACT §2).
pub const MAX_BUCKET_BYTES: usize = 255;
/// Longest key, in bytes (CONTRACT §2).
pub const MAX_KEY_BYTES: usize = 1024;

#[derive(Clone, Debug)]
pub struct Placement {
    pub partition: PartitionId,
    pub props: BucketProps,
    pub primaries: Vec<NodeId>,
    /// The serving nodes with their roles, primaries first.
    pub serving: Serving,
}

/// The bucket's data type, or why a data type request cannot use the bucket.
pub fn data_type_of(props: &BucketProps) -> Result<DataType, KvError> {
    props.datatype.ok_or_else(|| {
        KvError::BadRequest(
            "the bucket holds plain values, not a data type: set its datatype prop first".into(),
        )
    })
}

impl Placement {
    /// This node's role for the key; `None` when it does not serve it.
    pub fn role_of(&self, id: &NodeId) -> Option<&Role> {
        self.serving.iter().find(|(n, _)| n == id).map(|(_, r)| r)
    }
}

/// The current placement of `bucket/key` as this node sees the ring.
pub fn place(node: &Node, bucket: &[u8], key: &[u8]) -> Placement {
    let (props, partition, primaries) = {
        let s = node.state.read();
        let props = s.bucket_props(bucket);
        let partition = riftkv_core::ring::partition_for(bucket, key, s.ring_size());
        let primaries = s.ring.preference_list(partition, props.n as usize).to_vec();
        (props, partition, primaries)
    };
    let serving = node.serving(partition, props.n as usize);
    Placement {
        partition,
        props,
        primaries,
        serving,
    }
}

/// Checks the contract's bounds on bucket and key names.
pub fn check_bucket(bucket: &[u8]) -> Result<(), KvError> {
    if bucket.is_empty() || bucket.len() > MAX_BUCKET_BYTES {
        return Err(KvError::BadRequest(format!(
            "bucket names are 1 to {MAX_BUCKET_BYTES} bytes, got {}",
            bucket.len()
        )));
    }
    Ok(())
}

pub fn check_names(bucket: &[u8], key: &[u8]) -> Result<(), KvError> {
    check_bucket(bucket)?;
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KvError::BadRequest(format!(
            "keys are 1 to {MAX_KEY_BYTES} bytes, got {}",
            key.len()
        )));
    }
    Ok(())
}
