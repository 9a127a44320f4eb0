//! Lambda function for `POST /users`, `POST /user`.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run(taskgate_lambda::Endpoint::UsersCreate)
}
