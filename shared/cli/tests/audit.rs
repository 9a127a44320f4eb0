//! `taskgate audit` as an operator runs it, on the embedded store: a sound
//! log passes; a deliberately corrupted one is caught, each kind of damage
//! with its own message, and the command exits non-zero.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{login, serve, token};
use serde_json::{Value, json};

const PASSWORD: &str = "operator passphrase for audits";

fn audit(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_taskgate"))
        .arg("audit")
        .args(args)
        .env_clear()
        .env("TASKGATE_DATA_DIR", data_dir)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn finished(client: &reqwest::Client, base: &str, token: &str, id: &str) -> Value {
    for _ in 0..200 {
        let task: Value = client
            .get(format!("{base}/tasks/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ["succeeded", "failed", "cancelled"].contains(&task["status"].as_str().unwrap()) {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {id} did not finish");
}

/// Runs a server, starts three tasks (two delays, one script), waits for
/// them, stops the server. Returns the task ids.
async fn make_history(data_dir: &Path) -> Vec<String> {
    let running = serve(
        data_dir,
        &[
            ("TASKGATE_TLS", "off"),
            ("TASKGATE_ADMIN_PASSWORD", PASSWORD),
        ],
    );
    let client = reqwest::Client::new();
    let base = running.url.clone();
    let token = token(&client, &base, "admin", PASSWORD).await;
    let mut ids = Vec::new();
    for body in [
        json!({"type": "delay", "seconds": 0}),
        json!({"type": "delay", "seconds": 0.2}),
        json!({"type": "js", "code": "[1, 2, 3].length"}),
    ] {
        let task: Value = client
            .post(format!("{base}/tasks"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let task = finished(&client, &base, &token, id).await;
        assert_eq!(task["status"], "succeeded", "{task}");
    }
    assert!(running.stop().success());
    ids
}

/// Edits the stored JSON of one event directly in the database file.
fn tamper(data_dir: &Path, task: &str, seq: i64, change: impl FnOnce(&mut Value)) {
    let db = rusqlite::Connection::open(data_dir.join("taskgate.db")).unwrap();
    let item: String = db
        .query_row(
            "SELECT item FROM task_events WHERE task_id = ?1 AND seq = ?2",
            rusqlite::params![task, seq],
            |row| row.get(0),
        )
        .unwrap();
    let mut event: Value = serde_json::from_str(&item).unwrap();
    change(&mut event);
    db.execute(
        "UPDATE task_events SET item = ?3 WHERE task_id = ?1 AND seq = ?2",
        rusqlite::params![task, seq, event.to_string()],
    )
    .unwrap();
}

#[tokio::test]
async fn audit_verify_passes_a_sound_log_and_catches_each_kind_of_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let ids = make_history(dir.path()).await;

    let (code, stdout, stderr) = audit(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("checked 3 tasks, 9 events: the log is sound"),
        "{stdout}"
    );

    // 1. The result of a finished task is edited.
    tamper(dir.path(), &ids[0], 3, |event| {
        event["data"]["result"] = json!(42)
    });
    // 2. An event disappears from the middle of a log.
    let db = rusqlite::Connection::open(dir.path().join("taskgate.db")).unwrap();
    db.execute(
        "DELETE FROM task_events WHERE task_id = ?1 AND seq = 2",
        [&ids[1]],
    )
    .unwrap();
    // 3. A second outcome is appended after the first, with a valid hash chain.
    let last: String = db
        .query_row(
            "SELECT item FROM task_events WHERE task_id = ?1 AND seq = 3",
            [&ids[2]],
            |row| row.get(0),
        )
        .unwrap();
    let last: taskgate_domain::task::TaskEvent = serde_json::from_str(&last).unwrap();
    let extra = last.next(
        taskgate_domain::now(),
        None,
        taskgate_domain::task::EventData::Cancelled {
            by: taskgate_domain::user::Username::parse("mallory").unwrap(),
        },
    );
    db.execute(
        "INSERT INTO task_events (task_id, seq, item) VALUES (?1, 4, ?2)",
        rusqlite::params![ids[2], serde_json::to_string(&extra).unwrap()],
    )
    .unwrap();
    drop(db);

    let (code, stdout, stderr) = audit(dir.path(), &["verify"]);
    assert_eq!(code, 1, "verify did not fail: {stdout}{stderr}");
    let line = |task: &str, text: &str| {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("task {task}: ")) && l.contains(text)),
            "no line about {text:?} for {task}:\n{stdout}"
        );
    };
    line(&ids[0], "hash does not match");
    line(&ids[1], "a gap or a duplicate");
    line(&ids[2], "second terminal event");
    assert!(stdout.contains("problems in 3 tasks"), "{stdout}");
}

#[tokio::test]
async fn audit_replay_shows_a_tasks_state_now_and_at_a_past_time() {
    let dir = tempfile::tempdir().unwrap();
    let ids = make_history(dir.path()).await;
    let (code, stdout, stderr) = audit(dir.path(), &["replay", &ids[2]]);
    assert_eq!(code, 0, "{stderr}");
    let replay: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(replay["state"]["status"], "succeeded");
    assert_eq!(replay["state"]["result"], 3);
    assert_eq!(replay["events"].as_array().unwrap().len(), 3);

    // The 0.2 s delay as it was when it started: `created` and `started` may
    // share a millisecond, but its outcome came 200 ms later.
    let (code, stdout, _) = audit(dir.path(), &["replay", &ids[1]]);
    assert_eq!(code, 0);
    let delay: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(delay["state"]["status"], "succeeded", "{delay}");
    let started_at = delay["events"][1]["at"].as_str().unwrap().to_owned();
    let (code, stdout, _) = audit(dir.path(), &["replay", &ids[1], "--at", &started_at]);
    assert_eq!(code, 0);
    let then: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(then["state"]["status"], "running", "{then}");
    assert_eq!(then["events"].as_array().unwrap().len(), 2, "{then}");

    let (code, _, stderr) = audit(dir.path(), &["replay", "not-a-task"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("is not a task id"), "{stderr}");
    let (code, _, stderr) = audit(dir.path(), &["replay", &ids[2], "--at", "yesterday"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("RFC 3339"), "{stderr}");
}

#[test]
fn auditing_a_missing_store_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = audit(dir.path(), &["verify"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("there is no embedded store"), "{stderr}");
    assert!(
        !dir.path().join("taskgate.db").exists(),
        "the audit created a database"
    );
}

/// `taskgate audit security` prints the security log newest first, one JSON
/// object per line, and filters by subject and kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_security_prints_the_security_log() {
    let data_dir = tempfile::tempdir().unwrap();
    let running = serve(
        data_dir.path(),
        &[
            ("TASKGATE_TLS", "off"),
            ("TASKGATE_ADMIN_PASSWORD", PASSWORD),
            ("TASKGATE_LOGIN_FREE_FAILURES", "2"),
        ],
    );
    let client = reqwest::Client::new();
    let base = running.url.clone();
    for _ in 0..3 {
        let status = login(&client, &base, "mallory", "guessing, guessing").await;
        assert_ne!(status, 200);
    }
    token(&client, &base, "admin", PASSWORD).await;
    running.stop();

    let lines = |stdout: &str| -> Vec<Value> {
        stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let (code, stdout, stderr) = audit(data_dir.path(), &["security"]);
    assert_eq!(code, 0, "{stderr}");
    let kinds: Vec<String> = lines(&stdout)
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap(),
                e["subject"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "login-succeeded admin",
            "login-locked mallory",
            "login-failed mallory",
            "login-failed mallory"
        ]
    );
    assert!(
        !stdout.contains(PASSWORD) && !stdout.contains("guessing"),
        "{stdout}"
    );

    let (code, stdout, _) = audit(
        data_dir.path(),
        &[
            "security",
            "--subject",
            "Mallory",
            "--kind",
            "login-failed",
            "--limit",
            "1",
        ],
    );
    assert_eq!(code, 0);
    let events = lines(&stdout);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["kind"], "login-failed");
    assert_eq!(events[0]["detail"]["failures"], 2, "the newest first");

    let (code, _, stderr) = audit(data_dir.path(), &["security", "--kind", "login"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("login-failed"), "{stderr}");
}

/// Projects and items: `verify` checks their logs and that every stored
/// row is exactly what its log folds to, so a row edited behind the log's
/// back, or a log entry edited, is caught; `replay` shows an item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_rebuilds_every_project_row_from_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let running = serve(
        dir.path(),
        &[
            ("TASKGATE_TLS", "off"),
            ("TASKGATE_ADMIN_PASSWORD", PASSWORD),
        ],
    );
    let client = reqwest::Client::new();
    let base = running.url.clone();
    let admin = token(&client, &base, "admin", PASSWORD).await;
    let project: Value = client
        .post(format!("{base}/projects"))
        .bearer_auth(&admin)
        .json(&json!({"name": "Launch"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let project = project["id"].as_str().unwrap().to_owned();
    let item: Value = client
        .post(format!("{base}/projects/{project}/items"))
        .bearer_auth(&admin)
        .json(&json!({"title": "Write the report", "assignee": "admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = item["id"].as_str().unwrap().to_owned();
    let edited = client
        .patch(format!("{base}/projects/{project}/items/{item}"))
        .bearer_auth(&admin)
        .json(&json!({"status": "completed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), 200);
    drop(running);

    let (code, stdout, stderr) = audit(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("checked 1 projects, 1 items, 3 entries: every log is sound and every row is its log's fold"),
        "{stdout}"
    );
    let (code, stdout, _) = audit(dir.path(), &["replay", &item]);
    assert_eq!(code, 0);
    let replay: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(replay["state"]["status"], "completed");
    assert_eq!(replay["events"].as_array().unwrap().len(), 2);

    // A row changed behind its log's back.
    let db = rusqlite::Connection::open(dir.path().join("taskgate.db")).unwrap();
    db.execute(
        "UPDATE items SET row = json_set(row, '$.title', 'Rewritten') WHERE item_id = ?1",
        [&item],
    )
    .unwrap();
    // A log entry edited (the append-only trigger dropped first).
    db.execute_batch("DROP TRIGGER project_log_no_update")
        .unwrap();
    db.execute(
        "UPDATE project_log SET entry = json_set(entry, '$.data.name', 'Renamed') WHERE project_id = ?1 AND seq = 1",
        [&project],
    )
    .unwrap();
    drop(db);
    let (code, stdout, _) = audit(dir.path(), &["verify"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "item {item}: its stored row is not the fold of its log"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "project {project}: entry 1's hash does not match its content"
        )),
        "{stdout}"
    );
}
