//! The application: one axum [`Router`] that every transport serves, the
//! local server over TLS and each HTTP Lambda through `lambda_http`.
//!
//! [`api`] is the one list of endpoints: each line routes a handler and, via
//! its `#[utoipa::path]` annotation, documents it, so the router and the
//! OpenAPI document cannot drift apart. The deprecated `/user…` routes are
//! rewritten to their `/users…` counterparts before routing ([`ALIASES`]), so
//! they run the same handlers with the same rules.
//!
//! Every response carries `X-Request-Id`, `Cache-Control: no-store`
//! (responses are per-user and may hold tokens) and `X-Content-Type-Options:
//! nosniff`; every request gets one log line, without headers or body.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Path, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, Uri, header};
use taskgate_console::{Console, Elsewhere};
use tracing::Instrument as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::{RequestId, SharedState};
use crate::handlers::{audit, auth, files, items, projects, root, tasks, users};
use crate::problem::ApiError;

/// Every endpoint, with its documentation.
pub fn api() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(root::hello))
        .routes(routes!(auth::login, auth::logout))
        .routes(routes!(users::create, users::list))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(tasks::start, tasks::list))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::cancel))
        .routes(routes!(tasks::events))
        .routes(routes!(audit::list))
        .routes(routes!(projects::create, projects::list))
        .routes(routes!(projects::get, projects::update, projects::delete))
        .routes(routes!(projects::members))
        .routes(routes!(projects::put_member, projects::remove_member))
        .routes(routes!(items::create, items::list))
        .routes(routes!(items::mine))
        .routes(routes!(items::get, items::update, items::delete))
        .routes(routes!(items::events))
        .routes(routes!(
            files::tus::capabilities,
            files::tus::create,
            files::list
        ))
        .routes(routes!(
            files::tus::head_upload,
            files::get_file,
            files::tus::patch,
            files::tus::delete
        ))
        .routes(routes!(files::download::content))
}

/// The application for `state`: the API with its fallbacks, request ids,
/// logging and standard headers, behind the alias rewrite; the console
/// connecting to this origin only.
pub fn app(state: SharedState) -> Router {
    let console =
        Console::new(&Elsewhere::default()).expect("the console renders with no origin elsewhere");
    app_with(routes(console), state)
}

/// The API's routes before any state is known: the costly part of building
/// the application (each route's OpenAPI description is assembled on the
/// way), so a Lambda cold start builds it while it waits for its secret.
pub struct Routes(Router<SharedState>);

/// The routes of [`app`], with their fallbacks and `console`'s page;
/// [`app_with`] completes them.
pub fn routes(console: Console) -> Routes {
    let (api, _) = api().split_for_parts();
    let page = move || {
        let console = console.clone();
        async move { console.page() }
    };
    Routes(
        api
            // Real-time updates: a WebSocket, so outside the OpenAPI document
            // (docs/API.md describes it). On AWS the WebSocket API serves them.
            .route(
                "/ws",
                axum::routing::get(crate::realtime::socket::upgrade).layer(
                    axum::middleware::from_fn(taskgate_console::socket_protocol::layer),
                ),
            )
            // The web console (taskgate-console): its page and assets.
            .route("/app", axum::routing::get(page.clone()))
            .route("/app/", axum::routing::get(page))
            .route("/app/assets/{*name}", axum::routing::get(console_asset))
            .fallback(|method: Method, uri: Uri| async move {
                ApiError::NotFound(format!("there is no route {method} {}", uri.path()))
            })
            .method_not_allowed_fallback(|method: Method| async move {
                ApiError::MethodNotAllowed { method }
            }),
    )
}

/// `GET /app/assets/{*name}`: a fingerprinted file of the console.
async fn console_asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    taskgate_console::asset(&name)
        .ok_or_else(|| ApiError::NotFound(format!("the console has no file {name}")))
}

/// [`app`] from routes built beforehand ([`routes`]).
pub fn app_with(routes: Routes, state: SharedState) -> Router {
    let api = routes
        .0
        // Creations take an Idempotency-Key (matched routes only).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::idempotency::layer,
        ))
        .layer(axum::middleware::from_fn(request_context))
        .with_state(state);
    Router::new()
        .fallback_service(api)
        .layer(axum::middleware::from_fn(rewrite_aliases))
}

/// `router` behind the bound on a request's headers (431 past `limit`,
/// `TASKGATE_MAX_HEADER_BYTES`). Each transport applies it once, around
/// everything it serves: the local server (API, compatibility routes,
/// health) and every Lambda function.
pub fn with_header_limit(router: Router, limit: usize) -> Router {
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| limit_headers(request, next, limit),
    ))
}

/// Refuses a request whose headers are larger together (names and values)
/// than `limit` with 431, before anything reads them: every parser of a
/// header then sees a bounded input.
async fn limit_headers(request: Request, next: Next, limit: usize) -> Response {
    let total = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .fold(0usize, usize::saturating_add);
    if total > limit {
        let id = request
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::generate);
        let mut response = ApiError::HeadersTooLarge { limit }.to_response(&id.0);
        finish_headers(&mut response, &id.0);
        return response;
    }
    next.run(request).await
}

/// Gives the request its id (the transport's, e.g. Lambda's, or a fresh
/// one), serves it in a span carrying that id and the route, logs the
/// outcome and adds the headers every response carries.
async fn request_context(mut request: Request, next: Next) -> Response {
    let id = request
        .extensions()
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(RequestId::generate);
    request.extensions_mut().insert(id.clone());
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched
        .as_ref()
        .map_or(crate::metrics::UNMATCHED, MatchedPath::as_str);
    let method = request.method().clone();
    let span = tracing::info_span!("request", request_id = %id.0, route);
    let started = Instant::now();
    let mut response = id
        .clone()
        .scope(next.run(request))
        .instrument(span.clone())
        .await;
    finish_headers(&mut response, &id.0);
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(
            method = crate::metrics::method_label(&method),
            status = response.status().as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            "request"
        );
    });
    crate::metrics::request(route, &method, response.status(), elapsed);
    response
}

/// The headers every response carries, errors made outside a request's
/// scope (the in-flight limit, [`problem`]) included.
pub fn finish_headers<B>(response: &mut http::Response<B>, request_id: &str) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    // Answers are private and fresh, unless the handler said otherwise (the
    // console's page and fingerprinted assets).
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// For routes served beside the application (the local server's
/// compatibility routes): the headers every response carries
/// (`Cache-Control: no-store`, `X-Content-Type-Options: nosniff`, an
/// `X-Request-Id`), as the application's own middleware gives its answers.
pub async fn common_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    finish_headers(&mut response, &RequestId::generate().0);
    response
}

/// The problem response for an error met before a request reached the
/// application (refused by a transport's own limits), with a fresh id.
pub fn problem(error: ApiError) -> Response {
    let id = RequestId::generate();
    let mut response = error.to_response(&id.0);
    finish_headers(&mut response, &id.0);
    response
}

/// A compatibility route: `method path` is served as `canonical`.
#[derive(Clone, Debug)]
pub struct Alias {
    pub method: Method,
    pub path: &'static str,
    pub canonical_method: Method,
    pub canonical_path: &'static str,
}

/// The compatibility routes of the contract: same handlers, same rules.
pub static ALIASES: [Alias; 4] = [
    alias(Method::POST, "/user", Method::POST, "/users"),
    alias(
        Method::GET,
        "/user/{username}",
        Method::GET,
        "/users/{username}",
    ),
    alias(
        Method::PUT,
        "/user/{username}",
        Method::PATCH,
        "/users/{username}",
    ),
    alias(
        Method::DELETE,
        "/user/{username}",
        Method::DELETE,
        "/users/{username}",
    ),
];

const fn alias(
    method: Method,
    path: &'static str,
    canonical_method: Method,
    canonical_path: &'static str,
) -> Alias {
    Alias {
        method,
        path,
        canonical_method,
        canonical_path,
    }
}

/// The values of `template`'s `{parameters}` in `path`, if it matches.
fn match_template<'p>(template: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let (mut want, mut got) = (template.split('/'), path.split('/'));
    let mut values = Vec::new();
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(values),
            (Some(w), Some(g)) if w.starts_with('{') && !g.is_empty() => values.push(g),
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// `template` with its parameters filled in order.
fn fill_template(template: &str, mut values: impl Iterator<Item = String>) -> String {
    template
        .split('/')
        .map(|part| {
            if part.starts_with('{') {
                values.next().unwrap_or_default()
            } else {
                part.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Serves each [`ALIASES`] route as its canonical route; any other method on
/// an alias path is 405 with the alias methods in `Allow`.
async fn rewrite_aliases(mut request: Request, next: Next) -> Response {
    // Every alias path is `/user` or under it: any other request passes
    // straight through.
    if !request.uri().path().starts_with("/user") {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    let mut allowed = Vec::new();
    for alias in &ALIASES {
        let Some(values) = match_template(alias.path, &path) else {
            continue;
        };
        if alias.method != *request.method() {
            allowed.push(alias.method.as_str());
            continue;
        }
        let mut target = fill_template(alias.canonical_path, values.into_iter().map(str::to_owned));
        if let Some(query) = request.uri().query() {
            target = format!("{target}?{query}");
        }
        if let Ok(uri) = target.parse::<Uri>() {
            *request.uri_mut() = uri;
            *request.method_mut() = alias.canonical_method.clone();
        }
        return next.run(request).await;
    }
    if allowed.is_empty() {
        return next.run(request).await;
    }
    let mut response = problem(ApiError::MethodNotAllowed {
        method: request.method().clone(),
    });
    if let Ok(allow) = HeaderValue::from_str(&allowed.join(",")) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response.into_response()
}

/// The local server's body timeout: a body must have arrived whole within
/// `timeout` of a handler starting to read it, or the read fails with 408
/// (`request-timeout`), which frees the request's in-flight slot. A deadline
/// for the whole body, not for each piece: a sender dripping a byte at a
/// time cannot hold a slot for longer than `timeout` either.
///
/// Uploads are the exception (`POST`/`PATCH` under `/files`, `POST
/// /upload`): their bodies may rightly take hours, so for them `timeout` is
/// the longest *silence*, reset by every piece that arrives.
pub fn limit_body_time(router: Router, timeout: Duration) -> Router {
    router.layer(axum::middleware::map_request(move |request: Request| {
        let streamed = is_upload(request.method(), request.uri().path());
        std::future::ready(request.map(|body| {
            axum::body::Body::new(TimedBody {
                body,
                timeout,
                idle: streamed,
                deadline: None,
            })
        }))
    }))
}

/// Whether a request's body is an upload's bytes (see [`limit_body_time`]).
fn is_upload(method: &Method, path: &str) -> bool {
    (*method == Method::PATCH || *method == Method::POST)
        && (path == "/files" || path.starts_with("/files/") || path == "/upload")
}

/// Raised by a body that did not arrive in time ([`limit_body_time`]).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {seconds} s")]
pub struct BodyTimedOut {
    pub seconds: u64,
}

pin_project_lite::pin_project! {
    /// A body that fails with [`BodyTimedOut`] once `timeout` has passed
    /// since it was first read.
    struct TimedBody {
        #[pin]
        body: axum::body::Body,
        timeout: Duration,
        // The deadline moves with every piece that arrives.
        idle: bool,
        #[pin]
        deadline: Option<tokio::time::Sleep>,
    }
}

impl http_body::Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if this.deadline.is_none() {
            this.deadline.set(Some(tokio::time::sleep(*this.timeout)));
        }
        if let Some(deadline) = this.deadline.as_mut().as_pin_mut()
            && deadline.poll(cx).is_ready()
        {
            let seconds = this.timeout.as_secs();
            return std::task::Poll::Ready(Some(Err(Box::new(BodyTimedOut { seconds }))));
        }
        let polled = this.body.poll_frame(cx).map_err(Into::into);
        if *this.idle
            && let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && frame.data_ref().is_some_and(|data| !data.is_empty())
            && let Some(deadline) = this.deadline.as_mut().as_pin_mut()
        {
            deadline.reset(tokio::time::Instant::now() + *this.timeout);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rewrite_aliases` lets every other path through untouched.
    #[test]
    fn every_alias_path_is_under_user() {
        for alias in &ALIASES {
            assert!(alias.path.starts_with("/user"), "{}", alias.path);
        }
    }

    #[test]
    fn alias_templates_match_whole_segments() {
        assert_eq!(match_template("/user", "/user"), Some(vec![]));
        assert_eq!(
            match_template("/user/{username}", "/user/alice"),
            Some(vec!["alice"])
        );
        assert_eq!(match_template("/user/{username}", "/user/"), None);
        assert_eq!(match_template("/user/{username}", "/user/a/b"), None);
        assert_eq!(match_template("/user", "/users"), None);
        assert_eq!(
            fill_template("/users/{username}", ["alice".to_owned()].into_iter()),
            "/users/alice"
        );
    }
}
