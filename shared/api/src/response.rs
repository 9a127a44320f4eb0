//! Building responses, and the JSON shapes of resources.

use http::{StatusCode, header};
use serde::Serialize;
use taskgate_domain::task::{EventData, Status, Task, TaskError, TaskEvent, TaskKind};
use taskgate_domain::user::{User, Username};
use time::OffsetDateTime;

use crate::Response;

pub use taskgate_domain::timestamp::format as timestamp;

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(
            serde_json::to_vec(body)
                .expect("response bodies always serialise")
                .into(),
        )
        .expect("a JSON response is always valid")
}

/// 201 with a `Location` header.
pub fn created<T: Serialize>(location: &str, body: &T) -> Response {
    created_with_status(StatusCode::CREATED, location, body)
}

/// `status` (201, or 202 for work that continues) with a `Location` header.
pub fn created_with_status<T: Serialize>(status: StatusCode, location: &str, body: &T) -> Response {
    let mut response = json(status, body);
    if let Ok(value) = http::HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

pub fn no_content() -> Response {
    http::Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Default::default())
        .expect("an empty response is always valid")
}

/// A user as clients see it: never the password hash, never the internal id.
#[derive(Debug, Serialize)]
pub struct UserView<'a> {
    pub username: &'a str,
    pub level: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(serialize_with = "taskgate_domain::timestamp::serialize")]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "taskgate_domain::timestamp::serialize")]
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

/// A task as clients see it.
#[derive(Serialize)]
pub struct TaskView<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    status: Status,
    owner: &'a str,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a TaskError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logs: Option<&'a [String]>,
    /// For delays: the requested seconds and when the task is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
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

/// One event as clients see it.
#[derive(Serialize)]
pub struct EventView<'a> {
    seq: u64,
    at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<&'a str>,
    #[serde(flatten)]
    data: &'a EventData,
    hash: &'a str,
    prev_hash: &'a str,
}

impl<'a> From<&'a TaskEvent> for EventView<'a> {
    fn from(event: &'a TaskEvent) -> Self {
        Self {
            seq: event.seq,
            at: timestamp(event.at),
            actor: event.actor.as_ref().map(Username::as_str),
            data: &event.data,
            hash: &event.hash,
            prev_hash: &event.prev_hash,
        }
    }
}
