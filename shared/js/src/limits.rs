//! Passing `JsLimits` from the parent to the worker, as environment variables
//! of the child (whose environment is otherwise empty).

use std::time::Duration;

use taskgate_domain::task::JsLimits;

const MEMORY: &str = "TASKGATE_JS_MEMORY_BYTES";
const CPU: &str = "TASKGATE_JS_CPU_SECONDS";
const RESULT: &str = "TASKGATE_JS_MAX_RESULT_BYTES";
const LOG_LINES: &str = "TASKGATE_JS_MAX_LOG_LINES";
const LOG_LINE_BYTES: &str = "TASKGATE_JS_MAX_LOG_LINE_BYTES";

pub(crate) fn to_env(limits: &JsLimits) -> Vec<(&'static str, String)> {
    vec![
        (MEMORY, limits.memory_bytes.to_string()),
        (CPU, limits.cpu_time.as_secs().max(1).to_string()),
        (RESULT, limits.max_result_bytes.to_string()),
        (LOG_LINES, limits.max_log_lines.to_string()),
        (LOG_LINE_BYTES, limits.max_log_line_bytes.to_string()),
    ]
}

/// The limits the worker was started with; defaults for anything missing.
pub(crate) fn from_env() -> JsLimits {
    let defaults = JsLimits::default();
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    JsLimits {
        wall_time: defaults.wall_time,
        cpu_time: number(CPU).map_or(defaults.cpu_time, Duration::from_secs),
        memory_bytes: number(MEMORY).unwrap_or(defaults.memory_bytes),
        max_result_bytes: number(RESULT).map_or(defaults.max_result_bytes, |n| n as usize),
        max_log_lines: number(LOG_LINES).map_or(defaults.max_log_lines, |n| n as usize),
        max_log_line_bytes: number(LOG_LINE_BYTES)
            .map_or(defaults.max_log_line_bytes, |n| n as usize),
    }
}
