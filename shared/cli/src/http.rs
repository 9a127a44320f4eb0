//! The local server's HTTP stack: the shared application
//! ([`taskgate_api::app`]) plus what only a server facing sockets needs.
//!
//! - At most `TASKGATE_MAX_REQUESTS_IN_FLIGHT` requests are handled at once;
//!   the next one gets 503 `server-busy` at once, before its body is read.
//! - A body that has not arrived within `TASKGATE_BODY_TIMEOUT_SECONDS` is
//!   refused with 408, which frees its slot: slow senders cannot hold the
//!   server. Together with the body size limit (enforced where bodies are
//!   read) this bounds the memory a burst of requests can take.
//! - The OpenAPI document at `/openapi.json` and a human-readable page of it
//!   at `/docs` (see [`docs`]).
//! - `/healthz` and `/readyz` (see [`health`]).
//!
//! TLS is the listener's business ([`crate::server`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use taskgate_api::app::{limit_body_time, problem};
use taskgate_api::{ApiError, AppState};
use tokio::sync::Semaphore;

use crate::ServeConfig;

mod docs;
mod health;

/// The application as the local server serves it; `extra` routes (tests'
/// own) are served beside the API, behind the same limits.
pub(crate) fn router(
    state: Arc<AppState>,
    config: &ServeConfig,
    extra: axum::Router,
) -> axum::Router {
    let max_in_flight = config.max_requests_in_flight;
    let compat = taskgate_api::compat::routes().with_state(state.clone());
    let app = docs::routes(taskgate_api::app(state.clone()), &config.api);
    let app = health::routes(app, state).merge(compat).merge(extra);
    limit_body_time(app, config.body_timeout).layer(axum::middleware::from_fn_with_state(
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
/// handled. A request holds its slot until its response has started; a
/// streamed response body does not hold one.
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
