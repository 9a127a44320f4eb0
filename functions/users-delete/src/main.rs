//! Lambda function for `DELETE /users/{username}`, `DELETE /user/{username}`.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run(taskgate_lambda::Endpoint::UsersDelete)
}
