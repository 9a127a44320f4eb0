//! The console's responses. The router that serves them (taskgate-api) maps
//! `GET /app`, `GET /app/` and `GET /app/assets/{*name}` here; on AWS, API
//! Gateway sends [`ROUTES`] to one function running that same router.

use std::sync::LazyLock;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Method, header};

use crate::assets::Assets;

/// The API Gateway routes of the console (method and path template).
pub const ROUTES: [(Method, &str); 2] = [(Method::GET, "/app"), (Method::GET, "/app/{proxy+}")];

/// The page's policy: its own scripts and styles only, no inline code, no
/// `eval`, requests to its own origin only (CSP Level 3's `'self'` includes
/// that origin's WebSocket, `ws:`/`wss:` on the same host), no framing, no
/// forms posted elsewhere, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// Fingerprinted files never change under their name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `TASKGATE_CONSOLE_WEBSOCKET_URL`: where the console opens its live
/// socket when that is not this origin's `/ws`: on AWS, the stack's
/// WebSocket API (`wss://…/live`, set by the template). Unset: `/ws` here.
pub const WEBSOCKET_URL_VARIABLE: &str = "TASKGATE_CONSOLE_WEBSOCKET_URL";

static ASSETS: LazyLock<Assets> = LazyLock::new(Assets::build);

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let url = std::env::var(WEBSOCKET_URL_VARIABLE)
        .ok()
        .filter(|url| !url.is_empty());
    Page::render(&ASSETS, url.as_deref())
        .unwrap_or_else(|e| panic!("{WEBSOCKET_URL_VARIABLE}: {e}"))
});

/// Fingerprints the assets and renders the page now (at startup) rather
/// than on the first visit; a bad `TASKGATE_CONSOLE_WEBSOCKET_URL` stops
/// the program here, naming the variable.
pub fn prepare() {
    LazyLock::force(&PAGE);
}

/// The page as served, and its policy.
struct Page {
    html: String,
    policy: HeaderValue,
}

impl Page {
    /// The page, naming `websocket` (when the live socket is on another
    /// origin) in a `<meta name="taskgate-websocket">` and in the policy's
    /// `connect-src`, which allows that origin and nothing else.
    fn render(assets: &Assets, websocket: Option<&str>) -> Result<Self, String> {
        let Some(url) = websocket else {
            return Ok(Self {
                html: assets.page().to_owned(),
                policy: HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            });
        };
        let origin = websocket_origin(url)?;
        let html = assets.page().replacen(
            "</head>",
            &format!("<meta name=\"taskgate-websocket\" content=\"{url}\">\n</head>"),
            1,
        );
        let policy = CONTENT_SECURITY_POLICY.replace(
            "connect-src 'self'",
            &format!("connect-src 'self' {origin}"),
        );
        Ok(Self {
            html,
            policy: HeaderValue::from_str(&policy).map_err(|e| e.to_string())?,
        })
    }
}

/// `wss://host[:port]` of a `wss://host[:port]/path` URL whose every
/// character is one a URL needs here (so it is safe in an attribute and a
/// policy as it stands).
fn websocket_origin(url: &str) -> Result<&str, String> {
    let rest = url
        .strip_prefix("wss://")
        .ok_or_else(|| format!("must be a wss:// URL, not {url:?}"))?;
    let host_end = rest.find('/').unwrap_or(rest.len());
    let host = &rest[..host_end];
    let path = &rest[host_end..];
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    let path_ok = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '~'));
    if host_ok && path_ok {
        Ok(&url[.."wss://".len() + host_end])
    } else {
        Err(format!(
            "must be wss://host[:port]/path with letters, digits and . - _ ~ only, not {url:?}"
        ))
    }
}

/// `index.html`: revalidated on every load (it names the current assets),
/// under the CSP, never framed, sending no referrer.
pub async fn page() -> Response {
    // Rendered once (the body is borrowed from the static, not copied).
    let page: &'static Page = &PAGE;
    let mut response = Response::new(Body::from(page.html.as_str()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    locked_down(headers, page.policy.clone());
    response
}

/// A fingerprinted asset, kept by browsers for a year; `None` for any
/// other name (the caller answers 404).
pub fn asset(name: &str) -> Option<Response> {
    let assets: &'static Assets = &ASSETS;
    let asset = assets.get(name)?;
    let mut response = Response::new(Body::from(asset.body.as_str()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    locked_down(headers, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    Some(response)
}

fn locked_down(headers: &mut http::HeaderMap, policy: HeaderValue) {
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
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
        assert_eq!(response.status(), http::StatusCode::OK);
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

    #[test]
    fn a_websocket_elsewhere_is_named_in_the_page_and_allowed_by_the_policy() {
        let assets = Assets::build();
        let here = Page::render(&assets, None).unwrap();
        assert!(!here.html.contains("taskgate-websocket"));
        assert_eq!(here.policy, CONTENT_SECURITY_POLICY);

        let url = "wss://abc123.execute-api.eu-west-1.amazonaws.com/live";
        let aws = Page::render(&assets, Some(url)).unwrap();
        assert!(
            aws.html.contains(&format!(
                "<meta name=\"taskgate-websocket\" content=\"{url}\">"
            )),
            "{}",
            aws.html
        );
        let policy = aws.policy.to_str().unwrap();
        assert!(
            policy.contains("connect-src 'self' wss://abc123.execute-api.eu-west-1.amazonaws.com;"),
            "{policy}"
        );
        assert_eq!(
            websocket_origin("wss://localhost:8443").unwrap(),
            "wss://localhost:8443"
        );
        // Nothing that could leave the attribute or widen the policy.
        for bad in [
            "ws://plain.example/live",
            "https://x.example/live",
            "wss://",
            "wss://x.example/live\"><script>",
            "wss://x.example/live; script-src *",
            "wss://*.example/live",
            "wss://x.example/live?token=1",
        ] {
            assert!(Page::render(&assets, Some(bad)).is_err(), "{bad}");
        }
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
