//! Writing to a task's log: every change is "read the events, fold, decide,
//! append at the next seq", and a lost race (someone else took that seq) is
//! answered by reading again. Because appends are conditional, a task gets
//! exactly one terminal event however its cancel and its completion race.
//!
//! That loop is [`conflict::change`], the one projects, items and accounts
//! go through too: a task's log is an [`Aggregate`] (`TaskLogOf`, private) whose
//! state is the folded task with its events (the last one is what the next
//! chains to) and whose change is the next event's data. A taken seq is
//! the log's `AlreadyExists`, which is the loop's lost race.
//!
//! Tasks contend under a policy of their own (`TaskLogOf::POLICY`): a
//! task gets at most two events after its creation (`started`, then one
//! ending), and every lost race means one of them landed, so a change is
//! soon decided on an ended task and writes nothing. Re-reading at once is
//! therefore enough, and the few tries are bounded by the log rather than
//! by a storm of writers; should they all be lost anyway (a store that
//! misreports), the change ends `Unavailable` (503, try again), as it
//! always has, not `edit-conflict`: no client edited a task.

use std::sync::Arc;

use serde_json::Value;

use crate::clock::{Clock, SystemClock};
use crate::conflict::{self, Aggregate, Pause, Policy};
use crate::ports::{StoreError, StoreResult, TaskLog};
use crate::task::{
    EventData, Status, Task, TaskCreated, TaskError, TaskEvent, TaskId, TaskSpec, fold,
};
use crate::user::{User, Username};

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
    /// After a lost race the task is read and `decide` asked again
    /// ([`conflict::change`], under the tasks' policy: see the module).
    pub async fn append_if(
        &self,
        id: &TaskId,
        actor: Option<&Username>,
        decide: impl Fn(&Task) -> Option<EventData>,
    ) -> StoreResult<Recorded> {
        let log = TaskLogOf {
            recorder: self,
            id,
            actor,
        };
        match conflict::change(&log, |read: &Read| Ok(((), decide(&read.task)))).await {
            Ok(done) if done.appended => Ok(Recorded::Appended(done.state.task)),
            Ok(done) => Ok(Recorded::Unchanged(done.state.task)),
            Err(NotRecorded::Missing) => Ok(Recorded::Missing),
            Err(NotRecorded::Store(e)) => Err(e),
        }
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

/// One task's log as an [`Aggregate`]: read by folding its events,
/// changed by appending the next event (by `actor`) on the condition that
/// its seq is free.
struct TaskLogOf<'a> {
    recorder: &'a Recorder,
    id: &'a TaskId,
    actor: Option<&'a Username>,
}

/// A task as read: its state, and the events it was folded from.
struct Read {
    task: Task,
    /// Never empty: a task without events is [`NotRecorded::Missing`].
    events: Vec<TaskEvent>,
}

/// Why a change to a task's log does not land: a lost race is not one.
enum NotRecorded {
    /// There is no such task ([`Recorded::Missing`], not an error).
    Missing,
    Store(StoreError),
}

impl From<StoreError> for NotRecorded {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// How many times a change to a task is tried: more than the events a
/// task can still get (see the module's doc), so only a store that keeps
/// misreporting exhausts it.
const ATTEMPTS: usize = 8;

impl Aggregate for TaskLogOf<'_> {
    type State = Read;
    type Change = EventData;
    type Error = NotRecorded;

    /// Every lost race brings the task nearer its end, where nothing more
    /// is decided: re-read at once, a few times.
    const POLICY: Policy = Policy {
        attempts: ATTEMPTS,
        pause: Pause::None,
    };

    async fn load(&self) -> Result<Read, NotRecorded> {
        match self.recorder.load(self.id).await? {
            Some((task, events)) => Ok(Read { task, events }),
            None => Err(NotRecorded::Missing),
        }
    }

    /// An ending also counts the task out of its owner's unfinished ones
    /// ([`TaskLog::append_ending`]); a taken seq (`AlreadyExists`) is the
    /// lost race. Observers hear of the event once it is stored.
    async fn append(&self, current: &Read, data: EventData) -> Result<Read, StoreError> {
        let Some(last) = current.events.last() else {
            return Err(broken("a task was read without events"));
        };
        let recorder = self.recorder;
        let event = last.next(recorder.clock.now().max(last.at), self.actor.cloned(), data);
        let appended = if event.change.is_terminal() {
            recorder
                .log
                .append_ending(
                    &event,
                    &current.task.owner_id,
                    matches!(current.task.spec, TaskSpec::Export(_)),
                )
                .await
        } else {
            recorder.log.append_event(&event).await
        };
        match appended {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => return Err(StoreError::Conflict),
            Err(e) => return Err(e),
        }
        let mut events = current.events.clone();
        events.push(event.clone());
        let task = fold(&events).map_err(broken)?;
        recorder.tell(&task, &event);
        Ok(Read { task, events })
    }

    fn gave_up(&self) -> NotRecorded {
        NotRecorded::Store(StoreError::unavailable(format!(
            "task {}: lost the race to append {ATTEMPTS} times",
            self.id
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::ports::Page;
    use crate::task::{StatusKind, TaskLimits, verify};
    use crate::user::{Level, UserId};

    /// A task log in memory whose appends can be made to lose the race:
    /// while `rivals` lasts, an append first lets the next rival event
    /// land at its seq (another writer was faster), then is refused as
    /// the store would refuse it. With `refusing`, every append is refused
    /// and nothing lands (a store that misreports).
    #[derive(Default)]
    struct Racing {
        events: Mutex<BTreeMap<TaskId, Vec<TaskEvent>>>,
        rivals: Mutex<VecDeque<EventData>>,
        refusing: bool,
        appends: AtomicUsize,
        endings: AtomicUsize,
    }

    impl Racing {
        fn losing_to(rivals: impl IntoIterator<Item = EventData>) -> Self {
            Self {
                rivals: Mutex::new(rivals.into_iter().collect()),
                ..Self::default()
            }
        }

        fn refusing() -> Self {
            Self {
                refusing: true,
                ..Self::default()
            }
        }

        fn stored(&self, task: &TaskId) -> Vec<TaskEvent> {
            self.events
                .lock()
                .unwrap()
                .get(task)
                .cloned()
                .unwrap_or_default()
        }
    }

    #[async_trait]
    impl TaskLog for Racing {
        async fn append_event(&self, event: &TaskEvent) -> StoreResult<()> {
            self.appends.fetch_add(1, Ordering::SeqCst);
            if self.refusing {
                return Err(StoreError::AlreadyExists);
            }
            let mut all = self.events.lock().unwrap();
            let log = all.entry(event.stream).or_default();
            if let Some(rival) = self.rivals.lock().unwrap().pop_front() {
                let last = log.last().expect("a rival follows an event");
                let landed = last.next(crate::now(), None, rival);
                log.push(landed);
            }
            let free = u64::try_from(log.len()).unwrap() + 1;
            if event.seq != free {
                return Err(StoreError::AlreadyExists);
            }
            log.push(event.clone());
            Ok(())
        }

        async fn append_created(
            &self,
            event: &TaskEvent,
            _max_active: u64,
            _max_exports: Option<u64>,
        ) -> StoreResult<()> {
            self.events
                .lock()
                .unwrap()
                .insert(event.stream, vec![event.clone()]);
            Ok(())
        }

        async fn append_ending(
            &self,
            event: &TaskEvent,
            _owner: &UserId,
            _export: bool,
        ) -> StoreResult<()> {
            self.endings.fetch_add(1, Ordering::SeqCst);
            self.append_event(event).await
        }

        async fn active_tasks(&self, _owner: &UserId) -> StoreResult<u64> {
            Ok(0)
        }

        async fn record_progress(&self, _task: &TaskId, _progress: f64) -> StoreResult<()> {
            Ok(())
        }

        async fn task_progress(&self, _task: &TaskId) -> StoreResult<Option<f64>> {
            Ok(None)
        }

        async fn task_events(&self, task: &TaskId) -> StoreResult<Vec<TaskEvent>> {
            Ok(self.stored(task))
        }

        async fn owner_tasks(
            &self,
            _owner: &UserId,
            _after: Option<&TaskId>,
            _limit: usize,
        ) -> StoreResult<Page<TaskId, TaskId>> {
            unreachable!("the recorder's appends do not list")
        }

        async fn scan_events(
            &self,
            _after: Option<&(TaskId, u64)>,
            _limit: usize,
        ) -> StoreResult<Page<TaskEvent, (TaskId, u64)>> {
            unreachable!("the recorder's appends do not scan")
        }
    }

    /// What it is told: the status and seq of each event, in order.
    #[derive(Default)]
    struct Told(Mutex<Vec<(StatusKind, u64)>>);

    impl Observer for Told {
        fn appended(&self, task: &Task, event: &TaskEvent) {
            assert_eq!(
                task.last_seq, event.seq,
                "told the task as the event left it"
            );
            self.0.lock().unwrap().push((task.status.kind(), event.seq));
        }
    }

    fn alice() -> User {
        crate::testing::user("alice", Level::User)
    }

    /// A recorder over `log` with a new delay task of alice's in it.
    async fn given_a_task(log: &Arc<Racing>) -> (Recorder, TaskId) {
        let recorder = Recorder::new(log.clone());
        let spec = TaskSpec::delay(60.0, &TaskLimits::default()).unwrap();
        let (task, _) = recorder.create(&spec, &alice(), u64::MAX).await.unwrap();
        (recorder, task.id)
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_race_is_decided_again_on_the_fresh_log() {
        let log = Arc::new(Racing::losing_to([EventData::Started { execution: None }]));
        let (recorder, id) = given_a_task(&log).await;
        let told = Arc::new(Told::default());
        let recorder = recorder.observed_by(told.clone());
        let alice = alice().username;

        let cancelled = recorder.cancelled(&id, &alice).await.unwrap();

        // Lost seq 2 to `started`, then cancelled the running task at 3.
        let Recorded::Appended(task) = cancelled else {
            panic!("{cancelled:?}");
        };
        assert_eq!(task.status, Status::Cancelled { by: alice });
        assert_eq!(task.last_seq, 3);
        assert!(task.started_at.is_some(), "decided on the started task");
        let events = log.stored(&id);
        assert_eq!(events.len(), 3);
        assert!(verify(&id, &events).is_empty());
        assert_eq!(log.appends.load(Ordering::SeqCst), 2);
        assert_eq!(
            log.endings.load(Ordering::SeqCst),
            2,
            "an ending counts out"
        );
        assert_eq!(
            *told.0.lock().unwrap(),
            [(StatusKind::Cancelled, 3)],
            "told of its own event only, once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn what_the_winner_already_did_is_not_done_again() {
        let log = Arc::new(Racing::losing_to([EventData::Cancelled {
            by: alice().username,
        }]));
        let (recorder, id) = given_a_task(&log).await;

        let started = recorder.started(&id, None).await.unwrap();

        let Recorded::Unchanged(task) = started else {
            panic!("{started:?}");
        };
        assert!(task.status.is_terminal());
        assert_eq!(log.stored(&id).len(), 2);
        assert_eq!(log.appends.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_log_that_keeps_refusing_is_tried_eight_times_at_once_then_unavailable() {
        let log = Arc::new(Racing::refusing());
        let (recorder, id) = given_a_task(&log).await;
        let before = tokio::time::Instant::now();

        let failed = recorder
            .failed(&id, TaskError::new("boom", "failed"), vec![])
            .await;

        assert!(
            matches!(failed, Err(StoreError::Unavailable(_))),
            "{failed:?}"
        );
        assert_eq!(log.appends.load(Ordering::SeqCst), 8);
        assert_eq!(
            tokio::time::Instant::now(),
            before,
            "no pause between tries"
        );
        assert_eq!(log.stored(&id).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_does_not_exist_is_missing_and_nothing_is_appended() {
        let log = Arc::new(Racing::default());
        let recorder = Recorder::new(log.clone());

        let started = recorder.started(&TaskId::new(), None).await.unwrap();

        assert_eq!(started, Recorded::Missing);
        assert_eq!(log.appends.load(Ordering::SeqCst), 0);
    }
}
