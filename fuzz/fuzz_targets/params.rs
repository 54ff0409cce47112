//! Request parsing in the API layer: paths, query strings and headers as a client sends them.
//! Every input is accepted or refused with a client error (4xx), never a panic or a 5xx.
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use riftkv_core::version::ContextKey;
use riftkv_server::api::error::ApiError;
use riftkv_server::api::params;

fn client_error<T>(r: Result<T, ApiError>) {
    if let Err(e) = r {
        let status = e.status();
        assert!(status.is_client_error(), "{status} for a bad request");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let query = Some(text.as_ref());
    client_error(params::query_pairs(query));
    client_error(params::object_query(query, true));
    client_error(params::object_query(query, false));
    client_error(params::list_query(query));
    client_error(params::no_query(query));
    let _ = params::path_segments(&text);
    client_error(params::bucket_and_key(&text, 2));
    client_error(params::bucket_only(&text, 2));
    let _ = params::key_text(data);
    let _ = params::shorten(&text);

    // The same bytes as the value of each header a handler reads.
    if let Ok(v) = HeaderValue::from_bytes(data) {
        let ctx_key = ContextKey::derive(b"fuzz-secret");
        for name in [
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            header::ACCEPT,
            HeaderName::from_static("x-riftkv-context"),
            HeaderName::from_static("x-riftkv-ttl"),
            HeaderName::from_static("x-request-id"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, v.clone());
            client_error(params::content_type(&h));
            client_error(params::if_none_match(&h));
            client_error(params::context_from(&h, b"b", b"k", &ctx_key));
            client_error(params::ttl(None, &h));
            let _ = params::wants_json(&h);
            let id = params::request_id(&h);
            assert!(
                HeaderValue::from_str(&id).is_ok(),
                "request id is a header value"
            );
        }
    }
});
