//! State machine step: runs an export task, writing its file into the files
//! bucket and recording its outcome (see `taskgate_lambda::steps::run_export`).
fn main() -> std::process::ExitCode {
    taskgate_lambda::run_export_step()
}
