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
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use super::Failure;
use super::api::Api;

/// How often the task is read when there is no WebSocket.
const POLL_EVERY: Duration = Duration::from_millis(500);

fn is_terminal_status(task: &Value) -> bool {
    matches!(
        task["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// What the watcher shows: a bar or spinner on a terminal, lines otherwise.
struct Display {
    bar: Option<ProgressBar>,
    last_line: String,
}

impl Display {
    fn new(task: &Value) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                bar: None,
                last_line: String::new(),
            };
        }
        let id = task["id"].as_str().unwrap_or("?");
        let kind = task["type"].as_str().unwrap_or("task");
        let bar = if kind == "js" {
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
        bar.set_prefix(format!("{kind} {}", &id[..id.len().min(8)]));
        Self {
            bar: Some(bar),
            last_line: String::new(),
        }
    }

    fn show(&mut self, task: &Value) {
        let status = task["status"].as_str().unwrap_or("?");
        let progress = task["progress"].as_f64();
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
                        task["id"].as_str().unwrap_or("?"),
                        (p * 10.0).floor() * 10.0
                    ),
                    None => format!("task {} {status}", task["id"].as_str().unwrap_or("?")),
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
pub async fn watch(api: &Api, id: &str) -> Result<Value, Failure> {
    let path = format!("/tasks/{id}");
    let mut task = api.json(api.request(Method::GET, &path)?).await?;
    let mut display = Display::new(&task);
    display.show(&task);
    let followed = async {
        if is_terminal_status(&task) {
            return Ok(task.clone());
        }
        match follow_socket(api, id, &mut display).await {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(reason) => tracing::debug!(%reason, "following by polling"),
        }
        loop {
            task = api.json(api.request(Method::GET, &path)?).await?;
            display.show(&task);
            if is_terminal_status(&task) {
                return Ok(task.clone());
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

/// Follows the task over the WebSocket: `Some(task)` when it ended, `None`
/// (or an error) when the socket could not be used or went away.
async fn follow_socket(
    api: &Api,
    id: &str,
    display: &mut Display,
) -> Result<Option<Value>, String> {
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
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        match message["type"].as_str() {
            // Live from here on: read the task once more, in case it ended
            // between the first read and the subscription.
            Some("subscribed") => {
                let request = api
                    .request(reqwest::Method::GET, &format!("/tasks/{id}"))
                    .map_err(|e| e.to_string())?;
                let task = api.json(request).await.map_err(|e| e.to_string())?;
                display.show(&task);
                if is_terminal_status(&task) {
                    let _ = socket.close(None).await;
                    return Ok(Some(task));
                }
            }
            Some("event") => {
                let task = &message["event"]["task"];
                if task.is_object() {
                    display.show(task);
                    if is_terminal_status(task) {
                        let _ = socket.close(None).await;
                        return Ok(Some(task.clone()));
                    }
                }
            }
            Some("error") => return Err(message["detail"].as_str().unwrap_or("error").to_owned()),
            _ => {}
        }
    }
    Ok(None)
}

/// Prints how a watched task ended; a failed or cancelled one is a failure.
pub fn report(json: bool, task: &Value) -> Result<(), Failure> {
    if json {
        println!("{task}");
    }
    let id = task["id"].as_str().unwrap_or("?");
    match task["status"].as_str() {
        Some("succeeded") => {
            if !json {
                match task["type"].as_str() {
                    Some("export") => {
                        let result = &task["result"];
                        println!(
                            "export {id} succeeded: file {} ({} bytes, sha256 {})",
                            result["file"].as_str().unwrap_or("?"),
                            result["size"],
                            result["sha256"].as_str().unwrap_or("?")
                        );
                        println!(
                            "download it with: taskgate files download {}",
                            result["file"].as_str().unwrap_or("?")
                        );
                    }
                    _ => {
                        for line in task["logs"].as_array().into_iter().flatten() {
                            println!("log: {}", line.as_str().unwrap_or_default());
                        }
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&task["result"]).unwrap_or_default()
                        );
                    }
                }
            }
            Ok(())
        }
        Some("failed") => {
            if !json {
                for line in task["logs"].as_array().into_iter().flatten() {
                    println!("log: {}", line.as_str().unwrap_or_default());
                }
            }
            Err(Failure::TaskFailed(format!(
                "task {id} failed: {}: {}",
                task["error"]["code"].as_str().unwrap_or("?"),
                task["error"]["message"].as_str().unwrap_or("?")
            )))
        }
        Some("cancelled") => Err(Failure::TaskFailed(format!(
            "task {id} was cancelled by {}",
            task["cancelled_by"].as_str().unwrap_or("someone")
        ))),
        other => Err(Failure::Other(format!("task {id} is {other:?}"))),
    }
}
