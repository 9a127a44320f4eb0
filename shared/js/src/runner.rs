//! The parent side: a `JsRunner` that runs each script in a fresh worker
//! process and turns whatever happens to it into a result or a clear error.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};

use async_trait::async_trait;
use taskgate_domain::ports::{JsFailure, JsOutput, JsRunner};
use taskgate_domain::task::{JsLimits, TaskError, TaskId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::worker::Outcome;

/// How to start a worker: a program and its arguments (for `taskgate`,
/// its own path and `js-worker`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl WorkerCommand {
    /// This very binary, with `args` (e.g. `["js-worker"]`).
    pub fn current_exe(args: &[&str]) -> std::io::Result<Self> {
        Ok(Self {
            program: std::env::current_exe()?,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        })
    }
}

/// Most of stderr a worker may write that we keep (crash messages are short).
const MAX_STDERR_BYTES: usize = 64 * 1024;
const SIGXCPU: i32 = 24;
const SIGKILL: i32 = 9;

/// Runs scripts in worker processes, at most `max_concurrent` at once (a
/// burst of scripts queues rather than exhausting memory).
pub struct ProcessRunner {
    command: WorkerCommand,
    limits: JsLimits,
    slots: Semaphore,
}

impl ProcessRunner {
    pub fn new(command: WorkerCommand, limits: JsLimits, max_concurrent: usize) -> Self {
        Self {
            command,
            limits,
            slots: Semaphore::new(max_concurrent.max(1)),
        }
    }
}

enum Ended {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

fn failure(code: &str, message: impl Into<String>) -> JsFailure {
    JsFailure {
        error: TaskError::new(code, message),
        logs: Vec::new(),
    }
}

/// Reads at most `limit` bytes, then drains the rest so the child never
/// blocks on a full pipe.
async fn read_bounded(mut reader: impl AsyncRead + Unpin, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
        }
    }
}

#[async_trait]
impl JsRunner for ProcessRunner {
    async fn run(
        &self,
        task: &TaskId,
        code: &str,
        mut cancel: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Result<JsOutput, JsFailure> {
        let cancelled = || {
            failure(
                "cancelled",
                "the task was cancelled; the script was stopped",
            )
        };
        let _slot = tokio::select! {
            slot = self.slots.acquire() => slot.expect("the semaphore is never closed"),
            () = &mut cancel => return Err(cancelled()),
        };
        let mut child = tokio::process::Command::new(&self.command.program)
            .args(&self.command.args)
            // Names the process in `ps`, so an operator can see whose script it is.
            .arg(format!("--task={task}"))
            .env_clear()
            .envs(crate::limits::to_env(&self.limits))
            // Fewer malloc arenas: each reserves address space the cap counts.
            .env("MALLOC_ARENA_MAX", "2")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                failure(
                    "worker-failed",
                    format!("cannot start the script worker: {e}"),
                )
            })?;

        let mut stdin = child.stdin.take().expect("stdin is piped");
        let code = code.to_owned();
        tokio::spawn(async move {
            // A worker that dies early closes the pipe; its exit tells why.
            let _ = stdin.write_all(code.as_bytes()).await;
        });
        let max_stdout = self.limits.max_result_bytes
            + self.limits.max_log_lines * (self.limits.max_log_line_bytes + 16)
            + 64 * 1024;
        let stdout = tokio::spawn(read_bounded(
            child.stdout.take().expect("stdout is piped"),
            max_stdout,
        ));
        let stderr = tokio::spawn(read_bounded(
            child.stderr.take().expect("stderr is piped"),
            MAX_STDERR_BYTES,
        ));

        let ended = tokio::select! {
            status = child.wait() => Ended::Exited(status),
            () = tokio::time::sleep(self.limits.wall_time) => Ended::TimedOut,
            () = &mut cancel => Ended::Cancelled,
        };
        if !matches!(ended, Ended::Exited(_)) {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        let stdout = stdout.await.unwrap_or_default();
        let stderr = String::from_utf8_lossy(&stderr.await.unwrap_or_default()).into_owned();
        match ended {
            Ended::Cancelled => Err(cancelled()),
            Ended::TimedOut => Err(failure(
                "timeout",
                format!(
                    "the script ran longer than {} s and was stopped",
                    self.limits.wall_time.as_secs_f64()
                ),
            )),
            Ended::Exited(Err(e)) => Err(failure(
                "worker-failed",
                format!("lost the script worker: {e}"),
            )),
            Ended::Exited(Ok(status)) => self.outcome(status, &stdout, &stderr),
        }
    }
}

impl ProcessRunner {
    fn outcome(
        &self,
        status: ExitStatus,
        stdout: &[u8],
        stderr: &str,
    ) -> Result<JsOutput, JsFailure> {
        if status.success()
            && let Ok(outcome) = serde_json::from_slice::<Outcome>(stdout)
        {
            return match outcome {
                Outcome::Succeeded { result, logs } => Ok(JsOutput { result, logs }),
                Outcome::Failed {
                    code,
                    message,
                    logs,
                } => Err(JsFailure {
                    error: TaskError::new(&code, message),
                    logs,
                }),
            };
        }
        let memory_mib = self.limits.memory_bytes / (1024 * 1024);
        if let Some(bytes) = failed_allocation(stderr) {
            // One allocation of a large part of the cap is a single huge
            // value (a giant string or array); smaller ones mean the script
            // filled the cap bit by bit.
            return Err(if bytes >= self.limits.memory_bytes / 4 {
                failure(
                    "value-too-large",
                    format!(
                        "the script tried to build a single value of {} MiB; the memory limit is {memory_mib} MiB",
                        bytes / (1024 * 1024)
                    ),
                )
            } else {
                failure(
                    "memory-limit",
                    format!("the script used more than the {memory_mib} MiB memory limit"),
                )
            });
        }
        if stderr.contains("has overflowed its stack") {
            return Err(failure(
                "nesting-too-deep",
                "the script nests too deeply to parse or run (for example thousands of nested brackets)",
            ));
        }
        if matches!(status.signal(), Some(SIGXCPU | SIGKILL)) {
            return Err(failure(
                "cpu-limit",
                format!(
                    "the script used more than {} s of CPU time",
                    self.limits.cpu_time.as_secs()
                ),
            ));
        }
        let first_line = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        tracing::warn!(%status, stderr = first_line, "a script worker failed");
        Err(failure(
            "worker-failed",
            format!("the script worker stopped unexpectedly ({status})"),
        ))
    }
}

/// The size in Rust's "memory allocation of N bytes failed" message.
fn failed_allocation(stderr: &str) -> Option<u64> {
    let rest = stderr.split("memory allocation of ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}
