//! The one program behind every HTTP function: the shared application
//! (`taskgate_api::app`) through `lambda_http`. It is built once and
//! deployed as each function of `infra/template.yaml`, each with its own
//! role and log group; API Gateway sends each function only its own routes.
fn main() -> std::process::ExitCode {
    taskgate_lambda_http::run_http()
}
