//! The route table: the single source of truth for which endpoints exist,
//! at which method and path, and which Lambda function serves each.
//!
//! The local server registers exactly these routes; `infra/template.yaml`
//! must declare exactly these (a test compares them), and each function in
//! `functions/` serves one [`Endpoint`].

use std::time::Instant;

use http::{HeaderValue, Method, header};
use tracing::Instrument as _;

use crate::handlers::{audit, auth, root, tasks, users};
use crate::problem::ApiError;
use crate::request::RequestId;
use crate::state::AppState;
use crate::{Request, Response};

/// One endpoint: one handler, one Lambda function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Root,
    AuthLogin,
    AuthLogout,
    UsersCreate,
    UsersList,
    UsersGet,
    UsersUpdate,
    UsersDelete,
    TasksStart,
    TasksList,
    TasksGet,
    TasksCancel,
    TasksEvents,
    AuditList,
}

impl Endpoint {
    pub const ALL: &'static [Endpoint] = &[
        Self::Root,
        Self::AuthLogin,
        Self::AuthLogout,
        Self::UsersCreate,
        Self::UsersList,
        Self::UsersGet,
        Self::UsersUpdate,
        Self::UsersDelete,
        Self::TasksStart,
        Self::TasksList,
        Self::TasksGet,
        Self::TasksCancel,
        Self::TasksEvents,
        Self::AuditList,
    ];

    /// The Lambda function (and `functions/` crate, and binary) serving it.
    pub fn function_name(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::AuthLogin => "auth-login",
            Self::AuthLogout => "auth-logout",
            Self::UsersCreate => "users-create",
            Self::UsersList => "users-list",
            Self::UsersGet => "users-get",
            Self::UsersUpdate => "users-update",
            Self::UsersDelete => "users-delete",
            Self::TasksStart => "tasks-start",
            Self::TasksList => "tasks-list",
            Self::TasksGet => "tasks-get",
            Self::TasksCancel => "tasks-cancel",
            Self::TasksEvents => "tasks-events",
            Self::AuditList => "audit-list",
        }
    }

    pub fn routes(self) -> impl Iterator<Item = &'static Route> {
        ROUTES.iter().filter(move |r| r.endpoint == self)
    }
}

/// A method and path template (`{name}` marks a parameter, as in API Gateway).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub endpoint: Endpoint,
}

const fn route(method: Method, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        endpoint,
    }
}

/// Every route of the API. `/user...` are compatibility aliases served by
/// the same endpoints as `/users...` (`PUT` there means the same as `PATCH`).
pub const ROUTES: &[Route] = &[
    route(Method::GET, "/", Endpoint::Root),
    route(Method::POST, "/auth", Endpoint::AuthLogin),
    route(Method::DELETE, "/auth", Endpoint::AuthLogout),
    route(Method::POST, "/users", Endpoint::UsersCreate),
    route(Method::GET, "/users", Endpoint::UsersList),
    route(Method::GET, "/users/{username}", Endpoint::UsersGet),
    route(Method::PATCH, "/users/{username}", Endpoint::UsersUpdate),
    route(Method::DELETE, "/users/{username}", Endpoint::UsersDelete),
    route(Method::POST, "/user", Endpoint::UsersCreate),
    route(Method::GET, "/user/{username}", Endpoint::UsersGet),
    route(Method::PUT, "/user/{username}", Endpoint::UsersUpdate),
    route(Method::DELETE, "/user/{username}", Endpoint::UsersDelete),
    route(Method::POST, "/tasks", Endpoint::TasksStart),
    route(Method::GET, "/tasks", Endpoint::TasksList),
    route(Method::GET, "/tasks/{id}", Endpoint::TasksGet),
    route(Method::POST, "/tasks/{id}/cancel", Endpoint::TasksCancel),
    route(Method::GET, "/tasks/{id}/events", Endpoint::TasksEvents),
    route(Method::GET, "/audit", Endpoint::AuditList),
];

async fn dispatch(
    state: &AppState,
    endpoint: Endpoint,
    request: &Request,
) -> Result<Response, ApiError> {
    match endpoint {
        Endpoint::Root => root::hello(state, request).await,
        Endpoint::AuthLogin => auth::login(state, request).await,
        Endpoint::AuthLogout => auth::logout(state, request).await,
        Endpoint::UsersCreate => users::create(state, request).await,
        Endpoint::UsersList => users::list(state, request).await,
        Endpoint::UsersGet => users::get(state, request).await,
        Endpoint::UsersUpdate => users::update(state, request).await,
        Endpoint::UsersDelete => users::delete(state, request).await,
        Endpoint::TasksStart => tasks::start(state, request).await,
        Endpoint::TasksList => tasks::list(state, request).await,
        Endpoint::TasksGet => tasks::get(state, request).await,
        Endpoint::TasksCancel => tasks::cancel(state, request).await,
        Endpoint::TasksEvents => tasks::events(state, request).await,
        Endpoint::AuditList => audit::list(state, request).await,
    }
}

/// Serves one request for `endpoint`: the entry point of every transport.
///
/// The transport puts the path parameters ([`crate::request::PathParams`])
/// and, if it has one, a [`RequestId`] on the request. Every response gets
/// `X-Request-Id` and `Cache-Control: no-store` (responses are per-user and
/// may hold tokens); every request gets one log line without headers or body.
pub async fn handle(state: &AppState, endpoint: Endpoint, mut request: Request) -> Response {
    let request_id = request
        .extensions_mut()
        .get_or_insert_with(RequestId::generate)
        .0
        .clone();
    let span = tracing::info_span!("request", request_id = %request_id, endpoint = endpoint.function_name());
    async {
        let started = Instant::now();
        let limit = state.settings.max_body_bytes;
        let result = if request.body().len() > limit {
            Err(ApiError::PayloadTooLarge { limit })
        } else {
            dispatch(state, endpoint, &request).await
        };
        let mut response = result.unwrap_or_else(|e| e.to_response(&request_id));
        finish_headers(&mut response, &request_id);
        tracing::info!(
            method = %request.method(),
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        );
        response
    }
    .instrument(span)
    .await
}

/// The headers every response carries, errors made outside [`handle`]
/// (unknown routes in the local server) included.
pub fn finish_headers(response: &mut Response, request_id: &str) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}
