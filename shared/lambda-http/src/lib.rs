//! # Lambda bootstrap of the HTTP and WebSocket functions
//!
//! The one `main` every HTTP function in `functions/` calls:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     taskgate_lambda_http::run_http()
//! }
//! ```
//!
//! Per cold start, [`cold_start`] reads the configuration, builds the AWS
//! clients and fetches the JWT signing secret from Secrets Manager, once.
//! Every HTTP function serves the whole application ([`taskgate_api::app`])
//! through `lambda_http`, which turns each API Gateway event into a request
//! for the router and its response back ([`service`]): path parameters are
//! matched by the router from the request's path, exactly as on the local
//! server. Which routes reach a function is API Gateway's choice
//! (infra/template.yaml), and its role allows only what those routes need.
//! The WebSocket API's routes and the log tables' streams are served by
//! [`run_realtime`] (see [`realtime`]).
//!
//! The rest of the bootstrap (logs, runtime, clients) is
//! [`taskgate_lambda`]'s, which the non-HTTP functions use alone. Beyond
//! its environment: `TASKGATE_JWT_SECRET_ARN` (the signing secret) and
//! `TASKGATE_WS_ENDPOINT` (the WebSocket API's management endpoint).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use lambda_http::RequestExt;
use lambda_http::lambda_runtime::{self, LambdaEvent};
use secrecy::SecretSlice;
use taskgate_api::{AppState, RequestId};
use taskgate_app::settings::Settings;
use taskgate_aws::DynamoStore;
use taskgate_lambda::{
    bootstrap, dynamo_store, env_endpoint, files_bucket, ms, runtime_stopped, workflow,
};

pub mod realtime;

/// Runs an HTTP function until the runtime stops it.
pub fn run_http() -> ExitCode {
    bootstrap(async move {
        let begun = std::time::Instant::now();
        // The routes take CPU, the configuration and the secret mostly wait
        // on the network: built side by side.
        let routes = tokio::task::spawn_blocking(|| {
            let begun = std::time::Instant::now();
            let routes = console().map(taskgate_api::app::routes);
            (routes, begun.elapsed())
        });
        let state = Arc::new(cold_start().await?);
        let (routes, routes_took) = routes
            .await
            .map_err(|e| anyhow::anyhow!("building the routes failed: {e}"))?;
        let routes = routes?;
        let service = service_with(routes, state);
        tracing::info!(
            total_ms = ms(begun.elapsed()),
            routes_ms = ms(routes_took),
            "cold start complete: settings, clients, signing key and routes ready"
        );
        lambda_http::run(service).await.map_err(runtime_stopped)
    })
}

/// Runs one of the real-time functions, chosen by
/// `TASKGATE_REALTIME_HANDLER`: `connect`, `disconnect`, `default` (the
/// WebSocket API's routes) or `fan-out` (the streams of the log tables).
/// See [`realtime`].
pub fn run_realtime() -> ExitCode {
    bootstrap(async {
        let handler = std::env::var("TASKGATE_REALTIME_HANDLER").unwrap_or_default();
        let realtime = Arc::new(realtime_cold_start(&handler).await?);
        tracing::info!(function = "realtime", handler, "cold start complete");
        match handler.as_str() {
            "connect" | "disconnect" | "default" => {
                let handler =
                    lambda_runtime::service_fn(move |event: LambdaEvent<serde_json::Value>| {
                        let (realtime, handler) = (Arc::clone(&realtime), handler.clone());
                        async move {
                            // `$default` also takes the rest of a replay it
                            // handed itself (realtime::Replays).
                            if handler == "default"
                                && let Ok(rest) = serde_json::from_value::<realtime::ReplayEvent>(
                                    event.payload.clone(),
                                )
                            {
                                realtime.resume(rest.taskgate_replay).await;
                                return Ok(serde_json::Value::Null);
                            }
                            let request: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest =
                                serde_json::from_value(event.payload)
                                    .map_err(|e| format!("not a WebSocket API event: {e}"))?;
                            let response = match handler.as_str() {
                                "connect" => realtime.connect(request).await,
                                "disconnect" => realtime.disconnect(request).await,
                                _ => realtime.message(request).await,
                            };
                            serde_json::to_value(response).map_err(|e| e.to_string())
                        }
                    });
                lambda_runtime::run(handler).await.map_err(runtime_stopped)
            }
            "fan-out" => {
                let handler = lambda_runtime::service_fn(
                    move |event: LambdaEvent<aws_lambda_events::dynamodb::Event>| {
                        let realtime = Arc::clone(&realtime);
                        async move {
                            realtime.fan_out(event.payload).await;
                            Ok::<_, std::convert::Infallible>(())
                        }
                    },
                );
                lambda_runtime::run(handler).await.map_err(runtime_stopped)
            }
            other => anyhow::bail!(
                "TASKGATE_REALTIME_HANDLER is {other:?}; expected connect, disconnect, default or fan-out"
            ),
        }
    })
}

/// The state of a real-time function: the application's, the Connections
/// table, and the management API at `TASKGATE_WS_ENDPOINT`.
///
/// Only `$connect` verifies tokens, so only it reads the signing secret
/// (and only its role may); the others check a connection's token by its
/// record (`SessionStore`), and are given a throwaway key they never use.
pub async fn realtime_cold_start(handler: &str) -> anyhow::Result<realtime::Realtime> {
    let (sdk, store) = dynamo_store().await;
    let state = if handler == "connect" {
        state_with(&sdk, store.clone()).await?
    } else {
        let unused = SecretSlice::from(uuid_bytes());
        AppState::new(Arc::new(store.clone()), &unused, Settings::from_env()?)?
    };
    let state = Arc::new(state);
    let endpoint = env_endpoint("TASKGATE_WS_ENDPOINT")
        .context("TASKGATE_WS_ENDPOINT is not set; the SAM template sets it")?;
    let management = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            .endpoint_url(endpoint)
            .build(),
    );
    let connections = taskgate_aws::connections::Connections::new(
        store.client().clone(),
        store.tables().connections.clone(),
    );
    // `$default` hands a replay longer than its budget to its next
    // invocation (itself, by the name Lambda gives it).
    let replays = if handler == "default" {
        let function = env_endpoint("AWS_LAMBDA_FUNCTION_NAME")
            .context("AWS_LAMBDA_FUNCTION_NAME is not set; Lambda sets it")?;
        let mut config = aws_sdk_lambda::config::Builder::from(&sdk);
        if let Some(endpoint) = env_endpoint("TASKGATE_LAMBDA_ENDPOINT") {
            config = config.endpoint_url(endpoint);
        }
        Some(realtime::Replays {
            lambda: aws_sdk_lambda::Client::from_conf(config.build()),
            function,
            budget: state.settings.realtime.replay_budget,
        })
    } else {
        None
    };
    Ok(realtime::Realtime {
        state,
        connections,
        management,
        replays,
    })
}

/// Everything built once per container: settings, clients, the secret, and
/// the Step Functions workflow where `TASKGATE_STATE_MACHINE_ARN` is set.
pub async fn cold_start() -> anyhow::Result<AppState> {
    let begun = std::time::Instant::now();
    let (sdk, store) = dynamo_store().await;
    tracing::debug!(
        aws_configuration_ms = ms(begun.elapsed()),
        "cold start: AWS configuration and DynamoDB client"
    );
    state_with(&sdk, store).await
}

/// [`cold_start`] with the AWS configuration and store already made.
async fn state_with(sdk: &aws_config::SdkConfig, store: DynamoStore) -> anyhow::Result<AppState> {
    let settings = Settings::from_env()?;
    let begun = std::time::Instant::now();
    let secret = jwt_secret(sdk).await?;
    let read = begun.elapsed();
    let mut state = AppState::new(Arc::new(store), &secret, settings)?;
    tracing::debug!(
        secret_ms = ms(read),
        app_state_ms = ms(begun.elapsed() - read),
        "cold start: signing secret read, application state built"
    );
    if let Some(workflow) = workflow(sdk, &state.recorder) {
        state = state.with_workflow(Arc::new(workflow));
    }
    // The bytes of files, where the template names a bucket.
    if let Some(blobs) = files_bucket(sdk) {
        state = state.with_blobs(Arc::new(blobs));
    }
    Ok(state)
}

/// 32 random bytes (a signing key nothing will ever verify with).
fn uuid_bytes() -> Vec<u8> {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes
}

/// Reads the JWT signing secret from Secrets Manager (`TASKGATE_JWT_SECRET_ARN`).
async fn jwt_secret(sdk: &aws_config::SdkConfig) -> anyhow::Result<SecretSlice<u8>> {
    let arn = std::env::var("TASKGATE_JWT_SECRET_ARN")
        .context("TASKGATE_JWT_SECRET_ARN is not set; the SAM template sets it")?;
    let mut config = aws_sdk_secretsmanager::config::Builder::from(sdk);
    if let Some(endpoint) = env_endpoint("TASKGATE_SECRETSMANAGER_ENDPOINT") {
        config = config.endpoint_url(endpoint);
    }
    let client = aws_sdk_secretsmanager::Client::from_conf(config.build());
    let output = client
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(e)))
        .context("cannot read the JWT signing secret from Secrets Manager")?;
    let secret = output
        .secret_string()
        .context("the JWT signing secret has no string value")?;
    Ok(SecretSlice::from(secret.as_bytes().to_vec()))
}

/// The service `lambda_http::run` drives: the application, with Lambda's
/// request id as the request's id (in logs, error bodies, `X-Request-Id`).
pub fn service(state: Arc<AppState>) -> anyhow::Result<axum::Router> {
    Ok(service_with(taskgate_api::app::routes(console()?), state))
}

/// The console as this deployment serves it: its live socket and its
/// downloads on the origins the template names
/// ([`taskgate_console::Elsewhere::from_env`]); a bad one stops the cold
/// start, naming its variable.
fn console() -> anyhow::Result<taskgate_console::Console> {
    taskgate_console::Console::new(&taskgate_console::Elsewhere::from_env())
        .map_err(|e| anyhow::anyhow!("the console's settings: {e}"))
}

/// [`service`] from routes built beforehand.
fn service_with(routes: taskgate_api::app::Routes, state: Arc<AppState>) -> axum::Router {
    let max_header_bytes = state.settings.max_header_bytes;
    let app = taskgate_api::app::app_with(routes, state);
    taskgate_api::app::with_header_limit(app, max_header_bytes).layer(
        axum::middleware::map_request(|mut request: axum::extract::Request| async move {
            if let Some(id) = request
                .lambda_context_ref()
                .map(|context| RequestId(context.request_id.clone()))
            {
                request.extensions_mut().insert(id);
            }
            request
        }),
    )
}
