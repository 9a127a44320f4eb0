//! Lambda function for `GET /users`.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run(taskgate_lambda::Endpoint::UsersList)
}
