//! `taskgate serve` as a user runs it: the real binary, its output, its
//! files, its signals.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::{Value, json};

/// A running `taskgate serve` and what it printed until it was ready.
struct Running {
    child: Child,
    url: String,
    output: Vec<String>,
    /// Everything printed after that, collected in the background.
    later: Arc<Mutex<Vec<String>>>,
}

fn taskgate(data_dir: &Path, env: &[(&str, &str)]) -> Command {
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

fn serve(data_dir: &Path, env: &[(&str, &str)]) -> Running {
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
    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn printed_password(&self) -> Option<String> {
        self.output
            .iter()
            .find_map(|line| line.trim().strip_prefix("password: ").map(str::to_owned))
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
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

fn https_client(data_dir: &Path, port: u16) -> reqwest::Client {
    let cert = std::fs::read(data_dir.join("tls-cert.pem")).expect("the generated certificate");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&cert).unwrap()])
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap()
}

async fn login(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> reqwest::StatusCode {
    client
        .post(format!("{base}/auth"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn first_start_prints_the_admin_password_once_and_data_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");

    let first = serve(&data_dir, &[]);
    assert!(first.url.starts_with("https://127.0.0.1:"), "{}", first.url);
    let password = first
        .printed_password()
        .expect("the generated admin password is printed");
    assert!(
        first.output.iter().any(|l| l.contains("username: admin")),
        "{:#?}",
        first.output
    );
    for file in ["tls-cert.pem", "tls-key.pem", "jwt-secret", "taskgate.db"] {
        assert!(data_dir.join(file).exists(), "{file} was not created");
    }
    let client = https_client(&data_dir, first.port());
    let base = format!("https://localhost:{}", first.port());
    let hello: Value = client
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hello, json!({"message": "Hello World"}));
    assert_eq!(
        login(&client, &base, "admin", &password).await,
        reqwest::StatusCode::OK
    );
    assert!(
        first.stop().success(),
        "taskgate did not exit cleanly on SIGTERM"
    );

    let second = serve(&data_dir, &[]);
    assert_eq!(
        second.printed_password(),
        None,
        "the password was printed again: {:#?}",
        second.output
    );
    let client = https_client(&data_dir, second.port());
    let base = format!("https://localhost:{}", second.port());
    assert_eq!(
        login(&client, &base, "admin", &password).await,
        reqwest::StatusCode::OK
    );
    assert!(second.stop().success());
}

#[tokio::test]
async fn a_configured_admin_password_is_used_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "an operator chosen passphrase";
    let running = serve(
        dir.path(),
        &[
            ("TASKGATE_TLS", "off"),
            ("TASKGATE_ADMIN_USERNAME", "Root"),
            ("TASKGATE_ADMIN_PASSWORD", secret),
        ],
    );
    assert!(
        running.url.starts_with("http://"),
        "TASKGATE_TLS=off still served {}",
        running.url
    );
    assert!(
        !running.output.iter().any(|l| l.contains(secret)),
        "the password was printed: {:#?}",
        running.output
    );
    assert!(
        !dir.path().join("tls-cert.pem").exists(),
        "a certificate was generated with TLS off"
    );
    let client = reqwest::Client::new();
    assert_eq!(
        login(&client, &running.url, "root", secret).await,
        reqwest::StatusCode::OK
    );
    running.stop();
}

#[test]
fn bad_settings_stop_the_server_with_a_message_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("TASKGATE_STORE", "postgres"),
        ("TASKGATE_TLS", "yes"),
        ("TASKGATE_ADDR", "localhost"),
        ("TASKGATE_TOKEN_TTL_SECONDS", "0"),
        ("TASKGATE_REGISTRATION", "public"),
        ("TASKGATE_ADMIN_PASSWORD", "short"),
    ] {
        let output = taskgate(dir.path(), &[(name, value)]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}={value} was accepted");
        assert!(
            stderr.contains(name),
            "{name}={value}: the message does not name it: {stderr}"
        );
    }
}

#[tokio::test]
async fn passwords_and_tokens_never_reach_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let admin_password = "operator passphrase for the log test";
    let running = serve(
        dir.path(),
        &[
            ("TASKGATE_TLS", "off"),
            ("TASKGATE_ADMIN_PASSWORD", admin_password),
            ("TASKGATE_LOG", "debug"),
        ],
    );
    let client = reqwest::Client::new();
    let base = running.url.clone();
    let response: Value = client
        .post(format!("{base}/auth"))
        .json(&json!({"username": "admin", "password": admin_password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = response["token"].as_str().unwrap().to_owned();
    let new_password = "a brand new user passphrase";
    let wrong_password = "a wrong guess at the passphrase";
    let created = client
        .post(format!("{base}/users"))
        .bearer_auth(&token)
        .json(&json!({"username": "alice", "password": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    assert_eq!(
        login(&client, &base, "alice", wrong_password).await,
        reqwest::StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&client, &base, "alice", new_password).await,
        reqwest::StatusCode::OK
    );
    // A malformed token, echoed nowhere either.
    let forged = format!("{token}x");
    client
        .get(format!("{base}/"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    let later = Arc::clone(&running.later);
    assert!(running.stop().success());

    let mut logs = later.lock().unwrap().clone();
    assert!(
        logs.iter().any(|l| l.contains("login")),
        "the logins were not logged at all: {logs:#?}"
    );
    logs.retain(|line| {
        line.contains(admin_password)
            || line.contains(new_password)
            || line.contains(wrong_password)
            || line.contains(&token)
            || line.contains(token.split('.').nth(2).unwrap())
            || line.contains("argon2id")
    });
    assert!(logs.is_empty(), "secrets in the logs: {logs:#?}");
}
