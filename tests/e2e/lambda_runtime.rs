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

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use taskgate_aws::TableNames;
use taskgate_domain::password::{Password, PasswordHasher};
use taskgate_domain::ports::UserStore;
use taskgate_domain::user::{Level, User, Username};
use taskgate_e2e::deployment::lambda::{Answer, FunctionProcess};
use taskgate_e2e::{ADMIN_PASSWORD, dynamodb_endpoint, unique_tables};

/// A debug build of a function, next to the test executable's directory.
fn function_binary(name: &str) -> PathBuf {
    taskgate_e2e::workspace_binary(name)
}

fn moto_endpoint() -> String {
    std::env::var("TASKGATE_TEST_SFN_ENDPOINT")
        .expect("tests/run.sh starts moto and sets TASKGATE_TEST_SFN_ENDPOINT")
}

/// Stores the signing secret in moto's Secrets Manager; its ARN.
async fn create_secret() -> String {
    let name = format!(
        "taskgate-test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    taskgate_e2e::deployment::create_secret(
        &moto_endpoint(),
        &name,
        "a-signing-key-for-the-lambda-runtime-test-0123456789",
    )
    .await
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

    let ids: Vec<String> = (0..3)
        .map(|i| format!("invocation-{i}-{}", uuid::Uuid::new_v4().simple()))
        .collect();
    let logs = tempfile::tempdir().unwrap();
    let environment: Vec<(String, String)> = [
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".to_owned()),
        ("TASKGATE_DYNAMODB_ENDPOINT", endpoint.clone()),
        ("TASKGATE_SECRETSMANAGER_ENDPOINT", moto_endpoint()),
        // As the template sets them: the cold start builds the S3 adapter.
        (
            "TASKGATE_FILES_BUCKET",
            "taskgate-files-cold-start".to_owned(),
        ),
        ("TASKGATE_S3_ENDPOINT", moto_endpoint()),
        ("TASKGATE_MAX_PATCH_BYTES", "4194304".to_owned()),
        ("TASKGATE_USERS_TABLE", tables.users.clone()),
        ("TASKGATE_TOKENS_TABLE", tables.tokens.clone()),
        ("TASKGATE_TASK_EVENTS_TABLE", tables.task_events.clone()),
        ("TASKGATE_SECURITY_TABLE", tables.security.clone()),
        ("TASKGATE_JWT_SECRET_ARN", secret.clone()),
        // Logs quiet but for what a deployment logs.
        ("TASKGATE_LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let function = FunctionProcess::start(
        "auth-login",
        &function_binary("http-api"),
        &environment,
        logs.path().join("auth-login.log"),
    )
    .await;
    let mut answers = std::collections::HashMap::new();
    for id in &ids {
        let answer = function
            .invoke_as(id, login_event(id), Duration::from_secs(30))
            .await;
        answers.insert(id.clone(), answer);
    }
    function.stop().await;
    let lines: Vec<String> = function.log_text().lines().map(str::to_owned).collect();
    assert!(
        function.init_errors().is_empty(),
        "the cold start failed: {:?}\n{lines:#?}",
        function.init_errors()
    );

    let mut tokens = Vec::new();
    for id in &ids {
        let answer = match answers.get(id) {
            Some(Answer::Response(answer)) => answer,
            other => panic!("no answer to {id} ({other:?}); logs: {lines:#?}"),
        };
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
