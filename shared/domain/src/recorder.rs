//! Writing to a task's log: every change is "read the events, fold, decide,
//! append at the next seq", and a lost race (someone else took that seq) is
//! answered by reading again. Because appends are conditional, a task gets
//! exactly one terminal event however its cancel and its completion race.

use std::sync::Arc;

use serde_json::Value;

use crate::clock::{Clock, SystemClock};
use crate::ports::{StoreError, StoreResult, TaskLog};
use crate::task::{
    EventData, Status, Task, TaskCreated, TaskError, TaskEvent, TaskId, TaskSpec, fold,
};
use crate::user::{User, Username};

/// How often to re-read and retry after losing the race for a seq. Each lost
/// race means another event was recorded, and a task has at most a handful.
const ATTEMPTS: usize = 8;

/// What an append ended as.
#[derive(Clone, Debug, PartialEq)]
pub enum Recorded {
    /// The event was appended; the task as it is now.
    Appended(Task),
    /// Nothing to do (e.g. the task had already ended); the task as it is.
    Unchanged(Task),
    /// There is no such task.
    Missing,
}

impl Recorded {
    /// The task as it stands, unless it does not exist.
    pub fn into_task(self) -> Option<Task> {
        match self {
            Self::Appended(task) | Self::Unchanged(task) => Some(task),
            Self::Missing => None,
        }
    }
}

/// Told of every event a [`Recorder`] appends, once it is stored, with the
/// task as it stands after it (the local server's real-time hub).
pub trait Observer: Send + Sync {
    fn appended(&self, task: &Task, event: &TaskEvent);
}

/// Appends to task logs on behalf of the API, the workflow engines and the
/// step functions.
#[derive(Clone)]
pub struct Recorder {
    log: Arc<dyn TaskLog>,
    clock: Arc<dyn Clock>,
    observer: Option<Arc<dyn Observer>>,
    /// Recorded in `created`: the engine meant to run the task.
    engine: Option<String>,
    /// Unfinished exports one owner may have (`TooManyExports` beyond).
    max_active_exports: u64,
}

fn broken(e: impl std::fmt::Display) -> StoreError {
    StoreError::other(format!("task log is broken: {e}"))
}

impl Recorder {
    /// A recorder that timestamps events by the system clock.
    pub fn new(log: Arc<dyn TaskLog>) -> Self {
        Self::with_clock(log, Arc::new(SystemClock))
    }

    /// A recorder that timestamps events (and computes due times) by `clock`.
    pub fn with_clock(log: Arc<dyn TaskLog>, clock: Arc<dyn Clock>) -> Self {
        Self {
            log,
            clock,
            observer: None,
            engine: None,
            max_active_exports: u64::MAX,
        }
    }

    /// Bounds the unfinished exports of one owner (a creation beyond is
    /// `TooManyExports`).
    pub fn with_max_active_exports(mut self, max: u64) -> Self {
        self.max_active_exports = max;
        self
    }

    /// The same recorder, naming `engine` in the tasks it creates.
    pub fn with_engine(mut self, engine: Option<String>) -> Self {
        self.engine = engine;
        self
    }

    /// The same recorder, telling `observer` of every event it appends.
    pub fn observed_by(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn tell(&self, task: &Task, event: &TaskEvent) {
        if let Some(observer) = &self.observer {
            observer.appended(task, event);
        }
    }

    /// The clock events are timestamped by.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn log(&self) -> &Arc<dyn TaskLog> {
        &self.log
    }

    /// Records a new task: its `created` event, seq 1, if `owner` has fewer
    /// than `max_active` unfinished tasks (`OverQuota` otherwise).
    pub async fn create(
        &self,
        spec: &TaskSpec,
        owner: &User,
        max_active: u64,
    ) -> StoreResult<(Task, TaskEvent)> {
        let at = self.clock.now();
        let due_at = match spec {
            TaskSpec::Delay { seconds } => Some(at + std::time::Duration::from_secs_f64(*seconds)),
            TaskSpec::Js { .. } | TaskSpec::Export(_) => None,
        };
        let event = TaskEvent::first(
            TaskId::new(),
            at,
            Some(owner.username.clone()),
            EventData::Created(TaskCreated {
                spec: spec.clone(),
                owner: owner.username.clone(),
                owner_id: owner.user_id,
                owner_level: owner.level,
                due_at,
                engine: self.engine.clone(),
            }),
        );
        let max_exports = matches!(spec, TaskSpec::Export(_)).then_some(self.max_active_exports);
        self.log
            .append_created(&event, max_active, max_exports)
            .await?;
        let task = fold(std::slice::from_ref(&event)).map_err(broken)?;
        self.tell(&task, &event);
        Ok((task, event))
    }

    /// The task and its events, if it exists (with a running export's
    /// reported progress).
    pub async fn load(&self, id: &TaskId) -> StoreResult<Option<(Task, Vec<TaskEvent>)>> {
        let events = self.log.task_events(id).await?;
        if events.is_empty() {
            return Ok(None);
        }
        let mut task = fold(&events).map_err(broken)?;
        if matches!(task.spec, TaskSpec::Export(_)) && task.status == Status::Running {
            task.reported_progress = self.log.task_progress(id).await?;
        }
        Ok(Some((task, events)))
    }

    /// Records how far a running task has got (0 to 1; see
    /// [`TaskLog::record_progress`]).
    pub async fn progress(&self, id: &TaskId, progress: f64) -> StoreResult<()> {
        self.log.record_progress(id, progress.clamp(0.0, 1.0)).await
    }

    /// Appends what `decide` returns for the task's current state, at the
    /// next seq; `decide` returning `None` means there is nothing to record.
    pub async fn append_if(
        &self,
        id: &TaskId,
        actor: Option<&Username>,
        decide: impl Fn(&Task) -> Option<EventData>,
    ) -> StoreResult<Recorded> {
        for _ in 0..ATTEMPTS {
            let Some((task, events)) = self.load(id).await? else {
                return Ok(Recorded::Missing);
            };
            let Some(data) = decide(&task) else {
                return Ok(Recorded::Unchanged(task));
            };
            let last = events.last().expect("a loaded task has events");
            let event = last.next(self.clock.now().max(last.at), actor.cloned(), data);
            let appended = if event.change.is_terminal() {
                self.log
                    .append_ending(
                        &event,
                        &task.owner_id,
                        matches!(task.spec, TaskSpec::Export(_)),
                    )
                    .await
            } else {
                self.log.append_event(&event).await
            };
            match appended {
                Ok(()) => {
                    let mut events = events;
                    events.push(event.clone());
                    let task = fold(&events).map_err(broken)?;
                    self.tell(&task, &event);
                    return Ok(Recorded::Appended(task));
                }
                Err(StoreError::AlreadyExists) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::unavailable(format!(
            "task {id}: lost the race to append {ATTEMPTS} times"
        )))
    }

    /// `started`, if the task is still pending.
    pub async fn started(&self, id: &TaskId, execution: Option<String>) -> StoreResult<Recorded> {
        self.append_if(id, None, |task| {
            (task.status == Status::Pending).then(|| EventData::Started {
                execution: execution.clone(),
            })
        })
        .await
    }

    /// `succeeded`, unless the task already ended.
    pub async fn succeeded(
        &self,
        id: &TaskId,
        result: Value,
        logs: Vec<String>,
    ) -> StoreResult<Recorded> {
        self.append_if(id, None, |task| {
            (!task.status.is_terminal()).then(|| EventData::Succeeded {
                result: result.clone(),
                logs: logs.clone(),
            })
        })
        .await
    }

    /// `failed`, unless the task already ended.
    pub async fn failed(
        &self,
        id: &TaskId,
        error: TaskError,
        logs: Vec<String>,
    ) -> StoreResult<Recorded> {
        self.append_if(id, None, |task| {
            (!task.status.is_terminal()).then(|| EventData::Failed {
                error: error.clone(),
                logs: logs.clone(),
            })
        })
        .await
    }

    /// `cancelled` by `by`, unless the task already ended.
    pub async fn cancelled(&self, id: &TaskId, by: &Username) -> StoreResult<Recorded> {
        self.append_if(id, Some(by), |task| {
            (!task.status.is_terminal()).then(|| EventData::Cancelled { by: by.clone() })
        })
        .await
    }
}
