//! `/projects` and `/projects/{id}/members`: create, list, read, edit and
//! delete projects, and manage their members.
//!
//! Each handler: authenticate, parse, call the use case
//! ([`taskgate_app::projects`]: it finds the project, 404 for anyone who
//! may not learn it exists, asks the domain whether the caller may, and
//! appends the change), respond. Where the right to act does not depend on
//! the body, the use case is asked before the body is read.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use taskgate_app::projects::{self, Scope};
use taskgate_domain::project::commands::Membership;
use taskgate_domain::project::log::ProjectChanges;
use taskgate_domain::project::{ProjectId, ProjectRole};
use taskgate_domain::user::Username;
use utoipa::IntoParams;

use taskgate_views::body;
use taskgate_views::{MemberView, ProjectView};

use crate::auth::Session;
use crate::extract::{Body, FromQuery, Params, SharedState, context_free, path_values};
use crate::handlers::PageQuery;
use crate::problem::ApiError;
use crate::request::next_cursor;
use crate::response::{Created, List, Page};

pub(crate) fn no_such_project() -> ApiError {
    ApiError::NotFound("there is no such project".into())
}

/// `{id}` of a project path. An id that cannot be valid cannot exist.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ProjectPath {
    /// The project id.
    #[param(value_type = String)]
    pub id: ProjectId,
}

/// The project id of a path's `{id}`; one that cannot be valid is missing.
pub(crate) fn project_id(values: &HashMap<String, String>) -> Result<ProjectId, ApiError> {
    values
        .get("id")
        .and_then(|raw| ProjectId::parse(raw).ok())
        .ok_or_else(no_such_project)
}

impl<S: Send + Sync> FromRequestParts<S> for ProjectPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let id = project_id(&path_values(parts).await?)?;
        Ok(Self { id })
    }
}

/// `{id}` and `{username}` of a member path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct MemberPath {
    /// The project id.
    #[param(value_type = String)]
    id: ProjectId,
    /// The member's username, any case.
    #[param(value_type = String)]
    username: Username,
}

impl<S: Send + Sync> FromRequestParts<S> for MemberPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let values = path_values(parts).await?;
        let id = project_id(&values)?;
        let raw = values.get("username").map(String::as_str).unwrap_or("");
        let username = Username::parse(raw)
            .map_err(|_| ApiError::NotFound(format!("{raw:?} is not a member of this project")))?;
        Ok(Self { id, username })
    }
}

context_free!(
    body::NewProject => projects::NewProject,
    body::ProjectEdit => ProjectChanges,
    body::MemberRole => ProjectRole,
);

#[utoipa::path(
    post, path = "/projects", tag = "projects", operation_id = "projects-create",
    summary = "Create a project (you become its owner and first admin)",
    security(("bearer" = [])),
    request_body(content = body::NewProject, content_type = "application/json",
        example = json!({"name": "Launch", "description": "Everything for the launch"})),
    responses(
        (status = 201, description = "Created", body = ProjectView,
            headers(("Location" = String, description = "`/projects/{id}`"))),
        (status = 422, description = "`invalid-field`"),
    )
)]
pub(crate) async fn create(
    State(state): State<SharedState>,
    session: Session,
    Body(new): Body<body::NewProject>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    let project = projects::create(state.ports(), &actor, new).await?;
    Ok(Created {
        status: StatusCode::CREATED,
        location: format!("/projects/{}", project.id),
        body: ProjectView::of(&project, &actor),
    }
    .into_response())
}

/// `GET /projects` parameters.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProjectQuery {
    /// Global admins: every project, not only your own.
    all: Option<bool>,
    /// `limit` and `cursor`, documented by [`PageQuery`] itself.
    #[param(ignore)]
    page: PageQuery,
}

impl FromQuery for ProjectQuery {
    const NAMES: &'static [&'static str] = &["all", "limit", "cursor"];

    fn from_params(params: HashMap<String, String>) -> Result<Self, ApiError> {
        let all = match params.get("all").map(String::as_str) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(ApiError::invalid("all", "must be true or false")),
        };
        Ok(Self {
            all,
            page: PageQuery::from_map(&params)?,
        })
    }
}

#[utoipa::path(
    get, path = "/projects", tag = "projects", operation_id = "projects-list",
    summary = "Your projects (every project with `?all=true`, for global admins)",
    security(("bearer" = [])),
    params(ProjectQuery, PageQuery),
    responses(
        (status = 200, description = "A page of projects, by id", body = Page<ProjectView>),
        (status = 403, description = "`forbidden`: `all` without being a global admin"),
        (status = 422, description = "`invalid-field`"),
    )
)]
pub(crate) async fn list(
    State(state): State<SharedState>,
    session: Session,
    Params(query): Params<ProjectQuery>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    let after = query.page.cursor(|id| ProjectId::parse(id).ok())?;
    let scope = if query.all == Some(true) {
        Scope::Every
    } else {
        Scope::Mine
    };
    let page = projects::list(
        state.ports(),
        &actor,
        scope,
        after.as_ref(),
        query.page.limit,
    )
    .await?;
    Ok(Json(Page {
        items: page
            .items
            .iter()
            .map(|p| ProjectView::of(p, &actor))
            .collect(),
        next: page.next.map(next_cursor),
    })
    .into_response())
}

#[utoipa::path(
    get, path = "/projects/{id}", tag = "projects", operation_id = "projects-get",
    summary = "A project (members; global admins)",
    security(("bearer" = [])),
    params(ProjectPath),
    responses(
        (status = 200, description = "The project", body = ProjectView),
        (status = 404, description = "`not-found`: no such project, or you may not see it"),
    )
)]
pub(crate) async fn get(
    State(state): State<SharedState>,
    session: Session,
    ProjectPath { id }: ProjectPath,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    let project = projects::get(state.ports(), &actor, &id).await?;
    Ok(Json(ProjectView::of(&project, &actor)).into_response())
}

#[utoipa::path(
    patch, path = "/projects/{id}", tag = "projects", operation_id = "projects-update",
    summary = "Edit a project (project admins; global admins); hand it over (the owner; global admins)",
    security(("bearer" = [])),
    params(ProjectPath),
    request_body(content = body::ProjectEdit, content_type = "application/json",
        example = json!({"name": "Launch, phase 2", "description": null})),
    responses(
        (status = 200, description = "The project as it now is", body = ProjectView),
        (status = 403, description = "`forbidden`"),
        (status = 404, description = "`not-found`"),
        (status = 409, description = "`edit-conflict`"),
        (status = 422, description = "`invalid-field`: e.g. an owner who is not a project admin"),
    )
)]
pub(crate) async fn update(
    State(state): State<SharedState>,
    session: Session,
    ProjectPath { id }: ProjectPath,
    body: Result<Body<body::ProjectEdit>, ApiError>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    // Members who may not see it learn nothing from the body.
    let checked = projects::check(state.ports(), &actor, &id).await?;
    let Body(changes) = body?;
    let project = projects::edit(state.ports(), &actor, checked, changes).await?;
    Ok(Json(ProjectView::of(&project, &actor)).into_response())
}

#[utoipa::path(
    delete, path = "/projects/{id}", tag = "projects", operation_id = "projects-delete",
    summary = "Delete a project (its owner only)",
    description = "The project, its members and items stop being served (404); their history stays.",
    security(("bearer" = [])),
    params(ProjectPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: not the owner"),
        (status = 404, description = "`not-found`"),
        (status = 409, description = "`edit-conflict`"),
    )
)]
pub(crate) async fn delete(
    State(state): State<SharedState>,
    session: Session,
    ProjectPath { id }: ProjectPath,
) -> Result<StatusCode, ApiError> {
    projects::delete(state.ports(), &session.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/projects/{id}/members", tag = "projects", operation_id = "members-list",
    summary = "A project's members",
    security(("bearer" = [])),
    params(ProjectPath),
    responses(
        (status = 200, description = "Every member", body = List<MemberView>),
        (status = 404, description = "`not-found`"),
    )
)]
pub(crate) async fn members(
    State(state): State<SharedState>,
    session: Session,
    ProjectPath { id }: ProjectPath,
) -> Result<Response, ApiError> {
    let project = projects::get(state.ports(), &session.actor(), &id).await?;
    Ok(Json(List {
        items: project.members.values().map(MemberView::from).collect(),
    })
    .into_response())
}

#[utoipa::path(
    put, path = "/projects/{id}/members/{username}", tag = "projects", operation_id = "members-put",
    summary = "Add a member, or change a member's role (project admins; global admins)",
    security(("bearer" = [])),
    params(MemberPath),
    request_body(content = body::MemberRole, content_type = "application/json",
        example = json!({"role": "member"})),
    responses(
        (status = 200, description = "The role changed (or already was)", body = MemberView),
        (status = 201, description = "Added", body = MemberView),
        (status = 403, description = "`forbidden`"),
        (status = 404, description = "`not-found`: no such project, or no such user"),
        (status = 409, description = "`edit-conflict`; `owner-role`: the owner's role cannot be changed (transfer ownership first)"),
        (status = 422, description = "`invalid-field`"),
    )
)]
pub(crate) async fn put_member(
    State(state): State<SharedState>,
    session: Session,
    MemberPath { id, username }: MemberPath,
    body: Result<Body<body::MemberRole>, ApiError>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    let checked = projects::may_put_member(state.ports(), &actor, &id).await?;
    let Body(role) = body?;
    let (membership, member) =
        projects::put_member(state.ports(), &actor, checked, &username, role).await?;
    let status = match membership {
        Membership::Added => StatusCode::CREATED,
        Membership::Changed | Membership::Unchanged => StatusCode::OK,
    };
    Ok((status, Json(MemberView::from(&member))).into_response())
}

#[utoipa::path(
    delete, path = "/projects/{id}/members/{username}", tag = "projects", operation_id = "members-delete",
    summary = "Remove a member (project admins; global admins; a member removing themself)",
    description = "Their items in the project become unassigned (recorded in each item's history). \
        The owner cannot be removed.",
    security(("bearer" = [])),
    params(MemberPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`forbidden`"),
        (status = 404, description = "`not-found`"),
        (status = 409, description = "`owner-cannot-leave` or `edit-conflict`"),
    )
)]
pub(crate) async fn remove_member(
    State(state): State<SharedState>,
    session: Session,
    MemberPath { id, username }: MemberPath,
) -> Result<StatusCode, ApiError> {
    projects::remove_member(state.ports(), &session.actor(), &id, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}
