//! `/projects` and `/projects/{id}/members`: create, list, read, edit and
//! delete projects, and manage their members.
//!
//! Each handler: authenticate, find the project (404 for anyone who may not
//! learn it exists), authorise ([`access::may`]), decide the change
//! ([`commands`]), append it with its row (re-deciding on the fresh row
//! after a lost race), respond.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use taskgate_domain::permission::Actor;
use taskgate_domain::ports::StoreError;
use taskgate_domain::project::access::{self, Action};
use taskgate_domain::project::commands::{self, Membership, Refused};
use taskgate_domain::project::log::{Item, Project, ProjectChanges, ProjectEntry};
use taskgate_domain::project::{Description, ProjectId, ProjectName, ProjectRole};
use taskgate_domain::user::Username;
use utoipa::{IntoParams, ToSchema};

use taskgate_app::conflict::{ATTEMPTS, Attempt, retry};
use taskgate_views::{MemberView, ProjectView};

use crate::auth::Session;
use crate::extract::{Body, BodyContext, FromBody, FromQuery, Params, SharedState, path_values};
use crate::handlers::PageQuery;
use crate::problem::{ApiError, Problem};
use crate::request::{Fields, checked, next_cursor, string};
use crate::response::{Created, List, Page};
use crate::state::AppState;

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

/// The project `id` if `actor` may do `action` in it (404 or 403 otherwise).
pub(crate) async fn project_for(
    state: &AppState,
    actor: &Actor,
    id: &ProjectId,
    action: Action<'_>,
) -> Result<Project, ApiError> {
    let project = state
        .store
        .get_project(id)
        .await?
        .ok_or_else(no_such_project)?;
    access::may(Some(actor), &project, action)?;
    Ok(project)
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match &refused {
            Refused::OwnerCannotLeave => Self::Conflict {
                kind: "owner-cannot-leave",
                detail: refused.to_string(),
            },
            Refused::OwnerRoleFixed => Self::Conflict {
                kind: "owner-role",
                detail: refused.to_string(),
            },
            Refused::NoSuchMember(_) => Self::NotFound(refused.to_string()),
            Refused::AssigneeNotMember => Self::invalid("assignee", refused.to_string()),
            Refused::OwnerNotAdmin => Self::invalid("owner", refused.to_string()),
            Refused::StaleVersion { .. } => Self::PreconditionFailed(refused.to_string()),
        }
    }
}

/// `POST /projects` body.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewProject {
    name: ProjectName,
    description: Option<Description>,
}

impl FromBody for NewProject {
    const FIELDS: &'static [&'static str] = &["name", "description"];

    fn from_fields(mut fields: Fields, _: &BodyContext<'_>) -> Result<Self, ApiError> {
        let name = fields.required("name", string(ProjectName::parse));
        let description = fields.optional("description", string(Description::parse));
        fields.finish()?;
        Ok(Self {
            name: checked(name),
            description,
        })
    }
}

#[utoipa::path(
    post, path = "/projects", tag = "projects", operation_id = "projects-create",
    summary = "Create a project (you become its owner and first admin)",
    security(("bearer" = [])),
    request_body(content = NewProject, content_type = "application/json",
        example = json!({"name": "Launch", "description": "Everything for the launch"})),
    responses(
        (status = 201, description = "Created", body = ProjectView,
            headers(("Location" = String, description = "`/projects/{id}`"))),
        (status = 422, description = "`invalid-field`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create(
    State(state): State<SharedState>,
    session: Session,
    Body(new): Body<NewProject>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    let entry = commands::create_project(&actor, new.name, new.description, state.clock.now());
    let project = Project::fold(std::slice::from_ref(&entry))
        .ok_or_else(|| ApiError::internal("a new project's log does not fold"))?;
    state.append_project(&entry, None, &project).await?;
    tracing::info!(project = %project.id, owner = %actor.username, "project created");
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
        (status = 403, description = "`forbidden`: `all` without being a global admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-field`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list(
    State(state): State<SharedState>,
    session: Session,
    Params(query): Params<ProjectQuery>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    let after = query.page.cursor(|id| ProjectId::parse(id).ok())?;
    let page = if query.all == Some(true) {
        if !actor.is_admin() {
            return Err(ApiError::Forbidden(
                "only global admins may list every project".into(),
            ));
        }
        state
            .store
            .all_projects(after.as_ref(), query.page.limit)
            .await?
    } else {
        state
            .store
            .member_projects(&actor.user_id, after.as_ref(), query.page.limit)
            .await?
    };
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
        (status = 404, description = "`not-found`: no such project, or you may not see it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(state): State<SharedState>,
    session: Session,
    ProjectPath { id }: ProjectPath,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    let project = project_for(&state, &actor, &id, Action::View).await?;
    Ok(Json(ProjectView::of(&project, &actor)).into_response())
}

/// `PATCH /projects/{id}` body: any of the fields; `null` clears the
/// description; `owner` names a project admin.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectEdit {
    name: Option<ProjectName>,
    #[schema(nullable)]
    description: Option<Option<Description>>,
    owner: Option<Username>,
}

impl FromBody for ProjectEdit {
    const FIELDS: &'static [&'static str] = &["name", "description", "owner"];

    fn from_fields(mut fields: Fields, _: &BodyContext<'_>) -> Result<Self, ApiError> {
        let name = fields.optional("name", string(ProjectName::parse));
        let description = fields.nullable("description", string(Description::parse));
        let owner = fields.optional("owner", string(Username::parse));
        fields.finish()?;
        Ok(Self {
            name,
            description,
            owner,
        })
    }
}

/// Appends what `decide` makes of the current project, re-reading and
/// re-deciding after a lost race. `None` from `decide`: nothing to append.
pub(crate) async fn change_project<T>(
    state: &AppState,
    actor: &Actor,
    id: &ProjectId,
    action: Action<'_>,
    decide: impl Fn(&Project) -> Result<(T, Option<ProjectEntry>), ApiError>,
) -> Result<(T, Project), ApiError> {
    let decide = &decide;
    retry(move || async move {
        let project = project_for(state, actor, id, action).await?;
        let (outcome, entry) = decide(&project)?;
        let Some(entry) = entry else {
            return Ok((outcome, project));
        };
        let mut next = project.clone();
        next.apply(&entry);
        state
            .append_project(&entry, Some(&project), &next)
            .await
            .map_err(Attempt::of)?;
        Ok((outcome, next))
    })
    .await
}

#[utoipa::path(
    patch, path = "/projects/{id}", tag = "projects", operation_id = "projects-update",
    summary = "Edit a project (project admins; global admins); hand it over (the owner; global admins)",
    security(("bearer" = [])),
    params(ProjectPath),
    request_body(content = ProjectEdit, content_type = "application/json",
        example = json!({"name": "Launch, phase 2", "description": null})),
    responses(
        (status = 200, description = "The project as it now is", body = ProjectView),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`edit-conflict`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-field`: e.g. an owner who is not a project admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update(
    State(state): State<SharedState>,
    session: Session,
    ProjectPath { id }: ProjectPath,
    body: Result<Body<ProjectEdit>, ApiError>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    // Members who may not see it learn nothing from the body.
    project_for(&state, &actor, &id, Action::View).await?;
    let Body(edit) = body?;
    let action = if edit.name.is_some() || edit.description.is_some() {
        Action::Edit
    } else {
        Action::View
    };
    let changes = ProjectChanges {
        name: edit.name,
        description: edit.description,
        owner: edit.owner,
    };
    let (_, project) = change_project(&state, &actor, &id, action, |project| {
        if changes.owner.is_some() {
            access::may(Some(&actor), project, Action::TransferOwnership)?;
        }
        let entry = commands::edit_project(project, &actor, changes.clone(), state.clock.now())?;
        Ok(((), entry))
    })
    .await?;
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
        (status = 403, description = "`forbidden`: not the owner", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`edit-conflict`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete(
    State(state): State<SharedState>,
    session: Session,
    ProjectPath { id }: ProjectPath,
) -> Result<StatusCode, ApiError> {
    let actor = session.actor();
    change_project(&state, &actor, &id, Action::Delete, |project| {
        Ok((
            (),
            Some(commands::delete_project(project, &actor, state.clock.now())),
        ))
    })
    .await?;
    tracing::info!(project = %id, by = %actor.username, "project deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/projects/{id}/members", tag = "projects", operation_id = "members-list",
    summary = "A project's members",
    security(("bearer" = [])),
    params(ProjectPath),
    responses(
        (status = 200, description = "Every member", body = List<MemberView>),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn members(
    State(state): State<SharedState>,
    session: Session,
    ProjectPath { id }: ProjectPath,
) -> Result<Response, ApiError> {
    let project = project_for(&state, &session.actor(), &id, Action::View).await?;
    Ok(Json(List {
        items: project.members.values().map(MemberView::from).collect(),
    })
    .into_response())
}

/// `PUT /projects/{id}/members/{username}` body.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemberRole {
    role: ProjectRole,
}

impl FromBody for MemberRole {
    const FIELDS: &'static [&'static str] = &["role"];

    fn from_fields(mut fields: Fields, _: &BodyContext<'_>) -> Result<Self, ApiError> {
        let role = fields.required("role", string(ProjectRole::parse));
        fields.finish()?;
        Ok(Self {
            role: checked(role),
        })
    }
}

#[utoipa::path(
    put, path = "/projects/{id}/members/{username}", tag = "projects", operation_id = "members-put",
    summary = "Add a member, or change a member's role (project admins; global admins)",
    security(("bearer" = [])),
    params(MemberPath),
    request_body(content = MemberRole, content_type = "application/json",
        example = json!({"role": "member"})),
    responses(
        (status = 200, description = "The role changed (or already was)", body = MemberView),
        (status = 201, description = "Added", body = MemberView),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such project, or no such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`edit-conflict`; `owner-role`: the owner's role cannot be changed (transfer ownership first)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-field`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn put_member(
    State(state): State<SharedState>,
    session: Session,
    MemberPath { id, username }: MemberPath,
    body: Result<Body<MemberRole>, ApiError>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    project_for(&state, &actor, &id, Action::PutMember).await?;
    let Body(MemberRole { role }) = body?;
    let user = state.store.get_user(&username).await?.ok_or_else(|| {
        ApiError::NotFound(format!("there is no user named {:?}", username.as_str()))
    })?;
    let (membership, project) = change_project(&state, &actor, &id, Action::PutMember, |project| {
        Ok(commands::put_member(
            project,
            &actor,
            &user.username,
            user.user_id,
            role,
            state.clock.now(),
        )?)
    })
    .await?;
    let member = project
        .members
        .get(&user.username)
        .ok_or_else(|| ApiError::internal("a member just put is missing"))?;
    let status = match membership {
        Membership::Added => StatusCode::CREATED,
        Membership::Changed | Membership::Unchanged => StatusCode::OK,
    };
    Ok((status, Json(MemberView::from(member))).into_response())
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
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`owner-cannot-leave` or `edit-conflict`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_member(
    State(state): State<SharedState>,
    session: Session,
    MemberPath { id, username }: MemberPath,
) -> Result<StatusCode, ApiError> {
    let actor = session.actor();
    let action = Action::RemoveMember {
        username: &username,
    };
    // Refuse first (404, 409) without touching anything; then unassign
    // their items, remove them, and sweep once more for items assigned in
    // between. Unassigning first keeps a retry after a failure useful: the
    // member is only gone once their items are free.
    let project = project_for(&state, &actor, &id, action).await?;
    commands::remove_member(&project, &actor, &username, state.clock.now())?;
    unassign_all(&state, Some(&actor), &id, &username).await?;
    change_project(&state, &actor, &id, action, |project| {
        let entry = commands::remove_member(project, &actor, &username, state.clock.now())?;
        Ok(((), Some(entry)))
    })
    .await?;
    unassign_all(&state, Some(&actor), &id, &username).await?;
    tracing::info!(project = %id, member = %username, by = %actor.username, "member removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Unassigns every item of `username` in `project`, one recorded edit each.
pub(crate) async fn unassign_all(
    state: &AppState,
    actor: Option<&Actor>,
    project: &ProjectId,
    username: &Username,
) -> Result<(), ApiError> {
    for item in state.store.assigned_items(project, username).await? {
        let mut item: Item = item;
        for attempt in 0..ATTEMPTS {
            let Some(entry) = commands::unassign(&item, actor, state.clock.now()) else {
                break;
            };
            let mut next = item.clone();
            next.apply(&entry);
            match state.append_item(&entry, &next).await {
                Ok(()) => break,
                Err(StoreError::Conflict) if attempt + 1 < ATTEMPTS => {
                    match state.store.get_item(&item.id).await? {
                        Some(fresh) if fresh.assignee.as_ref() == Some(username) => item = fresh,
                        _ => break,
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
