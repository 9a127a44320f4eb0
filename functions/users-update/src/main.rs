//! Lambda function for `PATCH /users/{username}`, `PUT /user/{username}`.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run(taskgate_lambda::Endpoint::UsersUpdate)
}
