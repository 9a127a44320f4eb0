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
use std::borrow::Cow;
use taskgate_domain::file::{FileStatus, StoredFile};
use taskgate_domain::permission::Actor;
use taskgate_domain::project::log::{Item, ItemChange, ItemEntry, Member, Project};
use taskgate_domain::project::{
    Description, DueDate, ItemId, ItemStatus, ProjectId, ProjectName, ProjectRole, Title,
};
use taskgate_domain::task::{
    EventData, Status, StatusKind, Task, TaskError, TaskEvent, TaskKind, TaskSpec,
};
use taskgate_domain::user::{Level, Profile, User, Username};
use time::OffsetDateTime;
use utoipa::ToSchema;
// Read back as well as written: the client deserialises what the server
// serialises ([`owned`]).
use serde::Deserialize;

pub use taskgate_domain::timestamp::format as timestamp;

/// A user as the API shows it (never the password hash, never the internal id).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = User)]
#[serde(deny_unknown_fields)]
pub struct UserView<'a> {
    #[schema(example = "alice")]
    pub username: Cow<'a, str>,
    pub level: Level,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "alice@example.com")]
    pub email: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Profile>)]
    pub profile: Option<Cow<'a, serde_json::Map<String, serde_json::Value>>>,
    #[serde(with = "taskgate_domain::timestamp")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-21T18:25:03.053Z")]
    pub created_at: OffsetDateTime,
    #[serde(with = "taskgate_domain::timestamp")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-21T18:25:03.053Z")]
    pub updated_at: OffsetDateTime,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(user: &'a User) -> Self {
        Self {
            username: user.username.as_str().into(),
            level: user.level,
            email: user.email.as_ref().map(|e| e.as_str().into()),
            profile: user.profile.as_ref().map(|p| Cow::Borrowed(p.as_map())),
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// A task as it stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Task)]
#[serde(deny_unknown_fields)]
pub struct TaskView<'a> {
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: TaskKind,
    pub status: StatusKind,
    #[schema(example = "alice")]
    pub owner: Cow<'a, str>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The outcome, once `succeeded` (0 for delays; any JSON for scripts).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<serde_json::Value>)]
    pub result: Option<Cow<'a, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<TaskError>)]
    pub error: Option<Cow<'a, TaskError>>,
    /// Who cancelled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<Cow<'a, str>>,
    /// Delays and exports: 0 to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    pub progress: Option<f64>,
    /// Finished scripts: what they printed with `console.log`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub logs: Option<Cow<'a, [String]>>,
    /// Delays only: the requested seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Delays only: when it is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub due_at: Option<String>,
}

/// A field whose value may be `null` (a script's result): read as
/// `Some(null)` when it is there, `None` only when it is not.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

impl<'a> TaskView<'a> {
    pub fn of(task: &'a Task) -> Self {
        Self::at(task, taskgate_domain::now())
    }

    /// The view at `now` (a delay's progress depends on the time).
    pub fn at(task: &'a Task, now: OffsetDateTime) -> Self {
        let (result, error, cancelled_by) = match &task.status {
            Status::Succeeded { result, .. } => (Some(Cow::Borrowed(result)), None, None),
            Status::Failed { error, .. } => (None, Some(Cow::Borrowed(error)), None),
            Status::Cancelled { by } => (None, None, Some(by.as_str().into())),
            Status::Pending | Status::Running => (None, None, None),
        };
        Self {
            id: task.id.to_string(),
            kind: task.kind(),
            status: task.status.kind(),
            owner: task.owner.as_str().into(),
            created_at: timestamp(task.created_at),
            updated_at: timestamp(task.updated_at),
            result,
            error,
            cancelled_by,
            progress: task.progress(now),
            // Every ended script shows its logs, `[]` if it was cancelled.
            logs: (matches!(task.spec, TaskSpec::Js { .. }) && task.status.is_terminal())
                .then_some(Cow::Borrowed(task.status.logs())),
            seconds: match task.spec {
                TaskSpec::Delay { seconds } => Some(seconds),
                TaskSpec::Js { .. } | TaskSpec::Export(_) => None,
            },
            due_at: task.due_at.map(timestamp),
        }
    }
}

/// One event of a task's append-only, hash-chained log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = TaskEvent)]
pub struct EventView<'a> {
    #[schema(minimum = 1)]
    pub seq: u64,
    #[schema(format = DateTime)]
    pub at: String,
    /// Who caused it (a user), when a user did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Cow<'a, str>>,
    #[serde(flatten)]
    #[schema(value_type = EventData)]
    pub data: Cow<'a, EventData>,
    /// SHA-256 of this event and `prev_hash`, hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub hash: Cow<'a, str>,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub prev_hash: Cow<'a, str>,
}

/// A page of a listing: `next` is the `?cursor=` of the following page,
/// `null` on the last.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Every item at once (a log, in order).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
}

impl<'a> From<&'a TaskEvent> for EventView<'a> {
    fn from(event: &'a TaskEvent) -> Self {
        Self {
            seq: event.seq,
            at: timestamp(event.at),
            actor: event.actor.as_ref().map(|a| a.as_str().into()),
            data: Cow::Borrowed(&event.change),
            hash: event.hash.as_str().into(),
            prev_hash: event.prev_hash.as_str().into(),
        }
    }
}

/// An item as clients see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Item)]
#[serde(deny_unknown_fields)]
pub struct ItemView<'a> {
    #[schema(value_type = ItemId)]
    pub id: String,
    #[schema(value_type = ProjectId)]
    pub project_id: String,
    #[schema(value_type = Title)]
    pub title: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Description>)]
    pub description: Option<Cow<'a, str>>,
    pub status: ItemStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DueDate>)]
    pub due_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Username>)]
    pub assignee: Option<Cow<'a, str>>,
    #[schema(value_type = Username)]
    pub created_by: Cow<'a, str>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Grows by one with every change; also the `ETag` (`"N"`).
    #[schema(minimum = 1)]
    pub version: u64,
}

impl<'a> From<&'a Item> for ItemView<'a> {
    fn from(item: &'a Item) -> Self {
        Self {
            id: item.id.to_string(),
            project_id: item.project_id.to_string(),
            title: item.title.as_str().into(),
            description: item.description.as_ref().map(|d| d.as_str().into()),
            status: item.status,
            due_date: item.due_date.map(|d| d.to_string()),
            assignee: item.assignee.as_ref().map(|a| a.as_str().into()),
            created_by: item.created_by.as_str().into(),
            created_at: timestamp(item.created_at),
            updated_at: timestamp(item.updated_at),
            version: item.version,
        }
    }
}

/// A project as a caller sees it, with the caller's role in it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Project)]
#[serde(deny_unknown_fields)]
pub struct ProjectView<'a> {
    #[schema(value_type = ProjectId)]
    pub id: String,
    #[schema(value_type = ProjectName)]
    pub name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Description>)]
    pub description: Option<Cow<'a, str>>,
    #[schema(value_type = Username)]
    pub owner: Cow<'a, str>,
    /// The caller's role: `admin` for global admins who are not members.
    pub role: ProjectRole,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
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
            name: project.name.as_str().into(),
            description: project.description.as_ref().map(|d| d.as_str().into()),
            owner: project.owner.as_str().into(),
            role,
            created_at: timestamp(project.created_at),
            updated_at: timestamp(project.updated_at),
        }
    }
}

/// A project member.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Member)]
#[serde(deny_unknown_fields)]
pub struct MemberView<'a> {
    #[schema(value_type = Username)]
    pub username: Cow<'a, str>,
    pub role: ProjectRole,
    #[schema(format = DateTime)]
    pub added_at: String,
}

impl<'a> From<&'a Member> for MemberView<'a> {
    fn from(member: &'a Member) -> Self {
        Self {
            username: member.username.as_str().into(),
            role: member.role,
            added_at: timestamp(member.added_at),
        }
    }
}

/// One event of an item's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = ItemEvent)]
pub struct ItemEventView<'a> {
    #[schema(minimum = 1)]
    pub seq: u64,
    #[schema(format = DateTime)]
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Username>)]
    pub actor: Option<Cow<'a, str>>,
    /// `{"type": "created" | "updated" | "deleted", "data": {...}}`:
    /// `updated` carries the changed fields (`null`: cleared).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub change: Cow<'a, ItemChange>,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub hash: Cow<'a, str>,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub prev_hash: Cow<'a, str>,
}

impl<'a> From<&'a ItemEntry> for ItemEventView<'a> {
    fn from(entry: &'a ItemEntry) -> Self {
        Self {
            seq: entry.seq,
            at: timestamp(entry.at),
            actor: entry.actor.as_ref().map(|a| a.as_str().into()),
            change: Cow::Borrowed(&entry.change),
            hash: entry.hash.as_str().into(),
            prev_hash: entry.prev_hash.as_str().into(),
        }
    }
}

/// A file, finished or still uploading.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = File)]
pub struct FileView<'a> {
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub id: String,
    /// As the uploader named it (`Upload-Metadata` `filename`).
    pub name: Cow<'a, str>,
    /// As the uploader typed it (`filetype`); `application/octet-stream` if not.
    pub content_type: Cow<'a, str>,
    /// The length announced at creation (`Upload-Length`).
    pub size: u64,
    /// How many bytes have arrived.
    pub offset: u64,
    #[schema(value_type = String, pattern = "^(uploading|complete)$")]
    pub status: FileStatus,
    /// Hex SHA-256 of the content, once complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: Option<Cow<'a, str>>,
    #[schema(value_type = Username)]
    pub owner: Cow<'a, str>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When an unfinished upload is removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

impl<'a> From<&'a StoredFile> for FileView<'a> {
    fn from(file: &'a StoredFile) -> Self {
        Self {
            id: file.id.to_string(),
            name: file.name.as_str().into(),
            content_type: file.content_type.as_str().into(),
            size: file.size,
            offset: file.offset,
            status: file.status,
            sha256: file.sha256.as_deref().map(Cow::Borrowed),
            owner: file.owner.as_str().into(),
            created_at: timestamp(file.created_at),
            expires_at: file
                .expires_at
                .filter(|_| !file.is_complete())
                .map(timestamp),
        }
    }
}

/// What an export task succeeds with: the file it wrote (the task's
/// `result`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportResult {
    /// The new file's id.
    pub file: String,
    pub size: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
}

/// One invalid field of a 422.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldError {
    #[schema(example = "password")]
    pub field: String,
    #[schema(example = "must be at least 15 characters long")]
    pub message: String,
}

/// Every error: RFC 9457 problem details.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    /// `urn:taskgate:problem:<slug>`, stable: match on it.
    #[schema(
        pattern = "^urn:taskgate:problem:[a-z-]+$",
        example = "urn:taskgate:problem:invalid-field"
    )]
    pub r#type: String,
    #[schema(example = "Invalid fields")]
    pub title: String,
    #[schema(minimum = 400, maximum = 599, example = 422)]
    pub status: u16,
    #[schema(example = "invalid value for: password")]
    pub detail: String,
    /// 422 (fields) and 400 `invalid-query` (parameters): every one that is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// Quote it when reporting a problem: it finds the request's log lines.
    #[schema(example = "3f1c0c7e2b8a4e0f9d6a5b4c3d2e1f00")]
    pub request_id: String,
}

/// A successful login.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginResponse<'a> {
    /// Send as `Authorization: Bearer <token>`.
    pub token: Cow<'a, str>,
    #[schema(pattern = "^Bearer$", example = "Bearer")]
    pub token_type: Cow<'a, str>,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// Seconds until `expires_at`.
    #[schema(minimum = 60)]
    pub expires_in: u64,
    /// Keep it and send it with later logins (see `Login`).
    pub device_token: Cow<'a, str>,
}

/// `GET /` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Hello<'a> {
    #[schema(pattern = "^Hello World$", example = "Hello World")]
    pub message: Cow<'a, str>,
    /// The caller, when a token was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserView<'a>>,
}

/// The views as a client reads them: the same types, their `Cow`s owned.
/// The server writes a view borrowing from the domain value it shows (no
/// copy); a client deserialises it into its `'static` form.
pub mod owned {
    pub type User = super::UserView<'static>;
    pub type Task = super::TaskView<'static>;
    pub type TaskEvent = super::EventView<'static>;
    pub type Item = super::ItemView<'static>;
    pub type ItemEvent = super::ItemEventView<'static>;
    pub type Project = super::ProjectView<'static>;
    pub type Member = super::MemberView<'static>;
    pub type File = super::FileView<'static>;
    pub type LoginResponse = super::LoginResponse<'static>;
    pub type Hello = super::Hello<'static>;
}
