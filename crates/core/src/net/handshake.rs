//! Handshake decisions as pure functions over plain data.
//!
//! Sequence (the dialler opens the connection):
//! 1. dialler → `Hello` (version, cluster, node id, nonce `Nd`)
//! 2. listener checks version and cluster, → `Challenge` (its identity, nonce `Nl`, and
//!    `proof_L = HMAC(secret, listener-role, cluster, Nd, dialler id, listener id)`), or `Refuse`
//! 3. dialler checks the same and verifies `proof_L`, → `Auth { proof_D }` with
//!    `proof_D = HMAC(secret, dialler-role, cluster, Nl, dialler id, listener id)`, or `Refuse`
//! 4. listener verifies `proof_D`, → `Welcome` or `Refuse`
//!
//! Each side proves the secret over a nonce it did not choose, so recorded proofs cannot be
//! replayed; the role tag stops a proof from being reflected back at its author.

use super::PROTOCOL_VERSION;
use super::frame::{Challenge, Hello, Nonce, Proof, Refusal};
use crate::types::NodeId;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const DOMAIN: &[u8] = b"riftkv-handshake-v1";

/// What the local node claims and proves about itself.
#[derive(Clone, Debug)]
pub struct Identity {
    pub node_id: NodeId,
    pub cluster_name: String,
    pub secret: Vec<u8>,
    pub advertise: String,
}

/// Which side of the connection produces a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Dialer,
    Listener,
}

/// From whose point of view a refusal is worded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// This node refused the peer.
    Refuser,
    /// The peer refused this node.
    Refused,
}

fn mac(
    secret: &[u8],
    role: Role,
    cluster: &str,
    nonce: &Nonce,
    dialer: &NodeId,
    listener: &NodeId,
) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so no secret can make this fail.
    #[allow(clippy::expect_used)]
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    let mut field = |b: &[u8]| {
        m.update(&(b.len() as u32).to_be_bytes());
        m.update(b);
    };
    field(DOMAIN);
    field(match role {
        Role::Dialer => b"dialer",
        Role::Listener => b"listener",
    });
    field(cluster.as_bytes());
    field(nonce);
    field(dialer.as_str().as_bytes());
    field(listener.as_str().as_bytes());
    m
}

/// The proof `role` gives over the other side's `nonce`.
pub fn proof(
    secret: &[u8],
    role: Role,
    cluster: &str,
    nonce: &Nonce,
    dialer: &NodeId,
    listener: &NodeId,
) -> Proof {
    mac(secret, role, cluster, nonce, dialer, listener)
        .finalize()
        .into_bytes()
        .into()
}

/// Constant-time check of a proof.
pub fn verify(
    secret: &[u8],
    role: Role,
    cluster: &str,
    nonce: &Nonce,
    dialer: &NodeId,
    listener: &NodeId,
    given: &Proof,
) -> bool {
    mac(secret, role, cluster, nonce, dialer, listener)
        .verify_slice(given)
        .is_ok()
}

fn check_peer(local: &Identity, version: u32, cluster: &str) -> Result<(), Refusal> {
    if version != PROTOCOL_VERSION {
        return Err(Refusal::ProtocolMismatch {
            refuser_version: PROTOCOL_VERSION,
            peer_version: version,
        });
    }
    if cluster != local.cluster_name {
        return Err(Refusal::ClusterMismatch {
            refuser_cluster: local.cluster_name.clone(),
            peer_cluster: cluster.to_string(),
        });
    }
    Ok(())
}

/// Step 1 (dialler): the opening message.
pub fn hello(local: &Identity, nonce: Nonce) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_name: local.cluster_name.clone(),
        node_id: local.node_id.clone(),
        advertise: local.advertise.clone(),
        nonce,
    }
}

/// Step 2 (listener): checks the dialler's claims and proves the secret over its nonce.
pub fn answer_hello(local: &Identity, hello: &Hello, nonce: Nonce) -> Result<Challenge, Refusal> {
    check_peer(local, hello.protocol_version, &hello.cluster_name)?;
    Ok(Challenge {
        protocol_version: PROTOCOL_VERSION,
        cluster_name: local.cluster_name.clone(),
        node_id: local.node_id.clone(),
        advertise: local.advertise.clone(),
        nonce,
        proof: proof(
            &local.secret,
            Role::Listener,
            &local.cluster_name,
            &hello.nonce,
            &hello.node_id,
            &local.node_id,
        ),
    })
}

/// Step 3 (dialler): checks the listener and its proof over `my_nonce`; returns the dialler's
/// proof over the listener's nonce.
pub fn answer_challenge(
    local: &Identity,
    my_nonce: &Nonce,
    ch: &Challenge,
) -> Result<Proof, Refusal> {
    check_peer(local, ch.protocol_version, &ch.cluster_name)?;
    if !verify(
        &local.secret,
        Role::Listener,
        &local.cluster_name,
        my_nonce,
        &local.node_id,
        &ch.node_id,
        &ch.proof,
    ) {
        return Err(Refusal::BadProof);
    }
    Ok(proof(
        &local.secret,
        Role::Dialer,
        &local.cluster_name,
        &ch.nonce,
        &local.node_id,
        &ch.node_id,
    ))
}

/// Step 4 (listener): verifies the dialler's proof over the listener's nonce.
pub fn check_auth(
    local: &Identity,
    hello: &Hello,
    my_nonce: &Nonce,
    given: &Proof,
) -> Result<(), Refusal> {
    if verify(
        &local.secret,
        Role::Dialer,
        &local.cluster_name,
        my_nonce,
        &hello.node_id,
        &local.node_id,
        given,
    ) {
        Ok(())
    } else {
        Err(Refusal::BadProof)
    }
}

/// Words a refusal for logs and errors. `peer` names the other node (e.g. its address).
pub fn describe(refusal: &Refusal, side: Side, peer: &str) -> String {
    match (refusal, side) {
        (
            Refusal::ClusterMismatch {
                refuser_cluster,
                peer_cluster,
            },
            Side::Refuser,
        ) => format!("peer {peer} belongs to cluster '{peer_cluster}', not '{refuser_cluster}'"),
        (
            Refusal::ClusterMismatch {
                refuser_cluster,
                peer_cluster,
            },
            Side::Refused,
        ) => format!("peer {peer} belongs to cluster '{refuser_cluster}', not '{peer_cluster}'"),
        (
            Refusal::ProtocolMismatch {
                refuser_version,
                peer_version,
            },
            Side::Refuser,
        ) => format!(
            "peer {peer} speaks protocol version {peer_version}, this node speaks {refuser_version}"
        ),
        (
            Refusal::ProtocolMismatch {
                refuser_version,
                peer_version,
            },
            Side::Refused,
        ) => format!(
            "peer {peer} speaks protocol version {refuser_version}, this node speaks {peer_version}"
        ),
        (Refusal::BadProof, Side::Refuser) => {
            format!(
                "peer {peer} failed authentication: its proof does not match the cluster secret"
            )
        }
        (Refusal::BadProof, Side::Refused) => {
            format!("peer {peer} rejected this node's authentication: the cluster secrets differ")
        }
        (Refusal::Unexpected(why), Side::Refuser) => {
            format!("peer {peer} broke the handshake: {why}")
        }
        (Refusal::Unexpected(why), Side::Refused) => {
            format!("peer {peer} aborted the handshake: {why}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ident(id: &str, cluster: &str, secret: &[u8]) -> Identity {
        Identity {
            node_id: NodeId::new(id),
            cluster_name: cluster.into(),
            secret: secret.to_vec(),
            advertise: format!("127.0.0.1:{}", 8800 + id.len()),
        }
    }

    /// Runs the four steps; returns the first refusal and who raised it.
    fn run(d: &Identity, l: &Identity, nd: Nonce, nl: Nonce) -> Result<(), (Role, Refusal)> {
        let h = hello(d, nd);
        let ch = answer_hello(l, &h, nl).map_err(|r| (Role::Listener, r))?;
        let p = answer_challenge(d, &nd, &ch).map_err(|r| (Role::Dialer, r))?;
        check_auth(l, &h, &nl, &p).map_err(|r| (Role::Listener, r))
    }

    #[test]
    fn same_cluster_and_secret_succeeds() {
        let a = ident("a", "riftkv", b"s3cret");
        let b = ident("b", "riftkv", b"s3cret");
        assert_eq!(run(&a, &b, [1; 32], [2; 32]), Ok(()));
    }

    #[test]
    fn other_cluster_is_refused_by_the_listener() {
        let a = ident("a", "other", b"s");
        let b = ident("b", "riftkv", b"s");
        let (who, r) = run(&a, &b, [1; 32], [2; 32]).unwrap_err();
        assert_eq!(who, Role::Listener);
        assert_eq!(
            describe(&r, Side::Refused, "127.0.0.1:8802"),
            "peer 127.0.0.1:8802 belongs to cluster 'riftkv', not 'other'"
        );
        assert_eq!(
            describe(&r, Side::Refuser, "127.0.0.1:8801"),
            "peer 127.0.0.1:8801 belongs to cluster 'other', not 'riftkv'"
        );
    }

    #[test]
    fn wrong_secret_is_caught_by_the_dialer_first() {
        let a = ident("a", "riftkv", b"right");
        let b = ident("b", "riftkv", b"wrong");
        assert_eq!(
            run(&a, &b, [1; 32], [2; 32]),
            Err((Role::Dialer, Refusal::BadProof))
        );
    }

    #[test]
    fn a_listener_without_the_secret_cannot_pass_a_forged_dialer() {
        // A dialler that copies the listener's proof back (reflection) is refused: the role
        // tag makes listener and dialler proofs differ even over the same nonce.
        let l = ident("b", "riftkv", b"s");
        let h = hello(&ident("a", "riftkv", b"unknown"), [5; 32]);
        let nl = [5; 32];
        let ch = answer_hello(&l, &h, nl).unwrap();
        assert_eq!(check_auth(&l, &h, &nl, &ch.proof), Err(Refusal::BadProof));
    }

    #[test]
    fn protocol_mismatch_is_refused() {
        let l = ident("b", "riftkv", b"s");
        let mut h = hello(&ident("a", "riftkv", b"s"), [1; 32]);
        h.protocol_version = PROTOCOL_VERSION + 1;
        let r = answer_hello(&l, &h, [2; 32]).unwrap_err();
        assert_eq!(
            describe(&r, Side::Refuser, "x"),
            format!(
                "peer x speaks protocol version {}, this node speaks {}",
                PROTOCOL_VERSION + 1,
                PROTOCOL_VERSION
            )
        );
    }

    /// The nonce every proof in [`dialer_proof`] and [`dialer_verifies`] is made over.
    const NONCE: Nonce = [9; 32];

    /// A dialler's proof with secret, cluster and nonce held fixed, so only the ids vary.
    fn dialer_proof(dialer: &str, listener: &str) -> Proof {
        let (d, l) = (NodeId::new(dialer), NodeId::new(listener));
        proof(b"s", Role::Dialer, "c", &NONCE, &d, &l)
    }

    /// Checks `p` as [`dialer_proof`] would have made it for these ids.
    fn dialer_verifies(dialer: &str, listener: &str, p: &Proof) -> bool {
        let (d, l) = (NodeId::new(dialer), NodeId::new(listener));
        verify(b"s", Role::Dialer, "c", &NONCE, &d, &l, p)
    }

    #[test]
    fn proofs_bind_both_node_ids() {
        let p = dialer_proof("a", "b");
        assert!(dialer_verifies("a", "b", &p));
        assert!(!dialer_verifies("a", "c", &p));
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        let q = dialer_proof("ab", "c");
        let r = dialer_proof("a", "bc");
        assert_ne!(q, r);
    }

    proptest! {
        #[test]
        fn handshake_succeeds_iff_secrets_match(
            s1 in proptest::collection::vec(any::<u8>(), 0..40),
            s2 in proptest::collection::vec(any::<u8>(), 0..40),
            nd in any::<[u8; 32]>(),
            nl in any::<[u8; 32]>(),
        ) {
            let a = ident("a", "riftkv", &s1);
            let b = ident("b", "riftkv", &s2);
            prop_assert_eq!(run(&a, &b, nd, nl).is_ok(), s1 == s2);
        }
    }
}
