//! The task steps the state machine invokes (not HTTP): recording an outcome,
//! running a script, and running an export. Their inputs are the state machine's payloads
//! (`infra/statemachine/task.asl.json`).

use std::time::Duration;

use lambda_runtime::Diagnostic;
use serde::{Deserialize, Serialize};
use taskgate_domain::ports::{ExportControl, ExportFailure, Exporter, JsRunner};
use taskgate_domain::recorder::{Recorded, Recorder};
use taskgate_domain::task::{StatusKind, Task, TaskError, TaskId, TaskSpec};

/// The functions in `functions/` that are state machine steps, not endpoints.
pub const STEP_FUNCTIONS: &[&str] = &["step-record", "step-js", "step-export"];

/// A step's failure, as Step Functions sees it: `error_type` is the error
/// name a Catch matches (our error codes, e.g. `timeout`).
#[derive(Debug)]
pub struct StepError {
    pub error_type: String,
    pub message: String,
}

impl StepError {
    fn new(error_type: &str, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.to_owned(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl From<StepError> for Diagnostic {
    fn from(error: StepError) -> Self {
        Diagnostic {
            error_type: error.error_type,
            error_message: error.message,
        }
    }
}

fn task_id(raw: &str) -> Result<TaskId, StepError> {
    TaskId::parse(raw).map_err(|_| StepError::new("BadInput", format!("{raw:?} is not a task id")))
}

fn store_failure(e: impl std::fmt::Display) -> StepError {
    // Retried by the state machine's Retry on this name.
    StepError::new("StoreUnavailable", e.to_string())
}

/// The task a step's input names (`TaskNotFound` if there is none).
async fn load_task(recorder: &Recorder, raw: &str) -> Result<(TaskId, Task), StepError> {
    let id = task_id(raw)?;
    let (task, _) = recorder
        .load(&id)
        .await
        .map_err(store_failure)?
        .ok_or_else(|| StepError::new("TaskNotFound", format!("there is no task {id}")))?;
    Ok((id, task))
}

/// A task error as a step failure: named by its code (what the state
/// machine's Catch records), the message and logs kept as JSON.
fn task_failure(error: TaskError, logs: Vec<String>) -> StepError {
    let detail = FailureDetail {
        message: error.message,
        logs,
    };
    StepError {
        error_type: error.code,
        message: serde_json::to_string(&detail).expect("a detail always serialises"),
    }
}

/// Input of the record step.
#[derive(Debug, Deserialize)]
pub struct RecordInput {
    pub task_id: String,
    pub outcome: RecordOutcome,
    #[serde(default)]
    pub result: serde_json::Value,
    #[serde(default)]
    pub logs: Vec<String>,
    /// With `failed`: the error name Step Functions caught (`$.error.Error`).
    #[serde(default)]
    pub error: Option<String>,
    /// With `failed`: the cause it caught (`$.error.Cause`).
    #[serde(default)]
    pub cause: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RecordOutcome {
    Succeeded,
    Failed,
}

#[derive(Debug, Serialize)]
pub struct RecordOutput {
    /// `false` when the task had already ended (e.g. it was cancelled).
    pub recorded: bool,
    pub status: StatusKind,
}

/// What a JS step failure carries in its message, so the record step can
/// keep the console lines.
#[derive(Serialize, Deserialize)]
struct FailureDetail {
    message: String,
    #[serde(default)]
    logs: Vec<String>,
}

/// Turns what a Catch caught into a task error. Our own codes (lower-case,
/// dashed: `timeout`, `memory-limit`) pass through; Step Functions' and
/// Lambda's own errors (`States.Timeout`, `Lambda.Unknown`) become
/// `workflow-error`.
fn caught_failure(error: Option<&str>, cause: Option<&str>) -> (TaskError, Vec<String>) {
    let error = error.unwrap_or("States.Unknown");
    // A Lambda error's cause is JSON with `errorMessage`; ours holds JSON again.
    let message = cause
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .and_then(|c| c["errorMessage"].as_str().map(str::to_owned))
        .or_else(|| cause.map(str::to_owned))
        .unwrap_or_default();
    let ours = error.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !error.is_empty();
    if ours {
        match serde_json::from_str::<FailureDetail>(&message) {
            Ok(detail) => (TaskError::new(error, detail.message), detail.logs),
            Err(_) => (TaskError::new(error, message), Vec::new()),
        }
    } else {
        let message = if message.is_empty() {
            format!("the workflow failed with {error}")
        } else {
            format!("the workflow failed with {error}: {message}")
        };
        (TaskError::new("workflow-error", message), Vec::new())
    }
}

/// The record step: appends `succeeded` or `failed`, unless the task has
/// already ended (a cancel that won the race: then nothing is recorded).
pub async fn record(recorder: &Recorder, input: RecordInput) -> Result<RecordOutput, StepError> {
    let id = task_id(&input.task_id)?;
    let recorded = match input.outcome {
        RecordOutcome::Succeeded => recorder.succeeded(&id, input.result, input.logs).await,
        RecordOutcome::Failed => {
            let (error, logs) = caught_failure(input.error.as_deref(), input.cause.as_deref());
            recorder.failed(&id, error, logs).await
        }
    }
    .map_err(store_failure)?;
    match recorded {
        Recorded::Appended(task) => Ok(RecordOutput {
            recorded: true,
            status: task.status.kind(),
        }),
        Recorded::Unchanged(task) => Ok(RecordOutput {
            recorded: false,
            status: task.status.kind(),
        }),
        Recorded::Missing => Err(StepError::new(
            "TaskNotFound",
            format!("there is no task {id}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct JsInput {
    pub task_id: String,
}

/// What the JS step returns to the execution: a few bytes, whatever the
/// script produced. The script's result (up to 256 KiB) and its logs are
/// recorded in the task's log by the step itself, never passed through the
/// execution, whose payloads are capped at 256 KiB by Step Functions (a
/// `States.DataLimitExceeded` cannot be caught: the result would be lost).
#[derive(Debug, Serialize, PartialEq)]
pub struct JsOutput {
    /// The task's status once the step is done with it.
    pub status: StatusKind,
    /// `false` when the task had ended before the outcome could be
    /// recorded (a cancel won the race: the cancel stands).
    pub recorded: bool,
}

/// The JS step: runs the task's script in the sandbox and records its
/// outcome, `succeeded` with its value and logs or `failed` with its error
/// code, in the task's log. StopExecution does not stop a running Lambda,
/// so while the script runs this watches the task's log every `poll`, and
/// kills the script when the task has ended (cancelled).
///
/// An error comes back only when the outcome could not be recorded (the
/// store kept failing, `StoreUnavailable`) or the input names no task: the
/// state machine's Catch then records the failure.
pub async fn run_js(
    recorder: &Recorder,
    runner: &dyn JsRunner,
    input: JsInput,
    poll: Duration,
) -> Result<JsOutput, StepError> {
    let (id, task) = load_task(recorder, &input.task_id).await?;
    if task.status.is_terminal() {
        return Ok(JsOutput {
            status: task.status.kind(),
            recorded: false,
        });
    }
    let TaskSpec::Js { code } = task.spec else {
        return Err(StepError::new(
            "BadInput",
            format!("task {id} is a {} task, not a script", task.kind().as_str()),
        ));
    };
    let watcher = recorder.clone();
    let ended = Box::pin(async move {
        loop {
            tokio::time::sleep(poll).await;
            if let Ok(Some((task, _))) = watcher.load(&id).await
                && task.status.is_terminal()
            {
                return;
            }
        }
    });
    let outcome = runner.run(&id, &code, ended).await;
    let mut pause = Duration::from_millis(200);
    for attempt in 1..=RECORD_ATTEMPTS {
        let recorded = match &outcome {
            Ok(output) => {
                recorder
                    .succeeded(&id, output.result.clone(), output.logs.clone())
                    .await
            }
            Err(failure) => {
                recorder
                    .failed(&id, failure.error.clone(), failure.logs.clone())
                    .await
            }
        };
        match recorded {
            Ok(Recorded::Appended(task)) => {
                return Ok(JsOutput {
                    status: task.status.kind(),
                    recorded: true,
                });
            }
            Ok(Recorded::Unchanged(task)) => {
                return Ok(JsOutput {
                    status: task.status.kind(),
                    recorded: false,
                });
            }
            Ok(Recorded::Missing) => {
                return Err(StepError::new(
                    "TaskNotFound",
                    format!("there is no task {id}"),
                ));
            }
            Err(e) => {
                tracing::warn!(task = %id, error = %e, attempt, "could not record a script's outcome");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    Err(store_failure(format!(
        "the script of task {id} ran but its outcome could not be recorded"
    )))
}

/// How often the JS step looks at the log for a cancel.
pub const CANCEL_POLL: Duration = Duration::from_millis(500);

/// How often the export step looks at the log for a cancel (a read per
/// look, so less often than the JS step).
pub const EXPORT_CANCEL_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
pub struct ExportInput {
    pub task_id: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ExportOutput {
    /// The task's status once the step is done with it.
    pub status: StatusKind,
    /// The result recorded (`{"file", "size", "sha256"}`), if the export
    /// succeeded.
    pub result: Option<serde_json::Value>,
}

/// Progress into the task's progress record; a stop once the task's log
/// shows it ended (cancelled), read at most every `poll`.
struct StepControl<'a> {
    recorder: &'a Recorder,
    id: TaskId,
    poll: Duration,
    last_look: std::sync::Mutex<Option<std::time::Instant>>,
}

#[async_trait::async_trait]
impl ExportControl for StepControl<'_> {
    async fn progress(&self, fraction: f64) {
        if let Err(e) = self.recorder.progress(&self.id, fraction).await {
            tracing::warn!(task = %self.id, error = %e, "could not record an export's progress");
        }
    }

    async fn stopped(&self) -> bool {
        {
            let mut last = self.last_look.lock().expect("last look");
            if last.is_some_and(|at| at.elapsed() < self.poll) {
                return false;
            }
            *last = Some(std::time::Instant::now());
        }
        matches!(self.recorder.load(&self.id).await, Ok(Some((task, _))) if task.status.is_terminal())
    }
}

/// Attempts at recording an export's `succeeded` before its file is given
/// up (the store is failing).
const RECORD_ATTEMPTS: u32 = 5;

/// The export step: writes the export's file and records `succeeded`
/// itself, because only it can remove the file when a cancel won the race
/// meanwhile. StopExecution does not stop a running Lambda, so the export
/// looks at the task's log every `poll` and stops (leaving nothing) once it
/// has ended. A failure comes back as an error named by its code, which
/// the state machine's Catch records as `failed`.
pub async fn run_export(
    recorder: &Recorder,
    exporter: &dyn Exporter,
    input: ExportInput,
    poll: Duration,
) -> Result<ExportOutput, StepError> {
    let (id, task) = load_task(recorder, &input.task_id).await?;
    if task.status.is_terminal() {
        return Ok(ExportOutput {
            status: task.status.kind(),
            result: None,
        });
    }
    let control = StepControl {
        recorder,
        id,
        poll,
        last_look: std::sync::Mutex::new(None),
    };
    let result = match exporter.export(&task, &control).await {
        Ok(result) => result,
        Err(ExportFailure::Stopped) => {
            let status = recorder
                .load(&id)
                .await
                .ok()
                .flatten()
                .map_or(StatusKind::Cancelled, |(task, _)| task.status.kind());
            return Ok(ExportOutput {
                status,
                result: None,
            });
        }
        Err(ExportFailure::Failed(error)) => return Err(task_failure(error, Vec::new())),
    };
    let mut pause = Duration::from_millis(200);
    for attempt in 1..=RECORD_ATTEMPTS {
        match recorder.succeeded(&id, result.clone(), Vec::new()).await {
            Ok(Recorded::Appended(task)) => {
                return Ok(ExportOutput {
                    status: task.status.kind(),
                    result: Some(result),
                });
            }
            Ok(Recorded::Unchanged(task)) => {
                exporter.discard(&result).await;
                return Ok(ExportOutput {
                    status: task.status.kind(),
                    result: None,
                });
            }
            Ok(Recorded::Missing) => break,
            Err(e) => {
                tracing::warn!(task = %id, error = %e, attempt, "could not record an export's success");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    exporter.discard(&result).await;
    Err(store_failure(format!(
        "the export of task {id} was written but its success could not be recorded"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_error_codes_pass_through_with_their_logs() {
        let cause = serde_json::json!({
            "errorType": "timeout",
            "errorMessage": serde_json::to_string(&FailureDetail { message: "ran too long".into(), logs: vec!["a".into()] }).unwrap(),
        })
        .to_string();
        let (error, logs) = caught_failure(Some("timeout"), Some(&cause));
        assert_eq!(
            (error.code.as_str(), error.message.as_str()),
            ("timeout", "ran too long")
        );
        assert_eq!(logs, ["a"]);
    }

    #[test]
    fn workflow_errors_are_named_as_such() {
        let (error, _) = caught_failure(Some("States.Timeout"), Some("the step timed out"));
        assert_eq!(error.code, "workflow-error");
        assert!(
            error.message.contains("States.Timeout"),
            "{}",
            error.message
        );
    }
}
