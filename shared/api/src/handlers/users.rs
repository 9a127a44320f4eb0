//! `/users` (and the compatibility routes under `/user`): create, list,
//! read, edit, delete.
//!
//! Each handler parses, calls the use case ([`taskgate_app::users`]) and
//! answers. Authorisation happens before the body is read wherever the
//! answer does not depend on the body, so a caller who may not act learns
//! nothing from validation errors.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use taskgate_app::users;
use taskgate_domain::password::Password;
use taskgate_domain::user::{Profile, Username};
use taskgate_views::body;
use utoipa::IntoParams;

use crate::auth::Session;
use crate::extract::{Body, BodyContext, Params, RequestBody, RequestId, SharedState, path_value};
use crate::handlers::PageQuery;
use crate::problem::{ApiError, FieldError, Problem};
use crate::request::next_cursor;
use crate::response::{Created, Page, UserView};
use crate::state::AppState;

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

/// A profile as sent, within the configured limits.
fn profile(state: &AppState, sent: body::JsonObject) -> Result<Profile, FieldError> {
    Profile::parse(serde_json::Value::Object(sent.0), &state.settings.profile).map_err(|e| {
        FieldError {
            field: "profile".into(),
            message: e.0,
        }
    })
}

/// A new password for `username`'s account (the policy's other rules were
/// checked when the field was read).
fn password(sent: &body::NewPassword, username: Option<&Username>) -> Result<Password, FieldError> {
    sent.for_user(username).map_err(|e| FieldError {
        field: "password".into(),
        message: e.0,
    })
}

/// The password must not contain the username; the profile is within the
/// settings' limits.
impl RequestBody for body::NewUser {
    type Input = users::NewUser;

    fn check(self, context: &BodyContext<'_>) -> Result<users::NewUser, Vec<FieldError>> {
        let mut errors = Vec::new();
        let password = password(&self.password, Some(&self.username))
            .map_err(|e| errors.push(e))
            .ok();
        let profile = self.profile.and_then(|sent| {
            profile(context.state, sent)
                .map_err(|e| errors.push(e))
                .ok()
        });
        match password {
            Some(password) if errors.is_empty() => Ok(users::NewUser {
                username: self.username,
                password,
                level: self.level,
                email: self.email,
                profile,
            }),
            _ => Err(errors),
        }
    }
}

#[utoipa::path(
    post, path = "/users", tag = "users", operation_id = "users-create",
    summary = "Create a user",
    description = "Admins create users of any level. With `TASKGATE_REGISTRATION=open`, anyone \
        may sign up without a token, as level `user` only.",
    security(("bearer" = []), ()),
    request_body(content = body::NewUser, content_type = "application/json",
        example = json!({"username": "alice", "password": "correct horse battery staple", "email": "alice@example.com", "profile": {"team": "blue"}})),
    responses(
        (status = 201, description = "Created", body = UserView,
            headers(("Location" = String, description = "`/users/{username}`"))),
        (status = 403, description = "`forbidden`: not an admin (and registration closed), or a non-admin asking for `admin`"),
        (status = 409, description = "`username-taken`"),
        (status = 422, description = "`invalid-field`: every bad field is listed", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:taskgate:problem:invalid-field", "title": "Invalid fields", "status": 422, "detail": "invalid value for: password", "errors": [{"field": "password", "message": "must be at least 15 characters long"}], "request_id": "3f1c0c7e2b8a4e0f9d6a5b4c3d2e1f00"})),
    )
)]
pub(crate) async fn create(
    State(state): State<SharedState>,
    request_id: RequestId,
    session: Option<Session>,
    body: Result<Body<body::NewUser>, ApiError>,
) -> Result<Response, ApiError> {
    let actor = session.as_ref().map(|s| s.actor());
    let registration = state.settings.registration;
    // Who may create users at all is decided before the body is looked at.
    users::may_create(actor.as_ref(), registration)?;
    let Body(new) = body?;
    let user = users::create(
        state.ports(),
        &*state,
        actor.as_ref(),
        registration,
        new,
        &request_id.0,
    )
    .await?;
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
        (status = 403, description = "`forbidden`: not an admin"),
        (status = 422, description = "`invalid-field`: a bad `limit` or `cursor`, or an unknown parameter"),
    )
)]
pub(crate) async fn list(
    State(state): State<SharedState>,
    session: Session,
    query: Result<Params<PageQuery>, ApiError>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    users::may_list(&actor)?;
    let Params(query) = query?;
    // The cursor is the last username of the previous page.
    let after = query.cursor(|name| Username::parse(name).ok())?;
    let page = users::list(state.ports(), &actor, after.as_ref(), query.limit).await?;
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
        (status = 403, description = "`forbidden`: another user, and not an admin"),
        (status = 404, description = "`not-found`"),
    )
)]
pub(crate) async fn get(
    State(state): State<SharedState>,
    session: Session,
    UserPath { username: target }: UserPath,
) -> Result<Response, ApiError> {
    let user = users::get(state.ports(), session.user, &target).await?;
    Ok(Json(UserView::from(&user)).into_response())
}

/// The password must not contain the username of the path; the profile is
/// within the settings' limits.
impl RequestBody for body::UserEdit {
    type Input = users::UserEdit;

    fn check(self, context: &BodyContext<'_>) -> Result<users::UserEdit, Vec<FieldError>> {
        // A path that is no username never gets here: the handler's path
        // extractor answered 404 first.
        let target = context
            .path("username")
            .and_then(|raw| Username::parse(raw).ok());
        let mut errors = Vec::new();
        let password = self.password.and_then(|sent| {
            password(&sent, target.as_ref())
                .map_err(|e| errors.push(e))
                .ok()
        });
        let profile = self.profile.map(|sent| {
            sent.and_then(|sent| {
                profile(context.state, sent)
                    .map_err(|e| errors.push(e))
                    .ok()
            })
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(users::UserEdit {
            password,
            level: self.level,
            email: self.email,
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
    request_body(content = body::UserEdit, content_type = "application/json",
        example = json!({"email": null, "profile": {"team": "red"}})),
    responses(
        (status = 200, description = "The user as it now is", body = UserView),
        (status = 403, description = "`forbidden`"),
        (status = 404, description = "`not-found`"),
        (status = 409, description = "`last-admin` (demoting the last admin) or `edit-conflict`"),
        (status = 422, description = "`invalid-field`"),
    )
)]
pub(crate) async fn update(
    State(state): State<SharedState>,
    request_id: RequestId,
    session: Session,
    UserPath { username: target }: UserPath,
    body: Result<Body<body::UserEdit>, ApiError>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    users::may_edit(&actor, &target)?;
    let Body(edit) = body?;
    let user = users::edit(
        state.ports(),
        &*state,
        &actor,
        &session.token.jti,
        &target,
        edit,
        &request_id.0,
    )
    .await?;
    Ok(Json(UserView::from(&user)).into_response())
}

#[utoipa::path(
    delete, path = "/users/{username}", tag = "users", operation_id = "users-delete",
    summary = "Delete a user (admins; yourself when registration is open)",
    description = "Every token of the user stops working at once.",
    security(("bearer" = [])),
    params(UserPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`"),
        (status = 404, description = "`not-found`"),
        (status = 409, description = "`last-admin`, `owns-projects` (transfer them first) or `edit-conflict`"),
    )
)]
pub(crate) async fn delete(
    State(state): State<SharedState>,
    request_id: RequestId,
    session: Session,
    UserPath { username: target }: UserPath,
) -> Result<StatusCode, ApiError> {
    users::delete(
        state.ports(),
        &session.actor(),
        &target,
        state.settings.registration,
        &request_id.0,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
