//! Lambda function for `GET /tasks`.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run(taskgate_lambda::Endpoint::TasksList)
}
