//! The Step Functions workflow adapter against a real implementation of the
//! Step Functions API that runs here (moto's server, started by tests/run.sh,
//! with state-machine execution on): our own state machine definition, the
//! delay path running through its Wait state to completion, and a stop.
//!
//! moto answers the Lambda task states with a stub payload, so the steps'
//! own code is tested separately (tests/e2e/steps.rs).

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType, StateMachineType};
use serde_json::json;
use taskgate_aws::workflow::StepFunctionsWorkflow;
use taskgate_domain::ports::Workflow;
use taskgate_domain::recorder::Recorder;
use taskgate_domain::task::{EventData, Status, StatusKind, Task, TaskLimits, TaskSpec};
use taskgate_domain::user::Level;
use taskgate_e2e::deployment::moto_auth;

fn endpoint() -> String {
    std::env::var("TASKGATE_TEST_SFN_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "TASKGATE_TEST_SFN_ENDPOINT is not set. Run the suite with tests/run.sh, which starts \
             moto's Step Functions API, or start one (infra/local/moto-server.sh start DIR) and export it."
        )
    })
}

/// Creates stand-ins for the three step functions and our state machine.
pub(crate) async fn state_machine(name: &str) -> (aws_sdk_sfn::Client, String) {
    let endpoint = endpoint();
    let http = reqwest::Client::new();
    let role = "arn:aws:iam::123456789012:role/taskgate-test";
    // The role may exist from another test; moto then answers 409, which is fine.
    http.post(format!("{endpoint}/"))
        .header("authorization", moto_auth("iam"))
        .form(&[
            ("Action", "CreateRole"),
            ("Version", "2010-05-08"),
            ("RoleName", "taskgate-test"),
            ("AssumeRolePolicyDocument", r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":["lambda.amazonaws.com","states.amazonaws.com"]},"Action":"sts:AssumeRole"}]}"#),
        ])
        .send()
        .await
        .unwrap();
    let empty_zip = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
    );
    let mut arns = Vec::new();
    for step in ["record", "js", "export"] {
        let response = http
            .post(format!("{endpoint}/2015-03-31/functions"))
            .header("authorization", moto_auth("lambda"))
            .json(&json!({
                "FunctionName": format!("{name}-{step}"),
                "Runtime": "provided.al2023",
                "Role": role,
                "Handler": "bootstrap",
                "Code": {"ZipFile": empty_zip},
            }))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        arns.push(
            body["FunctionArn"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
                .to_owned(),
        );
    }
    let definition = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/statemachine/task.asl.json"
    ))
    .unwrap()
    .replace("${RecordFunctionArn}", &arns[0])
    .replace("${JsFunctionArn}", &arns[1])
    .replace("${ExportFunctionArn}", &arns[2]);
    let sdk = taskgate_aws::load_sdk_config(Some(&endpoint)).await;
    let client = taskgate_aws::sfn_client(&sdk, Some(&endpoint));
    let created = client
        .create_state_machine()
        .name(name)
        .definition(definition)
        .role_arn(role)
        .r#type(StateMachineType::Standard)
        .send()
        .await
        .unwrap();
    (client, created.state_machine_arn().to_owned())
}

/// A delay task as the API creates it (due `seconds` from now), with the
/// recorder that keeps its log.
async fn delay_task(seconds: f64) -> (Recorder, Task) {
    let store = std::sync::Arc::new(taskgate_embedded::EmbeddedStore::in_memory().unwrap());
    let owner = taskgate_e2e::fixture_user("alice", Level::User);
    let spec = TaskSpec::delay(seconds, &TaskLimits::default()).unwrap();
    let recorder = Recorder::new(store);
    let task = recorder.create(&spec, &owner, u64::MAX).await.unwrap().0;
    (recorder, task)
}

/// The execution recorded by the task's `started` event(s).
async fn recorded_executions(recorder: &Recorder, task: &Task) -> Vec<Option<String>> {
    let (_, events) = recorder.load(&task.id).await.unwrap().unwrap();
    events
        .into_iter()
        .filter_map(|event| match event.change {
            EventData::Started { execution } => Some(execution),
            _ => None,
        })
        .collect()
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

async fn wait_for(
    workflow: &StepFunctionsWorkflow,
    task: &Task,
    wanted: ExecutionStatus,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let status = workflow.status(&task.id).await.unwrap();
        if status.as_ref() == Some(&wanted) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "execution still {status:?}, wanted {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_execution_waits_until_due_then_records_and_succeeds() {
    let name = unique("delay");
    let (client, arn) = state_machine(&name).await;
    let (recorder, task) = delay_task(2.0).await;
    let workflow = StepFunctionsWorkflow::new(client.clone(), &arn, recorder.clone());
    let started = workflow.start(&task).await.unwrap();
    assert_eq!(started.status, Status::Running);
    let execution = workflow.execution_arn(&task.id);
    assert_eq!(
        recorded_executions(&recorder, &task).await,
        vec![Some(execution.clone())],
        "`started` names the execution, which is named by the task id"
    );
    assert_eq!(
        workflow.status(&task.id).await.unwrap(),
        Some(ExecutionStatus::Running)
    );
    wait_for(
        &workflow,
        &task,
        ExecutionStatus::Succeeded,
        Duration::from_secs(30),
    )
    .await;

    let history = client
        .get_execution_history()
        .execution_arn(&execution)
        .send()
        .await
        .unwrap();
    let kinds: Vec<&HistoryEventType> = history.events().iter().map(|e| e.r#type()).collect();
    assert!(
        kinds.contains(&&HistoryEventType::WaitStateEntered),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&&HistoryEventType::WaitStateExited),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().any(|k| matches!(
            k,
            HistoryEventType::TaskScheduled | HistoryEventType::LambdaFunctionScheduled
        )),
        "the record step was not invoked: {kinds:?}"
    );
    let input = client
        .describe_execution()
        .execution_arn(&execution)
        .send()
        .await
        .unwrap();
    let input: serde_json::Value = serde_json::from_str(input.input().unwrap()).unwrap();
    assert_eq!(input["type"], "delay");
    assert_eq!(input["task_id"], task.id.to_string());
    assert_eq!(
        input["due_at"],
        taskgate_domain::timestamp::format(task.due_at.unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_aborts_a_waiting_execution_and_starting_twice_starts_once() {
    let name = unique("stop");
    let (client, arn) = state_machine(&name).await;
    let (recorder, task) = delay_task(3600.0).await;
    let workflow = StepFunctionsWorkflow::new(client.clone(), &arn, recorder.clone());
    let first = workflow.start(&task).await.unwrap();
    let second = workflow.start(&task).await.unwrap();
    assert_eq!(
        (first.status, second.status),
        (Status::Running, Status::Running)
    );
    assert_eq!(
        recorded_executions(&recorder, &task).await,
        vec![Some(workflow.execution_arn(&task.id))],
        "the second start records nothing more"
    );
    let executions = client
        .list_executions()
        .state_machine_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(executions.executions().len(), 1);
    assert_eq!(
        workflow.status(&task.id).await.unwrap(),
        Some(ExecutionStatus::Running)
    );

    workflow.stop(&task.id).await.unwrap();
    wait_for(
        &workflow,
        &task,
        ExecutionStatus::Aborted,
        Duration::from_secs(10),
    )
    .await;
    // Stopping an execution that never existed is not an error either.
    workflow.stop(&delay_task(1.0).await.1.id).await.unwrap();
}

/// When Step Functions refuses to start the execution, `POST /tasks` still
/// answers (202, with the task) and the task has failed with
/// `workflow-unavailable`: it is never left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_execution_cannot_start_fails_at_once() {
    use secrecy::{ExposeSecret, SecretSlice};
    use std::sync::Arc;
    use taskgate_api::AppState;
    use taskgate_app::settings::Settings;
    use tower::ServiceExt as _;

    let endpoint = endpoint();
    let sdk = taskgate_aws::load_sdk_config(Some(&endpoint)).await;
    let client = taskgate_aws::sfn_client(&sdk, Some(&endpoint));
    let store = Arc::new(taskgate_embedded::EmbeddedStore::in_memory().unwrap());
    let state = AppState::new(
        store.clone(),
        &SecretSlice::from(vec![3u8; 64]),
        Settings::default(),
    )
    .unwrap();
    let missing = "arn:aws:states:us-east-1:123456789012:stateMachine:no-such-machine";
    let workflow = StepFunctionsWorkflow::new(client, missing, state.recorder.clone());
    let state = state.with_workflow(Arc::new(workflow));

    let alice = taskgate_e2e::fixture_user("alice", Level::User);
    taskgate_domain::ports::UserStore::insert_user(store.as_ref(), &alice)
        .await
        .unwrap();
    let issued = state
        .keys
        .issue(&alice, Duration::from_secs(60), state.clock.now());
    taskgate_domain::ports::TokenStore::insert_token(store.as_ref(), &issued.record)
        .await
        .unwrap();

    let request = http::Request::builder()
        .method("POST")
        .uri("/tasks")
        .header("content-type", "application/json")
        .header(
            "authorization",
            format!("Bearer {}", issued.token.expose_secret()),
        )
        .body(axum::body::Body::from(r#"{"type":"delay","seconds":1}"#))
        .unwrap();
    let state = Arc::new(state);
    let response = taskgate_api::app(Arc::clone(&state))
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let task: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["code"], "workflow-unavailable", "{task}");
    let id = taskgate_domain::task::TaskId::parse(task["id"].as_str().unwrap()).unwrap();
    let (stored, _) = state.recorder.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.status.kind(), StatusKind::Failed);
}
