//! State machine step: runs a task's script. The script runs in a child
//! process of this same binary in worker mode (`bootstrap js-worker`), never
//! in the function's own process. The only function that links Boa.
use std::sync::Arc;

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("js-worker") {
        return taskgate_js::worker::main();
    }
    taskgate_lambda::run_js_step(|limits| {
        let worker = taskgate_js::WorkerCommand::current_exe(&["js-worker"])?;
        // One script per invocation; one worker waits, frozen with the
        // sandbox between invocations, for the next one's script.
        Ok(Arc::new(
            taskgate_js::ProcessRunner::new(worker, limits, 1).with_warm_workers(1),
        ))
    })
}
