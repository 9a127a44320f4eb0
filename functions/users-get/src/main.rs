//! Lambda function for `GET /users/{username}`, `GET /user/{username}`.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run(taskgate_lambda::Endpoint::UsersGet)
}
