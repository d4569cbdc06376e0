//! The web page at `/`: plain HTML, CSS and JS compiled into the binary (no build step, nothing
//! from another host), with uPlot (MIT, vendored from npm) for the live charts. The page is a
//! client of the JSON API like curl: it keeps the token in the tab (sessionStorage) and sends
//! it as a bearer header, so these files themselves need no sign-in.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// (path, content type, body) of every file the page is made of.
pub const FILES: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("../../assets/web/index.html")),
    ("/ui/app.js", "text/javascript; charset=utf-8", include_str!("../../assets/web/app.js")),
    ("/ui/app.css", "text/css; charset=utf-8", include_str!("../../assets/web/app.css")),
    // N.B.: without an icon every page load asks for /favicon.ico and gets a 404.
    ("/ui/favicon.svg", "image/svg+xml", include_str!("../../assets/web/favicon.svg")),
    (
        "/ui/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/web/vendor/uPlot.iife.min.js"),
    ),
    ("/ui/uPlot.min.css", "text/css; charset=utf-8", include_str!("../../assets/web/vendor/uPlot.min.css")),
    ("/ui/LICENSE-uPlot.txt", "text/plain; charset=utf-8", include_str!("../../assets/web/vendor/LICENSE-uPlot.txt")),
];

/// Only this server's own scripts, styles and API; pictures also from blob: URLs (the plots
/// are fetched with the token, then shown); no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// A strong validator for a file: the SHA-256 of its bytes (they change only with the binary).
fn etag(body: &str) -> HeaderValue {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body.as_bytes());
    HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..16]))).expect("hex is a valid header value")
}

fn serve(content_type: &'static str, body: &'static str, tag: &HeaderValue, headers: &HeaderMap) -> Response {
    let fresh = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == tag.as_bytes());
    let mut r = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { body.into_response() };
    let h = r.headers_mut();
    h.insert(header::ETAG, tag.clone());
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // N.B.: the files change with the binary; a browser asks again (a 304 when unchanged)
    // rather than run stale code.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for &(path, content_type, body) in FILES {
        let tag = etag(body);
        router =
            router.route(path, get(move |headers: HeaderMap| async move { serve(content_type, body, &tag, &headers) }));
    }
    router
}
