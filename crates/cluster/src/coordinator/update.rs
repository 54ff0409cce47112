//! Data type updates and reads (CONTRACT §6). An update is routed and replicated exactly like
//! a put ([`super::put`]): the coordinator is a node serving the key (a forwarded update is a
//! [`super::put::CoordinateRequest::Put`] whose change is [`Change::Update`]); it applies the
//! operation to its own copy's merged state ([`crate::replica::coordinate_update`]) and sends
//! the resulting object to the other serving nodes under `w`/`dw`/`pw`. A read is a plain get
//! whose siblings are joined into one state.

use super::error::KvError;
use super::get::{GetRequest, get};
use super::placement::{check_names, data_type_of};
use super::put::{Change, WriteOp, write};
use super::quorum::ConsistencyParams;
use crate::node::Node;
use riftkv_core::bucket::{BucketProps, DataType};
use riftkv_core::datatype::{self, State};
use riftkv_core::version::{Actor, Object};
use riftkv_crdt::{Context, CrdtError, Op};
use std::sync::Arc;
use std::time::Duration;

/// A client's data type update.
#[derive(Clone, Debug)]
pub struct UpdateRequest {
    pub bucket: Vec<u8>,
    pub key: Vec<u8>,
    /// The JSON operation, as the client sent it.
    pub op: String,
    /// The context of an earlier read (decoded from its token at the edge); removes need it.
    pub context: Option<Context<Actor>>,
    pub params: ConsistencyParams,
    pub timeout: Option<Duration>,
}

/// Checks an update before it is routed, so a malformed operation or a remove without a
/// context is refused here rather than after a hop. The coordinator parses it again for the
/// bucket's type in its own view of the props.
pub fn check_update(
    props: &BucketProps,
    op: &str,
    context: Option<&Context<Actor>>,
) -> Result<Op, KvError> {
    let parsed = Op::from_json_str(data_type_of(props)?, op)?;
    if parsed.needs_context() && context.is_none() {
        return Err(CrdtError::ContextRequired("a remove").into());
    }
    Ok(parsed)
}

/// Coordinates a client's update from any node; the answer is the object the coordinator
/// stored.
pub async fn update(node: &Arc<Node>, req: UpdateRequest) -> Result<Object, KvError> {
    check_names(&req.bucket, &req.key)?;
    let props = node.state.read().bucket_props(&req.bucket);
    check_update(&props, &req.op, req.context.as_ref())?;
    let timeout = req.timeout.unwrap_or(node.settings.request_timeout);
    let op = WriteOp {
        bucket: req.bucket,
        key: req.key,
        change: Change::Update {
            op: req.op,
            context: req.context,
        },
        context: None,
        if_none_match: false,
        params: req.params,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    write(node, op, "update").await
}

/// The merged state of every live sibling of `object`, for the bucket's type; `None` when
/// nothing is live. A damaged state is an error that says so.
pub fn state_of(object: Option<&Object>, data_type: DataType) -> Result<Option<State>, KvError> {
    Ok(datatype::merged_state(object, data_type)?)
}

/// Reads a data type value at the read quorum: the merged state, `None` when the key holds
/// nothing live.
pub async fn read(node: &Arc<Node>, req: GetRequest) -> Result<Option<State>, KvError> {
    let data_type = data_type_of(&node.state.read().bucket_props(&req.bucket))?;
    let outcome = get(node, req).await?;
    state_of(outcome.object.as_ref(), data_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use riftkv_crdt::ErrorKind;

    fn typed(t: DataType) -> BucketProps {
        BucketProps {
            datatype: Some(t),
            ..BucketProps::with_n(3)
        }
    }

    fn kind(e: KvError) -> Option<ErrorKind> {
        match e {
            KvError::DataType { kind, .. } => Some(kind),
            _ => None,
        }
    }

    #[test]
    fn updates_are_checked_for_the_buckets_type() {
        let ctx = Context::<Actor>::new();
        assert!(check_update(&typed(DataType::Counter), r#"{"increment": 2}"#, None).is_ok());
        assert!(matches!(
            check_update(&BucketProps::with_n(3), r#"{"increment": 2}"#, None),
            Err(KvError::BadRequest(m)) if m.contains("plain values")
        ));
        let wrong = check_update(&typed(DataType::Set), r#"{"increment": 2}"#, None);
        assert_eq!(kind(wrong.unwrap_err()), Some(ErrorKind::BadRequest));
        let junk = check_update(&typed(DataType::Map), "not json", None);
        assert_eq!(kind(junk.unwrap_err()), Some(ErrorKind::BadRequest));
        // Removes need the context of a read; adds do not.
        let set = typed(DataType::Set);
        assert!(check_update(&set, r#"{"add": ["a"]}"#, None).is_ok());
        let e = check_update(&set, r#"{"remove": ["a"]}"#, None).unwrap_err();
        assert!(e.to_string().contains("needs the context of a read"), "{e}");
        assert!(check_update(&set, r#"{"remove": ["a"]}"#, Some(&ctx)).is_ok());
        let map = typed(DataType::Map);
        assert!(check_update(&map, r#"{"remove": ["f"]}"#, None).is_err());
        assert!(
            check_update(
                &map,
                r#"{"update": {"f": {"counter": {"increment": 1}}}}"#,
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn a_damaged_state_is_an_error_not_a_panic() {
        let mut obj = Object::new();
        obj = Object::update(
            Some(&obj),
            &Default::default(),
            Actor::new("a", 1),
            riftkv_core::version::Sibling::new(
                bytes::Bytes::from_static(b"\x01\xff\xff"),
                datatype::CONTENT_TYPE,
                1,
            ),
            riftkv_core::version::ConflictMode::Siblings,
            &Default::default(),
        )
        .unwrap();
        let e = state_of(Some(&obj), DataType::Counter).unwrap_err();
        assert_eq!(kind(e), Some(ErrorKind::Corrupt));
        assert!(state_of(None, DataType::Counter).unwrap().is_none());
    }
}
