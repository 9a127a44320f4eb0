//! Function binaries as Lambda runs them: the real `bootstrap` process
//! against an emulation of the Lambda Runtime API (the HTTP interface a
//! Lambda container offers its process), with DynamoDB Local for the tables
//! and moto standing in for Secrets Manager.
//!
//! It shows what the fixture tests cannot: the function reads its
//! configuration and the signing secret once per container (one cold start
//! for many invocations), answers each event through the runtime API, and
//! logs JSON lines carrying each invocation's request id, never a secret.
//!
//! The binaries are the debug builds `tests/run.sh` makes before testing.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use taskgate_aws::TableNames;
use taskgate_domain::password::{Password, PasswordHasher};
use taskgate_domain::ports::UserStore;
use taskgate_domain::user::{Level, User, Username};
use taskgate_e2e::{ADMIN_PASSWORD, dynamodb_endpoint, unique_tables};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Default)]
struct Runtime {
    queue: Mutex<VecDeque<(String, Value)>>,
    answers: Mutex<HashMap<String, (String, Value)>>,
    init_errors: Mutex<Vec<Value>>,
}

async fn next(State(runtime): State<Arc<Runtime>>) -> (HeaderMap, String) {
    loop {
        let event = runtime.queue.lock().unwrap().pop_front();
        if let Some((id, event)) = event {
            let mut headers = HeaderMap::new();
            headers.insert(
                "lambda-runtime-aws-request-id",
                HeaderValue::from_str(&id).unwrap(),
            );
            let deadline = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 30_000;
            headers.insert(
                "lambda-runtime-deadline-ms",
                HeaderValue::from_str(&deadline.to_string()).unwrap(),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                HeaderValue::from_static(
                    "arn:aws:lambda:us-east-1:123456789012:function:auth-login",
                ),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                HeaderValue::from_static("Root=1-00000000-000000000000000000000000"),
            );
            return (headers, event.to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn respond(
    State(runtime): State<Arc<Runtime>>,
    Path((id, kind)): Path<(String, String)>,
    body: String,
) -> StatusCode {
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    runtime.answers.lock().unwrap().insert(id, (kind, body));
    StatusCode::ACCEPTED
}

async fn init_error(State(runtime): State<Arc<Runtime>>, body: String) -> StatusCode {
    runtime
        .init_errors
        .lock()
        .unwrap()
        .push(Value::String(body));
    StatusCode::ACCEPTED
}

async fn start_runtime() -> (SocketAddr, Arc<Runtime>) {
    let runtime = Arc::new(Runtime::default());
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(respond))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(Arc::clone(&runtime));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, runtime)
}

/// A debug build of a function, next to the test executable's directory.
fn function_binary(name: &str) -> PathBuf {
    taskgate_e2e::workspace_binary(name)
}

fn moto_endpoint() -> String {
    std::env::var("TASKGATE_TEST_SFN_ENDPOINT")
        .expect("tests/run.sh starts moto and sets TASKGATE_TEST_SFN_ENDPOINT")
}

/// Stores the signing secret in moto's Secrets Manager; returns its name.
async fn create_secret() -> String {
    let name = format!(
        "taskgate-test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let response = reqwest::Client::new()
        .post(format!("{}/", moto_endpoint()))
        .header("x-amz-target", "secretsmanager.CreateSecret")
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(json!({"Name": name, "SecretString": "a-signing-key-for-the-lambda-runtime-test-0123456789"}).to_string())
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    name
}

fn login_event(request_id: &str) -> Value {
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/apigw-v2/auth-login.json"
    ))
    .unwrap();
    let mut event: Value =
        serde_json::from_str(&fixture.replace("{{admin_password}}", ADMIN_PASSWORD)).unwrap();
    event["requestContext"]["requestId"] = json!(request_id);
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_binary_cold_starts_once_and_serves_many_invocations() {
    // The deployment: tables with a first admin, and the secret.
    let endpoint = dynamodb_endpoint();
    let sdk = taskgate_aws::load_sdk_config(Some(&endpoint)).await;
    let client = taskgate_aws::dynamodb_client(&sdk, Some(&endpoint));
    let tables: TableNames = unique_tables();
    taskgate_aws::ensure_tables(&client, &tables).await.unwrap();
    let store = taskgate_aws::DynamoStore::new(client, tables.clone());
    let username = Username::parse("admin").unwrap();
    let hash = PasswordHasher::new()
        .unwrap()
        .hash(&Password::parse(ADMIN_PASSWORD, Some(&username)).unwrap())
        .unwrap();
    store
        .insert_user(&User::new(username, hash, Level::Admin, None, None))
        .await
        .unwrap();
    let secret = create_secret().await;

    let (runtime_addr, runtime) = start_runtime().await;
    let ids: Vec<String> = (0..3)
        .map(|i| format!("invocation-{i}-{}", uuid::Uuid::new_v4().simple()))
        .collect();
    for id in &ids {
        runtime
            .queue
            .lock()
            .unwrap()
            .push_back((id.clone(), login_event(id)));
    }
    let mut child = tokio::process::Command::new(function_binary("http-api"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime_addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "auth-login")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/auth-login")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("TASKGATE_DYNAMODB_ENDPOINT", &endpoint)
        .env("TASKGATE_SECRETSMANAGER_ENDPOINT", moto_endpoint())
        // As the template sets them: the cold start builds the S3 adapter.
        .env("TASKGATE_FILES_BUCKET", "taskgate-files-cold-start")
        .env("TASKGATE_S3_ENDPOINT", moto_endpoint())
        .env("TASKGATE_MAX_PATCH_BYTES", "4194304")
        .env("TASKGATE_USERS_TABLE", &tables.users)
        .env("TASKGATE_TOKENS_TABLE", &tables.tokens)
        .env("TASKGATE_TASK_EVENTS_TABLE", &tables.task_events)
        .env("TASKGATE_SECURITY_TABLE", &tables.security)
        .env("TASKGATE_JWT_SECRET_ARN", &secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let logs = Arc::new(Mutex::new(Vec::<String>::new()));
    let collected = Arc::clone(&logs);
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            collected.lock().unwrap().push(line);
        }
    });
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let collected = Arc::clone(&logs);
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            collected.lock().unwrap().push(line);
        }
    });

    for _ in 0..300 {
        if runtime.answers.lock().unwrap().len() == ids.len()
            || !runtime.init_errors.lock().unwrap().is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    lines.extend(logs.lock().unwrap().iter().cloned());
    assert!(
        runtime.init_errors.lock().unwrap().is_empty(),
        "the cold start failed: {:?}\n{lines:#?}",
        runtime.init_errors.lock().unwrap()
    );

    let answers = runtime.answers.lock().unwrap().clone();
    let mut tokens = Vec::new();
    for id in &ids {
        let (kind, answer) = answers
            .get(id)
            .unwrap_or_else(|| panic!("no answer to {id}; logs: {lines:#?}"));
        assert_eq!(kind, "response", "{answer}");
        assert_eq!(answer["statusCode"], 200, "{answer}");
        assert_eq!(
            answer["headers"]["x-request-id"],
            id.as_str(),
            "the request id is Lambda's"
        );
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }

    let json_lines: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(
        json_lines.len(),
        lines.len(),
        "every log line is JSON: {lines:#?}"
    );
    let cold_starts = lines
        .iter()
        .filter(|l| l.contains("cold start complete"))
        .count();
    assert_eq!(cold_starts, 1, "{lines:#?}");
    // Each request is also a CloudWatch Embedded Metric Format line.
    let metrics: Vec<&Value> = json_lines
        .iter()
        .filter(|l| l["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Taskgate")
        .collect();
    assert_eq!(metrics.len(), ids.len(), "{lines:#?}");
    for line in metrics {
        assert_eq!(
            (
                line["route"].as_str(),
                line["method"].as_str(),
                line["status"].as_str()
            ),
            (Some("/auth"), Some("POST"), Some("200")),
            "{line}"
        );
        assert_eq!(line["requests"], 1);
        assert!(line["latency"].as_f64().is_some_and(|ms| ms >= 0.0));
    }
    for id in &ids {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(id.as_str()) && l.contains("\"request\"")),
            "no request log line names {id}: {lines:#?}"
        );
    }
    for line in &lines {
        assert!(
            !line.contains(ADMIN_PASSWORD),
            "the password was logged: {line}"
        );
        assert!(
            !line.contains("a-signing-key-for-the-lambda"),
            "the secret was logged: {line}"
        );
        for token in &tokens {
            assert!(!line.contains(token.as_str()), "a token was logged: {line}");
        }
    }
}
