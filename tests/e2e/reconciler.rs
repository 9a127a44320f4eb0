//! The reconciler against DynamoDB Local, fed EventBridge's event for an
//! execution that ended (tests/fixtures/eventbridge): a task left running
//! is recorded `failed` (`workflow-error`), once; a task that ended stays as
//! it was; events of other executions change nothing.

use std::sync::Arc;

use serde_json::{Value, json};
use taskgate_domain::recorder::Recorder;
use taskgate_domain::task::{Status, TaskLimits, TaskSpec};
use taskgate_domain::user::Level;
use taskgate_e2e::fixture_user;
use taskgate_lambda::reconcile::{Reconciled, reconcile};

fn event(task: &str, status: &str) -> Value {
    let path = format!(
        "{}/../tests/fixtures/eventbridge/execution-status-change.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("REPLACED-BY-THE-TEST", task);
    let mut event: Value = serde_json::from_str(&text).unwrap();
    event["detail"]["status"] = json!(status);
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_that_ended_without_an_outcome_fail_their_task_once() {
    let store = Arc::new(taskgate_e2e::dynamodb_store().await);
    let recorder = Recorder::new(store.clone()).with_engine(Some("step-functions".into()));
    let owner = fixture_user("alice", Level::User);
    let delay = TaskSpec::delay(60.0, &TaskLimits::default()).unwrap();

    // Running when its execution was stopped from the console.
    let (stuck, _) = recorder.create(&delay, &owner, u64::MAX).await.unwrap();
    recorder
        .started(&stuck.id, Some("arn:…".into()))
        .await
        .unwrap();
    let id = stuck.id.to_string();
    assert_eq!(
        reconcile(&recorder, &event(&id, "ABORTED")).await.unwrap(),
        Reconciled::Failed(stuck.id)
    );
    let (task, events) = recorder.load(&stuck.id).await.unwrap().unwrap();
    let Status::Failed { error, .. } = &task.status else {
        panic!("not failed: {:?}", task.status);
    };
    assert_eq!(error.code, "workflow-error");
    assert!(error.message.contains("aborted"));
    // Once: the same event again (EventBridge delivers at least once).
    assert_eq!(
        reconcile(&recorder, &event(&id, "ABORTED")).await.unwrap(),
        Reconciled::AlreadyEnded(stuck.id)
    );
    assert_eq!(recorder.load(&stuck.id).await.unwrap().unwrap().1, events);
    // No longer counted as unfinished.
    assert_eq!(
        taskgate_domain::ports::TaskLog::active_tasks(store.as_ref(), &owner.user_id)
            .await
            .unwrap(),
        0
    );

    // An execution that ended after recording its outcome: nothing changes.
    let (done, _) = recorder.create(&delay, &owner, u64::MAX).await.unwrap();
    recorder.started(&done.id, None).await.unwrap();
    recorder
        .succeeded(&done.id, json!(0), Vec::new())
        .await
        .unwrap();
    let before = recorder.load(&done.id).await.unwrap().unwrap().1;
    for status in ["SUCCEEDED", "FAILED", "TIMED_OUT"] {
        assert_eq!(
            reconcile(&recorder, &event(&done.id.to_string(), status))
                .await
                .unwrap(),
            Reconciled::AlreadyEnded(done.id)
        );
    }
    assert_eq!(recorder.load(&done.id).await.unwrap().unwrap().1, before);

    // Still running, not a task's, or no such task: ignored.
    let (running, _) = recorder.create(&delay, &owner, u64::MAX).await.unwrap();
    assert!(matches!(
        reconcile(&recorder, &event(&running.id.to_string(), "RUNNING"))
            .await
            .unwrap(),
        Reconciled::Ignored(_)
    ));
    assert_eq!(
        recorder.load(&running.id).await.unwrap().unwrap().0.status,
        Status::Pending
    );
    assert!(matches!(
        reconcile(&recorder, &event("someone-elses-execution", "FAILED"))
            .await
            .unwrap(),
        Reconciled::Ignored(_)
    ));
    assert!(matches!(
        reconcile(
            &recorder,
            &event(&taskgate_domain::task::TaskId::new().to_string(), "FAILED")
        )
        .await
        .unwrap(),
        Reconciled::Ignored(_)
    ));
}
