//! `POST /auth` (log in) and `DELETE /auth` (log out).
//!
//! Logins are throttled per [`LoginKey`]: failures count against the
//! username, or against the device when the client shows a device token
//! from an earlier login as that user (docs/adr/0008). Each attempt is
//! counted *before* the password is checked, with a compare-and-set, so
//! parallel guesses cannot slip past the count.

use std::time::Duration;

use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use taskgate_domain::ports::StoreError;
use taskgate_domain::security::{Admission, LoginAttempts, LoginKey, SecurityEvent, SecurityKind};
use taskgate_domain::user::Username;
use time::OffsetDateTime;

use crate::auth::require_session;
use crate::problem::ApiError;
use crate::request::{Fields, any_string, checked, json_or_form_object};
use crate::response::{json, no_content, timestamp};
use crate::state::AppState;
use crate::{Request, Response};

/// How long a device token lets its holder skip other people's lockouts.
const DEVICE_TOKEN_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Compare-and-set rounds before a contended login key answers 429.
const COUNT_ATTEMPTS: usize = 5;

#[derive(Serialize)]
struct LoginResponse<'a> {
    token: &'a str,
    token_type: &'static str,
    expires_at: String,
    expires_in: u64,
    device_token: &'a str,
}

/// Same status, body and (by hashing a dummy) time whether the username is
/// unknown or the password wrong.
fn bad_credentials() -> ApiError {
    ApiError::Unauthenticated("the username or password is wrong".into())
}

/// Whose failures this attempt counts against.
fn login_key(state: &AppState, username: &Username, device_token: Option<&str>) -> LoginKey {
    device_token
        .and_then(|token| state.keys.verify_device(token).ok())
        .filter(|claims| claims.username == *username)
        .map_or_else(
            || LoginKey::Username(username.clone()),
            |claims| LoginKey::Device(claims.jti),
        )
}

fn via(key: &LoginKey) -> &'static str {
    match key {
        LoginKey::Username(_) => "username",
        LoginKey::Device(_) => "device",
    }
}

/// Counts one attempt for `key`, or says until when it is locked.
async fn count_attempt(
    state: &AppState,
    key: &LoginKey,
) -> Result<Result<LoginAttempts, OffsetDateTime>, ApiError> {
    let key = key.as_key();
    for _ in 0..COUNT_ATTEMPTS {
        let stored = state.store.login_attempts(&key).await?;
        let now = taskgate_domain::now();
        match state.settings.login.admit(stored.clone(), now) {
            Admission::Locked { until } => return Ok(Err(until)),
            Admission::Allowed { next } => {
                match state
                    .store
                    .put_login_attempts(&key, stored.as_ref(), &next)
                    .await
                {
                    Ok(()) => return Ok(Ok(next)),
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    // Lost the race every time: many attempts at once on one key.
    Ok(Err(taskgate_domain::now() + Duration::from_secs(1)))
}

pub(crate) async fn login(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let mut fields = Fields::new(
        json_or_form_object(request, state.settings.max_json_depth)?,
        &["username", "password", "device_token"],
    );
    let typed = fields.required("username", any_string);
    let password = fields.required("password", |v| any_string(v).map(SecretString::from));
    let device_token = fields.optional("device_token", any_string);
    fields.finish()?;
    let (typed, password) = (checked(typed), checked(password));

    let Ok(username) = Username::parse(&typed) else {
        // No such account can exist: the same work and answer as a wrong
        // password, and nothing to count.
        state.verify_password(password, None).await?;
        let event = SecurityEvent::new(SecurityKind::LoginFailed, None, typed);
        state.audit(request, event.with("via", "username")).await;
        return Err(bad_credentials());
    };
    let key = login_key(state, &username, device_token.as_deref());
    let attempts = match count_attempt(state, &key).await? {
        Ok(attempts) => attempts,
        Err(until) => {
            let wait = (until - taskgate_domain::now()).as_seconds_f64().ceil();
            let retry_after = (wait as u64).max(1);
            let event = SecurityEvent::new(SecurityKind::LoginLocked, None, username.as_str())
                .with("via", via(&key))
                .with("retry_after", retry_after);
            state.audit(request, event).await;
            tracing::info!(outcome = "locked", retry_after, "login");
            return Err(ApiError::LoginLocked { retry_after });
        }
    };

    let user = state.store.get_user(&username).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let verified = state.verify_password(password, hash).await?;
    let Some(user) = user.filter(|_| verified) else {
        let mut event = SecurityEvent::new(SecurityKind::LoginFailed, None, username.as_str())
            .with("via", via(&key))
            .with("failures", attempts.failures);
        if let Some(until) = state.settings.login.locked_until(&attempts) {
            event = event.with("locked_until", timestamp(until));
        }
        state.audit(request, event).await;
        tracing::info!(outcome = "failure", "login");
        return Err(bad_credentials());
    };
    state.store.clear_login_attempts(&key.as_key()).await?;

    let issued = state.keys.issue(&user, state.settings.token_ttl);
    state.store.insert_token(&issued.record).await?;
    let (device_token, device) = state.keys.issue_device(&user, DEVICE_TOKEN_TTL);
    let event = SecurityEvent::new(SecurityKind::LoginSucceeded, None, user.username.as_str())
        .with("via", via(&key))
        .with("jti", issued.record.jti.to_string())
        .with("device", device.to_string());
    state.audit(request, event).await;
    tracing::info!(outcome = "success", username = %user.username, jti = %issued.record.jti, "login");
    Ok(json(
        StatusCode::OK,
        &LoginResponse {
            token: issued.token.expose_secret(),
            token_type: "Bearer",
            expires_at: timestamp(issued.record.expires_at),
            expires_in: state.settings.token_ttl.as_secs(),
            device_token: device_token.expose_secret(),
        },
    ))
}

pub(crate) async fn logout(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = require_session(state, request).await?;
    state.store.delete_token(&session.token.jti).await?;
    let username = &session.user.username;
    let event = SecurityEvent::new(
        SecurityKind::TokenRevoked,
        Some(username),
        username.as_str(),
    )
    .with("jti", session.token.jti.to_string());
    state.audit(request, event).await;
    tracing::info!(username = %username, jti = %session.token.jti, "logout");
    Ok(no_content())
}
