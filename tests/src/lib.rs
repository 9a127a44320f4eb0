//! # End-to-end test harness
//!
//! [`TestApp::spawn`] starts the real local server (`taskgate_server::start`, the
//! same code as `taskgate serve`) on port 0 with its own data directory and,
//! for DynamoDB, its own freshly created tables, and talks to it over a real
//! socket with a real HTTP client (reqwest).
//!
//! DynamoDB tests need DynamoDB Local; `tests/run.sh` starts one for the whole
//! run and exports its address as `TASKGATE_TEST_DYNAMODB_ENDPOINT`.
//! [`on_each_backend!`] turns one `async fn(Backend)` into a test per store.
//!
//! Logs are quiet unless `TASKGATE_TEST_LOG` is set (e.g. `=debug`).

use std::sync::Once;

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use taskgate_app::settings::Settings;
use taskgate_aws::TableNames;
use taskgate_domain::password::PasswordHash;
use taskgate_domain::user::{Level, User, Username};
use taskgate_server::{ServeConfig, Server, StoreConfig};
use tempfile::TempDir;

pub use serde_json;

pub mod deployment;

/// The store a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite store, in a file in the test's data directory.
    Embedded,
    /// DynamoDB Local, with tables unique to the test.
    DynamoDb,
}

/// A password every test account may use (long enough, contains no test
/// username).
pub const PASSWORD: &str = "correct horse battery staple";
/// The first admin's password in every test app.
pub const ADMIN_PASSWORD: &str = "first operator of this test app";

/// A user record for tests that go straight to a store or the domain, with
/// a valid PHC hash that was never computed (nothing here checks it).
pub fn fixture_user(username: &str, level: Level) -> User {
    let hash = PasswordHash::parse(
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3V7s8wPDxVyEkXmz4jtoTrhpgXT4x3rKxhWFSmsHCGc",
    )
    .expect("a valid PHC string");
    User::new(
        Username::parse(username).expect("a valid username"),
        hash,
        level,
        None,
        None,
    )
}

/// Runs one `async fn(Backend)` as a test on each store:
/// `on_each_backend!(login_works);` gives `embedded::login_works` and
/// `dynamodb::login_works`.
#[macro_export]
macro_rules! on_each_backend {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::Backend::Embedded).await
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::Backend::DynamoDb).await
                }
            )*
        }
    };
}

/// The DynamoDB Local endpoint of this run.
pub fn dynamodb_endpoint() -> String {
    std::env::var("TASKGATE_TEST_DYNAMODB_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "TASKGATE_TEST_DYNAMODB_ENDPOINT is not set. Run the suite with tests/run.sh, \
             which starts DynamoDB Local, or start one yourself \
             (infra/local/dynamodb-local.sh start DIR) and export its address."
        )
    })
}

/// The worker binary of this package, which cargo builds next to the test
/// executable (`target/<profile>/e2e-js-worker`) for every integration test.
pub fn js_worker() -> taskgate_js::WorkerCommand {
    let exe = std::env::current_exe().expect("the test executable's path");
    let program = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("e2e-js-worker"))
        .expect("a target directory");
    assert!(
        program.exists(),
        "{} is missing: build with cargo test",
        program.display()
    );
    taskgate_js::WorkerCommand {
        program,
        args: vec![],
    }
}

/// Table names no other test uses.
pub fn unique_tables() -> TableNames {
    TableNames::with_prefix(&format!(
        "t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
}

/// A binary of the workspace (`taskgate`, a function's program), built by
/// `cargo build --workspace --bins` next to the test executable's directory.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a target directory")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: tests/run.sh builds the binaries (cargo build --workspace --bins) before testing",
        path.display()
    );
    path
}

/// A DynamoDB store on DynamoDB Local with tables of its own, created.
pub async fn dynamodb_store() -> taskgate_aws::DynamoStore {
    let endpoint = dynamodb_endpoint();
    let sdk = taskgate_aws::load_sdk_config(Some(&endpoint)).await;
    let client = taskgate_aws::dynamodb_client(&sdk, Some(&endpoint));
    let tables = unique_tables();
    taskgate_aws::ensure_tables(&client, &tables)
        .await
        .expect("DynamoDB Local creates the tables");
    taskgate_aws::DynamoStore::new(client, tables)
}

/// A DynamoDB store on DynamoDB Local over existing `tables`.
pub async fn dynamodb_store_on(tables: &TableNames) -> taskgate_aws::DynamoStore {
    let endpoint = dynamodb_endpoint();
    let sdk = taskgate_aws::load_sdk_config(Some(&endpoint)).await;
    let client = taskgate_aws::dynamodb_client(&sdk, Some(&endpoint));
    taskgate_aws::DynamoStore::new(client, tables.clone())
}

/// Moves the expiry of the unfinished upload `id` into the past, as time
/// passing would (its record in the Files table of `tables`: the indexed
/// attribute and the record's own copy).
pub async fn expire_upload(tables: &TableNames, id: &str) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let endpoint = dynamodb_endpoint();
    let sdk = taskgate_aws::load_sdk_config(Some(&endpoint)).await;
    let client = taskgate_aws::dynamodb_client(&sdk, Some(&endpoint));
    let key = AttributeValue::S(id.to_owned());
    let found = client
        .get_item()
        .table_name(&tables.files)
        .key("file_id", key.clone())
        .consistent_read(true)
        .send()
        .await
        .expect("DynamoDB Local answers");
    let mut row = found.item.expect("the upload's record is there");
    let past = "2020-01-01T00:00:00.000Z";
    let mut record: Value =
        serde_json::from_str(row["item"].as_s().expect("the record")).expect("JSON");
    record["expires_at"] = json!(past);
    row.insert("item".into(), AttributeValue::S(record.to_string()));
    row.insert("expires_at".into(), AttributeValue::S(past.into()));
    client
        .put_item()
        .table_name(&tables.files)
        .set_item(Some(row))
        .send()
        .await
        .expect("DynamoDB Local writes");
}

pub fn init_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("TASKGATE_TEST_LOG") {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .init();
        }
    });
}

/// A running local server with its own data, and a client for it.
pub struct TestApp {
    pub backend: Backend,
    pub config: ServeConfig,
    pub client: Client,
    base_url: String,
    server: Option<Server>,
    /// Routes served beside the API (see [`TestApp::spawn_serving`]).
    extra_routes: axum::Router,
    // Dropped last: the server's files live here.
    pub data_dir: TempDir,
}

impl TestApp {
    /// A server with the default settings (registration closed).
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// A server whose configuration `configure` may change first.
    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut ServeConfig)) -> Self {
        Self::spawn_serving(backend, configure, axum::Router::new()).await
    }

    /// A server that also serves `extra_routes` (test-only routes) beside
    /// the API, behind the same layers.
    pub async fn spawn_serving(
        backend: Backend,
        configure: impl FnOnce(&mut ServeConfig),
        extra_routes: axum::Router,
    ) -> Self {
        init_logging();
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let store = match backend {
            Backend::Embedded => StoreConfig::Embedded,
            Backend::DynamoDb => StoreConfig::DynamoDb {
                endpoint: Some(dynamodb_endpoint()),
                tables: unique_tables(),
            },
        };
        let mut config = ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            metrics_addr: None,
            tls: false,
            data_dir: data_dir.path().to_owned(),
            store,
            admin_username: Username::parse("admin").unwrap(),
            admin_password: Some(ADMIN_PASSWORD.to_owned().into()),
            api: Settings {
                max_concurrent_hashes: 4,
                ..Settings::default()
            },
            js_worker: js_worker(),
            ..ServeConfig::from_lookup(|_| None).expect("the declared defaults")
        };
        configure(&mut config);
        let mut app = Self {
            backend,
            config,
            client: Client::new(),
            base_url: String::new(),
            server: None,
            extra_routes,
            data_dir,
        };
        app.start().await;
        app
    }

    async fn start(&mut self) {
        let server =
            taskgate_server::start_with_routes(self.config.clone(), self.extra_routes.clone())
                .await
                .expect("the test server starts");
        self.base_url = server.url();
        if self.config.tls {
            let cert = std::fs::read(
                self.data_dir
                    .path()
                    .join(taskgate_server::server::TLS_CERT_FILE),
            )
            .expect("the generated certificate");
            self.client = Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&cert).unwrap()])
                .resolve("localhost", server.local_addr())
                .build()
                .unwrap();
            self.base_url = format!("https://localhost:{}", server.local_addr().port());
        }
        self.server = Some(server);
    }

    /// Stops the server and starts it again on the same data (same data
    /// directory, same tables), on a new port.
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("the server stops cleanly");
        }
        self.start().await;
    }

    /// A rustls client configuration that trusts only this server's
    /// generated certificate (for clients other than `reqwest`).
    pub fn tls_client_config(&self) -> std::sync::Arc<rustls::ClientConfig> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let cert = std::fs::read(
            self.data_dir
                .path()
                .join(taskgate_server::server::TLS_CERT_FILE),
        )
        .expect("the generated certificate");
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(&cert) {
            roots.add(der.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        std::sync::Arc::new(config)
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("the server is running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// A second handle on this server's store, to set up states the API
    /// cannot produce (or to inspect what it wrote).
    pub async fn store(&self) -> std::sync::Arc<dyn taskgate_domain::ports::Store> {
        match &self.config.store {
            StoreConfig::Embedded => std::sync::Arc::new(
                taskgate_embedded::EmbeddedStore::open(
                    &self
                        .data_dir
                        .path()
                        .join(taskgate_server::server::DATABASE_FILE),
                )
                .unwrap(),
            ),
            StoreConfig::DynamoDb { endpoint, tables } => {
                let sdk = taskgate_aws::load_sdk_config(endpoint.as_deref()).await;
                let client = taskgate_aws::dynamodb_client(&sdk, endpoint.as_deref());
                std::sync::Arc::new(taskgate_aws::DynamoStore::new(client, tables.clone()))
            }
            StoreConfig::Memory => panic!("an in-memory store cannot be opened twice"),
        }
    }

    /// The JWT signing secret of this server (to forge tokens in attacks).
    pub fn jwt_secret(&self) -> Vec<u8> {
        use base64::Engine as _;
        let encoded = std::fs::read_to_string(
            self.data_dir
                .path()
                .join(taskgate_server::server::JWT_SECRET_FILE),
        )
        .expect("the secret file");
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .expect("the secret is base64")
    }

    /// A request with the token, if any.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Response {
        self.request(method, path, token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::DELETE, path, token)
            .send()
            .await
            .expect("request sent")
    }

    /// Logs in and returns the raw response.
    pub async fn try_login(&self, username: &str, password: &str) -> Response {
        self.send_json(
            Method::POST,
            "/auth",
            None,
            &json!({"username": username, "password": password}),
        )
        .await
    }

    /// Logs in; panics unless it works.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let response = self.try_login(username, password).await;
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(status, StatusCode::OK, "login as {username} failed: {body}");
        body["token"].as_str().expect("a token").to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// Creates a user (as the given admin) with [`PASSWORD`]; panics unless it works.
    pub async fn create_user(&self, admin_token: &str, username: &str, level: &str) {
        let response = self
            .send_json(
                Method::POST,
                "/users",
                Some(admin_token),
                &json!({"username": username, "password": PASSWORD, "level": level}),
            )
            .await;
        let status = response.status();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "creating {username}: {}",
            response.text().await.unwrap()
        );
    }

    /// Creates a user and logs them in.
    pub async fn user_with_token(&self, admin_token: &str, username: &str, level: &str) -> String {
        self.create_user(admin_token, username, level).await;
        self.login(username, PASSWORD).await
    }

    /// Every user, as the admin sees them through the API (all pages).
    pub async fn all_users(&self, admin_token: &str) -> Vec<Value> {
        let mut users = Vec::new();
        let mut path = "/users?limit=100".to_owned();
        loop {
            let page: Value = self
                .get(&path, Some(admin_token))
                .await
                .json()
                .await
                .unwrap();
            users.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next"].as_str() {
                Some(cursor) => path = format!("/users?limit=100&cursor={cursor}"),
                None => break,
            }
        }
        users.sort_by(|a, b| a["username"].as_str().cmp(&b["username"].as_str()));
        users
    }
}

impl TestApp {
    /// Starts a task; panics unless the answer is 202.
    pub async fn start_task(&self, token: &str, body: Value) -> Value {
        let response = self
            .send_json(Method::POST, "/tasks", Some(token), &body)
            .await;
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, task) = status_and_json(response).await;
        let mut shown = body.to_string();
        shown.truncate(200);
        assert_eq!(status, StatusCode::ACCEPTED, "starting {shown}: {task}");
        assert_eq!(
            location,
            Some(format!("/tasks/{}", task["id"].as_str().unwrap()))
        );
        task
    }

    /// Polls the task until its status is terminal (or panics after `within`).
    pub async fn finished_task(&self, token: &str, id: &str, within: std::time::Duration) -> Value {
        let deadline = std::time::Instant::now() + within;
        loop {
            let (status, task) =
                status_and_json(self.get(&format!("/tasks/{id}"), Some(token)).await).await;
            assert_eq!(status, StatusCode::OK, "{task}");
            if ["succeeded", "failed", "cancelled"].contains(&task["status"].as_str().unwrap()) {
                return task;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "task {id} still {} after {within:?}",
                task["status"]
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn task_events(&self, token: &str, id: &str) -> Vec<Value> {
        let (status, body) =
            status_and_json(self.get(&format!("/tasks/{id}/events"), Some(token)).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().unwrap().clone()
    }
}

/// Process ids whose command line contains `needle` (to see worker processes).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(needle)
        {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

/// Reads a response as (status, JSON body or `null`).
pub async fn status_and_json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("a body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, body)
}

/// Asserts a problem+json error with this status and `type` slug.
pub async fn assert_problem(response: Response, status: StatusCode, slug: &str) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (actual, body) = status_and_json(response).await;
    assert_eq!(actual, status, "unexpected status; body: {body}");
    assert_eq!(content_type, "application/problem+json", "body: {body}");
    assert_eq!(
        body["type"],
        format!("urn:taskgate:problem:{slug}"),
        "body: {body}"
    );
    assert_eq!(body["status"], status.as_u16(), "body: {body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "body: {body}"
    );
    body
}
