//! Following a task to its end: over the WebSocket (`task:{id}`), falling
//! back to polling `GET /tasks/{id}` when there is none (or it drops). On a
//! terminal a progress bar (delays, exports) or a spinner (scripts);
//! without one, a plain line per change. Ctrl-C stops watching, not the
//! task.

use std::io::IsTerminal as _;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use taskgate_domain::task::{StatusKind, TaskKind};
use taskgate_views::ExportResult;
use taskgate_views::owned::Task;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use super::Failure;
use super::api::{Answer, Api};

/// How often the task is read when there is no WebSocket.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// What the client reads of a real-time message (the rest it ignores).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Incoming {
    Subscribed,
    Event {
        event: TaskNotice,
    },
    Error {
        detail: String,
    },
    #[serde(other)]
    Other,
}

/// A `task.updated` event: the task as it stands, unless it was too large
/// for a message (`truncated`: then only its short fields came).
#[derive(Deserialize)]
struct TaskNotice {
    task: Value,
    truncated: Option<Value>,
}

/// What the watcher shows: a bar or spinner on a terminal, lines otherwise.
struct Display {
    bar: Option<ProgressBar>,
    last_line: String,
}

impl Display {
    fn new(task: &Task) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                bar: None,
                last_line: String::new(),
            };
        }
        let bar = if task.kind == TaskKind::Js {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} {elapsed}")
                    .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        } else {
            let bar = ProgressBar::new(1000);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {percent:>3}% {msg} (elapsed {elapsed}, eta {eta})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        };
        let short: String = task.id.chars().take(8).collect();
        bar.set_prefix(format!("{} {short}", task.kind.as_str()));
        Self {
            bar: Some(bar),
            last_line: String::new(),
        }
    }

    fn show(&mut self, task: &Task) {
        let status = task.status.as_str();
        let progress = task.progress;
        match &self.bar {
            Some(bar) => {
                bar.set_message(status.to_owned());
                if let Some(p) = progress {
                    bar.set_position((p.clamp(0.0, 1.0) * 1000.0) as u64);
                }
            }
            None => {
                // A line per status, and per tenth of progress.
                let line = match progress {
                    Some(p) => format!(
                        "task {} {status} {:.0}%",
                        task.id,
                        (p * 10.0).floor() * 10.0
                    ),
                    None => format!("task {} {status}", task.id),
                };
                if line != self.last_line {
                    eprintln!("{line}");
                    self.last_line = line;
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Follows task `id` until it ends; the task as it ended.
pub async fn watch(api: &Api, id: &str) -> Result<Answer<Task>, Failure> {
    let path = format!("/tasks/{id}");
    let task: Answer<Task> = api.json(api.request(Method::GET, &path)?).await?;
    let mut display = Display::new(&task.value);
    display.show(&task.value);
    let followed = async {
        if task.value.status.is_terminal() {
            return Ok(task);
        }
        match follow_socket(api, id, &mut display).await {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(reason) => tracing::debug!(%reason, "following by polling"),
        }
        loop {
            let task: Answer<Task> = api.json(api.request(Method::GET, &path)?).await?;
            display.show(&task.value);
            if task.value.status.is_terminal() {
                return Ok(task);
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    };
    let outcome = tokio::select! {
        outcome = followed => outcome,
        _ = tokio::signal::ctrl_c() => Err(Failure::Interrupted(format!(
            "stopped watching; task {id} keeps running. Follow it again with: taskgate tasks watch {id}"
        ))),
    };
    display.finish();
    outcome
}

/// Reads task `id` (when a message could not carry all of it).
async fn read(api: &Api, id: &str) -> Result<Answer<Task>, String> {
    let request = api
        .request(Method::GET, &format!("/tasks/{id}"))
        .map_err(|e| e.to_string())?;
    api.json(request).await.map_err(|e| e.to_string())
}

/// Follows the task over the WebSocket: `Some(task)` when it ended, `None`
/// (or an error) when the socket could not be used or went away.
async fn follow_socket(
    api: &Api,
    id: &str,
    display: &mut Display,
) -> Result<Option<Answer<Task>>, String> {
    let mut request = api
        .websocket_url()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let token = api.token().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| "the token is not a header value".to_owned())?,
    );
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, api.websocket_tls());
    let (mut socket, _) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| "the WebSocket did not open within 10 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let topic = format!("task:{id}");
    socket
        .send(Message::text(
            json!({"type": "subscribe", "topic": topic}).to_string(),
        ))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(message) = socket.next().await {
        let text = match message.map_err(|e| e.to_string())? {
            Message::Text(text) => text,
            Message::Close(_) => return Ok(None),
            _ => continue,
        };
        let Ok(message) = serde_json::from_str::<Incoming>(&text) else {
            continue;
        };
        let task = match message {
            // Live from here on: read the task once more, in case it ended
            // between the first read and the subscription.
            Incoming::Subscribed => read(api, id).await?,
            Incoming::Event {
                event:
                    TaskNotice {
                        task,
                        truncated: None,
                    },
            } => {
                let value = Task::deserialize(&task)
                    .map_err(|e| format!("a task event that is not a task: {e}"))?;
                Answer { json: task, value }
            }
            // Too large for a message: the task as it is.
            Incoming::Event { .. } => read(api, id).await?,
            Incoming::Error { detail } => return Err(detail),
            Incoming::Other => continue,
        };
        display.show(&task.value);
        if task.value.status.is_terminal() {
            let _ = socket.close(None).await;
            return Ok(Some(task));
        }
    }
    Ok(None)
}

fn print_logs(task: &Task) {
    for line in task.logs.iter().flat_map(|logs| logs.iter()) {
        println!("log: {line}");
    }
}

/// Prints how a watched task ended; a failed or cancelled one is a failure.
pub fn report(json: bool, answer: &Answer<Task>) -> Result<(), Failure> {
    if json {
        println!("{}", answer.json);
    }
    let task = &answer.value;
    let id = &task.id;
    match task.status {
        StatusKind::Succeeded => {
            if json {
                return Ok(());
            }
            let result = task.result.as_deref().unwrap_or(&Value::Null);
            if task.kind == TaskKind::Export {
                let file = ExportResult::deserialize(result).map_err(|e| {
                    Failure::Other(format!(
                        "export {id} succeeded, but its result is not a file: {e}"
                    ))
                })?;
                println!(
                    "export {id} succeeded: file {} ({} bytes, sha256 {})",
                    file.file, file.size, file.sha256
                );
                println!("download it with: taskgate files download {}", file.file);
            } else {
                print_logs(task);
                println!(
                    "{}",
                    serde_json::to_string_pretty(result).expect("JSON values print")
                );
            }
            Ok(())
        }
        StatusKind::Failed => {
            if !json {
                print_logs(task);
            }
            let (code, message) = task
                .error
                .as_ref()
                .map_or(("?", "?"), |e| (e.code.as_str(), e.message.as_str()));
            Err(Failure::TaskFailed(format!(
                "task {id} failed: {code}: {message}"
            )))
        }
        StatusKind::Cancelled => Err(Failure::TaskFailed(format!(
            "task {id} was cancelled by {}",
            task.cancelled_by.as_deref().unwrap_or("someone")
        ))),
        StatusKind::Pending | StatusKind::Running => Err(Failure::Other(format!(
            "task {id} is {}",
            task.status.as_str()
        ))),
    }
}
