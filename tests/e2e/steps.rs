//! The state machine's steps, fed the payloads the state machine sends
//! (see infra/statemachine/task.asl.json): the record step, and the JS step
//! with its cancel watch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use taskgate_domain::recorder::Recorder;
use taskgate_domain::task::{JsLimits, Status, StatusKind, Task, TaskLimits, TaskSpec};
use taskgate_domain::user::{Level, User, Username};
use taskgate_js::ProcessRunner;
use taskgate_lambda::steps::{self, JsInput, RecordInput};

fn recorder() -> Recorder {
    Recorder::new(Arc::new(
        taskgate_embedded::EmbeddedStore::in_memory().unwrap(),
    ))
}

fn admin() -> User {
    taskgate_e2e::fixture_user("admin", Level::Admin)
}

async fn script(recorder: &Recorder, code: &str) -> Task {
    let spec = TaskSpec::js(code, &TaskLimits::default()).unwrap();
    let task = recorder.create(&spec, &admin(), u64::MAX).await.unwrap().0;
    recorder
        .started(&task.id, Some("execution".into()))
        .await
        .unwrap();
    task
}

fn runner() -> ProcessRunner {
    ProcessRunner::new(taskgate_e2e::js_worker(), JsLimits::default(), 2)
}

/// A payload as the state machine's Parameters build it.
fn payload<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn the_record_step_appends_once_and_reports_a_lost_race() {
    let recorder = recorder();
    let spec = TaskSpec::delay(1.0, &TaskLimits::default()).unwrap();
    let task = recorder.create(&spec, &admin(), u64::MAX).await.unwrap().0;
    let input = json!({"task_id": task.id.to_string(), "outcome": "succeeded", "result": 0});
    let first = steps::record(&recorder, payload::<RecordInput>(input.clone()))
        .await
        .unwrap();
    assert!(first.recorded);
    assert_eq!(first.status, StatusKind::Succeeded);
    let again = steps::record(&recorder, payload::<RecordInput>(input))
        .await
        .unwrap();
    assert!(!again.recorded, "a second outcome was recorded");
    let missing =
        json!({"task_id": uuid::Uuid::now_v7().to_string(), "outcome": "succeeded", "result": 0});
    let error = steps::record(&recorder, payload::<RecordInput>(missing))
        .await
        .unwrap_err();
    assert_eq!(error.error_type, "TaskNotFound");
}

#[tokio::test]
async fn a_script_step_result_and_a_caught_failure_end_up_in_the_log() {
    let recorder = recorder();
    let runner = runner();
    let ok = script(&recorder, "console.log('step'); 6 * 7").await;
    // The step records the outcome itself and returns only the status
    // (the execution's payloads are capped; the result is not).
    let output = steps::run_js(
        &recorder,
        &runner,
        payload::<JsInput>(json!({"task_id": ok.id.to_string()})),
        steps::CANCEL_POLL,
    )
    .await
    .unwrap();
    assert_eq!(
        output,
        steps::JsOutput {
            status: StatusKind::Succeeded,
            recorded: true
        }
    );
    assert!(serde_json::to_string(&output).unwrap().len() < 64);
    let task = recorder.load(&ok.id).await.unwrap().unwrap().0;
    assert_eq!(
        task.status,
        Status::Succeeded {
            result: json!(42),
            logs: vec!["step".to_owned()]
        }
    );

    let bad = script(&recorder, "console.log('before'); null.boom").await;
    let output = steps::run_js(
        &recorder,
        &runner,
        payload(json!({"task_id": bad.id.to_string()})),
        steps::CANCEL_POLL,
    )
    .await
    .unwrap();
    assert_eq!((output.status, output.recorded), (StatusKind::Failed, true));
    let task = recorder.load(&bad.id).await.unwrap().unwrap().0;
    let Status::Failed { error, logs } = task.status else {
        panic!("not failed: {:?}", task.status);
    };
    assert_eq!(error.code, "script-error");
    assert!(error.message.contains("TypeError"), "{}", error.message);
    assert_eq!(logs, ["before"]);
}

#[tokio::test]
async fn the_js_step_stops_a_script_once_its_task_is_cancelled() {
    let recorder = recorder();
    let runner = runner();
    let task = script(&recorder, "for (;;) {}").await;
    let canceller = recorder.clone();
    let id = task.id;
    let cancelled_at = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        canceller
            .cancelled(&id, &Username::parse("admin").unwrap())
            .await
            .unwrap();
        Instant::now()
    });
    let output = steps::run_js(
        &recorder,
        &runner,
        payload(json!({"task_id": task.id.to_string()})),
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    let stopped_after = cancelled_at.await.unwrap().elapsed();
    // The cancel stands: the step records nothing over it.
    assert_eq!(
        (output.status, output.recorded),
        (StatusKind::Cancelled, false)
    );
    assert!(
        stopped_after < Duration::from_secs(1),
        "the script ran {stopped_after:?} past its cancel"
    );
    // A Catch that tried to record a failure would change nothing either.
    let cause = json!({"errorType": "cancelled", "errorMessage": "cancelled"}).to_string();
    let recorded = steps::record(
        &recorder,
        payload(json!({"task_id": task.id.to_string(), "outcome": "failed", "error": "cancelled", "cause": cause})),
    )
    .await
    .unwrap();
    assert!(!recorded.recorded);
    assert_eq!(recorded.status, StatusKind::Cancelled);
}
