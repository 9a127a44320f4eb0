//! The console's responses. The router that serves them (taskgate-api) maps
//! `GET /app`, `GET /app/` and `GET /app/assets/{*name}` here; on AWS, API
//! Gateway sends [`ROUTES`] to one function running that same router.

use std::sync::{Arc, LazyLock};

use axum::body::{Body, Bytes};
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

/// `TASKGATE_CONSOLE_DOWNLOAD_ORIGIN`: the origin a download is redirected
/// to when the files' bytes are not served by this origin: on AWS, the
/// files bucket (`https://<bucket>.s3.<region>.amazonaws.com`, set by the
/// template), whose presigned URLs a `GET /files/{id}/content` answers
/// with. Unset: downloads come from here.
pub const DOWNLOAD_ORIGIN_VARIABLE: &str = "TASKGATE_CONSOLE_DOWNLOAD_ORIGIN";

static ASSETS: LazyLock<Assets> = LazyLock::new(Assets::build);

/// Where the console may connect besides its own origin; each one is named
/// in the page's policy (`connect-src`) and nothing else is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Elsewhere {
    /// The live socket's URL ([`WEBSOCKET_URL_VARIABLE`]).
    pub websocket: Option<String>,
    /// The origin downloads are redirected to ([`DOWNLOAD_ORIGIN_VARIABLE`]).
    pub downloads: Option<String>,
}

impl Elsewhere {
    /// From [`WEBSOCKET_URL_VARIABLE`] and [`DOWNLOAD_ORIGIN_VARIABLE`]
    /// (empty is unset).
    pub fn from_env() -> Self {
        let read = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Self {
            websocket: read(WEBSOCKET_URL_VARIABLE),
            downloads: read(DOWNLOAD_ORIGIN_VARIABLE),
        }
    }
}

/// The console as one router serves it: the page rendered once for where
/// it may connect ([`Elsewhere`]), the assets shared by every router.
#[derive(Clone)]
pub struct Console {
    page: Arc<Page>,
}

impl Console {
    /// Fingerprints the assets (once per process) and renders the page, or
    /// says which setting is wrong and why.
    pub fn new(elsewhere: &Elsewhere) -> Result<Self, String> {
        let page = Page::render(&ASSETS, elsewhere)?;
        Ok(Self {
            page: Arc::new(page),
        })
    }

    /// `index.html`: revalidated on every load (it names the current
    /// assets), under the CSP, never framed, sending no referrer.
    pub fn page(&self) -> Response {
        // The body is the rendered page's bytes, shared, not copied.
        let mut response = Response::new(Body::from(Bytes::clone(&self.page.html)));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        locked_down(headers, self.page.policy.clone());
        response
    }
}

/// The page as served, and its policy.
struct Page {
    html: Bytes,
    policy: HeaderValue,
}

impl Page {
    /// The page, naming the live socket (when it is on another origin) in
    /// a `<meta name="taskgate-websocket">`, with a policy whose
    /// `connect-src` allows this origin, that socket's origin and the
    /// downloads' origin, and nothing else.
    fn render(assets: &Assets, elsewhere: &Elsewhere) -> Result<Self, String> {
        let mut html = assets.page().to_owned();
        let mut origins = Vec::new();
        if let Some(url) = &elsewhere.websocket {
            let origin =
                websocket_origin(url).map_err(|e| format!("{WEBSOCKET_URL_VARIABLE}: {e}"))?;
            html = html.replacen(
                "</head>",
                &format!("<meta name=\"taskgate-websocket\" content=\"{url}\">\n</head>"),
                1,
            );
            origins.push(origin);
        }
        if let Some(origin) = &elsewhere.downloads {
            origins.push(
                download_origin(origin).map_err(|e| format!("{DOWNLOAD_ORIGIN_VARIABLE}: {e}"))?,
            );
        }
        let policy = if origins.is_empty() {
            CONTENT_SECURITY_POLICY.to_owned()
        } else {
            CONTENT_SECURITY_POLICY.replace(
                "connect-src 'self'",
                &format!("connect-src 'self' {}", origins.join(" ")),
            )
        };
        Ok(Self {
            html: Bytes::from(html),
            policy: HeaderValue::from_str(&policy).map_err(|e| e.to_string())?,
        })
    }
}

/// Whether every character of `host` (a host and maybe a port) is one a
/// host name, an IPv4 address or a port is written with: safe in an
/// attribute and a policy as it stands, and no wildcard.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
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
    let path_ok = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '~'));
    if plain_host(host) && path_ok {
        Ok(&url[.."wss://".len() + host_end])
    } else {
        Err(format!(
            "must be wss://host[:port]/path with letters, digits and . - _ ~ only, not {url:?}"
        ))
    }
}

/// `origin` itself if it is one: `https://host[:port]`, or `http://` to
/// this machine (a local S3 stand-in), and nothing more.
fn download_origin(origin: &str) -> Result<&str, String> {
    let this_machine = |host: &str| {
        let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
        name == "localhost"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    let host = match (
        origin.strip_prefix("https://"),
        origin.strip_prefix("http://"),
    ) {
        (Some(host), _) => Some(host),
        (None, Some(host)) if this_machine(host) => Some(host),
        _ => None,
    };
    match host {
        Some(host) if plain_host(host) => Ok(origin),
        _ => Err(format!(
            "must be an origin, https://host[:port] (http:// only to this machine), not {origin:?}"
        )),
    }
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

    fn page() -> Response {
        Console::new(&Elsewhere::default()).unwrap().page()
    }

    #[tokio::test]
    async fn the_page_is_revalidated_and_locked_down() {
        let response = page();
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
        let html = |page: &Page| String::from_utf8(page.html.to_vec()).unwrap();
        let here = Page::render(&assets, &Elsewhere::default()).unwrap();
        assert!(!html(&here).contains("taskgate-websocket"));
        assert_eq!(here.policy, CONTENT_SECURITY_POLICY);

        let url = "wss://abc123.execute-api.eu-west-1.amazonaws.com/live";
        let websocket = |url: &str| Elsewhere {
            websocket: Some(url.to_owned()),
            downloads: None,
        };
        let aws = Page::render(&assets, &websocket(url)).unwrap();
        assert!(
            html(&aws).contains(&format!(
                "<meta name=\"taskgate-websocket\" content=\"{url}\">"
            )),
            "{}",
            html(&aws)
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
            let error = Page::render(&assets, &websocket(bad)).err();
            assert!(
                error.is_some_and(|e| e.starts_with(WEBSOCKET_URL_VARIABLE)),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_downloads_origin_is_allowed_by_the_policy_and_nothing_more() {
        let assets = Assets::build();
        let downloads = |origin: &str| Elsewhere {
            websocket: None,
            downloads: Some(origin.to_owned()),
        };
        for (origin, allowed) in [
            (
                "https://files-1a2b.s3.eu-west-1.amazonaws.com",
                "https://files-1a2b.s3.eu-west-1.amazonaws.com",
            ),
            ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
            ("http://localhost:9000", "http://localhost:9000"),
        ] {
            let page = Page::render(&assets, &downloads(origin)).unwrap();
            let policy = page.policy.to_str().unwrap();
            assert!(
                policy.contains(&format!("connect-src 'self' {allowed};")),
                "{policy}"
            );
            assert!(
                !String::from_utf8(page.html.to_vec())
                    .unwrap()
                    .contains(origin)
            );
        }
        // Both at once: each named, nothing else.
        let both = Page::render(
            &assets,
            &Elsewhere {
                websocket: Some("wss://ws.example/live".to_owned()),
                downloads: Some("https://b.s3.example".to_owned()),
            },
        )
        .unwrap();
        assert!(
            both.policy
                .to_str()
                .unwrap()
                .contains("connect-src 'self' wss://ws.example https://b.s3.example;")
        );
        for bad in [
            "http://files.example",
            "http://localhost.evil.example",
            "http://10.0.0.1:9000",
            "https://",
            "https://b.s3.example/",
            "https://b.s3.example/key?X-Amz-Signature=1",
            "https://*.s3.example",
            "https://b.s3.example; script-src *",
            "https://b.s3.example\"",
            "ftp://b.s3.example",
        ] {
            let error = Page::render(&assets, &downloads(bad)).err();
            assert!(
                error.is_some_and(|e| e.starts_with(DOWNLOAD_ORIGIN_VARIABLE)),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn fingerprinted_assets_are_immutable_and_others_missing() {
        let page = text(page()).await;
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
