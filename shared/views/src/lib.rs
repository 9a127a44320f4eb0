//! # The JSON shapes of Taskgate's resources
//!
//! What the API writes for a user, a task and its events, a project, a
//! member and an item, and the `{"items", "next"}` pages around them:
//! written by the HTTP handlers, the real-time messages of both transports
//! and the exports, from one definition each. Views borrow from the domain
//! value they show, so a response is written without copying it first.
//! The bodies clients send are in [`body`].
#![forbid(unsafe_code)]

pub mod body;

use serde::Serialize;
use taskgate_domain::permission::Actor;
use taskgate_domain::project::log::{Item, Member, Project};
use taskgate_domain::project::{
    Description, DueDate, ItemId, ItemStatus, ProjectId, ProjectName, ProjectRole, Title,
};
use taskgate_domain::task::{
    EventData, Status, StatusKind, Task, TaskError, TaskEvent, TaskKind, TaskSpec,
};
use taskgate_domain::user::{Level, Profile, User, Username};
use time::OffsetDateTime;
use utoipa::ToSchema;

pub use taskgate_domain::timestamp::format as timestamp;

/// A user as the API shows it (never the password hash, never the internal id).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
#[serde(deny_unknown_fields)]
pub struct UserView<'a> {
    #[schema(example = "alice")]
    pub username: &'a str,
    #[schema(value_type = Level)]
    pub level: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "alice@example.com")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Profile>)]
    pub profile: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(serialize_with = "taskgate_domain::timestamp::serialize")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-21T18:25:03.053Z")]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "taskgate_domain::timestamp::serialize")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-21T18:25:03.053Z")]
    pub updated_at: OffsetDateTime,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(user: &'a User) -> Self {
        Self {
            username: user.username.as_str(),
            level: user.level.as_str(),
            email: user.email.as_ref().map(|e| e.as_str()),
            profile: user.profile.as_ref().map(|p| p.as_map()),
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// A task as it stands.
#[derive(Serialize, ToSchema)]
#[schema(as = Task)]
#[serde(deny_unknown_fields)]
pub struct TaskView<'a> {
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    id: String,
    #[serde(rename = "type")]
    #[schema(value_type = TaskKind)]
    kind: &'static str,
    status: StatusKind,
    #[schema(example = "alice")]
    owner: &'a str,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// The outcome, once `succeeded` (0 for delays; any JSON for scripts).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    result: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<TaskError>)]
    error: Option<&'a TaskError>,
    /// Who cancelled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_by: Option<&'a str>,
    /// Delays and exports: 0 to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    progress: Option<f64>,
    /// Finished scripts: what they printed with `console.log`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    logs: Option<&'a [String]>,
    /// Delays only: the requested seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
    /// Delays only: when it is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    due_at: Option<String>,
}

impl<'a> TaskView<'a> {
    pub fn of(task: &'a Task) -> Self {
        Self::at(task, taskgate_domain::now())
    }

    /// The view at `now` (a delay's progress depends on the time).
    pub fn at(task: &'a Task, now: OffsetDateTime) -> Self {
        let (result, error, cancelled_by) = match &task.status {
            Status::Succeeded { result, .. } => (Some(result), None, None),
            Status::Failed { error, .. } => (None, Some(error), None),
            Status::Cancelled { by } => (None, None, Some(by.as_str())),
            Status::Pending | Status::Running => (None, None, None),
        };
        Self {
            id: task.id.to_string(),
            kind: task.kind().as_str(),
            status: task.status.kind(),
            owner: task.owner.as_str(),
            created_at: timestamp(task.created_at),
            updated_at: timestamp(task.updated_at),
            result,
            error,
            cancelled_by,
            progress: task.progress(now),
            // Every ended script shows its logs, `[]` if it was cancelled.
            logs: (matches!(task.spec, TaskSpec::Js { .. }) && task.status.is_terminal())
                .then_some(task.status.logs()),
            seconds: match task.spec {
                TaskSpec::Delay { seconds } => Some(seconds),
                TaskSpec::Js { .. } | TaskSpec::Export(_) => None,
            },
            due_at: task.due_at.map(timestamp),
        }
    }
}

/// One event of a task's append-only, hash-chained log.
#[derive(Serialize, ToSchema)]
#[schema(as = TaskEvent)]
pub struct EventView<'a> {
    #[schema(minimum = 1)]
    seq: u64,
    #[schema(format = DateTime)]
    at: String,
    /// Who caused it (a user), when a user did.
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<&'a str>,
    #[serde(flatten)]
    #[schema(value_type = EventData)]
    data: &'a EventData,
    /// SHA-256 of this event and `prev_hash`, hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    hash: &'a str,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    prev_hash: &'a str,
}

/// A page of a listing: `next` is the `?cursor=` of the following page,
/// `null` on the last.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Every item at once (a log, in order).
#[derive(Serialize, ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
}

impl<'a> From<&'a TaskEvent> for EventView<'a> {
    fn from(event: &'a TaskEvent) -> Self {
        Self {
            seq: event.seq,
            at: timestamp(event.at),
            actor: event.actor.as_ref().map(Username::as_str),
            data: &event.change,
            hash: &event.hash,
            prev_hash: &event.prev_hash,
        }
    }
}

/// An item as clients see it.
#[derive(Serialize, ToSchema)]
#[schema(as = Item)]
#[serde(deny_unknown_fields)]
pub struct ItemView<'a> {
    #[schema(value_type = ItemId)]
    id: String,
    #[schema(value_type = ProjectId)]
    project_id: String,
    #[schema(value_type = Title)]
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Description>)]
    description: Option<&'a str>,
    status: ItemStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DueDate>)]
    due_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Username>)]
    assignee: Option<&'a str>,
    #[schema(value_type = Username)]
    created_by: &'a str,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// Grows by one with every change; also the `ETag` (`"N"`).
    #[schema(minimum = 1)]
    version: u64,
}

impl<'a> From<&'a Item> for ItemView<'a> {
    fn from(item: &'a Item) -> Self {
        Self {
            id: item.id.to_string(),
            project_id: item.project_id.to_string(),
            title: item.title.as_str(),
            description: item.description.as_ref().map(Description::as_str),
            status: item.status,
            due_date: item.due_date.map(|d| d.to_string()),
            assignee: item.assignee.as_ref().map(Username::as_str),
            created_by: item.created_by.as_str(),
            created_at: timestamp(item.created_at),
            updated_at: timestamp(item.updated_at),
            version: item.version,
        }
    }
}

/// A project as a caller sees it, with the caller's role in it.
#[derive(Serialize, ToSchema)]
#[schema(as = Project)]
#[serde(deny_unknown_fields)]
pub struct ProjectView<'a> {
    #[schema(value_type = ProjectId)]
    id: String,
    #[schema(value_type = ProjectName)]
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Description>)]
    description: Option<&'a str>,
    #[schema(value_type = Username)]
    owner: &'a str,
    /// The caller's role: `admin` for global admins who are not members.
    role: ProjectRole,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl<'a> ProjectView<'a> {
    pub fn of(project: &'a Project, actor: &Actor) -> Self {
        let role = project
            .members
            .get(&actor.username)
            .filter(|m| m.user_id == actor.user_id)
            .map_or(ProjectRole::Admin, |m| m.role);
        Self {
            id: project.id.to_string(),
            name: project.name.as_str(),
            description: project.description.as_ref().map(Description::as_str),
            owner: project.owner.as_str(),
            role,
            created_at: timestamp(project.created_at),
            updated_at: timestamp(project.updated_at),
        }
    }
}

/// A project member.
#[derive(Serialize, ToSchema)]
#[schema(as = Member)]
#[serde(deny_unknown_fields)]
pub struct MemberView<'a> {
    #[schema(value_type = Username)]
    username: &'a str,
    role: ProjectRole,
    #[schema(format = DateTime)]
    added_at: String,
}

impl<'a> From<&'a Member> for MemberView<'a> {
    fn from(member: &'a Member) -> Self {
        Self {
            username: member.username.as_str(),
            role: member.role,
            added_at: timestamp(member.added_at),
        }
    }
}
