//! What operators watch: `GET /healthz` answers while the process runs;
//! `GET /readyz` answers 200 while the store answers and 503 (problem+json,
//! `Retry-After`) while it does not, recovering by itself.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use taskgate::config::StoreConfig;
use taskgate_e2e::{Backend, TestApp, assert_problem, status_and_json, unique_tables};

use crate::faults::{free_port, start_dynamodb, stop_dynamodb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store_and_health_the_process() {
    let state = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let endpoint = start_dynamodb(state.path(), data.path(), port);
    let tables = unique_tables();
    let app = TestApp::spawn_with(Backend::DynamoDb, |config| {
        config.store = StoreConfig::DynamoDb {
            endpoint: Some(endpoint.clone()),
            tables: tables.clone(),
        };
    })
    .await;
    let (status, body) = status_and_json(app.get("/readyz", None).await).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ready"})));

    stop_dynamodb(state.path());
    let response = app.get("/readyz", None).await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "service-unavailable",
    )
    .await;
    let (status, body) = status_and_json(app.get("/healthz", None).await).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));

    start_dynamodb(state.path(), data.path(), port);
    let started = Instant::now();
    loop {
        if app.get("/readyz", None).await.status() == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not ready again after a minute"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_dynamodb(state.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_on_the_embedded_store() {
    let app = TestApp::spawn(Backend::Embedded).await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    // A bad token is refused nowhere here: these take none.
    let response = app.get("/healthz", Some("not-a-token")).await;
    assert_eq!(response.status(), StatusCode::OK);
}
