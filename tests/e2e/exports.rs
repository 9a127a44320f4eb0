//! Export tasks. Over HTTP on both stores: a project's items as CSV and
//! NDJSON and a zip of the caller's files, each followed to its file and
//! read back with a real CSV reader and a real zip reader; what the caller
//! may not export refused with nothing created; a cancel leaving no file.
//! Against the exporter itself on both blob adapters (the data directory
//! with SQLite, S3 on moto with DynamoDB Local): stopped or failed mid-way,
//! after whole S3 parts went up, nothing remains: no record, no bytes, no
//! multipart upload.

use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use taskgate_domain::file::{ContentType, FileName, FileStatus, StoredFile};
use taskgate_domain::ports::{BlobStore, ExportControl, ExportFailure, Exporter, Store};
use taskgate_domain::task::{Export, Status, StatusKind, Task, TaskSpec};
use taskgate_domain::user::User;
use taskgate_e2e::{Backend, TestApp, assert_problem, on_each_backend, status_and_json};

use crate::blob_store::Subject;
use crate::files::{create, kept, patch};

on_each_backend!(
    a_project_exports_as_csv_and_ndjson,
    a_zip_holds_the_callers_files,
    exports_of_what_the_caller_may_not_see_are_refused,
    a_cancelled_export_leaves_no_file,
    csv_cells_a_spreadsheet_would_run_are_written_as_text,
    a_reused_username_cannot_export_a_project_its_namesake_was_in,
    exports_stop_at_the_quota_and_run_at_most_two_at_a_time,
    a_third_export_at_once_is_429,
);

/// Bytes no compressor can shrink (xorshift), so a zip of them is as big.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Uploads `bytes` (in one PATCH) as a file named `name`; its id.
async fn upload(app: &TestApp, token: &str, name: &str, bytes: Vec<u8>) -> String {
    let response = crate::files::tus_request(app, Method::POST, "/files", token)
        .header("upload-length", bytes.len().to_string())
        .header(
            "upload-metadata",
            format!("filename {}", base64_of(name.as_bytes())),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let path = response.headers()["location"].to_str().unwrap().to_owned();
    let response = patch(app, token, &path, 0, bytes).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    path.trim_start_matches("/files/").to_owned()
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Starts an export and follows it to the end; the finished task.
async fn exported(app: &TestApp, token: &str, body: Value) -> Value {
    let task = app.start_task(token, body).await;
    assert_eq!(task["type"], "export");
    app.finished_task(token, task["id"].as_str().unwrap(), Duration::from_secs(60))
        .await
}

/// The export's file record and its bytes, checked against the result.
async fn result_file(app: &TestApp, token: &str, task: &Value) -> (Value, Vec<u8>) {
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["progress"], 1.0, "{task}");
    let result = &task["result"];
    let id = result["file"].as_str().unwrap();
    let (status, file) = status_and_json(app.get(&format!("/files/{id}"), Some(token)).await).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    assert_eq!(file["status"], "complete");
    assert_eq!(file["size"], result["size"]);
    assert_eq!(file["sha256"], result["sha256"]);
    let response = app.get(&format!("/files/{id}/content"), Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.unwrap().to_vec();
    assert_eq!(bytes.len() as u64, result["size"].as_u64().unwrap());
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        result["sha256"].as_str().unwrap()
    );
    (file, bytes)
}

async fn a_project_exports_as_csv_and_ndjson(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let (_, project) = status_and_json(
        app.send_json(
            Method::POST,
            "/projects",
            Some(&alice),
            &json!({"name": "Q4 / launch"}),
        )
        .await,
    )
    .await;
    let project_id = project["id"].as_str().unwrap();
    // A description with everything CSV must quote: commas, quotes, lines.
    let tricky = "first, \"quoted\"\nsecond line";
    let mut ids = Vec::new();
    for (title, extra) in [
        (
            "Write the plan",
            json!({"description": tricky, "due_date": "2026-12-01"}),
        ),
        (
            "Book the room",
            json!({"status": "in_progress", "assignee": "alice"}),
        ),
        ("Send invites", json!({})),
    ] {
        let mut body = extra.clone();
        body["title"] = json!(title);
        let (status, item) = status_and_json(
            app.send_json(
                Method::POST,
                &format!("/projects/{project_id}/items"),
                Some(&alice),
                &body,
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{item}");
        ids.push(item["id"].as_str().unwrap().to_owned());
    }

    let task = exported(
        &app,
        &alice,
        json!({"type": "export", "project": project_id, "format": "csv"}),
    )
    .await;
    let (file, bytes) = result_file(&app, &alice, &task).await;
    assert_eq!(file["name"], "Q4 _ launch.csv");
    assert_eq!(file["content_type"], "text/csv");
    assert_eq!(file["owner"], "alice");
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "id",
            "title",
            "description",
            "status",
            "due_date",
            "assignee",
            "created_by",
            "created_at",
            "updated_at",
            "version"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    // Oldest first, every field as the API shows it.
    assert_eq!(rows.iter().map(|r| &r[0]).collect::<Vec<_>>(), ids);
    assert_eq!(&rows[0][1], "Write the plan");
    assert_eq!(&rows[0][2], tricky);
    assert_eq!(&rows[0][4], "2026-12-01");
    assert_eq!(&rows[1][3], "in_progress");
    assert_eq!(&rows[1][5], "alice");
    assert_eq!(&rows[2][2], "");
    assert_eq!(&rows[2][6], "alice");

    let task = exported(
        &app,
        &alice,
        json!({"type": "export", "project": project_id, "format": "ndjson"}),
    )
    .await;
    let (file, bytes) = result_file(&app, &alice, &task).await;
    assert_eq!(file["name"], "Q4 _ launch.ndjson");
    assert_eq!(file["content_type"], "application/x-ndjson");
    let lines: Vec<Value> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // Each line is the item exactly as GET answers it.
    assert_eq!(lines.len(), 3);
    for (line, id) in lines.iter().zip(&ids) {
        let (_, item) = status_and_json(
            app.get(&format!("/projects/{project_id}/items/{id}"), Some(&alice))
                .await,
        )
        .await;
        assert_eq!(*line, item);
    }

    // The exports are alice's files, listed with the rest.
    let (_, files) = status_and_json(app.get("/files", Some(&alice)).await).await;
    assert_eq!(files["items"].as_array().unwrap().len(), 2);
    // Their events say what was asked, and the log stays sound.
    let events = app.task_events(&alice, task["id"].as_str().unwrap()).await;
    assert_eq!(
        events[0]["data"]["export"],
        json!({"format": "ndjson", "project": project_id})
    );
    assert_eq!(
        events
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["created", "started", "succeeded"]
    );
}

/// CSV injection (OWASP): a cell starting with `=`, `+`, `-`, `@`, a tab or
/// a carriage return gets a leading `'` in a csv export; NDJSON keeps the
/// value exactly.
async fn csv_cells_a_spreadsheet_would_run_are_written_as_text(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let (_, project) = status_and_json(
        app.send_json(
            Method::POST,
            "/projects",
            Some(&alice),
            &json!({"name": "Sheet"}),
        )
        .await,
    )
    .await;
    let project_id = project["id"].as_str().unwrap();
    let titles = [
        "=HYPERLINK(\"http://evil.example/\",\"click\")",
        "+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1+1)",
        "Plain title",
    ];
    for title in titles {
        let (status, item) = status_and_json(
            app.send_json(
                Method::POST,
                &format!("/projects/{project_id}/items"),
                Some(&alice),
                &json!({"title": title, "description": "\tindented=1"}),
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{item}");
    }
    let task = exported(
        &app,
        &alice,
        json!({"type": "export", "project": project_id, "format": "csv"}),
    )
    .await;
    let (_, bytes) = result_file(&app, &alice, &task).await;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let cells: Vec<(&str, &str)> = rows.iter().map(|r| (&r[1], &r[2])).collect();
    assert_eq!(
        cells,
        [
            (
                "'=HYPERLINK(\"http://evil.example/\",\"click\")",
                "'\tindented=1"
            ),
            ("'+cmd|' /C calc'!A0", "'\tindented=1"),
            ("'-2+3", "'\tindented=1"),
            ("'@SUM(1+1)", "'\tindented=1"),
            ("Plain title", "'\tindented=1"),
        ]
    );
    let task = exported(
        &app,
        &alice,
        json!({"type": "export", "project": project_id, "format": "ndjson"}),
    )
    .await;
    let (_, bytes) = result_file(&app, &alice, &task).await;
    let exact: Vec<String> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["title"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(exact, titles);
}

/// A member is an account, not a name. A user deleted while their
/// memberships are still there (the deletion died midway), then created
/// again under the same name, is not a member: starting an export of the
/// project is 404, as `GET /projects/{id}` is. (Export access once looked
/// at the username alone, and the new account downloaded the items.)
async fn a_reused_username_cannot_export_a_project_its_namesake_was_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    app.user_with_token(&admin, "victim", "user").await;
    let (_, project) = status_and_json(
        app.send_json(
            Method::POST,
            "/projects",
            Some(&alice),
            &json!({"name": "Secret"}),
        )
        .await,
    )
    .await;
    let project_id = project["id"].as_str().unwrap().to_owned();
    let (status, _) = status_and_json(
        app.send_json(
            Method::PUT,
            &format!("/projects/{project_id}/members/victim"),
            Some(&alice),
            &json!({"role": "member"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // The deletion dies after removing the user row: memberships remain.
    let store = app.store().await;
    let victim = store
        .get_user(&taskgate_domain::user::Username::parse("victim").unwrap())
        .await
        .unwrap()
        .unwrap();
    store.delete_user(&victim).await.unwrap();
    let reborn = app.user_with_token(&admin, "victim", "user").await;
    let (status, _) = status_and_json(
        app.get(&format!("/projects/{project_id}"), Some(&reborn))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_problem(
        app.send_json(
            Method::POST,
            "/tasks",
            Some(&reborn),
            &json!({"type": "export", "project": project_id, "format": "csv"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}

/// An export stops the moment it would pass its owner's quota (it once
/// wrote the whole file and failed only when its record was written: ten
/// exports wrote 380 MiB past a 64 MiB quota), and one account runs at most
/// `TASKGATE_MAX_ACTIVE_EXPORTS_PER_USER` (2) at a time: one more is 429.
async fn exports_stop_at_the_quota_and_run_at_most_two_at_a_time(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.api.files.user_quota_bytes = 16 << 20;
    })
    .await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let file = upload(&app, &alice, "big.bin", noise(10 << 20, 5)).await;
    // Two exports of it, at once: each would need 10 MiB, 6 MiB are left.
    let first = app
        .start_task(
            &alice,
            json!({"type": "export", "files": [file], "format": "zip"}),
        )
        .await;
    let second = app
        .start_task(
            &alice,
            json!({"type": "export", "files": [file], "format": "zip"}),
        )
        .await;
    // A third while they run is refused.
    let third = app
        .send_json(
            Method::POST,
            "/tasks",
            Some(&alice),
            &json!({"type": "export", "files": [file], "format": "zip"}),
        )
        .await;
    let third_status = third.status();
    for task in [&first, &second] {
        let done = app
            .finished_task(
                &alice,
                task["id"].as_str().unwrap(),
                Duration::from_secs(60),
            )
            .await;
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(done["error"]["code"], "quota-exceeded", "{done}");
        assert!(
            done["error"]["message"]
                .as_str()
                .unwrap()
                .contains("6291456 bytes were left"),
            "{done}"
        );
    }
    // Unless both had already ended (they are fast), the third was 429.
    if third_status != StatusCode::ACCEPTED {
        assert_problem(third, StatusCode::TOO_MANY_REQUESTS, "quota-exceeded").await;
    }
    // With both ended, exports start again; nothing of the failed ones is kept.
    let (_, files) = status_and_json(app.get("/files", Some(&alice)).await).await;
    assert_eq!(files["items"].as_array().unwrap().len(), 1, "{files}");
    let fourth = app
        .send_json(
            Method::POST,
            "/tasks",
            Some(&alice),
            &json!({"type": "export", "files": [file], "format": "zip"}),
        )
        .await;
    assert_eq!(fourth.status(), StatusCode::ACCEPTED);
}

/// Two exports at a time per account: a third, while two are pending or
/// running, is 429 `quota-exceeded`, on both stores (the count is kept with
/// the tasks' own, race-safe).
async fn a_third_export_at_once_is_429(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let (_, project) = status_and_json(
        app.send_json(
            Method::POST,
            "/projects",
            Some(&alice),
            &json!({"name": "P"}),
        )
        .await,
    )
    .await;
    let store = app.store().await;
    let owner = store
        .get_user(&taskgate_domain::user::Username::parse("alice").unwrap())
        .await
        .unwrap()
        .unwrap();
    // Two exports recorded but not yet run (as a busy engine leaves them).
    let recorder =
        taskgate_domain::recorder::Recorder::new(store.clone()).with_max_active_exports(2);
    let spec = taskgate_domain::task::TaskSpec::Export(taskgate_domain::task::Export::Csv {
        project: taskgate_domain::project::ProjectId::parse(project["id"].as_str().unwrap())
            .unwrap(),
    });
    for _ in 0..2 {
        recorder.create(&spec, &owner, 100).await.unwrap();
    }
    assert_problem(
        app.send_json(
            Method::POST,
            "/tasks",
            Some(&alice),
            &json!({"type": "export", "project": project["id"], "format": "csv"}),
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "quota-exceeded",
    )
    .await;
    // Other tasks are not exports: they still start.
    app.start_task(&alice, json!({"type": "delay", "seconds": 0}))
        .await;
}

async fn a_zip_holds_the_callers_files(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let notes = b"meeting at noon\n".repeat(1000);
    let data = noise(3 * 1024 * 1024 + 17, 7);
    let a = upload(&app, &alice, "notes.txt", notes.clone()).await;
    let b = upload(&app, &alice, "data.bin", data.clone()).await;
    let c = upload(&app, &alice, "notes.txt", b"second notes".to_vec()).await;

    let task = exported(
        &app,
        &alice,
        json!({"type": "export", "files": [a, b, c], "format": "zip"}),
    )
    .await;
    let (file, bytes) = result_file(&app, &alice, &task).await;
    assert_eq!(file["content_type"], "application/zip");
    assert!(file["name"].as_str().unwrap().ends_with(".zip"), "{file}");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut found = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        found.push((entry.name().unwrap().to_string(), content));
    }
    assert_eq!(
        found,
        [
            ("notes.txt".to_owned(), notes),
            ("data.bin".to_owned(), data),
            ("notes (2).txt".to_owned(), b"second notes".to_vec()),
        ]
    );
}

async fn exports_of_what_the_caller_may_not_see_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let bob = app.user_with_token(&admin, "bob", "user").await;
    let (_, project) = status_and_json(
        app.send_json(
            Method::POST,
            "/projects",
            Some(&alice),
            &json!({"name": "secret"}),
        )
        .await,
    )
    .await;
    let project_id = project["id"].as_str().unwrap();
    let alices = upload(&app, &alice, "mine.txt", b"alice's".to_vec()).await;
    let unfinished = create(&app, &alice, 100).await;
    let unfinished = unfinished.trim_start_matches("/files/");
    let missing = "019a8f3c-5d2e-7b41-9c0a-3e5f7a9b1c2d";

    let start = |token: &str, body: Value| {
        let token = token.to_owned();
        let app = &app;
        async move {
            app.send_json(Method::POST, "/tasks", Some(&token), &body)
                .await
        }
    };
    // Not a member: the project's existence is not revealed.
    let problem = assert_problem(
        start(
            &bob,
            json!({"type": "export", "project": project_id, "format": "csv"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert!(!problem.to_string().contains("secret"), "{problem}");
    // A global admin sees it, but exporting is for members.
    assert_problem(
        start(
            &admin,
            json!({"type": "export", "project": project_id, "format": "ndjson"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        start(
            &alice,
            json!({"type": "export", "project": missing, "format": "csv"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    // Someone else's file, a missing one, one still uploading.
    assert_problem(
        start(
            &bob,
            json!({"type": "export", "files": [alices], "format": "zip"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        start(
            &alice,
            json!({"type": "export", "files": [alices, missing], "format": "zip"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_problem(
        start(
            &alice,
            json!({"type": "export", "files": [unfinished], "format": "zip"}),
        )
        .await,
        StatusCode::CONFLICT,
        "file-incomplete",
    )
    .await;
    // Malformed bodies: each field named.
    for (body, field) in [
        (json!({"type": "export", "project": project_id}), "format"),
        (
            json!({"type": "export", "project": project_id, "format": "pdf"}),
            "format",
        ),
        (
            json!({"type": "export", "project": project_id, "format": "zip"}),
            "project",
        ),
        (
            json!({"type": "export", "files": [alices], "format": "csv"}),
            "files",
        ),
        (
            json!({"type": "export", "files": [], "format": "zip"}),
            "files",
        ),
        (
            json!({"type": "export", "files": [alices, alices], "format": "zip"}),
            "files",
        ),
        (
            json!({"type": "export", "files": ["nope"], "format": "zip"}),
            "files",
        ),
        (
            json!({"type": "export", "project": "nope", "format": "csv"}),
            "project",
        ),
        (
            json!({"type": "export", "project": project_id, "format": "csv", "seconds": 1}),
            "seconds",
        ),
        (
            json!({"type": "delay", "seconds": 1, "format": "csv"}),
            "format",
        ),
    ] {
        let problem = assert_problem(
            start(&alice, body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        )
        .await;
        assert!(
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{body}: {problem}"
        );
    }
    // Nothing was started and no file made.
    for token in [&alice, &bob, &admin] {
        let (_, tasks) = status_and_json(app.get("/tasks", Some(token)).await).await;
        assert_eq!(tasks["items"], json!([]), "{tasks}");
    }
    let (_, files) = status_and_json(app.get("/files", Some(&alice)).await).await;
    assert_eq!(files["items"].as_array().unwrap().len(), 2);
}

async fn a_cancelled_export_leaves_no_file(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let big = upload(&app, &alice, "big.bin", noise(48 * 1024 * 1024, 3)).await;
    let before = kept(&app);
    let task = app
        .start_task(
            &alice,
            json!({"type": "export", "files": [big], "format": "zip"}),
        )
        .await;
    let id = task["id"].as_str().unwrap();
    let response = app
        .request(Method::POST, &format!("/tasks/{id}/cancel"), Some(&alice))
        .send()
        .await
        .unwrap();
    let (status, cancelled) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    // The run stops soon after; then nothing of its file is anywhere.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.server().engine().running() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the export did not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(kept(&app), before);
    let (_, files) = status_and_json(app.get("/files", Some(&alice)).await).await;
    assert_eq!(files["items"].as_array().unwrap().len(), 1, "{files}");
    let (_, task) = status_and_json(app.get(&format!("/tasks/{id}"), Some(&alice)).await).await;
    assert_eq!(task["status"], "cancelled");
    assert!(task.get("result").is_none());
}

/// A control that stops the export once it reported progress `times` times
/// (or never), recording what it was told.
/// When it stops, it lists what the blob store holds at that moment.
struct StopAfter<'a> {
    times: Option<usize>,
    reports: AtomicUsize,
    fractions: std::sync::Mutex<Vec<f64>>,
    subject: Option<&'a Subject>,
    held_at_stop: std::sync::Mutex<Vec<String>>,
}

impl<'a> StopAfter<'a> {
    fn new(times: Option<usize>) -> Self {
        Self {
            times,
            reports: AtomicUsize::new(0),
            fractions: std::sync::Mutex::default(),
            subject: None,
            held_at_stop: std::sync::Mutex::default(),
        }
    }

    fn watching(mut self, subject: &'a Subject) -> Self {
        self.subject = Some(subject);
        self
    }
}

#[async_trait]
impl ExportControl for StopAfter<'_> {
    async fn progress(&self, fraction: f64) {
        self.reports.fetch_add(1, Ordering::SeqCst);
        self.fractions.lock().unwrap().push(fraction);
    }

    async fn stopped(&self) -> bool {
        let stop = self
            .times
            .is_some_and(|times| self.reports.load(Ordering::SeqCst) >= times);
        if let (true, Some(subject)) = (stop, self.subject) {
            *self.held_at_stop.lock().unwrap() = (subject.leftovers)().await;
        }
        stop
    }
}

/// A complete file of alice's with `bytes`, straight through the ports.
async fn stored(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    alice: &User,
    name: &str,
    bytes: Vec<u8>,
) -> StoredFile {
    let now = time::OffsetDateTime::now_utc();
    let mut file = StoredFile::new_upload(
        alice,
        FileName::parse(name).unwrap(),
        ContentType::octet_stream(),
        bytes.len() as u64,
        now,
        now + Duration::from_secs(3600),
        Value::Null,
    );
    file.blob = blobs.start(&file.id).await.unwrap();
    let size = bytes.len() as u64;
    let body = Box::pin(futures_util::stream::iter([Ok::<_, std::io::Error>(
        Bytes::from(bytes.clone()),
    )]));
    let appended = blobs
        .append(&file.id, &file.blob, 0, body, size)
        .await
        .unwrap();
    blobs
        .commit(&file.id, &file.blob, &appended.state)
        .await
        .unwrap();
    blobs.finish(&file.id, &appended.state, size).await.unwrap();
    file.blob = appended.state;
    file.offset = size;
    file.status = FileStatus::Complete;
    file.sha256 = Some(hex::encode(Sha256::digest(&bytes)));
    file.expires_at = None;
    file.digest_state = None;
    store.insert_file(&file, u64::MAX, u64::MAX).await.unwrap();
    file
}

fn zip_task(alice: &User, files: Vec<taskgate_domain::file::FileId>) -> Task {
    let event = taskgate_domain::task::TaskEvent::first(
        taskgate_domain::task::TaskId::new(),
        time::OffsetDateTime::now_utc(),
        Some(alice.username.clone()),
        taskgate_domain::task::EventData::Created(taskgate_domain::task::TaskCreated {
            spec: TaskSpec::Export(Export::files(files).unwrap()),
            owner: alice.username.clone(),
            owner_id: alice.user_id,
            owner_level: alice.level,
            due_at: None,
            engine: None,
        }),
    );
    taskgate_domain::task::fold(&[event]).unwrap()
}

/// Exports on one adapter: stopped mid-way (after whole 5 MiB chunks went
/// out) and failed mid-way (the file grew past the largest allowed) each
/// leave exactly what was there before; a full run leaves one more file.
async fn exports_stop_and_fail_without_leftovers(store: Arc<dyn Store>, subject: Subject) {
    let blobs = subject.blobs.clone();
    let alice = taskgate_e2e::fixture_user("alice", taskgate_domain::user::Level::User);
    let source = stored(
        store.as_ref(),
        blobs.as_ref(),
        &alice,
        "big.bin",
        noise(16 * 1024 * 1024, 11),
    )
    .await;
    let before = (subject.leftovers)().await;
    let limits = taskgate_app::settings::FileLimits::default();
    let exporter = taskgate_app::export::StoreExporter::new(
        store.clone(),
        blobs.clone(),
        Arc::new(taskgate_domain::clock::SystemClock),
        limits.clone(),
    )
    .reporting_every_chunk();

    // Stopped once 12 MiB of the 16 have been read: two chunks are out.
    let task = zip_task(&alice, vec![source.id]);
    let control = StopAfter::new(Some(49)).watching(&subject);
    let outcome = exporter.export(&task, &control).await;
    assert_eq!(outcome, Err(ExportFailure::Stopped));
    // Mid-way, the export's bytes were there (on S3 a multipart upload with
    // two parts; on disk a partial file)...
    let held = control.held_at_stop.lock().unwrap().clone();
    let export_id = taskgate_app::export::export_file_id(&task.id).to_string();
    assert!(
        held.iter().any(|kept| kept.contains(&export_id)),
        "{held:?}"
    );
    // ...and after the stop none of them are.
    let fractions = control.fractions.lock().unwrap().clone();
    assert!(fractions.last().unwrap() > &0.7, "{fractions:?}");
    assert_eq!((subject.leftovers)().await, before);
    let export_id = taskgate_app::export::export_file_id(&task.id);
    assert_eq!(store.get_file(&export_id).await.unwrap(), None);

    // Failed mid-way: larger than the largest file allowed.
    let small = taskgate_app::export::StoreExporter::new(
        store.clone(),
        blobs.clone(),
        Arc::new(taskgate_domain::clock::SystemClock),
        taskgate_app::settings::FileLimits {
            max_file_bytes: 11 * 1024 * 1024,
            ..limits.clone()
        },
    );
    let task = zip_task(&alice, vec![source.id]);
    match small.export(&task, &StopAfter::new(None)).await {
        Err(ExportFailure::Failed(error)) => assert_eq!(error.code, "too-large", "{error:?}"),
        other => panic!("expected too-large, got {other:?}"),
    }
    assert_eq!((subject.leftovers)().await, before);

    // Over the quota: stopped as soon as it would pass it; nothing remains.
    let tight = taskgate_app::export::StoreExporter::new(
        store.clone(),
        blobs.clone(),
        Arc::new(taskgate_domain::clock::SystemClock),
        taskgate_app::settings::FileLimits {
            user_quota_bytes: 20 * 1024 * 1024,
            ..limits.clone()
        },
    );
    let task = zip_task(&alice, vec![source.id]);
    match tight.export(&task, &StopAfter::new(None)).await {
        Err(ExportFailure::Failed(error)) => assert_eq!(error.code, "quota-exceeded", "{error:?}"),
        other => panic!("expected quota-exceeded, got {other:?}"),
    }
    assert_eq!((subject.leftovers)().await, before);
    assert_eq!(
        store
            .get_file(&taskgate_app::export::export_file_id(&task.id))
            .await
            .unwrap(),
        None
    );

    // To the end: one new file, whose bytes are a zip of the source.
    let task = zip_task(&alice, vec![source.id]);
    let control = StopAfter::new(None);
    let result = exporter.export(&task, &control).await.unwrap();
    assert_eq!(control.fractions.lock().unwrap().last(), Some(&1.0));
    let id = taskgate_app::export::export_file_id(&task.id);
    assert_eq!(result["file"], id.to_string());
    let file = store.get_file(&id).await.unwrap().unwrap();
    assert!(file.is_complete());
    assert!(file.size > 16 * 1024 * 1024);
    assert_ne!((subject.leftovers)().await, before);
    // A cancel that won the race: discarding removes it all again.
    exporter.discard(&result).await;
    assert_eq!(store.get_file(&id).await.unwrap(), None);
    assert_eq!((subject.leftovers)().await, before);
}

#[tokio::test]
async fn exports_leave_nothing_behind_on_disk() {
    let store = Arc::new(taskgate_embedded::EmbeddedStore::in_memory().unwrap());
    exports_stop_and_fail_without_leftovers(store, crate::blob_store::disk()).await;
}

#[tokio::test]
async fn exports_leave_nothing_behind_on_s3() {
    let store = Arc::new(taskgate_e2e::dynamodb_store().await);
    exports_stop_and_fail_without_leftovers(store, crate::blob_store::s3().await).await;
}

/// A blob store that, after each append, says so and waits to be let on:
/// the test acts while an export is certainly mid-way.
struct Gate {
    inner: Arc<dyn BlobStore>,
    appended: tokio::sync::mpsc::UnboundedSender<()>,
    go_on: tokio::sync::Semaphore,
}

#[async_trait]
impl BlobStore for Gate {
    async fn start(
        &self,
        id: &taskgate_domain::file::FileId,
    ) -> Result<taskgate_domain::file::BlobState, taskgate_domain::ports::BlobError> {
        self.inner.start(id).await
    }

    async fn append(
        &self,
        id: &taskgate_domain::file::FileId,
        state: &taskgate_domain::file::BlobState,
        offset: u64,
        body: taskgate_domain::ports::ByteStream,
        max: u64,
    ) -> Result<taskgate_domain::ports::Appended, taskgate_domain::ports::BlobError> {
        let appended = self.inner.append(id, state, offset, body, max).await;
        let _ = self.appended.send(());
        self.go_on.acquire().await.unwrap().forget();
        appended
    }

    async fn commit(
        &self,
        id: &taskgate_domain::file::FileId,
        before: &taskgate_domain::file::BlobState,
        after: &taskgate_domain::file::BlobState,
    ) -> Result<(), taskgate_domain::ports::BlobError> {
        self.inner.commit(id, before, after).await
    }

    async fn rollback(
        &self,
        id: &taskgate_domain::file::FileId,
        before: &taskgate_domain::file::BlobState,
        pending: &taskgate_domain::file::BlobState,
    ) -> Result<(), taskgate_domain::ports::BlobError> {
        self.inner.rollback(id, before, pending).await
    }

    async fn finish(
        &self,
        id: &taskgate_domain::file::FileId,
        state: &taskgate_domain::file::BlobState,
        size: u64,
    ) -> Result<(), taskgate_domain::ports::BlobError> {
        self.inner.finish(id, state, size).await
    }

    async fn abort(
        &self,
        id: &taskgate_domain::file::FileId,
        state: &taskgate_domain::file::BlobState,
    ) -> Result<(), taskgate_domain::ports::BlobError> {
        self.inner.abort(id, state).await
    }

    async fn read(
        &self,
        id: &taskgate_domain::file::FileId,
        range: std::ops::Range<u64>,
        size: u64,
    ) -> Result<taskgate_domain::ports::ByteStream, taskgate_domain::ports::BlobError> {
        self.inner.read(id, range, size).await
    }

    async fn delete(
        &self,
        id: &taskgate_domain::file::FileId,
    ) -> Result<(), taskgate_domain::ports::BlobError> {
        self.inner.delete(id).await
    }
}

/// The state machine's export step on DynamoDB Local and moto's S3, fed
/// the payload the state machine sends: a run to the end recorded as
/// `succeeded` with its progress at 1; a cancel while the first S3 part is
/// up leaving nothing; a file deleted before the run failing it with a code
/// the record step keeps.
#[tokio::test]
async fn the_export_step_records_stops_on_cancel_and_fails_by_code_on_aws() {
    use taskgate_lambda::steps::{self, ExportInput, RecordInput};
    let store: Arc<dyn Store> = Arc::new(taskgate_e2e::dynamodb_store().await);
    let subject = crate::blob_store::s3().await;
    let recorder = taskgate_domain::recorder::Recorder::new(store.clone());
    let alice = taskgate_e2e::fixture_user("alice", taskgate_domain::user::Level::User);
    let source = stored(
        store.as_ref(),
        subject.blobs.as_ref(),
        &alice,
        "big.bin",
        noise(12 * 1024 * 1024, 5),
    )
    .await;
    let before = (subject.leftovers)().await;
    let (appended, mut appends) = tokio::sync::mpsc::unbounded_channel();
    let gate = Arc::new(Gate {
        inner: subject.blobs.clone(),
        appended,
        go_on: tokio::sync::Semaphore::new(0),
    });
    let exporter = Arc::new(taskgate_app::export::StoreExporter::new(
        store.clone(),
        gate.clone(),
        Arc::new(taskgate_domain::clock::SystemClock),
        taskgate_app::settings::FileLimits::default(),
    ));
    let start = |files: Vec<taskgate_domain::file::FileId>| {
        let (recorder, alice) = (recorder.clone(), alice.clone());
        async move {
            let spec = TaskSpec::Export(Export::files(files).unwrap());
            let task = recorder.create(&spec, &alice, u64::MAX).await.unwrap().0;
            recorder
                .started(&task.id, Some("execution".into()))
                .await
                .unwrap();
            task
        }
    };
    let input = |task: &Task| -> ExportInput {
        serde_json::from_value(json!({"task_id": task.id.to_string()})).unwrap()
    };

    // Cancelled while the first part is up: the step stops, nothing remains.
    let task = start(vec![source.id]).await;
    let run = tokio::spawn({
        let (recorder, exporter, input) = (recorder.clone(), exporter.clone(), input(&task));
        async move { steps::run_export(&recorder, exporter.as_ref(), input, Duration::ZERO).await }
    });
    appends.recv().await.unwrap();
    let export_id = taskgate_app::export::export_file_id(&task.id).to_string();
    let mid_way = (subject.leftovers)().await;
    assert!(
        mid_way
            .iter()
            .any(|kept| kept.starts_with("upload") && kept.contains(&export_id)),
        "no multipart upload mid-way: {mid_way:?}"
    );
    recorder.cancelled(&task.id, &alice.username).await.unwrap();
    gate.go_on.add_permits(100);
    let output = run.await.unwrap().unwrap();
    assert_eq!(output.status, StatusKind::Cancelled);
    assert_eq!(output.result, None);
    assert_eq!((subject.leftovers)().await, before);
    assert_eq!(
        store
            .get_file(&taskgate_app::export::export_file_id(&task.id))
            .await
            .unwrap(),
        None
    );

    // To the end: `succeeded` with the result, progress 1.
    let task = start(vec![source.id]).await;
    let output = steps::run_export(&recorder, exporter.as_ref(), input(&task), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(output.status, StatusKind::Succeeded);
    let (done, _) = recorder.load(&task.id).await.unwrap().unwrap();
    let Status::Succeeded { result, .. } = &done.status else {
        panic!("not succeeded: {:?}", done.status);
    };
    assert_eq!(Some(result), output.result.as_ref());
    assert_eq!(done.progress(time::OffsetDateTime::now_utc()), Some(1.0));
    assert_eq!(store.task_progress(&task.id).await.unwrap(), Some(1.0));
    let file = store
        .get_file(&taskgate_app::export::export_file_id(&task.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Some(json!(file.sha256)),
        output.result.map(|r| r["sha256"].clone())
    );
    // Running it again (a retried invocation) changes nothing.
    let again = steps::run_export(&recorder, exporter.as_ref(), input(&task), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((again.status, again.result), (StatusKind::Succeeded, None));

    // A file gone before the run: an error named by its code, which the
    // record step (the state machine's Catch) records as `failed`.
    let gone = stored(
        store.as_ref(),
        subject.blobs.as_ref(),
        &alice,
        "gone.txt",
        b"x".to_vec(),
    )
    .await;
    let task = start(vec![gone.id]).await;
    store.delete_file(&gone).await.unwrap();
    let error = steps::run_export(&recorder, exporter.as_ref(), input(&task), Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(error.error_type, "not-found");
    let caught = json!({
        "task_id": task.id.to_string(), "outcome": "failed", "error": error.error_type,
        "cause": json!({"errorType": error.error_type, "errorMessage": error.message}).to_string(),
    });
    steps::record(
        &recorder,
        serde_json::from_value::<RecordInput>(caught).unwrap(),
    )
    .await
    .unwrap();
    let (failed, _) = recorder.load(&task.id).await.unwrap().unwrap();
    let Status::Failed { error: failure, .. } = failed.status else {
        panic!("not failed: {:?}", failed.status);
    };
    assert_eq!(failure.code, "not-found");
    assert!(failure.message.contains("has no file"), "{failure:?}");
}

/// The upload reaper as the scheduled Lambda runs it, on DynamoDB Local and
/// moto's S3: an expired upload with a part and a staged remainder in S3 is
/// removed, record, multipart upload, staged object and quota usage; one
/// not yet expired, and one whose lease a PATCH still holds, stay.
#[tokio::test]
async fn expired_uploads_are_reaped_on_aws() {
    let store: Arc<dyn Store> = Arc::new(taskgate_e2e::dynamodb_store().await);
    let subject = crate::blob_store::s3().await;
    let blobs = subject.blobs.clone();
    let alice = taskgate_e2e::fixture_user("alice", taskgate_domain::user::Level::User);
    let now = time::OffsetDateTime::now_utc();
    let upload = |expires: time::OffsetDateTime, leased: bool| {
        let (store, blobs, alice) = (store.clone(), blobs.clone(), alice.clone());
        async move {
            let mut file = StoredFile::new_upload(
                &alice,
                FileName::parse("partial.bin").unwrap(),
                ContentType::octet_stream(),
                10 * 1024 * 1024,
                now - Duration::from_secs(7200),
                expires,
                Value::Null,
            );
            let started = blobs.start(&file.id).await.unwrap();
            let bytes = Bytes::from(noise(6 * 1024 * 1024, 9));
            let body = Box::pin(futures_util::stream::iter([Ok::<_, std::io::Error>(bytes)]));
            let appended = blobs
                .append(&file.id, &started, 0, body, 6 * 1024 * 1024)
                .await
                .unwrap();
            blobs
                .commit(&file.id, &started, &appended.state)
                .await
                .unwrap();
            file.blob = appended.state;
            file.offset = 6 * 1024 * 1024;
            if leased {
                file.lease_until = Some(now + Duration::from_secs(600));
            }
            store.insert_file(&file, u64::MAX, u64::MAX).await.unwrap();
            file
        }
    };
    let expired = upload(now - Duration::from_secs(1), false).await;
    let fresh = upload(now + Duration::from_secs(3600), false).await;
    let busy = upload(now - Duration::from_secs(1), true).await;
    let held = (subject.leftovers)().await;
    let id = expired.id.to_string();
    assert!(
        held.iter()
            .any(|kept| kept.starts_with("upload") && kept.contains(&id)),
        "{held:?}"
    );
    assert!(
        held.iter()
            .any(|kept| kept.contains(&format!("uploads/{id}/"))),
        "{held:?}"
    );

    let removed = taskgate_app::uploads::reap_expired(store.as_ref(), blobs.as_ref(), now)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(store.get_file(&expired.id).await.unwrap(), None);
    assert!(store.get_file(&fresh.id).await.unwrap().is_some());
    assert!(store.get_file(&busy.id).await.unwrap().is_some());
    let left = (subject.leftovers)().await;
    assert!(!left.iter().any(|kept| kept.contains(&id)), "{left:?}");
    assert_eq!(
        store.used_bytes(&alice.user_id).await.unwrap(),
        2 * 10 * 1024 * 1024
    );
    // Nothing more to do until the lease ends.
    assert_eq!(
        taskgate_app::uploads::reap_expired(store.as_ref(), blobs.as_ref(), now)
            .await
            .unwrap(),
        0
    );
}
