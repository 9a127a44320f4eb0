//! The child side: limit this process, evaluate the script from stdin with
//! Boa, print one JSON outcome line to stdout.
//!
//! Binaries that can act as the worker call [`main`] when started in worker
//! mode (`taskgate js-worker`, or the JS step function's bootstrap).

use std::cell::RefCell;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::rc::Rc;

use boa_engine::builtins::promise::PromiseState;
use boa_engine::error::{EngineError, RuntimeLimitError, TryNativeError};
use boa_engine::module::IdleModuleLoader;
use boa_engine::object::ObjectInitializer;
use boa_engine::object::builtins::JsPromise;
use boa_engine::property::Attribute;
use boa_engine::{
    Context, JsError, JsNativeErrorKind, JsResult, JsValue, NativeFunction, Script, Source,
    js_string,
};
use rlimit::Resource;
use serde::{Deserialize, Serialize};
use taskgate_domain::task::JsLimits;

/// The stack of the evaluating thread. Boa's parser recurses once per level
/// of nesting; deeper scripts overflow it and fail as `nesting-too-deep`.
const STACK_BYTES: usize = 64 * 1024 * 1024;
/// Longest error message kept.
const MAX_MESSAGE_BYTES: usize = 1024;

/// What the worker prints: one line of JSON.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub(crate) enum Outcome {
    Succeeded {
        result: serde_json::Value,
        logs: Vec<String>,
    },
    Failed {
        code: String,
        message: String,
        logs: Vec<String>,
    },
}

/// Runs the worker: limits, an engine, then stdin → evaluation → stdout.
///
/// The engine is built before the script is read, so a worker started ahead
/// of need (`ProcessRunner::with_warm_workers`) has only the script left to
/// run when it arrives. The limits are in force before either.
pub fn main() -> ExitCode {
    let limits = crate::limits::from_env();
    if let Err(e) = limit_process(&limits) {
        eprintln!("taskgate js worker: cannot set resource limits: {e}");
        return ExitCode::FAILURE;
    }
    let evaluation = std::thread::Builder::new()
        .name("js".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let engine = prepare(&limits);
            let mut code = String::new();
            std::io::stdin().read_to_string(&mut code)?;
            if std::env::args().any(|a| a == task_placeholder()) {
                let (task, script) = code.split_once('\n').unwrap_or((code.as_str(), ""));
                // Only `ps` would miss it: the script runs all the same.
                let _ = show_task(task);
                code = script.to_owned();
            }
            Ok::<_, std::io::Error>(match engine {
                Ok(context) => run(context, &code, &limits),
                Err(outcome) => outcome,
            })
        });
    let outcome = match evaluation.map(|thread| thread.join()) {
        Ok(Ok(Ok(outcome))) => outcome,
        Ok(Ok(Err(e))) => {
            eprintln!("taskgate js worker: cannot read the script: {e}");
            return ExitCode::FAILURE;
        }
        Ok(Err(_)) => failed(
            "worker-failed",
            "the JavaScript engine panicked",
            Vec::new(),
        ),
        Err(e) => failed(
            "worker-failed",
            format!("cannot start the script thread: {e}"),
            Vec::new(),
        ),
    };
    let line = serde_json::to_string(&outcome).expect("an outcome always serialises");
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The argument a worker is started with, before it knows its task:
/// `--task=` and as many spaces as a task id has characters. A worker that
/// has it reads the task's id from the first line of stdin and writes it over
/// the spaces, so `ps` and /proc/PID/cmdline show `--task=<id>` while the
/// script runs (an operator can see whose script a process runs).
pub(crate) const TASK_ARGUMENT: &str = "--task=";
const TASK_ID_CHARS: usize = 36;

pub(crate) fn task_placeholder() -> String {
    format!("{TASK_ARGUMENT}{}", " ".repeat(TASK_ID_CHARS))
}

/// Writes `task` over the placeholder's spaces in this process's own
/// argument area, where the kernel reads /proc/PID/cmdline from, through
/// /proc/self/mem (as `setproctitle` does, without unsafe code). Anything
/// that is not a task id of the placeholder's length is left out.
fn show_task(task: &str) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    if task.len() != TASK_ID_CHARS || !task.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Ok(());
    }
    let unreadable = || std::io::Error::other("unexpected /proc/self/stat");
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (in parentheses, which may hold spaces):
    // the argument area's start is the 48th field, the 46th of these.
    let arg_start: u64 = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.split(' ').nth(45))
        .and_then(|field| field.parse().ok())
        .ok_or_else(unreadable)?;
    let cmdline = std::fs::read("/proc/self/cmdline")?;
    let placeholder = task_placeholder();
    let at = cmdline
        .windows(placeholder.len())
        .position(|w| w == placeholder.as_bytes())
        .ok_or_else(unreadable)?;
    let offset = u64::try_from(at + TASK_ARGUMENT.len()).map_err(|_| unreadable())?;
    let mut memory = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")?;
    memory.seek(SeekFrom::Start(arg_start + offset))?;
    memory.write_all(task.as_bytes())
}

fn limit_process(limits: &JsLimits) -> std::io::Result<()> {
    rlimit::setrlimit(Resource::AS, limits.memory_bytes, limits.memory_bytes)?;
    // The soft limit sends SIGXCPU; the hard one, a second later, SIGKILL.
    let cpu = limits.cpu_time.as_secs().max(1);
    rlimit::setrlimit(Resource::CPU, cpu, cpu + 1)?;
    rlimit::setrlimit(Resource::CORE, 0, 0)?;
    Ok(())
}

fn failed(code: &str, message: impl Into<String>, logs: Vec<String>) -> Outcome {
    let mut message = message.into();
    truncate(&mut message, MAX_MESSAGE_BYTES);
    Outcome::Failed {
        code: code.to_owned(),
        message,
        logs,
    }
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

/// Captured console output, bounded. One script per thread, so a thread-local
/// buffer is enough and needs no garbage-collected state in the engine.
struct Console {
    lines: Vec<String>,
    dropped: usize,
    max_lines: usize,
    max_line_bytes: usize,
}

thread_local! {
    static CONSOLE: RefCell<Console> = const {
        RefCell::new(Console { lines: Vec::new(), dropped: 0, max_lines: 0, max_line_bytes: 0 })
    };
}

fn console_lines() -> Vec<String> {
    CONSOLE.with(|console| {
        let console = console.borrow();
        let mut lines = console.lines.clone();
        if console.dropped > 0 {
            lines.push(format!(
                "… {} more console lines were dropped",
                console.dropped
            ));
        }
        lines
    })
}

fn console_write(prefix: &str, args: &[JsValue]) {
    let mut line: String = args
        .iter()
        .map(|arg| match arg.as_string() {
            Some(text) => text.to_std_string_escaped(),
            None => arg.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    line.insert_str(0, prefix);
    CONSOLE.with(|console| {
        let mut console = console.borrow_mut();
        if console.lines.len() >= console.max_lines {
            console.dropped += 1;
            return;
        }
        let max = console.max_line_bytes;
        truncate(&mut line, max);
        console.lines.push(line);
    });
}

fn log(_: &JsValue, args: &[JsValue], _: &mut Context) -> JsResult<JsValue> {
    console_write("", args);
    Ok(JsValue::undefined())
}

fn warn(_: &JsValue, args: &[JsValue], _: &mut Context) -> JsResult<JsValue> {
    console_write("[warn] ", args);
    Ok(JsValue::undefined())
}

fn error(_: &JsValue, args: &[JsValue], _: &mut Context) -> JsResult<JsValue> {
    console_write("[error] ", args);
    Ok(JsValue::undefined())
}

fn install_console(context: &mut Context) -> JsResult<()> {
    let console = ObjectInitializer::new(context)
        .function(NativeFunction::from_fn_ptr(log), js_string!("log"), 0)
        .function(NativeFunction::from_fn_ptr(log), js_string!("info"), 0)
        .function(NativeFunction::from_fn_ptr(log), js_string!("debug"), 0)
        .function(NativeFunction::from_fn_ptr(warn), js_string!("warn"), 0)
        .function(NativeFunction::from_fn_ptr(error), js_string!("error"), 0)
        .build();
    context.register_global_property(js_string!("console"), console, Attribute::all())
}

/// The first line of an error as a message (Boa appends a stack trace).
fn describe(error: &JsError) -> String {
    let text = error.to_string();
    text.lines().next().unwrap_or("").trim().to_owned()
}

fn classify(error: &JsError, context: &mut Context, logs: Vec<String>) -> Outcome {
    match error.try_native(context) {
        Err(TryNativeError::EngineError {
            source:
                EngineError::RuntimeLimit(RuntimeLimitError::Recursion | RuntimeLimitError::StackSize),
        }) => failed(
            "recursion-limit",
            "the script recursed too deeply (the engine's call depth limit)",
            logs,
        ),
        Err(TryNativeError::EngineError { source }) => failed(
            "worker-failed",
            format!("the JavaScript engine stopped: {source}"),
            logs,
        ),
        // Boa reports a failed buffer allocation (under the address-space
        // cap) as a RangeError; it is the memory limit, not the script's bug.
        Ok(native)
            if native.kind() == &JsNativeErrorKind::Range
                && native.message().contains("while allocating") =>
        {
            failed(
                "memory-limit",
                "the script ran out of memory (the memory limit)",
                logs,
            )
        }
        _ => failed(
            "script-error",
            format!("uncaught {}", describe(error)),
            logs,
        ),
    }
}

/// Builds the engine and evaluates `code` in it, on the calling thread.
#[cfg(test)]
pub(crate) fn evaluate(code: &str, limits: &JsLimits) -> Outcome {
    match prepare(limits) {
        Ok(context) => run(context, code, limits),
        Err(outcome) => outcome,
    }
}

/// The engine a script runs in, with the console bounded by `limits`; or
/// the outcome that says why there is none.
fn prepare(limits: &JsLimits) -> Result<Context, Outcome> {
    CONSOLE.with(|console| {
        let mut console = console.borrow_mut();
        console.max_lines = limits.max_log_lines;
        console.max_line_bytes = limits.max_log_line_bytes;
    });
    // No module loader: `import` of any kind is refused.
    let mut context = Context::builder()
        .module_loader(Rc::new(IdleModuleLoader))
        .build()
        .map_err(|e| {
            failed(
                "worker-failed",
                format!("cannot create the engine: {e}"),
                Vec::new(),
            )
        })?;
    install_console(&mut context).map_err(|e| {
        failed(
            "worker-failed",
            format!("cannot install console: {e}"),
            Vec::new(),
        )
    })?;
    Ok(context)
}

/// Evaluates `code` in the engine [`prepare`] built on this thread.
fn run(mut context: Context, code: &str, limits: &JsLimits) -> Outcome {
    let script = match Script::parse(Source::from_bytes(code), None, &mut context) {
        Ok(script) => script,
        Err(e) => {
            let message = match e.try_native(&mut context) {
                Ok(native) if native.kind() == &JsNativeErrorKind::Syntax => {
                    native.message().to_owned()
                }
                _ => describe(&e),
            };
            return failed(
                "syntax-error",
                format!("the script does not parse: {message}"),
                Vec::new(),
            );
        }
    };
    let value = match script.evaluate(&mut context) {
        Ok(value) => value,
        Err(e) => return classify(&e, &mut context, console_lines()),
    };
    if let Err(e) = context.run_jobs() {
        return classify(&e, &mut context, console_lines());
    }
    let value = match value
        .as_object()
        .and_then(|object| JsPromise::from_object(object.clone()).ok())
    {
        None => value,
        Some(promise) => match promise.state() {
            PromiseState::Fulfilled(value) => value,
            PromiseState::Rejected(reason) => {
                let error = JsError::from_opaque(reason);
                return match classify(&error, &mut context, console_lines()) {
                    Outcome::Failed {
                        code,
                        message,
                        logs,
                    } if code == "script-error" => Outcome::Failed {
                        code,
                        message: message.replacen(
                            "uncaught",
                            "the returned promise was rejected with",
                            1,
                        ),
                        logs,
                    },
                    other => other,
                };
            }
            PromiseState::Pending => {
                return failed(
                    "promise-never-settled",
                    "the script returned a promise that never settled (nothing left to run could settle it)",
                    console_lines(),
                );
            }
        },
    };
    stringify(value, &mut context, limits)
}

/// The value through the engine's own `JSON.stringify`, so `toJSON`, Dates
/// and skipped functions behave as in any JavaScript engine.
fn stringify(value: JsValue, context: &mut Context, limits: &JsLimits) -> Outcome {
    let text = (|| -> JsResult<Option<String>> {
        let json = context.global_object().get(js_string!("JSON"), context)?;
        let json = json.as_object().expect("JSON is an object");
        let stringify = json.get(js_string!("stringify"), context)?;
        let callable = stringify.as_callable().expect("JSON.stringify is callable");
        let text = callable.call(&JsValue::from(json.clone()), &[value], context)?;
        Ok(text.as_string().map(|t| t.to_std_string_escaped()))
    })();
    let logs = console_lines();
    match text {
        // Nothing to stringify (undefined, a function): the result is null.
        Ok(None) => Outcome::Succeeded {
            result: serde_json::Value::Null,
            logs,
        },
        Ok(Some(text)) if text.len() > limits.max_result_bytes => failed(
            "result-too-large",
            format!(
                "the result is {} bytes of JSON; the limit is {}",
                text.len(),
                limits.max_result_bytes
            ),
            logs,
        ),
        Ok(Some(text)) => match serde_json::from_str(&text) {
            Ok(result) => Outcome::Succeeded { result, logs },
            Err(e) => failed(
                "worker-failed",
                format!("the engine produced invalid JSON: {e}"),
                logs,
            ),
        },
        Err(e) => {
            // e.g. a cyclic object, or a throwing toJSON.
            let message = format!("the result cannot be turned into JSON: {}", describe(&e));
            failed("script-error", message, logs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: &str) -> Outcome {
        let code = code.to_owned();
        std::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn(move || evaluate(&code, &JsLimits::default()))
            .unwrap()
            .join()
            .unwrap()
    }

    fn result(code: &str) -> serde_json::Value {
        match run(code) {
            Outcome::Succeeded { result, .. } => result,
            other => panic!("{code}: {other:?}"),
        }
    }

    fn error_code(code: &str) -> String {
        match run(code) {
            Outcome::Failed { code, .. } => code,
            other => panic!("{code}: {other:?}"),
        }
    }

    #[test]
    fn the_result_follows_json_stringify() {
        assert_eq!(result("1 + 2"), serde_json::json!(3));
        assert_eq!(
            result("({a: [1, new Date(0)], f() {}})"),
            serde_json::json!({"a": [1, "1970-01-01T00:00:00.000Z"]})
        );
        assert_eq!(
            result("({toJSON() { return 'custom'; }})"),
            serde_json::json!("custom")
        );
        assert_eq!(result("undefined"), serde_json::Value::Null);
        assert_eq!(
            result("[undefined, () => 1, NaN]"),
            serde_json::json!([null, null, null])
        );
    }

    #[test]
    fn promises_are_awaited() {
        assert_eq!(
            result("Promise.resolve(41).then(x => x + 1)"),
            serde_json::json!(42)
        );
        assert_eq!(
            result("(async () => { await null; return 'done'; })()"),
            serde_json::json!("done")
        );
        assert_eq!(error_code("new Promise(() => {})"), "promise-never-settled");
        assert_eq!(
            error_code("Promise.reject(new Error('no'))"),
            "script-error"
        );
    }

    #[test]
    fn errors_have_distinct_codes() {
        assert_eq!(error_code("let x = ;"), "syntax-error");
        assert_eq!(error_code("throw new TypeError('bad')"), "script-error");
        assert_eq!(error_code("throw {code: 1}"), "script-error");
        assert_eq!(
            error_code("function f() { return f(); } f()"),
            "recursion-limit"
        );
        assert_eq!(error_code("'x'.repeat(300 * 1024)"), "result-too-large");
        assert_eq!(error_code("const o = {}; o.self = o; o"), "script-error");
    }

    #[test]
    fn imports_are_refused() {
        assert_eq!(
            error_code("import('Cargo.toml', {with: {type: 'json'}})"),
            "script-error"
        );
        assert_eq!(
            error_code("import x from './Cargo.toml'; x"),
            "syntax-error"
        );
    }

    #[test]
    fn console_output_is_captured_and_bounded() {
        match run("console.log('hi', 1, {a: 1}); console.warn('careful'); 5") {
            Outcome::Succeeded { result, logs } => {
                assert_eq!(result, serde_json::json!(5));
                assert_eq!(logs[0], "hi 1 {\n    a: 1\n}");
                assert_eq!(logs[1], "[warn] careful");
            }
            other => panic!("{other:?}"),
        }
        match run("for (let i = 0; i < 1000; i++) console.log('x'.repeat(5000)); 1") {
            Outcome::Succeeded { logs, .. } => {
                assert_eq!(logs.len(), 101);
                assert!(logs[0].len() <= 1024 + '…'.len_utf8());
                assert_eq!(logs[100], "… 900 more console lines were dropped");
            }
            other => panic!("{other:?}"),
        }
    }
}
