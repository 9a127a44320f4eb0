//! The state machine of one `task:{id}` or `tasks` subscription: the rule
//! of [`super::task_entry`] applied in each task's log order, each event
//! once, and the running tasks whose progress the subscriber is sent.

use std::collections::HashMap;

use taskgate_domain::permission::Actor;
use taskgate_domain::ports::StoreError;
use taskgate_domain::task::{Status, Task, TaskEvent, TaskId, TaskKind, fold};
use time::OffsetDateTime;

use super::rules::{Step, reports_progress, task_denied, task_entry};
use super::{Topic, message};

/// A pushed event skipped ahead of the next seq of its task: read the
/// task's log, and hand it to [`TaskFeed::caught_up`] with the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Behind;

#[derive(Debug)]
enum Follows {
    /// `task:{id}`: the task as of the last event delivered (progress and
    /// rechecks use it), and that event's seq.
    One { task: Box<Task>, last: u64 },
    /// `tasks`: the last seq delivered of each unfinished task (a finished
    /// one is forgotten: it has no more events), and the running delays and
    /// exports among them, for progress.
    Owner {
        last: HashMap<TaskId, u64>,
        running: HashMap<TaskId, Task>,
    },
}

/// One `task:{id}` or `tasks` subscription. See the module documentation
/// of [`super`] for the inputs and their order.
#[derive(Debug)]
pub struct TaskFeed {
    topic: Topic,
    follows: Follows,
    ended: bool,
}

impl TaskFeed {
    /// `task:{id}` of `task`, having delivered its events up to seq `last`
    /// ([`super::resume_at`]).
    pub fn one(task: Task, last: u64) -> Self {
        Self {
            topic: Topic::Task(task.id),
            follows: Follows::One {
                task: Box::new(task),
                last,
            },
            ended: false,
        }
    }

    /// `tasks`: every task of the subscriber's, from their next event.
    pub fn owner() -> Self {
        Self {
            topic: Topic::Tasks,
            follows: Follows::Owner {
                last: HashMap::new(),
                running: HashMap::new(),
            },
            ended: false,
        }
    }

    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// Whether a step ended the subscription.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// `tasks`: one of the subscriber's tasks, as it stood at its event
    /// `seq` when the subscription began. A running delay or export is
    /// followed from there (its progress is sent); others are not needed.
    pub fn found(&mut self, task: Task, seq: u64) {
        if let Follows::Owner { last, running } = &mut self.follows
            && reports_progress(&task)
        {
            last.insert(task.id, seq);
            running.insert(task.id, task);
        }
    }

    /// An event pushed as it was stored, with the task after it. A repeat
    /// is dropped; an event past the next seq of a task this subscription
    /// follows is [`Behind`]: the ones between must be read first.
    pub fn live(
        &mut self,
        event: &TaskEvent,
        task: &Task,
        viewer: &Actor,
        now: OffsetDateTime,
    ) -> Result<Step, Behind> {
        let behind = match &self.follows {
            Follows::One { last, .. } => event.seq > last.saturating_add(1),
            Follows::Owner { last, .. } => last
                .get(&task.id)
                .is_some_and(|seen| event.seq > seen.saturating_add(1)),
        };
        if behind && !self.ended {
            return Err(Behind);
        }
        Ok(self.deliver(event, task, viewer, now))
    }

    /// The [`Behind`] event's task log read: the events before it, then it.
    /// `Err` if the log does not fold (the subscription cannot go on).
    pub fn caught_up(
        &mut self,
        events: &[TaskEvent],
        event: &TaskEvent,
        task: &Task,
        viewer: &Actor,
        now: OffsetDateTime,
    ) -> Result<Step, StoreError> {
        let mut step = self.replay(events, Some(event.seq), viewer, now)?;
        step.extend(self.deliver(event, task, viewer, now));
        Ok(step)
    }

    /// The task's log read for a replay (`after`): the events after the
    /// last delivered. `Err` if the log does not fold.
    pub fn replayed(
        &mut self,
        events: &[TaskEvent],
        viewer: &Actor,
        now: OffsetDateTime,
    ) -> Result<Step, StoreError> {
        self.replay(events, None, viewer, now)
    }

    /// The subscriber's account changed (`viewer` as it is now): a
    /// `task:{id}` they may no longer see ends with the refusal.
    pub fn recheck(&mut self, viewer: &Actor) -> Step {
        let Follows::One { task, .. } = &self.follows else {
            return Step::default();
        };
        if self.ended {
            return Step::default();
        }
        match task_denied(&self.topic, task, viewer) {
            Some(step) => {
                self.ended = true;
                step
            }
            None => Step::default(),
        }
    }

    /// Whether [`TaskFeed::progress`] has anything to say: a running delay
    /// or export is followed. Connections tick for progress only then.
    pub fn follows_progress(&self) -> bool {
        !self.ended
            && match &self.follows {
                Follows::One { task, .. } => reports_progress(task),
                Follows::Owner { running, .. } => running.values().any(reports_progress),
            }
    }

    /// The running exports this subscription follows: their progress is
    /// read from the store for [`TaskFeed::progress`].
    pub fn running_exports(&self) -> Vec<TaskId> {
        let followed: Vec<&Task> = match &self.follows {
            Follows::One { task, .. } => vec![task.as_ref()],
            Follows::Owner { running, .. } => running.values().collect(),
        };
        followed
            .into_iter()
            .filter(|task| task.kind() == TaskKind::Export && task.status == Status::Running)
            .map(|task| task.id)
            .collect()
    }

    /// The progress of every running delay and export this subscription
    /// follows as of `now`, an export's as it last `reported` it.
    pub fn progress(
        &mut self,
        reported: &HashMap<TaskId, f64>,
        now: OffsetDateTime,
    ) -> Vec<String> {
        if self.ended {
            return Vec::new();
        }
        let tasks: Vec<&mut Task> = match &mut self.follows {
            Follows::One { task, .. } => vec![task.as_mut()],
            Follows::Owner { running, .. } => running.values_mut().collect(),
        };
        let mut messages = Vec::new();
        for task in tasks {
            if !reports_progress(task) {
                continue;
            }
            if let Some(progress) = reported.get(&task.id) {
                task.reported_progress = Some(*progress);
            }
            messages.push(message::task_progress(&self.topic, task, now));
        }
        messages
    }

    /// The events of `events` (one task's log) before seq `until` (`None`:
    /// all), each with the task as it stood after it, until one ends the
    /// subscription.
    fn replay(
        &mut self,
        events: &[TaskEvent],
        until: Option<u64>,
        viewer: &Actor,
        now: OffsetDateTime,
    ) -> Result<Step, StoreError> {
        let mut step = Step::default();
        for (index, event) in events.iter().enumerate() {
            if self.ended || until.is_some_and(|until| event.seq >= until) {
                break;
            }
            let task = fold(&events[..=index]).map_err(|e| StoreError::other(e.to_string()))?;
            step.extend(self.deliver(event, &task, viewer, now));
        }
        Ok(step)
    }

    /// Delivers `event` unless it is a repeat.
    fn deliver(
        &mut self,
        event: &TaskEvent,
        task: &Task,
        viewer: &Actor,
        now: OffsetDateTime,
    ) -> Step {
        if self.ended {
            return Step::default();
        }
        match &mut self.follows {
            Follows::One { task: known, last } => {
                if event.seq <= *last {
                    return Step::default();
                }
                let step = task_entry(&self.topic, event, task, viewer, now);
                if !step.ended {
                    *last = event.seq;
                    known.as_mut().clone_from(task);
                }
                self.ended = step.ended;
                step
            }
            Follows::Owner { last, running } => {
                if event.seq <= last.get(&task.id).copied().unwrap_or(0) {
                    return Step::default();
                }
                if task.status.is_terminal() {
                    last.remove(&task.id);
                    running.remove(&task.id);
                } else {
                    last.insert(task.id, event.seq);
                    if reports_progress(task) {
                        running.insert(task.id, task.clone());
                    }
                }
                let step = task_entry(&self.topic, event, task, viewer, now);
                self.ended = step.ended;
                step
            }
        }
    }
}
