//! The web console (CONTRACT §8): a small single-page app whose assets are compiled into the
//! binary and served at `/ui` and `/ui/{asset}`. The page itself is public; everything it shows
//! comes from the existing API (admin, metrics, objects, props) with the token the user enters,
//! so the console adds no data path of its own.

use super::error::ApiError;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The policy every console answer carries: nothing but this origin, no inline script or
/// style, no plugins, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// Assets are revalidated on every load (their ETag makes that a 304): a restarted node may
/// run a newer binary with other assets under the same names.
pub const CACHE_CONTROL: &str = "no-cache";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/app.css"),
    },
];

/// The strong ETag of every asset, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..12])))
            .collect()
    })
}

/// `GET /ui`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /ui/{asset}`: a script, style sheet or the page again; anything else is 404.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return ApiError::not_found("no such console asset").into_response();
    };
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, asset.body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_the_page_loads_only_external_script() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.name);
        }
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(page.contains("src=\"/ui/app.js\""));
        assert!(page.contains("href=\"/ui/app.css\""));
        // The CSP forbids inline script and style: the page must not rely on either.
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("<style"), "inline style");
        assert!(!page.contains(" style=\""), "inline style attribute");
        let inline_handler = page.split(" on").skip(1).any(|rest| {
            let name = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                    .len();
            name > 0 && rest[name..].starts_with('=')
        });
        assert!(!inline_handler, "inline event handler");
        assert_eq!(etags().len(), ASSETS.len());
    }
}
