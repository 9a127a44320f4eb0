//! Runs one script from stdin in the sandbox's worker mode and prints the
//! outcome as JSON (see `taskgate_js::worker`).
fn main() -> std::process::ExitCode {
    taskgate_js::worker::main()
}
