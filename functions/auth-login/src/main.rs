//! Lambda function for `POST /auth`: the shared application (`taskgate_lambda::run_http`),
//! deployed as its own function with its own role; API Gateway sends it
//! only the routes above.
fn main() -> std::process::ExitCode {
    taskgate_lambda::run_http()
}
