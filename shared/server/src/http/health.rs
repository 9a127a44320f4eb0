//! `GET /healthz` (the process answers) and `GET /readyz` (it can serve:
//! the store answers a read), for load balancers and orchestrators. No
//! token needed; they reveal nothing but that.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, header};
use serde_json::json;
use taskgate_api::app::{finish_headers, problem};
use taskgate_api::{ApiError, AppState, RequestId};

pub(super) fn routes(router: Router, state: Arc<AppState>) -> Router {
    router
        .route("/healthz", get(|| async { ok(json!({"status": "ok"})) }))
        .route("/readyz", get(ready).with_state(state))
}

fn ok(body: serde_json::Value) -> Response {
    let mut response = axum::Json(body).into_response();
    finish_headers(&mut response, &RequestId::generate().0);
    response
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.store.count_admins().await {
        Ok(_) => ok(json!({"status": "ready"})),
        Err(e) => {
            tracing::warn!(error = %taskgate_domain::ports::Chain(&e), "not ready: the store does not answer");
            let mut response = problem(ApiError::Unavailable(Box::new(e)));
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}
