//! Real-time updates over WebSocket (`GET /ws` on the local server; the
//! contract is the "Real-time updates" section of docs/API.md).
//!
//! - [`hub`]: where every stored change is published, per topic.
//! - [`socket`]: one connection: authentication at the upgrade, subscribe
//!   and unsubscribe, replay with `after`, permissions, progress, limits.
//! - [`message`]: the JSON of server messages, shared with the AWS fan-out.
//!
//! Topics and their order: `project:{id}` follows the project's *feed*
//! (`ProjectStore::project_feed`), every change of the project, its members
//! and its items at a position 1, 2, 3, …, which is the `seq` of its events
//! and what `after` counts; `task:{id}` follows the task's log (`seq` as in
//! `GET /tasks/{id}/events`); `tasks` follows every task the caller owns,
//! each in its own log order (`after` is refused there: there is no single
//! order to resume from, so a client resumes each task with `task:{id}`).

pub mod hub;
pub mod message;
pub mod replay;
pub mod socket;

use std::fmt;

use taskgate_domain::project::ProjectId;
use taskgate_domain::task::TaskId;

/// What a client subscribes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// `project:{id}`: the project, its members and its items.
    Project(ProjectId),
    /// `task:{id}`: one task.
    Task(TaskId),
    /// `tasks`: every task the caller owns.
    Tasks,
}

impl Topic {
    /// Parses `project:{id}`, `task:{id}` or `tasks`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad_id = |what: &str| format!("{text:?} does not name a {what}: the id is not valid");
        match text.split_once(':') {
            None if text == "tasks" => Ok(Self::Tasks),
            Some(("project", id)) => ProjectId::parse(id)
                .map(Self::Project)
                .map_err(|_| bad_id("project")),
            Some(("task", id)) => TaskId::parse(id)
                .map(Self::Task)
                .map_err(|_| bad_id("task")),
            _ => Err(format!(
                "unknown topic {text:?}: use project:{{id}}, task:{{id}} or tasks"
            )),
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Project(id) => write!(f, "project:{id}"),
            Self::Task(id) => write!(f, "task:{id}"),
            Self::Tasks => f.write_str("tasks"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_and_print_back() {
        let project = ProjectId::new();
        let task = TaskId::new();
        for topic in [Topic::Project(project), Topic::Task(task), Topic::Tasks] {
            assert_eq!(Topic::parse(&topic.to_string()), Ok(topic));
        }
    }

    #[test]
    fn bad_topics_say_what_is_wrong() {
        assert!(
            Topic::parse("project:nope")
                .unwrap_err()
                .contains("not valid")
        );
        assert!(Topic::parse("items").unwrap_err().contains("unknown topic"));
        assert!(
            Topic::parse("tasks:x")
                .unwrap_err()
                .contains("unknown topic")
        );
    }
}
