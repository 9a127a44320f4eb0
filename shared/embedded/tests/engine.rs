//! The local engine with controlled time: no test here sleeps for a delay.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use taskgate_domain::password::PasswordHash;
use taskgate_domain::ports::{JsFailure, JsOutput, JsRunner, Workflow};
use taskgate_domain::recorder::Recorder;
use taskgate_domain::task::{Status, StatusKind, Task, TaskError, TaskId, TaskLimits, TaskSpec};
use taskgate_domain::user::{Level, User, Username};
use taskgate_embedded::EmbeddedStore;
use taskgate_embedded::engine::{LocalEngine, ManualClock, Recovery};

/// A stand-in runner: a script `fail` fails, `hang` runs until cancelled,
/// anything else returns its own text.
struct FakeJs;

#[async_trait]
impl JsRunner for FakeJs {
    async fn run(
        &self,
        _task: &TaskId,
        code: &str,
        cancel: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Result<JsOutput, JsFailure> {
        match code {
            "fail" => Err(JsFailure {
                error: TaskError::new("script-error", "uncaught Error: fail"),
                logs: vec!["before".into()],
            }),
            "hang" => {
                cancel.await;
                Err(JsFailure {
                    error: TaskError::new("cancelled", "stopped"),
                    logs: vec![],
                })
            }
            other => Ok(JsOutput {
                result: serde_json::json!(other),
                logs: vec!["ran".into()],
            }),
        }
    }
}

struct Setup {
    recorder: Recorder,
    engine: LocalEngine,
    clock: Arc<ManualClock>,
    owner: User,
}

fn setup() -> Setup {
    let store = Arc::new(EmbeddedStore::in_memory().unwrap());
    let recorder = Recorder::new(store);
    let clock = Arc::new(ManualClock::new(taskgate_domain::now()));
    let engine = LocalEngine::new(recorder.clone(), Arc::new(FakeJs), clock.clone(), "test")
        .with_exclusive_store();
    let hash = PasswordHash::parse(
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3V7s8wPDxVyEkXmz4jtoTrhpgXT4x3rKxhWFSmsHCGc",
    )
    .unwrap();
    let owner = User::new(
        Username::parse("alice").unwrap(),
        hash,
        Level::Admin,
        None,
        None,
    );
    Setup {
        recorder,
        engine,
        clock,
        owner,
    }
}

impl Setup {
    async fn create(&self, spec: TaskSpec) -> Task {
        self.recorder
            .create(&spec, &self.owner, u64::MAX)
            .await
            .unwrap()
            .0
    }

    async fn status(&self, id: &TaskId) -> Task {
        self.recorder.load(id).await.unwrap().unwrap().0
    }

    /// Waits (real time, briefly) until the task reaches a terminal status.
    async fn finished(&self, id: &TaskId) -> Task {
        for _ in 0..200 {
            let task = self.status(id).await;
            if task.status.is_terminal() {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task {id} did not finish");
    }

    /// Lets runs react to a clock change, then reads the task.
    async fn settled(&self, id: &TaskId) -> Task {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.status(id).await
    }
}

fn delay(seconds: f64) -> TaskSpec {
    TaskSpec::delay(seconds, &TaskLimits::default()).unwrap()
}

#[tokio::test]
async fn a_delay_succeeds_when_due_and_not_a_moment_before() {
    let s = setup();
    let task = s.create(delay(86_400.0)).await;
    s.engine.start(&task).await.unwrap();
    s.clock.advance(Duration::from_secs(86_399));
    assert_eq!(s.settled(&task.id).await.status, Status::Running);
    s.clock.advance(Duration::from_secs(2));
    let done = s.finished(&task.id).await;
    assert_eq!(
        done.status,
        Status::Succeeded {
            result: serde_json::json!(0),
            logs: vec![]
        }
    );
    assert_eq!(s.engine.running(), 0);
}

#[tokio::test]
async fn a_zero_second_delay_succeeds_at_once() {
    let s = setup();
    let task = s.create(delay(0.0)).await;
    // Due at its creation, which the manual clock (set up earlier) may not have reached.
    s.clock.advance(Duration::from_secs(1));
    s.engine.start(&task).await.unwrap();
    assert_eq!(
        s.finished(&task.id).await.status.kind(),
        StatusKind::Succeeded
    );
}

#[tokio::test]
async fn scripts_record_their_result_or_their_error_with_logs() {
    let s = setup();
    let ok = s
        .create(TaskSpec::js("42", &TaskLimits::default()).unwrap())
        .await;
    let bad = s
        .create(TaskSpec::js("fail", &TaskLimits::default()).unwrap())
        .await;
    s.engine.start(&ok).await.unwrap();
    s.engine.start(&bad).await.unwrap();
    let ok = s.finished(&ok.id).await;
    assert_eq!(
        ok.status,
        Status::Succeeded {
            result: serde_json::json!("42"),
            logs: vec!["ran".to_owned()]
        }
    );
    let bad = s.finished(&bad.id).await;
    let Status::Failed { error, logs } = bad.status else {
        panic!("not failed: {:?}", bad.status);
    };
    assert_eq!(error.code, "script-error");
    assert_eq!(logs, ["before"]);
}

#[tokio::test]
async fn stopping_a_run_records_nothing_and_ends_it() {
    let s = setup();
    let waiting = s.create(delay(600.0)).await;
    let hanging = s
        .create(TaskSpec::js("hang", &TaskLimits::default()).unwrap())
        .await;
    s.engine.start(&waiting).await.unwrap();
    s.engine.start(&hanging).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.engine.running(), 2);
    // As the API does: record the cancel, then stop the run.
    for task in [&waiting, &hanging] {
        s.recorder
            .cancelled(&task.id, &s.owner.username)
            .await
            .unwrap();
        s.engine.stop(&task.id).await.unwrap();
    }
    s.clock.advance(Duration::from_secs(601));
    for task in [&waiting, &hanging] {
        let events = s.recorder.load(&task.id).await.unwrap().unwrap().1;
        assert_eq!(events.len(), 3, "{events:#?}");
        assert_eq!(
            s.status(&task.id).await.status,
            Status::Cancelled {
                by: s.owner.username.clone()
            }
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.engine.running(), 0);
}

#[tokio::test]
async fn recovery_resumes_delays_and_interrupts_scripts() {
    let s = setup();
    let due_later = s.create(delay(300.0)).await;
    let started_script = s
        .create(TaskSpec::js("hang", &TaskLimits::default()).unwrap())
        .await;
    s.recorder.started(&started_script.id, None).await.unwrap();
    let finished = s.create(delay(1.0)).await;
    s.recorder
        .succeeded(&finished.id, serde_json::json!(0), vec![])
        .await
        .unwrap();

    // A new engine, as after a restart, on the same store.
    let engine = LocalEngine::new(
        s.recorder.clone(),
        Arc::new(FakeJs),
        s.clock.clone(),
        "test",
    )
    .with_exclusive_store();
    let recovery = engine.recover().await.unwrap();
    assert_eq!(
        recovery,
        Recovery {
            resumed: 1,
            interrupted: 1,
            others: 0,
        }
    );
    let script = s.status(&started_script.id).await;
    let Status::Failed { error, .. } = script.status else {
        panic!("not failed: {:?}", script.status);
    };
    assert_eq!(error.code, "interrupted");
    assert_eq!(s.settled(&due_later.id).await.status, Status::Running);
    s.clock.advance(Duration::from_secs(301));
    assert_eq!(
        s.finished(&due_later.id).await.status.kind(),
        StatusKind::Succeeded
    );
    assert_eq!(
        s.recorder
            .load(&finished.id)
            .await
            .unwrap()
            .unwrap()
            .1
            .len(),
        2
    );
}

#[tokio::test]
async fn shutdown_stops_runs_without_recording_and_refuses_new_ones() {
    let s = setup();
    let task = s.create(delay(600.0)).await;
    s.engine.start(&task).await.unwrap();
    s.engine.shutdown().await;
    assert_eq!(s.engine.running(), 0);
    assert_eq!(s.status(&task.id).await.status, Status::Running);
    let another = s.create(delay(1.0)).await;
    assert!(s.engine.start(&another).await.is_err());
}
