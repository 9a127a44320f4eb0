//! Running the real `taskgate` binary in tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::json;

/// A running `taskgate serve` and what it printed until it was ready.
pub struct Running {
    pub child: Child,
    pub url: String,
    pub output: Vec<String>,
    /// Everything printed after that, collected in the background.
    pub later: Arc<Mutex<Vec<String>>>,
}

pub fn taskgate(data_dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskgate"));
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TASKGATE_DATA_DIR", data_dir)
        .env("TASKGATE_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

pub fn serve(data_dir: &Path, env: &[(&str, &str)]) -> Running {
    let child = taskgate(data_dir, env).spawn().expect("taskgate starts");
    let mut running = Running {
        child,
        url: String::new(),
        output: Vec::new(),
        later: Arc::default(),
    };
    let (tx, rx) = mpsc::channel();
    let stderr = running.child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            panic!(
                "taskgate did not say it is listening; it printed: {:#?}",
                running.output
            );
        };
        if let Some(url) = line.strip_prefix("Taskgate is listening on ") {
            running.url = url.trim().to_owned();
            running.output.push(line);
            // Keep draining so the child never blocks on a full pipe.
            let later = Arc::clone(&running.later);
            std::thread::spawn(move || {
                while let Ok(line) = rx.recv() {
                    later.lock().unwrap().push(line);
                }
            });
            return running;
        }
        running.output.push(line);
    }
}

/// A failed test must not leave a server running.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn printed_password(&self) -> Option<String> {
        self.output
            .iter()
            .find_map(|line| line.trim().strip_prefix("password: ").map(str::to_owned))
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("taskgate did not stop on SIGTERM");
    }
}

pub fn https_client(data_dir: &Path, port: u16) -> reqwest::Client {
    let cert = std::fs::read(data_dir.join("tls-cert.pem")).expect("the generated certificate");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&cert).unwrap()])
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap()
}

async fn post_login(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/auth"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Tries to log in; returns the status.
pub async fn login(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> reqwest::StatusCode {
    post_login(client, base, username, password).await.status()
}

/// Logs in and returns the token; panics unless it works.
pub async fn token(client: &reqwest::Client, base: &str, username: &str, password: &str) -> String {
    let response: serde_json::Value = post_login(client, base, username, password)
        .await
        .json()
        .await
        .unwrap();
    response["token"]
        .as_str()
        .unwrap_or_else(|| panic!("login as {username} failed: {response}"))
        .to_owned()
}
