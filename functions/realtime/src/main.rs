//! The one program behind the real-time functions: the WebSocket API's
//! `$connect`, `$disconnect` and `$default` routes and the fan-out from the
//! log tables' streams, chosen by `TASKGATE_REALTIME_HANDLER` (set per
//! function by `infra/template.yaml`).
fn main() -> std::process::ExitCode {
    taskgate_lambda_http::run_realtime()
}
