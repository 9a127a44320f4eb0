//! The sandbox with real worker processes: every way a script can misbehave
//! ends its run with its own error code, and the caller is unharmed.

use std::time::{Duration, Instant};

use taskgate_domain::ports::{JsFailure, JsOutput, JsRunner};
use taskgate_domain::task::{JsLimits, TaskId};
use taskgate_js::{ProcessRunner, WorkerCommand};

/// A runner whose workers carry `marker` on their command line (so a test
/// can find them in /proc) and of which `warm` wait ahead of need.
fn marked_runner(limits: JsLimits, marker: &str, warm: usize) -> ProcessRunner {
    let command = WorkerCommand {
        program: env!("CARGO_BIN_EXE_taskgate-js-worker").into(),
        args: vec![marker.to_owned()],
    };
    let runner = ProcessRunner::new(command, limits, 4).with_warm_workers(warm);
    runner.warm_up();
    runner
}

/// Every hostile script below runs in a worker that was started ahead of
/// need and waited for it, as on the local server.
fn runner(limits: JsLimits) -> ProcessRunner {
    marked_runner(limits, "--runner=sandbox-test", 1)
}

fn limits() -> JsLimits {
    JsLimits {
        wall_time: Duration::from_secs(20),
        ..JsLimits::default()
    }
}

async fn run_with(limits: JsLimits, code: &str) -> Result<JsOutput, JsFailure> {
    runner(limits)
        .run(&TaskId::new(), code, Box::pin(std::future::pending()))
        .await
}

async fn error_of(limits: JsLimits, code: &str) -> (String, String) {
    match run_with(limits, code).await {
        Ok(output) => panic!("{code}: succeeded with {output:?}"),
        Err(failure) => (failure.error.code, failure.error.message),
    }
}

/// The ids of running processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(needle)
        {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

fn unique_marker() -> String {
    format!("--runner={}", TaskId::new())
}

#[tokio::test]
async fn a_script_returns_its_value_and_console_lines() {
    let output = run_with(
        limits(),
        "console.log('working'); Promise.resolve([1, 'two', {three: 3}])",
    )
    .await
    .unwrap();
    assert_eq!(output.result, serde_json::json!([1, "two", {"three": 3}]));
    assert_eq!(output.logs, ["working"]);
}

#[tokio::test]
async fn an_infinite_loop_times_out() {
    let short = JsLimits {
        wall_time: Duration::from_secs(2),
        ..limits()
    };
    let (code, message) = error_of(short, "for (;;) {}").await;
    assert_eq!(code, "timeout", "{message}");
}

#[tokio::test]
async fn cpu_time_is_capped_by_the_kernel() {
    let cpu = JsLimits {
        cpu_time: Duration::from_secs(1),
        ..limits()
    };
    let (code, message) = error_of(cpu, "for (;;) {}").await;
    assert_eq!(code, "cpu-limit", "{message}");
}

#[tokio::test]
async fn deep_recursion_hits_the_recursion_limit() {
    let (code, _) = error_of(
        limits(),
        "function down(n) { return down(n + 1) + 1; } down(0)",
    )
    .await;
    assert_eq!(code, "recursion-limit");
}

#[tokio::test]
async fn deeply_nested_literals_fail_without_crashing_the_caller() {
    let nested = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let (code, message) = error_of(limits(), &nested).await;
    assert_eq!(code, "nesting-too-deep", "{message}");
}

#[tokio::test]
async fn memory_bombs_hit_the_memory_limit() {
    for bomb in [
        // Many mid-sized strings kept alive.
        "const hoard = []; for (;;) { hoard.push('x'.repeat(1 << 20) + hoard.length); }",
        // Large buffers (the engine reports the failed allocation itself).
        "const hoard = []; for (;;) { hoard.push(new Uint8Array(1 << 24)); }",
    ] {
        let (code, message) = error_of(limits(), bomb).await;
        assert_eq!(code, "memory-limit", "{bomb}: {message}");
    }
}

#[tokio::test]
async fn a_huge_string_is_a_value_too_large() {
    let (code, message) = error_of(limits(), "'x'.repeat(2 ** 30)").await;
    assert_eq!(code, "value-too-large", "{message}");
}

#[tokio::test]
async fn thrown_errors_and_syntax_errors_are_told_apart() {
    let (code, message) = error_of(limits(), "throw new RangeError('out of range')").await;
    assert_eq!(code, "script-error");
    assert!(message.contains("RangeError: out of range"), "{message}");
    let (code, message) = error_of(limits(), "function (").await;
    assert_eq!(code, "syntax-error");
    assert!(message.contains("does not parse"), "{message}");
}

#[tokio::test]
async fn a_result_over_the_limit_is_refused() {
    let small = JsLimits {
        max_result_bytes: 1000,
        ..limits()
    };
    let (code, _) = error_of(small, "'y'.repeat(2000)").await;
    assert_eq!(code, "result-too-large");
}

#[tokio::test]
async fn cancelling_kills_the_worker_within_a_second() {
    let runner = runner(limits());
    let task = TaskId::new();
    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        let cancelled = Box::pin(async move {
            let _ = cancelled.await;
        });
        runner.run(&task, "for (;;) {}", cancelled).await
    });
    // Wait until the worker really runs (it shows its task once it has it).
    let marker = format!("--task={task}");
    for _ in 0..100 {
        if !processes_mentioning(&marker).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !processes_mentioning(&marker).is_empty(),
        "the worker never started"
    );
    let asked = Instant::now();
    cancel.send(()).unwrap();
    let outcome = run.await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(outcome.unwrap_err().error.code, "cancelled");
    assert!(
        processes_mentioning(&marker).is_empty(),
        "the worker outlived its cancellation"
    );
}

/// A worker started ahead of need runs exactly one script: nothing one
/// script leaves behind is seen by the next, and the process that ran it
/// is gone when its result is in.
#[tokio::test]
async fn a_warm_worker_never_runs_two_scripts() {
    let marker = unique_marker();
    let runner = marked_runner(limits(), &marker, 1);
    for _ in 0..4 {
        // The replacement starts beside the script; wait for it.
        let mut waiting = processes_mentioning(&marker);
        for _ in 0..100 {
            if waiting.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            waiting = processes_mentioning(&marker);
        }
        assert_eq!(waiting.len(), 1, "one worker waits: {waiting:?}");
        let output = runner
            .run(
                &TaskId::new(),
                "globalThis.seen = (globalThis.seen ?? 0) + 1; seen",
                Box::pin(std::future::pending()),
            )
            .await
            .unwrap();
        assert_eq!(
            output.result,
            serde_json::json!(1),
            "a script saw another's global"
        );
        let after = processes_mentioning(&marker);
        assert!(
            !after.contains(&waiting[0]),
            "the worker that ran the script is still there: {after:?}"
        );
    }
}

/// With no worker waiting (none asked for, or all taken), a script starts
/// its own and runs the same.
#[tokio::test]
async fn a_script_starts_its_own_worker_when_none_waits() {
    let marker = unique_marker();
    let runner = marked_runner(limits(), &marker, 0);
    assert_eq!(processes_mentioning(&marker), Vec::<String>::new());
    let output = runner
        .run(&TaskId::new(), "6 * 7", Box::pin(std::future::pending()))
        .await
        .unwrap();
    assert_eq!(output.result, serde_json::json!(42));
    assert_eq!(processes_mentioning(&marker), Vec::<String>::new());
}
