//! # AWS adapters
//!
//! The storage ports of `taskgate-domain` on DynamoDB (aws-sdk-dynamodb +
//! serde_dynamo). The same code serves the Lambda functions, `taskgate serve`
//! with `TASKGATE_STORE=dynamodb`, and the contract tests against DynamoDB
//! Local.
//!
//! - [`tables`]: table names, the one description of every table's keys and
//!   indexes (the SAM template is tested against it), and `ensure_tables`.
//! - `users`: the Users table. Uniqueness and optimistic concurrency are
//!   conditional writes; the "never the last admin" rule is a counter item in
//!   the same table changed in the same transaction as the user.
//! - `tasks`: the TaskEvents table, the append-only task log: key
//!   (`task_id`, `seq`), every append conditional on that key being free.
//! - `tokens`: the Tokens table (TTL on `expires_at`, an index by username
//!   for revoking all of a user's tokens) and the one-round-trip session
//!   lookup (BatchGetItem over Tokens and Users).
//! - [`workflow`]: the Step Functions workflow engine (aws-sdk-sfn): start,
//!   stop, describe one execution per task.
//! - [`blobs`]: the bytes of files on S3 (aws-sdk-s3): uploads as multipart
//!   uploads, the bytes short of a part staged in an object of their own.
#![forbid(unsafe_code)]

mod attr;
pub mod blobs;
pub mod connections;
mod errors;
mod files;
mod idempotency;
pub mod projects;
mod security;
pub mod tables;
mod tasks;
mod tokens;
mod users;
pub mod workflow;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::Client;

pub use tables::{TableNames, ensure_tables};

/// The DynamoDB store: every storage port on one client and a set of tables.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
    /// Items an item listing reads per project per page, at most.
    read_budget: usize,
}

impl DynamoStore {
    pub fn new(client: Client, tables: TableNames) -> Self {
        Self {
            client,
            tables,
            read_budget: projects::READ_BUDGET,
        }
    }

    /// The same store with another read budget for item listings (tests use
    /// a small one to see pages end early).
    pub fn with_read_budget(mut self, items: usize) -> Self {
        self.read_budget = items.max(1);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn tables(&self) -> &TableNames {
        &self.tables
    }
}

/// Loads the shared AWS configuration once per process (per cold start in
/// Lambda), with bounded timeouts so a dead dependency costs seconds, not
/// minutes.
///
/// `local_endpoint` is for DynamoDB Local: when given, a missing region
/// defaults to `us-east-1` and missing credentials to dummy ones (DynamoDB
/// Local accepts any), so no AWS setup is needed to run against it.
pub async fn load_sdk_config(local_endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3));
    // Where the environment already names the region and the credentials
    // (on Lambda the runtime sets AWS_REGION and the role's keys), take
    // them from there, as the default chains would, without building those
    // chains: their later links (profile files, SSO, web identity, the
    // instance metadata service) each build a client of their own, which
    // cost a cold start about a millisecond for nothing
    // (docs/benchmarks/profiles.md).
    if let Ok(region) = std::env::var("AWS_REGION")
        && !region.is_empty()
    {
        loader = loader.region(Region::new(region));
    }
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_some()
    {
        loader = loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    if local_endpoint.is_some() {
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            loader = loader.region(Region::new("us-east-1"));
        }
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.test_credentials();
        }
    }
    loader.load().await
}

/// A Step Functions client from the shared configuration, pointed at
/// `local_endpoint` (a local Step Functions API) when given.
pub fn sfn_client(config: &SdkConfig, local_endpoint: Option<&str>) -> aws_sdk_sfn::Client {
    let mut builder = aws_sdk_sfn::config::Builder::from(config);
    if let Some(endpoint) = local_endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_sfn::Client::from_conf(builder.build())
}

/// An S3 client from the shared configuration, pointed at `local_endpoint`
/// (a local S3 API, addressed path-style: `http://host:port/bucket/key`)
/// when given. Its attempts may take longer than the shared configuration's
/// 3 s: one carries a whole 5 MiB part.
pub fn s3_client(config: &SdkConfig, local_endpoint: Option<&str>) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(config).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_attempt_timeout(Duration::from_secs(10))
            .operation_timeout(Duration::from_secs(20))
            .build(),
    );
    if let Some(endpoint) = local_endpoint {
        builder = builder.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// A DynamoDB client from the shared configuration, pointed at `local_endpoint`
/// (DynamoDB Local) when given.
pub fn dynamodb_client(config: &SdkConfig, local_endpoint: Option<&str>) -> Client {
    let mut builder = aws_sdk_dynamodb::config::Builder::from(config);
    if let Some(endpoint) = local_endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Client::from_conf(builder.build())
}
