//! # Lambda bootstrap
//!
//! What every Lambda function's `main` starts with ([`bootstrap`]: JSON
//! logs, a runtime, an error that ends the container), and the functions
//! that are not HTTP: the task steps the state machine invokes
//! ([`run_record_step`], [`run_js_step`], [`run_export_step`]; see
//! [`steps`]), the reconciler ([`run_reconciler`]; see [`reconcile`]) and
//! the upload reaper ([`run_upload_reaper`]). This crate does not depend on
//! the HTTP application: a step's binary carries the use cases, the domain
//! and the AWS adapters only. The HTTP and WebSocket functions are
//! bootstrapped by `taskgate-lambda-http`, on top of this crate.
//!
//! Environment (set by `infra/template.yaml`): the table names
//! (`TASKGATE_*_TABLE`), `TASKGATE_STATE_MACHINE_ARN`,
//! `TASKGATE_FILES_BUCKET` (the S3 bucket of files' bytes) and the shared
//! settings of `taskgate_app::settings::Settings`.
//! `TASKGATE_DYNAMODB_ENDPOINT`, `TASKGATE_STEPFUNCTIONS_ENDPOINT`,
//! `TASKGATE_SECRETSMANAGER_ENDPOINT` and `TASKGATE_S3_ENDPOINT` point the
//! functions at local stand-ins under `sam local start-api` (empty on AWS).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use lambda_runtime::LambdaEvent;
use taskgate_app::settings::Settings;
use taskgate_aws::workflow::StepFunctionsWorkflow;
use taskgate_aws::{DynamoStore, TableNames};
use taskgate_domain::ports::JsRunner;
use taskgate_domain::recorder::Recorder;
use taskgate_domain::task::JsLimits;

pub mod reconcile;
pub mod steps;

/// Runs `serve` (cold start, then the runtime loop) on a fresh runtime with
/// JSON logs. An error ends the process: Lambda reports it and starts a
/// fresh container for the next invocation.
pub fn bootstrap<F>(serve: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
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
    match runtime.block_on(serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "the function stopped");
            ExitCode::FAILURE
        }
    }
}

pub fn runtime_stopped(e: lambda_runtime::Error) -> anyhow::Error {
    anyhow::anyhow!("the Lambda runtime stopped: {e}")
}

/// A duration in milliseconds, for cold-start logs.
pub fn ms(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1e5).round() / 100.0
}

/// Runs the reconciler (see [`reconcile`]): fed by EventBridge, it fails
/// the tasks whose executions ended without an outcome; run on a schedule
/// (a `Scheduled Event`), it sweeps the tasks that were created but never
/// started, older than `TASKGATE_UNSTARTED_GRACE_SECONDS` (default 120).
pub fn run_reconciler() -> ExitCode {
    bootstrap(async {
        let grace = Settings::from_env()?.unstarted_grace;
        let (sdk, store) = dynamo_store().await;
        let store = Arc::new(store);
        let recorder = Recorder::new(store.clone());
        let workflow = Arc::new(
            workflow(&sdk, &recorder)
                .context("TASKGATE_STATE_MACHINE_ARN must name the state machine")?,
        );
        let recorder = Arc::new(recorder);
        tracing::info!(function = "task-reconciler", "cold start complete");
        let handler = lambda_runtime::service_fn(move |event: LambdaEvent<serde_json::Value>| {
            let (store, recorder, workflow) = (
                Arc::clone(&store),
                Arc::clone(&recorder),
                Arc::clone(&workflow),
            );
            async move {
                // A store failure fails the invocation: EventBridge
                // retries it (the schedule runs the sweep again anyway).
                let failed = |e: taskgate_domain::ports::StoreError| {
                    taskgate_domain::ports::Chain(&e).to_string()
                };
                if event.payload["detail-type"] == "Scheduled Event" {
                    let swept = reconcile::sweep(
                        &store,
                        &recorder,
                        workflow.as_ref(),
                        time::OffsetDateTime::now_utc(),
                        grace,
                    )
                    .await
                    .map_err(failed)?;
                    tracing::info!(?swept, "swept the tasks that never started");
                    return Ok::<_, String>(serde_json::json!({
                        "started": swept.started.len(),
                        "failed": swept.failed.len(),
                        "cleared": swept.cleared,
                        "deferred": swept.deferred,
                    }));
                }
                let outcome = reconcile::reconcile(&recorder, &event.payload)
                    .await
                    .map_err(failed)?;
                tracing::info!(?outcome, "reconciled");
                Ok::<_, String>(serde_json::Value::Null)
            }
        });
        lambda_runtime::run(handler).await.map_err(runtime_stopped)
    })
}

/// Runs the upload reaper: each scheduled invocation removes the
/// unfinished uploads past their expiry (records, multipart uploads and
/// staged objects in `TASKGATE_FILES_BUCKET`).
pub fn run_upload_reaper() -> ExitCode {
    bootstrap(async {
        let (sdk, store) = dynamo_store().await;
        let blobs = Arc::new(files_bucket(&sdk).context(NO_BUCKET)?);
        let store = Arc::new(store);
        tracing::info!(function = "upload-reaper", "cold start complete");
        let handler = lambda_runtime::service_fn(move |_: LambdaEvent<serde_json::Value>| {
            let (store, blobs) = (Arc::clone(&store), Arc::clone(&blobs));
            async move {
                // A store failure fails the invocation; the next one (or
                // EventBridge's retry) carries on where it stopped.
                let removed = taskgate_app::uploads::reap_expired(
                    store.as_ref(),
                    blobs.as_ref(),
                    time::OffsetDateTime::now_utc(),
                )
                .await
                .map_err(|e| taskgate_domain::ports::Chain(&e).to_string())?;
                tracing::info!(removed, "removed expired uploads");
                Ok::<_, String>(serde_json::json!({"removed": removed}))
            }
        });
        lambda_runtime::run(handler).await.map_err(runtime_stopped)
    })
}

/// Runs the record step: appends a task's outcome to its log.
pub fn run_record_step() -> ExitCode {
    bootstrap(async {
        let recorder = Arc::new(recorder().await);
        tracing::info!(
            function = "step-record",
            "cold start complete: settings and clients loaded"
        );
        let handler = lambda_runtime::service_fn(move |event: LambdaEvent<steps::RecordInput>| {
            let recorder = Arc::clone(&recorder);
            async move { steps::record(&recorder, event.payload).await }
        });
        lambda_runtime::run(handler).await.map_err(runtime_stopped)
    })
}

/// Runs the JS step with the runner `make_runner` builds from the configured
/// limits (the step-js function passes the sandbox, so this crate never
/// links the JavaScript engine).
pub fn run_js_step(
    make_runner: impl FnOnce(JsLimits) -> anyhow::Result<Arc<dyn JsRunner>>,
) -> ExitCode {
    bootstrap(async move {
        let settings = Settings::from_env()?;
        let runner = make_runner(settings.tasks.js.clone())?;
        let recorder = Arc::new(recorder().await);
        tracing::info!(
            function = "step-js",
            "cold start complete: settings, clients and sandbox ready"
        );
        let handler = lambda_runtime::service_fn(move |event: LambdaEvent<steps::JsInput>| {
            let (recorder, runner) = (Arc::clone(&recorder), Arc::clone(&runner));
            async move {
                steps::run_js(
                    &recorder,
                    runner.as_ref(),
                    event.payload,
                    steps::CANCEL_POLL,
                )
                .await
            }
        });
        lambda_runtime::run(handler).await.map_err(runtime_stopped)
    })
}

/// Runs the export step: writes an export's file into the files bucket
/// (`TASKGATE_FILES_BUCKET`, required) and records its outcome.
pub fn run_export_step() -> ExitCode {
    bootstrap(async {
        let settings = Settings::from_env()?;
        let (sdk, store) = dynamo_store().await;
        let blobs = files_bucket(&sdk).context(NO_BUCKET)?;
        let store = Arc::new(store);
        let recorder = Arc::new(Recorder::new(store.clone()));
        let exporter: Arc<dyn taskgate_domain::ports::Exporter> =
            Arc::new(taskgate_app::export::StoreExporter::new(
                store,
                Arc::new(blobs),
                Arc::new(taskgate_domain::clock::SystemClock),
                settings.files.clone(),
            ));
        tracing::info!(
            function = "step-export",
            "cold start complete: settings and clients loaded"
        );
        let handler = lambda_runtime::service_fn(move |event: LambdaEvent<steps::ExportInput>| {
            let (recorder, exporter) = (Arc::clone(&recorder), Arc::clone(&exporter));
            async move {
                steps::run_export(
                    &recorder,
                    exporter.as_ref(),
                    event.payload,
                    steps::EXPORT_CANCEL_POLL,
                )
                .await
            }
        });
        lambda_runtime::run(handler).await.map_err(runtime_stopped)
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

pub fn env_endpoint(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|e| !e.is_empty())
}

const NO_BUCKET: &str = "TASKGATE_FILES_BUCKET must name the files bucket";

/// The Step Functions workflow of `TASKGATE_STATE_MACHINE_ARN`
/// (`TASKGATE_STEPFUNCTIONS_ENDPOINT` for a local stand-in), if it is set.
pub fn workflow(sdk: &aws_config::SdkConfig, recorder: &Recorder) -> Option<StepFunctionsWorkflow> {
    let arn = env_endpoint("TASKGATE_STATE_MACHINE_ARN")?;
    let endpoint = env_endpoint("TASKGATE_STEPFUNCTIONS_ENDPOINT");
    let sfn = taskgate_aws::sfn_client(sdk, endpoint.as_deref());
    Some(StepFunctionsWorkflow::new(sfn, arn, recorder.clone()))
}

/// The files' bytes in `TASKGATE_FILES_BUCKET` (`TASKGATE_S3_ENDPOINT` for
/// a local stand-in), if it is set.
pub fn files_bucket(sdk: &aws_config::SdkConfig) -> Option<taskgate_aws::blobs::S3Blobs> {
    let bucket = env_endpoint("TASKGATE_FILES_BUCKET")?;
    let endpoint = env_endpoint("TASKGATE_S3_ENDPOINT");
    let s3 = taskgate_aws::s3_client(sdk, endpoint.as_deref());
    Some(taskgate_aws::blobs::S3Blobs::new(s3, bucket))
}

/// The AWS configuration and the DynamoDB store of this deployment.
pub async fn dynamo_store() -> (aws_config::SdkConfig, DynamoStore) {
    let endpoint = env_endpoint("TASKGATE_DYNAMODB_ENDPOINT");
    let sdk = taskgate_aws::load_sdk_config(endpoint.as_deref()).await;
    let dynamodb = taskgate_aws::dynamodb_client(&sdk, endpoint.as_deref());
    (sdk, DynamoStore::new(dynamodb, TableNames::from_env()))
}

async fn recorder() -> Recorder {
    let (_, store) = dynamo_store().await;
    Recorder::new(Arc::new(store))
}
