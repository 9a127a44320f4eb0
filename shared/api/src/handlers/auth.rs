//! `POST /auth` (log in) and `DELETE /auth` (log out).

use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use taskgate_domain::user::Username;

use crate::auth::require_session;
use crate::problem::ApiError;
use crate::request::{Fields, any_string, checked, json_or_form_object};
use crate::response::{json, no_content, timestamp};
use crate::state::AppState;
use crate::{Request, Response};

#[derive(Serialize)]
struct LoginResponse<'a> {
    token: &'a str,
    token_type: &'static str,
    expires_at: String,
    expires_in: u64,
}

/// Same status, body and (by hashing a dummy) time whether the username is
/// unknown or the password wrong.
fn bad_credentials() -> ApiError {
    ApiError::Unauthenticated("the username or password is wrong".into())
}

pub(crate) async fn login(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let mut fields = Fields::new(json_or_form_object(request)?, &["username", "password"]);
    let username = fields.required("username", any_string);
    let password = fields.required("password", |v| any_string(v).map(SecretString::from));
    fields.finish()?;
    let (username, password) = (checked(username), checked(password));

    let user = match Username::parse(&username) {
        Ok(username) => state.store.get_user(&username).await?,
        Err(_) => None,
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    if !state.verify_password(password, hash).await? {
        tracing::info!(outcome = "failure", "login");
        return Err(bad_credentials());
    }
    let user = user.ok_or_else(bad_credentials)?;

    let issued = state.keys.issue(&user, state.settings.token_ttl);
    state.store.insert_token(&issued.record).await?;
    tracing::info!(outcome = "success", username = %user.username, jti = %issued.record.jti, "login");
    Ok(json(
        StatusCode::OK,
        &LoginResponse {
            token: issued.token.expose_secret(),
            token_type: "Bearer",
            expires_at: timestamp(issued.record.expires_at),
            expires_in: state.settings.token_ttl.as_secs(),
        },
    ))
}

pub(crate) async fn logout(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = require_session(state, request).await?;
    state.store.delete_token(&session.token.jti).await?;
    tracing::info!(username = %session.user.username, jti = %session.token.jti, "logout");
    Ok(no_content())
}
