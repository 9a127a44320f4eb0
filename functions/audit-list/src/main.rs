//! Lambda function for `GET /audit`.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run(taskgate_lambda::Endpoint::AuditList)
}
