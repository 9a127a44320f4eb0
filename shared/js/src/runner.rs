//! The parent side: a `JsRunner` that runs each script in a fresh worker
//! process and turns whatever happens to it into a result or a clear error.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use taskgate_domain::ports::{JsFailure, JsOutput, JsRunner};
use taskgate_domain::task::{JsLimits, TaskError, TaskId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
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
///
/// With [`with_warm_workers`](Self::with_warm_workers), that many workers
/// are started ahead of need: each has limited itself and built its engine,
/// and waits for a script on stdin. A script goes to a waiting worker when
/// there is one (or to a worker started for it), and a replacement is started
/// while it runs. A worker still runs one script and exits: warm workers
/// save the script the wait for a process start, not the fresh process.
pub struct ProcessRunner {
    slots: Semaphore,
    workers: Arc<Workers>,
}

/// How workers start, and those started ahead of need.
struct Workers {
    command: WorkerCommand,
    limits: JsLimits,
    target: usize,
    /// Started, not yet given a script; killed if the runner is dropped.
    waiting: Mutex<Vec<Child>>,
}

impl ProcessRunner {
    pub fn new(command: WorkerCommand, limits: JsLimits, max_concurrent: usize) -> Self {
        Self {
            workers: Arc::new(Workers {
                command,
                limits,
                target: 0,
                waiting: Mutex::new(Vec::new()),
            }),
            slots: Semaphore::new(max_concurrent.max(1)),
        }
    }

    /// Keeps `count` workers started and waiting for a script (see the type's
    /// documentation). They start with the first script, or at
    /// [`warm_up`](Self::warm_up).
    #[must_use]
    pub fn with_warm_workers(mut self, count: usize) -> Self {
        Arc::get_mut(&mut self.workers)
            .expect("nothing shares the workers before the first script")
            .target = count;
        self
    }

    fn limits(&self) -> &JsLimits {
        &self.workers.limits
    }

    /// Starts workers until `warm_workers` wait. Needs a Tokio runtime (the
    /// pipes are registered with it); a worker that cannot start is logged
    /// and left to the next script, which starts its own.
    pub fn warm_up(&self) {
        self.workers.refill();
    }
}

impl Workers {
    fn refill(&self) {
        let missing = self.target.saturating_sub(self.waiting().len());
        let mut started = Vec::with_capacity(missing);
        for _ in 0..missing {
            match self.spawn() {
                Ok(child) => started.push(child),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a script worker ahead of need");
                    break;
                }
            }
        }
        let mut waiting = self.waiting();
        for child in started {
            // Two refills at once may overshoot; the extra one is killed
            // on drop.
            if waiting.len() < self.target {
                waiting.push(child);
            }
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Child>> {
        // The list stays whole whatever panicked while it was held.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A waiting worker that is still alive, if any.
    fn take(&self) -> Option<Child> {
        let mut waiting = self.waiting();
        while let Some(mut child) = waiting.pop() {
            if matches!(child.try_wait(), Ok(None)) {
                return Some(child);
            }
            // Exited while it waited (killed by an operator, say): dropped.
        }
        None
    }

    fn spawn(&self) -> std::io::Result<Child> {
        tokio::process::Command::new(&self.command.program)
            .args(&self.command.args)
            // Filled in with the task's id when its script arrives, so `ps`
            // shows whose script each worker runs (`worker::TASK_ARGUMENT`).
            .arg(crate::worker::task_placeholder())
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
        let mut child = match self.workers.take() {
            Some(child) => child,
            None => self.workers.spawn().map_err(|e| {
                failure(
                    "worker-failed",
                    format!("cannot start the script worker: {e}"),
                )
            })?,
        };
        // The worker shows its task in `ps` once it has read it; the log
        // ties the two together too.
        tracing::debug!(%task, pid = child.id(), "a script worker runs the task's script");

        let mut stdin = child.stdin.take().expect("stdin is piped");
        // The task's id on the first line, for the worker's command line.
        let code = format!("{task}\n{code}");
        tokio::spawn(async move {
            // A worker that dies early closes the pipe; its exit tells why.
            let _ = stdin.write_all(code.as_bytes()).await;
        });
        // The next script's worker starts while this one runs, on a thread
        // of its own: starting a process holds the thread until it has
        // exec'd, which this script need not wait for.
        if self.workers.target > 0 {
            let workers = Arc::clone(&self.workers);
            tokio::task::spawn_blocking(move || workers.refill());
        }
        let max_stdout = self.limits().max_result_bytes
            + self.limits().max_log_lines * (self.limits().max_log_line_bytes + 16)
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
            () = tokio::time::sleep(self.limits().wall_time) => Ended::TimedOut,
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
                    self.limits().wall_time.as_secs_f64()
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
        let memory_mib = self.limits().memory_bytes / (1024 * 1024);
        if let Some(bytes) = failed_allocation(stderr) {
            // One allocation of a large part of the cap is a single huge
            // value (a giant string or array); smaller ones mean the script
            // filled the cap bit by bit.
            return Err(if bytes >= self.limits().memory_bytes / 4 {
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
                    self.limits().cpu_time.as_secs()
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
