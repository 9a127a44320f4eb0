//! The console's responses. The router that serves them (taskgate-api) maps
//! `GET /app`, `GET /app/` and `GET /app/assets/{*name}` here; on AWS, API
//! Gateway sends [`ROUTES`] to one function running that same router.

use std::sync::LazyLock;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

use crate::assets::Assets;

/// The API Gateway routes of the console (method and path template).
pub const ROUTES: [(&str, &str); 2] = [("GET", "/app"), ("GET", "/app/{proxy+}")];

/// The page's policy: its own scripts and styles only, no inline code, no
/// `eval`, requests to its own origin only (CSP Level 3's `'self'` includes
/// that origin's WebSocket, `ws:`/`wss:` on the same host), no framing, no
/// forms posted elsewhere, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// Fingerprinted files never change under their name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

static ASSETS: LazyLock<Assets> = LazyLock::new(Assets::build);

/// Fingerprints the assets now (at startup) rather than on the first visit.
pub fn prepare() {
    LazyLock::force(&ASSETS);
}

/// `index.html`: revalidated on every load (it names the current assets),
/// under the CSP, never framed, sending no referrer.
pub async fn page() -> Response {
    let mut response = Response::new(Body::from(ASSETS.page().to_owned()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    locked_down(headers);
    response
}

/// A fingerprinted asset, kept by browsers for a year; `None` for any
/// other name (the caller answers 404).
pub fn asset(name: &str) -> Option<Response> {
    let asset = ASSETS.get(name)?;
    let mut response = Response::new(Body::from(asset.body.clone()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    locked_down(headers);
    Some(response)
}

fn locked_down(headers: &mut http::HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn text(response: Response) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_page_is_revalidated_and_locked_down() {
        let response = page().await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{csp} lacks {directive}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        let body = text(response).await;
        assert!(body.starts_with("<!doctype html>"), "{body}");
        assert!(body.contains("/app/assets/app."), "{body}");
    }

    #[tokio::test]
    async fn fingerprinted_assets_are_immutable_and_others_missing() {
        let page = text(page().await).await;
        let at = page.find("/app/assets/app.").unwrap() + "/app/assets/".len();
        let name = &page[at..at + page[at..].find('"').unwrap()];
        let response = asset(name).expect("the page's entry module is served");
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(text(response).await.contains("import"));
        // The unfingerprinted name, a made-up one and a climb are not served.
        for name in ["app.js", "app.0123456789abcdef.js", "../Cargo.toml", ""] {
            assert!(asset(name).is_none(), "{name}");
        }
    }
}
