//! Lambda function for `GET /tasks/{id}`.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run(taskgate_lambda::Endpoint::TasksGet)
}
