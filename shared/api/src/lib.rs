//! # HTTP layer
//!
//! The application every transport serves: one axum `Router`
//! ([`app::app`]), served by the local server over TLS and by every HTTP
//! Lambda through `lambda_http`, so path parameters, request ids and bodies
//! reach handlers the same way on both.
//!
//! - [`app`]: the router (the one list of endpoints), the middleware every
//!   request passes (request id, log line, standard headers), the
//!   compatibility aliases and the local server's body timeout.
//! - [`extract`]: what handlers declare in their signatures: the session,
//!   typed bodies and query strings, the request id.
//! - [`problem`]: `ApiError`, the single error type, and its problem+json form.
//! - [`request`]: body and query parsing into domain types, with per-field errors.
//! - [`response`]: the JSON views of resources and the `Created` response.
//! - [`auth`]: bearer-token authentication against the stores.
//! - [`openapi`]: the OpenAPI document, derived from the router and types.
//! - [`routes`]: method, path and Lambda function of every route, derived
//!   from the document.
//! - [`state`]: `AppState` (stores, clock, keys, hasher, settings), built
//!   once per process or cold start.
//! - `handlers`: one module per resource, one annotated function per endpoint.
//! - `pages`: item pages kept to be answered again while their project is
//!   unchanged.
//! - [`memory`]: keeps glibc from hoarding the memory of password hashes.
// The one exception is `memory`, which sets a glibc allocator tunable.
#![deny(unsafe_code)]

pub mod app;
pub mod auth;
pub mod extract;
mod handlers;
pub mod idempotency;
mod pages;

/// Files: what runs beside the routes (the expiry of unfinished uploads).
pub mod files {
    pub use crate::handlers::files::reap_expired;
}

/// The local server's compatibility routes (`/upload`, `/export`).
pub mod compat {
    pub use crate::handlers::compat::routes;
}
pub mod memory;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod realtime;
pub mod request;
pub mod response;
pub mod routes;
pub mod state;

pub use app::app;
pub use extract::{RequestId, SharedState};
pub use problem::ApiError;
pub use state::{AppState, Settings};
