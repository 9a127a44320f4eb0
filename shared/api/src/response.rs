//! Building responses, and the JSON shapes of resources.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use taskgate_domain::task::{EventData, Status, Task, TaskError, TaskEvent, TaskKind};
use taskgate_domain::user::{Level, Profile, User, Username};
use time::OffsetDateTime;
use utoipa::ToSchema;

pub use taskgate_domain::timestamp::format as timestamp;

/// 201 (or 202 for work that goes on) with a `Location` header and a JSON
/// body: what creating handlers return.
pub struct Created<T> {
    pub status: StatusCode,
    pub location: String,
    pub body: T,
}

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Ok(value) = HeaderValue::from_str(&self.location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
    }
}

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
    status: Status,
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
        Self {
            id: task.id.to_string(),
            kind: task.kind.as_str(),
            status: task.status,
            owner: task.owner.as_str(),
            created_at: timestamp(task.created_at),
            updated_at: timestamp(task.updated_at),
            result: task.result.as_ref(),
            error: task.error.as_ref(),
            cancelled_by: task.cancelled_by.as_ref().map(Username::as_str),
            progress: task.progress(now),
            logs: (task.kind == TaskKind::Js && task.status.is_terminal())
                .then_some(task.logs.as_slice()),
            seconds: task.seconds,
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
