//! Lambda function for `POST /tasks/{id}/cancel`.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run(taskgate_lambda::Endpoint::TasksCancel)
}
