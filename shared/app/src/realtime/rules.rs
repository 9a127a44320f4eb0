//! The visibility rules: what one entry shows one subscriber, and whether
//! it ends their subscription. Pure functions of the entry, the state the
//! subscription knows and the subscriber; the state machines
//! ([`super::ProjectFeed`], [`super::TaskFeed`]) apply them in order, and
//! the AWS fan-out, which keeps no state between entries, applies them to
//! one entry at a time.

use std::sync::{Arc, OnceLock};

use taskgate_domain::permission::{Actor, may_see_task};
use taskgate_domain::project::access::{Action, may};
use taskgate_domain::project::log::{Item, ItemEntry, Project, ProjectEntry};
use taskgate_domain::task::{Status, Task, TaskEvent, TaskKind};
use time::OffsetDateTime;

use super::client::denied;
use super::{Topic, message};

/// The `detail` of the 404 that ends a project subscription whose
/// subscriber may no longer see the project.
pub const NO_LONGER_A_MEMBER: &str = "you are no longer a member of this project";
/// The `detail` of the 404 that follows a project's `project.deleted`.
pub const PROJECT_DELETED: &str = "the project was deleted";

/// A feed entry with the states it produced.
#[derive(Clone, Debug)]
pub enum Rendered {
    Project {
        position: u64,
        entry: ProjectEntry,
        /// The project before the entry (`None` for its creation): it
        /// names a removed member's role.
        before: Option<Project>,
        after: Project,
    },
    Item {
        position: u64,
        entry: ItemEntry,
        item: Item,
        /// Its message, made once: one notice reaches every subscriber of
        /// the project, and every one who may see items sees the same.
        shown: Shown,
    },
}

/// A message made on first use and shared by every clone (see
/// [`Rendered::Item`]). A fan-out to 10,000 subscribers serialised the
/// same item 10,000 times.
#[derive(Clone, Debug, Default)]
pub struct Shown(Arc<OnceLock<String>>);

impl Shown {
    fn get_or_make(&self, make: impl FnOnce() -> String) -> String {
        self.0.get_or_init(make).clone()
    }
}

impl Rendered {
    /// The entry's position in its project's feed.
    pub fn position(&self) -> u64 {
        match self {
            Self::Project { position, .. } | Self::Item { position, .. } => *position,
        }
    }
}

/// Where a project entry comes from, which decides the rule it meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Replayed (`after`) from before the subscription began. The project's
    /// own changes are shown as they were (a member sees the history from
    /// before they joined, as `GET …/events` shows it), its items as the
    /// subscriber may see the project now; only a deletion ends it.
    History,
    /// Stored since the subscription began (pushed, or read to close a
    /// gap): checked against the project it produced.
    Live,
}

/// What one input to a state machine produced: the messages to send, in
/// order, and whether the subscription ends after them (the transport then
/// forgets it; the state machine ignores anything more).
#[must_use]
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub messages: Vec<String>,
    pub ended: bool,
}

impl Step {
    /// Messages that leave the subscription open.
    pub fn send(messages: Vec<String>) -> Self {
        Self {
            messages,
            ended: false,
        }
    }

    /// Messages after which the subscription ends.
    pub fn end(messages: Vec<String>) -> Self {
        Self {
            messages,
            ended: true,
        }
    }

    /// `next` after this: its messages follow, and it ends if either does.
    pub fn extend(&mut self, next: Step) {
        self.messages.extend(next.messages);
        self.ended |= next.ended;
    }
}

/// What a project entry shows `viewer` on `topic`. `known` is the project
/// as the subscription knows it, against which items are checked: a global
/// admin who is not a member sees the project's own changes but not its
/// items (as over HTTP); `None` (no such project) shows no item.
///
/// A project change the viewer may not see (as it left the project) ends
/// the subscription with a 404: after the `project.deleted` event if the
/// project was deleted, alone if they are no longer a member.
pub fn project_entry(
    topic: &Topic,
    rendered: &Rendered,
    known: Option<&Project>,
    viewer: &Actor,
    source: Source,
) -> Step {
    match rendered {
        Rendered::Project {
            position,
            entry,
            before,
            after,
        } => {
            let event =
                || message::project_event(topic, *position, entry, before.as_ref(), after, viewer);
            if source == Source::History && !after.deleted {
                return Step::send(vec![event()]);
            }
            match may(Some(viewer), after, Action::View) {
                Ok(()) => Step::send(vec![event()]),
                Err(_) if after.deleted => Step::end(vec![
                    event(),
                    message::error(Some(topic), 404, PROJECT_DELETED),
                ]),
                Err(_) => Step::end(vec![no_longer_a_member(topic)]),
            }
        }
        Rendered::Item {
            position,
            entry,
            item,
            shown,
        } => {
            if known.is_some_and(|project| may(Some(viewer), project, Action::UseItems).is_ok()) {
                // The topic is the project's, the same for every subscriber.
                Step::send(vec![shown.get_or_make(|| {
                    message::item_event(topic, *position, entry, item)
                })])
            } else {
                Step::default()
            }
        }
    }
}

/// The 404 that ends a project subscription whose subscriber may no longer
/// see the project.
pub(super) fn no_longer_a_member(topic: &Topic) -> String {
    message::error(Some(topic), 404, NO_LONGER_A_MEMBER)
}

/// What a task event shows `viewer` on `topic` (`task:{id}` or `tasks`),
/// checked like `GET /tasks/{id}`: a viewer who may not see the task (an
/// admin since demoted, following another user's task) gets the refusal,
/// and the subscription ends. `tasks` carries only the viewer's own tasks,
/// which they always see. The task is shown with its progress as of `now`.
pub fn task_entry(
    topic: &Topic,
    event: &TaskEvent,
    task: &Task,
    viewer: &Actor,
    now: OffsetDateTime,
) -> Step {
    task_denied(topic, task, viewer)
        .unwrap_or_else(|| Step::send(vec![message::task_event(topic, event, task, now)]))
}

/// The refusal that ends `topic` if `viewer` may not see `task`.
pub(super) fn task_denied(topic: &Topic, task: &Task, viewer: &Actor) -> Option<Step> {
    let (status, detail) = denied(may_see_task(viewer, task).err()?);
    Some(Step::end(vec![message::error(
        Some(topic),
        status,
        &detail,
    )]))
}

/// The position (or seq) a subscription starts after: `after`, or the head
/// without one (live only). An `after` past the head counts as the head, as
/// no client can have seen such a position: nothing is replayed, and what
/// is stored next arrives.
pub fn resume_at(after: Option<u64>, head: u64) -> u64 {
    after.map_or(head, |after| after.min(head))
}

/// A running delay or export: its subscribers are sent its progress.
pub(super) fn reports_progress(task: &Task) -> bool {
    matches!(task.kind(), TaskKind::Delay | TaskKind::Export) && task.status == Status::Running
}
