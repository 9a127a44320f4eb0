//! `/tasks`: start, list, read, cancel, and the event history.
//!
//! Visibility follows the matrix: the owner always; an admin for tasks whose
//! owner was a plain user when the task was created; never another admin's
//! task. A task id that does not exist is 404 for everyone; one the caller
//! may not see is 403.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use serde_json::{Map, Value};
use taskgate_domain::file::FileId;
use taskgate_domain::permission::{self, Actor, Denied};
use taskgate_domain::ports::StoreError;
use taskgate_domain::project::ProjectId;
use taskgate_domain::project::access;
use taskgate_domain::recorder::Recorded;
use taskgate_domain::task::{
    Export, StatusKind, Task, TaskError, TaskEvent, TaskId, TaskKind, TaskSpec,
};
use taskgate_domain::user::{InvalidValue, Username};
use taskgate_views::body;
use utoipa::IntoParams;

use crate::auth::Session;
use crate::extract::{Body, BodyContext, FromQuery, Params, RequestBody, SharedState, path_value};
use crate::handlers::PageQuery;
use crate::problem::{ApiError, FieldError};
use crate::request::next_cursor;
use crate::response::{Created, EventView, List, Page, TaskView};
use crate::state::AppState;

fn no_such_task(raw: &str) -> ApiError {
    ApiError::NotFound(format!("there is no task {raw:?}"))
}

/// The `{id}` of the path. An id that cannot be valid cannot exist: 404.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct TaskPath {
    /// The task id.
    #[param(value_type = String)]
    id: TaskId,
}

impl<S: Send + Sync> FromRequestParts<S> for TaskPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = path_value(parts).await?;
        let id = TaskId::parse(&raw).map_err(|_| no_such_task(&raw))?;
        Ok(Self { id })
    }
}

/// The task `id`, visible to `actor`, with its events.
async fn visible_task(
    state: &AppState,
    id: &TaskId,
    actor: &Actor,
) -> Result<(Task, Vec<TaskEvent>), ApiError> {
    let (task, events) = state
        .recorder
        .load(id)
        .await?
        .ok_or_else(|| no_such_task(&id.to_string()))?;
    permission::may_see_task(actor, &task)?;
    Ok((task, events))
}

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Records that `field` does not belong, if it was given.
fn reject(errors: &mut Vec<FieldError>, given: bool, field: &str, message: &str) {
    if given {
        errors.push(field_error(field, message));
    }
}

/// A required field's value made by `make`, or its error recorded.
fn required<T, V>(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<V>,
    make: impl FnOnce(V) -> Result<T, InvalidValue>,
) -> Option<T> {
    let Some(value) = value else {
        errors.push(field_error(field, "is required"));
        return None;
    };
    make(value)
        .map_err(|e| errors.push(field_error(field, e.0)))
        .ok()
}

/// An export's fields: `project` and `format` (`csv`, `ndjson`), or
/// `files` and `format` (`zip`).
fn export_spec(
    errors: &mut Vec<FieldError>,
    project: Option<ProjectId>,
    files: Option<Vec<FileId>>,
    format: Option<String>,
) -> Option<Export> {
    let format = required(errors, "format", format, |format| match format.as_str() {
        "csv" | "ndjson" | "zip" => Ok(format),
        _ => Err(InvalidValue(r#"must be "csv", "ndjson" or "zip""#.into())),
    })?;
    if format == "zip" {
        reject(
            errors,
            project.is_some(),
            "project",
            r#"a zip exports files: give "files", not "project""#,
        );
        required(errors, "files", files, Export::files)
    } else {
        reject(
            errors,
            files.is_some(),
            "files",
            r#"a csv or ndjson export is of a project: give "project""#,
        );
        required(errors, "project", project, |project| {
            Export::project(project, &format)
        })
    }
}

/// Whether the caller may export what `export` names: a project they are a
/// member of (404 otherwise, as `GET /projects/{id}` answers); files that
/// are their own (404 missing, 403 someone else's) and complete (409).
async fn may_export(state: &AppState, session: &Session, export: &Export) -> Result<(), ApiError> {
    match export {
        // The project rule, keyed by account: a member is the account that
        // joined, not whoever holds its username now.
        Export::Csv { project } | Export::Ndjson { project } => {
            let Some(found) = state.store.get_project(project).await? else {
                return Err(ApiError::NotFound(format!("there is no project {project}")));
            };
            access::may(Some(&session.actor()), &found, access::Action::Export).map_err(
                |denied| match denied {
                    // A global admin sees the project, so its existence is
                    // no secret from them; exporting it is for members.
                    Denied::Forbidden(_) => ApiError::Forbidden(format!(
                        "only the members of project {project} may export its items"
                    )),
                    Denied::NotFound(_) => {
                        ApiError::NotFound(format!("there is no project {project}"))
                    }
                    other => other.into(),
                },
            )?;
        }
        Export::Zip { files } => {
            for id in files {
                let Some(file) = state.store.get_file(id).await? else {
                    return Err(ApiError::NotFound(format!("there is no file {id}")));
                };
                if file.owner_id != session.user.user_id {
                    return Err(ApiError::Forbidden(format!(
                        "the file {id} is not yours: you can only export your own files"
                    )));
                }
                if !file.is_complete() {
                    return Err(ApiError::Conflict {
                        kind: "file-incomplete",
                        detail: format!("the file {id} is still uploading"),
                    });
                }
            }
        }
    }
    Ok(())
}

/// A task body's fields are those of its kind, within the configured
/// limits.
impl RequestBody for body::StartTask {
    type Input = TaskSpec;

    /// The kind decides who may start the task, before the rest is read.
    fn admit(object: &Map<String, Value>, context: &BodyContext<'_>) -> Result<(), ApiError> {
        if let Some((kind, session)) = object
            .get("type")
            .and_then(Value::as_str)
            .and_then(|t| TaskKind::parse(t).ok())
            .zip(context.session)
        {
            permission::may_start_task(&session.actor(), kind)?;
        }
        Ok(())
    }

    fn check(self, context: &BodyContext<'_>) -> Result<TaskSpec, Vec<FieldError>> {
        let body::StartTask {
            kind,
            seconds,
            code,
            project,
            files,
            format,
        } = self;
        let limits = &context.state.settings.tasks;
        let mut errors = Vec::new();
        if kind != TaskKind::Export {
            for (given, name) in [
                (project.is_some(), "project"),
                (files.is_some(), "files"),
                (format.is_some(), "format"),
            ] {
                reject(&mut errors, given, name, "belongs to export tasks only");
            }
        }
        let spec = match kind {
            TaskKind::Export => {
                reject(
                    &mut errors,
                    seconds.is_some(),
                    "seconds",
                    "belongs to delay tasks only",
                );
                reject(
                    &mut errors,
                    code.is_some(),
                    "code",
                    "belongs to js tasks only",
                );
                export_spec(&mut errors, project, files, format).map(TaskSpec::Export)
            }
            TaskKind::Delay => {
                reject(
                    &mut errors,
                    code.is_some(),
                    "code",
                    "belongs to js tasks only",
                );
                required(&mut errors, "seconds", seconds, |seconds| {
                    TaskSpec::delay(seconds, limits)
                })
            }
            TaskKind::Js => {
                reject(
                    &mut errors,
                    seconds.is_some(),
                    "seconds",
                    "belongs to delay tasks only",
                );
                required(&mut errors, "code", code, |code| {
                    TaskSpec::js(&code, limits)
                })
            }
        };
        match spec {
            Some(spec) if errors.is_empty() => Ok(spec),
            _ => Err(errors),
        }
    }
}

#[utoipa::path(
    post, path = "/tasks", tag = "tasks", operation_id = "tasks-start",
    summary = "Start a task",
    description = "Any user may start a `delay` or an `export`; only admins a `js` script. \
        Answers at once; poll `GET /tasks/{id}` (or follow `task:{id}` over `/ws`) until the \
        status is `succeeded`, `failed` or `cancelled`. An export writes a project's items \
        (members only) or some of the caller's own complete files into a new file of the \
        caller's; its `result` is `{\"file\", \"size\", \"sha256\"}`.",
    security(("bearer" = [])),
    request_body(content = body::StartTask, content_type = "application/json",
        examples(
            ("delay" = (value = json!({"type": "delay", "seconds": 5}))),
            ("js" = (value = json!({"type": "js", "code": "console.log('hi'); [1, 2, 3].map(x => x * 2)"}))),
            ("export" = (value = json!({"type": "export", "project": "019a8f3c-5d2e-7b41-9c0a-3e5f7a9b1c2d", "format": "csv"}))),
        )),
    responses(
        (status = 202, description = "Started (or, if the workflow engine is down, already failed with `workflow-unavailable`)", body = TaskView,
            headers(("Location" = String, description = "`/tasks/{id}`")),
            example = json!({"id": "019a8f3c-5d2e-7b41-9c0a-3e5f7a9b1c2d", "type": "delay", "status": "running", "owner": "alice", "created_at": "2026-11-21T18:25:03.053Z", "updated_at": "2026-11-21T18:25:03.061Z", "progress": 0.0, "seconds": 5.0, "due_at": "2026-11-21T18:25:08.053Z"})),
        (status = 403, description = "`forbidden`: a script, and not an admin; an export of someone else's file, or of a project the caller (a global admin) is not a member of"),
        (status = 404, description = "`not-found`: an export of a project the caller is not in, or of a file that does not exist"),
        (status = 409, description = "`file-incomplete`: an export of a file still uploading"),
        (status = 422, description = "`invalid-field`: unknown type, seconds out of range, code too large, an unknown format…"),
        (status = 429, description = "`quota-exceeded`: as many tasks pending or running as the account may have"),
    )
)]
pub(crate) async fn start(
    State(state): State<SharedState>,
    session: Session,
    Body(spec): Body<body::StartTask>,
) -> Result<Response, ApiError> {
    if let TaskSpec::Export(export) = &spec {
        may_export(&state, &session, export).await?;
    }
    let max_active = state
        .settings
        .max_active_tasks
        .for_level(session.user.level);
    let (task, _) = match state
        .recorder
        .create(&spec, &session.user, max_active)
        .await
    {
        Ok(created) => created,
        Err(StoreError::OverQuota) => {
            return Err(ApiError::TooManyTasks(format!(
                "you have {max_active} tasks pending or running, as many as an account of your level may \
                 (TASKGATE_MAX_ACTIVE_TASKS_PER_{}); wait for one to end or cancel one",
                if session.user.level == taskgate_domain::user::Level::Admin {
                    "ADMIN"
                } else {
                    "USER"
                }
            )));
        }
        Err(StoreError::TooManyExports) => {
            return Err(ApiError::TooManyTasks(format!(
                "you have {} exports pending or running, as many as an account may \
                 (TASKGATE_MAX_ACTIVE_EXPORTS_PER_USER); wait for one to end or cancel one",
                state.settings.max_active_tasks.exports
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let task = match state.workflow.start(&task).await {
        Ok(task) => task,
        Err(e) => {
            // The task exists and cannot run: it fails now, visibly, rather
            // than staying pending forever.
            tracing::error!(task = %task.id, error = %e, "could not start a task's workflow");
            let error = TaskError::new(
                "workflow-unavailable",
                "the task could not be started; try again later",
            );
            state
                .recorder
                .failed(&task.id, error, Vec::new())
                .await?
                .into_task()
                .ok_or_else(|| ApiError::internal("a task vanished right after it was created"))?
        }
    };
    tracing::info!(task = %task.id, kind = task.kind().as_str(), owner = %task.owner, "task started");
    Ok(Created {
        status: StatusCode::ACCEPTED,
        location: format!("/tasks/{}", task.id),
        body: TaskView::at(&task, state.clock.now()),
    }
    .into_response())
}

/// `GET /tasks` parameters.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TaskQuery {
    /// Only tasks with this status.
    status: Option<StatusKind>,
    /// Admins: a plain user's tasks (default: your own).
    #[param(value_type = Option<Username>)]
    owner: Option<Username>,
    /// `limit` and `cursor`, documented by [`PageQuery`] itself.
    #[param(ignore)]
    page: PageQuery,
}

impl FromQuery for TaskQuery {
    const NAMES: &'static [&'static str] = &["status", "owner", "limit", "cursor"];

    fn from_params(params: HashMap<String, String>) -> Result<Self, ApiError> {
        let status = params
            .get("status")
            .map(|raw| StatusKind::parse(raw).map_err(|e| ApiError::invalid("status", e.0)))
            .transpose()?;
        let page = PageQuery::from_map(&params)?;
        let owner = params
            .get("owner")
            .map(|raw| Username::parse(raw).map_err(|e| ApiError::invalid("owner", e.0)))
            .transpose()?;
        Ok(Self {
            status,
            owner,
            page,
        })
    }
}

#[utoipa::path(
    get, path = "/tasks", tag = "tasks", operation_id = "tasks-list",
    summary = "List tasks, newest first",
    security(("bearer" = [])),
    params(TaskQuery, PageQuery),
    responses(
        (status = 200, description = "A page of tasks", body = Page<TaskView>),
        (status = 403, description = "`forbidden`: another owner, and not allowed to see their tasks"),
        (status = 404, description = "`not-found`: no such owner"),
        (status = 422, description = "`invalid-field`"),
    )
)]
pub(crate) async fn list(
    State(state): State<SharedState>,
    session: Session,
    Params(query): Params<TaskQuery>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    let TaskQuery {
        status,
        owner,
        page: paging,
    } = query;
    let limit = paging.limit;
    // The cursor is the id of the last task of the previous page.
    let mut after = paging.cursor(|id| TaskId::parse(id).ok())?;
    let owner = match owner {
        None => session.user,
        Some(name) => {
            let raw = name.as_str();
            if name == session.user.username {
                session.user
            } else {
                if !actor.is_admin() {
                    return Err(ApiError::Forbidden(
                        "you can only list your own tasks".into(),
                    ));
                }
                let owner =
                    state.store.get_user(&name).await?.ok_or_else(|| {
                        ApiError::NotFound(format!("there is no user named {raw:?}"))
                    })?;
                permission::may_list_tasks_of(&actor, &owner)?;
                owner
            }
        }
    };

    // Walk the owner's tasks newest first, folding each, until the page is
    // full of tasks that match the filter.
    let mut tasks = Vec::with_capacity(limit);
    let mut next = None;
    'pages: loop {
        let page = state
            .store
            .owner_tasks(&owner.user_id, after.as_ref(), limit)
            .await?;
        let last_of_all = page.next.is_none();
        for (i, id) in page.items.iter().enumerate() {
            let Some((task, _)) = state.recorder.load(id).await? else {
                continue;
            };
            if status.is_none_or(|wanted| task.status.kind() == wanted) {
                tasks.push(task);
            }
            if tasks.len() == limit {
                let more = !(last_of_all && i + 1 == page.items.len());
                next = more.then_some(*id);
                break 'pages;
            }
        }
        match page.next {
            Some(id) => after = Some(id),
            None => break,
        }
    }
    Ok(Json(Page {
        items: tasks
            .iter()
            .map(|task| TaskView::at(task, state.clock.now()))
            .collect(),
        next: next.map(next_cursor),
    })
    .into_response())
}

#[utoipa::path(
    get, path = "/tasks/{id}", tag = "tasks", operation_id = "tasks-get",
    summary = "A task's status, and its result once done",
    security(("bearer" = [])),
    params(TaskPath),
    responses(
        (status = 200, description = "The task", body = TaskView,
            example = json!({"id": "019a8f3c-5d2e-7b41-9c0a-3e5f7a9b1c2d", "type": "js", "status": "succeeded", "owner": "admin", "created_at": "2026-11-21T18:25:03.053Z", "updated_at": "2026-11-21T18:25:03.180Z", "result": [2, 4, 6], "logs": ["hi"]})),
        (status = 403, description = "`forbidden`: the task exists and is not yours to see"),
        (status = 404, description = "`not-found`: no such task"),
    )
)]
pub(crate) async fn get(
    State(state): State<SharedState>,
    session: Session,
    TaskPath { id }: TaskPath,
) -> Result<Response, ApiError> {
    let (task, _) = visible_task(&state, &id, &session.actor()).await?;
    Ok(Json(TaskView::at(&task, state.clock.now())).into_response())
}

#[utoipa::path(
    post, path = "/tasks/{id}/cancel", tag = "tasks", operation_id = "tasks-cancel",
    summary = "Cancel a task",
    security(("bearer" = [])),
    params(TaskPath),
    responses(
        (status = 200, description = "Cancelled", body = TaskView),
        (status = 403, description = "`forbidden`"),
        (status = 404, description = "`not-found`"),
        (status = 409, description = "`task-finished`: it had already ended"),
    )
)]
pub(crate) async fn cancel(
    State(state): State<SharedState>,
    session: Session,
    TaskPath { id }: TaskPath,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    let (task, _) = visible_task(&state, &id, &actor).await?;
    match state.recorder.cancelled(&task.id, &actor.username).await? {
        Recorded::Appended(task) => {
            if let Err(e) = state.workflow.stop(&task.id).await {
                // The task is cancelled in the log either way; the run notices
                // (Lambda checks the log) or its outcome is refused.
                tracing::warn!(task = %task.id, error = %e, "could not stop a cancelled task's run");
            }
            tracing::info!(task = %task.id, by = %actor.username, "task cancelled");
            Ok(Json(TaskView::at(&task, state.clock.now())).into_response())
        }
        Recorded::Unchanged(task) => Err(ApiError::Conflict {
            kind: "task-finished",
            detail: format!(
                "the task already ended ({}); there is nothing to cancel",
                task.status.as_str()
            ),
        }),
        Recorded::Missing => Err(no_such_task(&task.id.to_string())),
    }
}

#[utoipa::path(
    get, path = "/tasks/{id}/events", tag = "tasks", operation_id = "tasks-events",
    summary = "A task's event log, in order",
    security(("bearer" = [])),
    params(TaskPath),
    responses(
        (status = 200, description = "Every event", body = List<EventView>),
        (status = 403, description = "`forbidden`"),
        (status = 404, description = "`not-found`"),
    )
)]
pub(crate) async fn events(
    State(state): State<SharedState>,
    session: Session,
    TaskPath { id }: TaskPath,
) -> Result<Response, ApiError> {
    let (_, events) = visible_task(&state, &id, &session.actor()).await?;
    Ok(Json(List {
        items: events.iter().map(EventView::from).collect(),
    })
    .into_response())
}
