//! `/users` (and the compatibility routes under `/user`): create, list,
//! read, edit, delete.
//!
//! Authorisation happens before the body is read wherever the answer does not
//! depend on the body, so a caller who may not act learns nothing from
//! validation errors.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use taskgate_domain::password::Password;
use taskgate_domain::permission;
use taskgate_domain::ports::StoreError;
use taskgate_domain::security::{SecurityEvent, SecurityKind};
use taskgate_domain::user::{Email, Level, Profile, User, UserChanges, Username};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Session;
use crate::extract::{Body, BodyContext, FromBody, Params, RequestId, SharedState, path_value};
use crate::handlers::PageQuery;
use crate::handlers::projects::{change_project, unassign_all};
use crate::problem::{ApiError, Problem};
use crate::request::{Fields, as_str, checked, message, next_cursor, string};
use crate::response::{Created, Page, UserView};
use crate::state::AppState;
use taskgate_app::conflict::{Attempt, retry};
use taskgate_domain::project::access::Action;
use taskgate_domain::project::commands;

fn no_such_user(username: &str) -> ApiError {
    ApiError::NotFound(format!("there is no user named {username:?}"))
}

/// The `{username}` of the path. A name that cannot be valid cannot exist.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct UserPath {
    /// The username, any case.
    #[param(value_type = String)]
    username: Username,
}

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = path_value(parts).await?;
        let username = Username::parse(&raw).map_err(|_| no_such_user(&raw))?;
        Ok(Self { username })
    }
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

/// `POST /users` body.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    username: Username,
    password: Password,
    /// Default `user`. Only admins may create admins; open sign-up creates `user` only.
    level: Option<Level>,
    email: Option<Email>,
    profile: Option<Profile>,
}

impl FromBody for NewUser {
    const FIELDS: &'static [&'static str] = &["username", "password", "level", "email", "profile"];

    fn from_fields(mut fields: Fields, context: &BodyContext<'_>) -> Result<Self, ApiError> {
        let username = fields.required("username", string(Username::parse));
        let password = fields.required("password", |v| {
            Password::parse(as_str(v)?, username.as_ref()).map_err(message)
        });
        let level = fields.optional("level", string(Level::parse));
        let email = fields.optional("email", string(Email::parse));
        let profile = fields.optional("profile", profile_field(context.state));
        fields.finish()?;
        Ok(Self {
            username: checked(username),
            password: checked(password),
            level,
            email,
            profile,
        })
    }
}

#[utoipa::path(
    post, path = "/users", tag = "users", operation_id = "users-create",
    summary = "Create a user",
    description = "Admins create users of any level. With `TASKGATE_REGISTRATION=open`, anyone \
        may sign up without a token, as level `user` only.",
    security(("bearer" = []), ()),
    request_body(content = NewUser, content_type = "application/json",
        example = json!({"username": "alice", "password": "correct horse battery staple", "email": "alice@example.com", "profile": {"team": "blue"}})),
    responses(
        (status = 201, description = "Created", body = UserView,
            headers(("Location" = String, description = "`/users/{username}`"))),
        (status = 403, description = "`forbidden`: not an admin (and registration closed), or a non-admin asking for `admin`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`username-taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-field`: every bad field is listed", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:taskgate:problem:invalid-field", "title": "Invalid fields", "status": 422, "detail": "invalid value for: password", "errors": [{"field": "password", "message": "must be at least 15 characters long"}], "request_id": "3f1c0c7e2b8a4e0f9d6a5b4c3d2e1f00"})),
    )
)]
pub(crate) async fn create(
    State(state): State<SharedState>,
    request_id: RequestId,
    session: Option<Session>,
    body: Result<Body<NewUser>, ApiError>,
) -> Result<Response, ApiError> {
    let actor = session.as_ref().map(|s| s.actor());
    let registration = state.settings.registration;
    // Who may create users at all is decided before the body is looked at.
    permission::may_create_any_user(actor.as_ref(), registration)?;
    let Body(new) = body?;
    let level = new.level.unwrap_or(Level::User);
    permission::may_create_user(actor.as_ref(), level, registration)?;

    let hash = state.hash_password(new.password).await?;
    let user = User::new(new.username, hash, level, new.email, new.profile);
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
    state.audit(&request_id, event).await;
    tracing::info!(username = %user.username, level = %user.level, by = ?by.map(Username::as_str), "user created");
    Ok(Created {
        status: StatusCode::CREATED,
        location: format!("/users/{}", user.username),
        body: UserView::from(&user),
    }
    .into_response())
}

#[utoipa::path(
    get, path = "/users", tag = "users", operation_id = "users-list",
    summary = "List users (admins), in username order",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of users", body = Page<UserView>),
        (status = 403, description = "`forbidden`: not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-field`: a bad `limit` or `cursor`, or an unknown parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list(
    State(state): State<SharedState>,
    session: Session,
    query: Result<Params<PageQuery>, ApiError>,
) -> Result<Response, ApiError> {
    permission::may_list_users(&session.actor())?;
    let Params(query) = query?;
    // The cursor is the last username of the previous page.
    let after = query.cursor(|name| Username::parse(name).ok())?;

    let page = state.store.list_users(after.as_ref(), query.limit).await?;
    Ok(Json(Page {
        items: page.items.iter().map(UserView::from).collect(),
        next: page.next.map(next_cursor),
    })
    .into_response())
}

#[utoipa::path(
    get, path = "/users/{username}", tag = "users", operation_id = "users-get",
    summary = "Read a user (yourself, or anyone as an admin)",
    security(("bearer" = [])),
    params(UserPath),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 403, description = "`forbidden`: another user, and not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(state): State<SharedState>,
    session: Session,
    UserPath { username: target }: UserPath,
) -> Result<Response, ApiError> {
    permission::may_view_user(&session.actor(), &target)?;

    let user = if target == session.user.username {
        session.user
    } else {
        stored_user(&state, &target).await?
    };
    Ok(Json(UserView::from(&user)).into_response())
}

/// `PATCH /users/{username}` body: any of the fields; `null` clears `email`
/// or `profile`. A user may not change their own level.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserEdit {
    password: Option<Password>,
    level: Option<Level>,
    #[schema(nullable)]
    email: Option<Option<Email>>,
    #[schema(nullable)]
    profile: Option<Option<Profile>>,
}

impl FromBody for UserEdit {
    const FIELDS: &'static [&'static str] = &["password", "level", "email", "profile"];

    fn from_fields(mut fields: Fields, context: &BodyContext<'_>) -> Result<Self, ApiError> {
        // A path that is no username never gets here: the handler's path
        // extractor answered 404 first.
        let target = context
            .path("username")
            .and_then(|raw| Username::parse(raw).ok());
        let password = fields.optional("password", |v| {
            Password::parse(as_str(v)?, target.as_ref()).map_err(message)
        });
        let level = fields.optional("level", string(Level::parse));
        let email = fields.nullable("email", string(Email::parse));
        let profile = fields.nullable("profile", profile_field(context.state));
        fields.finish()?;
        Ok(Self {
            password,
            level,
            email,
            profile,
        })
    }
}

#[utoipa::path(
    patch, path = "/users/{username}", tag = "users", operation_id = "users-update",
    summary = "Edit a user (yourself, or anyone as an admin; never your own level)",
    description = "A password change revokes the user's other tokens.",
    security(("bearer" = [])),
    params(UserPath),
    request_body(content = UserEdit, content_type = "application/json",
        example = json!({"email": null, "profile": {"team": "red"}})),
    responses(
        (status = 200, description = "The user as it now is", body = UserView),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last-admin` (demoting the last admin) or `edit-conflict`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-field`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update(
    State(state): State<SharedState>,
    request_id: RequestId,
    session: Session,
    UserPath { username: target }: UserPath,
    body: Result<Body<UserEdit>, ApiError>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    permission::may_edit_user(&actor, &target, None)?;
    let Body(UserEdit {
        password,
        level,
        email,
        profile,
    }) = body?;

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

    // Each try borrows what it needs.
    let (state, target, actor, changes, named, session, request_id) = (
        &state,
        &target,
        &actor,
        &changes,
        &named,
        &session,
        &request_id,
    );
    retry(move || async move {
        let current = stored_user(state, target).await?;
        let new_level = level.filter(|l| *l != current.level);
        permission::may_edit_user(actor, target, new_level).map_err(ApiError::from)?;
        let Some(next) = changes.apply_to(&current) else {
            return Ok(Json(UserView::from(&current)).into_response());
        };
        match state.store.update_user(&current, &next).await {
            Ok(()) => {
                let mut event = SecurityEvent::new(
                    SecurityKind::UserUpdated,
                    Some(&actor.username),
                    target.as_str(),
                )
                .with("fields", named.clone());
                if let Some(level) = new_level {
                    event = event.with("level", level.as_str());
                }
                if password_changed {
                    // Other sessions end with the old password; the caller's
                    // own session survives a change of their own password.
                    let keep = (actor.username == *target).then_some(&session.token.jti);
                    let revoked = state.store.delete_user_tokens(target, keep).await;
                    let revoked = match revoked {
                        Ok(revoked) => revoked,
                        Err(e) => {
                            state.audit(request_id, event).await;
                            return Err(ApiError::from(e).into());
                        }
                    };
                    event = event.with("tokens_revoked", revoked);
                    tracing::info!(username = %target, revoked, "password changed, tokens revoked");
                }
                state.audit(request_id, event).await;
                tracing::info!(username = %target, by = %actor.username, "user updated");
                Ok(Json(UserView::from(&next)).into_response())
            }
            Err(e) => Err(Attempt::of(e)),
        }
    })
    .await
}

#[utoipa::path(
    delete, path = "/users/{username}", tag = "users", operation_id = "users-delete",
    summary = "Delete a user (admins; yourself when registration is open)",
    description = "Every token of the user stops working at once.",
    security(("bearer" = [])),
    params(UserPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last-admin`, `owns-projects` (transfer them first) or `edit-conflict`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete(
    State(state): State<SharedState>,
    request_id: RequestId,
    session: Session,
    UserPath { username: target }: UserPath,
) -> Result<StatusCode, ApiError> {
    let actor = session.actor();
    permission::may_delete_user(&actor, &target, state.settings.registration)?;
    // An owner hands their projects over first: a project always has one.
    let owned = state.store.owned_projects(&target).await?;
    if !owned.is_empty() {
        let ids: Vec<String> = owned.iter().map(ToString::to_string).collect();
        return Err(ApiError::Conflict {
            kind: "owns-projects",
            detail: format!(
                "{target} owns projects {}; transfer their ownership (PATCH /projects/{{id}} {{\"owner\"}}) first",
                ids.join(", ")
            ),
        });
    }

    // They leave every project they were in first, and their items there
    // are unassigned (each change recorded in its log); the account goes
    // last. A deletion that dies midway thus leaves an account without
    // memberships (delete it again), never memberships of a name that a
    // new account could take.
    let leaving = stored_user(&state, &target).await?;
    if leaving.level == taskgate_domain::user::Level::Admin
        && state.store.count_admins().await? <= 1
    {
        return Err(StoreError::LastAdmin.into());
    }
    let mut done = std::collections::HashSet::new();
    loop {
        let page = state
            .store
            .member_projects(&leaving.user_id, None, 100)
            .await?;
        let fresh: Vec<_> = page.items.iter().filter(|p| done.insert(p.id)).collect();
        if fresh.is_empty() {
            break;
        }
        for project in fresh {
            unassign_all(&state, Some(&actor), &project.id, &target).await?;
            let removal = change_project(
                &state,
                &actor,
                &project.id,
                Action::RemoveMember { username: &target },
                |project| {
                    let entry =
                        commands::remove_member(project, &actor, &target, state.clock.now())?;
                    Ok(((), Some(entry)))
                },
            )
            .await;
            match removal {
                Ok(_) | Err(ApiError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            unassign_all(&state, Some(&actor), &project.id, &target).await?;
        }
    }
    let (state, target) = (&state, &target);
    retry(move || async move {
        let current = stored_user(state, target).await?;
        state.store.delete_user(&current).await.map_err(Attempt::of)
    })
    .await?;
    tracing::info!(username = %target, by = %actor.username, "user deleted");
    // Every token of the deleted user already fails (the user is gone); this
    // removes the records too. If it fails, TTL removes them later.
    let mut event = SecurityEvent::new(
        SecurityKind::UserDeleted,
        Some(&actor.username),
        target.as_str(),
    );
    match state.store.delete_user_tokens(target, None).await {
        Ok(revoked) => event = event.with("tokens_revoked", revoked),
        Err(e) => {
            tracing::warn!(username = %target, error = %e, "could not delete the tokens of a deleted user");
        }
    }
    state.audit(&request_id, event).await;
    Ok(StatusCode::NO_CONTENT)
}
