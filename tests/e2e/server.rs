//! The local server as a whole: TLS, restarts, the first admin, and the
//! tables it creates on DynamoDB.

use std::os::unix::fs::PermissionsExt;

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;
use taskgate::StoreConfig;
use taskgate_e2e::{Backend, PASSWORD, TestApp, on_each_backend, status_and_json};

on_each_backend!(
    data_and_tokens_survive_a_restart,
    the_first_admin_is_created_once_with_a_generated_password,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_served_with_the_generated_certificate() {
    let app = TestApp::spawn_with(Backend::Embedded, |config| config.tls = true).await;
    assert!(app.server().url().starts_with("https://"));
    // The client trusts only the generated certificate and checks it for "localhost".
    let (status, body) = status_and_json(app.get("/", None).await).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"message": "Hello World"}))
    );
    for file in [
        taskgate::server::TLS_KEY_FILE,
        taskgate::server::JWT_SECRET_FILE,
    ] {
        let mode = std::fs::metadata(app.data_dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is readable by others");
    }
    let mode = std::fs::metadata(app.data_dir.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the data directory is open to others");
    // Plain HTTP to the TLS port does not get an API answer.
    let plain = reqwest::get(format!("http://{}/", app.server().local_addr())).await;
    assert!(plain.map(|r| r.status() != StatusCode::OK).unwrap_or(true));
}

async fn data_and_tokens_survive_a_restart(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    app.send_json(
        Method::PATCH,
        "/users/alice",
        Some(&alice),
        &json!({"profile": {"kept": true}}),
    )
    .await;
    app.restart().await;
    let (status, body) = status_and_json(app.get("/users/alice", Some(&alice)).await).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the token did not survive the restart: {body}"
    );
    assert_eq!(body["profile"], json!({"kept": true}));
    app.login("alice", PASSWORD).await;
    assert!(
        app.server().first_admin.is_none(),
        "a second admin was bootstrapped"
    );
}

async fn the_first_admin_is_created_once_with_a_generated_password(backend: Backend) {
    let mut app = TestApp::spawn_with(backend, |config| {
        config.admin_password = None;
        config.admin_username = taskgate_domain::user::Username::parse("root").unwrap();
    })
    .await;
    let first = app
        .server()
        .first_admin
        .as_ref()
        .expect("an admin was created");
    assert_eq!(first.username.as_str(), "root");
    let password = first
        .generated_password
        .as_ref()
        .expect("the password was generated")
        .expose_secret()
        .to_owned();
    assert!(password.chars().count() >= 20, "a weak generated password");
    let token = app.login("root", &password).await;
    let (_, me) = status_and_json(app.get("/", Some(&token)).await).await;
    assert_eq!(me["user"]["level"], "admin");
    app.restart().await;
    assert!(app.server().first_admin.is_none());
    app.login("root", &password).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_dynamodb_tables_are_created_with_their_indexes_and_ttl() {
    let app = TestApp::spawn(Backend::DynamoDb).await;
    let StoreConfig::DynamoDb { endpoint, tables } = &app.config.store else {
        unreachable!()
    };
    let sdk = taskgate_aws::load_sdk_config(endpoint.as_deref()).await;
    let client = taskgate_aws::dynamodb_client(&sdk, endpoint.as_deref());
    let tokens = client
        .describe_table()
        .table_name(&tables.tokens)
        .send()
        .await
        .unwrap();
    let index_names: Vec<&str> = tokens
        .table()
        .unwrap()
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    assert_eq!(index_names, ["by-username"]);
    let ttl = client
        .describe_time_to_live()
        .table_name(&tables.tokens)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    client
        .describe_table()
        .table_name(&tables.users)
        .send()
        .await
        .unwrap();
}
