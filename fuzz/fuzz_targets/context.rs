//! Client context tokens (`X-RiftKV-Context`): any text a client sends is refused or opens to
//! a clock, and a token opens only for the bucket and key it was sealed for. Inputs that
//! start with 0x00 are sealed with the key first, so the clock decoders behind the MAC are
//! fuzzed too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riftkv_core::version::{
    ContextKey, decode_context, decode_type_context, encode_context, seal_for_fuzzing,
};

fuzz_target!(|data: &[u8]| {
    let key = ContextKey::derive(b"fuzz-secret");
    let (bucket, k) = (b"b".as_slice(), b"k".as_slice());
    match data.split_first() {
        Some((&0, clock)) => {
            for type_token in [false, true] {
                let token = seal_for_fuzzing(type_token, clock, bucket, k, &key);
                if type_token {
                    let _ = decode_type_context(&token, bucket, k, &key);
                } else if let Ok(vv) = decode_context(&token, bucket, k, &key) {
                    // What opens re-seals, and a token never opens for another key.
                    let again = encode_context(&vv, bucket, k, &key);
                    assert_eq!(decode_context(&again, bucket, k, &key).ok(), Some(vv));
                    assert!(decode_context(&token, bucket, b"other", &key).is_err());
                }
            }
        }
        _ => {
            // Any text: refused, or (a token sealed with this key, from the corpus) opened
            // for exactly its own bucket and key.
            let token = String::from_utf8_lossy(data);
            if let Ok(vv) = decode_context(&token, bucket, k, &key) {
                assert!(decode_context(&token, bucket, b"other", &key).is_err());
                assert!(decode_context(&token, b"other", k, &key).is_err());
                let again = encode_context(&vv, bucket, k, &key);
                assert_eq!(decode_context(&again, bucket, k, &key).ok(), Some(vv));
            }
            let _ = decode_type_context(&token, bucket, k, &key);
        }
    }
});
