//! Reads rendered from whatever object a disk or a peer handed us: the answer is well formed
//! (a multipart body whose parts are exactly the visible versions, or JSON that parses), and
//! the multipart parser takes any bytes without a panic.
#![no_main]

use axum::http::{StatusCode, header};
use libfuzzer_sys::fuzz_target;
use riftkv_core::version::{ContextKey, Object};
use riftkv_server::api::multipart;
use riftkv_server::api::render::{TokenSigner, read_answer};

const NOW_MS: u64 = 1_700_000_000_000;

fn body_of(resp: axum::response::Response) -> (StatusCode, Option<String>, Vec<u8>) {
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = futures::executor::block_on(axum::body::to_bytes(resp.into_body(), usize::MAX))
        .expect("an in-memory body");
    (status, ct, bytes.to_vec())
}

fuzz_target!(|data: &[u8]| {
    // Any bytes under a boundary taken from the input's first line.
    if let Some(nl) = data.iter().position(|&b| b == b'\n') {
        let boundary = String::from_utf8_lossy(&data[..nl]);
        let _ = multipart::parse(&boundary, &data[nl + 1..]);
    }

    let Ok(obj) = Object::decode(data) else {
        return;
    };
    let ctx_key = ContextKey::derive(b"fuzz-secret");
    let signer = TokenSigner {
        ctx_key: &ctx_key,
        bucket: b"b",
        key: b"k",
    };
    let visible = obj.visible_at(NOW_MS);
    let versions = visible.siblings();

    let (status, ct, body) = body_of(read_answer(Some(&obj), &signer, false, NOW_MS));
    if status == StatusCode::MULTIPLE_CHOICES {
        let ct = ct.expect("a 300 has a content type");
        let boundary = multipart::boundary_of(&ct).expect("a multipart content type");
        let parts = multipart::parse(&boundary, &body).expect("our own multipart parses");
        assert_eq!(parts.len(), versions.len(), "one part per version");
        for (part, (_, s)) in parts.iter().zip(&versions) {
            let deleted = part.header("x-riftkv-deleted") == Some("true");
            assert_eq!(deleted, s.deleted);
            if !s.deleted {
                assert_eq!(part.body, s.value.to_vec());
            }
        }
    } else if status == StatusCode::OK {
        assert_eq!(versions.len(), 1);
        assert_eq!(body, versions[0].1.value.to_vec());
    }

    let (status, _, body) = body_of(read_answer(Some(&obj), &signer, true, NOW_MS));
    if status == StatusCode::OK || status == StatusCode::MULTIPLE_CHOICES {
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON answer");
        let siblings = json["siblings"].as_array().expect("siblings array");
        assert_eq!(siblings.len(), versions.len());
    }
});
