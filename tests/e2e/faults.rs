//! Dependency faults: DynamoDB goes away in the middle of a run of requests
//! and comes back. While it is down every request gets a 503 problem+json
//! within the SDK's bounded timeouts; once it is back the same server serves
//! again; nothing half-written is left (the task log verifies, every user
//! and security event reads back, the admin count matches) and no task is
//! left unfinished.
//!
//! The drill runs its own DynamoDB Local, keeping its data on disk so that
//! it survives the stop and start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskgate_e2e::{Backend, PASSWORD, TestApp, status_and_json, unique_tables};
use taskgate_server::config::StoreConfig;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/local/dynamodb-local.sh")
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn start_dynamodb(state: &Path, data: &Path, port: u16) -> String {
    let output = Command::new(script())
        .args(["start", state.to_str().unwrap(), &port.to_string()])
        .env("DYNAMODB_LOCAL_DATA_DIR", data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

pub(crate) fn stop_dynamodb(state: &Path) {
    let status = Command::new(script())
        .args(["stop", state.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// One request of the mixed load, by number.
async fn one_request(app: &TestApp, admin: &str, i: usize) -> reqwest::Response {
    match i % 6 {
        0 => {
            app.send_json(
                Method::POST,
                "/users",
                Some(admin),
                &json!({"username": format!("load{i}"), "password": PASSWORD}),
            )
            .await
        }
        1 => app.try_login("admin", "not the admin password, no").await,
        2 => {
            app.send_json(
                Method::POST,
                "/tasks",
                Some(admin),
                &json!({"type": "delay", "seconds": 0.3}),
            )
            .await
        }
        3 => app.get("/users?limit=5", Some(admin)).await,
        4 => {
            app.send_json(
                Method::PATCH,
                "/users/steady",
                Some(admin),
                &json!({"profile": {"n": i}}),
            )
            .await
        }
        _ => app.get("/audit?limit=5", Some(admin)).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_outage_answers_503_then_service_resumes_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (state, data) = (dir.path().join("state"), dir.path().join("data"));
    let port = free_port();
    let endpoint = start_dynamodb(&state, &data, port);
    let tables = unique_tables();
    let app = TestApp::spawn_with(Backend::DynamoDb, |config| {
        config.store = StoreConfig::DynamoDb {
            endpoint: Some(endpoint.clone()),
            tables: tables.clone(),
        };
    })
    .await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "steady", "user").await;
    // A delay that falls due while the store is down.
    let (status, pending) = status_and_json(
        app.send_json(
            Method::POST,
            "/tasks",
            Some(&admin),
            &json!({"type": "delay", "seconds": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Requests in flight while DynamoDB stops.
    let mut load = tokio::task::JoinSet::new();
    let app = std::sync::Arc::new(app);
    for i in 0..24 {
        let (app, admin) = (app.clone(), admin.clone());
        load.spawn(async move {
            tokio::time::sleep(Duration::from_millis(20 * i as u64)).await;
            let started = Instant::now();
            let response = one_request(&app, &admin, i).await;
            (i, response.status(), started.elapsed())
        });
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop_dynamodb(&state);
    let mut slowest = Duration::ZERO;
    for (i, status, took) in load.join_all().await {
        slowest = slowest.max(took);
        assert!(
            status.is_success()
                || status == StatusCode::SERVICE_UNAVAILABLE
                || status.is_client_error(),
            "request {i}: {status}"
        );
    }

    // While it is down: 503 problem+json with Retry-After, for every kind of request.
    for i in 0..6 {
        let started = Instant::now();
        let response = one_request(&app, &admin, i).await;
        let took = started.elapsed();
        slowest = slowest.max(took);
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "request {i}"
        );
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "urn:taskgate:problem:service-unavailable");
        assert!(
            !body.to_string().contains("127.0.0.1"),
            "no internals: {body}"
        );
    }
    println!("slowest request during the outage: {slowest:?}");

    // Back again: the same server serves, without a restart.
    start_dynamodb(&state, &data, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = app.get("/", Some(&admin)).await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after the restart",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    app.create_user(&admin, "after", "user").await;
    app.login("after", PASSWORD).await;

    // The delay that fell due during the outage finishes; no task is stuck.
    let id = pending["id"].as_str().unwrap();
    let task = app.finished_task(&admin, id, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "succeeded");
    let store = app.store().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks: Value = app
            .get("/tasks?limit=100", Some(&admin))
            .await
            .json()
            .await
            .unwrap();
        let unfinished: Vec<&Value> = tasks["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["status"] == "pending" || t["status"] == "running")
            .collect();
        if unfinished.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks left unfinished: {unfinished:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Nothing half-written: the task log verifies; every user and security
    // event reads back; the admin counter matches the admins.
    let report = taskgate_tools::audit::verify_log(store.as_ref())
        .await
        .unwrap();
    assert!(report.is_sound(), "{:?}", report.violations);
    let users = app.all_users(&admin).await;
    let admins = users.iter().filter(|u| u["level"] == "admin").count();
    assert_eq!(store.count_admins().await.unwrap(), admins as u64);
    for user in &users {
        let name = user["username"].as_str().unwrap();
        assert_eq!(
            app.get(&format!("/users/{name}"), Some(&admin))
                .await
                .status(),
            200
        );
    }
    let mut after = None;
    loop {
        let page = store.security_events(after.as_deref(), 100).await.unwrap();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    drop(app);
    stop_dynamodb(&state);
}
