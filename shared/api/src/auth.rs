//! Bearer-token authentication.
//!
//! A request either carries no `Authorization` header (anonymous) or a token
//! that must pass every check; a bad token is a 401 on every route, never
//! treated as anonymous. The checks, in order: header syntax, signature with
//! the one fixed algorithm, issuer, expiry, then one store round trip for the
//! token record (not revoked) and the user (exists, same `UserId`). The
//! caller's level is the user's *current* level, so a demotion takes effect
//! on the next request.

use http::{HeaderMap, header};
use taskgate_domain::permission::Actor;
use taskgate_domain::token::{TokenError, TokenRecord};
use taskgate_domain::user::User;

use crate::problem::ApiError;
use crate::state::AppState;

/// An authenticated caller: the user as stored now, and the token used.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: User,
    pub token: TokenRecord,
}

impl Session {
    pub fn actor(&self) -> Actor {
        Actor::from(&self.user)
    }
}

fn unauthenticated(why: &str) -> ApiError {
    ApiError::Unauthenticated(why.to_owned())
}

/// The bearer token, if the request sends an `Authorization` header.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || unauthenticated("the Authorization header must be \"Bearer <token>\"");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(malformed());
    }
    Ok(Some(token))
}

/// The session of a request that may be anonymous. `Ok(None)` only when no
/// `Authorization` header was sent at all. Handlers take a [`Session`] or an
/// `Option<Session>` as an extractor ([`crate::extract`]), which calls this.
pub async fn session(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    let Some(token) = bearer_token(headers)? else {
        return Ok(None);
    };
    authenticate(state, token).await.map(Some)
}

/// The token sent as `Authorization: Bearer <token>`, if any (`Err` when
/// the header is there but malformed).
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    bearer_token(headers)
}

/// The session `token` opens, after every check (a WebSocket sends its
/// token in the query instead of a header, and re-checks it while open).
pub async fn authenticate(state: &AppState, token: &str) -> Result<Session, ApiError> {
    let now = state.clock.now();
    let claims = state.keys.verify(token, now).map_err(|e| match e {
        TokenError::Expired => unauthenticated("the token has expired; log in again"),
        TokenError::Invalid => unauthenticated("the token is not valid"),
    })?;
    let (record, user) = state
        .store
        .load_session(&claims.jti, &claims.username)
        .await?;
    let record = record
        .filter(|r| r.user_id == claims.user_id && r.username == claims.username)
        .ok_or_else(|| unauthenticated("the token has been revoked; log in again"))?;
    if record.is_expired(now) {
        return Err(unauthenticated("the token has expired; log in again"));
    }
    let user = user
        .filter(|u| u.user_id == claims.user_id)
        .ok_or_else(|| unauthenticated("the account this token belongs to no longer exists"))?;
    Ok(Session {
        user,
        token: record,
    })
}

/// The 401 of a route that needs a token and got none.
pub fn token_required() -> ApiError {
    unauthenticated("this endpoint needs a token: send Authorization: Bearer <token>")
}
