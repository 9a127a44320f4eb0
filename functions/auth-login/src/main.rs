//! Lambda function for `POST /auth`.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run(taskgate_lambda::Endpoint::AuthLogin)
}
