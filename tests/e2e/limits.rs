//! Limits under load: every size and concurrency bound is a setting, and
//! reaching one gives the client a clear answer (a problem naming the limit,
//! or a wait) and never a 500 or a change to stored data.
//!
//! How much memory a burst takes is measured, not asserted here:
//! `tests/bench/burst.py`, results in `docs/benchmarks/burst.md`.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskgate_domain::user::ProfileLimits;
use taskgate_e2e::{
    ADMIN_PASSWORD, Backend, PASSWORD, TestApp, assert_problem, on_each_backend,
    processes_mentioning, status_and_json,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_each_backend!(size_limits_are_settings_with_their_own_errors);

const LONG: Duration = Duration::from_secs(30);

/// The `errors` of a 422, as (field, message) pairs.
async fn field_errors(response: reqwest::Response) -> Vec<(String, String)> {
    let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-field").await;
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A profile `{"bio":"xx…"}` of exactly `bytes` bytes of compact JSON.
fn profile_of_size(bytes: usize) -> Value {
    json!({"bio": "x".repeat(bytes - r#"{"bio":""}"#.len())})
}

/// Each size limit, set low: the largest value allowed passes, one more is
/// refused with the problem that names the limit, and nothing refused is
/// stored.
async fn size_limits_are_settings_with_their_own_errors(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.api.max_body_bytes = 2048;
        config.api.max_json_depth = 4;
        config.api.profile = ProfileLimits {
            max_bytes: 64,
            max_depth: 2,
        };
        config.api.tasks.max_code_bytes = 100;
    })
    .await;
    let admin = app.admin_token().await;
    let post_raw = |body: Vec<u8>| {
        app.request(Method::POST, "/users", Some(&admin))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // Body size (TASKGATE_MAX_BODY_BYTES): JSON padded with spaces to the byte.
    let padded = |username: &str, size: usize| {
        let mut body = json!({"username": username, "password": PASSWORD}).to_string();
        body.push_str(&" ".repeat(size - body.len()));
        body.into_bytes()
    };
    let response = post_raw(padded("at-limit", 2048)).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = post_raw(padded("over-limit", 2049)).await.unwrap();
    let problem =
        assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
    assert_eq!(
        problem["detail"],
        "the request body is larger than 2048 bytes"
    );

    // JSON depth (TASKGATE_MAX_JSON_DEPTH = 4): depth 4 is parsed (and then
    // refused for its profile), depth 5 is not parsed at all.
    let depth_4 = json!({"username": "deep", "password": PASSWORD, "profile": {"a": {"b": [1]}}});
    let errors = field_errors(
        app.send_json(Method::POST, "/users", Some(&admin), &depth_4)
            .await,
    )
    .await;
    assert_eq!(
        errors,
        vec![(
            "profile".to_owned(),
            "must be nested at most 2 levels deep".to_owned()
        )]
    );
    let depth_5 = json!({"username": "deep", "password": PASSWORD, "profile": {"a": {"b": [[1]]}}});
    let response = app
        .send_json(Method::POST, "/users", Some(&admin), &depth_5)
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    assert_eq!(
        problem["detail"],
        "the request body is nested too deeply; at most 4 levels of objects and arrays are allowed"
    );
    // Past serde_json's own limit (128) the answer is the same.
    let response = post_raw(format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes())
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("at most 4 levels"),
        "{problem}"
    );

    // Profile size (TASKGATE_MAX_PROFILE_BYTES = 64), on create and on edit.
    let user = |username: &str, profile: Value| json!({"username": username, "password": PASSWORD, "profile": profile});
    let response = app
        .send_json(
            Method::POST,
            "/users",
            Some(&admin),
            &user("carol", profile_of_size(64)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app
        .send_json(
            Method::POST,
            "/users",
            Some(&admin),
            &user("dave", profile_of_size(65)),
        )
        .await;
    assert_eq!(
        field_errors(response).await,
        vec![(
            "profile".to_owned(),
            "must be at most 64 bytes as JSON, not 65".to_owned()
        )]
    );
    let response = app
        .send_json(
            Method::PATCH,
            "/users/carol",
            Some(&admin),
            &json!({"profile": profile_of_size(65)}),
        )
        .await;
    assert_eq!(field_errors(response).await[0].0, "profile");
    let (status, carol) = status_and_json(app.get("/users/carol", Some(&admin)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        carol["profile"],
        profile_of_size(64),
        "the refused edit changed nothing"
    );

    // Code size (TASKGATE_MAX_CODE_BYTES = 100).
    let script =
        |bytes: usize| json!({"type": "js", "code": format!("{};", " ".repeat(bytes - 2)) + "1"});
    let response = app
        .send_json(Method::POST, "/tasks", Some(&admin), &script(100))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = app
        .send_json(Method::POST, "/tasks", Some(&admin), &script(101))
        .await;
    let errors = field_errors(response).await;
    assert_eq!(errors[0].0, "code", "{errors:?}");
    assert!(errors[0].1.contains("100"), "{errors:?}");
    let (_, tasks) = status_and_json(app.get("/tasks", Some(&admin)).await).await;
    assert_eq!(tasks["items"].as_array().unwrap().len(), 1, "{tasks}");

    // Only what was accepted is stored.
    let mut names: Vec<String> = app
        .all_users(&admin)
        .await
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["admin", "at-limit", "carol"]);
}

/// The default JSON depth (32) holds too: 33 levels are refused unparsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_json_depth_is_32() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let admin = app.admin_token().await;
    // The body object is level 1, so its e-mail adds `depth - 1` levels.
    let nested = |depth: usize| {
        let mut value = json!(1);
        for _ in 1..depth {
            value = json!([value]);
        }
        json!({"username": "deep", "password": PASSWORD, "email": value})
    };
    // 32 levels parse, and then the e-mail is refused as not a string.
    let response = app
        .send_json(Method::POST, "/users", Some(&admin), &nested(32))
        .await;
    assert_eq!(field_errors(response).await[0].0, "email");
    let response = app
        .send_json(Method::POST, "/users", Some(&admin), &nested(33))
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("at most 32 levels"),
        "{problem}"
    );
}

/// With one hashing slot, a burst of logins by twelve users queues: every
/// login succeeds.
/// (That no more than one hash runs at a time is checked where it is
/// enforced, in `taskgate-api`'s `hashes_beyond_the_limit_wait_their_turn`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_logins_waits_for_the_hashing_slot() {
    let app = TestApp::spawn_with(Backend::Embedded, |config| {
        config.api.max_concurrent_hashes = 1;
    })
    .await;
    let admin = app.admin_token().await;
    let names: Vec<String> = (0..12).map(|n| format!("user{n}")).collect();
    for name in &names {
        app.create_user(&admin, name, "user").await;
    }
    let mut logins = tokio::task::JoinSet::new();
    for name in &names {
        let login = json!({"username": name, "password": PASSWORD});
        logins.spawn(app.request(Method::POST, "/auth", None).json(&login).send());
    }
    let mut tokens = HashSet::new();
    for response in logins.join_all().await {
        let (status, body) = status_and_json(response.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.insert(body["token"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens.len(), 12, "every login got its own token");
}

/// With one script slot, three scripts started together run one after the
/// other: never two worker processes at once, and all three succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_beyond_the_worker_limit_wait_their_turn() {
    let app = TestApp::spawn_with(Backend::Embedded, |config| {
        config.api.max_concurrent_scripts = 1;
    })
    .await;
    let admin = app.admin_token().await;
    // Busy for 600 ms of wall time, then 42.
    let code = "const t = Date.now(); while (Date.now() - t < 600) {} 42";
    let mut ids = Vec::new();
    for _ in 0..3 {
        let task = app
            .start_task(&admin, json!({"type": "js", "code": code}))
            .await;
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    // Watch the workers (each names its task on its command line) until all
    // three tasks are finished.
    let mut seen = HashSet::new();
    let mut most_at_once = 0;
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let running: Vec<&String> = ids
            .iter()
            .filter(|id| !processes_mentioning(&format!("--task={id}")).is_empty())
            .collect();
        most_at_once = most_at_once.max(running.len());
        seen.extend(running.into_iter().cloned());
        let mut finished = 0;
        for id in &ids {
            let (_, task) =
                status_and_json(app.get(&format!("/tasks/{id}"), Some(&admin)).await).await;
            if task["status"] != "running" && task["status"] != "pending" {
                assert_eq!(
                    (task["status"].clone(), task["result"].clone()),
                    (json!("succeeded"), json!(42)),
                    "{task}"
                );
                finished += 1;
            }
        }
        if finished == ids.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scripts did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.len(), 3, "every script ran in a worker");
    assert_eq!(most_at_once, 1, "never more than one worker at a time");
}

/// Opens a connection and sends an admin login whose body stops after five
/// bytes. Returns the connection and the rest of the body.
async fn admin_login_cut_short(app: &TestApp) -> (tokio::net::TcpStream, Vec<u8>) {
    let body = json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    let mut connection = tokio::net::TcpStream::connect(app.server().local_addr())
        .await
        .unwrap();
    let head = format!(
        "POST /auth HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    connection.write_all(head.as_bytes()).await.unwrap();
    let (sent, rest) = body.as_bytes().split_at(5);
    connection.write_all(sent).await.unwrap();
    (connection, rest.to_vec())
}

/// With room for one request in flight, a second request while the first is
/// still sending its body gets 503 `server-busy` with `Retry-After` at once;
/// when the first finishes, the server serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limit_get_server_busy() {
    let app = TestApp::spawn_with(Backend::Embedded, |config| {
        config.max_requests_in_flight = 1;
    })
    .await;
    // A request whose body is still on its way holds the one slot.
    let (mut slow, rest) = admin_login_cut_short(&app).await;

    // Until the server has read those headers, a request may still get in.
    let mut busy = None;
    for _ in 0..100 {
        let response = app.get("/openapi.json", None).await;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            busy = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let busy = busy.expect("a second request was refused while the first held the slot");
    assert_eq!(busy.headers()["retry-after"], "1");
    let problem = assert_problem(busy, StatusCode::SERVICE_UNAVAILABLE, "server-busy").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("1 requests"),
        "{problem}"
    );

    // The held request completes normally once its body arrives...
    slow.write_all(&rest).await.unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // ...and frees the slot.
    assert_eq!(
        app.get("/openapi.json", None).await.status(),
        StatusCode::OK
    );
}

/// A body that stops arriving gets 408 `request-timeout` after
/// `TASKGATE_BODY_TIMEOUT_SECONDS`, which frees its in-flight slot: a slow
/// sender cannot hold the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_gets_request_timeout() {
    let app = TestApp::spawn_with(Backend::Embedded, |config| {
        config.max_requests_in_flight = 1;
        config.body_timeout = Duration::from_secs(1);
    })
    .await;
    let (mut slow, _never_sent) = admin_login_cut_short(&app).await;
    let mut answer = String::new();
    tokio::time::timeout(LONG, slow.read_to_string(&mut answer))
        .await
        .expect("the server answered and closed")
        .unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    let problem: Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["type"], "urn:taskgate:problem:request-timeout");
    assert_eq!(
        problem["detail"],
        "the request body did not arrive within 1 s"
    );
    // The slot is free again.
    let response = app.try_login("admin", ADMIN_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// The slow-body attack: 300 connections from one address each start a
/// request and then send its body a byte at a time. They hold at most
/// `TASKGATE_MAX_REQUESTS_PER_ADDRESS` slots (the rest get 429 at once), so a
/// client from another address is served meanwhile. (The attacker speaks
/// from 127.0.0.2, the well-behaved client from 127.0.0.1.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_from_one_address_cannot_starve_the_others() {
    let app = TestApp::spawn_with(Backend::Embedded, |config| {
        config.max_requests_in_flight = 64;
        config.max_requests_per_address = 8;
    })
    .await;
    let target = app.server().local_addr();
    let mut attackers = Vec::new();
    for _ in 0..300 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut stream = socket.connect(target).await.unwrap();
        stream
            .write_all(
                b"POST /auth HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
            )
            .await
            .unwrap();
        attackers.push(stream);
    }
    // Drip on: one more byte each.
    for stream in &mut attackers {
        let _ = stream.write_all(b" ").await;
    }

    // A client elsewhere is served: reads, and a login with its password hash.
    for _ in 0..5 {
        assert_eq!(app.get("/", None).await.status(), StatusCode::OK);
    }
    assert_eq!(
        app.try_login("admin", ADMIN_PASSWORD).await.status(),
        StatusCode::OK
    );

    // The attacker got 429 at once on all but its share.
    let mut refused = 0;
    for stream in &mut attackers {
        let mut answer = [0u8; 64];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(20), stream.read(&mut answer)).await
            && answer[..n].starts_with(b"HTTP/1.1 429")
        {
            refused += 1;
        }
    }
    assert!(refused >= 300 - 8, "only {refused} of 300 were refused");
}

/// A request's headers are bounded together (`TASKGATE_MAX_HEADER_BYTES`,
/// 16 KiB): past it, 431 before anything parses them; and the one header
/// parsed piece by piece, tus `Upload-Metadata`, is linear and holds at
/// most 64 pairs. (Its duplicate check once compared every key with every
/// earlier one: 95,000 keys took a worker 56 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_431_and_metadata_is_parsed_in_one_pass() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let admin = app.admin_token().await;
    // The attack as found, smaller: ~200 KB of distinct short keys.
    let huge: Vec<String> = (0..22_000).map(|i| format!("k{i} YQ==")).collect();
    let begun = std::time::Instant::now();
    let answer = app
        .request(Method::POST, "/files", Some(&admin))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10")
        .header("upload-metadata", huge.join(","))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(
        answer,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers-too-large",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("16384"),
        "{problem}"
    );
    assert!(begun.elapsed() < LONG);
    // Unauthenticated too: the bound comes before everything else.
    let answer = app
        .request(Method::GET, "/", None)
        .header("x-padding", "p".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_problem(
        answer,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers-too-large",
    )
    .await;
    // Within the bound: more than 64 pairs is 400, naming the header.
    let many: Vec<String> = (0..65).map(|i| format!("k{i} YQ==")).collect();
    let answer = app
        .request(Method::POST, "/files", Some(&admin))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10")
        .header("upload-metadata", many.join(","))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(answer, StatusCode::BAD_REQUEST, "malformed-request").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Upload-Metadata"),
        "{problem}"
    );
    // 64 pairs, a filename among them, are fine.
    let mut fine: Vec<String> = (0..63).map(|i| format!("k{i} YQ==")).collect();
    fine.push("filename aGVsbG8udHh0".to_owned());
    let answer = app
        .request(Method::POST, "/files", Some(&admin))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10")
        .header("upload-metadata", fine.join(","))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::CREATED);
}
