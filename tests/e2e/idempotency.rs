//! `Idempotency-Key` on the creating routes, on both stores: a retry gets
//! the first answer and creates nothing; the key with another request is
//! 422; concurrent duplicates create one thing; keys are per user.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskgate_e2e::{Backend, TestApp, assert_problem, on_each_backend, status_and_json};

on_each_backend!(
    retries_with_a_key_create_once_and_answer_the_same,
    a_key_holds_its_answer_for_24_hours,
    a_key_whose_request_was_cut_off_is_free_again_soon,
);

async fn send(
    app: &TestApp,
    token: &str,
    path: &str,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    app.request(Method::POST, path, Some(token))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn retries_with_a_key_create_once_and_answer_the_same(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let bob = app.user_with_token(&admin, "bob", "user").await;

    // Tasks.
    let delay = json!({"type": "delay", "seconds": 0});
    let first = send(&app, &alice, "/tasks", "task-key-1", &delay).await;
    assert!(first.headers().get("idempotency-replayed").is_none());
    let (status, task) = status_and_json(first).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{task}");
    let again = send(&app, &alice, "/tasks", "task-key-1", &delay).await;
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let (status, replayed) = status_and_json(again).await;
    assert_eq!((status, &replayed), (StatusCode::ACCEPTED, &task));
    let (_, tasks) = status_and_json(app.get("/tasks", Some(&alice)).await).await;
    assert_eq!(tasks["items"].as_array().unwrap().len(), 1, "{tasks}");
    // The key with another request: 422, nothing created.
    let response = send(
        &app,
        &alice,
        "/tasks",
        "task-key-1",
        &json!({"type": "delay", "seconds": 1}),
    )
    .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-key-reused",
    )
    .await;
    // Another user's same key is theirs.
    let (status, bobs) =
        status_and_json(send(&app, &bob, "/tasks", "task-key-1", &delay).await).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_ne!(bobs["id"], task["id"]);

    // Projects: the same Location again.
    let project = json!({"name": "Once"});
    let first = send(&app, &alice, "/projects", "project-key", &project).await;
    let location = first.headers()["location"].clone();
    let (status, created) = status_and_json(first).await;
    assert_eq!(status, StatusCode::CREATED);
    let again = send(&app, &alice, "/projects", "project-key", &project).await;
    assert_eq!(again.headers()["location"], location);
    let (status, replayed) = status_and_json(again).await;
    assert_eq!((status, &replayed), (StatusCode::CREATED, &created));
    let (_, projects) = status_and_json(app.get("/projects", Some(&alice)).await).await;
    assert_eq!(projects["items"].as_array().unwrap().len(), 1);

    // Items, ten duplicates at once: one item, every success the same one.
    let path = format!("/projects/{}/items", created["id"].as_str().unwrap());
    let item = json!({"title": "Only once"});
    let app = std::sync::Arc::new(app);
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let (app, alice, path, item) = (app.clone(), alice.clone(), path.clone(), item.clone());
            tokio::spawn(async move {
                status_and_json(send(&app, &alice, &path, "item-key", &item).await).await
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for attempt in attempts {
        let (status, body) = attempt.await.unwrap();
        match status {
            StatusCode::CREATED => {
                ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["type"], "urn:taskgate:problem:idempotency-key-in-use")
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let (_, items) = status_and_json(app.get(&path, Some(&alice)).await).await;
    assert_eq!(items["items"].as_array().unwrap().len(), 1, "{items}");
    // A retry now gets the same item.
    let (status, again) = status_and_json(send(&app, &alice, &path, "item-key", &item).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(ids.contains(again["id"].as_str().unwrap()));

    // A first answer that failed is kept too (a 4xx): the retry gets it.
    let bad = json!({"title": ""});
    let (status, first) = status_and_json(send(&app, &alice, &path, "bad-key", &bad).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, again) = status_and_json(send(&app, &alice, &path, "bad-key", &bad).await).await;
    assert_eq!(
        (status, again["detail"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, first["detail"].clone())
    );
    // Malformed keys: 400.
    for key in [&"k".repeat(256), "bad key with spaces"] {
        let response = send(&app, &alice, "/tasks", key, &delay).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    }
}

/// Within 24 hours the key answers the first answer; after them it is free
/// again (a new request with it creates anew).
async fn a_key_holds_its_answer_for_24_hours(backend: Backend) {
    let start = time::OffsetDateTime::now_utc();
    let clock = std::sync::Arc::new(taskgate_domain::clock::ManualClock::new(start));
    let app = TestApp::spawn_with(backend, |config| {
        config.clock = clock.clone();
        config.api.token_ttl = std::time::Duration::from_secs(3 * 24 * 3600);
    })
    .await;
    let admin = app.admin_token().await;
    let project = json!({"name": "Day one"});
    let (status, first) =
        status_and_json(send(&app, &admin, "/projects", "day-key", &project).await).await;
    assert_eq!(status, StatusCode::CREATED);
    clock.advance(std::time::Duration::from_secs(24 * 3600 - 60));
    let (_, replayed) =
        status_and_json(send(&app, &admin, "/projects", "day-key", &project).await).await;
    assert_eq!(replayed["id"], first["id"]);
    let response = send(
        &app,
        &admin,
        "/projects",
        "day-key",
        &json!({"name": "Day two"}),
    )
    .await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-key-reused",
    )
    .await;
    // A day on, the key is free: the same request creates a second project.
    clock.advance(std::time::Duration::from_secs(120));
    let response = send(&app, &admin, "/projects", "day-key", &project).await;
    assert!(response.headers().get("idempotency-replayed").is_none());
    let (status, second) = status_and_json(response).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(second["id"], first["id"]);
}

/// A request whose process died mid-way (a Lambda timeout) leaves its key
/// claimed and unanswered. The claim holds for two minutes
/// (`idempotency::CLAIM`), not the 24 h an answer is kept: afterwards a
/// retry is handled, not turned away with 409 `idempotency-key-in-use`.
async fn a_key_whose_request_was_cut_off_is_free_again_soon(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let store = app.store().await;
    let user = store
        .get_user(&taskgate_domain::user::Username::parse("alice").unwrap())
        .await
        .unwrap()
        .unwrap();
    let body = json!({"name": "Cut off"});
    let text = serde_json::to_vec(&body).unwrap();
    let scope = taskgate_api::idempotency::scope(&user.user_id, "cut-off");
    let fingerprint = taskgate_api::idempotency::fingerprint(
        &http::Method::POST,
        "/projects",
        Some(b"application/json"),
        &text,
    );
    // Claimed three minutes ago by a request that never answered.
    let then = time::OffsetDateTime::now_utc() - std::time::Duration::from_secs(180);
    let claimed = store
        .claim_key(
            &scope,
            &fingerprint,
            then,
            then + taskgate_api::idempotency::CLAIM,
        )
        .await
        .unwrap();
    assert!(matches!(claimed, taskgate_domain::ports::Claim::New));
    // A claim still within its two minutes is in use.
    let fresh = time::OffsetDateTime::now_utc();
    let other_scope = taskgate_api::idempotency::scope(&user.user_id, "in-flight");
    store
        .claim_key(
            &other_scope,
            &fingerprint,
            fresh,
            fresh + taskgate_api::idempotency::CLAIM,
        )
        .await
        .unwrap();
    assert_problem(
        send(&app, &alice, "/projects", "in-flight", &body).await,
        StatusCode::CONFLICT,
        "idempotency-key-in-use",
    )
    .await;
    // The retry of the cut-off one is handled, and its answer kept.
    let (status, project) =
        status_and_json(send(&app, &alice, "/projects", "cut-off", &body).await).await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let again = send(&app, &alice, "/projects", "cut-off", &body).await;
    assert!(again.headers().get("idempotency-replayed").is_some());
    let (_, replayed) = status_and_json(again).await;
    assert_eq!(replayed["id"], project["id"]);
}
