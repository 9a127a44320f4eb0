//! # HTTP layer
//!
//! Everything between an HTTP request and the domain, shared by every Lambda
//! function and by the local server. Handlers take an `http::Request<Bytes>`
//! and return an `http::Response<Bytes>`, so the same code runs under
//! `lambda_http` and under axum.
//!
//! - [`routes`]: the one route table (method, path, endpoint, Lambda function
//!   name) and [`routes::handle`], the entry point every transport calls.
//! - [`problem`]: `ApiError`, the single error type, and its problem+json form.
//! - [`request`]: body and query parsing into domain types, with per-field errors.
//! - [`auth`]: bearer-token authentication against the stores.
//! - [`state`]: `AppState` (stores, keys, hasher, settings), built once per
//!   process or cold start, and `Settings` read from the environment.
//! - `handlers`: one module per resource, one function per endpoint.
//! - [`memory`]: keeps glibc from hoarding the memory of password hashes.
// The one exception is `memory`, which sets a glibc allocator tunable.
#![deny(unsafe_code)]

pub mod auth;
mod handlers;
pub mod memory;
pub mod openapi;
pub mod problem;
pub mod request;
pub mod response;
pub mod routes;
pub mod state;

pub use problem::ApiError;
pub use routes::{Endpoint, ROUTES, Route, handle};
pub use state::{AppState, Settings};

/// The request type every handler takes.
pub type Request = http::Request<bytes::Bytes>;
/// The response type every handler returns.
pub type Response = http::Response<bytes::Bytes>;
