//! `Settings`: the knobs shared by the local server and the Lambda
//! functions, read from `TASKGATE_*` variables (README, "Configuration").
//!
//! clap does the reading: each variable is an argument of [`SettingsArgs`]
//! (its name, bounds and help in one attribute), and [`from_lookup`] hands
//! clap the variables that are set. A bad value stops start-up with a
//! [`ConfigError`] naming the variable. What clap cannot say alone, bounds
//! that depend on another setting (a profile fits in a body), is checked in
//! [`Settings::from_args`].

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, FromArgMatches};
use taskgate_domain::permission::Registration;
use taskgate_domain::security::LoginThrottle;
use taskgate_domain::task::{JsLimits, TaskLimits};
use taskgate_domain::user::ProfileLimits;

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
    /// `TASKGATE_MAX_HEADER_BYTES`: the most a request's headers may hold
    /// together (names and values), default 16 KiB (API Gateway's HTTP API
    /// takes 10 KB); more is 431 `headers-too-large`, before any header is
    /// parsed.
    pub max_header_bytes: usize,
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
    /// Real-time updates over WebSocket ([`RealtimeLimits`]).
    pub realtime: RealtimeLimits,
    /// Files and uploads ([`FileLimits`]).
    pub files: FileLimits,
    /// `TASKGATE_MAX_ACTIVE_TASKS_PER_USER` (default 100) and
    /// `TASKGATE_MAX_ACTIVE_TASKS_PER_ADMIN` (default 1000): pending or
    /// running tasks one account may have; one more is 429 `quota-exceeded`.
    pub max_active_tasks: ActiveTaskLimits,
    /// `TASKGATE_PAGE_CACHE_BYTES`: memory for item pages kept to be
    /// answered again while their project is unchanged (embedded store
    /// only; ADR 15), default 16 MiB; 0 keeps none.
    pub page_cache_bytes: usize,
    /// `TASKGATE_UNSTARTED_GRACE_SECONDS` (default 120; AWS only): how long
    /// a task may stay created but not started (its start function died)
    /// before the reconciler's sweep starts or fails it.
    pub unstarted_grace: Duration,
}

/// See [`Settings::max_active_tasks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveTaskLimits {
    pub per_user: u64,
    pub per_admin: u64,
    /// `TASKGATE_MAX_ACTIVE_EXPORTS_PER_USER` (default 2): pending or
    /// running exports one account may have (each may write up to a file's
    /// size); one more is 429 `quota-exceeded`.
    pub exports: u64,
}

impl Default for ActiveTaskLimits {
    fn default() -> Self {
        Self {
            per_user: 100,
            per_admin: 1000,
            exports: 2,
        }
    }
}

impl ActiveTaskLimits {
    /// The bound for an account of `level`.
    pub fn for_level(&self, level: taskgate_domain::user::Level) -> u64 {
        match level {
            taskgate_domain::user::Level::Admin => self.per_admin,
            taskgate_domain::user::Level::User => self.per_user,
        }
    }
}

/// Bounds of files and uploads.
#[derive(Clone, Debug, PartialEq)]
pub struct FileLimits {
    /// `TASKGATE_MAX_FILE_BYTES` (default 5 GiB): the largest file; a bigger
    /// `Upload-Length` is 413.
    pub max_file_bytes: u64,
    /// `TASKGATE_USER_QUOTA_BYTES` (default 20 GiB): the sizes of one user's
    /// files together, finished or not; beyond it 413 `storage-quota-exceeded`.
    pub user_quota_bytes: u64,
    /// `TASKGATE_MAX_FILES_PER_USER` (default 10000): the files one user
    /// may keep, finished or not (an empty file is a record too); one more
    /// is 413 `storage-quota-exceeded`.
    pub max_files: u64,
    /// `TASKGATE_UPLOAD_EXPIRY_SECONDS` (default 86400): how long an
    /// unfinished upload is kept (`Upload-Expires`).
    pub upload_expiry: Duration,
    /// `TASKGATE_MAX_PATCH_BYTES` (default: none locally; 4 MiB on Lambda,
    /// whose request payload cannot carry more): the largest PATCH body; a
    /// bigger one is 413 and nothing of it is kept.
    pub max_patch_bytes: Option<u64>,
}

impl FileLimits {
    /// What an export may write (the owner's file limits).
    pub fn export_limits(&self) -> taskgate_app::export::ExportLimits {
        taskgate_app::export::ExportLimits {
            max_file_bytes: self.max_file_bytes,
            user_quota_bytes: self.user_quota_bytes,
            max_files: self.max_files,
        }
    }
}

impl Default for FileLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 5 << 30,
            user_quota_bytes: 20 << 30,
            max_files: 10_000,
            upload_expiry: Duration::from_secs(86_400),
            max_patch_bytes: None,
        }
    }
}

/// Bounds of the WebSocket endpoint (`GET /ws`).
#[derive(Clone, Debug, PartialEq)]
pub struct RealtimeLimits {
    /// `TASKGATE_WS_MAX_CONNECTIONS_PER_USER` (default 16): open sockets per
    /// user; one more is refused with 429 `too-many-connections`.
    pub max_connections_per_user: usize,
    /// `TASKGATE_WS_MAX_SUBSCRIPTIONS` (default 64): topics one socket may
    /// follow; one more is answered with an `error` (400).
    pub max_subscriptions: usize,
    /// `TASKGATE_WS_BUFFER_EVENTS` (default 256): events held for a socket
    /// that reads slower than they come; a socket that falls further behind
    /// is closed (1008) and should reconnect with `after`.
    pub buffer_events: usize,
    /// `TASKGATE_WS_PING_SECONDS` (default 30): an idle socket is pinged this
    /// often, and closed when nothing came back for two intervals.
    pub ping_interval: Duration,
    /// `TASKGATE_WS_MAX_MESSAGE_BYTES` (default 128000, API Gateway's 128 KB
    /// per message): a larger message (a task event with a big result or
    /// logs) is replaced by a notice naming what to read
    /// ([`taskgate_app::realtime::message::fit`]), on both transports alike.
    pub max_message_bytes: usize,
    /// `TASKGATE_WS_REPLAY_BUDGET_MS` (default 5000; AWS only): how long one
    /// invocation of `$default` replays before it hands the rest to the next
    /// (its timeout is 10 s).
    pub replay_budget: Duration,
}

impl Default for RealtimeLimits {
    fn default() -> Self {
        Self {
            max_connections_per_user: 16,
            max_subscriptions: 64,
            buffer_events: 256,
            ping_interval: Duration::from_secs(30),
            max_message_bytes: 128_000,
            replay_budget: Duration::from_secs(5),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            registration: Registration::AdminOnly,
            token_ttl: Duration::from_secs(3600),
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            max_json_depth: 32,
            profile: ProfileLimits::default(),
            max_concurrent_hashes: std::thread::available_parallelism().map_or(2, usize::from),
            tasks: TaskLimits::default(),
            max_concurrent_scripts: 2,
            login: LoginThrottle::default(),
            realtime: RealtimeLimits::default(),
            files: FileLimits::default(),
            max_active_tasks: ActiveTaskLimits::default(),
            page_cache_bytes: 16 << 20,
            unstarted_grace: Duration::from_secs(120),
        }
    }
}

/// The deepest `TASKGATE_MAX_JSON_DEPTH` may go: serde_json refuses to
/// parse deeper (its guard against stack overflow).
pub const MAX_JSON_DEPTH: u64 = 128;
/// The largest profile whatever the body limit: a DynamoDB item (the whole
/// user) holds at most 400 KB.
const MAX_PROFILE_BYTES: u64 = 256 * 1024;

/// A setting that is present but unusable. Start-up stops with this message.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ConfigError {
    pub name: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            message: message.into(),
        }
    }
}

/// A whole number outside its bounds, or no whole number at all.
#[derive(Debug, thiserror::Error)]
#[error("must be a whole number from {min} to {max}, not {raw:?}")]
pub struct OutOfRange {
    min: u64,
    max: u64,
    raw: String,
}

/// A value parser for a whole number from `min` to `max`.
pub fn whole(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, OutOfRange> + Clone {
    move |raw| {
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| OutOfRange {
                min,
                max,
                raw: raw.to_owned(),
            })
    }
}

/// A value that is not one of the allowed spellings.
#[derive(Debug, thiserror::Error)]
#[error("must be {expected}, not {raw:?}")]
pub struct NotOneOf {
    pub expected: &'static str,
    pub raw: String,
}

fn registration(raw: &str) -> Result<Registration, NotOneOf> {
    match raw {
        "admin" => Ok(Registration::AdminOnly),
        "open" => Ok(Registration::Open),
        _ => Err(NotOneOf {
            expected: "\"admin\" or \"open\"",
            raw: raw.to_owned(),
        }),
    }
}

/// The shared settings as variables: each one's name, bounds and meaning.
/// Unset means the default of [`Settings`] (or, for limits that must fit
/// inside another, the default shrunk to fit).
#[derive(Args, Clone, Debug, Default)]
pub struct SettingsArgs {
    /// `admin`: only admins create users; `open`: anyone may sign up.
    #[arg(long, env = "TASKGATE_REGISTRATION", value_parser = registration)]
    pub registration: Option<Registration>,
    /// Token lifetime in seconds.
    #[arg(long, env = "TASKGATE_TOKEN_TTL_SECONDS", value_parser = whole(60, 7 * 24 * 3600))]
    pub token_ttl_seconds: Option<u64>,
    /// Largest request body, in bytes.
    #[arg(long, env = "TASKGATE_MAX_BODY_BYTES", value_parser = whole(1024, 10 * 1024 * 1024))]
    pub max_body_bytes: Option<u64>,
    /// Largest total of a request's headers, in bytes.
    #[arg(long, env = "TASKGATE_MAX_HEADER_BYTES", value_parser = whole(1024, 1024 * 1024))]
    pub max_header_bytes: Option<u64>,
    /// Deepest nesting of a JSON body.
    #[arg(long, env = "TASKGATE_MAX_JSON_DEPTH", value_parser = whole(2, MAX_JSON_DEPTH))]
    pub max_json_depth: Option<u64>,
    /// Largest profile, in bytes (at most the body limit).
    #[arg(long, env = "TASKGATE_MAX_PROFILE_BYTES", value_parser = whole(2, MAX_PROFILE_BYTES))]
    pub max_profile_bytes: Option<u64>,
    /// Deepest nesting of a profile (less than the JSON depth).
    #[arg(long, env = "TASKGATE_MAX_PROFILE_DEPTH", value_parser = whole(1, MAX_JSON_DEPTH - 1))]
    pub max_profile_depth: Option<u64>,
    /// Password hashes computed at once.
    #[arg(long, env = "TASKGATE_MAX_CONCURRENT_HASHES", value_parser = whole(1, 256))]
    pub max_concurrent_hashes: Option<u64>,
    /// Longest delay a task may ask for, in seconds.
    #[arg(long, env = "TASKGATE_MAX_DELAY_SECONDS", value_parser = whole(1, 365 * 24 * 3600))]
    pub max_delay_seconds: Option<u64>,
    /// Largest script, in bytes (at most the body limit).
    #[arg(long, env = "TASKGATE_MAX_CODE_BYTES", value_parser = whole(16, 10 * 1024 * 1024))]
    pub max_code_bytes: Option<u64>,
    /// Wall-clock seconds a script may run.
    #[arg(long, env = "TASKGATE_JS_TIMEOUT_SECONDS", value_parser = whole(1, 900))]
    pub js_timeout_seconds: Option<u64>,
    /// CPU seconds a script may use.
    #[arg(long, env = "TASKGATE_JS_CPU_SECONDS", value_parser = whole(1, 900))]
    pub js_cpu_seconds: Option<u64>,
    /// Address space of a script's process, in MiB.
    #[arg(long, env = "TASKGATE_JS_MEMORY_MB", value_parser = whole(128, 8192))]
    pub js_memory_mb: Option<u64>,
    /// Scripts run at once.
    #[arg(long, env = "TASKGATE_MAX_CONCURRENT_SCRIPTS", value_parser = whole(1, 64))]
    pub max_concurrent_scripts: Option<u64>,
    /// Memory for item pages kept to be answered again, in bytes (0: none).
    #[arg(long, env = "TASKGATE_PAGE_CACHE_BYTES", value_parser = whole(0, 1 << 30))]
    pub page_cache_bytes: Option<u64>,
    /// Failed logins in a row before locks start.
    #[arg(long, env = "TASKGATE_LOGIN_FREE_FAILURES", value_parser = whole(1, 1000))]
    pub login_free_failures: Option<u64>,
    /// The first lock, in seconds; each further failure doubles it.
    #[arg(long, env = "TASKGATE_LOGIN_BACKOFF_SECONDS", value_parser = whole(1, 3600))]
    pub login_backoff_seconds: Option<u64>,
    /// The longest lock, in seconds.
    #[arg(long, env = "TASKGATE_LOGIN_MAX_LOCK_SECONDS", value_parser = whole(1, 24 * 3600))]
    pub login_max_lock_seconds: Option<u64>,
    /// Seconds after which failures no longer count (at most a week:
    /// DynamoDB's TTL drops counters after eight days).
    #[arg(long, env = "TASKGATE_LOGIN_FORGET_SECONDS", value_parser = whole(60, 7 * 24 * 3600))]
    pub login_forget_seconds: Option<u64>,

    #[arg(long, env = "TASKGATE_WS_MAX_CONNECTIONS_PER_USER", value_parser = whole(1, 10_000))]
    pub ws_max_connections_per_user: Option<u64>,

    #[arg(long, env = "TASKGATE_WS_MAX_SUBSCRIPTIONS", value_parser = whole(1, 10_000))]
    pub ws_max_subscriptions: Option<u64>,

    #[arg(long, env = "TASKGATE_WS_BUFFER_EVENTS", value_parser = whole(16, 65_536))]
    pub ws_buffer_events: Option<u64>,

    #[arg(long, env = "TASKGATE_WS_PING_SECONDS", value_parser = whole(1, 3600))]
    pub ws_ping_seconds: Option<u64>,

    #[arg(long, env = "TASKGATE_WS_MAX_MESSAGE_BYTES", value_parser = whole(1024, 16 << 20))]
    pub ws_max_message_bytes: Option<u64>,

    #[arg(long, env = "TASKGATE_WS_REPLAY_BUDGET_MS", value_parser = whole(1, 60_000))]
    pub ws_replay_budget_ms: Option<u64>,

    /// How long a task may stay created but not started before the AWS
    /// sweep starts it.
    #[arg(long, env = "TASKGATE_UNSTARTED_GRACE_SECONDS", value_parser = whole(0, 86_400))]
    pub unstarted_grace_seconds: Option<u64>,

    #[arg(long, env = "TASKGATE_MAX_FILE_BYTES", value_parser = whole(1, 5 << 40))]
    pub max_file_bytes: Option<u64>,

    #[arg(long, env = "TASKGATE_USER_QUOTA_BYTES", value_parser = whole(1, 1 << 50))]
    pub user_quota_bytes: Option<u64>,

    #[arg(long, env = "TASKGATE_UPLOAD_EXPIRY_SECONDS", value_parser = whole(60, 30 * 86_400))]
    pub upload_expiry_seconds: Option<u64>,

    #[arg(long, env = "TASKGATE_MAX_PATCH_BYTES", value_parser = whole(1024, 5 << 40))]
    pub max_patch_bytes: Option<u64>,

    #[arg(long, env = "TASKGATE_MAX_ACTIVE_TASKS_PER_USER", value_parser = whole(1, 1_000_000))]
    pub max_active_tasks_per_user: Option<u64>,

    #[arg(long, env = "TASKGATE_MAX_ACTIVE_TASKS_PER_ADMIN", value_parser = whole(1, 1_000_000))]
    pub max_active_tasks_per_admin: Option<u64>,

    #[arg(long, env = "TASKGATE_MAX_ACTIVE_EXPORTS_PER_USER", value_parser = whole(1, 1000))]
    pub max_active_exports_per_user: Option<u64>,

    #[arg(long, env = "TASKGATE_MAX_FILES_PER_USER", value_parser = whole(1, 10_000_000))]
    pub max_files_per_user: Option<u64>,
}

/// `value` must be at most `max`, another setting's bound.
fn at_most(name: &str, value: Option<u64>, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
    match value {
        Some(n) if n > max => Err(ConfigError::new(
            name,
            OutOfRange {
                min,
                max,
                raw: n.to_string(),
            }
            .to_string(),
        )),
        other => Ok(other),
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_args(from_lookup::<SettingsArgs>(&lookup)?)
    }

    /// Applies defaults, and the bounds that depend on other settings.
    pub fn from_args(args: SettingsArgs) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let max_body_bytes = args
            .max_body_bytes
            .map_or(defaults.max_body_bytes, |n| n as usize);
        let max_json_depth = args
            .max_json_depth
            .map_or(defaults.max_json_depth, |n| n as usize);
        // A profile sits inside the body, one level down.
        let profile_max = (max_body_bytes as u64).min(MAX_PROFILE_BYTES);
        let profile = ProfileLimits {
            max_bytes: at_most(
                "TASKGATE_MAX_PROFILE_BYTES",
                args.max_profile_bytes,
                2,
                profile_max,
            )?
            .map_or(defaults.profile.max_bytes.min(max_body_bytes), |n| {
                n as usize
            }),
            max_depth: at_most(
                "TASKGATE_MAX_PROFILE_DEPTH",
                args.max_profile_depth,
                1,
                max_json_depth as u64 - 1,
            )?
            .map_or(defaults.profile.max_depth.min(max_json_depth - 1), |n| {
                n as usize
            }),
        };
        let seconds = |value: Option<u64>, default| value.map_or(default, Duration::from_secs);
        let js_defaults = &defaults.tasks.js;
        let tasks = TaskLimits {
            max_delay_seconds: args
                .max_delay_seconds
                .map_or(defaults.tasks.max_delay_seconds, |n| n as f64),
            max_code_bytes: at_most(
                "TASKGATE_MAX_CODE_BYTES",
                args.max_code_bytes,
                16,
                max_body_bytes as u64,
            )?
            .map_or(defaults.tasks.max_code_bytes.min(max_body_bytes), |n| {
                n as usize
            }),
            js: JsLimits {
                wall_time: seconds(args.js_timeout_seconds, js_defaults.wall_time),
                cpu_time: seconds(args.js_cpu_seconds, js_defaults.cpu_time),
                memory_bytes: args
                    .js_memory_mb
                    .map_or(js_defaults.memory_bytes, |mb| mb * 1024 * 1024),
                ..js_defaults.clone()
            },
        };
        Ok(Self {
            registration: args.registration.unwrap_or(defaults.registration),
            token_ttl: seconds(args.token_ttl_seconds, defaults.token_ttl),
            max_body_bytes,
            max_header_bytes: args
                .max_header_bytes
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(defaults.max_header_bytes),
            max_json_depth,
            profile,
            max_concurrent_hashes: args
                .max_concurrent_hashes
                .map_or(defaults.max_concurrent_hashes, |n| n as usize),
            tasks,
            max_concurrent_scripts: args
                .max_concurrent_scripts
                .map_or(defaults.max_concurrent_scripts, |n| n as usize),
            page_cache_bytes: args
                .page_cache_bytes
                .map_or(defaults.page_cache_bytes, |n| n as usize),
            login: LoginThrottle {
                free_failures: args
                    .login_free_failures
                    .map_or(defaults.login.free_failures, |n| n as u32),
                backoff: seconds(args.login_backoff_seconds, defaults.login.backoff),
                max_lock: seconds(args.login_max_lock_seconds, defaults.login.max_lock),
                forget_after: seconds(args.login_forget_seconds, defaults.login.forget_after),
            },
            realtime: RealtimeLimits {
                max_connections_per_user: args
                    .ws_max_connections_per_user
                    .map_or(defaults.realtime.max_connections_per_user, |n| n as usize),
                max_subscriptions: args
                    .ws_max_subscriptions
                    .map_or(defaults.realtime.max_subscriptions, |n| n as usize),
                buffer_events: args
                    .ws_buffer_events
                    .map_or(defaults.realtime.buffer_events, |n| n as usize),
                ping_interval: seconds(args.ws_ping_seconds, defaults.realtime.ping_interval),
                max_message_bytes: args
                    .ws_max_message_bytes
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(defaults.realtime.max_message_bytes),
                replay_budget: args
                    .ws_replay_budget_ms
                    .map_or(defaults.realtime.replay_budget, Duration::from_millis),
            },
            unstarted_grace: seconds(args.unstarted_grace_seconds, defaults.unstarted_grace),
            files: FileLimits {
                max_file_bytes: args.max_file_bytes.unwrap_or(defaults.files.max_file_bytes),
                user_quota_bytes: args
                    .user_quota_bytes
                    .unwrap_or(defaults.files.user_quota_bytes),
                max_files: args.max_files_per_user.unwrap_or(defaults.files.max_files),
                upload_expiry: seconds(args.upload_expiry_seconds, defaults.files.upload_expiry),
                max_patch_bytes: args.max_patch_bytes.or(defaults.files.max_patch_bytes),
            },
            max_active_tasks: ActiveTaskLimits {
                per_user: args
                    .max_active_tasks_per_user
                    .unwrap_or(defaults.max_active_tasks.per_user),
                per_admin: args
                    .max_active_tasks_per_admin
                    .unwrap_or(defaults.max_active_tasks.per_admin),
                exports: args
                    .max_active_exports_per_user
                    .unwrap_or(defaults.max_active_tasks.exports),
            },
        })
    }
}

/// Reads the variables of `A` (every argument with an `env` name) through
/// `lookup`, parsed and checked by clap. Only `lookup` is asked: the process
/// environment is read when `lookup` reads it, so tests can pass a map.
pub fn from_lookup<A: Args + FromArgMatches>(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<A, ConfigError> {
    let command = A::augment_args(clap::Command::new("taskgate").no_binary_name(true));
    let mut given: Vec<OsString> = Vec::new();
    for arg in command.get_arguments() {
        let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        if let Some(value) = env.to_str().and_then(lookup) {
            given.push(format!("--{long}={value}").into());
        }
    }
    let command = command.mut_args(|arg| arg.env(None::<&str>));
    let matches = command
        .clone()
        .try_get_matches_from(given)
        .map_err(|e| config_error(&e, &A::augment_args(clap::Command::new("taskgate"))))?;
    A::from_arg_matches(&matches).map_err(|e| ConfigError::new("the settings", e.to_string()))
}

/// The variable a clap error is about, with our own message (the value
/// parser's) when there is one.
fn config_error(error: &clap::Error, command: &clap::Command) -> ConfigError {
    use clap::error::{ContextKind, ContextValue};
    let invalid = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.clone(),
        _ => String::new(),
    };
    let name = command
        .get_arguments()
        .find(|arg| {
            arg.get_long()
                .is_some_and(|long| invalid.starts_with(&format!("--{long}")))
        })
        .and_then(|arg| arg.get_env())
        .map_or_else(
            || "the settings".to_owned(),
            |env| env.to_string_lossy().into_owned(),
        );
    let message = std::error::Error::source(error)
        .map_or_else(|| error.kind().to_string(), |source| source.to_string());
    ConfigError::new(name, message)
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
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn values_are_read_from_their_variables() {
        let s = settings(&[
            ("TASKGATE_REGISTRATION", "open"),
            ("TASKGATE_TOKEN_TTL_SECONDS", "600"),
            ("TASKGATE_JS_MEMORY_MB", "256"),
            ("TASKGATE_LOGIN_FORGET_SECONDS", "120"),
            ("TASKGATE_PAGE_CACHE_BYTES", "0"),
        ])
        .unwrap();
        assert_eq!(s.page_cache_bytes, 0);
        assert_eq!(s.registration, Registration::Open);
        assert_eq!(s.token_ttl, Duration::from_secs(600));
        assert_eq!(s.tasks.js.memory_bytes, 256 * 1024 * 1024);
        assert_eq!(s.login.forget_after, Duration::from_secs(120));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = settings(&[("TASKGATE_REGISTRATION", "public")]).unwrap_err();
        assert_eq!(e.name, "TASKGATE_REGISTRATION");
        assert_eq!(
            e.to_string(),
            "TASKGATE_REGISTRATION: must be \"admin\" or \"open\", not \"public\""
        );
        let e = settings(&[("TASKGATE_TOKEN_TTL_SECONDS", "5")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "TASKGATE_TOKEN_TTL_SECONDS: must be a whole number from 60 to 604800, not \"5\""
        );
        let e = settings(&[("TASKGATE_JS_CPU_SECONDS", "ten")]).unwrap_err();
        assert_eq!(e.name, "TASKGATE_JS_CPU_SECONDS");
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
