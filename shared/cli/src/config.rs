//! Settings of `taskgate serve`, from the environment (see README,
//! "Configuration"), read by clap like the shared settings
//! ([`taskgate_api::settings`]). Every value is checked at start-up, and a
//! bad one stops the server with a message naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;
use taskgate_api::settings::{ConfigError, NotOneOf, Settings, SettingsArgs, from_lookup, whole};
use taskgate_aws::TableNames;
use taskgate_domain::clock::{Clock, SystemClock};
use taskgate_domain::user::Username;
use taskgate_js::WorkerCommand;

/// Where data lives.
// Built once per process: the table names' size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// SQLite file `taskgate.db` in the data directory (the default).
    Embedded,
    /// Nothing persists: for demos and throwaway runs.
    Memory,
    /// DynamoDB: DynamoDB Local at `endpoint`, or AWS itself when `None`.
    /// Missing tables are created at start-up.
    DynamoDb {
        endpoint: Option<String>,
        tables: TableNames,
    },
}

/// Default of `TASKGATE_MAX_REQUESTS_IN_FLIGHT`.
pub const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = 256;
/// Default of `TASKGATE_MAX_REQUESTS_PER_ADDRESS`.
pub const DEFAULT_MAX_REQUESTS_PER_ADDRESS: usize = 32;
/// Default of `TASKGATE_BODY_TIMEOUT_SECONDS`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// `TASKGATE_ADDR`, default `127.0.0.1:8443`.
    pub addr: SocketAddr,
    /// `TASKGATE_METRICS_ADDR`: where `GET /metrics` (Prometheus) is served,
    /// apart from the API; unset (the default) serves no metrics.
    pub metrics_addr: Option<SocketAddr>,
    /// `TASKGATE_TLS`: `on` (default) or `off`.
    pub tls: bool,
    /// `TASKGATE_DATA_DIR`, default `./.taskgate`.
    pub data_dir: PathBuf,
    /// `TASKGATE_STORE`: `embedded` (default), `memory` or `dynamodb`, with
    /// `TASKGATE_DYNAMODB_ENDPOINT` and the `TASKGATE_*_TABLE` names.
    pub store: StoreConfig,
    /// `TASKGATE_ADMIN_USERNAME`, default `admin`.
    pub admin_username: Username,
    /// `TASKGATE_ADMIN_PASSWORD`; generated and printed once when unset.
    pub admin_password: Option<SecretString>,
    /// `TASKGATE_MAX_REQUESTS_IN_FLIGHT`: requests handled at once, default
    /// 256. Further requests get 503 `server-busy` before their body is read,
    /// so bodies in memory never exceed this many times the body limit.
    pub max_requests_in_flight: usize,
    /// `TASKGATE_MAX_REQUESTS_PER_ADDRESS`: of those, how many one client
    /// address (IP) may hold, default 32; its next is 429 `too-many-requests`
    /// at once, so one slow or greedy client cannot take every slot.
    pub max_requests_per_address: usize,
    /// `TASKGATE_BODY_TIMEOUT_SECONDS`: how long a request's body may take
    /// to arrive, default 30 s; then 408 `request-timeout`, and its
    /// in-flight slot is free again.
    pub body_timeout: Duration,
    /// Settings shared with the Lambda functions.
    pub api: Settings,
    /// How to start a JavaScript worker: this binary with `js-worker`.
    pub js_worker: WorkerCommand,
    /// Where "now" comes from: the system clock (tests pass a manual one).
    pub clock: Arc<dyn Clock>,
}

/// The variables of `serve` (beside the shared [`SettingsArgs`]), read by
/// clap: each one's name, form and bounds in one place.
#[derive(Args, Clone, Debug)]
struct ServeArgs {
    /// Listen address.
    #[arg(long, env = "TASKGATE_ADDR", value_parser = address)]
    addr: Option<SocketAddr>,

    #[arg(long, env = "TASKGATE_METRICS_ADDR", value_parser = address)]
    metrics_addr: Option<SocketAddr>,
    /// `on`: HTTPS with the data directory's certificate; `off`: plain HTTP.
    #[arg(long, env = "TASKGATE_TLS", value_parser = on_off)]
    tls: Option<bool>,
    /// Database, JWT signing key, TLS certificate and key.
    #[arg(long, env = "TASKGATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// `embedded`, `memory` or `dynamodb`.
    #[arg(long, env = "TASKGATE_STORE", value_parser = store_kind)]
    store: Option<StoreKind>,
    /// With `dynamodb`: DynamoDB Local's URL; unset means AWS itself.
    #[arg(long, env = "TASKGATE_DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
    /// The first admin, created when no admin exists.
    #[arg(long, env = "TASKGATE_ADMIN_USERNAME", value_parser = username)]
    admin_username: Option<Username>,
    /// That admin's password; generated and printed once when unset.
    #[arg(long, env = "TASKGATE_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Requests handled at once.
    #[arg(long, env = "TASKGATE_MAX_REQUESTS_IN_FLIGHT", value_parser = whole(1, 65_536))]
    max_requests_in_flight: Option<u64>,

    #[arg(long, env = "TASKGATE_MAX_REQUESTS_PER_ADDRESS", value_parser = whole(1, 65_536))]
    max_requests_per_address: Option<u64>,
    /// Seconds a request body may take to arrive.
    #[arg(long, env = "TASKGATE_BODY_TIMEOUT_SECONDS", value_parser = whole(1, 3600))]
    body_timeout_seconds: Option<u64>,
    #[command(flatten)]
    api: SettingsArgs,
}

#[derive(Clone, Copy, Debug)]
enum StoreKind {
    Embedded,
    Memory,
    DynamoDb,
}

fn address(raw: &str) -> Result<SocketAddr, String> {
    raw.parse()
        .map_err(|_| format!("must be an address like 127.0.0.1:8443, not {raw:?}"))
}

fn on_off(raw: &str) -> Result<bool, NotOneOf> {
    match raw {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(NotOneOf {
            expected: "\"on\" or \"off\"",
            raw: raw.to_owned(),
        }),
    }
}

fn store_kind(raw: &str) -> Result<StoreKind, NotOneOf> {
    match raw {
        "embedded" => Ok(StoreKind::Embedded),
        "memory" => Ok(StoreKind::Memory),
        "dynamodb" => Ok(StoreKind::DynamoDb),
        _ => Err(NotOneOf {
            expected: "\"embedded\", \"memory\" or \"dynamodb\"",
            raw: raw.to_owned(),
        }),
    }
}

fn username(raw: &str) -> Result<Username, String> {
    Username::parse(raw).map_err(|e| e.to_string())
}

impl ServeConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let args: ServeArgs = from_lookup(&lookup)?;
        let store = match args.store.unwrap_or(StoreKind::Embedded) {
            StoreKind::Embedded => StoreConfig::Embedded,
            StoreKind::Memory => StoreConfig::Memory,
            StoreKind::DynamoDb => StoreConfig::DynamoDb {
                endpoint: args.dynamodb_endpoint.filter(|e| !e.is_empty()),
                tables: TableNames::from_lookup(&lookup),
            },
        };
        let js_worker = WorkerCommand::current_exe(&["js-worker"]).map_err(|e| {
            ConfigError::new(
                "the taskgate binary",
                format!("cannot find its own path to start script workers: {e}"),
            )
        })?;
        Ok(Self {
            addr: args
                .addr
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443))),
            metrics_addr: args.metrics_addr,
            tls: args.tls.unwrap_or(true),
            data_dir: args.data_dir.unwrap_or_else(|| PathBuf::from(".taskgate")),
            store,
            admin_username: args.admin_username.unwrap_or_else(|| {
                Username::parse("admin").expect("\"admin\" is a valid username")
            }),
            admin_password: args.admin_password.map(SecretString::from),
            max_requests_in_flight: args
                .max_requests_in_flight
                .map_or(DEFAULT_MAX_REQUESTS_IN_FLIGHT, |n| n as usize),
            max_requests_per_address: args
                .max_requests_per_address
                .map_or(DEFAULT_MAX_REQUESTS_PER_ADDRESS, |n| n as usize),
            body_timeout: args
                .body_timeout_seconds
                .map_or(DEFAULT_BODY_TIMEOUT, Duration::from_secs),
            api: Settings::from_args(args.api)?,
            js_worker,
            clock: Arc::new(SystemClock),
        })
    }
}
