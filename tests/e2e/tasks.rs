//! Tasks through the API: start, poll, cancel, list, history, limits,
//! JavaScript failures, and what survives a restart.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskgate_domain::task::JsLimits;
use taskgate_e2e::{
    Backend, TestApp, assert_problem, on_each_backend, processes_mentioning, status_and_json,
};

on_each_backend!(
    a_delay_runs_to_success_on_time_with_a_sound_history,
    a_script_returns_its_value_and_console_lines,
    cancelling_stops_the_work_and_records_who,
    cancelling_a_finished_task_is_409_and_changes_nothing,
    listing_filters_by_status_and_pages,
    cancel_and_completion_racing_end_with_one_outcome,
    unfinished_tasks_are_resumed_or_failed_after_a_restart,
    active_tasks_are_bounded_per_account,
);

const LONG: Duration = Duration::from_secs(30);

fn time(value: &Value) -> time::OffsetDateTime {
    taskgate_domain::timestamp::parse(value.as_str().unwrap()).unwrap()
}

async fn a_delay_runs_to_success_on_time_with_a_sound_history(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let started = Instant::now();
    let task = app
        .start_task(&alice, json!({"type": "delay", "seconds": 1.5}))
        .await;
    assert!(
        ["pending", "running"].contains(&task["status"].as_str().unwrap()),
        "{task}"
    );
    assert_eq!(
        (task["type"].clone(), task["owner"].clone()),
        (json!("delay"), json!("alice"))
    );
    assert!(
        task.get("result").is_none(),
        "a result before success: {task}"
    );
    let progress = task["progress"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&progress), "{task}");

    let id = task["id"].as_str().unwrap();
    let done = app.finished_task(&alice, id, LONG).await;
    assert_eq!(
        (
            done["status"].clone(),
            done["result"].clone(),
            done["progress"].clone()
        ),
        (json!("succeeded"), json!(0), json!(1.0))
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "finished early"
    );

    let events = app.task_events(&alice, id).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "started", "succeeded"], "{events:#?}");
    let due = time(&events[0]["data"]["due_at"]);
    assert!(
        time(&events[2]["at"]) >= due,
        "succeeded before it was due: {events:#?}"
    );
    assert_eq!(events[0]["prev_hash"], "0".repeat(64));
    for pair in events.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
        assert_eq!(
            pair[1]["seq"].as_u64().unwrap(),
            pair[0]["seq"].as_u64().unwrap() + 1
        );
    }
    assert_eq!(events[0]["actor"], "alice");
}

async fn a_script_returns_its_value_and_console_lines(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let code = "console.log('doubling'); Promise.resolve([1, 2, 3].map(x => x * 2))";
    let task = app
        .start_task(&admin, json!({"type": "js", "code": code}))
        .await;
    let done = app
        .finished_task(&admin, task["id"].as_str().unwrap(), LONG)
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"], json!([2, 4, 6]));
    assert_eq!(done["logs"], json!(["doubling"]));
    assert!(
        done.get("progress").is_none(),
        "a script cannot tell its progress: {done}"
    );
    let events = app.task_events(&admin, task["id"].as_str().unwrap()).await;
    assert_eq!(events[0]["data"]["code"], code);
}

async fn cancelling_stops_the_work_and_records_who(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let script = app
        .start_task(&admin, json!({"type": "js", "code": "for (;;) {}"}))
        .await;
    let delay = app
        .start_task(&admin, json!({"type": "delay", "seconds": 3600}))
        .await;
    let script_id = script["id"].as_str().unwrap();
    let marker = format!("--task={script_id}");
    for _ in 0..200 {
        if !processes_mentioning(&marker).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        !processes_mentioning(&marker).is_empty(),
        "the script never started"
    );
    assert_eq!(app.server().engine().running(), 2);

    let asked = Instant::now();
    let (status, cancelled) = status_and_json(
        app.request(
            Method::POST,
            &format!("/tasks/{script_id}/cancel"),
            Some(&admin),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(
        (
            cancelled["status"].clone(),
            cancelled["cancelled_by"].clone()
        ),
        (json!("cancelled"), json!("admin"))
    );
    while !processes_mentioning(&marker).is_empty() {
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "the script still runs {:?} after cancel",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let delay_id = delay["id"].as_str().unwrap();
    let response = app
        .request(
            Method::POST,
            &format!("/tasks/{delay_id}/cancel"),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    while app.server().engine().running() > 0 {
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "runs left after cancel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in [script_id, delay_id] {
        let events = app.task_events(&admin, id).await;
        let last = events.last().unwrap();
        assert_eq!(
            (
                last["type"].clone(),
                last["actor"].clone(),
                last["data"]["by"].clone()
            ),
            (json!("cancelled"), json!("admin"), json!("admin"))
        );
        assert_eq!(
            events
                .iter()
                .filter(
                    |e| ["succeeded", "failed", "cancelled"].contains(&e["type"].as_str().unwrap())
                )
                .count(),
            1
        );
    }
}

async fn cancelling_a_finished_task_is_409_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let task = app
        .start_task(&admin, json!({"type": "delay", "seconds": 0}))
        .await;
    let id = task["id"].as_str().unwrap();
    app.finished_task(&admin, id, LONG).await;
    let before = app.task_events(&admin, id).await;
    let response = app
        .request(Method::POST, &format!("/tasks/{id}/cancel"), Some(&admin))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::CONFLICT, "task-finished").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("succeeded"),
        "{problem}"
    );
    assert_eq!(app.task_events(&admin, id).await, before);
    let (_, task) = status_and_json(app.get(&format!("/tasks/{id}"), Some(&admin)).await).await;
    assert_eq!(task["status"], "succeeded");
}

async fn listing_filters_by_status_and_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let bob = app.user_with_token(&admin, "bob", "user").await;
    let mut finished = Vec::new();
    for _ in 0..4 {
        let task = app
            .start_task(&bob, json!({"type": "delay", "seconds": 0}))
            .await;
        finished.push(task["id"].as_str().unwrap().to_owned());
    }
    for id in &finished {
        app.finished_task(&bob, id, LONG).await;
    }
    let waiting = app
        .start_task(&bob, json!({"type": "delay", "seconds": 3600}))
        .await;
    // Someone else's task never shows up in bob's list.
    app.start_task(&admin, json!({"type": "delay", "seconds": 0}))
        .await;

    let (status, all) = status_and_json(app.get("/tasks", Some(&bob)).await).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5, "{all}");
    assert_eq!(ids[0], waiting["id"].as_str().unwrap(), "newest first");
    assert!(all["next"].is_null());

    let mut seen = Vec::new();
    let mut path = "/tasks?status=succeeded&limit=3".to_owned();
    for _ in 0..5 {
        let (status, page) = status_and_json(app.get(&path, Some(&bob)).await).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for task in page["items"].as_array().unwrap() {
            assert_eq!(task["status"], "succeeded");
            seen.push(task["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(cursor) => path = format!("/tasks?status=succeeded&limit=3&cursor={cursor}"),
            None => break,
        }
    }
    seen.sort();
    finished.sort();
    assert_eq!(seen, finished);
    let (_, running) = status_and_json(app.get("/tasks?status=running", Some(&bob)).await).await;
    assert_eq!(running["items"].as_array().unwrap().len(), 1, "{running}");
}

async fn cancel_and_completion_racing_end_with_one_outcome(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let mut outcomes = std::collections::BTreeMap::new();
    for _ in 0..15 {
        // A zero-second delay completes at once, so the cancel races it.
        let task = app
            .start_task(&admin, json!({"type": "delay", "seconds": 0}))
            .await;
        let id = task["id"].as_str().unwrap();
        let response = app
            .request(Method::POST, &format!("/tasks/{id}/cancel"), Some(&admin))
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{status}"
        );
        let done = app.finished_task(&admin, id, LONG).await;
        let expected = if status == StatusCode::OK {
            "cancelled"
        } else {
            "succeeded"
        };
        assert_eq!(done["status"], expected);
        *outcomes.entry(expected).or_insert(0) += 1;
        let events = app.task_events(&admin, id).await;
        let terminal = events
            .iter()
            .filter(|e| ["succeeded", "failed", "cancelled"].contains(&e["type"].as_str().unwrap()))
            .count();
        assert_eq!(terminal, 1, "{events:#?}");
    }
    assert_eq!(outcomes.values().sum::<i32>(), 15, "{outcomes:?}");
}

async fn unfinished_tasks_are_resumed_or_failed_after_a_restart(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let delay = app
        .start_task(&admin, json!({"type": "delay", "seconds": 2}))
        .await;
    let script = app
        .start_task(&admin, json!({"type": "js", "code": "for (;;) {}"}))
        .await;
    let marker = format!("--task={}", script["id"].as_str().unwrap());
    for _ in 0..200 {
        if !processes_mentioning(&marker).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    app.restart().await;
    assert!(
        processes_mentioning(&marker).is_empty(),
        "a script outlived the server"
    );
    let script = app
        .finished_task(&admin, script["id"].as_str().unwrap(), LONG)
        .await;
    assert_eq!(script["status"], "failed");
    assert_eq!(script["error"]["code"], "interrupted", "{script}");
    let delay = app
        .finished_task(&admin, delay["id"].as_str().unwrap(), LONG)
        .await;
    assert_eq!(
        (delay["status"].clone(), delay["result"].clone()),
        (json!("succeeded"), json!(0))
    );
}

/// Each way a script can misbehave fails its task with its own code, and the
/// server keeps answering meanwhile. (Embedded store only: this is about the
/// sandbox, not the store.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_scripts_fail_with_distinct_errors_while_the_server_serves() {
    let app = TestApp::spawn_with(Backend::Embedded, |config| {
        config.api.tasks.js = JsLimits {
            wall_time: Duration::from_secs(3),
            ..JsLimits::default()
        };
        config.api.max_concurrent_scripts = 4;
    })
    .await;
    let admin = app.admin_token().await;
    let cases = [
        ("an infinite loop", "for (;;) {}".to_owned(), "timeout"),
        (
            "deep recursion",
            "function f(n) { return f(n + 1) + 1; } f(0)".to_owned(),
            "recursion-limit",
        ),
        (
            "deeply nested literals",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            "nesting-too-deep",
        ),
        (
            "a memory bomb",
            "const h = []; for (;;) { h.push(new Uint8Array(1 << 24)); }".to_owned(),
            "memory-limit",
        ),
        (
            "a huge string",
            "'x'.repeat(2 ** 30)".to_owned(),
            "value-too-large",
        ),
        (
            "a thrown error",
            "throw new Error('boom')".to_owned(),
            "script-error",
        ),
        ("a syntax error", "let = ;".to_owned(), "syntax-error"),
        (
            "a promise that never settles",
            "new Promise(() => {})".to_owned(),
            "promise-never-settled",
        ),
        (
            "a file import",
            "import('/etc/passwd')".to_owned(),
            "script-error",
        ),
    ];
    let mut started = Vec::new();
    for (what, code, expected) in &cases {
        let task = app
            .start_task(&admin, json!({"type": "js", "code": code}))
            .await;
        started.push((what, task["id"].as_str().unwrap().to_owned(), expected));
    }
    // The server answers while the scripts misbehave.
    assert_eq!(app.get("/", None).await.status(), StatusCode::OK);
    for (what, id, expected) in started {
        let task = app.finished_task(&admin, &id, LONG).await;
        assert_eq!(task["status"], "failed", "{what}: {task}");
        assert_eq!(task["error"]["code"], *expected, "{what}: {task}");
        assert!(!task["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(app.get("/", None).await.status(), StatusCode::OK);
}

/// A local server on tables a deployment also uses recovers only the tasks
/// its own engine runs: Step Functions' running and pending tasks, and
/// tasks from before engines were named, are left exactly as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_shared_tables_recovers_only_its_own_tasks() {
    use taskgate_domain::recorder::Recorder;
    use taskgate_domain::task::{TaskId, TaskLimits, TaskSpec};
    use taskgate_domain::user::Username;

    let mut app = TestApp::spawn(Backend::DynamoDb).await;
    let admin = app.admin_token().await;
    let store = app.store().await;
    let owner = store
        .get_user(&Username::parse("admin").unwrap())
        .await
        .unwrap()
        .unwrap();
    // What the deployment's functions would have written.
    let aws = Recorder::new(store.clone()).with_engine(Some("step-functions".into()));
    let execution = |id: &TaskId| {
        format!("arn:aws:states:us-east-1:123456789012:execution:taskgate-tasks:{id}")
    };
    let limits = TaskLimits::default();
    let (running_delay, _) = aws
        .create(&TaskSpec::delay(3600.0, &limits).unwrap(), &owner, u64::MAX)
        .await
        .unwrap();
    aws.started(&running_delay.id, Some(execution(&running_delay.id)))
        .await
        .unwrap();
    let (running_script, _) = aws
        .create(&TaskSpec::js("1 + 1", &limits).unwrap(), &owner, u64::MAX)
        .await
        .unwrap();
    aws.started(&running_script.id, Some(execution(&running_script.id)))
        .await
        .unwrap();
    let (pending, _) = aws
        .create(&TaskSpec::delay(5.0, &limits).unwrap(), &owner, u64::MAX)
        .await
        .unwrap();
    // A task from before engines were named, not started.
    let (legacy, _) = Recorder::new(store.clone())
        .create(&TaskSpec::delay(5.0, &limits).unwrap(), &owner, u64::MAX)
        .await
        .unwrap();
    // And one of this server's own.
    let own = app
        .start_task(&admin, json!({"type": "delay", "seconds": 1}))
        .await;

    let before = |id: TaskId| {
        let store = store.clone();
        async move { store.task_events(&id).await.unwrap() }
    };
    let others = [running_delay.id, running_script.id, pending.id, legacy.id];
    let mut logs = Vec::new();
    for id in others {
        logs.push(before(id).await);
    }
    app.restart().await;
    // Its own task was resumed and ends.
    let own = app
        .finished_task(&admin, own["id"].as_str().unwrap(), LONG)
        .await;
    assert_eq!(own["status"], "succeeded");
    // The others' logs are exactly as they were.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (id, log) in others.iter().zip(&logs) {
        assert_eq!(
            &store.task_events(id).await.unwrap(),
            log,
            "task {id} was touched"
        );
    }
    let (_, script) = status_and_json(
        app.get(&format!("/tasks/{}", running_script.id), Some(&admin))
            .await,
    )
    .await;
    assert_eq!(script["status"], "running");
}

/// One account cannot keep more than its bound of tasks pending or running:
/// the next start is 429 `quota-exceeded` saying why; an ended task frees a
/// place; admins have a bound of their own. On both stores.
async fn active_tasks_are_bounded_per_account(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.api.max_active_tasks.per_user = 2;
        config.api.max_active_tasks.per_admin = 3;
    })
    .await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let long = json!({"type": "delay", "seconds": 600});
    let first = app.start_task(&alice, long.clone()).await;
    app.start_task(&alice, long.clone()).await;
    let response = app
        .send_json(Method::POST, "/tasks", Some(&alice), &long)
        .await;
    let problem = assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "quota-exceeded").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains('2') && detail.contains("TASKGATE_MAX_ACTIVE_TASKS_PER_USER"),
        "{detail}"
    );
    // Ending one frees a place.
    let response = app
        .request(
            Method::POST,
            &format!("/tasks/{}/cancel", first["id"].as_str().unwrap()),
            Some(&alice),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.start_task(&alice, long.clone()).await;
    // And that place is taken again.
    let response = app
        .send_json(Method::POST, "/tasks", Some(&alice), &long)
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Admins by their own bound.
    for _ in 0..3 {
        app.start_task(&admin, long.clone()).await;
    }
    let response = app
        .send_json(Method::POST, "/tasks", Some(&admin), &long)
        .await;
    let problem = assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "quota-exceeded").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("TASKGATE_MAX_ACTIVE_TASKS_PER_ADMIN")
    );
}
