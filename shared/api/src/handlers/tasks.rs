//! `/tasks`: start, list, read, cancel, and the event history.
//!
//! Visibility follows the matrix: the owner always; an admin for tasks whose
//! owner was a plain user when the task was created; never another admin's
//! task. A task id that does not exist is 404 for everyone; one the caller
//! may not see is 403.

use http::StatusCode;
use serde::Serialize;
use taskgate_domain::permission::{self, Actor};
use taskgate_domain::recorder::Recorded;
use taskgate_domain::task::{Status, Task, TaskError, TaskEvent, TaskId, TaskKind, TaskSpec};
use taskgate_domain::user::Username;

use crate::auth::require_session;
use crate::problem::ApiError;
use crate::request::{
    Fields, as_number, as_str, cursor, json_object, message, next_cursor, page_size, path_param,
    query, string,
};
use crate::response::{EventView, TaskView, created_with_status, json};
use crate::state::AppState;
use crate::{Request, Response};

fn no_such_task(raw: &str) -> ApiError {
    ApiError::NotFound(format!("there is no task {raw:?}"))
}

/// The task of the path, visible to `actor`, with its events.
async fn visible_task(
    state: &AppState,
    request: &Request,
    actor: &Actor,
) -> Result<(Task, Vec<TaskEvent>), ApiError> {
    let raw = path_param(request, "id")?;
    let id = TaskId::parse(raw).map_err(|_| no_such_task(raw))?;
    let (task, events) = state
        .recorder
        .load(&id)
        .await?
        .ok_or_else(|| no_such_task(raw))?;
    permission::may_see_task(actor, &task)?;
    Ok((task, events))
}

pub(crate) async fn start(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = require_session(state, request).await?;
    let actor = session.actor();
    let mut fields = Fields::new(
        json_object(request, state.settings.max_json_depth)?,
        &["type", "seconds", "code"],
    );
    // The kind decides who may start the task, before the rest is checked.
    if let Some(kind) = fields
        .peek("type")
        .and_then(|v| v.as_str())
        .and_then(|t| TaskKind::parse(t).ok())
    {
        permission::may_start_task(&actor, kind)?;
    }
    let limits = &state.settings.tasks;
    let spec = match fields.required("type", string(TaskKind::parse)) {
        Some(TaskKind::Delay) => {
            fields.reject("code", "belongs to js tasks only");
            fields.required("seconds", |v| {
                TaskSpec::delay(as_number(v)?, limits).map_err(message)
            })
        }
        Some(TaskKind::Js) => {
            fields.reject("seconds", "belongs to delay tasks only");
            fields.required("code", |v| {
                TaskSpec::js(as_str(v)?, limits).map_err(message)
            })
        }
        None => None,
    };
    fields.finish()?;
    let spec = crate::request::checked(spec);

    let (task, _) = state.recorder.create(&spec, &session.user).await?;
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
                .ok_or_else(|| {
                    ApiError::Internal("a task vanished right after it was created".into())
                })?
        }
    };
    tracing::info!(task = %task.id, kind = task.kind.as_str(), owner = %task.owner, "task started");
    Ok(created_with_status(
        StatusCode::ACCEPTED,
        &format!("/tasks/{}", task.id),
        &TaskView::of(&task),
    ))
}

#[derive(Serialize)]
struct TaskList<'a> {
    items: Vec<TaskView<'a>>,
    next: Option<String>,
}

pub(crate) async fn list(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = require_session(state, request).await?;
    let actor = session.actor();
    let params = query(request, &["status", "owner", "limit", "cursor"])?;
    let status = params
        .get("status")
        .map(|raw| Status::parse(raw).map_err(|e| ApiError::invalid("status", e.0)))
        .transpose()?;
    let limit = page_size(&params)?;
    // The cursor is the id of the last task of the previous page.
    let mut after = cursor(&params, |id| TaskId::parse(id).ok())?;
    let owner = match params.get("owner") {
        None => session.user,
        Some(raw) => {
            let name = Username::parse(raw).map_err(|e| ApiError::invalid("owner", e.0))?;
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
            if status.is_none_or(|wanted| task.status == wanted) {
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
    Ok(json(
        StatusCode::OK,
        &TaskList {
            items: tasks.iter().map(TaskView::of).collect(),
            next: next.map(next_cursor),
        },
    ))
}

pub(crate) async fn get(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = require_session(state, request).await?;
    let (task, _) = visible_task(state, request, &session.actor()).await?;
    Ok(json(StatusCode::OK, &TaskView::of(&task)))
}

pub(crate) async fn cancel(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = require_session(state, request).await?;
    let actor = session.actor();
    let (task, _) = visible_task(state, request, &actor).await?;
    match state.recorder.cancelled(&task.id, &actor.username).await? {
        Recorded::Appended(task) => {
            if let Err(e) = state.workflow.stop(&task.id).await {
                // The task is cancelled in the log either way; the run notices
                // (Lambda checks the log) or its outcome is refused.
                tracing::warn!(task = %task.id, error = %e, "could not stop a cancelled task's run");
            }
            tracing::info!(task = %task.id, by = %actor.username, "task cancelled");
            Ok(json(StatusCode::OK, &TaskView::of(&task)))
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

#[derive(Serialize)]
struct EventList<'a> {
    items: Vec<EventView<'a>>,
}

pub(crate) async fn events(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = require_session(state, request).await?;
    let (_, events) = visible_task(state, request, &session.actor()).await?;
    Ok(json(
        StatusCode::OK,
        &EventList {
            items: events.iter().map(EventView::from).collect(),
        },
    ))
}
