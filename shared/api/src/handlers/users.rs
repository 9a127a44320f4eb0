//! `/users` (and the compatibility routes under `/user`): create, list,
//! read, edit, delete.
//!
//! Authorisation happens before the body is read wherever the answer does not
//! depend on the body, so a caller who may not act learns nothing from
//! validation errors.

use http::StatusCode;
use serde::Serialize;
use taskgate_domain::password::Password;
use taskgate_domain::permission;
use taskgate_domain::ports::StoreError;
use taskgate_domain::security::{SecurityEvent, SecurityKind};
use taskgate_domain::user::{Email, Level, Profile, User, UserChanges, Username};

use crate::auth::{optional_session, require_session};
use crate::problem::ApiError;
use crate::request::{
    Fields, as_str, checked, cursor, json_object, message, next_cursor, page_size, path_param,
    query, string,
};
use crate::response::{UserView, created, json, no_content};
use crate::state::AppState;
use crate::{Request, Response};

/// How often an edit or delete re-reads and retries after losing a race
/// with a concurrent change to the same user.
const ATTEMPTS: usize = 3;

fn no_such_user(username: &str) -> ApiError {
    ApiError::NotFound(format!("there is no user named {username:?}"))
}

/// The `{username}` of the path. A name that cannot be valid cannot exist.
fn target(request: &Request) -> Result<Username, ApiError> {
    let raw = path_param(request, "username")?;
    Username::parse(raw).map_err(|_| no_such_user(raw))
}

/// The stored user named `target`, or 404.
async fn stored_user(state: &AppState, target: &Username) -> Result<User, ApiError> {
    state
        .store
        .get_user(target)
        .await?
        .ok_or_else(|| no_such_user(target.as_str()))
}

/// Reads a `profile` field within the configured limits.
fn profile_field(
    state: &AppState,
) -> impl FnOnce(&serde_json::Value) -> Result<Profile, String> + '_ {
    |value| Profile::parse(value.clone(), &state.settings.profile).map_err(message)
}

pub(crate) async fn create(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = optional_session(state, request).await?;
    let actor = session.as_ref().map(|s| s.actor());
    let registration = state.settings.registration;
    permission::may_create_any_user(actor.as_ref(), registration)?;

    let mut fields = Fields::new(
        json_object(request, state.settings.max_json_depth)?,
        &["username", "password", "level", "email", "profile"],
    );
    let username = fields.required("username", string(Username::parse));
    let password = fields.required("password", |v| {
        Password::parse(as_str(v)?, username.as_ref()).map_err(message)
    });
    let level = fields.optional("level", string(Level::parse));
    let email = fields.optional("email", string(Email::parse));
    let profile = fields.optional("profile", profile_field(state));
    fields.finish()?;
    let level = level.unwrap_or(Level::User);
    permission::may_create_user(actor.as_ref(), level, registration)?;

    let hash = state.hash_password(checked(password)).await?;
    let user = User::new(checked(username), hash, level, email, profile);
    match state.store.insert_user(&user).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists) => {
            return Err(ApiError::Conflict {
                kind: "username-taken",
                detail: format!("the username {:?} is already taken", user.username.as_str()),
            });
        }
        Err(e) => return Err(e.into()),
    }
    let by = actor.as_ref().map(|a| &a.username);
    let event = SecurityEvent::new(SecurityKind::UserCreated, by, user.username.as_str())
        .with("level", user.level.as_str());
    state.audit(request, event).await;
    tracing::info!(username = %user.username, level = %user.level, by = ?by.map(Username::as_str), "user created");
    Ok(created(
        &format!("/users/{}", user.username),
        &UserView::from(&user),
    ))
}

#[derive(Serialize)]
struct UserList<'a> {
    items: Vec<UserView<'a>>,
    next: Option<String>,
}

pub(crate) async fn list(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = require_session(state, request).await?;
    permission::may_list_users(&session.actor())?;

    let params = query(request, &["limit", "cursor"])?;
    let limit = page_size(&params)?;
    // The cursor is the last username of the previous page.
    let after = cursor(&params, |name| Username::parse(name).ok())?;

    let page = state.store.list_users(after.as_ref(), limit).await?;
    Ok(json(
        StatusCode::OK,
        &UserList {
            items: page.items.iter().map(UserView::from).collect(),
            next: page.next.map(next_cursor),
        },
    ))
}

pub(crate) async fn get(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = require_session(state, request).await?;
    let target = target(request)?;
    permission::may_view_user(&session.actor(), &target)?;

    let user = if target == session.user.username {
        session.user
    } else {
        stored_user(state, &target).await?
    };
    Ok(json(StatusCode::OK, &UserView::from(&user)))
}

pub(crate) async fn update(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = require_session(state, request).await?;
    let actor = session.actor();
    let target = target(request)?;
    permission::may_edit_user(&actor, &target, None)?;

    let mut fields = Fields::new(
        json_object(request, state.settings.max_json_depth)?,
        &["password", "level", "email", "profile"],
    );
    let password = fields.optional("password", |v| {
        Password::parse(as_str(v)?, Some(&target)).map_err(message)
    });
    let level = fields.optional("level", string(Level::parse));
    let email = fields.nullable("email", string(Email::parse));
    let profile = fields.nullable("profile", profile_field(state));
    fields.finish()?;

    let password_changed = password.is_some();
    let named: Vec<&str> = [
        ("password", password_changed),
        ("level", level.is_some()),
        ("email", email.is_some()),
        ("profile", profile.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    let changes = UserChanges {
        password_hash: match password {
            Some(password) => Some(state.hash_password(password).await?),
            None => None,
        },
        level,
        email,
        profile,
    };

    for _ in 0..ATTEMPTS {
        let current = stored_user(state, &target).await?;
        let new_level = level.filter(|l| *l != current.level);
        permission::may_edit_user(&actor, &target, new_level)?;
        let Some(next) = changes.apply_to(&current) else {
            return Ok(json(StatusCode::OK, &UserView::from(&current)));
        };
        match state.store.update_user(&current, &next).await {
            Ok(()) => {
                let mut event = SecurityEvent::new(
                    SecurityKind::UserUpdated,
                    Some(&actor.username),
                    target.as_str(),
                )
                .with("fields", named);
                if let Some(level) = new_level {
                    event = event.with("level", level.as_str());
                }
                if password_changed {
                    // Other sessions end with the old password; the caller's
                    // own session survives a change of their own password.
                    let keep = (actor.username == target).then_some(&session.token.jti);
                    let revoked = state.store.delete_user_tokens(&target, keep).await;
                    let revoked = match revoked {
                        Ok(revoked) => revoked,
                        Err(e) => {
                            state.audit(request, event).await;
                            return Err(e.into());
                        }
                    };
                    event = event.with("tokens_revoked", revoked);
                    tracing::info!(username = %target, revoked, "password changed, tokens revoked");
                }
                state.audit(request, event).await;
                tracing::info!(username = %target, by = %actor.username, "user updated");
                return Ok(json(StatusCode::OK, &UserView::from(&next)));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}

pub(crate) async fn delete(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = require_session(state, request).await?;
    let actor = session.actor();
    let target = target(request)?;
    permission::may_delete_user(&actor, &target, state.settings.registration)?;

    let mut deleted = false;
    for _ in 0..ATTEMPTS {
        let current = stored_user(state, &target).await?;
        match state.store.delete_user(&current).await {
            Ok(()) => {
                deleted = true;
                break;
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    if !deleted {
        return Err(StoreError::Conflict.into());
    }
    tracing::info!(username = %target, by = %actor.username, "user deleted");
    // Every token of the deleted user already fails (the user is gone); this
    // removes the records too. If it fails, TTL removes them later.
    let mut event = SecurityEvent::new(
        SecurityKind::UserDeleted,
        Some(&actor.username),
        target.as_str(),
    );
    match state.store.delete_user_tokens(&target, None).await {
        Ok(revoked) => event = event.with("tokens_revoked", revoked),
        Err(e) => {
            tracing::warn!(username = %target, error = %e, "could not delete the tokens of a deleted user");
        }
    }
    state.audit(request, event).await;
    Ok(no_content())
}
