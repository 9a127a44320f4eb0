//! What operators watch: `GET /healthz` answers while the process runs;
//! `GET /readyz` answers 200 while the store answers and 503 (problem+json,
//! `Retry-After`) while it does not, recovering by itself.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use taskgate_e2e::{Backend, TestApp, assert_problem, status_and_json, unique_tables};
use taskgate_server::config::StoreConfig;

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

/// SIGTERM: a request in flight finishes, open WebSockets are closed with
/// 1001, the process exits 0, and a task left running resumes at the next
/// start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_finish_closes_sockets_and_tasks_resume() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;

    const PASSWORD: &str = "operator of the shutdown test";
    const MIB: usize = 1 << 20;
    let server = crate::files::ServerProcess::start(PASSWORD).await;
    let token = server.login(PASSWORD).await;
    let client = reqwest::Client::new();
    let task: serde_json::Value = client
        .post(format!("{}/tasks", server.base))
        .bearer_auth(&token)
        .json(&json!({"type": "delay", "seconds": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = task["id"].as_str().unwrap().to_owned();

    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "{}/ws?token={token}",
        server.base.replacen("http", "ws", 1)
    ))
    .await
    .unwrap();
    socket
        .send(Message::text(
            json!({"type": "subscribe", "topic": "tasks"}).to_string(),
        ))
        .await
        .unwrap();

    // An upload whose body takes two seconds to arrive.
    let created = client
        .post(format!("{}/files", server.base))
        .bearer_auth(&token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", (3 * MIB).to_string())
        .send()
        .await
        .unwrap();
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let body = futures_util::stream::iter(0..3).then(|n| async move {
        if n > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![n as u8; MIB]))
    });
    let upload = {
        let request = client
            .patch(format!("{}{location}", server.base))
            .bearer_auth(&token)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", "0")
            .header("content-type", "application/offset+octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        tokio::spawn(async move { request.send().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();

    // The socket is told the server is going away.
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the socket is closed in time")
        {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(1001));
    // The upload in flight finished.
    let response = upload
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()["upload-offset"], (3 * MIB).to_string());
    let (status, data) = server.exited(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");

    // The next start resumes the delay.
    let server = crate::files::ServerProcess::start_in(PASSWORD, data).await;
    let token = server.login(PASSWORD).await;
    let started = Instant::now();
    loop {
        let task: serde_json::Value = client
            .get(format!("{}/tasks/{task}", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if task["status"] == "succeeded" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{task}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the first sample of `name` in a Prometheus text page.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<f64>().ok())
}

/// `GET /metrics` on its own address (`TASKGATE_METRICS_ADDR`): requests by
/// route and status with latency histograms, task events by kind and type,
/// open WebSockets, uploads in progress; and not on the API's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_apart_in_the_prometheus_format() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;

    let app = TestApp::spawn_with(Backend::Embedded, |config| {
        config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let admin = app.admin_token().await;
    assert_eq!(
        app.get("/metrics", Some(&admin)).await.status(),
        StatusCode::NOT_FOUND
    );
    let metrics_url = format!("http://{}/metrics", app.server().metrics_addr().unwrap());

    let task = app
        .start_task(&admin, json!({"type": "delay", "seconds": 0}))
        .await;
    app.finished_task(
        &admin,
        task["id"].as_str().unwrap(),
        Duration::from_secs(10),
    )
    .await;
    app.get("/tasks/nope", Some(&admin)).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "{}?token={admin}",
        app.url("/ws").replacen("http", "ws", 1)
    ))
    .await
    .unwrap();
    socket
        .send(Message::text(r#"{"type":"subscribe","topic":"tasks"}"#))
        .await
        .unwrap();

    let text = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let has = |needle: &str| text.lines().any(|l| l.starts_with(needle));
    assert!(
        has("taskgate_http_requests_total{route=\"/tasks\",method=\"POST\",status=\"202\"}"),
        "{text}"
    );
    assert!(
        has("taskgate_http_requests_total{route=\"/tasks/{id}\",method=\"GET\",status=\"404\"}"),
        "{text}"
    );
    assert!(
        has(
            "taskgate_http_request_duration_seconds_bucket{route=\"/tasks\",method=\"POST\",le=\"0.1\"}"
        ),
        "{text}"
    );
    assert!(
        has("taskgate_task_events_total{kind=\"delay\",type=\"succeeded\"}"),
        "{text}"
    );
    // Other tests' servers share this process's recorder: at least ours.
    let open = metric(&text, "taskgate_websockets_open")
        .unwrap_or_else(|| panic!("no websocket gauge in {text}"));
    assert!(open >= 1.0, "{open}");

    // An upload whose bytes are still coming counts while they come.
    let created = app
        .request(reqwest::Method::POST, "/files", Some(&admin))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10")
        .send()
        .await
        .unwrap();
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let (release, hold) = tokio::sync::oneshot::channel::<()>();
    let body = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"hello"))
    })
    .chain(futures_util::stream::once(async move {
        let _ = hold.await;
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"world"))
    }));
    let patch = app
        .request(reqwest::Method::PATCH, &location, Some(&admin))
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(reqwest::Body::wrap_stream(body));
    let patch = tokio::spawn(async move { patch.send().await });
    let gauge = |text: &str| metric(text, "taskgate_uploads_in_progress").unwrap_or(0.0);
    let mut seen = 0.0;
    for _ in 0..100 {
        seen = gauge(
            &reqwest::get(&metrics_url)
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
        if seen >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen >= 1.0, "the upload in progress was not counted");
    drop(release);
    assert_eq!(
        patch.await.unwrap().unwrap().status(),
        StatusCode::NO_CONTENT
    );
}

/// On DynamoDB, what each item listing page consumed is counted
/// (`taskgate_item_page_read_units`, a histogram of read capacity units as
/// DynamoDB reports them), so an operator can see what pages cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_pages_report_their_read_units_on_dynamodb() {
    let (app, admin, metrics_url) = with_metrics(Backend::DynamoDb).await;
    let project = new_project(&app, &admin, "Costs").await;
    for i in 0..3 {
        let (status, _) = status_and_json(
            app.send_json(
                reqwest::Method::POST,
                &format!("/projects/{project}/items"),
                Some(&admin),
                &json!({"title": format!("item {i}")}),
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let value = |text: &str, name: &str| metric(text, name).unwrap_or(0.0);
    let scrape = || scrape(&metrics_url);
    let before = scrape().await;
    for _ in 0..2 {
        let (status, page) = status_and_json(
            app.get(&format!("/projects/{project}/items?limit=2"), Some(&admin))
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
    }
    let after = scrape().await;
    // Other tests' servers share this process's recorder: at least ours.
    let pages = value(&after, "taskgate_item_page_read_units_count")
        - value(&before, "taskgate_item_page_read_units_count");
    let units = value(&after, "taskgate_item_page_read_units_sum")
        - value(&before, "taskgate_item_page_read_units_sum");
    assert!(pages >= 2.0, "{after}");
    assert!(units > 0.0, "no read units counted: {after}");
}

/// On the embedded store, an item page asked again while its project is
/// unchanged is answered from memory and counted so
/// (`taskgate_item_pages_total{source="kept"}`); after a change it is read
/// again (`source="read"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_pages_answered_from_memory_are_counted() {
    let (app, admin, metrics_url) = with_metrics(Backend::Embedded).await;
    let items = format!(
        "/projects/{}/items",
        new_project(&app, &admin, "Dashboards").await
    );
    let add = || async {
        let response = app
            .send_json(
                reqwest::Method::POST,
                &items,
                Some(&admin),
                &json!({"title": "x"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    };
    let count = |text: &str, source: &str| {
        metric(
            text,
            &format!("taskgate_item_pages_total{{source=\"{source}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let scrape = || scrape(&metrics_url);
    add().await;
    let before = scrape().await;
    let page = || async {
        let (status, page) = status_and_json(app.get(&items, Some(&admin)).await).await;
        assert_eq!(status, StatusCode::OK);
        page["items"].as_array().unwrap().len()
    };
    assert_eq!(page().await, 1);
    assert_eq!(page().await, 1);
    add().await;
    assert_eq!(page().await, 2);
    let after = scrape().await;
    // Other tests' servers share this process's recorder: at least ours.
    assert!(
        count(&after, "kept") - count(&before, "kept") >= 1.0,
        "{after}"
    );
    assert!(
        count(&after, "read") - count(&before, "read") >= 2.0,
        "{after}"
    );
}

/// Requests with made-up methods (any client can send them, no token
/// needed) add no label values: they are counted as `other`, on the route
/// `unmatched` or the one they reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_do_not_grow_the_metrics() {
    let (app, _admin, metrics_url) = with_metrics(Backend::Embedded).await;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let client = reqwest::Client::new();
    for i in 0..300 {
        let method =
            reqwest::Method::from_bytes(format!("M{tag}X{i}{}", "Q".repeat(100)).as_bytes())
                .unwrap();
        let path = if i % 2 == 0 {
            "/tasks"
        } else {
            "/no/such/route"
        };
        let answer = client.request(method, app.url(path)).send().await.unwrap();
        assert!(answer.status().is_client_error(), "{}", answer.status());
    }
    let text = scrape(&metrics_url).await;
    assert!(
        !text.contains(&format!("M{tag}")),
        "a made-up method became a label"
    );
    assert!(
        text.lines()
            .any(|l| l
                .starts_with("taskgate_http_requests_total{route=\"unmatched\",method=\"other\"")),
        "{text}"
    );
}

/// A server on `backend` serving metrics, an admin's token, and its
/// metrics page's address.
async fn with_metrics(backend: Backend) -> (TestApp, String, String) {
    let app = TestApp::spawn_with(backend, |config| {
        config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let admin = app.admin_token().await;
    let url = format!("http://{}/metrics", app.server().metrics_addr().unwrap());
    (app, admin, url)
}

/// A new project's id.
async fn new_project(app: &TestApp, token: &str, name: &str) -> String {
    let (status, project) = status_and_json(
        app.send_json(
            reqwest::Method::POST,
            "/projects",
            Some(token),
            &json!({ "name": name }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    project["id"].as_str().unwrap().to_owned()
}

/// The metrics page's text.
async fn scrape(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}
