//! The local server's HTTP stack: the shared application
//! ([`taskgate_api::app`]) plus what only a server facing sockets needs.
//!
//! - At most `TASKGATE_MAX_REQUESTS_IN_FLIGHT` requests are handled at once;
//!   the next one gets 503 `server-busy` at once, before its body is read.
//! - One client address (IP) may hold at most
//!   `TASKGATE_MAX_REQUESTS_PER_ADDRESS` of them; its next request gets 429
//!   `too-many-requests` at once.
//! - A body that has not arrived within `TASKGATE_BODY_TIMEOUT_SECONDS` is
//!   refused with 408, which frees its slot: slow senders cannot hold the
//!   server. Together with the body size limit (enforced where bodies are
//!   read) this bounds the memory a burst of requests can take.
//! - The OpenAPI document at `/openapi.json` and a human-readable page of it
//!   at `/docs` (see [`docs`]).
//! - `/healthz` and `/readyz` (see [`health`]).
//!
//! TLS is the listener's business ([`crate::server`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
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
    console: taskgate_console::Console,
    extra: axum::Router,
) -> axum::Router {
    let max_in_flight = config.max_requests_in_flight;
    let per_address = config.max_requests_per_address;
    // The compatibility routes are served beside the application, so they
    // get its common headers here (they once answered a stored,
    // user-chosen Content-Type without nosniff or no-store).
    let compat = taskgate_api::compat::routes()
        .with_state(state.clone())
        .layer(axum::middleware::from_fn(taskgate_api::app::common_headers));
    let app = taskgate_api::app::app_with(taskgate_api::app::routes(console), state.clone());
    let app = docs::routes(app, &config.api);
    let max_header_bytes = state.settings.max_header_bytes;
    // One bound on headers around everything served (431).
    let app = taskgate_api::app::with_header_limit(
        health::routes(app, state).merge(compat).merge(extra),
        max_header_bytes,
    );
    limit_body_time(app, config.body_timeout).layer(axum::middleware::from_fn_with_state(
        InFlight {
            slots: Arc::new(Semaphore::new(max_in_flight)),
            limit: max_in_flight,
            per_address,
            by_address: Arc::default(),
        },
        limit_in_flight,
    ))
}

#[derive(Clone)]
struct InFlight {
    slots: Arc<Semaphore>,
    limit: usize,
    /// What one client address may hold of them.
    per_address: usize,
    by_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One request of an address, counted until dropped.
struct AddressSlot {
    by_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut by_address = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = by_address.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                by_address.remove(&self.ip);
            }
        }
    }
}

impl InFlight {
    /// Counts a request of `ip`, unless it holds `per_address` already.
    fn take_address(&self, ip: IpAddr) -> Option<AddressSlot> {
        let mut by_address = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        let held = by_address.entry(ip).or_insert(0);
        if *held >= self.per_address {
            return None;
        }
        *held += 1;
        Some(AddressSlot {
            by_address: Arc::clone(&self.by_address),
            ip,
        })
    }
}

/// Refuses a request with 503 `server-busy` while `limit` others are being
/// handled. A request holds its slot until its response has started; a
/// streamed response body does not hold one.
async fn limit_in_flight(
    State(in_flight): State<InFlight>,
    request: Request,
    next: Next,
) -> Response {
    // One address may not hold more than its share (slow bodies dripping
    // from one place cannot starve everyone else).
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let _address = match ip {
        Some(ip) => match in_flight.take_address(ip) {
            Some(slot) => Some(slot),
            None => {
                let mut response = problem(ApiError::TooManyFromAddress {
                    limit: in_flight.per_address,
                });
                response.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                );
                return response;
            }
        },
        None => None,
    };
    match in_flight.slots.try_acquire() {
        Ok(_slot) => next.run(request).await,
        Err(_) => problem(ApiError::Busy {
            limit: in_flight.limit,
        }),
    }
}
