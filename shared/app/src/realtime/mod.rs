//! Real-time updates: what each subscription shows its subscriber, and in
//! which order, for both transports (the local server's `GET /ws` and the
//! AWS WebSocket API with its fan-out from DynamoDB Streams; the contract is
//! the "Real-time updates" section of docs/API.md).
//!
//! - [`Topic`]: what a client subscribes to; [`client`]: what it sends, and
//!   the refusals it can get; [`message`]: the JSON the server sends.
//! - The rules ([`project_entry`], [`task_entry`]): what one entry shows one
//!   subscriber, and whether it ends the subscription (a removed member,
//!   a deleted project, a demoted admin following another user's task). A
//!   global admin who is not a member sees a project's own changes, not
//!   its items.
//! - The state machines ([`ProjectFeed`], [`TaskFeed`]): the rules applied
//!   in order, each entry once. Pure: no I/O, no clock read (the time is
//!   passed in), so they are tested here without a store.
//! - [`read`]: the store reads around them (the check of a new
//!   subscription, the states a feed entry produced); the only I/O here.
//!
//! Topics and their order: `project:{id}` follows the project's *feed*
//! (`ProjectStore::project_feed`), every change of the project, its members
//! and its items at a position 1, 2, 3, …, which is the `seq` of its events
//! and what `after` counts; `task:{id}` follows the task's log (`seq` as in
//! `GET /tasks/{id}/events`); `tasks` follows every task the caller owns,
//! each in its own log order (`after` is refused there: there is no single
//! order to resume from, so a client resumes each task with `task:{id}`).
//!
//! # The state machines
//!
//! A subscription remembers the last position (or seq) it delivered, and
//! drops anything at or before it: entries may arrive twice, from the
//! replay and live, and must be sent once. Its inputs, from the transport:
//!
//! - **Start.** The transport checks the subscription ([`read::authorize`]),
//!   starts listening, and only then reads the head: whatever is stored from
//!   there on arrives live. The machine starts after [`resume_at`]`(after,
//!   head)`.
//! - **Replay** (with `after`). The machine says which page to read next
//!   ([`ProjectFeed::next_read`]) until the feed's end, and takes each
//!   entry read ([`ProjectFeed::replayed`], [`TaskFeed::replayed`]); then
//!   [`ProjectFeed::replay_done`] with the project as it is now. Live
//!   entries that came meanwhile follow, and those already replayed are
//!   dropped: no gap at the seam, no repeat.
//! - **Live** entries, pushed as they are stored ([`ProjectFeed::live`],
//!   [`TaskFeed::live`]). Two writers can publish out of commit order, so
//!   an entry past the next position is held, not sent, until the ones
//!   before it arrive. A held entry waits [`GAP_WAIT`] at most
//!   ([`ProjectFeed::stale`], asked with the time now), and [`MAX_PENDING`]
//!   are held at most ([`Live::Fill`]); then the gap is read from the store
//!   ([`ProjectFeed::next_read`] with the [`Gap`], [`ProjectFeed::filled`]
//!   for each entry, [`ProjectFeed::gap_filled`] at the end). A task event
//!   past its task's next seq is [`Behind`]: the log is read and handed to
//!   [`TaskFeed::caught_up`].
//! - **Account changes** ([`TaskFeed::recheck`]) and **progress**
//!   ([`TaskFeed::progress`] of the running delays and exports followed).
//!
//! Every input returns a [`Step`]: the messages to send, in order, and
//! whether the subscription ends with them (then the machine ignores
//! anything more, and the transport forgets it).
//!
//! The AWS transport keeps no state between invocations (a subscription is
//! a record in the Connections table), so its fan-out applies the rules to
//! one entry at a time with the state it loads (the project as it is now),
//! and its replay runs a machine rebuilt from `after` for each invocation.

mod feed;
mod rules;
mod tasks;

pub mod client;
pub mod message;
pub mod read;

pub use feed::{GAP_WAIT, Gap, Live, MAX_PENDING, ProjectFeed, REPLAY_PAGE, Read};
pub use rules::{
    NO_LONGER_A_MEMBER, PROJECT_DELETED, Rendered, Shown, Source, Step, project_entry, resume_at,
    task_entry,
};
pub use tasks::{Behind, TaskFeed};

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
mod tests;

#[cfg(test)]
mod topic_tests {
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
