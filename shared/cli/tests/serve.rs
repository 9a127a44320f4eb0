//! `taskgate serve` as a user runs it: the real binary, its output, its
//! files, its signals.

mod common;

use common::{https_client, login, serve, taskgate};
use serde_json::{Value, json};
use std::sync::Arc;

#[tokio::test]
async fn first_start_prints_the_admin_password_once_and_data_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");

    let first = serve(&data_dir, &[]);
    assert!(first.url.starts_with("https://127.0.0.1:"), "{}", first.url);
    let password = first
        .printed_password()
        .expect("the generated admin password is printed");
    assert!(
        first.output.iter().any(|l| l.contains("username: admin")),
        "{:#?}",
        first.output
    );
    for file in ["tls-cert.pem", "tls-key.pem", "jwt-secret", "taskgate.db"] {
        assert!(data_dir.join(file).exists(), "{file} was not created");
    }
    let client = https_client(&data_dir, first.port());
    let base = format!("https://localhost:{}", first.port());
    let hello: Value = client
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hello, json!({"message": "Hello World"}));
    assert_eq!(
        login(&client, &base, "admin", &password).await,
        reqwest::StatusCode::OK
    );
    assert!(
        first.stop().success(),
        "taskgate did not exit cleanly on SIGTERM"
    );

    let second = serve(&data_dir, &[]);
    assert_eq!(
        second.printed_password(),
        None,
        "the password was printed again: {:#?}",
        second.output
    );
    let client = https_client(&data_dir, second.port());
    let base = format!("https://localhost:{}", second.port());
    assert_eq!(
        login(&client, &base, "admin", &password).await,
        reqwest::StatusCode::OK
    );
    assert!(second.stop().success());
}

#[tokio::test]
async fn a_configured_admin_password_is_used_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "an operator chosen passphrase";
    let running = serve(
        dir.path(),
        &[
            ("TASKGATE_TLS", "off"),
            ("TASKGATE_ADMIN_USERNAME", "Root"),
            ("TASKGATE_ADMIN_PASSWORD", secret),
        ],
    );
    assert!(
        running.url.starts_with("http://"),
        "TASKGATE_TLS=off still served {}",
        running.url
    );
    assert!(
        !running.output.iter().any(|l| l.contains(secret)),
        "the password was printed: {:#?}",
        running.output
    );
    assert!(
        !dir.path().join("tls-cert.pem").exists(),
        "a certificate was generated with TLS off"
    );
    let client = reqwest::Client::new();
    assert_eq!(
        login(&client, &running.url, "root", secret).await,
        reqwest::StatusCode::OK
    );
    running.stop();
}

#[test]
fn bad_settings_stop_the_server_with_a_message_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("TASKGATE_STORE", "postgres"),
        ("TASKGATE_TLS", "yes"),
        ("TASKGATE_ADDR", "localhost"),
        ("TASKGATE_TOKEN_TTL_SECONDS", "0"),
        ("TASKGATE_REGISTRATION", "public"),
        ("TASKGATE_ADMIN_PASSWORD", "short"),
        ("TASKGATE_MAX_REQUESTS_IN_FLIGHT", "0"),
        ("TASKGATE_BODY_TIMEOUT_SECONDS", "forever"),
        ("TASKGATE_MAX_JSON_DEPTH", "1000"),
        ("TASKGATE_MAX_PROFILE_BYTES", "1048576"),
    ] {
        let output = taskgate(dir.path(), &[(name, value)]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}={value} was accepted");
        assert!(
            stderr.contains(name),
            "{name}={value}: the message does not name it: {stderr}"
        );
    }
}

#[tokio::test]
async fn passwords_and_tokens_never_reach_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let admin_password = "operator passphrase for the log test";
    let running = serve(
        dir.path(),
        &[
            ("TASKGATE_TLS", "off"),
            ("TASKGATE_ADMIN_PASSWORD", admin_password),
            ("TASKGATE_LOG", "debug"),
        ],
    );
    let client = reqwest::Client::new();
    let base = running.url.clone();
    let token = common::token(&client, &base, "admin", admin_password).await;
    let new_password = "a brand new user passphrase";
    let wrong_password = "a wrong guess at the passphrase";
    let created = client
        .post(format!("{base}/users"))
        .bearer_auth(&token)
        .json(&json!({"username": "alice", "password": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    assert_eq!(
        login(&client, &base, "alice", wrong_password).await,
        reqwest::StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&client, &base, "alice", new_password).await,
        reqwest::StatusCode::OK
    );
    // A malformed token, echoed nowhere either.
    let forged = format!("{token}x");
    client
        .get(format!("{base}/"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    let later = Arc::clone(&running.later);
    assert!(running.stop().success());

    let mut logs = later.lock().unwrap().clone();
    assert!(
        logs.iter().any(|l| l.contains("login")),
        "the logins were not logged at all: {logs:#?}"
    );
    logs.retain(|line| {
        line.contains(admin_password)
            || line.contains(new_password)
            || line.contains(wrong_password)
            || line.contains(&token)
            || line.contains(token.split('.').nth(2).unwrap())
            || line.contains("argon2id")
    });
    assert!(logs.is_empty(), "secrets in the logs: {logs:#?}");
}
