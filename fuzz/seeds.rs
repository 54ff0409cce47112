//! Writes the starting corpus of each fuzz target from real encodings (objects with siblings,
//! tombstones and expiry, handshake and request frames, context tokens, query strings), so
//! the fuzzer starts from valid structure. Run by `FUZZ_SEEDS=1 ops/fuzz.sh`; the files
//! are checked in under `corpus/`.

use bytes::Bytes;
use riftkv_core::net::frame::{self, Challenge, Envelope, Hello, NONCE_LEN, Payload, Refusal};
use riftkv_core::types::NodeId;
use riftkv_core::version::{
    Actor, ConflictMode, ContextKey, Limits, Object, Sibling, VersionVector, encode_context,
};
use std::path::Path;

fn write(target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = Path::new("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("seed-{name}")), bytes)
}

fn objects() -> Vec<(&'static str, Object)> {
    let limits = Limits::default();
    let none = VersionVector::new();
    let put = |stored: Option<&Object>, ctx: &VersionVector, n: &str, s: Sibling| {
        Object::update(
            stored,
            ctx,
            Actor::new(n, 1),
            s,
            ConflictMode::Siblings,
            &limits,
        )
        .unwrap_or_default()
    };
    let one = put(
        None,
        &none,
        "n1",
        Sibling::new(&b"hello"[..], "text/plain", 1_000),
    );
    let two = put(
        Some(&one),
        &none,
        "n2",
        Sibling::new(&b"world"[..], "application/json", 2_000),
    );
    let mut dead = Sibling::new(Bytes::new(), "application/octet-stream", 3_000);
    dead.deleted = true;
    let tomb = put(Some(&two), &two.context(), "n3", dead.clone());
    let with_tomb = put(Some(&two), &none, "n1", dead);
    let expiring = put(
        Some(&one),
        &none,
        "n2",
        Sibling::new(&b"soon"[..], "text/plain", 1_500).expiring(Some(9_000)),
    );
    vec![
        ("one", one),
        ("siblings", two),
        ("tombstone", tomb),
        ("sibling-tombstone", with_tomb),
        ("expiring", expiring),
    ]
}

fn main() -> std::io::Result<()> {
    let objs = objects();
    for (name, o) in &objs {
        let enc = o.encode();
        write("multipart", name, &enc)?;
        write(
            "object",
            &format!("{name}-alone"),
            &[u8::MAX].iter().chain(&enc).copied().collect::<Vec<_>>(),
        )?;
        for (other, p) in &objs {
            let penc = p.encode();
            if enc.len() <= usize::from(u8::MAX) {
                let mut pair = vec![enc.len() as u8];
                pair.extend(&enc);
                pair.extend(&penc);
                write("object", &format!("{name}+{other}"), &pair)?;
            }
        }
    }

    let hello = Hello {
        protocol_version: 5,
        cluster_name: "riftkv".into(),
        node_id: NodeId::new("n2"),
        advertise: "127.0.0.1:8802".into(),
        nonce: [1; NONCE_LEN],
    };
    let frames = [
        ("hello", Envelope::Hello(hello)),
        (
            "challenge",
            Envelope::Challenge(Challenge {
                protocol_version: 5,
                cluster_name: "riftkv".into(),
                node_id: NodeId::new("n3"),
                advertise: "127.0.0.1:8803".into(),
                nonce: [2; NONCE_LEN],
                proof: [3; 32],
            }),
        ),
        ("auth", Envelope::Auth { proof: [4; 32] }),
        ("refuse", Envelope::Refuse(Refusal::BadProof)),
        (
            "request",
            Envelope::Request {
                id: 7,
                payload: Payload(Bytes::from_static(&[1, 0, 2, 3])),
            },
        ),
        (
            "response",
            Envelope::Response {
                id: 7,
                result: Err("no".into()),
            },
        ),
        ("ping", Envelope::Ping),
    ];
    for (name, env) in &frames {
        if let Ok(b) = frame::encode(env, usize::MAX) {
            write("frame", name, &b)?;
        }
    }
    for (i, bytes) in [&[0u8][..], &[1, 0], &[2, 1], &[3, 0, 0], &[4, 1, 0]]
        .iter()
        .enumerate()
    {
        write("rpc", &format!("endpoint-{i}"), bytes)?;
    }

    let key = ContextKey::derive(b"fuzz-secret");
    for (name, o) in &objs {
        let ctx = o.context();
        let mut clock = vec![0u8];
        clock.extend(postcard::to_stdvec(&ctx).unwrap_or_default());
        write("context", &format!("clock-{name}"), &clock)?;
        write(
            "context",
            &format!("token-{name}"),
            encode_context(&ctx, b"b", b"k", &key).as_bytes(),
        )?;
    }

    for (i, q) in [
        "r=2&w=quorum&dw=0&pr=one&pw=all",
        "keys=true&limit=10&after=a%20b",
        "timeout=100&returnbody=true&ttl=60",
        "/v1/kv/bucket/some%2Fkey",
        "application/json; charset=utf-8",
        "*",
        "r=%FF&w=",
    ]
    .iter()
    .enumerate()
    {
        write("params", &format!("q{i}"), q.as_bytes())?;
    }
    Ok(())
}
