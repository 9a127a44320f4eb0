//! What the application counts, through the `metrics` facade (a no-op
//! until a recorder is installed: the local server installs a Prometheus
//! one when `TASKGATE_METRICS_ADDR` is set). On Lambda, where a scrape
//! cannot reach the function, the request and task-event counters are also
//! written as CloudWatch Embedded Metric Format lines (one JSON object per request on
//! stdout, which CloudWatch turns into metrics of namespace `Taskgate`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};

/// Whether a recorder is installed ([`recorder_installed`]).
static RECORDING: AtomicBool = AtomicBool::new(false);

/// Says that a recorder is installed. Until then [`request`], called on
/// every request, builds no labels: the facade would take them (five
/// strings, two lists) only to drop them.
pub fn recorder_installed() {
    RECORDING.store(true, Ordering::Relaxed);
}

/// The label of a request's method: one of the methods HTTP defines, or
/// `other`. Every label comes from a closed set (this, the matched route
/// or `unmatched`, the status the server chose): a client that makes up
/// methods cannot grow the metrics (or the EMF lines and logs on Lambda).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// A request answered: by route (the matched pattern, [`UNMATCHED`] for
/// none), method ([`method_label`]) and status, with its latency.
pub fn request(route: &str, method: &Method, status: StatusCode, elapsed: Duration) {
    if RECORDING.load(Ordering::Relaxed) {
        record_request(route, method, status, elapsed);
    }
    if on_lambda() {
        println!("{}", emf_line(route, method, status, elapsed, now_millis()));
    }
}

fn record_request(route: &str, method: &Method, status: StatusCode, elapsed: Duration) {
    let labels = [
        ("route", route.to_owned()),
        ("method", method_label(method).to_owned()),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("taskgate_http_requests_total", &labels).increment(1);
    metrics::histogram!(
        "taskgate_http_request_duration_seconds",
        "route" => route.to_owned(),
        "method" => method_label(method)
    )
    .record(elapsed.as_secs_f64());
}

/// An item page answered: from the pages kept in memory (`kept`, see
/// `pages.rs`) or read from the store (`read`).
pub fn item_page(kept: bool) {
    let source = if kept { "kept" } else { "read" };
    metrics::counter!("taskgate_item_pages_total", "source" => source).increment(1);
}

/// A task event recorded, by task kind and event type (the task's status
/// from then on: created = pending, started = running, and the endings).
pub fn task_event(kind: &str, event: &str) {
    metrics::counter!(
        "taskgate_task_events_total",
        "kind" => kind.to_owned(),
        "type" => event.to_owned()
    )
    .increment(1);
    if on_lambda() {
        println!("{}", emf_task_line(kind, event, now_millis()));
    }
}

/// One task event as a CloudWatch Embedded Metric Format line.
pub fn emf_task_line(kind: &str, event: &str, timestamp_ms: u128) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": "Taskgate",
                "Dimensions": [["kind", "type"]],
                "Metrics": [{"Name": "task_events", "Unit": "Count"}]
            }]
        },
        "kind": kind,
        "type": event,
        "task_events": 1,
    })
    .to_string()
}

/// A WebSocket opened (+1) or closed (-1).
pub fn websocket(delta: f64) {
    metrics::gauge!("taskgate_websockets_open").increment(delta);
}

/// An upload's bytes started (+1) or stopped (-1) arriving.
pub fn upload(delta: f64) {
    metrics::gauge!("taskgate_uploads_in_progress").increment(delta);
}

fn on_lambda() -> bool {
    static ON_LAMBDA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON_LAMBDA.get_or_init(|| std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some())
}

fn now_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// One request as a CloudWatch Embedded Metric Format line.
pub fn emf_line(
    route: &str,
    method: &Method,
    status: StatusCode,
    elapsed: Duration,
    timestamp_ms: u128,
) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": "Taskgate",
                "Dimensions": [["route", "method", "status"]],
                "Metrics": [
                    {"Name": "requests", "Unit": "Count"},
                    {"Name": "latency", "Unit": "Milliseconds"}
                ]
            }]
        },
        "route": route,
        "method": method_label(method),
        "status": status.as_u16().to_string(),
        "requests": 1,
        "latency": elapsed.as_secs_f64() * 1000.0,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        for raw in ["XYZ", "get", "PROPFIND", &"A".repeat(8192)] {
            let method = Method::from_bytes(raw.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{raw}");
        }
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }

    #[test]
    fn an_emf_line_names_its_metrics_and_dimensions() {
        let line = emf_line(
            "/tasks/{id}",
            &Method::GET,
            StatusCode::NOT_FOUND,
            Duration::from_millis(12),
            1_800_000_000_000,
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let directive = &value["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Taskgate");
        for dimension in directive["Dimensions"][0].as_array().unwrap() {
            assert!(value.get(dimension.as_str().unwrap()).is_some());
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            assert!(value[metric["Name"].as_str().unwrap()].is_number());
        }
        assert_eq!(value["status"], "404");
        assert_eq!(value["_aws"]["Timestamp"], 1_800_000_000_000u64);
        let task: serde_json::Value =
            serde_json::from_str(&emf_task_line("delay", "succeeded", 1)).unwrap();
        assert_eq!(
            (task["kind"].as_str(), task["type"].as_str()),
            (Some("delay"), Some("succeeded"))
        );
        assert_eq!(task["task_events"], 1);
    }
}
