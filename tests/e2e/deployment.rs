//! The AWS deployment, end to end on this machine (the emulation is
//! `taskgate_e2e::deployment`): the template's functions as their real
//! binaries, with the environment and the roles the template gives them,
//! the real state machine on moto's Step Functions engine invoking the
//! real step binaries, DynamoDB Local and moto's S3.
//!
//! One journey drives every route, every WebSocket route, the fan-out, the
//! reconciler, the reaper and each path of the state machine; every AWS
//! call each function makes is recorded on its way, and checked at the
//! end against that function's role, both ways: a call its role does not
//! allow is AccessDenied on AWS, a grant nothing used is more than it needs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use taskgate_domain::password::{Password, PasswordHasher};
use taskgate_domain::ports::UserStore;
use taskgate_domain::user::{Level, User, Username};
use taskgate_e2e::deployment::{Deployment, HttpAnswer, iam};
use taskgate_e2e::{ADMIN_PASSWORD, PASSWORD, dynamodb_endpoint};

fn moto_endpoint() -> String {
    std::env::var("TASKGATE_TEST_SFN_ENDPOINT")
        .expect("tests/run.sh starts moto and sets TASKGATE_TEST_SFN_ENDPOINT")
}

/// Grants no call of the journey uses, each with the reason it is kept:
/// (function, action, a part of the resource, why). Each is a path the
/// code takes only on a failure, a race or data the journey does not make.
const KEPT_GRANTS: &[(&str, &str, &str, &str)] = &[
    (
        "FilesCreateFunction",
        "dynamodb:DeleteItem",
        "-files",
        "a creation-with-upload whose first chunk fails is removed",
    ),
    (
        "FilesCreateFunction",
        "dynamodb:GetItem",
        "-files",
        "creation-with-upload re-reads the record when its first chunk's write races",
    ),
    (
        "FilesCreateFunction",
        "s3:AbortMultipartUpload",
        "/files/*",
        "a creation-with-upload whose first chunk fails leaves nothing",
    ),
    (
        "FilesCreateFunction",
        "s3:DeleteObject",
        "/*",
        "a creation-with-upload whose first chunk fails leaves nothing",
    ),
    (
        "FilesCreateFunction",
        "s3:GetObject",
        "/*",
        "a first chunk longer than a part reads back its staged remainder",
    ),
    (
        "FilesCreateFunction",
        "s3:PutObject",
        "/uploads/*",
        "a first chunk that does not fill a part is staged",
    ),
    (
        "FilesCreateFunction",
        "s3:ListBucket",
        "-files",
        "cleanup after a failed first chunk lists its staged objects",
    ),
    (
        "FilesPatchFunction",
        "s3:DeleteObject",
        "/files/*",
        "a chunk whose checksum fails (460) drops what it wrote",
    ),
    (
        "FilesPatchFunction",
        "s3:GetObject",
        "/files/*",
        "a resumed upload reads back the part it completes",
    ),
    (
        "FilesDeleteFunction",
        "s3:ListBucket",
        "-files",
        "an abort lists staged objects the state does not name (a crash between writes)",
    ),
    (
        "FilesDeleteFunction",
        "s3:DeleteObject",
        "/uploads/*",
        "an abort deletes the staged remainder (kept as state, not listed)",
    ),
    (
        "ItemsCreateFunction",
        "dynamodb:DeleteItem",
        "-security",
        "an Idempotency-Key claim is released when the request fails",
    ),
    (
        "ProjectsCreateFunction",
        "dynamodb:DeleteItem",
        "-security",
        "an Idempotency-Key claim is released when the request fails",
    ),
    (
        "TasksStartFunction",
        "dynamodb:DeleteItem",
        "-security",
        "an Idempotency-Key claim is released when the request fails",
    ),
    (
        "MembersPutFunction",
        "dynamodb:DeleteItem",
        "-projects",
        "an owner's membership row replaced during an ownership hand-over",
    ),
    (
        "RealtimeDefaultFunction",
        "dynamodb:DeleteItem",
        "-connections",
        "a connection whose token was revoked is forgotten",
    ),
    (
        "RealtimeDefaultFunction",
        "execute-api:ManageConnections",
        "/DELETE/",
        "a connection whose token was revoked is closed (4401)",
    ),
    (
        "RealtimeDefaultFunction",
        "dynamodb:GetItem",
        "-task-events",
        "a running export's progress, in a task replay",
    ),
    (
        "RealtimeFanOutFunction",
        "dynamodb:DeleteItem",
        "-connections",
        "a connection gone (410) or revoked is forgotten",
    ),
    (
        "RealtimeFanOutFunction",
        "execute-api:ManageConnections",
        "/DELETE/",
        "a connection whose token was revoked is closed",
    ),
    (
        "RealtimeFanOutFunction",
        "dynamodb:GetItem",
        "-task-events",
        "a running export's progress in a task's state",
    ),
    (
        "RealtimeFanOutFunction",
        "dynamodb:Query",
        "-connections",
        "connections subscribed by topic, past the first page",
    ),
    (
        "RealtimeFanOutFunction",
        "dynamodb:Query",
        "/index/project-feed",
        "a project event's state, read from the feed when the record is partial",
    ),
    (
        "StepExportFunction",
        "dynamodb:DeleteItem",
        "-files",
        "an export whose success a cancel beat removes its file",
    ),
    (
        "StepExportFunction",
        "s3:DeleteObject",
        "/files/*",
        "an export whose success a cancel beat removes its file",
    ),
    (
        "StepRecordFunction",
        "dynamodb:GetItem",
        "-task-events",
        "a running export's progress, when the record step loads the task",
    ),
    (
        "TaskReconcilerFunction",
        "dynamodb:GetItem",
        "-task-events",
        "a running export's progress, when the reconciler loads the task",
    ),
    (
        "TasksEventsFunction",
        "dynamodb:GetItem",
        "-task-events",
        "a running export's progress",
    ),
    (
        "TasksListFunction",
        "dynamodb:GetItem",
        "-task-events",
        "running exports' progress in a listing",
    ),
    (
        "UploadReaperFunction",
        "dynamodb:GetItem",
        "-files",
        "an expired upload re-read when its removal races a PATCH",
    ),
    (
        "UploadReaperFunction",
        "s3:DeleteObject",
        "/files/*",
        "an expired upload whose last part completed before it expired",
    ),
];

fn ok(answer: &HttpAnswer, status: u16, what: &str) -> Value {
    assert_eq!(
        answer.status,
        status,
        "{what} ({}): {}",
        answer.function,
        String::from_utf8_lossy(&answer.body)
    );
    if answer.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
    }
}

async fn login(d: &Deployment, username: &str, password: &str) -> String {
    let answer = d
        .http(
            "POST",
            "/auth",
            &[("content-type", "application/json")],
            Some(
                json!({"username": username, "password": password})
                    .to_string()
                    .as_bytes(),
            ),
        )
        .await;
    ok(&answer, 200, "login")["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until the task reaches a terminal status, as `GET /tasks/{id}`
/// shows it, and returns it.
async fn settled(d: &Deployment, token: &str, id: &str, limit: Duration) -> Value {
    let begun = Instant::now();
    loop {
        let task = call(d, 200, "task", "GET", &format!("/tasks/{id}"), token, None).await;
        if ["succeeded", "failed", "cancelled"].contains(&task["status"].as_str().unwrap()) {
            return task;
        }
        assert!(
            begun.elapsed() < limit,
            "task {id} still {} after {limit:?}: {task}\nstep logs:\n{}\n{}\n{}",
            task["status"],
            d.log_of("StepRecordFunction").await,
            d.log_of("StepJsFunction").await,
            d.log_of("StepExportFunction").await,
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the task's status is `status`.
async fn reaches(d: &Deployment, token: &str, id: &str, status: &str) -> Value {
    let begun = Instant::now();
    loop {
        let task = call(d, 200, "task", "GET", &format!("/tasks/{id}"), token, None).await;
        if task["status"] == status {
            return task;
        }
        assert!(begun.elapsed() < Duration::from_secs(30), "{task}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start(d: &Deployment, token: &str, body: Value) -> String {
    let answer = d.api("POST", "/tasks", token, Some(body.clone())).await;
    ok(&answer, 202, &format!("start {body}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The objects and multipart uploads left in the bucket.
async fn bucket_contents(d: &Deployment) -> Vec<String> {
    let endpoint = moto_endpoint();
    let sdk = taskgate_aws::load_sdk_config(Some(&endpoint)).await;
    let s3 = taskgate_aws::s3_client(&sdk, Some(&endpoint));
    let mut found = Vec::new();
    let objects = s3.list_objects_v2().bucket(&d.bucket).send().await.unwrap();
    for object in objects.contents() {
        found.push(object.key().unwrap_or_default().to_owned());
    }
    let uploads = s3
        .list_multipart_uploads()
        .bucket(&d.bucket)
        .send()
        .await
        .unwrap();
    for upload in uploads.uploads() {
        found.push(format!("multipart {}", upload.key().unwrap_or_default()));
    }
    found
}

/// A JSON API call through API Gateway that must answer `status`; its body.
async fn call(
    d: &Deployment,
    status: u16,
    what: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    ok(&d.api(method, path, token, body).await, status, what)
}

/// Creates a tus upload of `length` bytes (named `name`); its location.
async fn begin_upload(d: &Deployment, token: &str, name: &str, length: usize) -> String {
    let auth = format!("Bearer {token}");
    let length = length.to_string();
    let metadata = format!(
        "filename {}",
        base64::engine::general_purpose::STANDARD.encode(name)
    );
    let created = d
        .http(
            "POST",
            "/files",
            &[
                ("authorization", &auth),
                ("tus-resumable", "1.0.0"),
                ("upload-length", &length),
                ("upload-metadata", &metadata),
            ],
            None,
        )
        .await;
    ok(&created, 201, "tus create");
    created.header("location").unwrap().to_owned()
}

/// Sends `bytes` to the upload at `location` from `offset`, in chunks a
/// Lambda request can carry (TASKGATE_MAX_PATCH_BYTES, 4 MiB).
async fn send_bytes(d: &Deployment, token: &str, location: &str, offset: usize, bytes: &[u8]) {
    let auth = format!("Bearer {token}");
    let mut offset = offset;
    for chunk in bytes.chunks(4 << 20) {
        let at = offset.to_string();
        let patched = d
            .http(
                "PATCH",
                location,
                &[
                    ("authorization", &auth),
                    ("tus-resumable", "1.0.0"),
                    ("upload-offset", &at),
                    ("content-type", "application/offset+octet-stream"),
                ],
                Some(chunk),
            )
            .await;
        ok(&patched, 204, "tus patch");
        offset += chunk.len();
    }
}

/// A tus upload of `bytes` through the deployed functions; the file's id.
async fn upload(d: &Deployment, token: &str, name: &str, bytes: &[u8]) -> String {
    let location = begin_upload(d, token, name, bytes.len()).await;
    send_bytes(d, token, &location, 0, bytes).await;
    location.trim_start_matches("/files/").to_owned()
}

/// An API Gateway WebSocket event (`connect`, `default`, `disconnect`,
/// from tests/fixtures/apigw-websocket) for `connection`.
fn ws_event(kind: &str, connection: &str) -> Value {
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/fixtures/apigw-websocket/{kind}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    event["requestContext"]["connectionId"] = json!(connection);
    event
}

/// Opens a WebSocket connection with `token` (`$connect` answers 200); its id.
async fn ws_connect(d: &Deployment, token: &str) -> String {
    let connection = format!("conn-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut event = ws_event("connect", &connection);
    event["queryStringParameters"] = json!({"token": token});
    event["multiValueQueryStringParameters"] = json!({"token": [token]});
    let answer = d
        .invoke("RealtimeConnectFunction", event, Duration::from_secs(30))
        .await
        .response();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    connection
}

/// Sends `message` on `connection` (`$default` answers 200).
async fn ws_send(d: &Deployment, connection: &str, message: Value) {
    let mut event = ws_event("default", connection);
    event["body"] = json!(message.to_string());
    let answer = d
        .invoke("RealtimeDefaultFunction", event, Duration::from_secs(30))
        .await
        .response();
    assert_eq!(answer["statusCode"], 200, "{answer}");
}

/// `len` bytes that do not compress (xorshift), different for each `seed`.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Inserts the user `name` straight into the deployment's Users table (as
/// `taskgate create-admin` would).
async fn seed_user(d: &Deployment, name: &str, password: &str, level: Level) {
    let store = taskgate_e2e::dynamodb_store_on(&d.tables).await;
    let username = Username::parse(name).unwrap();
    let hash = PasswordHasher::new()
        .unwrap()
        .hash(&Password::parse(password, Some(&username)).unwrap())
        .unwrap();
    store
        .insert_user(&User::new(username, hash, level, None, None))
        .await
        .unwrap();
}

/// The recorded API Gateway events (tests/fixtures/apigw-v2, the ones
/// `lambda.rs` runs in-process) through the deployed functions, each to
/// the function its route goes to: each answers as recorded, and every AWS
/// call they make is one their function's role allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_recorded_fixtures_answer_as_deployed_within_their_roles() {
    use crate::lambda::{FIXTURES, Placeholders};
    let d = Deployment::create(dynamodb_endpoint(), moto_endpoint()).await;
    seed_user(&d, "admin", ADMIN_PASSWORD, Level::Admin).await;
    seed_user(&d, "alice", PASSWORD, Level::User).await;
    seed_user(&d, "bob", PASSWORD, Level::User).await;
    let mut placeholders = Placeholders(vec![
        ("admin_password", ADMIN_PASSWORD.to_owned()),
        ("admin_token", login(&d, "admin", ADMIN_PASSWORD).await),
        ("user_token", login(&d, "alice", PASSWORD).await),
        ("logout_token", login(&d, "alice", PASSWORD).await),
    ]);
    for (name, expected) in FIXTURES {
        let event = placeholders.event(name);
        let method = event["requestContext"]["http"]["method"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = event["rawPath"].as_str().unwrap().to_owned();
        let (function, _, _) = d
            .route(&method, &path)
            .unwrap_or_else(|| panic!("{name}: no route for {method} {path}"));
        let answer = d
            .invoke(&function, event, Duration::from_secs(60))
            .await
            .response();
        assert_eq!(
            answer["statusCode"], *expected,
            "{name} ({function}): {answer}"
        );
        let body: Value = answer["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        match *name {
            "console" => placeholders.set(
                "console_asset",
                crate::lambda::console_entry(answer["body"].as_str().unwrap()),
            ),
            "files-create" => {
                let location = answer["headers"]["location"].as_str().unwrap();
                placeholders.set("file_id", location.trim_start_matches("/files/").to_owned());
            }
            "tasks-start" => placeholders.set("task_id", body["id"].as_str().unwrap().to_owned()),
            "projects-create" => {
                placeholders.set("project_id", body["id"].as_str().unwrap().to_owned())
            }
            "items-create" => placeholders.set("item_id", body["id"].as_str().unwrap().to_owned()),
            _ => {}
        }
    }
    d.record_platform_calls().await;
    let calls = d.recorder.lock().await.calls();
    let denied: Vec<String> = iam::check(&d.functions, &calls)
        .denied
        .iter()
        .map(|c| format!("  {}: {} on {}", c.function, c.action, c.resource))
        .collect();
    assert!(
        denied.is_empty(),
        "calls the roles do not allow (AccessDenied on AWS):\n{}",
        denied.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_deployment_runs_end_to_end_and_every_role_covers_exactly_its_calls() {
    let d = Deployment::create(dynamodb_endpoint(), moto_endpoint()).await;
    // The sweep takes every task that has not started (none but the one
    // made stuck below: every other start clears its marker).
    d.set_environment(
        "TaskReconcilerFunction",
        "TASKGATE_UNSTARTED_GRACE_SECONDS",
        "0",
    );
    // Every replay page past the first goes to the next invocation.
    d.set_environment(
        "RealtimeDefaultFunction",
        "TASKGATE_WS_REPLAY_BUDGET_MS",
        "1",
    );
    // The first admin, as `taskgate create-admin` would put it in.
    seed_user(&d, "admin", ADMIN_PASSWORD, Level::Admin).await;
    let store = taskgate_e2e::dynamodb_store_on(&d.tables).await;

    // --- Users, authentication ---------------------------------------------
    let answer = d.http("GET", "/", &[], None).await;
    ok(&answer, 200, "root");
    // The web console: its page and a file, through API Gateway's greedy
    // route to the one function that serves them.
    let page = d.http("GET", "/app", &[], None).await;
    ok(&page, 200, "the console's page");
    assert_eq!(page.function, "ConsoleFunction");
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    // On AWS the live socket is the WebSocket API, another origin: the page
    // names it and its policy allows it (and nothing else).
    let html = String::from_utf8_lossy(&page.body).into_owned();
    let websocket = html
        .split("<meta name=\"taskgate-websocket\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the page names no WebSocket API: {html}"));
    assert!(
        websocket.starts_with("wss://") && websocket.ends_with(".amazonaws.com/live"),
        "{websocket}"
    );
    let origin = websocket.trim_end_matches("/live");
    // A download leads (307) to the files bucket, a third origin, which
    // the policy allows too.
    let bucket = d.function("ConsoleFunction").environment["TASKGATE_FILES_BUCKET"].clone();
    let policy = page.header("content-security-policy").unwrap();
    assert!(
        policy.contains(&format!(
            "connect-src 'self' {origin} https://{bucket}.s3.us-east-1.amazonaws.com;"
        )),
        "{policy}"
    );
    let entry = crate::lambda::console_entry(&String::from_utf8_lossy(&page.body));
    let answer = d
        .http("GET", &format!("/app/assets/{entry}"), &[], None)
        .await;
    ok(&answer, 200, "the console's entry module");
    assert_eq!(answer.function, "ConsoleFunction");
    assert_eq!(
        answer.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let answer = d
        .http(
            "GET",
            "/app/assets/views/board.0000000000000000.js",
            &[],
            None,
        )
        .await;
    ok(&answer, 404, "a console file that does not exist");
    let admin = login(&d, "admin", ADMIN_PASSWORD).await;
    let answer = d
        .http(
            "POST",
            "/auth",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(
                format!(
                    "username=admin&password={}",
                    ADMIN_PASSWORD.replace(' ', "+")
                )
                .as_bytes(),
            ),
        )
        .await;
    ok(&answer, 200, "login with a form");
    call(&d, 200, "root with a token", "GET", "/", &admin, None).await;
    for (name, email) in [("alice", "alice@example.com"), ("bob", "bob@example.com")] {
        let answer = d
            .api(
                "POST",
                "/users",
                &admin,
                Some(json!({"username": name, "password": PASSWORD, "email": email})),
            )
            .await;
        ok(&answer, 201, "create a user");
    }
    call(&d, 200, "list users", "GET", "/users", &admin, None).await;
    call(&d, 200, "get a user", "GET", "/users/alice", &admin, None).await;
    // An e-mail change and a clear: each moves or drops the address's claim.
    let changed = d
        .api(
            "PATCH",
            "/users/alice",
            &admin,
            Some(json!({"email": "alice@example.org"})),
        )
        .await;
    assert_eq!(
        ok(&changed, 200, "change an e-mail")["email"],
        "alice@example.org"
    );
    let cleared = d
        .api("PUT", "/user/bob", &admin, Some(json!({"email": null})))
        .await;
    assert!(ok(&cleared, 200, "clear an e-mail")["email"].is_null());
    call(
        &d,
        201,
        "create a user (compatibility route)",
        "POST",
        "/user",
        &admin,
        Some(json!({"username": "carol", "password": PASSWORD})),
    )
    .await;
    call(
        &d,
        200,
        "get (compatibility)",
        "GET",
        "/user/carol",
        &admin,
        None,
    )
    .await;
    call(
        &d,
        204,
        "delete (compatibility)",
        "DELETE",
        "/user/carol",
        &admin,
        None,
    )
    .await;
    // An admin (the admins' count moves) and a password change (which
    // revokes the user's tokens).
    call(
        &d,
        201,
        "create an admin",
        "POST",
        "/users",
        &admin,
        Some(json!({"username": "dave", "password": PASSWORD, "level": "admin"})),
    )
    .await;
    let bob_password = "another horse battery staple";
    // bob has a token the change must revoke.
    let bob_before = login(&d, "bob", PASSWORD).await;
    call(
        &d,
        200,
        "change a password",
        "PATCH",
        "/users/bob",
        &admin,
        Some(json!({"password": bob_password})),
    )
    .await;
    assert_eq!(d.api("GET", "/", &bob_before, None).await.status, 401);
    call(
        &d,
        201,
        "create another admin",
        "POST",
        "/users",
        &admin,
        Some(json!({"username": "erin", "password": PASSWORD, "level": "admin"})),
    )
    .await;
    call(
        &d,
        200,
        "an admin made a user",
        "PATCH",
        "/users/erin",
        &admin,
        Some(json!({"level": "user"})),
    )
    .await;
    let alice = login(&d, "alice", PASSWORD).await;
    let bob = login(&d, "bob", bob_password).await;

    // --- Projects, members, items -------------------------------------------
    // With an Idempotency-Key, and its replay.
    let keyed = |method: &'static str, path: String, body: Value| {
        let d = &d;
        let auth = format!("Bearer {alice}");
        async move {
            let text = body.to_string();
            d.http(
                method,
                &path,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("idempotency-key", &format!("key-{path}")),
                ],
                Some(text.as_bytes()),
            )
            .await
        }
    };
    let created = keyed("POST", "/projects".into(), json!({"name": "Launch"})).await;
    let project = ok(&created, 201, "create a project")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let replayed = keyed("POST", "/projects".into(), json!({"name": "Launch"})).await;
    assert_eq!(ok(&replayed, 201, "replay")["id"], project.as_str());
    call(&d, 200, "list projects", "GET", "/projects", &alice, None).await;
    call(
        &d,
        200,
        "get a project",
        "GET",
        &format!("/projects/{project}"),
        &alice,
        None,
    )
    .await;
    call(
        &d,
        200,
        "update a project",
        "PATCH",
        &format!("/projects/{project}"),
        &alice,
        Some(json!({"description": "Q1"})),
    )
    .await;
    call(
        &d,
        201,
        "add a member",
        "PUT",
        &format!("/projects/{project}/members/bob"),
        &alice,
        Some(json!({"role": "member"})),
    )
    .await;
    call(
        &d,
        200,
        "members",
        "GET",
        &format!("/projects/{project}/members"),
        &alice,
        None,
    )
    .await;
    let item = call(
        &d,
        201,
        "create an item",
        "POST",
        &format!("/projects/{project}/items"),
        &alice,
        Some(json!({"title": "=HYPERLINK(\"x\")", "assignee": "bob", "due_date": "2026-12-01"})),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let keyed_item = keyed(
        "POST",
        format!("/projects/{project}/items"),
        json!({"title": "Keyed"}),
    )
    .await;
    ok(&keyed_item, 201, "create an item with a key");
    let again = keyed(
        "POST",
        format!("/projects/{project}/items"),
        json!({"title": "Keyed"}),
    )
    .await;
    assert_eq!(
        ok(&again, 201, "replay")["id"],
        ok(&keyed_item, 201, "")["id"]
    );
    for query in [
        "",
        "?status=pending",
        "?sort=due_date",
        "?status=pending&sort=due_date",
        "?sort=status",
        "?status=pending,completed&sort=-status",
    ] {
        call(
            &d,
            200,
            "list items",
            "GET",
            &format!("/projects/{project}/items{query}"),
            &alice,
            None,
        )
        .await;
        call(
            &d,
            200,
            "my items",
            "GET",
            &format!("/items{query}"),
            &alice,
            None,
        )
        .await;
    }
    call(&d, 200, "my items", "GET", "/items?assignee=me", &bob, None).await;
    call(
        &d,
        200,
        "every project",
        "GET",
        "/projects?all=true",
        &admin,
        None,
    )
    .await;
    // A second project where bob keeps an item, for his deletion below.
    let other = call(
        &d,
        201,
        "project",
        "POST",
        "/projects",
        &alice,
        Some(json!({"name": "Other"})),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    call(
        &d,
        201,
        "member",
        "PUT",
        &format!("/projects/{other}/members/bob"),
        &alice,
        Some(json!({"role": "member"})),
    )
    .await;
    call(
        &d,
        200,
        "role change",
        "PUT",
        &format!("/projects/{other}/members/bob"),
        &alice,
        Some(json!({"role": "admin"})),
    )
    .await;
    call(
        &d,
        201,
        "item",
        "POST",
        &format!("/projects/{other}/items"),
        &alice,
        Some(json!({"title": "Bob's", "assignee": "bob"})),
    )
    .await;
    let path = format!("/projects/{project}/items/{item}");
    call(&d, 200, "get an item", "GET", &path, &alice, None).await;
    call(
        &d,
        200,
        "update an item",
        "PATCH",
        &path,
        &bob,
        Some(json!({"status": "in_progress"})),
    )
    .await;
    call(
        &d,
        200,
        "an item's history",
        "GET",
        &format!("{path}/events"),
        &alice,
        None,
    )
    .await;
    // A member removed: their items become unassigned.
    call(
        &d,
        204,
        "remove a member",
        "DELETE",
        &format!("/projects/{project}/members/bob"),
        &alice,
        None,
    )
    .await;

    // --- Files ----------------------------------------------------------------
    let answer = d
        .http("OPTIONS", "/files", &[("tus-resumable", "1.0.0")], None)
        .await;
    ok(&answer, 204, "tus options");
    let auth_header = format!("Bearer {alice}");
    let answer = d
        .http(
            "OPTIONS",
            "/files",
            &[("tus-resumable", "1.0.0"), ("authorization", &auth_header)],
            None,
        )
        .await;
    ok(&answer, 204, "tus options with a token");
    let content = b"hello world".repeat(1000);
    let file = upload(&d, &alice, "hello.txt", &content).await;
    let auth = format!("Bearer {alice}");
    let head = d
        .http(
            "HEAD",
            &format!("/files/{file}"),
            &[("authorization", &auth), ("tus-resumable", "1.0.0")],
            None,
        )
        .await;
    ok(&head, 200, "tus head");
    assert_eq!(
        head.header("upload-offset"),
        Some(content.len().to_string().as_str())
    );
    call(&d, 200, "list files", "GET", "/files", &alice, None).await;
    call(
        &d,
        200,
        "a user's files",
        "GET",
        "/files?owner=alice",
        &admin,
        None,
    )
    .await;
    call(
        &d,
        200,
        "get a file",
        "GET",
        &format!("/files/{file}"),
        &alice,
        None,
    )
    .await;
    let download = d
        .api("GET", &format!("/files/{file}/content"), &alice, None)
        .await;
    ok(&download, 307, "download");
    let url = download.header("location").unwrap().to_owned();
    // Signed over `host` only, so a browser's own headers cannot break it.
    let signed: Vec<&str> = url
        .split(['?', '&'])
        .filter_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
        .collect();
    assert_eq!(signed, ["host"], "{url}");
    // Following it reaches S3 with the function's credentials: its role
    // must allow the read.
    let bytes = reqwest::Client::new()
        .get(&url)
        .header("accept", "*/*")
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(bytes.status(), 200);
    assert_eq!(bytes.bytes().await.unwrap().as_ref(), &content[..]);

    // --- Tasks through the real state machine -------------------------------
    // A delay that succeeds (a short Wait).
    let keyed_task = keyed(
        "POST",
        "/tasks".into(),
        json!({"type": "delay", "seconds": 1}),
    )
    .await;
    let delay = ok(&keyed_task, 202, "start with a key")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = keyed(
        "POST",
        "/tasks".into(),
        json!({"type": "delay", "seconds": 1}),
    )
    .await;
    assert_eq!(ok(&again, 202, "replay")["id"], delay.as_str());
    let task = settled(&d, &alice, &delay, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["result"], 0);
    call(
        &d,
        200,
        "events",
        "GET",
        &format!("/tasks/{delay}/events"),
        &alice,
        None,
    )
    .await;
    call(
        &d,
        200,
        "list tasks",
        "GET",
        "/tasks?status=succeeded",
        &alice,
        None,
    )
    .await;
    call(
        &d,
        200,
        "a user's tasks",
        "GET",
        "/tasks?owner=alice",
        &admin,
        None,
    )
    .await;

    // A delay cancelled: `cancelled`, and the execution stopped.
    let long = start(&d, &alice, json!({"type": "delay", "seconds": 3600})).await;
    reaches(&d, &alice, &long, "running").await;
    let cancelled = call(
        &d,
        200,
        "cancel",
        "POST",
        &format!("/tasks/{long}/cancel"),
        &alice,
        None,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled");
    let sdk = taskgate_aws::load_sdk_config(Some(&d.moto_endpoint)).await;
    let sfn = taskgate_aws::sfn_client(&sdk, Some(&d.moto_endpoint));
    let execution = format!(
        "{}:{long}",
        d.state_machine_arn.replace(":stateMachine:", ":execution:")
    );
    let described = sfn
        .describe_execution()
        .execution_arn(&execution)
        .send()
        .await
        .unwrap();
    assert_eq!(described.status().as_str(), "ABORTED");

    // A script that succeeds with a result and logs.
    let script = start(
        &d,
        &admin,
        json!({"type": "js", "code": "console.log('hi'); [1, 2, 3].map(x => x * 2)"}),
    )
    .await;
    let task = settled(&d, &admin, &script, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["result"], json!([2, 4, 6]));
    assert_eq!(task["logs"], json!(["hi"]));

    // A script that fails: its error code reaches the task.
    let failing = start(
        &d,
        &admin,
        json!({"type": "js", "code": "throw new Error('no')"}),
    )
    .await;
    let task = settled(&d, &admin, &failing, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["code"], "script-error", "{task}");

    // A script whose result is near the cap (256 KiB) and logs besides:
    // more than an execution can carry, so only the step may hold it.
    let big = start(
        &d,
        &admin,
        json!({"type": "js", "code": "for (let i = 0; i < 100; i++) console.log('x'.repeat(1000)); 'y'.repeat(250 * 1024)"}),
    )
    .await;
    let task = settled(&d, &admin, &big, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["result"].as_str().map(str::len), Some(250 * 1024));

    // Exports: csv and zip succeed, and their files can be downloaded.
    let csv = start(
        &d,
        &alice,
        json!({"type": "export", "project": project, "format": "csv"}),
    )
    .await;
    let task = settled(&d, &alice, &csv, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let exported = task["result"]["file"].as_str().unwrap().to_owned();
    let answer = d
        .api("GET", &format!("/files/{exported}/content"), &alice, None)
        .await;
    ok(&answer, 307, "download the export");
    let text = reqwest::get(answer.header("location").unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The item titled `=HYPERLINK("x")`, as a spreadsheet shows text.
    assert!(text.contains("'=HYPERLINK"), "{text}");
    let zip = start(
        &d,
        &alice,
        json!({"type": "export", "files": [file], "format": "zip"}),
    )
    .await;
    let task = settled(&d, &alice, &zip, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "succeeded", "{task}");

    // An export cancelled mid-way leaves nothing in S3: a zip of a file
    // big enough to take a while.
    let mut large = Vec::new();
    for i in 0..4u64 {
        large.push(upload(&d, &alice, &format!("large-{i}.bin"), &noise(8 << 20, i)).await);
    }
    let before = bucket_contents(&d).await;
    let stopped = start(
        &d,
        &alice,
        json!({"type": "export", "files": large, "format": "zip"}),
    )
    .await;
    reaches(&d, &alice, &stopped, "running").await;
    // Its step is at work once it reports progress.
    let begun = Instant::now();
    while call(
        &d,
        200,
        "task",
        "GET",
        &format!("/tasks/{stopped}"),
        &alice,
        None,
    )
    .await["progress"]
        .as_f64()
        .is_none_or(|p| p <= 0.0)
    {
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "the export step never began"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A step that throws for a real task: a csv export whose project is
    // deleted before its step runs (the export function is busy with the
    // zip until the cancel below) fails in its step with `not-found`, and
    // the state machine's Catch records the failure.
    let doomed_project = call(
        &d,
        201,
        "a project to delete",
        "POST",
        "/projects",
        &alice,
        Some(json!({"name": "Doomed"})),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doomed = start(
        &d,
        &alice,
        json!({"type": "export", "project": doomed_project, "format": "csv"}),
    )
    .await;
    call(
        &d,
        204,
        "delete the project",
        "DELETE",
        &format!("/projects/{doomed_project}"),
        &alice,
        None,
    )
    .await;
    call(
        &d,
        200,
        "cancel an export",
        "POST",
        &format!("/tasks/{stopped}/cancel"),
        &alice,
        None,
    )
    .await;
    let begun = Instant::now();
    loop {
        let now = bucket_contents(&d).await;
        if now == before {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "left in S3: {now:?} (before: {before:?})"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let task = settled(&d, &alice, &doomed, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["code"], "not-found", "{task}");
    let history = sfn
        .get_execution_history()
        .execution_arn(format!(
            "{}:{doomed}",
            d.state_machine_arn.replace(":stateMachine:", ":execution:")
        ))
        .send()
        .await
        .unwrap();
    let entered: Vec<&str> = history
        .events()
        .iter()
        .filter_map(|e| e.state_entered_event_details())
        .map(|details| details.name())
        .collect();
    assert!(entered.contains(&"RecordFailed"), "{entered:?}");

    // A step that throws: the record step is handed a task it cannot find
    // (`TaskNotFound`), and the execution's Catch ends it as RecordingFailed;
    // the reconciler then has nothing to record. Started by hand, as only a
    // broken start could.
    let orphan = uuid::Uuid::now_v7().to_string();
    let started = sfn
        .start_execution()
        .state_machine_arn(&d.state_machine_arn)
        .name(&orphan)
        .input(
            json!({"task_id": orphan, "type": "delay", "due_at": "2020-01-01T00:00:00Z"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let begun = Instant::now();
    let status = loop {
        let described = sfn
            .describe_execution()
            .execution_arn(started.execution_arn())
            .send()
            .await
            .unwrap();
        if described.status().as_str() != "RUNNING" {
            break described;
        }
        assert!(begun.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status.status().as_str(), "FAILED");
    assert_eq!(status.error(), Some("RecordingFailed"));

    // --- The sweep: a task whose start died after writing `created` --------
    let alice_user = store
        .get_user(&Username::parse("alice").unwrap())
        .await
        .unwrap()
        .unwrap();
    let spec = taskgate_domain::task::TaskSpec::delay(0.0, &Default::default()).unwrap();
    let (stuck, _) = taskgate_domain::recorder::Recorder::new(Arc::new(store.clone()))
        .create(&spec, &alice_user, u64::MAX)
        .await
        .unwrap();
    let stuck = stuck.id.to_string();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let scheduled = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let swept = d
        .invoke(
            "TaskReconcilerFunction",
            scheduled.clone(),
            Duration::from_secs(30),
        )
        .await
        .response();
    assert_eq!(swept["started"], 1, "{swept}");
    let task = settled(&d, &alice, &stuck, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let swept = d
        .invoke("TaskReconcilerFunction", scheduled, Duration::from_secs(30))
        .await
        .response();
    assert_eq!(swept["started"], 0, "once: {swept}");

    // --- The reconciler: an execution that ended without an outcome ---------
    let lost = start(&d, &alice, json!({"type": "delay", "seconds": 3600})).await;
    reaches(&d, &alice, &lost, "running").await;
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/eventbridge/execution-status-change.json"
        ))
        .unwrap()
        .replace("REPLACED-BY-THE-TEST", &lost),
    )
    .unwrap();
    event["detail"]["status"] = json!("ABORTED");
    d.invoke("TaskReconcilerFunction", event, Duration::from_secs(30))
        .await
        .response();
    let task = call(
        &d,
        200,
        "task",
        "GET",
        &format!("/tasks/{lost}"),
        &alice,
        None,
    )
    .await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["code"], "workflow-error");

    // --- Real time: the WebSocket API's routes and the fan-out -------------
    let connection = ws_connect(&d, &alice).await;
    let mut reader = crate::realtime_aws::StreamReader::at_end(&d.tables.task_events).await;
    let mut project_reader = crate::realtime_aws::StreamReader::at_end(&d.tables.project_log).await;
    for message in [
        json!({"type": "subscribe", "topic": "tasks"}),
        // Replays from the project's log and from a task's.
        json!({"type": "subscribe", "topic": format!("project:{project}"), "after": 0}),
        json!({"type": "subscribe", "topic": format!("task:{delay}"), "after": 0}),
    ] {
        ws_send(&d, &connection, message).await;
    }
    let live = start(&d, &alice, json!({"type": "delay", "seconds": 0})).await;
    settled(&d, &alice, &live, Duration::from_secs(60)).await;
    let records = reader.next_event().await;
    assert!(!records.records.is_empty());
    d.invoke(
        "RealtimeFanOutFunction",
        serde_json::to_value(&records).unwrap(),
        Duration::from_secs(30),
    )
    .await
    .response();
    call(
        &d,
        200,
        "an item done",
        "PATCH",
        &path,
        &alice,
        Some(json!({"status": "completed"})),
    )
    .await;
    let records = project_reader.next_event().await;
    assert!(!records.records.is_empty());
    // A poison record first (an image the fan-out cannot read): it is
    // skipped, and the rest of the batch is delivered.
    let mut batch = serde_json::to_value(&records).unwrap();
    let mut poison = batch["Records"][0].clone();
    poison["eventID"] = json!("poison");
    poison["dynamodb"]["NewImage"] = json!({"garbage": {"S": "not an event"}});
    poison["dynamodb"]["Keys"] = json!({"garbage": {"N": "1"}});
    batch["Records"].as_array_mut().unwrap().insert(0, poison);
    d.invoke("RealtimeFanOutFunction", batch, Duration::from_secs(30))
        .await
        .response();
    let posted = crate::realtime_aws::posted(&connection).await;
    assert!(
        posted
            .iter()
            .any(|m| m["type"] == "event" && m["event"]["kind"] == "item.updated"),
        "{posted:?}"
    );
    assert!(
        posted
            .iter()
            .any(|m| m["type"] == "event" && m["event"]["task"]["id"] == live.as_str()),
        "{posted:?}\nthe fan-out's log:\n{}\n$default's log:\n{}",
        d.log_of("RealtimeFanOutFunction").await,
        d.log_of("RealtimeDefaultFunction").await,
    );
    // A task event over API Gateway's 128 KB: a notice naming what to read.
    let big_script = start(
        &d,
        &admin,
        json!({"type": "js", "code": "'q'.repeat(200 * 1024)"}),
    )
    .await;
    settled(&d, &admin, &big_script, Duration::from_secs(60)).await;
    // The admin's socket, replaying the script's log.
    let admin_connection = ws_connect(&d, &admin).await;
    ws_send(
        &d,
        &admin_connection,
        json!({"type": "subscribe", "topic": format!("task:{big_script}"), "after": 0}),
    )
    .await;
    let replayed = crate::realtime_aws::posted(&admin_connection).await;
    let outcome = replayed
        .iter()
        .find(|m| m["event"]["change"] == "succeeded")
        .unwrap_or_else(|| panic!("{replayed:?}"));
    assert!(outcome.to_string().len() <= 128_000);
    assert_eq!(outcome["truncated"]["read"], format!("/tasks/{big_script}"));

    // A replay longer than one invocation's budget: carried on by the
    // function invoking itself, page after page, each entry once, in order.
    let long = call(
        &d,
        201,
        "project",
        "POST",
        "/projects",
        &alice,
        Some(json!({"name": "Long"})),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..230 {
        call(
            &d,
            201,
            "an item",
            "POST",
            &format!("/projects/{long}/items"),
            &alice,
            Some(json!({"title": format!("item {i}")})),
        )
        .await;
    }
    let replaying = ws_connect(&d, &alice).await;
    ws_send(
        &d,
        &replaying,
        json!({"type": "subscribe", "topic": format!("project:{long}"), "after": 0}),
    )
    .await;
    // The project's creation, then 230 items: 231 entries, three pages.
    let begun = Instant::now();
    let seqs = loop {
        let posted = crate::realtime_aws::posted(&replaying).await;
        let seqs: Vec<u64> = posted.iter().filter_map(|m| m["seq"].as_u64()).collect();
        if seqs.len() >= 231 || begun.elapsed() > Duration::from_secs(30) {
            break seqs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        seqs,
        (1..=231).collect::<Vec<u64>>(),
        "each entry once, in order"
    );
    assert_eq!(
        d.log_of("RealtimeDefaultFunction")
            .await
            .matches("\"cold start complete\"")
            .count(),
        1,
        "one container served every part of the replay"
    );

    for connection in [&connection, &admin_connection, &replaying] {
        d.invoke(
            "RealtimeDisconnectFunction",
            ws_event("disconnect", connection),
            Duration::from_secs(30),
        )
        .await
        .response();
    }

    // --- The reaper: an upload past its expiry ------------------------------
    // More than a part (5 MiB) sent, so a multipart upload is open.
    let location = begin_upload(&d, &alice, "stale.bin", 10 << 20).await;
    send_bytes(&d, &alice, &location, 0, &noise(6 << 20, 9)).await;
    let stale = location.trim_start_matches("/files/").to_owned();
    taskgate_e2e::expire_upload(&d.tables, &stale).await;
    let reaped = d
        .invoke(
            "UploadReaperFunction",
            json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
            Duration::from_secs(60),
        )
        .await
        .response();
    assert_eq!(reaped["removed"], 1, "{reaped}");

    // An upload given up (tus termination) with a part and a staged
    // remainder: nothing of it remains.
    let given_up = begin_upload(&d, &alice, "given-up.bin", 10 << 20).await;
    send_bytes(&d, &alice, &given_up, 0, &noise(6 << 20, 11)).await;
    let auth_alice = format!("Bearer {alice}");
    let before_abort = bucket_contents(&d).await;
    assert!(
        before_abort.iter().any(|k| k.contains("uploads/")),
        "{before_abort:?}"
    );
    let aborted = d
        .http(
            "DELETE",
            &given_up,
            &[("authorization", &auth_alice), ("tus-resumable", "1.0.0")],
            None,
        )
        .await;
    ok(&aborted, 204, "give an upload up");
    let id = given_up.trim_start_matches("/files/");
    let left: Vec<String> = bucket_contents(&d)
        .await
        .into_iter()
        .filter(|k| k.contains(id))
        .collect();
    assert!(left.is_empty(), "left of the upload: {left:?}");

    // creation-with-upload: the whole file in the POST.
    let answer = d
        .http(
            "POST",
            "/files",
            &[
                ("authorization", &auth_alice),
                ("tus-resumable", "1.0.0"),
                ("upload-length", "11"),
                ("content-type", "application/offset+octet-stream"),
            ],
            Some(b"hello there"),
        )
        .await;
    ok(&answer, 201, "creation-with-upload");
    assert_eq!(answer.header("upload-offset"), Some("11"));

    // --- The rest of the routes ---------------------------------------------
    call(&d, 200, "audit", "GET", "/audit", &admin, None).await;
    call(&d, 204, "delete an item", "DELETE", &path, &alice, None).await;
    call(
        &d,
        204,
        "delete a project",
        "DELETE",
        &format!("/projects/{project}"),
        &alice,
        None,
    )
    .await;
    call(
        &d,
        204,
        "delete a file",
        "DELETE",
        &format!("/files/{file}"),
        &alice,
        None,
    )
    .await;
    call(
        &d,
        204,
        "delete a user who kept an item",
        "DELETE",
        "/users/bob",
        &admin,
        None,
    )
    .await;
    call(
        &d,
        204,
        "delete an admin",
        "DELETE",
        "/users/dave",
        &admin,
        None,
    )
    .await;
    call(&d, 204, "log out", "DELETE", "/auth", &alice, None).await;
    assert_eq!(d.api("GET", "/", &alice, None).await.status, 401);

    // --- Every role against the calls its function made ---------------------
    d.record_platform_calls().await;
    let calls = d.recorder.lock().await.calls();
    let exercised: BTreeSet<&str> = calls.iter().map(|c| c.function.as_str()).collect();
    let idle: Vec<&str> = d
        .functions
        .iter()
        .map(|f| f.logical_id.as_str())
        .filter(|f| !exercised.contains(f))
        .collect();
    let report = iam::check(&d.functions, &calls);
    let unused: Vec<_> = report
        .unused
        .iter()
        .filter(|g| {
            !KEPT_GRANTS
                .iter()
                .any(|(f, a, r, _)| *f == g.function && *a == g.action && g.resource.contains(r))
        })
        .collect();
    let denied: Vec<String> = report
        .denied
        .iter()
        .map(|c| format!("  {}: {} on {}", c.function, c.action, c.resource))
        .collect();
    let unused_text: Vec<String> = unused
        .iter()
        .map(|g| format!("  {}: {} on {}", g.function, g.action, g.resource))
        .collect();
    assert!(
        denied.is_empty() && unused.is_empty() && idle.is_empty(),
        "calls the roles do not allow (AccessDenied on AWS):\n{}\n\
         grants no call used (remove them, or keep them in KEPT_GRANTS with the reason):\n{}\n\
         functions the journey never ran: {idle:?}",
        denied.join("\n"),
        unused_text.join("\n"),
    );
    drop(Arc::clone(&d));
}
