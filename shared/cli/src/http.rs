//! The axum router for the local server, built from the route table.
//!
//! axum only transports: it matches the path, extracts path parameters,
//! reads the body (stopping at the size limit) and hands an
//! `http::Request<Bytes>` to `taskgate_api::handle`, exactly as the Lambda
//! adapter does.
//!
//! Besides the API, the local server serves its OpenAPI document at
//! `/openapi.json` and a human-readable page of it at `/docs` (see [`docs`]).
//!
//! At most `TASKGATE_MAX_REQUESTS_IN_FLIGHT` requests are handled at once;
//! the next one gets 503 `server-busy` at once, before its body is read.
//! Together with the body limit this bounds the memory a burst of requests
//! can take; the body timeout keeps slow senders from holding the slots.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use http::Method;
use taskgate_api::request::{PathParams, RequestId};
use taskgate_api::routes::finish_headers;
use taskgate_api::{ApiError, AppState, Endpoint, ROUTES};
use tokio::sync::Semaphore;

use crate::ServeConfig;

mod docs;

pub(crate) fn router(state: Arc<AppState>, config: &ServeConfig) -> axum::Router {
    let max_in_flight = config.max_requests_in_flight;
    let body_timeout = config.body_timeout;
    let mut by_path: BTreeMap<&'static str, Vec<(Method, Endpoint)>> = BTreeMap::new();
    for route in ROUTES {
        by_path
            .entry(route.path)
            .or_default()
            .push((route.method.clone(), route.endpoint));
    }
    let mut router = axum::Router::new();
    for (path, methods) in by_path {
        let allow: Vec<Method> = methods.iter().map(|(m, _)| m.clone()).collect();
        let mut method_router = MethodRouter::new();
        for (method, endpoint) in methods {
            let state = Arc::clone(&state);
            let filter = MethodFilter::try_from(method).expect("route methods are standard");
            method_router = method_router.on(filter, move |params, request| {
                serve(state, endpoint, body_timeout, params, request)
            });
        }
        method_router = method_router.fallback(move || {
            let allow = allow.clone();
            async move { problem(ApiError::MethodNotAllowed { allow }) }
        });
        router = router.route(path, method_router);
    }
    router = docs::routes(router);
    router
        .fallback(|request: Request| async move {
            problem(ApiError::NotFound(format!(
                "there is no route {} {}",
                request.method(),
                request.uri().path()
            )))
        })
        .layer(axum::middleware::from_fn_with_state(
            InFlight {
                slots: Arc::new(Semaphore::new(max_in_flight)),
                limit: max_in_flight,
            },
            limit_in_flight,
        ))
}

#[derive(Clone)]
struct InFlight {
    slots: Arc<Semaphore>,
    limit: usize,
}

/// Refuses a request with 503 `server-busy` while `limit` others are being
/// handled. Responses are whole buffers, so a request's slot is free again
/// as soon as its handler returns.
async fn limit_in_flight(
    State(in_flight): State<InFlight>,
    request: Request,
    next: Next,
) -> Response {
    match in_flight.slots.try_acquire() {
        Ok(_slot) => next.run(request).await,
        Err(_) => problem(ApiError::Busy {
            limit: in_flight.limit,
        }),
    }
}

fn problem(error: ApiError) -> Response {
    let id = RequestId::generate().0;
    let mut response = error.to_response(&id);
    finish_headers(&mut response, &id);
    response.map(Body::from).into_response()
}

async fn serve(
    state: Arc<AppState>,
    endpoint: Endpoint,
    body_timeout: Duration,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let limit = state.settings.max_body_bytes;
    let read = tokio::time::timeout(body_timeout, axum::body::to_bytes(body, limit)).await;
    let body = match read {
        Ok(Ok(bytes)) => bytes,
        Err(_elapsed) => {
            return problem(ApiError::RequestTimeout {
                seconds: body_timeout.as_secs(),
            });
        }
        Ok(Err(e)) => {
            // `to_bytes` fails either at the limit or when the client's body
            // stream breaks; only the first is the client's size problem.
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return problem(if too_large {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::Malformed(format!("the request body could not be read: {e}"))
            });
        }
    };
    parts.extensions.insert(PathParams(params));
    parts.extensions.insert(RequestId::generate());
    let request = http::Request::from_parts(parts, body);
    taskgate_api::handle(&state, endpoint, request)
        .await
        .map(Body::from)
}
