//! Lambda function for `DELETE /auth`.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run(taskgate_lambda::Endpoint::AuthLogout)
}
