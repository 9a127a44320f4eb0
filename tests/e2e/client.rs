//! The command-line client, driven as a person (or a script) drives it:
//! the `taskgate` binary run against a running local server over HTTPS
//! (its certificate found in the data directory), with its own config
//! directory. Login, watched tasks over the WebSocket, tables and `--json`,
//! one-line errors and exit codes, an upload cut off and resumed, an abort,
//! and downloads resumed with `Range`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use taskgate_e2e::{ADMIN_PASSWORD, Backend, TestApp, on_each_backend};
use tokio::io::AsyncWriteExt as _;

on_each_backend!(
    a_person_logs_in_watches_tasks_and_lists_items,
    uploads_resume_after_a_cut_and_downloads_resume,
);

/// The client as one user at one terminal-less shell: its config
/// directory, the server it talks to, where it runs.
struct Shell {
    config: tempfile::TempDir,
    work: tempfile::TempDir,
    server: String,
    data_dir: std::path::PathBuf,
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Shell {
    fn new(app: &TestApp) -> Self {
        Self {
            config: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
            server: app.url(""),
            data_dir: app.data_dir.path().to_owned(),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(taskgate_e2e::workspace_binary("taskgate"));
        command
            .args(args)
            .current_dir(self.work.path())
            .env("TASKGATE_CONFIG_DIR", self.config.path())
            .env("TASKGATE_URL", &self.server)
            // Where the client finds the local server's certificate.
            .env("TASKGATE_DATA_DIR", &self.data_dir)
            .env_remove("TASKGATE_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn run_with_input(&self, args: &[&str], input: &str) -> Ran {
        let mut child = self.command(args).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("taskgate {args:?} did not finish"))
            .unwrap();
        let ran = Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        // Never a stack trace or a panic, whatever happened.
        assert!(
            !ran.stderr.contains("panicked") && !ran.stderr.contains("RUST_BACKTRACE"),
            "{args:?}: {}",
            ran.stderr
        );
        ran
    }

    async fn run(&self, args: &[&str]) -> Ran {
        self.run_with_input(args, "").await
    }

    /// Runs a command that must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let ran = self.run(args).await;
        assert_eq!(ran.code, 0, "{args:?}: {}{}", ran.stdout, ran.stderr);
        ran.stdout
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.ok(&args).await;
        serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{args:?}: {out}"))
    }

    async fn login(&self) {
        let ran = self
            .run_with_input(
                &["login", "--username", "admin", "--password-stdin"],
                &format!("{ADMIN_PASSWORD}\n"),
            )
            .await;
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        assert!(ran.stderr.contains("logged in"), "{}", ran.stderr);
    }
}

async fn tls_app(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |config| config.tls = true).await
}

async fn a_person_logs_in_watches_tasks_and_lists_items(backend: Backend) {
    let app = tls_app(backend).await;
    let shell = Shell::new(&app);
    assert!(shell.server.starts_with("https://localhost:"));

    // Not logged in: exit 3, saying what to do.
    let ran = shell.run(&["tasks", "list"]).await;
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert!(ran.stderr.contains("taskgate login"), "{}", ran.stderr);
    // A wrong password: 3, one line from the problem.
    let ran = shell
        .run_with_input(
            &["login", "--username", "admin", "--password-stdin"],
            "not the password at all\n",
        )
        .await;
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert_eq!(ran.stderr.trim().lines().count(), 1, "{}", ran.stderr);

    shell.login().await;
    let credentials = shell.config.path().join("credentials.json");
    let mode = std::fs::metadata(&credentials)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the token file is readable by others");
    assert!(shell.ok(&["whoami"]).await.contains("admin (admin)"));

    // A watched delay: progress lines (no terminal, so no bar), then 0.
    let ran = shell
        .run(&["tasks", "start", "delay", "1.5", "--watch"])
        .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout.trim(), "0");
    assert!(ran.stderr.contains("running"), "{}", ran.stderr);
    assert!(
        !ran.stderr.contains('\u{1b}'),
        "escape codes without a terminal: {}",
        ran.stderr
    );

    // A watched script: its console lines and its value.
    let ran = shell
        .run(&[
            "tasks",
            "start",
            "js",
            "--code",
            "console.log('hi'); ({answer: 6 * 7})",
            "--watch",
        ])
        .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains("log: hi"), "{}", ran.stdout);
    assert!(ran.stdout.contains("\"answer\": 42"), "{}", ran.stdout);
    // One that throws: exit 1 and the error, in one line.
    let ran = shell
        .run(&[
            "tasks",
            "start",
            "js",
            "--code",
            "throw new Error('boom')",
            "--watch",
        ])
        .await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("script-error") && ran.stderr.contains("boom"),
        "{}",
        ran.stderr
    );
    // --json gives the API's own body.
    let task = shell
        .json(&["tasks", "start", "delay", "0", "--watch"])
        .await;
    assert_eq!(task["status"], "succeeded");
    let api_task: Value = app
        .client
        .get(app.url(&format!("/tasks/{}", task["id"].as_str().unwrap())))
        .bearer_auth(app.admin_token().await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(task, api_task);

    // A cancelled task: watching it says so and exits 1.
    let started = shell.json(&["tasks", "start", "delay", "60"]).await;
    let id = started["id"].as_str().unwrap();
    assert!(
        shell
            .ok(&["tasks", "cancel", id])
            .await
            .contains("cancelled")
    );
    let ran = shell.run(&["tasks", "watch", id]).await;
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("cancelled by admin"), "{}", ran.stderr);

    // Errors: not found is 4, invalid input 5, each one line.
    let ran = shell
        .run(&["tasks", "get", "019a8f3c-5d2e-7b41-9c0a-3e5f7a9b1c2d"])
        .await;
    assert_eq!(ran.code, 4, "{}", ran.stderr);
    assert_eq!(ran.stderr.trim().lines().count(), 1, "{}", ran.stderr);
    let ran = shell.run(&["tasks", "start", "delay", "1e9"]).await;
    assert_eq!(ran.code, 5, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("seconds must be at most"),
        "{}",
        ran.stderr
    );
    assert_eq!(ran.stderr.trim().lines().count(), 1, "{}", ran.stderr);
    let ran = shell.run(&["tasks", "frobnicate"]).await;
    assert_eq!(ran.code, 2);

    // Items, filtered, as a table and as JSON.
    let project = shell.json(&["projects", "create", "Launch"]).await;
    let project = project["id"].as_str().unwrap();
    for (title, extra) in [
        ("Book the room", vec!["--due", "2026-12-01"]),
        (
            "Send invites",
            vec!["--status", "in_progress", "--assignee", "admin"],
        ),
        ("Order cake", vec!["--status", "completed"]),
    ] {
        let mut args = vec!["items", "create", project, title];
        args.extend(extra);
        shell.ok(&args).await;
    }
    let table = shell
        .ok(&[
            "items",
            "list",
            project,
            "--status",
            "pending,in_progress",
            "--sort",
            "status",
        ])
        .await;
    assert!(
        table.contains("TITLE") && table.contains("Book the room"),
        "{table}"
    );
    assert!(
        table.contains("Send invites") && table.contains("in_progress"),
        "{table}"
    );
    assert!(!table.contains("Order cake"), "{table}");
    let listed = shell
        .json(&[
            "items",
            "list",
            project,
            "--status",
            "pending,in_progress",
            "--sort",
            "status",
        ])
        .await;
    let direct: Value = app
        .client
        .get(app.url(&format!(
            "/projects/{project}/items?status=pending,in_progress&sort=status"
        )))
        .bearer_auth(app.admin_token().await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, direct);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    let mine = shell.json(&["items", "list", "--assignee", "me"]).await;
    assert_eq!(mine["items"][0]["title"], "Send invites");

    // An export, watched to its file, then downloaded.
    let ran = shell
        .run(&[
            "tasks",
            "start",
            "export",
            "--project",
            project,
            "--format",
            "csv",
            "--watch",
        ])
        .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout.contains("taskgate files download"),
        "{}",
        ran.stdout
    );
    let file = ran
        .stdout
        .split("download ")
        .last()
        .unwrap()
        .trim()
        .to_owned();
    shell
        .ok(&["files", "download", &file, "-o", "items.csv"])
        .await;
    let csv = std::fs::read_to_string(shell.work.path().join("items.csv")).unwrap();
    assert!(
        csv.starts_with("id,title,") && csv.contains("Order cake"),
        "{csv}"
    );

    // Logging out revokes the token: the next command is 3.
    assert!(shell.ok(&["logout"]).await.contains("logged out"));
    let ran = shell.run(&["whoami"]).await;
    assert_eq!(ran.code, 3, "{}", ran.stderr);
}

fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The server's offset of the caller's one unfinished upload, if any.
async fn uploading_offset(app: &TestApp, token: &str) -> Option<u64> {
    let files: Value = app
        .client
        .get(app.url("/files"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    files["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["status"] == "uploading")
        .and_then(|f| f["offset"].as_u64())
}

/// Starts a slow upload of `path` and kills the client once the server has
/// `at_least` bytes of it: a connection cut, as far as the client knows.
async fn cut_upload(shell: &Shell, app: &TestApp, token: &str, path: &Path, at_least: u64) -> u64 {
    let mut child = shell
        .command(&[
            "files",
            "upload",
            path.to_str().unwrap(),
            "--chunk-size",
            "131072",
            "--limit-rate",
            "1048576",
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(offset) = uploading_offset(app, token).await
            && offset >= at_least
        {
            child.kill().await.unwrap();
            return offset;
        }
        assert!(Instant::now() < deadline, "the upload did not get going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the slow upload ended early"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn uploads_resume_after_a_cut_and_downloads_resume(backend: Backend) {
    let app = tls_app(backend).await;
    let shell = Shell::new(&app);
    shell.login().await;
    let token = app.admin_token().await;
    let content = noise(6 * 1024 * 1024 + 123);
    let path = shell.work.path().join("big.bin");
    std::fs::write(&path, &content).unwrap();

    // Cut off mid-way, then run again: it resumes where the server stopped.
    let cut = cut_upload(&shell, &app, &token, &path, 1024 * 1024).await;
    let ran = shell
        .run(&["files", "upload", path.to_str().unwrap()])
        .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let resumed_at: u64 = ran
        .stderr
        .split("resuming the upload of ")
        .nth(1)
        .and_then(|rest| rest.split(" at ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume: {}", ran.stderr));
    assert!(
        resumed_at >= cut,
        "resumed at {resumed_at}, the server had {cut}"
    );
    let sha = hex::encode(Sha256::digest(&content));
    assert!(ran.stdout.contains(&sha), "{}", ran.stdout);
    let files = shell.json(&["files", "list"]).await;
    let uploaded = &files["items"][0];
    assert_eq!(uploaded["status"], "complete");
    assert_eq!(uploaded["sha256"], sha.as_str());
    let id = uploaded["id"].as_str().unwrap().to_owned();

    // Another cut, then --abort: nothing of it remains.
    let other = shell.work.path().join("other.bin");
    std::fs::write(&other, noise(3 * 1024 * 1024)).unwrap();
    cut_upload(&shell, &app, &token, &other, 256 * 1024).await;
    assert!(
        shell
            .ok(&["files", "upload", other.to_str().unwrap(), "--abort"])
            .await
            .contains("nothing of it remains")
    );
    assert_eq!(uploading_offset(&app, &token).await, None);
    let ran = shell
        .run(&["files", "upload", other.to_str().unwrap(), "--abort"])
        .await;
    assert_eq!(ran.code, 4, "{}", ran.stderr);

    // A download, and one resumed from a part left behind.
    shell
        .ok(&["files", "download", &id, "-o", "copy.bin"])
        .await;
    assert_eq!(
        std::fs::read(shell.work.path().join("copy.bin")).unwrap(),
        content
    );
    std::fs::write(
        shell.work.path().join("again.bin.part"),
        &content[..1024 * 1024],
    )
    .unwrap();
    let ran = shell
        .run(&["files", "download", &id, "-o", "again.bin"])
        .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("resuming the download of big.bin at 1048576"),
        "{}",
        ran.stderr
    );
    assert_eq!(
        std::fs::read(shell.work.path().join("again.bin")).unwrap(),
        content
    );
    assert!(!shell.work.path().join("again.bin.part").exists());

    // rm, then the file is gone (4).
    shell.ok(&["files", "rm", &id]).await;
    let ran = shell.run(&["files", "get", &id]).await;
    assert_eq!(ran.code, 4, "{}", ran.stderr);
}
