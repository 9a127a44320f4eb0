//! `Settings`: the knobs shared by the local server and the Lambda
//! functions, read from `TASKGATE_*` variables (README, "Configure it").
//!
//! Each setting is declared once, as an argument of [`SettingsArgs`]: its
//! variable, default, bounds (the value parser) and help in one attribute.
//! clap does the reading ([`from_lookup`] hands it the variables that are
//! set) and a bad value stops start-up with a [`ConfigError`] naming the
//! variable. [`Settings::from_args`] only groups the parsed values into the
//! domain's types and checks the bounds that depend on another setting (a
//! profile fits in a body). The README's table and docs/limits.md are
//! checked against these declarations by a test of the `taskgate` binary.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, FromArgMatches};
use taskgate_domain::permission::Registration;
use taskgate_domain::security::LoginThrottle;
use taskgate_domain::task::{JsLimits, TaskLimits};
use taskgate_domain::user::ProfileLimits;

/// Settings shared by the local server and the Lambda functions, grouped
/// as the domain takes them. Each field's variable, default and bounds are
/// those of the [`SettingsArgs`] argument it comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub registration: Registration,
    pub token_ttl: Duration,
    /// The local server stops reading a body once it passes this.
    pub max_body_bytes: usize,
    /// Checked before any header is parsed.
    pub max_header_bytes: usize,
    /// The body object itself is depth 1.
    pub max_json_depth: usize,
    pub profile: ProfileLimits,
    pub max_concurrent_hashes: usize,
    pub tasks: TaskLimits,
    pub max_concurrent_scripts: usize,
    /// Local server only: script workers started ahead of need.
    pub js_warm_workers: usize,
    /// Brute-force protection of `POST /auth`; see [`LoginThrottle`].
    pub login: LoginThrottle,
    pub realtime: RealtimeLimits,
    pub files: FileLimits,
    pub max_active_tasks: ActiveTaskLimits,
    /// Embedded store only; ADR 15.
    pub page_cache_bytes: usize,
    /// AWS only: the reconciler's sweep.
    pub unstarted_grace: Duration,
}

/// Pending or running tasks one account may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveTaskLimits {
    pub per_user: u64,
    pub per_admin: u64,
    /// Exports, counted with the tasks (each may write up to a file's size).
    pub exports: u64,
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
    pub max_file_bytes: u64,
    pub user_quota_bytes: u64,
    /// Finished or not; an empty file is a record too.
    pub max_files: u64,
    pub upload_expiry: Duration,
    /// `None`: no bound beyond the file's size (the local server).
    pub max_patch_bytes: Option<u64>,
}

impl Default for FileLimits {
    fn default() -> Self {
        Settings::default().files
    }
}

/// Bounds of the WebSocket endpoint (`GET /ws`, or API Gateway's).
#[derive(Clone, Debug, PartialEq)]
pub struct RealtimeLimits {
    pub max_connections_per_user: usize,
    pub max_subscriptions: usize,
    pub buffer_events: usize,
    pub ping_interval: Duration,
    /// A larger message is replaced by a notice naming what to read
    /// ([`crate::realtime::message::fit`]), on both transports alike.
    pub max_message_bytes: usize,
    /// AWS only: how long one `$default` invocation replays.
    pub replay_budget: Duration,
}

impl Default for Settings {
    /// Every setting at its declared default.
    fn default() -> Self {
        Self::from_lookup(|_| None).expect("the declared defaults are within their bounds")
    }
}

/// The deepest `TASKGATE_MAX_JSON_DEPTH` may go: serde_json refuses to
/// parse deeper (its guard against stack overflow).
pub const MAX_JSON_DEPTH: u64 = 128;
/// The largest profile whatever the body limit: a DynamoDB item (the whole
/// user) holds at most 400 KB.
const MAX_PROFILE_BYTES: u64 = 256 * 1024;
/// Defaults of the limits that shrink to fit a smaller body or depth when
/// they are not set (see [`Settings::from_args`]).
const DEFAULT_PROFILE_BYTES: usize = 16 * 1024;
const DEFAULT_PROFILE_DEPTH: usize = 16;
const DEFAULT_CODE_BYTES: usize = 32 * 1024;

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

/// A value parser for a whole number from `min` to `max`, as the type the
/// setting is used as (a number that does not fit in it is out of range
/// too, never truncated).
pub fn whole<T: TryFrom<u64>>(
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<T, OutOfRange> + Clone {
    move |raw| {
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| OutOfRange {
                min,
                max,
                raw: raw.to_owned(),
            })
    }
}

/// A value parser for a number of seconds from `min` to `max`.
pub fn seconds(min: u64, max: u64) -> impl Fn(&str) -> Result<Duration, OutOfRange> + Clone {
    let whole = whole::<u64>(min, max);
    move |raw| whole(raw).map(Duration::from_secs)
}

/// A value parser for a number of milliseconds from `min` to `max`.
fn millis(min: u64, max: u64) -> impl Fn(&str) -> Result<Duration, OutOfRange> + Clone {
    let whole = whole::<u64>(min, max);
    move |raw| whole(raw).map(Duration::from_millis)
}

/// A value parser for a number of mebibytes from `min` to `max`, in bytes.
fn mebibytes(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, OutOfRange> + Clone {
    let whole = whole::<u64>(min, max);
    move |raw| {
        whole(raw).and_then(|mib| {
            mib.checked_mul(1 << 20).ok_or_else(|| OutOfRange {
                min,
                max,
                raw: raw.to_owned(),
            })
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

/// The machine's CPUs: the default number of password hashes at once.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// The shared settings as variables: each one's name, default, bounds and
/// meaning, declared once. Those without a default shrink to fit another
/// setting when unset (the default is in their help).
#[derive(Args, Clone, Debug)]
pub struct SettingsArgs {
    /// `admin`: only admins create users; `open`: anyone may sign up (level
    /// `user`) and delete their own account.
    #[arg(long, env = "TASKGATE_REGISTRATION", value_parser = registration, default_value = "admin")]
    pub registration: Registration,
    /// Token lifetime in seconds, 60 to 604800.
    #[arg(long, env = "TASKGATE_TOKEN_TTL_SECONDS", value_parser = seconds(60, 7 * 24 * 3600), default_value = "3600")]
    pub token_ttl_seconds: Duration,
    /// Largest request body, in bytes (413 `payload-too-large` above it,
    /// refused unread).
    #[arg(long, env = "TASKGATE_MAX_BODY_BYTES", value_parser = whole::<usize>(1024, 10 * 1024 * 1024), default_value = "65536")]
    pub max_body_bytes: usize,
    /// The most a request's headers may hold together, names and values
    /// (431 `headers-too-large` above it; API Gateway's HTTP API takes 10 KB).
    #[arg(long, env = "TASKGATE_MAX_HEADER_BYTES", value_parser = whole::<usize>(1024, 1024 * 1024), default_value = "16384")]
    pub max_header_bytes: usize,
    /// Deepest nesting of objects and arrays in a JSON body, at most 128
    /// (400 `malformed-request` beyond).
    #[arg(long, env = "TASKGATE_MAX_JSON_DEPTH", value_parser = whole::<usize>(2, MAX_JSON_DEPTH), default_value = "32")]
    pub max_json_depth: usize,
    /// Largest profile, as compact JSON, in bytes; at most the body limit
    /// and 262144 (422 on `profile`). Default 16384, or the body limit if
    /// smaller.
    #[arg(long, env = "TASKGATE_MAX_PROFILE_BYTES", value_parser = whole::<usize>(2, MAX_PROFILE_BYTES))]
    pub max_profile_bytes: Option<usize>,
    /// Deepest nesting of a profile, less than the JSON depth (422 on
    /// `profile`). Default 16, or the JSON depth less one if smaller.
    #[arg(long, env = "TASKGATE_MAX_PROFILE_DEPTH", value_parser = whole::<usize>(1, MAX_JSON_DEPTH - 1))]
    pub max_profile_depth: Option<usize>,
    /// Argon2 hashes computed at once (19 MiB and a core each); more logins
    /// wait their turn. Default: the number of CPUs.
    #[arg(long, env = "TASKGATE_MAX_CONCURRENT_HASHES", value_parser = whole::<usize>(1, 256), default_value_t = cpus(), hide_default_value = true)]
    pub max_concurrent_hashes: usize,
    /// Longest delay a task may ask for, in seconds.
    #[arg(long, env = "TASKGATE_MAX_DELAY_SECONDS", value_parser = whole::<u32>(1, 365 * 24 * 3600), default_value = "86400")]
    pub max_delay_seconds: u32,
    /// Largest script, in bytes, at most the body limit (422 on `code`).
    /// Default 32768, or the body limit if smaller.
    #[arg(long, env = "TASKGATE_MAX_CODE_BYTES", value_parser = whole::<usize>(16, 10 * 1024 * 1024))]
    pub max_code_bytes: Option<usize>,
    /// Wall-clock seconds a script may run (`timeout`).
    #[arg(long, env = "TASKGATE_JS_TIMEOUT_SECONDS", value_parser = seconds(1, 900), default_value = "10")]
    pub js_timeout_seconds: Duration,
    /// CPU seconds a script may use (`cpu-limit`).
    #[arg(long, env = "TASKGATE_JS_CPU_SECONDS", value_parser = seconds(1, 900), default_value = "10")]
    pub js_cpu_seconds: Duration,
    /// Address space of a script's process, in MiB (`memory-limit`).
    #[arg(long, env = "TASKGATE_JS_MEMORY_MB", value_parser = mebibytes(128, 8192), default_value = "512")]
    pub js_memory_mb: u64,
    /// Local server only: scripts run at once; more wait their turn (status
    /// `running`).
    #[arg(long, env = "TASKGATE_MAX_CONCURRENT_SCRIPTS", value_parser = whole::<usize>(1, 64), default_value = "2")]
    pub max_concurrent_scripts: usize,
    /// Local server only: script workers started ahead of need, limited and
    /// waiting for a script, so that a script does not wait for a process
    /// to start; each still runs one script and exits. 0 starts each
    /// worker when its script arrives.
    #[arg(long, env = "TASKGATE_JS_WARM_WORKERS", value_parser = whole::<usize>(0, 64), default_value = "2")]
    pub js_warm_workers: usize,
    /// Embedded store only: memory for item pages kept to be answered again
    /// while their project is unchanged (ADR 15), in bytes; 0 keeps none.
    #[arg(long, env = "TASKGATE_PAGE_CACHE_BYTES", value_parser = whole::<usize>(0, 1 << 30), default_value = "16777216")]
    pub page_cache_bytes: usize,
    /// Failed logins in a row for one username (or device) before locks
    /// start.
    #[arg(long, env = "TASKGATE_LOGIN_FREE_FAILURES", value_parser = whole::<u32>(1, 1000), default_value = "5")]
    pub login_free_failures: u32,
    /// The first lock, in seconds; each further failure doubles it.
    #[arg(long, env = "TASKGATE_LOGIN_BACKOFF_SECONDS", value_parser = seconds(1, 3600), default_value = "1")]
    pub login_backoff_seconds: Duration,
    /// The longest lock, in seconds.
    #[arg(long, env = "TASKGATE_LOGIN_MAX_LOCK_SECONDS", value_parser = seconds(1, 24 * 3600), default_value = "900")]
    pub login_max_lock_seconds: Duration,
    /// Seconds after which failures no longer count (at most a week:
    /// DynamoDB's TTL drops counters after eight days).
    #[arg(long, env = "TASKGATE_LOGIN_FORGET_SECONDS", value_parser = seconds(60, 7 * 24 * 3600), default_value = "86400")]
    pub login_forget_seconds: Duration,
    /// Open WebSockets per user; one more is refused with 429
    /// `too-many-connections`.
    #[arg(long, env = "TASKGATE_WS_MAX_CONNECTIONS_PER_USER", value_parser = whole::<usize>(1, 10_000), default_value = "16")]
    pub ws_max_connections_per_user: usize,
    /// Topics one WebSocket may follow; one more is answered with an
    /// `error` (400).
    #[arg(long, env = "TASKGATE_WS_MAX_SUBSCRIPTIONS", value_parser = whole::<usize>(1, 10_000), default_value = "64")]
    pub ws_max_subscriptions: usize,
    /// Events held per topic for sockets that read slowly; one further
    /// behind is closed (1008) and should reconnect with `after`.
    #[arg(long, env = "TASKGATE_WS_BUFFER_EVENTS", value_parser = whole::<usize>(16, 65_536), default_value = "256")]
    pub ws_buffer_events: usize,
    /// An idle WebSocket is pinged this often, in seconds, and closed when
    /// nothing came back for two intervals.
    #[arg(long, env = "TASKGATE_WS_PING_SECONDS", value_parser = seconds(1, 3600), default_value = "30")]
    pub ws_ping_seconds: Duration,
    /// A larger WebSocket message, in bytes (a task event with a big result
    /// or logs), is replaced by a notice naming what to read (API Gateway's
    /// limit is 128 KB; both transports send the same).
    #[arg(long, env = "TASKGATE_WS_MAX_MESSAGE_BYTES", value_parser = whole::<usize>(1024, 16 << 20), default_value = "128000")]
    pub ws_max_message_bytes: usize,
    /// AWS only: how long one invocation of `$default` replays, in
    /// milliseconds, before it hands the rest to the next (its timeout is
    /// 10 s).
    #[arg(long, env = "TASKGATE_WS_REPLAY_BUDGET_MS", value_parser = millis(1, 60_000), default_value = "5000")]
    pub ws_replay_budget_ms: Duration,
    /// AWS only: how long a task may stay created but not started (its
    /// start function died), in seconds, before the reconciler's sweep
    /// starts or fails it.
    #[arg(long, env = "TASKGATE_UNSTARTED_GRACE_SECONDS", value_parser = seconds(0, 86_400), default_value = "120")]
    pub unstarted_grace_seconds: Duration,
    /// Largest file, in bytes; a bigger `Upload-Length` is 413
    /// `file-too-large`.
    #[arg(long, env = "TASKGATE_MAX_FILE_BYTES", value_parser = whole::<u64>(1, 5 << 40), default_value = "5368709120")]
    pub max_file_bytes: u64,
    /// The sizes of one user's files together, finished or not, in bytes;
    /// beyond it 413 `storage-quota-exceeded` saying how much is used.
    #[arg(long, env = "TASKGATE_USER_QUOTA_BYTES", value_parser = whole::<u64>(1, 1 << 50), default_value = "21474836480")]
    pub user_quota_bytes: u64,
    /// How long an unfinished upload is kept, in seconds (`Upload-Expires`);
    /// then it is removed, bytes and all.
    #[arg(long, env = "TASKGATE_UPLOAD_EXPIRY_SECONDS", value_parser = seconds(60, 30 * 86_400), default_value = "86400")]
    pub upload_expiry_seconds: Duration,
    /// The largest PATCH body, in bytes (413 `file-too-large`, nothing
    /// kept); none by default, the Lambda functions set 4 MiB, what their
    /// payload can carry.
    #[arg(long, env = "TASKGATE_MAX_PATCH_BYTES", value_parser = whole::<u64>(1024, 5 << 40))]
    pub max_patch_bytes: Option<u64>,
    /// Pending or running tasks one user may have; one more start is 429
    /// `quota-exceeded` (tasks that end free their place).
    #[arg(long, env = "TASKGATE_MAX_ACTIVE_TASKS_PER_USER", value_parser = whole::<u64>(1, 1_000_000), default_value = "100")]
    pub max_active_tasks_per_user: u64,
    /// The same for an admin.
    #[arg(long, env = "TASKGATE_MAX_ACTIVE_TASKS_PER_ADMIN", value_parser = whole::<u64>(1, 1_000_000), default_value = "1000")]
    pub max_active_tasks_per_admin: u64,
    /// Exports one user may have pending or running (429 `quota-exceeded`
    /// beyond).
    #[arg(long, env = "TASKGATE_MAX_ACTIVE_EXPORTS_PER_USER", value_parser = whole::<u64>(1, 1000), default_value = "2")]
    pub max_active_exports_per_user: u64,
    /// Files one user may keep, finished or not (413
    /// `storage-quota-exceeded` beyond).
    #[arg(long, env = "TASKGATE_MAX_FILES_PER_USER", value_parser = whole::<u64>(1, 10_000_000), default_value = "10000")]
    pub max_files_per_user: u64,
}

/// `value` must be at most `max`, another setting's bound.
fn at_most(
    name: &str,
    value: Option<usize>,
    min: u64,
    max: usize,
) -> Result<Option<usize>, ConfigError> {
    match value {
        Some(n) if n > max => Err(ConfigError::new(
            name,
            OutOfRange {
                min,
                max: u64::try_from(max).unwrap_or(u64::MAX),
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

    /// Groups the parsed values, and checks the bounds that depend on
    /// other settings.
    pub fn from_args(args: SettingsArgs) -> Result<Self, ConfigError> {
        let body = args.max_body_bytes;
        let depth = args.max_json_depth;
        // A profile sits inside the body, one level down; so does a script.
        // `depth` is at least 2 (its parser's bound).
        let profile_depth = depth.saturating_sub(1);
        let profile = ProfileLimits {
            max_bytes: at_most(
                "TASKGATE_MAX_PROFILE_BYTES",
                args.max_profile_bytes,
                2,
                body.min(usize::try_from(MAX_PROFILE_BYTES).unwrap_or(usize::MAX)),
            )?
            .unwrap_or(DEFAULT_PROFILE_BYTES.min(body)),
            max_depth: at_most(
                "TASKGATE_MAX_PROFILE_DEPTH",
                args.max_profile_depth,
                1,
                profile_depth,
            )?
            .unwrap_or(DEFAULT_PROFILE_DEPTH.min(profile_depth)),
        };
        let tasks = TaskLimits {
            max_delay_seconds: f64::from(args.max_delay_seconds),
            max_code_bytes: at_most("TASKGATE_MAX_CODE_BYTES", args.max_code_bytes, 16, body)?
                .unwrap_or(DEFAULT_CODE_BYTES.min(body)),
            js: JsLimits {
                wall_time: args.js_timeout_seconds,
                cpu_time: args.js_cpu_seconds,
                memory_bytes: args.js_memory_mb,
                ..JsLimits::default()
            },
        };
        Ok(Self {
            registration: args.registration,
            token_ttl: args.token_ttl_seconds,
            max_body_bytes: body,
            max_header_bytes: args.max_header_bytes,
            max_json_depth: depth,
            profile,
            max_concurrent_hashes: args.max_concurrent_hashes,
            tasks,
            max_concurrent_scripts: args.max_concurrent_scripts,
            js_warm_workers: args.js_warm_workers,
            page_cache_bytes: args.page_cache_bytes,
            login: LoginThrottle {
                free_failures: args.login_free_failures,
                backoff: args.login_backoff_seconds,
                max_lock: args.login_max_lock_seconds,
                forget_after: args.login_forget_seconds,
            },
            realtime: RealtimeLimits {
                max_connections_per_user: args.ws_max_connections_per_user,
                max_subscriptions: args.ws_max_subscriptions,
                buffer_events: args.ws_buffer_events,
                ping_interval: args.ws_ping_seconds,
                max_message_bytes: args.ws_max_message_bytes,
                replay_budget: args.ws_replay_budget_ms,
            },
            unstarted_grace: args.unstarted_grace_seconds,
            files: FileLimits {
                max_file_bytes: args.max_file_bytes,
                user_quota_bytes: args.user_quota_bytes,
                max_files: args.max_files_per_user,
                upload_expiry: args.upload_expiry_seconds,
                max_patch_bytes: args.max_patch_bytes,
            },
            max_active_tasks: ActiveTaskLimits {
                per_user: args.max_active_tasks_per_user,
                per_admin: args.max_active_tasks_per_admin,
                exports: args.max_active_exports_per_user,
            },
        })
    }
}

/// One declared variable: what the README's configuration table says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    pub variable: String,
    /// The declared default as written, `None` when there is none or it is
    /// computed (shown in the help instead).
    pub default: Option<String>,
    pub help: String,
}

/// Every variable `A` declares, in declaration order: for documentation and
/// the test that keeps the README and docs/limits.md true.
pub fn declared<A: Args>() -> Vec<Declared> {
    let command = A::augment_args(clap::Command::new("taskgate"));
    command
        .get_arguments()
        .filter_map(|arg| {
            let variable = arg.get_env()?.to_str()?.to_owned();
            let default = (!arg.is_hide_default_value_set())
                .then(|| {
                    arg.get_default_values()
                        .first()?
                        .to_str()
                        .map(str::to_owned)
                })
                .flatten();
            let help = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(ToString::to_string)
                .unwrap_or_default();
            Some(Declared {
                variable,
                default,
                help,
            })
        })
        .collect()
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
    fn a_number_beyond_its_type_is_out_of_range_not_truncated() {
        let parse = whole::<u32>(0, u64::MAX);
        assert_eq!(parse("4294967295").unwrap(), u32::MAX);
        let e = parse("4294967296").unwrap_err();
        assert!(e.to_string().contains("4294967296"), "{e}");
        assert!(mebibytes(1, u64::MAX)("18446744073709551615").is_err());
        assert!(whole::<usize>(1, 10)("-1").is_err());
    }

    #[test]
    fn every_variable_is_declared_with_its_help() {
        SettingsArgs::augment_args(clap::Command::new("taskgate")).debug_assert();
        let declared = declared::<SettingsArgs>();
        assert_eq!(declared.len(), 35);
        for d in &declared {
            assert!(d.variable.starts_with("TASKGATE_"), "{d:?}");
            assert!(!d.help.is_empty(), "{} has no help", d.variable);
        }
        let ttl = declared
            .iter()
            .find(|d| d.variable == "TASKGATE_TOKEN_TTL_SECONDS")
            .unwrap();
        assert_eq!(ttl.default.as_deref(), Some("3600"));
        let hashes = declared
            .iter()
            .find(|d| d.variable == "TASKGATE_MAX_CONCURRENT_HASHES")
            .unwrap();
        assert_eq!(hashes.default, None, "computed: shown in the help instead");
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
