//! `AppState`: what every handler needs, built once per process (or Lambda
//! cold start) and shared by every request. `Settings`: the knobs read from
//! the environment, with their defaults.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use taskgate_domain::password::{Password, PasswordHash, PasswordHasher};
use taskgate_domain::permission::Registration;
use taskgate_domain::ports::{Store, Workflow, WorkflowError};
use taskgate_domain::recorder::Recorder;
use taskgate_domain::security::{LoginThrottle, SecurityEvent};
use taskgate_domain::task::{JsLimits, Task, TaskId, TaskLimits};
use taskgate_domain::token::TokenKeys;
use tokio::sync::Semaphore;

use crate::Request;
use crate::problem::ApiError;
use crate::request::RequestId;

/// Settings shared by the local server and the Lambda functions.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `TASKGATE_REGISTRATION`: `admin` (default) or `open`.
    pub registration: Registration,
    /// `TASKGATE_TOKEN_TTL_SECONDS`: token lifetime, 60 s to 7 days, default 3600.
    pub token_ttl: Duration,
    /// `TASKGATE_MAX_BODY_BYTES`: largest accepted request body, default 64 KiB.
    pub max_body_bytes: usize,
    /// `TASKGATE_MAX_CONCURRENT_HASHES`: password hashes computed at once
    /// (each takes 19 MiB and a core for tens of milliseconds), default: the
    /// number of CPUs. Further requests wait their turn.
    pub max_concurrent_hashes: usize,
    /// What tasks may ask for: `TASKGATE_MAX_DELAY_SECONDS` (default 86400),
    /// `TASKGATE_MAX_CODE_BYTES` (32768), `TASKGATE_JS_TIMEOUT_SECONDS` (10),
    /// `TASKGATE_JS_CPU_SECONDS` (10), `TASKGATE_JS_MEMORY_MB` (512).
    pub tasks: TaskLimits,
    /// `TASKGATE_MAX_CONCURRENT_SCRIPTS`: scripts run at once (default 2);
    /// more wait their turn.
    pub max_concurrent_scripts: usize,
    /// Brute-force protection of `POST /auth`: `TASKGATE_LOGIN_FREE_FAILURES`
    /// (default 5), `TASKGATE_LOGIN_BACKOFF_SECONDS` (1),
    /// `TASKGATE_LOGIN_MAX_LOCK_SECONDS` (900), `TASKGATE_LOGIN_FORGET_SECONDS`
    /// (86400). See [`LoginThrottle`].
    pub login: LoginThrottle,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            registration: Registration::AdminOnly,
            token_ttl: Duration::from_secs(3600),
            max_body_bytes: 64 * 1024,
            max_concurrent_hashes: std::thread::available_parallelism().map_or(2, usize::from),
            tasks: TaskLimits::default(),
            max_concurrent_scripts: 2,
            login: LoginThrottle::default(),
        }
    }
}

/// A setting that is present but unusable. Start-up stops with this message.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ConfigError {
    pub name: &'static str,
    pub message: String,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let registration = match lookup("TASKGATE_REGISTRATION").as_deref() {
            None | Some("admin") => Registration::AdminOnly,
            Some("open") => Registration::Open,
            Some(other) => {
                return Err(ConfigError {
                    name: "TASKGATE_REGISTRATION",
                    message: format!("must be \"admin\" or \"open\", not {other:?}"),
                });
            }
        };
        let token_ttl = number(&lookup, "TASKGATE_TOKEN_TTL_SECONDS", 60..=7 * 24 * 3600)?
            .map_or(defaults.token_ttl, Duration::from_secs);
        let max_body_bytes = number(&lookup, "TASKGATE_MAX_BODY_BYTES", 1024..=10 * 1024 * 1024)?
            .map_or(defaults.max_body_bytes, |n| n as usize);
        let max_concurrent_hashes = number(&lookup, "TASKGATE_MAX_CONCURRENT_HASHES", 1..=256)?
            .map_or(defaults.max_concurrent_hashes, |n| n as usize);
        let js_defaults = &defaults.tasks.js;
        let tasks = TaskLimits {
            max_delay_seconds: number(&lookup, "TASKGATE_MAX_DELAY_SECONDS", 1..=365 * 24 * 3600)?
                .map_or(defaults.tasks.max_delay_seconds, |n| n as f64),
            max_code_bytes: number(
                &lookup,
                "TASKGATE_MAX_CODE_BYTES",
                16..=max_body_bytes as u64,
            )?
            .map_or(defaults.tasks.max_code_bytes.min(max_body_bytes), |n| {
                n as usize
            }),
            js: JsLimits {
                wall_time: number(&lookup, "TASKGATE_JS_TIMEOUT_SECONDS", 1..=900)?
                    .map_or(js_defaults.wall_time, Duration::from_secs),
                cpu_time: number(&lookup, "TASKGATE_JS_CPU_SECONDS", 1..=900)?
                    .map_or(js_defaults.cpu_time, Duration::from_secs),
                memory_bytes: number(&lookup, "TASKGATE_JS_MEMORY_MB", 128..=8192)?
                    .map_or(js_defaults.memory_bytes, |mb| mb * 1024 * 1024),
                ..js_defaults.clone()
            },
        };
        let max_concurrent_scripts = number(&lookup, "TASKGATE_MAX_CONCURRENT_SCRIPTS", 1..=64)?
            .map_or(defaults.max_concurrent_scripts, |n| n as usize);
        let seconds = |name, range, default| {
            number(&lookup, name, range).map(|n| n.map_or(default, Duration::from_secs))
        };
        let login = LoginThrottle {
            free_failures: number(&lookup, "TASKGATE_LOGIN_FREE_FAILURES", 1..=1000)?
                .map_or(defaults.login.free_failures, |n| n as u32),
            backoff: seconds(
                "TASKGATE_LOGIN_BACKOFF_SECONDS",
                1..=3600,
                defaults.login.backoff,
            )?,
            max_lock: seconds(
                "TASKGATE_LOGIN_MAX_LOCK_SECONDS",
                1..=24 * 3600,
                defaults.login.max_lock,
            )?,
            // At most a week: DynamoDB's TTL drops counters after eight days.
            forget_after: seconds(
                "TASKGATE_LOGIN_FORGET_SECONDS",
                60..=7 * 24 * 3600,
                defaults.login.forget_after,
            )?,
        };
        Ok(Self {
            registration,
            token_ttl,
            max_body_bytes,
            max_concurrent_hashes,
            tasks,
            max_concurrent_scripts,
            login,
        })
    }
}

fn number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, ConfigError> {
    let Some(raw) = lookup(name) else {
        return Ok(None);
    };
    match raw.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(ConfigError {
            name,
            message: format!(
                "must be a whole number from {} to {}, not {raw:?}",
                range.start(),
                range.end()
            ),
        }),
    }
}

/// What handlers share: the stores, the task recorder and workflow engine,
/// the token keys, the password hasher and the settings.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub recorder: Recorder,
    pub workflow: Arc<dyn Workflow>,
    pub keys: TokenKeys,
    pub settings: Settings,
    hasher: Arc<PasswordHasher>,
    hashing: Semaphore,
}

/// The workflow of a process that runs no tasks (e.g. the users functions).
struct NoWorkflow;

#[async_trait]
impl Workflow for NoWorkflow {
    async fn start(&self, _task: &Task) -> Result<Task, WorkflowError> {
        Err(WorkflowError::Other(
            "no workflow engine is configured here".into(),
        ))
    }

    async fn stop(&self, _task: &TaskId) -> Result<(), WorkflowError> {
        Err(WorkflowError::Other(
            "no workflow engine is configured here".into(),
        ))
    }
}

impl AppState {
    /// Builds the state. Computes the dummy password hash, so call it once.
    pub fn new(
        store: Arc<dyn Store>,
        jwt_secret: &SecretSlice<u8>,
        settings: Settings,
    ) -> Result<Self, ConfigError> {
        let keys = TokenKeys::new(jwt_secret).map_err(|e| ConfigError {
            name: "JWT signing secret",
            message: e.to_string(),
        })?;
        let hasher = PasswordHasher::new().map_err(|e| ConfigError {
            name: "password hasher",
            message: e.to_string(),
        })?;
        Ok(Self {
            recorder: Recorder::new(store.clone()),
            workflow: Arc::new(NoWorkflow),
            store,
            keys,
            hashing: Semaphore::new(settings.max_concurrent_hashes),
            settings,
            hasher: Arc::new(hasher),
        })
    }

    /// The engine that runs tasks (without one, starting a task fails it).
    pub fn with_workflow(mut self, workflow: Arc<dyn Workflow>) -> Self {
        self.workflow = workflow;
        self
    }

    /// Runs `work` with the hasher off the async threads, at most
    /// `max_concurrent_hashes` at a time (each takes 19 MiB and a core).
    async fn with_hasher<T: Send + 'static>(
        &self,
        work: impl FnOnce(&PasswordHasher) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let hasher = Arc::clone(&self.hasher);
        tokio::task::spawn_blocking(move || work(&hasher))
            .await
            .map_err(|e| ApiError::Internal(format!("hashing task failed: {e}")))
    }

    /// Hashes a new password.
    pub async fn hash_password(&self, password: Password) -> Result<PasswordHash, ApiError> {
        self.with_hasher(move |hasher| hasher.hash(&password))
            .await?
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Checks a login password; with no hash (unknown user) does the same
    /// work and returns `false`.
    pub async fn verify_password(
        &self,
        candidate: SecretString,
        hash: Option<PasswordHash>,
    ) -> Result<bool, ApiError> {
        self.with_hasher(move |hasher| hasher.verify(candidate.expose_secret(), hash.as_ref()))
            .await
    }

    /// Appends `event` to the security log, tagged with the request's id.
    /// The change it records has happened already, so a store failure here
    /// does not fail the request: the event goes to the error log whole
    /// (events hold no secrets), to be recovered from there.
    pub async fn audit(&self, request: &Request, event: SecurityEvent) {
        let event = match request.extensions().get::<RequestId>() {
            Some(id) => event.with_request_id(&id.0),
            None => event,
        };
        if let Err(e) = self.store.append_security_event(&event).await {
            let event = serde_json::to_string(&event).unwrap_or_default();
            tracing::error!(error = %e, event, "could not append to the security log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.registration, Registration::AdminOnly);
        assert_eq!(s.token_ttl, Duration::from_secs(3600));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = settings(&[("TASKGATE_REGISTRATION", "public")]).unwrap_err();
        assert_eq!(e.name, "TASKGATE_REGISTRATION");
        let e = settings(&[("TASKGATE_TOKEN_TTL_SECONDS", "5")]).unwrap_err();
        assert!(e.to_string().contains("60 to 604800"), "{e}");
    }
}
