//! The JSON a server sends on a real-time socket, the same locally and from
//! the AWS fan-out. Each event carries its kind, the actor, the time and the
//! new state, rendered for the receiving user (a project's `role` is theirs).

use serde_json::{Map, Value, json};
use taskgate_domain::permission::Actor;
use taskgate_domain::project::log::{
    Item, ItemChange, ItemEntry, Project, ProjectChange, ProjectEntry,
};
use taskgate_domain::task::{Task, TaskEvent};
use taskgate_domain::user::Username;
use time::OffsetDateTime;

use super::Topic;
use taskgate_views::{ItemView, MemberView, ProjectView, TaskView};

/// `{"type": "subscribed", "topic": T}`.
pub fn subscribed(topic: &Topic) -> String {
    json!({"type": "subscribed", "topic": topic.to_string()}).to_string()
}

/// `{"type": "unsubscribed", "topic": T}`.
pub fn unsubscribed(topic: &Topic) -> String {
    json!({"type": "unsubscribed", "topic": topic.to_string()}).to_string()
}

/// `{"type": "error", "topic"?: T, "status": N, "detail": "..."}`.
pub fn error(topic: Option<&Topic>, status: u16, detail: &str) -> String {
    let mut message = json!({"type": "error", "status": status, "detail": detail});
    if let Some(topic) = topic {
        message["topic"] = json!(topic.to_string());
    }
    message.to_string()
}

fn event(
    topic: &Topic,
    seq: Option<u64>,
    kind: &str,
    actor: Option<&Username>,
    at: OffsetDateTime,
    state: (&str, Value),
    extra: Option<(&str, Value)>,
) -> String {
    let mut body = Map::new();
    body.insert("kind".into(), json!(kind));
    if let Some(actor) = actor {
        body.insert("actor".into(), json!(actor.as_str()));
    }
    body.insert("at".into(), json!(taskgate_domain::timestamp::format(at)));
    body.insert(state.0.into(), state.1);
    if let Some((name, value)) = extra {
        body.insert(name.into(), value);
    }
    let mut message = json!({"type": "event", "topic": topic.to_string(), "event": body});
    if let Some(seq) = seq {
        message["seq"] = json!(seq);
    }
    message.to_string()
}

fn to_value(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("views always serialise")
}

/// The event of a project entry at `position`, for `viewer`. `before` is
/// the project before the entry (it names a removed member's role).
pub fn project_event(
    topic: &Topic,
    position: u64,
    entry: &ProjectEntry,
    before: Option<&Project>,
    after: &Project,
    viewer: &Actor,
) -> String {
    let project = || ("project", to_value(ProjectView::of(after, viewer)));
    let member = |project: Option<&Project>, username: &Username| {
        let member = project.and_then(|p| p.members.get(username)).map_or_else(
            || json!({"username": username.as_str()}),
            |m| to_value(MemberView::from(m)),
        );
        ("member", member)
    };
    let (kind, state) = match &entry.change {
        ProjectChange::Created { .. } | ProjectChange::Updated(_) => ("project.updated", project()),
        ProjectChange::Deleted {} => ("project.deleted", project()),
        ProjectChange::MemberAdded { username, .. } => {
            ("member.added", member(Some(after), username))
        }
        ProjectChange::MemberUpdated { username, .. } => {
            ("member.updated", member(Some(after), username))
        }
        ProjectChange::MemberRemoved { username } => ("member.removed", member(before, username)),
    };
    event(
        topic,
        Some(position),
        kind,
        entry.actor.as_ref(),
        entry.at,
        state,
        None,
    )
}

/// The event of an item entry at `position`.
pub fn item_event(topic: &Topic, position: u64, entry: &ItemEntry, item: &Item) -> String {
    let kind = match entry.change {
        ItemChange::Created { .. } => "item.created",
        ItemChange::Updated(_) => "item.updated",
        ItemChange::Deleted {} => "item.deleted",
    };
    event(
        topic,
        Some(position),
        kind,
        entry.actor.as_ref(),
        entry.at,
        ("item", to_value(ItemView::from(item))),
        None,
    )
}

/// `task.updated` for a task log event (`change` names the event: `created`,
/// `started`, `succeeded`, `failed`, `cancelled`), with the task as it
/// stood after it, its progress as of `now`.
pub fn task_event(topic: &Topic, event: &TaskEvent, task: &Task, now: OffsetDateTime) -> String {
    let change = to_value(&event.change)["type"].clone();
    self::event(
        topic,
        Some(event.seq),
        "task.updated",
        event.actor.as_ref(),
        event.at,
        ("task", to_value(TaskView::at(task, now))),
        Some(("change", change)),
    )
}

/// `task.updated` with a running delay's progress as of `now` (no `seq`:
/// it is not an entry of the log).
pub fn task_progress(topic: &Topic, task: &Task, now: OffsetDateTime) -> String {
    event(
        topic,
        None,
        "task.updated",
        None,
        now,
        ("task", to_value(TaskView::at(task, now))),
        Some(("change", json!("progress"))),
    )
}

/// A state field longer than this (as JSON) is left out of a notice.
const NOTICE_FIELD_BYTES: usize = 256;

/// `text` if it is at most `limit` bytes; otherwise a notice in its place
/// that keeps what orders and names the event (`type`, `topic`, `seq`, the
/// event's `kind`, `actor`, `at`, `change`, and the short fields of its
/// state: ids, status, version) and says where to read the rest:
/// `"truncated": {"bytes": N, "read": "/tasks/{id}"}`.
///
/// API Gateway refuses a WebSocket message over 128 KB, and a task event
/// can carry a result of 256 KiB and its logs; the local server applies
/// the same limit (`TASKGATE_WS_MAX_MESSAGE_BYTES`), so that both
/// transports send the same messages.
pub fn fit(text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(&text) else {
        // Only events grow large; anything else is sent as it is.
        return text;
    };
    let topic = message
        .get("topic")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut read = None;
    if let Some(Value::Object(event)) = message.get_mut("event") {
        for (name, value) in event.iter_mut() {
            let Value::Object(state) = value else {
                continue;
            };
            state.retain(|_, field| {
                !field.is_object()
                    && !field.is_array()
                    && serde_json::to_string(field).map_or(0, |f| f.len()) <= NOTICE_FIELD_BYTES
            });
            let id = state.get("id").and_then(Value::as_str).unwrap_or_default();
            read = Some(match name.as_str() {
                "task" => format!("/tasks/{id}"),
                "item" => format!(
                    "/projects/{}/items/{id}",
                    state
                        .get("project_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                ),
                "project" => format!("/projects/{id}"),
                _ => match topic.strip_prefix("project:") {
                    Some(project) => format!("/projects/{project}/members"),
                    None => String::new(),
                },
            });
        }
    }
    message.insert(
        "truncated".into(),
        json!({"bytes": text.len(), "read": read.unwrap_or_default()}),
    );
    Value::Object(message).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_within_the_limit_is_sent_as_it_is() {
        let text = json!({"type": "event", "topic": "tasks", "event": {"kind": "task.updated", "task": {"id": "t", "result": "x"}}}).to_string();
        assert_eq!(fit(text.clone(), text.len()), text);
    }

    #[test]
    fn a_large_task_event_becomes_a_notice_that_names_the_task_and_keeps_its_order() {
        let result = "y".repeat(200_000);
        let text = json!({
            "type": "event", "topic": "task:01", "seq": 4,
            "event": {"kind": "task.updated", "actor": "ann", "at": "2026-12-04T00:00:00.000Z", "change": "succeeded",
                      "task": {"id": "01", "status": "succeeded", "result": result, "logs": ["a"]}}
        })
        .to_string();
        let notice: Value = serde_json::from_str(&fit(text.clone(), 128_000)).unwrap();
        assert_eq!(
            notice,
            json!({
                "type": "event", "topic": "task:01", "seq": 4,
                "event": {"kind": "task.updated", "actor": "ann", "at": "2026-12-04T00:00:00.000Z", "change": "succeeded",
                          "task": {"id": "01", "status": "succeeded"}},
                "truncated": {"bytes": text.len(), "read": "/tasks/01"}
            })
        );
    }

    #[test]
    fn a_large_item_event_names_the_item_to_read() {
        let text = json!({
            "type": "event", "topic": "project:p1", "seq": 9,
            "event": {"kind": "item.updated", "item": {"id": "i1", "project_id": "p1", "version": 3, "description": "d".repeat(5000)}}
        })
        .to_string();
        let notice: Value = serde_json::from_str(&fit(text, 1024)).unwrap();
        assert_eq!(
            notice["event"]["item"],
            json!({"id": "i1", "project_id": "p1", "version": 3})
        );
        assert_eq!(notice["truncated"]["read"], "/projects/p1/items/i1");
        assert!(notice.to_string().len() <= 1024);
    }
}
