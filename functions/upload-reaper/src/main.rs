//! Removes unfinished uploads past their `Upload-Expires`, records and S3
//! bytes (run on a schedule by EventBridge).
fn main() -> std::process::ExitCode {
    taskgate_lambda::run_upload_reaper()
}
