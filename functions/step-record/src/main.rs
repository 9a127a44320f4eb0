//! State machine step: records a task's outcome (`succeeded` or `failed`) in its log.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run_record_step()
}
