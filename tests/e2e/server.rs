//! The local server as a whole: TLS, restarts, the first admin, and the
//! tables it creates on DynamoDB.

use std::os::unix::fs::PermissionsExt;

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;
use taskgate_e2e::{Backend, PASSWORD, TestApp, on_each_backend, status_and_json};
use taskgate_server::StoreConfig;

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
        taskgate_server::server::TLS_KEY_FILE,
        taskgate_server::server::JWT_SECRET_FILE,
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

/// A client that writes its whole request before reading the answer (as
/// Python's urllib3 does) is answered even when the server refuses the
/// request before reading its body: the server reads and drops the rest of
/// the body before it closes, so the client sees the refusal, not a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_before_its_body_is_read_gets_its_answer_not_a_reset() {
    for over_tls in [false, true] {
        let app = TestApp::spawn_with(Backend::Embedded, |config| config.tls = over_tls).await;
        let addr = app.server().local_addr();
        let tls = over_tls.then(|| app.tls_client_config());
        let answer = tokio::task::spawn_blocking(move || write_all_then_read(addr, tls))
            .await
            .unwrap();
        let answer = answer.unwrap_or_else(|e| panic!("tls={over_tls}: the client saw {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "tls={over_tls}: answered {answer:?}"
        );
        assert!(answer.contains("application/problem+json"), "{answer}");
    }
}

/// Sends an unauthenticated `POST /files` with an 8 MiB body, the body only
/// once the server has had time to refuse the request and close, then reads
/// the whole answer.
fn write_all_then_read(
    addr: std::net::SocketAddr,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> std::io::Result<String> {
    use std::io::{Read, Write};

    const BODY: usize = 8 << 20;
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Length: {BODY}\r\nContent-Type: application/offset+octet-stream\r\n\
         Content-Length: {BODY}\r\n\r\n"
    );
    let tcp = std::net::TcpStream::connect(addr)?;
    let mut stream: Box<dyn ReadWrite> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let connection =
                rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
            Box::new(rustls::StreamOwned::new(connection, tcp))
        }
    };
    stream.write_all(head.as_bytes())?;
    stream.flush()?;
    std::thread::sleep(std::time::Duration::from_millis(200));
    stream.write_all(&vec![b'x'; BODY])?;
    stream.flush()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

trait ReadWrite: std::io::Read + std::io::Write + Send {}
impl<T: std::io::Read + std::io::Write + Send> ReadWrite for T {}
