//! Lambda function for `GET /tasks/{id}/events`.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run(taskgate_lambda::Endpoint::TasksEvents)
}
