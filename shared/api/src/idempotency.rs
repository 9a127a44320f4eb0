//! `Idempotency-Key` on the creating routes (`POST /tasks`, `POST
//! /projects`, `POST /projects/{id}/items`): a retry with the same key and
//! the same request within 24 hours gets the first answer again (status,
//! `Location`, body; with `Idempotency-Replayed: true`) and creates nothing;
//! the same key with another request is 422 `idempotency-key-reused`; while
//! the first is still being handled, 409 `idempotency-key-in-use`. Keys are
//! the caller's own (scoped by user). A first answer of 5xx is not kept: the
//! retry runs again.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use sha2::{Digest as _, Sha256};
use taskgate_domain::ports::{Claim, KeptResponse};

use axum::extract::OptionalFromRequestParts;

use crate::auth::Session;
use crate::extract::{SharedState, read_body};
use crate::problem::ApiError;

/// How long a key holds its answer.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// How long a claim holds its key while its request is handled: longer
/// than any request may take (a Lambda's 10 s, API Gateway's 30 s), short
/// enough that a claim whose process was killed mid-request (a Lambda
/// timeout) does not turn every retry away for the whole window.
pub const CLAIM: Duration = Duration::from_secs(120);
/// The routes that take a key.
const ROUTES: [&str; 3] = ["/tasks", "/projects", "/projects/{id}/items"];
/// The headers of an answer that a replay repeats.
const KEPT_HEADERS: [&str; 3] = ["content-type", "location", "etag"];
/// The largest answer kept (creations answer a few kilobytes).
const MAX_KEPT_BYTES: usize = 1 << 20;

fn key_of(request: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::Malformed(
                "Idempotency-Key must be 1 to 255 visible ASCII characters (e.g. a UUID)".into(),
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// The middleware (see the module documentation).
pub async fn layer(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let applies = request.method() == Method::POST
        && request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|path| ROUTES.contains(&path.as_str()));
    if !applies {
        return next.run(request).await;
    }
    let key = match key_of(&request) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(request).await,
        Err(e) => return e.into_response(),
    };
    // Keys are per caller. The session extractor authenticates once per
    // request and keeps the session for the handler; a request without a
    // good token goes on to be refused as usual.
    let (mut parts, body) = request.into_parts();
    let user = match <Session as OptionalFromRequestParts<SharedState>>::from_request_parts(
        &mut parts, &state,
    )
    .await
    {
        Ok(Some(session)) => session.user.user_id,
        _ => return next.run(Request::from_parts(parts, body)).await,
    };
    let bytes = match read_body(body, state.settings.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    let fingerprint = fingerprint(
        &parts.method,
        parts.uri.path(),
        parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        &bytes,
    );
    let scope = scope(&user, &key);
    let now = state.clock.now();
    let claim = match state
        .store
        .claim_key(&scope, &fingerprint, now, now + CLAIM)
        .await
    {
        Ok(claim) => claim,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match claim {
        Claim::Done(kept) => replay(kept),
        Claim::Mismatch => ApiError::IdempotencyKeyReused(
            "this Idempotency-Key was used with another request; use a new key for a new request"
                .into(),
        )
        .into_response(),
        Claim::InProgress => ApiError::Conflict {
            kind: "idempotency-key-in-use",
            detail: "a request with this Idempotency-Key is being handled; retry shortly".into(),
        }
        .into_response(),
        // Handled on a task of its own: a client that goes away mid-request
        // (its future dropped) must not leave the key claimed "in progress"
        // for the whole window, every retry 409. The request runs to its
        // end and its answer is kept, so the retry gets it.
        Claim::New => {
            let handled = {
                let (state, scope, fingerprint) =
                    (state.clone(), scope.clone(), fingerprint.clone());
                tokio::spawn(async move {
                    let response = next
                        .run(Request::from_parts(parts, Body::from(bytes)))
                        .await;
                    keep(&state, &scope, &fingerprint, response).await
                })
            };
            match handled.await {
                Ok(response) => response,
                Err(e) => {
                    let _ = state.store.release_key(&scope, &fingerprint).await;
                    ApiError::internal(format!("the request's handler failed: {e}")).into_response()
                }
            }
        }
    }
}

/// What a key is claimed for: the request, as method, path, content type
/// and body (a retry must be the same request).
pub fn fingerprint(
    method: &Method,
    path: &str,
    content_type: Option<&[u8]>,
    body: &[u8],
) -> String {
    let mut fingerprint = Sha256::new();
    fingerprint.update(method.as_str());
    fingerprint.update([0]);
    fingerprint.update(path);
    fingerprint.update([0]);
    if let Some(content_type) = content_type {
        fingerprint.update(content_type);
    }
    fingerprint.update([0]);
    fingerprint.update(body);
    hex::encode(fingerprint.finalize())
}

/// Keys are per caller: `user:key`.
pub fn scope(user: &taskgate_domain::user::UserId, key: &str) -> String {
    format!("{user}:{key}")
}

/// Keeps the answer for retries (unless it is a 5xx), and gives it back.
async fn keep(state: &SharedState, scope: &str, fingerprint: &str, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_KEPT_BYTES).await else {
        let _ = state.store.release_key(scope, fingerprint).await;
        return ApiError::internal("an answer too large to keep").into_response();
    };
    let outcome = if parts.status.is_server_error() {
        state.store.release_key(scope, fingerprint).await
    } else {
        let kept = KeptResponse {
            status: parts.status.as_u16(),
            headers: KEPT_HEADERS
                .iter()
                .filter_map(|name| {
                    parts
                        .headers
                        .get(*name)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| ((*name).to_owned(), v.to_owned()))
                })
                .collect(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        state
            .store
            .keep_response(scope, fingerprint, &kept, state.clock.now() + WINDOW)
            .await
    };
    if let Err(e) = outcome {
        tracing::warn!(error = %taskgate_domain::ports::Chain(&e), "could not keep an idempotent answer");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(kept: KeptResponse) -> Response {
    let mut response = Response::new(Body::from(kept.body));
    *response.status_mut() = StatusCode::from_u16(kept.status).unwrap_or(StatusCode::OK);
    for (name, value) in kept.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
        .headers_mut()
        .insert("idempotency-replayed", HeaderValue::from_static("true"));
    response
}
