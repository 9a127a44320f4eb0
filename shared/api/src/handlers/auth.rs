//! `POST /auth` (log in) and `DELETE /auth` (log out).
//!
//! Logins are throttled per [`LoginKey`]: failures count against the
//! username, or against the device when the client shows a device token
//! from an earlier login as that user (docs/adr/0008). Each attempt is
//! counted *before* the password is checked, with a compare-and-set, so
//! parallel guesses cannot slip past the count.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use taskgate_domain::ports::StoreError;
use taskgate_domain::security::{Admission, LoginAttempts, LoginKey, SecurityEvent, SecurityKind};
use taskgate_domain::user::Username;
use taskgate_views::body;
use time::OffsetDateTime;

use crate::auth::Session;
use crate::extract::{Body, BodyContext, RequestBody, RequestId, SharedState};
use crate::problem::{ApiError, FieldError, Problem};
use crate::response::timestamp;
use crate::state::AppState;

/// How long a device token lets its holder skip other people's lockouts.
const DEVICE_TOKEN_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Compare-and-set rounds before a contended login key answers 429.
const COUNT_ATTEMPTS: usize = 5;

/// What a login body asks: the account (by username or by e-mail
/// address, as typed), the password and the device token, if any.
pub struct Credentials {
    account: Account,
    password: SecretString,
    device_token: Option<String>,
}

pub enum Account {
    Username(String),
    Email(String),
}

/// Exactly one of `username` and `email`.
impl TryFrom<body::Login> for Credentials {
    type Error = Vec<FieldError>;

    fn try_from(login: body::Login) -> Result<Self, Self::Error> {
        let refused = |message: &str| {
            vec![FieldError {
                field: "username".into(),
                message: message.into(),
            }]
        };
        let account = match (login.username, login.email) {
            (Some(_), Some(_)) => {
                return Err(refused("give the username or the e-mail address, not both"));
            }
            (Some(username), None) => Account::Username(username),
            (None, Some(email)) => Account::Email(email),
            (None, None) => return Err(refused("is required")),
        };
        Ok(Self {
            account,
            password: login.password.into_inner(),
            device_token: login.device_token,
        })
    }
}

impl RequestBody for body::Login {
    type Input = Credentials;
    const FORM: bool = true;

    fn check(self, _: &BodyContext<'_>) -> Result<Credentials, Vec<FieldError>> {
        Credentials::try_from(self)
    }
}

/// Same status, body and (by hashing a dummy) time whether the username is
/// unknown or the password wrong.
fn bad_credentials() -> ApiError {
    ApiError::Unauthenticated("the username or password is wrong".into())
}

/// Whose failures this attempt counts against.
fn login_key(state: &AppState, username: &Username, device_token: Option<&str>) -> LoginKey {
    device_token
        .and_then(|token| state.keys.verify_device(token, state.clock.now()).ok())
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
        let now = state.clock.now();
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
    Ok(Err(state.clock.now() + Duration::from_secs(1)))
}

#[utoipa::path(
    post, path = "/auth", tag = "auth", operation_id = "auth-login",
    summary = "Log in",
    description = "Checks the username and password and returns a bearer token. After \
        `TASKGATE_LOGIN_FREE_FAILURES` failures in a row, each further failure locks the \
        username (or device) for 1 s, 2 s, 4 s … up to `TASKGATE_LOGIN_MAX_LOCK_SECONDS`: \
        429 until then, whatever the password and whether or not the user exists.",
    security(()),
    request_body(content(
        (body::Login = "application/json", example = json!({"username": "alice", "password": "correct horse battery staple"})),
        (body::Login = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Logged in", body = taskgate_views::LoginResponse,
            example = json!({"token": "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ0YXNrZ2F0ZSJ9.c2ln", "token_type": "Bearer", "expires_at": "2026-11-21T19:25:03.000Z", "expires_in": 3600, "device_token": "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ0YXNrZ2F0ZS9kZXZpY2UifQ.c2ln"})),
        (status = 400, description = "`malformed-request`: the body is not a JSON object or form"),
        (status = 401, description = "`unauthenticated`: the username or password is wrong (the same answer for both)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:taskgate:problem:unauthenticated", "title": "Authentication required", "status": 401, "detail": "the username or password is wrong", "request_id": "3f1c0c7e2b8a4e0f9d6a5b4c3d2e1f00"})),
        (status = 422, description = "`invalid-field`: a field is missing, unknown or not a string"),
        (status = 429, description = "`login-locked`: too many failed logins; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until the lock ends")),
            example = json!({"type": "urn:taskgate:problem:login-locked", "title": "Too many failed logins", "status": 429, "detail": "too many failed logins; try again in 4 s", "request_id": "3f1c0c7e2b8a4e0f9d6a5b4c3d2e1f00"})),
    )
)]
pub(crate) async fn login(
    State(state): State<SharedState>,
    request_id: RequestId,
    Body(credentials): Body<body::Login>,
) -> Result<Response, ApiError> {
    let Credentials {
        account,
        password,
        device_token,
    } = credentials;
    // An e-mail address names the account it belongs to, if any; one that
    // belongs to nobody is refused like an unknown username.
    let typed = match account {
        Account::Username(username) => username,
        Account::Email(email) => {
            let owner = match taskgate_domain::user::Email::parse(&email) {
                Ok(email) => state.store.get_user_by_email(&email).await?,
                Err(_) => None,
            };
            match owner {
                Some(user) => user.username.as_str().to_owned(),
                None => {
                    state.verify_password(password, None).await?;
                    let event = SecurityEvent::new(SecurityKind::LoginFailed, None, email);
                    state.audit(&request_id, event.with("via", "email")).await;
                    return Err(bad_credentials());
                }
            }
        }
    };

    let Ok(username) = Username::parse(&typed) else {
        // No such account can exist: the same work and answer as a wrong
        // password, and nothing to count.
        state.verify_password(password, None).await?;
        let event = SecurityEvent::new(SecurityKind::LoginFailed, None, typed);
        state
            .audit(&request_id, event.with("via", "username"))
            .await;
        return Err(bad_credentials());
    };
    let key = login_key(&state, &username, device_token.as_deref());
    let attempts = match count_attempt(&state, &key).await? {
        Ok(attempts) => attempts,
        Err(until) => {
            let wait = (until - state.clock.now()).as_seconds_f64().ceil();
            let retry_after = (wait as u64).max(1);
            let event = SecurityEvent::new(SecurityKind::LoginLocked, None, username.as_str())
                .with("via", via(&key))
                .with("retry_after", retry_after);
            state.audit(&request_id, event).await;
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
        state.audit(&request_id, event).await;
        tracing::info!(outcome = "failure", "login");
        return Err(bad_credentials());
    };
    state.store.clear_login_attempts(&key.as_key()).await?;

    let now = state.clock.now();
    let issued = state.keys.issue(&user, state.settings.token_ttl, now);
    state.store.insert_token(&issued.record).await?;
    let (device_token, device) = state.keys.issue_device(&user, DEVICE_TOKEN_TTL, now);
    let event = SecurityEvent::new(SecurityKind::LoginSucceeded, None, user.username.as_str())
        .with("via", via(&key))
        .with("jti", issued.record.jti.to_string())
        .with("device", device.to_string());
    state.audit(&request_id, event).await;
    tracing::info!(outcome = "success", username = %user.username, jti = %issued.record.jti, "login");
    Ok(Json(taskgate_views::LoginResponse {
        token: issued.token.expose_secret().into(),
        token_type: "Bearer".into(),
        expires_at: timestamp(issued.record.expires_at),
        expires_in: state.settings.token_ttl.as_secs(),
        device_token: device_token.expose_secret().into(),
    })
    .into_response())
}

#[utoipa::path(
    delete, path = "/auth", tag = "auth", operation_id = "auth-logout",
    summary = "Log out: revoke the token used",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The token no longer works"),
    )
)]
pub(crate) async fn logout(
    State(state): State<SharedState>,
    request_id: RequestId,
    session: Session,
) -> Result<StatusCode, ApiError> {
    state.store.delete_token(&session.token.jti).await?;
    let username = &session.user.username;
    let event = SecurityEvent::new(
        SecurityKind::TokenRevoked,
        Some(username),
        username.as_str(),
    )
    .with("jti", session.token.jti.to_string());
    state.audit(&request_id, event).await;
    tracing::info!(username = %username, jti = %session.token.jti, "logout");
    Ok(StatusCode::NO_CONTENT)
}
