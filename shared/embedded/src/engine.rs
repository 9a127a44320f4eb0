//! The in-process workflow engine: the local stand-in for the Step Functions
//! state machine, running the same steps and writing the same events.
//!
//! - delay: wait until the `due_at` recorded at creation, then record
//!   `succeeded` with result `0`;
//! - js: run the script with the `JsRunner` (a sandboxed child process), then
//!   record `succeeded` or `failed`;
//! - export: write the file with the `Exporter`, recording its progress as
//!   it goes, then record `succeeded` (or, if a cancel won meanwhile, delete
//!   the file) or `failed`.
//!
//! `stop` (after the API recorded `cancelled`) aborts the wait or kills the
//! script. Recording is conditional like every append, so a run that finishes
//! as it is cancelled records nothing: the cancel won.
//!
//! After a restart, [`LocalEngine::recover`] finds every task without a
//! terminal event: delays resume (or finish at once if already due), scripts
//! and exports fail with `interrupted` (neither can be resumed halfway; what
//! an export had written is removed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use taskgate_domain::ports::{
    ExportControl, ExportFailure, Exporter, JsRunner, StoreResult, Workflow, WorkflowError,
};
use taskgate_domain::recorder::{Recorded, Recorder};
use taskgate_domain::task::{
    EventData, Task, TaskCreated, TaskError, TaskEvent, TaskId, TaskKind, TaskSpec, fold,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

// The engine waits on the same injected clock as the rest of the system.
pub use taskgate_domain::clock::{Clock, ManualClock, SystemClock};

/// What [`LocalEngine::recover`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Delays waiting again (or finished at once, if already due).
    pub resumed: usize,
    /// Scripts recorded as `failed` with code `interrupted`.
    pub interrupted: usize,
    /// Unfinished tasks of other engines (a deployment sharing the tables),
    /// left alone.
    pub others: usize,
}

/// When the store fails, recording an outcome is retried until it works (or
/// the server shuts down; `recover` then finishes the job at the next start),
/// pausing from `RECORD_BACKOFF`, doubling, up to `RECORD_MAX_PAUSE`. So a
/// store outage delays outcomes but never leaves a task unfinished.
const RECORD_BACKOFF: Duration = Duration::from_millis(200);
const RECORD_MAX_PAUSE: Duration = Duration::from_secs(10);

struct Inner {
    /// `local:<id>`: recorded as the engine of the tasks it runs.
    name: String,
    /// The store is this engine's alone (see [`LocalEngine::owns`]).
    exclusive: bool,
    recorder: Recorder,
    js: Arc<dyn JsRunner>,
    /// Runs export tasks; without one they fail (`export-unavailable`).
    exporter: Option<Arc<dyn Exporter>>,
    clock: Arc<dyn Clock>,
    runs: Mutex<HashMap<TaskId, CancellationToken>>,
    /// Pending delays, waited for by one scheduler task (see [`Delays`]).
    delays: Delays,
    /// Cancelled at shutdown: every run stops without recording anything.
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

#[derive(Clone)]
pub struct LocalEngine {
    inner: Arc<Inner>,
}

impl LocalEngine {
    /// An engine named `local:<id>` (`id`: kept in the data directory, so
    /// the same server is the same engine across restarts).
    pub fn new(recorder: Recorder, js: Arc<dyn JsRunner>, clock: Arc<dyn Clock>, id: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: format!("local:{id}"),
                exclusive: false,
                recorder,
                js,
                exporter: None,
                clock,
                runs: Mutex::new(HashMap::new()),
                delays: Delays::default(),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// This engine's name, as recorded in the tasks it is to run.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The execution id `started` records for `task`: `<name>:<task id>`.
    fn execution(&self, task: &TaskId) -> String {
        format!("{}:{task}", self.inner.name)
    }

    /// Whether this engine runs the task of `events`: its `started` names
    /// one of this engine's executions, or (not started yet) its `created`
    /// names this engine. Tasks from before engines were named (`local:<task
    /// id>`, or no engine at all) are this engine's only on a store of its
    /// own (the embedded store); on shared tables they are left alone.
    fn owns(&self, events: &[TaskEvent]) -> bool {
        let mine = format!("{}:", self.inner.name);
        let legacy = |task: &TaskId| format!("local:{task}");
        for event in events.iter().rev() {
            if let EventData::Started { execution } = &event.change {
                return match execution {
                    Some(execution) => {
                        execution.starts_with(&mine)
                            || (self.inner.exclusive && *execution == legacy(&event.stream))
                    }
                    None => self.inner.exclusive,
                };
            }
        }
        match events.first().map(|e| &e.change) {
            Some(EventData::Created(TaskCreated {
                engine: Some(engine),
                ..
            })) => *engine == self.inner.name,
            Some(EventData::Created(TaskCreated { engine: None, .. })) => self.inner.exclusive,
            _ => false,
        }
    }

    /// Marks the store as this engine's alone (the embedded store): tasks
    /// from before engines were named are then its own.
    pub fn with_exclusive_store(self) -> Self {
        // Only called right after `new`, before any clone is shared.
        let mut inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("with_exclusive_store is called on a fresh engine"));
        inner.exclusive = true;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The same engine, running export tasks with `exporter`.
    pub fn with_exporter(self, exporter: Arc<dyn Exporter>) -> Self {
        // Only called right after `new`, before any clone is shared.
        let mut inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("with_exporter is called on a fresh engine"));
        inner.exporter = Some(exporter);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Finds the tasks a previous run left unfinished and resumes or ends them.
    pub async fn recover(&self) -> StoreResult<Recovery> {
        let by_task = self.inner.recorder.log().events_by_task().await?;
        let mut recovery = Recovery::default();
        for (id, events) in by_task {
            let Ok(task) = fold(&events) else {
                tracing::error!(task = %id, "cannot recover a task whose log is broken; run taskgate audit verify");
                continue;
            };
            if task.status.is_terminal() {
                continue;
            }
            if !self.owns(&events) {
                recovery.others += 1;
                continue;
            }
            match task.kind() {
                TaskKind::Delay => {
                    // A crash between `created` and the start leaves it pending.
                    self.inner
                        .recorder
                        .started(&id, Some(self.execution(&id)))
                        .await?;
                    self.spawn(task);
                    recovery.resumed += 1;
                }
                TaskKind::Js | TaskKind::Export => {
                    let what = if task.kind() == TaskKind::Js {
                        "script"
                    } else {
                        "export"
                    };
                    if let (TaskKind::Export, Some(exporter)) = (task.kind(), &self.inner.exporter)
                    {
                        exporter.clean_up(&id).await;
                    }
                    let error = TaskError::new(
                        "interrupted",
                        format!(
                            "the server stopped while the {what} was running; start the task again"
                        ),
                    );
                    self.inner.recorder.failed(&id, error, Vec::new()).await?;
                    recovery.interrupted += 1;
                }
            }
        }
        if recovery != Recovery::default() {
            tracing::info!(
                resumed = recovery.resumed,
                interrupted = recovery.interrupted,
                others = recovery.others,
                "recovered unfinished tasks"
            );
        }
        Ok(recovery)
    }

    /// Stops every run (scripts are killed) without recording anything, and
    /// waits for them. Unfinished tasks are picked up by `recover` next time.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        // Pending delays are left as they are recorded (running): the next
        // start's `recover` picks them up.
        self.inner.delays.clear();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// How many runs are going on now (pending delays included).
    pub fn running(&self) -> usize {
        self.inner.runs.lock().expect("runs lock").len() + self.inner.delays.len()
    }

    fn spawn(&self, task: Task) {
        if task.kind() == TaskKind::Delay {
            // A pending delay is an entry in the scheduler's queue (there
            // may be 100,000 of them), not a task of its own.
            let due = task.due_at.unwrap_or(task.created_at);
            self.inner.delays.add(task.id, due);
            if !self.inner.delays.scheduler_started() {
                let inner = Arc::clone(&self.inner);
                self.inner
                    .tracker
                    .spawn(async move { inner.schedule_delays().await });
            }
            return;
        }
        let token = self.inner.shutdown.child_token();
        self.inner
            .runs
            .lock()
            .expect("runs lock")
            .insert(task.id, token.clone());
        let inner = Arc::clone(&self.inner);
        let id = task.id;
        self.inner.tracker.spawn(async move {
            inner.run(task, token).await;
            inner.runs.lock().expect("runs lock").remove(&id);
        });
    }
}

/// The delays waiting to be due: by due time, and by id (for cancels).
/// One task, the scheduler, sleeps until the earliest is due, records it and
/// those due with it, and is woken when an earlier one is added.
#[derive(Default)]
struct Delays {
    queue: Mutex<DelayQueue>,
    changed: tokio::sync::Notify,
    started: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct DelayQueue {
    by_due: std::collections::BTreeSet<(time::OffsetDateTime, TaskId)>,
    due_of: HashMap<TaskId, time::OffsetDateTime>,
}

impl Delays {
    fn queue(&self) -> std::sync::MutexGuard<'_, DelayQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.queue().due_of.len()
    }

    fn add(&self, id: TaskId, due: time::OffsetDateTime) {
        let mut queue = self.queue();
        if let Some(old) = queue.due_of.insert(id, due) {
            queue.by_due.remove(&(old, id));
        }
        queue.by_due.insert((due, id));
        drop(queue);
        self.changed.notify_one();
    }

    fn clear(&self) {
        let mut queue = self.queue();
        queue.by_due.clear();
        queue.due_of.clear();
    }

    /// Takes a delay out (cancelled); whether it was waiting.
    fn remove(&self, id: &TaskId) -> bool {
        let mut queue = self.queue();
        match queue.due_of.remove(id) {
            Some(due) => {
                queue.by_due.remove(&(due, *id));
                true
            }
            None => false,
        }
    }

    /// Whether the scheduler runs already (and if not, that the caller is
    /// to start it).
    fn scheduler_started(&self) -> bool {
        self.started.swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// The earliest due time, if any delay waits.
    fn next_due(&self) -> Option<time::OffsetDateTime> {
        self.queue().by_due.first().map(|(due, _)| *due)
    }

    /// Takes out every delay due by `now`.
    fn take_due(&self, now: time::OffsetDateTime) -> Vec<TaskId> {
        let mut queue = self.queue();
        let mut due = Vec::new();
        while let Some(&(at, id)) = queue.by_due.first() {
            if at > now {
                break;
            }
            queue.by_due.pop_first();
            queue.due_of.remove(&id);
            due.push(id);
        }
        due
    }
}

/// What a run ended with.
enum Outcome {
    Succeeded(serde_json::Value, Vec<String>),
    Failed(TaskError, Vec<String>),
    /// An export wrote its file; `succeeded` is still to be recorded.
    Exported(serde_json::Value),
    /// Stopped by cancel or shutdown: nothing to record.
    Stopped,
}

impl Inner {
    /// The delay scheduler: until shutdown, sleeps until the earliest
    /// pending delay is due (or one is added), then records `succeeded`
    /// with `0` for every delay due by then, each in a task of its own.
    async fn schedule_delays(self: Arc<Self>) {
        loop {
            let wake = self.delays.changed.notified();
            tokio::pin!(wake);
            match self.delays.next_due() {
                None => tokio::select! {
                    () = &mut wake => {}
                    () = self.shutdown.cancelled() => return,
                },
                Some(due) => tokio::select! {
                    () = self.clock.sleep_until(due) => {
                        for id in self.delays.take_due(self.clock.now()) {
                            let inner = Arc::clone(&self);
                            self.tracker.spawn(async move {
                                inner
                                    .record_until_done(&id, || {
                                        inner.recorder.succeeded(&id, serde_json::json!(0), Vec::new())
                                    })
                                    .await;
                            });
                        }
                    }
                    () = &mut wake => {}
                    () = self.shutdown.cancelled() => return,
                },
            }
        }
    }

    async fn run(&self, task: Task, token: CancellationToken) {
        let id = task.id;
        let outcome = match &task.spec {
            // Delays are the scheduler's (see `spawn`).
            TaskSpec::Delay { .. } => Outcome::Stopped,
            TaskSpec::Js { code } => {
                match self
                    .js
                    .run(&id, code, Box::pin(token.clone().cancelled_owned()))
                    .await
                {
                    Ok(output) => Outcome::Succeeded(output.result, output.logs),
                    Err(_) if token.is_cancelled() => Outcome::Stopped,
                    Err(failure) => Outcome::Failed(failure.error, failure.logs),
                }
            }
            TaskSpec::Export(_) => match &self.exporter {
                None => Outcome::Failed(
                    TaskError::new("export-unavailable", "this server does not run exports"),
                    Vec::new(),
                ),
                Some(exporter) => {
                    let control = Control {
                        recorder: &self.recorder,
                        id,
                        token: &token,
                    };
                    match exporter.export(&task, &control).await {
                        Ok(result) => Outcome::Exported(result),
                        Err(ExportFailure::Stopped) => Outcome::Stopped,
                        Err(ExportFailure::Failed(error)) => Outcome::Failed(error, Vec::new()),
                    }
                }
            },
        };
        match outcome {
            Outcome::Stopped => {}
            Outcome::Exported(result) => {
                let recorded = self
                    .record_until_done(&id, || {
                        self.recorder.succeeded(&id, result.clone(), Vec::new())
                    })
                    .await;
                // A cancel recorded while the file was being finished won:
                // the task is cancelled, so its file must not remain.
                if let (Some(Recorded::Unchanged(_)), Some(exporter)) = (recorded, &self.exporter) {
                    exporter.discard(&result).await;
                }
            }
            Outcome::Succeeded(result, logs) => {
                self.record_until_done(&id, || {
                    self.recorder.succeeded(&id, result.clone(), logs.clone())
                })
                .await;
            }
            Outcome::Failed(error, logs) => {
                self.record_until_done(&id, || {
                    self.recorder.failed(&id, error.clone(), logs.clone())
                })
                .await;
            }
        }
    }

    /// Runs `record` until the store takes it (what it recorded), or the
    /// server shuts down (`None`).
    async fn record_until_done<F, Fut>(&self, id: &TaskId, record: F) -> Option<Recorded>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = StoreResult<Recorded>>,
    {
        let mut pause = RECORD_BACKOFF;
        for attempt in 1.. {
            match record().await {
                Ok(recorded) => return Some(recorded),
                Err(e) => {
                    tracing::warn!(task = %id, error = %e, attempt, "could not record a task's outcome; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.shutdown.cancelled() => {
                    tracing::error!(task = %id, "shutting down before a task's outcome was recorded; it will be recovered at the next start");
                    return None;
                }
            }
            pause = (pause * 2).min(RECORD_MAX_PAUSE);
        }
        None
    }
}

/// What an export run by this engine reports to: progress into the task's
/// progress record, and a stop when the run's token is cancelled.
struct Control<'a> {
    recorder: &'a Recorder,
    id: TaskId,
    token: &'a CancellationToken,
}

#[async_trait]
impl ExportControl for Control<'_> {
    async fn progress(&self, fraction: f64) {
        if let Err(e) = self.recorder.progress(&self.id, fraction).await {
            tracing::warn!(task = %self.id, error = %e, "could not record an export's progress");
        }
    }

    async fn stopped(&self) -> bool {
        self.token.is_cancelled()
    }
}

#[async_trait]
impl Workflow for LocalEngine {
    fn engine(&self) -> Option<String> {
        Some(self.inner.name.clone())
    }

    async fn start(&self, task: &Task) -> Result<Task, WorkflowError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(WorkflowError::Unavailable(
                "the server is shutting down".into(),
            ));
        }
        // `started` is recorded before the run begins, so a task that ends at
        // once still reads created → started → outcome.
        let started = match self
            .inner
            .recorder
            .started(&task.id, Some(self.execution(&task.id)))
            .await
        {
            Ok(recorded) => recorded
                .into_task()
                .ok_or_else(|| WorkflowError::Other(format!("there is no task {}", task.id)))?,
            Err(e) => {
                // The store failed between `created` and `started`. The task
                // must not stay pending: it fails as soon as the store is
                // back (the caller may well record that first).
                let inner = Arc::clone(&self.inner);
                let id = task.id;
                self.inner.tracker.spawn(async move {
                    let error = TaskError::new(
                        "workflow-unavailable",
                        "the task could not be started; try again later",
                    );
                    inner
                        .record_until_done(&id, || {
                            inner.recorder.failed(&id, error.clone(), Vec::new())
                        })
                        .await;
                });
                return Err(WorkflowError::Unavailable(e.to_string()));
            }
        };
        self.spawn(started.clone());
        Ok(started)
    }

    async fn stop(&self, task: &TaskId) -> Result<(), WorkflowError> {
        if self.inner.delays.remove(task) {
            return Ok(());
        }
        if let Some(token) = self.inner.runs.lock().expect("runs lock").get(task) {
            token.cancel();
        }
        Ok(())
    }
}
