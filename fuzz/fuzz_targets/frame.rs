//! Peer frames: every byte string a connection can deliver, before and after the handshake.
//! A frame decodes to exactly one envelope or to an error; what decodes re-encodes to the same
//! envelope; handshake messages from a stranger are answered or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riftkv_core::net::frame::{self, Envelope, NONCE_LEN};
use riftkv_core::net::handshake::{self, Identity};
use riftkv_core::types::NodeId;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = frame::decode(data) else {
        return;
    };
    let again = frame::encode(&env, usize::MAX).expect("a decoded envelope encodes");
    assert_eq!(frame::decode(&again).expect("re-decodes"), env);

    let local = Identity {
        node_id: NodeId::new("n1"),
        cluster_name: "riftkv".into(),
        secret: b"fuzz-secret".to_vec(),
        advertise: "127.0.0.1:1".into(),
    };
    let nonce = [7u8; NONCE_LEN];
    match &env {
        Envelope::Hello(hello) => {
            if handshake::answer_hello(&local, hello, nonce).is_ok() {
                // A forged proof over our nonce must never pass.
                assert!(handshake::check_auth(&local, hello, &nonce, &[0u8; 32]).is_err());
            }
        }
        Envelope::Challenge(ch) => {
            // The listener's proof is over our nonce with a secret the input cannot know.
            assert!(handshake::answer_challenge(&local, &nonce, ch).is_err());
        }
        Envelope::Refuse(r) => {
            let _ = handshake::describe(r, handshake::Side::Refused, "127.0.0.1:2");
        }
        _ => {}
    }
});
