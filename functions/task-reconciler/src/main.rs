//! Fails the tasks whose Step Functions executions ended without recording
//! an outcome (fed by EventBridge execution status changes).
fn main() -> std::process::ExitCode {
    taskgate_lambda::run_reconciler()
}
