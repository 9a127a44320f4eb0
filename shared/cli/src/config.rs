//! Settings of `taskgate serve`, from the environment (see README,
//! "Configuration"). Every value is checked at start-up, and a bad one stops
//! the server with a message naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use taskgate_api::Settings;
use taskgate_api::state::{ConfigError, number};
use taskgate_aws::TableNames;
use taskgate_domain::user::Username;
use taskgate_js::WorkerCommand;

/// Where data lives.
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
/// Default of `TASKGATE_BODY_TIMEOUT_SECONDS`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// `TASKGATE_ADDR`, default `127.0.0.1:8443`.
    pub addr: SocketAddr,
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
    /// `TASKGATE_BODY_TIMEOUT_SECONDS`: how long a request's body may take
    /// to arrive, default 30 s; then 408 `request-timeout`, and its
    /// in-flight slot is free again.
    pub body_timeout: Duration,
    /// Settings shared with the Lambda functions.
    pub api: Settings,
    /// How to start a JavaScript worker: this binary with `js-worker`.
    pub js_worker: WorkerCommand,
}

impl ServeConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let addr = match lookup("TASKGATE_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 8443)),
            Some(raw) => raw.parse().map_err(|_| ConfigError {
                name: "TASKGATE_ADDR",
                message: format!("must be an address like 127.0.0.1:8443, not {raw:?}"),
            })?,
        };
        let tls = match lookup("TASKGATE_TLS").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(ConfigError {
                    name: "TASKGATE_TLS",
                    message: format!("must be \"on\" or \"off\", not {other:?}"),
                });
            }
        };
        let data_dir = lookup("TASKGATE_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".taskgate"));
        let endpoint = lookup("TASKGATE_DYNAMODB_ENDPOINT").filter(|e| !e.is_empty());
        let store = match lookup("TASKGATE_STORE").as_deref() {
            None | Some("embedded") => StoreConfig::Embedded,
            Some("memory") => StoreConfig::Memory,
            Some("dynamodb") => StoreConfig::DynamoDb {
                endpoint,
                tables: TableNames::from_lookup(&lookup),
            },
            Some(other) => {
                return Err(ConfigError {
                    name: "TASKGATE_STORE",
                    message: format!(
                        "must be \"embedded\", \"memory\" or \"dynamodb\", not {other:?}"
                    ),
                });
            }
        };
        let admin_username = match lookup("TASKGATE_ADMIN_USERNAME") {
            None => Username::parse("admin").expect("\"admin\" is a valid username"),
            Some(raw) => Username::parse(&raw).map_err(|e| ConfigError {
                name: "TASKGATE_ADMIN_USERNAME",
                message: e.to_string(),
            })?,
        };
        let admin_password = lookup("TASKGATE_ADMIN_PASSWORD").map(SecretString::from);
        let js_worker = WorkerCommand::current_exe(&["js-worker"]).map_err(|e| ConfigError {
            name: "the taskgate binary",
            message: format!("cannot find its own path to start script workers: {e}"),
        })?;
        let max_requests_in_flight =
            number(&lookup, "TASKGATE_MAX_REQUESTS_IN_FLIGHT", 1..=65_536)?
                .map_or(DEFAULT_MAX_REQUESTS_IN_FLIGHT, |n| n as usize);
        let body_timeout = number(&lookup, "TASKGATE_BODY_TIMEOUT_SECONDS", 1..=3600)?
            .map_or(DEFAULT_BODY_TIMEOUT, Duration::from_secs);
        Ok(Self {
            addr,
            tls,
            data_dir,
            store,
            admin_username,
            admin_password,
            max_requests_in_flight,
            body_timeout,
            api: Settings::from_lookup(lookup)?,
            js_worker,
        })
    }
}
