//! The reconciler: Step Functions reports every execution that ends
//! (EventBridge, "Step Functions Execution Status Change"); for one that
//! ended while its task has no outcome in the log (the state machine gave
//! up recording it, or someone stopped the execution from the console, or
//! it timed out), the task is recorded `failed` with `workflow-error`. The
//! execution's name is the task's id. Recording is conditional like every
//! append, so a task that has ended stays as it is: running the reconciler
//! twice, or after the outcome, changes nothing.

use serde_json::Value;
use taskgate_domain::ports::StoreResult;
use taskgate_domain::recorder::{Recorded, Recorder};
use taskgate_domain::task::{TaskError, TaskId};

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
