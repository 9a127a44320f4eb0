//! The sweep of tasks that were created but never started (the start
//! function died between writing `created` and starting the execution), on
//! DynamoDB Local and moto's Step Functions: each such task is started, or
//! failed with `workflow-unavailable`, exactly once, whatever races it.

use std::sync::Arc;
use std::time::Duration;

use taskgate_aws::workflow::StepFunctionsWorkflow;
use taskgate_domain::ports::Workflow;
use taskgate_domain::recorder::Recorder;
use taskgate_domain::task::{EventData, Status, StatusKind, Task, TaskLimits, TaskSpec};
use taskgate_domain::user::{Level, Username};
use taskgate_lambda::reconcile::sweep;

/// A delay task as the API creates it, with nothing started.
async fn created(recorder: &Recorder, seconds: f64) -> Task {
    let owner = taskgate_e2e::fixture_user("alice", Level::User);
    let spec = TaskSpec::delay(seconds, &TaskLimits::default()).unwrap();
    recorder.create(&spec, &owner, u64::MAX).await.unwrap().0
}

async fn started_events(recorder: &Recorder, task: &Task) -> usize {
    let (_, events) = recorder.load(&task.id).await.unwrap().unwrap();
    events
        .iter()
        .filter(|e| matches!(e.change, EventData::Started { .. }))
        .count()
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_never_started_is_started_once_even_racing_a_late_start() {
    let store = Arc::new(taskgate_e2e::dynamodb_store().await);
    let recorder = Recorder::new(store.clone());
    let (client, arn) = crate::sfn::state_machine(&unique("sweep")).await;
    let workflow = StepFunctionsWorkflow::new(client, &arn, recorder.clone());
    let now = || time::OffsetDateTime::now_utc() + Duration::from_secs(1);

    // Started normally: its marker is cleared, the sweep does not see it.
    let normal = created(&recorder, 3600.0).await;
    workflow.start(&normal).await.unwrap();
    let swept = sweep(&store, &recorder, &workflow, now(), Duration::ZERO)
        .await
        .unwrap();
    assert!(!swept.started.contains(&normal.id), "{swept:?}");

    // A young task is left alone (its start may be under way).
    let young = created(&recorder, 3600.0).await;
    let swept = sweep(
        &store,
        &recorder,
        &workflow,
        now(),
        Duration::from_secs(300),
    )
    .await
    .unwrap();
    assert!(!swept.started.contains(&young.id), "{swept:?}");
    assert_eq!(
        recorder.load(&young.id).await.unwrap().unwrap().0.status,
        Status::Pending
    );

    // Stuck, and its start arrives late, at the same moment as the sweep.
    let stuck = created(&recorder, 3600.0).await;
    let (swept, late) = tokio::join!(
        sweep(&store, &recorder, &workflow, now(), Duration::ZERO),
        workflow.start(&stuck),
    );
    let swept = swept.unwrap();
    late.unwrap();
    assert_eq!(started_events(&recorder, &stuck).await, 1, "started once");
    assert_eq!(
        workflow.status(&stuck.id).await.unwrap(),
        Some(aws_sdk_sfn::types::ExecutionStatus::Running),
        "one execution, named by the task"
    );
    assert!(swept.failed.is_empty(), "{swept:?}");
    // The young one was old enough this time: started by the sweep.
    assert!(swept.started.contains(&young.id), "{swept:?}");
    assert_eq!(
        recorder.load(&young.id).await.unwrap().unwrap().0.status,
        Status::Running
    );

    // A second sweep finds nothing of them: once.
    let again = sweep(&store, &recorder, &workflow, now(), Duration::ZERO)
        .await
        .unwrap();
    for task in [&normal, &young, &stuck] {
        assert!(
            !again.started.contains(&task.id) && !again.failed.contains(&task.id),
            "{again:?}"
        );
        assert_eq!(started_events(&recorder, task).await, 1);
    }

    // A task cancelled while pending keeps its marker until a sweep clears
    // it, and stays cancelled.
    let cancelled = created(&recorder, 3600.0).await;
    recorder
        .cancelled(&cancelled.id, &Username::parse("alice").unwrap())
        .await
        .unwrap();
    let swept = sweep(&store, &recorder, &workflow, now(), Duration::ZERO)
        .await
        .unwrap();
    assert!(swept.cleared >= 1 && swept.started.is_empty(), "{swept:?}");
    assert_eq!(
        recorder
            .load(&cancelled.id)
            .await
            .unwrap()
            .unwrap()
            .0
            .status
            .kind(),
        StatusKind::Cancelled
    );
    let swept = sweep(&store, &recorder, &workflow, now(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(swept, Default::default(), "nothing left to sweep");

    for task in [&normal, &young, &stuck] {
        workflow.stop(&task.id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_task_step_functions_refuses_fails_with_a_clear_code() {
    let store = Arc::new(taskgate_e2e::dynamodb_store().await);
    let recorder = Recorder::new(store.clone());
    let (client, arn) = crate::sfn::state_machine(&unique("gone")).await;
    // A state machine that does not exist (deleted, or a wrong ARN).
    let missing = format!("{arn}-deleted");
    let workflow = StepFunctionsWorkflow::new(client, &missing, recorder.clone());
    let stuck = created(&recorder, 1.0).await;
    let now = time::OffsetDateTime::now_utc() + Duration::from_secs(1);
    let swept = sweep(&store, &recorder, &workflow, now, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(swept.failed, vec![stuck.id], "{swept:?}");
    let task = recorder.load(&stuck.id).await.unwrap().unwrap().0;
    let Status::Failed { error, .. } = task.status else {
        panic!("not failed: {:?}", task.status);
    };
    assert_eq!(error.code, "workflow-unavailable");
    let again = sweep(&store, &recorder, &workflow, now, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again, Default::default());
}
