//! The Step Functions workflow: one Standard execution per task, named by the
//! task id (so starting a task twice starts it once), stopped on cancel.
//!
//! The state machine (`infra/statemachine/task.asl.json`) gets
//! `{"task_id", "type", "due_at"?}`: a delay waits until `due_at` (computed
//! when the task was created), a script runs in the JS step function, and a
//! record step appends the outcome to the task log.

use async_trait::async_trait;
use aws_sdk_sfn::Client;
use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::types::ExecutionStatus;
use serde::Serialize;
use taskgate_domain::ports::{Workflow, WorkflowError};
use taskgate_domain::recorder::Recorder;
use taskgate_domain::task::{Task, TaskId};

/// What tasks run by Step Functions record as their engine.
pub const ENGINE: &str = "step-functions";

#[derive(Clone)]
pub struct StepFunctionsWorkflow {
    client: Client,
    state_machine_arn: String,
    recorder: Recorder,
}

/// The execution input. Field names are the state machine's contract.
#[derive(Serialize)]
struct Input<'a> {
    task_id: String,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    due_at: Option<String>,
}

fn workflow_error<E, R>(err: SdkError<E, R>) -> WorkflowError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(&err).to_string();
    let retryable = matches!(
        &err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    ) || err
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| {
            code.contains("Throttl") || code == "ServiceUnavailable" || code == "InternalFailure"
        });
    if retryable {
        WorkflowError::Unavailable(detail)
    } else {
        WorkflowError::Other(detail)
    }
}

impl StepFunctionsWorkflow {
    /// `recorder` writes the `started` event into the task log.
    pub fn new(client: Client, state_machine_arn: impl Into<String>, recorder: Recorder) -> Self {
        Self {
            client,
            state_machine_arn: state_machine_arn.into(),
            recorder,
        }
    }

    /// `arn:…:stateMachine:NAME` → `arn:…:execution:NAME:<task id>`.
    pub fn execution_arn(&self, task: &TaskId) -> String {
        format!(
            "{}:{task}",
            self.state_machine_arn
                .replacen(":stateMachine:", ":execution:", 1)
        )
    }

    /// The execution's status, if it exists (for operators and tests).
    pub async fn status(&self, task: &TaskId) -> Result<Option<ExecutionStatus>, WorkflowError> {
        match self
            .client
            .describe_execution()
            .execution_arn(self.execution_arn(task))
            .send()
            .await
        {
            Ok(output) => Ok(Some(output.status().clone())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist()) =>
            {
                Ok(None)
            }
            Err(e) => Err(workflow_error(e)),
        }
    }
}

#[async_trait]
impl Workflow for StepFunctionsWorkflow {
    fn engine(&self) -> Option<String> {
        Some(ENGINE.to_owned())
    }

    async fn start(&self, task: &Task) -> Result<Task, WorkflowError> {
        let input = Input {
            task_id: task.id.to_string(),
            kind: task.kind().as_str(),
            due_at: task.due_at.map(taskgate_domain::timestamp::format),
        };
        let input = serde_json::to_string(&input).expect("the input always serialises");
        let execution = match self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(task.id.to_string())
            .input(input)
            .send()
            .await
        {
            Ok(output) => output.execution_arn().to_owned(),
            // Same name, same input: an earlier attempt already started it.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_execution_already_exists()) =>
            {
                self.execution_arn(&task.id)
            }
            Err(e) => return Err(workflow_error(e)),
        };
        // The execution reaches its first step only after this; should an
        // outcome still land first, the recorder skips `started`.
        self.recorder
            .started(&task.id, Some(execution))
            .await
            .map_err(|e| WorkflowError::Unavailable(e.to_string()))?
            .into_task()
            .ok_or_else(|| WorkflowError::Other(format!("there is no task {}", task.id)))
    }

    async fn stop(&self, task: &TaskId) -> Result<(), WorkflowError> {
        match self
            .client
            .stop_execution()
            .execution_arn(self.execution_arn(task))
            .error("TaskCancelled")
            .cause("the task was cancelled")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist()) =>
            {
                Ok(())
            }
            Err(e) => Err(workflow_error(e)),
        }
    }
}
