//! # Lambda bootstrap
//!
//! The one `main` every function in `functions/` calls:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     taskgate_lambda::run(taskgate_lambda::Endpoint::UsersGet)
//! }
//! ```
//!
//! Per cold start, [`cold_start`] reads the configuration, builds the AWS
//! clients and fetches the JWT signing secret from Secrets Manager, once.
//! Per invocation, [`handle_event`] turns the API Gateway request into the
//! `http::Request<Bytes>` the shared handlers take (path parameters and the
//! Lambda request id as extensions) and the response back.
//!
//! Environment (set by `infra/template.yaml`): `TASKGATE_USERS_TABLE`,
//! `TASKGATE_TOKENS_TABLE`, `TASKGATE_JWT_SECRET_ARN`, and the shared
//! settings of `taskgate_api::Settings` (`TASKGATE_REGISTRATION`, ...).
//! `TASKGATE_DYNAMODB_ENDPOINT` points the functions at DynamoDB Local under
//! `sam local start-api`.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use lambda_http::{Body, RequestExt, Service, service_fn};
use secrecy::SecretSlice;
use taskgate_api::request::{PathParams, RequestId};
use taskgate_api::{AppState, Settings};
use taskgate_aws::{DynamoStore, TableNames};

pub use taskgate_api::Endpoint;

/// Runs the Lambda function for `endpoint` until the runtime stops it.
pub fn run(endpoint: Endpoint) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let state = match cold_start().await {
            Ok(state) => Arc::new(state),
            Err(e) => {
                // Failing the init phase makes Lambda report the error and
                // retry the cold start on the next invocation.
                tracing::error!(error = format!("{e:#}"), "cold start failed");
                return ExitCode::FAILURE;
            }
        };
        match lambda_http::run(service(endpoint, state)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "the Lambda runtime stopped");
                ExitCode::FAILURE
            }
        }
    })
}

/// JSON logs (CloudWatch adds the timestamp), filtered by `TASKGATE_LOG`
/// (default `info`). The runtime's span carries the Lambda request id.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TASKGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .init();
}

/// Everything built once per container: settings, clients, the secret.
pub async fn cold_start() -> anyhow::Result<AppState> {
    let settings = Settings::from_env()?;
    let endpoint = std::env::var("TASKGATE_DYNAMODB_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    let sdk = taskgate_aws::load_sdk_config(endpoint.as_deref()).await;
    let dynamodb = taskgate_aws::dynamodb_client(&sdk, endpoint.as_deref());
    let store = DynamoStore::new(dynamodb, TableNames::from_env());
    let secret = jwt_secret(&sdk).await?;
    Ok(AppState::new(Arc::new(store), &secret, settings)?)
}

/// Reads the JWT signing secret from Secrets Manager (`TASKGATE_JWT_SECRET_ARN`).
async fn jwt_secret(sdk: &aws_config::SdkConfig) -> anyhow::Result<SecretSlice<u8>> {
    let arn = std::env::var("TASKGATE_JWT_SECRET_ARN")
        .context("TASKGATE_JWT_SECRET_ARN is not set; the SAM template sets it")?;
    let client = aws_sdk_secretsmanager::Client::new(sdk);
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

/// The `tower::Service` `lambda_http::run` drives, for one endpoint.
pub fn service(
    endpoint: Endpoint,
    state: Arc<AppState>,
) -> impl Service<
    lambda_http::Request,
    Response = lambda_http::Response<Body>,
    Error = Infallible,
    Future: Send,
> + Clone {
    service_fn(move |request: lambda_http::Request| {
        let state = Arc::clone(&state);
        async move { Ok(handle_event(&state, endpoint, request).await) }
    })
}

/// One invocation: API Gateway request in, API Gateway response out.
pub async fn handle_event(
    state: &AppState,
    endpoint: Endpoint,
    request: lambda_http::Request,
) -> lambda_http::Response<Body> {
    let params = PathParams(
        request
            .path_parameters()
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
    );
    let request_id = request
        .lambda_context_ref()
        .map(|context| RequestId(context.request_id.clone()));
    let (mut parts, body) = request.into_parts();
    let body = match body {
        Body::Empty => Bytes::new(),
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    parts.extensions.insert(params);
    if let Some(request_id) = request_id {
        parts.extensions.insert(request_id);
    }
    let response =
        taskgate_api::handle(state, endpoint, http::Request::from_parts(parts, body)).await;
    response.map(|body| {
        if body.is_empty() {
            Body::Empty
        } else {
            match String::from_utf8(body.to_vec()) {
                Ok(text) => Body::Text(text),
                Err(e) => Body::Binary(e.into_bytes()),
            }
        }
    })
}
