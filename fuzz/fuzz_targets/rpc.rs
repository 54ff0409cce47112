//! Peer messages: the payload of an authenticated request or reply, for every endpoint. A
//! member of the cluster can still send garbage (a bug, a bad disk, a newer version): it must
//! decode to a message or to an error, never a panic or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riftkv_cluster::aae::rpc::AaeRequest;
use riftkv_cluster::coordinator::put::CoordinateRequest;
use riftkv_cluster::handoff::rpc::HandoffRequest;
use riftkv_cluster::membership::rpc::MembershipRequest;
use riftkv_cluster::replica::rpc::ReplicaRequest;
use riftkv_cluster::rpc::{Endpoint, Message, Reply, decode_endpoint, decode_message};

fn request<M: Message>(body: &[u8]) {
    if let Ok((msg, _meta)) = decode_message::<M>(body) {
        let _ = msg.label();
        // What decodes re-encodes: a message we accepted can be forwarded or logged.
        postcard::to_stdvec(&msg).expect("a decoded message encodes");
    }
}

fn reply<M: Message>(body: &[u8]) {
    let _ = postcard::from_bytes::<Reply<M::Reply>>(body);
}

fuzz_target!(|data: &[u8]| {
    // As a request: endpoint, message, optional metadata.
    if let Ok((endpoint, body)) = decode_endpoint(data) {
        match endpoint {
            Endpoint::Membership => request::<MembershipRequest>(body),
            Endpoint::Replica => request::<ReplicaRequest>(body),
            Endpoint::Handoff => request::<HandoffRequest>(body),
            Endpoint::Aae => request::<AaeRequest>(body),
            Endpoint::Coordinate => request::<CoordinateRequest>(body),
        }
    }
    // As the reply to each kind of request.
    reply::<MembershipRequest>(data);
    reply::<ReplicaRequest>(data);
    reply::<HandoffRequest>(data);
    reply::<AaeRequest>(data);
    reply::<CoordinateRequest>(data);
});
