//! The script worker for the end-to-end tests' in-process servers (the test
//! binary itself cannot be started in worker mode). Same code as
//! `taskgate js-worker`.
fn main() -> std::process::ExitCode {
    taskgate_js::worker::main()
}
