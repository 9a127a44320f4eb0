//! Lambda function for `POST /tasks`.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run(taskgate_lambda::Endpoint::TasksStart)
}
