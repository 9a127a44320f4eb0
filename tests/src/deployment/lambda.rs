//! Function binaries run as Lambda runs them: each is the real `bootstrap`
//! process, talking to an emulation of the Lambda Runtime API (the HTTP
//! interface a Lambda container offers its process), with the environment
//! the template gives it. [`FunctionProcess::invoke`] hands it one event and
//! waits for its answer, as a synchronous invoke does.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};

/// How an invocation ended: the function's response, or the error it
/// reported (`{"errorType", "errorMessage"}`), as Lambda's invoke API tells.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Response(Value),
    Error(Value),
}

impl Answer {
    pub fn response(self) -> Value {
        match self {
            Answer::Response(value) => value,
            Answer::Error(error) => panic!("the function failed: {error}"),
        }
    }
}

type Pending = (String, Value, oneshot::Sender<Answer>);

struct Runtime {
    queue: Mutex<mpsc::Receiver<Pending>>,
    waiting: std::sync::Mutex<std::collections::HashMap<String, oneshot::Sender<Answer>>>,
    function_name: String,
    /// What the process reported through `/runtime/init/error`.
    init_errors: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn next(State(runtime): State<Arc<Runtime>>) -> (HeaderMap, String) {
    let Some((id, event, answer)) = runtime.queue.lock().await.recv().await else {
        // The deployment is gone: the process waits until it is killed.
        return std::future::pending().await;
    };
    runtime.waiting.lock().unwrap().insert(id.clone(), answer);
    let mut headers = HeaderMap::new();
    headers.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_str(&id).unwrap(),
    );
    let deadline = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 900_000;
    headers.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from_str(&deadline.to_string()).unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_str(&format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{}",
            runtime.function_name
        ))
        .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static("Root=1-00000000-000000000000000000000000"),
    );
    (headers, event.to_string())
}

async fn respond(
    State(runtime): State<Arc<Runtime>>,
    UrlPath((id, kind)): UrlPath<(String, String)>,
    body: String,
) -> StatusCode {
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let answer = if kind == "error" {
        Answer::Error(body)
    } else {
        Answer::Response(body)
    };
    if let Some(waiting) = runtime.waiting.lock().unwrap().remove(&id) {
        let _ = waiting.send(answer);
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(runtime): State<Arc<Runtime>>, body: String) -> StatusCode {
    runtime.init_errors.lock().unwrap().push(body);
    StatusCode::ACCEPTED
}

/// One function's container: its process and its runtime API.
pub struct FunctionProcess {
    pub name: String,
    events: mpsc::Sender<Pending>,
    child: Mutex<tokio::process::Child>,
    pub log: std::path::PathBuf,
    init_errors: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FunctionProcess {
    /// Starts `program` with `environment` (and Lambda's own variables) as
    /// the function `name`; its output goes to `log`.
    pub async fn start(
        name: &str,
        program: &Path,
        environment: &[(String, String)],
        log: std::path::PathBuf,
    ) -> Self {
        let (events, queue) = mpsc::channel(16);
        let init_errors = Arc::<std::sync::Mutex<Vec<String>>>::default();
        let runtime = Arc::new(Runtime {
            queue: Mutex::new(queue),
            waiting: Default::default(),
            function_name: name.to_owned(),
            init_errors: Arc::clone(&init_errors),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(respond))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(runtime);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let output = std::fs::File::create(&log).expect("a log file");
        let child = tokio::process::Command::new(program)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "emulated")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("TASKGATE_LOG", "info")
            .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Self {
            name: name.to_owned(),
            events,
            child: Mutex::new(child),
            log,
            init_errors,
        }
    }

    /// Invokes the function with `event` and waits (at most `limit`) for its
    /// answer.
    pub async fn invoke(&self, event: Value, limit: Duration) -> Answer {
        self.invoke_as(&uuid::Uuid::new_v4().to_string(), event, limit)
            .await
    }

    /// [`Self::invoke`] with the request id Lambda gives the invocation.
    pub async fn invoke_as(&self, id: &str, event: Value, limit: Duration) -> Answer {
        let (tx, rx) = oneshot::channel();
        let id = id.to_owned();
        self.events
            .send((id, event, tx))
            .await
            .expect("the runtime takes events");
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => panic!("{}: the invocation was dropped", self.name),
            Err(_) => {
                let exited = self.child.lock().await.try_wait().ok().flatten();
                panic!(
                    "{}: no answer within {limit:?} (process: {exited:?}; init errors: {:?}); its log:\n{}",
                    self.name,
                    self.init_errors(),
                    self.log_text()
                )
            }
        }
    }

    /// What the process reported as a failed start.
    pub fn init_errors(&self) -> Vec<String> {
        self.init_errors.lock().unwrap().clone()
    }

    /// Stops the process (as Lambda ends a container), so its log is whole.
    pub async fn stop(&self) {
        let mut child = self.child.lock().await;
        let _ = child.start_kill();
        let _ = child.wait().await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
