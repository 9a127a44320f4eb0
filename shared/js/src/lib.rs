//! # JavaScript sandbox
//!
//! Scripts never run in the process that serves requests. [`ProcessRunner`]
//! (the parent side, a `JsRunner`) starts a child process, the same binary in
//! worker mode, which runs [`worker::main`]:
//!
//! - the child limits itself before it reads the script: address space
//!   (`RLIMIT_AS`, so a memory bomb fails an allocation), CPU time
//!   (`RLIMIT_CPU`, the kernel stops it with SIGXCPU), no core files;
//! - it evaluates on a thread with a 64 MiB stack, in a Boa context whose
//!   module loader refuses every import (Boa's default loader reads files
//!   from the working directory), with a captured, bounded `console`;
//! - a returned Promise is run to completion; one still pending when the job
//!   queue is empty fails (`promise-never-settled`);
//! - the result goes through the engine's own `JSON.stringify`, and a result
//!   over the size limit fails (`result-too-large`);
//! - it writes one JSON line (the outcome) to stdout.
//!
//! The parent kills the child at the wall-clock deadline (`timeout`) or when
//! the task is cancelled, reads bounded stdout and stderr, and turns crashes
//! into errors: an aborted allocation (`memory-limit`, or `value-too-large`
//! for one enormous value), a stack overflow in the parser
//! (`nesting-too-deep`), SIGXCPU (`cpu-limit`).
//!
//! Error codes: `syntax-error`, `script-error`, `recursion-limit`,
//! `promise-never-settled`, `result-too-large`, `timeout`, `cpu-limit`,
//! `memory-limit`, `value-too-large`, `nesting-too-deep`, `cancelled`,
//! `worker-failed`.
#![forbid(unsafe_code)]

mod limits;
mod runner;
pub mod worker;

pub use runner::{ProcessRunner, WorkerCommand};
