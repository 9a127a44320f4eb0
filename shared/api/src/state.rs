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
use taskgate_domain::user::ProfileLimits;
use tokio::sync::Semaphore;

use crate::extract::RequestId;
use crate::problem::ApiError;

/// Settings shared by the local server and the Lambda functions.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `TASKGATE_REGISTRATION`: `admin` (default) or `open`.
    pub registration: Registration,
    /// `TASKGATE_TOKEN_TTL_SECONDS`: token lifetime, 60 s to 7 days, default 3600.
    pub token_ttl: Duration,
    /// `TASKGATE_MAX_BODY_BYTES`: largest accepted request body, default 64 KiB.
    /// The local server stops reading a body once it passes this.
    pub max_body_bytes: usize,
    /// `TASKGATE_MAX_JSON_DEPTH`: deepest nesting of objects and arrays in a
    /// JSON body, the body object itself being depth 1 (default 32, at most
    /// 128).
    pub max_json_depth: usize,
    /// The largest profile a client may send: `TASKGATE_MAX_PROFILE_BYTES`
    /// (default 16384, at most the body limit and 256 KiB) and
    /// `TASKGATE_MAX_PROFILE_DEPTH` (default 16, less than the JSON depth).
    pub profile: ProfileLimits,
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
            max_json_depth: 32,
            profile: ProfileLimits::default(),
            max_concurrent_hashes: std::thread::available_parallelism().map_or(2, usize::from),
            tasks: TaskLimits::default(),
            max_concurrent_scripts: 2,
            login: LoginThrottle::default(),
        }
    }
}

/// The deepest `TASKGATE_MAX_JSON_DEPTH` may go: serde_json refuses to
/// parse deeper (its guard against stack overflow).
pub const MAX_JSON_DEPTH: u64 = 128;

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
        let max_json_depth = number(&lookup, "TASKGATE_MAX_JSON_DEPTH", 2..=MAX_JSON_DEPTH)?
            .map_or(defaults.max_json_depth, |n| n as usize);
        // A profile sits inside the body, one level down; a DynamoDB item
        // (the whole user) holds at most 400 KB.
        let profile = ProfileLimits {
            max_bytes: number(
                &lookup,
                "TASKGATE_MAX_PROFILE_BYTES",
                2..=max_body_bytes.min(256 * 1024) as u64,
            )?
            .map_or(defaults.profile.max_bytes.min(max_body_bytes), |n| {
                n as usize
            }),
            max_depth: number(
                &lookup,
                "TASKGATE_MAX_PROFILE_DEPTH",
                1..=max_json_depth as u64 - 1,
            )?
            .map_or(defaults.profile.max_depth.min(max_json_depth - 1), |n| {
                n as usize
            }),
        };
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
            max_json_depth,
            profile,
            max_concurrent_hashes,
            tasks,
            max_concurrent_scripts,
            login,
        })
    }
}

/// The whole number in `name`, if set; an error naming the variable if it is
/// not a number within `range`.
pub fn number(
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
    hashing: HashPool,
}

/// The password hasher behind a bound: at most `slots` hashes at a time, each
/// on a blocking thread (a hash takes 19 MiB and a core for tens of
/// milliseconds). Callers beyond the bound wait their turn, so a burst of
/// logins queues rather than exhausting memory or starving the async threads.
struct HashPool {
    hasher: Arc<PasswordHasher>,
    slots: Semaphore,
}

impl HashPool {
    fn new(hasher: PasswordHasher, slots: usize) -> Self {
        // Without this, every hash's 19 MiB would stay in the process.
        if !crate::memory::return_large_blocks_when_freed() {
            tracing::debug!("not glibc: the allocator is left as it is");
        }
        Self {
            hasher: Arc::new(hasher),
            slots: Semaphore::new(slots),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&PasswordHasher) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let hasher = Arc::clone(&self.hasher);
        tokio::task::spawn_blocking(move || work(&hasher))
            .await
            .map_err(|e| ApiError::Internal(format!("hashing task failed: {e}")))
    }
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
            hashing: HashPool::new(hasher, settings.max_concurrent_hashes),
            settings,
        })
    }

    /// The engine that runs tasks (without one, starting a task fails it).
    pub fn with_workflow(mut self, workflow: Arc<dyn Workflow>) -> Self {
        self.workflow = workflow;
        self
    }

    /// Hashes a new password (at most `max_concurrent_hashes` at a time).
    pub async fn hash_password(&self, password: Password) -> Result<PasswordHash, ApiError> {
        self.hashing
            .run(move |hasher| hasher.hash(&password))
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
        self.hashing
            .run(move |hasher| hasher.verify(candidate.expose_secret(), hash.as_ref()))
            .await
    }

    /// Appends `event` to the security log, tagged with the request's id.
    /// The change it records has happened already, so a store failure here
    /// does not fail the request: the event goes to the error log whole
    /// (events hold no secrets), to be recovered from there.
    pub async fn audit(&self, request_id: &RequestId, event: SecurityEvent) {
        let event = event.with_request_id(&request_id.0);
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

    /// Eight hashes at once through a pool of two: every one is computed, and
    /// never more than two at the same moment.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_beyond_the_limit_wait_their_turn() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = Arc::new(HashPool::new(PasswordHasher::new().unwrap(), 2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut hashes = tokio::task::JoinSet::new();
        for n in 0..8 {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            hashes.spawn(async move {
                pool.run(move |hasher| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let password = Password::parse(&format!("passphrase number {n}"), None);
                    let hash = hasher.hash(&password.unwrap());
                    // Long enough that all eight callers are waiting meanwhile.
                    std::thread::sleep(Duration::from_millis(50));
                    running.fetch_sub(1, Ordering::SeqCst);
                    hash.is_ok()
                })
                .await
                .unwrap()
            });
        }
        let hashed = hashes.join_all().await;
        assert_eq!(hashed, vec![true; 8]);
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn profile_limits_fit_inside_the_body_limits() {
        let s = settings(&[
            ("TASKGATE_MAX_BODY_BYTES", "4096"),
            ("TASKGATE_MAX_JSON_DEPTH", "8"),
        ])
        .unwrap();
        // The defaults shrink to fit the body.
        assert_eq!(s.profile.max_bytes, 4096);
        assert_eq!(s.profile.max_depth, 7);

        let e = settings(&[
            ("TASKGATE_MAX_BODY_BYTES", "4096"),
            ("TASKGATE_MAX_PROFILE_BYTES", "8192"),
        ])
        .unwrap_err();
        assert_eq!(e.name, "TASKGATE_MAX_PROFILE_BYTES");
        assert!(e.to_string().contains("2 to 4096"), "{e}");

        let e = settings(&[
            ("TASKGATE_MAX_JSON_DEPTH", "8"),
            ("TASKGATE_MAX_PROFILE_DEPTH", "8"),
        ])
        .unwrap_err();
        assert_eq!(e.name, "TASKGATE_MAX_PROFILE_DEPTH");
        let e = settings(&[("TASKGATE_MAX_JSON_DEPTH", "129")]).unwrap_err();
        assert!(e.to_string().contains("2 to 128"), "{e}");
    }
}
