//! The reconciler: Step Functions reports every execution that ends
//! (EventBridge, "Step Functions Execution Status Change"); for one that
//! ended while its task has no outcome in the log (the state machine gave
//! up recording it, or someone stopped the execution from the console, or
//! it timed out), the task is recorded `failed` with `workflow-error`. The
//! execution's name is the task's id. Recording is conditional like every
//! append, so a task that has ended stays as it is: running the reconciler
//! twice, or after the outcome, changes nothing.
//!
//! The sweep ([`sweep`], run on a schedule): a task whose `created` was
//! written but whose execution never started (the start function died in
//! between) is started, or failed with `workflow-unavailable` if Step
//! Functions refuses it for good. Starting is idempotent (the execution is
//! named by the task id; `started` is appended only to a pending task), so
//! a sweep racing a late start, or another sweep, starts it once.

use serde_json::Value;
use taskgate_aws::DynamoStore;
use taskgate_domain::ports::{StoreResult, Workflow, WorkflowError};
use taskgate_domain::recorder::{Recorded, Recorder};
use taskgate_domain::task::{Status, TaskError, TaskId};
use time::OffsetDateTime;

/// What the reconciler did about one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// The task had no outcome: it is now `failed` (`workflow-error`).
    Failed(TaskId),
    /// The task had ended already.
    AlreadyEnded(TaskId),
    /// Not an ended execution of a task (still running, not ours, unknown).
    Ignored(String),
}

/// Handles one EventBridge event.
pub async fn reconcile(recorder: &Recorder, event: &Value) -> StoreResult<Reconciled> {
    let detail = &event["detail"];
    let status = detail["status"].as_str().unwrap_or_default();
    if !matches!(status, "FAILED" | "TIMED_OUT" | "ABORTED" | "SUCCEEDED") {
        return Ok(Reconciled::Ignored(format!("status {status:?}")));
    }
    let name = detail["name"].as_str().unwrap_or_default();
    let Ok(task) = TaskId::parse(name) else {
        return Ok(Reconciled::Ignored(format!(
            "execution {name:?} is not a task's"
        )));
    };
    let error = TaskError::new(
        "workflow-error",
        format!(
            "the workflow ended ({}) without recording an outcome",
            status.to_ascii_lowercase().replace('_', " ")
        ),
    );
    match recorder.failed(&task, error, Vec::new()).await? {
        Recorded::Appended(_) => {
            tracing::warn!(task = %task, status, "an execution ended without an outcome: recorded failed");
            Ok(Reconciled::Failed(task))
        }
        Recorded::Unchanged(_) => Ok(Reconciled::AlreadyEnded(task)),
        Recorded::Missing => Ok(Reconciled::Ignored(format!("there is no task {task}"))),
    }
}

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Pending tasks whose execution this sweep started (or found started).
    pub started: Vec<TaskId>,
    /// Pending tasks Step Functions refused for good: now `failed`.
    pub failed: Vec<TaskId>,
    /// Tasks found already started or ended: only their marker was stale.
    pub cleared: usize,
    /// Tasks left for the next sweep (Step Functions or the store was
    /// unavailable for them).
    pub deferred: usize,
}

/// Tasks the sweep looks at per shard of the index and run: a bound on one
/// invocation's work (the next run takes the rest).
pub const SWEEP_BATCH: usize = 50;

/// Starts, or fails, every task created more than `grace` before `now`
/// that never started (see the module docs).
pub async fn sweep(
    store: &DynamoStore,
    recorder: &Recorder,
    workflow: &dyn Workflow,
    now: OffsetDateTime,
    grace: std::time::Duration,
) -> StoreResult<Swept> {
    let mut swept = Swept::default();
    for id in store.unstarted_tasks(now - grace, SWEEP_BATCH).await? {
        let Some((task, _)) = recorder.load(&id).await? else {
            store.clear_unstarted(&id).await?;
            swept.cleared += 1;
            continue;
        };
        if task.status != Status::Pending {
            store.clear_unstarted(&id).await?;
            swept.cleared += 1;
            continue;
        }
        match workflow.start(&task).await {
            // `started` is appended by the start, which clears the marker.
            Ok(_) => {
                tracing::warn!(task = %id, "a task that never started was started by the sweep");
                store.clear_unstarted(&id).await?;
                swept.started.push(id);
            }
            Err(WorkflowError::Unavailable(detail)) => {
                tracing::warn!(task = %id, detail, "could not start a stuck task; the next sweep tries again");
                swept.deferred += 1;
            }
            Err(WorkflowError::Other(detail)) => {
                tracing::error!(task = %id, detail, "Step Functions refused a stuck task: failing it");
                let error = TaskError::new(
                    "workflow-unavailable",
                    "the task could not be started; try again later",
                );
                recorder.failed(&id, error, Vec::new()).await?;
                store.clear_unstarted(&id).await?;
                swept.failed.push(id);
            }
        }
    }
    Ok(swept)
}
