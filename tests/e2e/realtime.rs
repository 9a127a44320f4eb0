//! Real-time updates over WebSocket (`GET /ws`), on both stores, with a
//! real WebSocket client (tokio-tungstenite) against the running server:
//! authentication at the upgrade, every event kind in feed order and once,
//! replay with `after` joining the live stream under concurrent writes,
//! permissions as the matching GET, members removed and tokens revoked,
//! progress of running delays, and the limits.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskgate_e2e::{Backend, TestApp, assert_problem, on_each_backend, status_and_json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::projects::{Team, team, team_on};

on_each_backend!(
    project_changes_arrive_in_feed_order_each_once,
    replay_with_after_joins_the_live_stream_under_concurrent_writes,
    tasks_report_their_changes_and_running_delays_their_progress,
    subscriptions_are_allowed_as_the_matching_get,
    a_removed_member_gets_an_error_and_nothing_more,
    revoked_and_expired_tokens_close_the_socket_with_4401,
    limits_on_connections_and_subscriptions_answer_clearly,
    idle_sockets_are_pinged_and_silent_ones_dropped,
    a_message_over_the_limit_becomes_a_notice_naming_what_to_read,
    an_after_past_every_position_replays_nothing_and_the_socket_stays_live,
    a_demoted_admin_stops_getting_another_users_task,
);

/// How long to wait for a message that must come (not a performance bound:
/// the contract's 100 ms is measured by the benchmarks).
const PATIENCE: Duration = Duration::from_secs(10);

/// A WebSocket client on `/ws`.
pub(crate) struct Ws {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

fn ws_url(app: &TestApp, query: &str) -> String {
    let url = app.url("/ws");
    format!("{}{query}", url.replacen("http", "ws", 1))
}

impl Ws {
    /// Connects with the token in the `Authorization` header.
    pub(crate) async fn connect(app: &TestApp, token: &str) -> Self {
        let mut request = ws_url(app, "").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the upgrade succeeds");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        Self { socket }
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// The next message, or `None` if none comes within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(wait, self.socket.next()).await.ok()?;
            match message {
                Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    async fn next(&mut self) -> Value {
        self.next_within(PATIENCE)
            .await
            .expect("a message arrives in time")
    }

    async fn subscribe(&mut self, topic: &str, after: Option<u64>) {
        let mut message = json!({"type": "subscribe", "topic": topic});
        if let Some(after) = after {
            message["after"] = json!(after);
        }
        self.send(message).await;
        let answer = self.next().await;
        assert_eq!(answer, json!({"type": "subscribed", "topic": topic}));
    }

    /// The next event (failing on anything else).
    async fn event(&mut self) -> Value {
        let message = self.next().await;
        assert_eq!(message["type"], "event", "{message}");
        message
    }

    /// The next event that is not a progress report.
    async fn change(&mut self) -> Value {
        loop {
            let message = self.event().await;
            if message["event"]["change"] != "progress" {
                return message;
            }
        }
    }

    /// Waits for the server to close the socket; its close frame.
    async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            match tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("the server closes the socket in time")
            {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

async fn json_of(app: &TestApp, method: Method, path: &str, token: &str, body: Value) -> Value {
    let (status, value) =
        status_and_json(app.send_json(method, path, Some(token), &body).await).await;
    assert!(status.is_success(), "{path}: {status} {value}");
    value
}

async fn project_changes_arrive_in_feed_order_each_once(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    // Positions 1-3: created, adam added, mia added.
    let project = team.project().await;
    let topic = format!("project:{project}");
    let mut mia = Ws::connect(app, &team.mia).await;
    mia.subscribe(&topic, None).await;

    let item = json_of(
        app,
        Method::POST,
        &format!("/projects/{project}/items"),
        &team.olga,
        json!({"title": "Write the plan", "due_date": "2026-12-24"}),
    )
    .await;
    let item_path = format!("/projects/{project}/items/{}", item["id"].as_str().unwrap());
    json_of(
        app,
        Method::PATCH,
        &item_path,
        &team.mia,
        json!({"status": "in_progress"}),
    )
    .await;
    json_of(
        app,
        Method::PATCH,
        &format!("/projects/{project}"),
        &team.adam,
        json!({"name": "Launch day"}),
    )
    .await;
    json_of(
        app,
        Method::PUT,
        &format!("/projects/{project}/members/nina"),
        &team.olga,
        json!({"role": "member"}),
    )
    .await;
    json_of(
        app,
        Method::PUT,
        &format!("/projects/{project}/members/nina"),
        &team.olga,
        json!({"role": "admin"}),
    )
    .await;
    let response = app
        .delete(
            &format!("/projects/{project}/members/nina"),
            Some(&team.olga),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app.delete(&item_path, Some(&team.olga)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let expected = [
        ("item.created", "olga"),
        ("item.updated", "mia"),
        ("project.updated", "adam"),
        ("member.added", "olga"),
        ("member.updated", "olga"),
        ("member.removed", "olga"),
        ("item.deleted", "olga"),
    ];
    for (n, (kind, actor)) in expected.iter().enumerate() {
        let message = mia.event().await;
        assert_eq!(message["topic"], topic);
        assert_eq!(message["seq"], json!(4 + n as u64), "{message}");
        let event = &message["event"];
        assert_eq!(
            (event["kind"].as_str(), event["actor"].as_str()),
            (Some(*kind), Some(*actor)),
            "{message}"
        );
        assert!(event["at"].is_string(), "{message}");
    }
    // The state each event carries.
    let mut again = Ws::connect(app, &team.mia).await;
    again.subscribe(&topic, Some(3)).await;
    let created = again.event().await;
    assert_eq!(created["event"]["item"]["title"], "Write the plan");
    assert_eq!(created["event"]["item"]["status"], "pending");
    assert_eq!(created["event"]["item"]["version"], 1);
    let updated = again.event().await;
    assert_eq!(updated["event"]["item"]["status"], "in_progress");
    assert_eq!(updated["event"]["item"]["version"], 2);
    let renamed = again.event().await;
    assert_eq!(renamed["event"]["project"]["name"], "Launch day");
    // The project is shown as mia sees it: her role.
    assert_eq!(renamed["event"]["project"]["role"], "member");
    let added = again.event().await;
    assert_eq!(added["event"]["member"]["username"], "nina");
    assert_eq!(added["event"]["member"]["role"], "member");
    let promoted = again.event().await;
    assert_eq!(promoted["event"]["member"]["role"], "admin");
    let removed = again.event().await;
    assert_eq!(removed["event"]["member"]["username"], "nina");
    let deleted = again.event().await;
    assert_eq!(deleted["event"]["kind"], "item.deleted");
    assert_eq!(deleted["event"]["item"]["title"], "Write the plan");
    // Each event once: nothing else is pending on either socket.
    assert_eq!(mia.next_within(Duration::from_millis(300)).await, None);
    assert_eq!(again.next_within(Duration::from_millis(300)).await, None);

    // Deleting the project: the event, then an error ends the subscription.
    let response = app
        .delete(&format!("/projects/{project}"), Some(&team.olga))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let deleted = mia.event().await;
    assert_eq!(deleted["event"]["kind"], "project.deleted");
    assert_eq!(deleted["seq"], 11);
    let error = mia.next().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["topic"], topic);
    assert_eq!(error["status"], 404);
}

/// Four writers edit items as fast as they can. Meanwhile clients
/// subscribe with `after` at various points, and one drops its connection
/// and reconnects from the last seq it saw. Every client ends with every
/// position after its `after` exactly once, in order.
async fn replay_with_after_joins_the_live_stream_under_concurrent_writes(backend: Backend) {
    let team = team(backend).await;
    let project = team.project().await;
    let topic = format!("project:{project}");
    let app = std::sync::Arc::new(team);
    let mut items = Vec::new();
    for n in 0..4 {
        let item = json_of(
            &app.app,
            Method::POST,
            &format!("/projects/{project}/items"),
            &app.olga,
            json!({"title": format!("item {n}")}),
        )
        .await;
        items.push(item["id"].as_str().unwrap().to_owned());
    }
    // Positions 1..=7 exist; each writer adds 30 more.
    const EDITS: usize = 30;
    let writers: Vec<_> = items
        .iter()
        .enumerate()
        .map(|(n, item)| {
            let app = app.clone();
            let path = format!("/projects/{project}/items/{item}");
            let token = if n % 2 == 0 {
                app.olga.clone()
            } else {
                app.mia.clone()
            };
            tokio::spawn(async move {
                for edit in 0..EDITS {
                    json_of(
                        &app.app,
                        Method::PATCH,
                        &path,
                        &token,
                        json!({"title": format!("edit {edit}")}),
                    )
                    .await;
                }
            })
        })
        .collect();
    let last = 7 + 4 * EDITS as u64;

    // Joins while the writers run, at several points of the feed.
    let mut readers = Vec::new();
    for after in [0u64, 5, 7] {
        let mut ws = Ws::connect(&app.app, &app.mia).await;
        ws.subscribe(&topic, Some(after)).await;
        readers.push((after, ws));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // One reader leaves mid-way and comes back from where it was.
    let mut leaver = Ws::connect(&app.app, &app.mia).await;
    leaver.subscribe(&topic, Some(0)).await;
    let mut seen = Vec::new();
    for _ in 0..40 {
        seen.push(leaver.event().await["seq"].as_u64().unwrap());
    }
    drop(leaver);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut back = Ws::connect(&app.app, &app.mia).await;
    back.subscribe(&topic, Some(*seen.last().unwrap())).await;
    while *seen.last().unwrap() < last {
        seen.push(back.event().await["seq"].as_u64().unwrap());
    }
    assert_eq!(seen, (1..=last).collect::<Vec<_>>());

    for writer in writers {
        writer.await.unwrap();
    }
    for (after, mut ws) in readers {
        let mut got = Vec::new();
        while got.last().copied().unwrap_or(after) < last {
            got.push(ws.event().await["seq"].as_u64().unwrap());
        }
        assert_eq!(got, (after + 1..=last).collect::<Vec<_>>(), "after {after}");
        assert_eq!(ws.next_within(Duration::from_millis(200)).await, None);
    }
    // A late subscriber without `after` gets only what comes next.
    let mut late = Ws::connect(&app.app, &app.mia).await;
    late.subscribe(&topic, None).await;
    json_of(
        &app.app,
        Method::PATCH,
        &format!("/projects/{project}/items/{}", items[0]),
        &app.olga,
        json!({"status": "completed"}),
    )
    .await;
    assert_eq!(late.event().await["seq"], last + 1);
}

/// An admin following a user's running task, then made a plain user, gets
/// an `error` (403) for the topic within the session check (2 s), and
/// nothing of the task after it: progress reports included.
async fn a_demoted_admin_stops_getting_another_users_task(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let watcher = app.user_with_token(&admin, "watcher", "admin").await;
    let task = app
        .start_task(&alice, json!({"type": "delay", "seconds": 20}))
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let topic = format!("task:{id}");
    let mut socket = Ws::connect(&app, &watcher).await;
    socket.subscribe(&topic, None).await;
    // Progress reaches an admin.
    let report = socket.event().await;
    assert_eq!(report["topic"], topic.as_str(), "{report}");
    let (status, _) = status_and_json(
        app.send_json(
            Method::PATCH,
            "/users/watcher",
            Some(&admin),
            &json!({"level": "user"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let ended = loop {
        let message = socket.next().await;
        if message["type"] == "error" {
            break message;
        }
        assert_eq!(message["type"], "event", "{message}");
    };
    assert_eq!(
        (ended["topic"].as_str(), ended["status"].as_u64()),
        (Some(topic.as_str()), Some(403)),
        "{ended}"
    );
    // Nothing more of it (progress comes every second while it runs).
    assert_eq!(socket.next_within(Duration::from_millis(2500)).await, None);
    app.send_json(
        Method::POST,
        &format!("/tasks/{id}/cancel"),
        Some(&alice),
        &json!({}),
    )
    .await;
}

/// `after` is a whole number from 0 to 2^64 - 1; one past every position
/// (2^63 and more once wrapped to a negative number in SQL, and the replay
/// read the first page again for ever, holding a core) replays nothing, and
/// the subscription goes live. Outside that range: a clear 400.
async fn an_after_past_every_position_replays_nothing_and_the_socket_stays_live(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let project = team.project().await;
    let topic = format!("project:{project}");
    let mut socket = Ws::connect(app, &team.mia).await;
    for after in [u64::MAX, 1 << 63, (1 << 63) - 1] {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            socket.subscribe(&topic, Some(after)),
        )
        .await;
        assert!(answer.is_ok(), "after {after}: no answer");
        // Nothing is replayed.
        assert_eq!(
            socket.next_within(Duration::from_millis(300)).await,
            None,
            "after {after}"
        );
        socket
            .send(json!({"type": "unsubscribe", "topic": topic}))
            .await;
        assert_eq!(socket.next().await["type"], "unsubscribed");
    }
    for bad in ["-1", "18446744073709551616", "1e30", "1.5", "\"7\""] {
        socket
            .socket
            .send(Message::text(format!(
                r#"{{"type":"subscribe","topic":"{topic}","after":{bad}}}"#
            )))
            .await
            .unwrap();
        let answer = socket.next().await;
        assert_eq!(
            (answer["type"].as_str(), answer["status"].as_u64()),
            (Some("error"), Some(400)),
            "{bad}: {answer}"
        );
    }
    // Live all along: a change arrives.
    socket.subscribe(&topic, Some(u64::MAX)).await;
    json_of(
        app,
        Method::POST,
        &format!("/projects/{project}/items"),
        &team.olga,
        json!({"title": "After all"}),
    )
    .await;
    let event = socket.event().await;
    assert_eq!(event["event"]["kind"], "item.created", "{event}");
}

/// A task event with a result bigger than `TASKGATE_WS_MAX_MESSAGE_BYTES`
/// (128000, API Gateway's limit) arrives as a notice: the same event, with
/// only the short fields of the task, and where to read the rest.
async fn a_message_over_the_limit_becomes_a_notice_naming_what_to_read(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let mut socket = Ws::connect(&app, &admin).await;
    socket.subscribe("tasks", None).await;
    let task = app
        .start_task(
            &admin,
            json!({"type": "js", "code": "'z'.repeat(200 * 1024)"}),
        )
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let outcome = loop {
        let message = socket.change().await;
        if message["event"]["change"] == "succeeded" {
            break message;
        }
    };
    assert!(outcome.to_string().len() <= 128_000, "the notice is small");
    assert_eq!(outcome["seq"], 3, "{outcome}");
    assert_eq!(outcome["event"]["task"]["id"], id.as_str());
    assert_eq!(outcome["event"]["task"]["status"], "succeeded");
    assert!(
        outcome["event"]["task"].get("result").is_none(),
        "{outcome}"
    );
    assert_eq!(outcome["truncated"]["read"], format!("/tasks/{id}"));
    assert!(outcome["truncated"]["bytes"].as_u64().unwrap() > 200 * 1024);
    // Reading it gives the whole result.
    let (_, whole) = status_and_json(app.get(&format!("/tasks/{id}"), Some(&admin)).await).await;
    assert_eq!(whole["result"].as_str().map(str::len), Some(200 * 1024));
}

async fn tasks_report_their_changes_and_running_delays_their_progress(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let bob = app.user_with_token(&admin, "bob", "user").await;
    let mut all = Ws::connect(&app, &alice).await;
    all.subscribe("tasks", None).await;
    let mut bobs = Ws::connect(&app, &bob).await;
    bobs.subscribe("tasks", None).await;

    let task = app
        .start_task(&alice, json!({"type": "delay", "seconds": 4.5}))
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let mut one = Ws::connect(&app, &alice).await;
    one.subscribe(&format!("task:{id}"), None).await;

    // `tasks`: created, then started, from the log.
    let created = all.change().await;
    assert_eq!(created["topic"], "tasks");
    assert_eq!(
        (created["seq"].as_u64(), created["event"]["change"].as_str()),
        (Some(1), Some("created"))
    );
    assert_eq!(created["event"]["kind"], "task.updated");
    assert_eq!(created["event"]["task"]["id"], id.as_str());
    let started = all.change().await;
    assert_eq!(
        (
            started["seq"].as_u64(),
            started["event"]["task"]["status"].as_str()
        ),
        (Some(2), Some("running"))
    );

    // `task:{id}`: progress at least every 2 s while it runs, rising, then
    // the outcome.
    let mut last_progress = -1.0;
    let mut reports = 0;
    let outcome = loop {
        let message = tokio::time::timeout(Duration::from_millis(2500), one.next())
            .await
            .expect("a running delay reports at least every 2 s");
        assert_eq!(message["type"], "event");
        let event = &message["event"];
        if event["change"] == "progress" {
            assert!(message.get("seq").is_none(), "{message}");
            let progress = event["task"]["progress"].as_f64().unwrap();
            assert!(progress >= last_progress && progress <= 1.0, "{message}");
            last_progress = progress;
            reports += 1;
        } else {
            break message;
        }
    };
    assert!(reports >= 2, "{reports} progress reports in 4.5 s");
    assert_eq!(outcome["seq"], 3);
    assert_eq!(outcome["event"]["change"], "succeeded");
    assert_eq!(outcome["event"]["task"]["status"], "succeeded");
    assert_eq!(outcome["event"]["task"]["progress"], 1.0);
    // `tasks` had progress too, and the outcome.
    let succeeded = all.change().await;
    assert_eq!(succeeded["event"]["change"], "succeeded");

    // Cancelling is an event with its actor.
    let task = app
        .start_task(&alice, json!({"type": "delay", "seconds": 60}))
        .await;
    let id = task["id"].as_str().unwrap();
    let mut watch = Ws::connect(&app, &alice).await;
    watch.subscribe(&format!("task:{id}"), None).await;
    let response = app
        .request(Method::POST, &format!("/tasks/{id}/cancel"), Some(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled = watch.change().await;
    assert_eq!(cancelled["event"]["change"], "cancelled");
    assert_eq!(cancelled["event"]["actor"], "alice");
    // Replaying a finished task's log from the start.
    let mut replay = Ws::connect(&app, &alice).await;
    replay.subscribe(&format!("task:{id}"), Some(0)).await;
    let changes: Vec<String> = [
        replay.event().await,
        replay.event().await,
        replay.event().await,
    ]
    .iter()
    .map(|m| m["event"]["change"].as_str().unwrap().to_owned())
    .collect();
    assert_eq!(changes, ["created", "started", "cancelled"]);

    // Bob saw none of alice's tasks.
    assert_eq!(bobs.next_within(Duration::from_millis(300)).await, None);
}

async fn subscriptions_are_allowed_as_the_matching_get(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let project = team.project().await;
    // No token, a bad token: 401 before any upgrade.
    let response = app.get("/ws", None).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let response = app.get("/ws?token=not-a-token", None).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    // A good token on a plain request: 426.
    let response = app.get("/ws", Some(&team.mia)).await;
    assert_problem(response, StatusCode::UPGRADE_REQUIRED, "upgrade-required").await;
    // The token may come in the query.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(ws_url(app, &format!("?token={}", team.nina)))
            .await
            .expect("a token in the query is accepted");
    socket
        .send(Message::text(
            json!({"type": "subscribe", "topic": format!("project:{project}")}).to_string(),
        ))
        .await
        .unwrap();
    let answer = loop {
        if let Some(Ok(Message::Text(text))) = socket.next().await {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    // nina is no member: the project's existence is not revealed.
    assert_eq!(
        (answer["type"].as_str(), answer["status"].as_u64()),
        (Some("error"), Some(404)),
        "{answer}"
    );

    let mut ws = Ws::connect(app, &team.mia).await;
    let task = app
        .start_task(&team.olga, json!({"type": "delay", "seconds": 0}))
        .await;
    let cases = [
        (
            json!({"type": "subscribe", "topic": format!("task:{}", task["id"].as_str().unwrap())}),
            403,
        ),
        (
            json!({"type": "subscribe", "topic": format!("task:{}", uuid::Uuid::now_v7())}),
            404,
        ),
        (
            json!({"type": "subscribe", "topic": format!("project:{}", uuid::Uuid::now_v7())}),
            404,
        ),
        (json!({"type": "subscribe", "topic": "everything"}), 400),
        (
            json!({"type": "subscribe", "topic": "tasks", "after": 3}),
            400,
        ),
        (json!({"type": "subscribe"}), 400),
        (
            json!({"type": "subscribe", "topic": "tasks", "colour": "red"}),
            400,
        ),
        (json!({"type": "shout", "topic": "tasks"}), 400),
        (json!({"type": "unsubscribe", "topic": "tasks"}), 400),
        (json!(["subscribe"]), 400),
    ];
    for (message, status) in cases {
        ws.send(message.clone()).await;
        let answer = ws.next().await;
        assert_eq!(answer["type"], "error", "{message}: {answer}");
        assert_eq!(answer["status"], status, "{message}: {answer}");
        assert!(answer["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    ws.socket
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(ws.next().await["status"], 400);
    // Not JSON at all.
    ws.socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await["status"], 400);

    // Members may subscribe; a global admin too (GET allows it), and sees
    // the project's own changes but, not being a member, not its items.
    ws.subscribe(&format!("project:{project}"), None).await;
    let mut admin = Ws::connect(app, &team.admin).await;
    admin.subscribe(&format!("project:{project}"), None).await;
    json_of(
        app,
        Method::POST,
        &format!("/projects/{project}/items"),
        &team.olga,
        json!({"title": "Secret"}),
    )
    .await;
    json_of(
        app,
        Method::PATCH,
        &format!("/projects/{project}"),
        &team.olga,
        json!({"description": "Public"}),
    )
    .await;
    assert_eq!(ws.event().await["event"]["kind"], "item.created");
    assert_eq!(ws.event().await["event"]["kind"], "project.updated");
    let seen = admin.event().await;
    assert_eq!(seen["event"]["kind"], "project.updated");
    assert_eq!(seen["seq"], 5);
    // Unsubscribing stops the events.
    ws.send(json!({"type": "unsubscribe", "topic": format!("project:{project}")}))
        .await;
    assert_eq!(
        ws.next().await,
        json!({"type": "unsubscribed", "topic": format!("project:{project}")})
    );
    json_of(
        app,
        Method::PATCH,
        &format!("/projects/{project}"),
        &team.olga,
        json!({"description": "Again"}),
    )
    .await;
    assert_eq!(admin.event().await["seq"], 6);
    assert_eq!(ws.next_within(Duration::from_millis(300)).await, None);
}

async fn a_removed_member_gets_an_error_and_nothing_more(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let project = team.project().await;
    let topic = format!("project:{project}");
    let mut mia = Ws::connect(app, &team.mia).await;
    mia.subscribe(&topic, None).await;
    let mut adam = Ws::connect(app, &team.adam).await;
    adam.subscribe(&topic, None).await;

    let response = app
        .delete(
            &format!("/projects/{project}/members/mia"),
            Some(&team.olga),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let error = mia.next().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(
        (error["topic"].as_str(), error["status"].as_u64()),
        (Some(topic.as_str()), Some(404))
    );
    // Others see the removal.
    let removed = adam.event().await;
    assert_eq!(
        (
            removed["event"]["kind"].as_str(),
            removed["event"]["member"]["username"].as_str()
        ),
        (Some("member.removed"), Some("mia"))
    );

    // Changes after it reach adam and not mia.
    json_of(
        app,
        Method::POST,
        &format!("/projects/{project}/items"),
        &team.olga,
        json!({"title": "After"}),
    )
    .await;
    assert_eq!(adam.event().await["event"]["kind"], "item.created");
    assert_eq!(mia.next_within(Duration::from_millis(500)).await, None);
    // And she cannot come back in.
    mia.send(json!({"type": "subscribe", "topic": topic})).await;
    assert_eq!(mia.next().await["status"], 404);
}

async fn revoked_and_expired_tokens_close_the_socket_with_4401(backend: Backend) {
    let now = time::OffsetDateTime::now_utc();
    let clock = std::sync::Arc::new(taskgate_domain::clock::ManualClock::new(now));
    let app = TestApp::spawn_with(backend, |config| config.clock = clock.clone()).await;
    let team = team_on(app).await;
    let app = &team.app;
    let assert_4401 = |frame: Option<CloseFrame>| {
        let frame = frame.expect("a close frame");
        assert_eq!(u16::from(frame.code), 4401, "{frame:?}");
        frame.reason.to_string()
    };

    // Logout.
    let mut ws = Ws::connect(app, &team.mia).await;
    ws.subscribe("tasks", None).await;
    let response = app
        .request(Method::DELETE, "/auth", Some(&team.mia))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let started = std::time::Instant::now();
    let reason = assert_4401(ws.closed().await);
    assert!(reason.contains("revoked"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );

    // The password changed (every token of the user is revoked).
    let mut ws = Ws::connect(app, &team.nina).await;
    let response = app
        .send_json(
            Method::PATCH,
            "/users/nina",
            Some(&team.admin),
            &json!({"password": "a whole new secret 1"}),
        )
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_4401(ws.closed().await);

    // The user was deleted.
    let mut ws = Ws::connect(app, &team.adam).await;
    let response = app.delete("/users/adam", Some(&team.admin)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_4401(ws.closed().await);

    // The token expired.
    let mut ws = Ws::connect(app, &team.olga).await;
    clock.advance(Duration::from_secs(3601));
    let reason = assert_4401(ws.closed().await);
    assert!(reason.contains("expired"), "{reason}");
}

async fn limits_on_connections_and_subscriptions_answer_clearly(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.api.realtime.max_connections_per_user = 2;
        config.api.realtime.max_subscriptions = 3;
    })
    .await;
    let team: Team = team_on(app).await;
    let app = &team.app;
    let first = Ws::connect(app, &team.mia).await;
    let mut second = Ws::connect(app, &team.mia).await;
    let mut request = ws_url(app, "").into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", team.mia).parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["type"], "urn:taskgate:problem:too-many-connections");
        }
        other => panic!("a third connection must be refused: {other:?}"),
    }
    // Another user is not affected; closing one frees a slot.
    let _olga = Ws::connect(app, &team.olga).await;
    drop(first);
    let mut third = None;
    for _ in 0..50 {
        let mut request = ws_url(app, "").into_client_request().unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", team.mia).parse().unwrap(),
        );
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(request).await {
            third = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(third.is_some(), "a closed connection frees its slot");

    // Subscriptions per connection.
    second.subscribe("tasks", None).await;
    let mut projects = Vec::new();
    for _ in 0..3 {
        let project = json_of(
            app,
            Method::POST,
            "/projects",
            &team.mia,
            json!({"name": "P"}),
        )
        .await;
        projects.push(project["id"].as_str().unwrap().to_owned());
    }
    second
        .subscribe(&format!("project:{}", projects[0]), None)
        .await;
    second
        .subscribe(&format!("project:{}", projects[1]), None)
        .await;
    second
        .send(json!({"type": "subscribe", "topic": format!("project:{}", projects[2])}))
        .await;
    let refused = second.next().await;
    assert_eq!(refused["status"], 400);
    assert!(
        refused["detail"].as_str().unwrap().contains("at most 3"),
        "{refused}"
    );
    // Subscribing twice to one topic is refused too.
    second
        .send(json!({"type": "subscribe", "topic": "tasks"}))
        .await;
    assert_eq!(second.next().await["status"], 400);
}

async fn idle_sockets_are_pinged_and_silent_ones_dropped(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.api.realtime.ping_interval = Duration::from_secs(1);
    })
    .await;
    let admin = app.admin_token().await;
    // A client that reads answers pings (tungstenite does, as it reads) and
    // stays connected.
    let mut ws = Ws::connect(&app, &admin).await;
    let mut pings = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(3500) {
        match tokio::time::timeout(Duration::from_secs(2), ws.socket.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            other => panic!("expected pings only, got {other:?}"),
        }
    }
    assert!(pings >= 2, "{pings} pings in 3.5 s");
    ws.subscribe("tasks", None).await;

    // A client that never answers (it does not read, so sends no pong) is
    // dropped after two intervals.
    let silent = Ws::connect(&app, &admin).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut silent = silent;
    let ended = loop {
        match tokio::time::timeout(PATIENCE, silent.socket.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => continue,
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => break true,
            Ok(Some(Ok(other))) => panic!("unexpected {other:?}"),
            Err(_) => break false,
        }
    };
    assert!(ended, "a socket that never answers is dropped");
}

/// The token sent in `?token=` (or the header) appears in no log line, even
/// at the most verbose level: the binary runs as an operator runs it, and
/// its whole output is searched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_the_logs() {
    let binary = taskgate_e2e::workspace_binary("taskgate");
    let data = tempfile::tempdir().unwrap();
    let password = "operator of the log test";
    let mut child = tokio::process::Command::new(&binary)
        .arg("serve")
        .env("TASKGATE_ADDR", "127.0.0.1:0")
        .env("TASKGATE_TLS", "off")
        .env("TASKGATE_DATA_DIR", data.path())
        .env("TASKGATE_ADMIN_PASSWORD", password)
        .env("TASKGATE_LOG", "trace")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let collected = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (url_tx, url_rx) = tokio::sync::oneshot::channel();
    let mut url_tx = Some(url_tx);
    let sink = collected.clone();
    let read_err = tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt as _;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix("Taskgate is listening on ")
                && let Some(tx) = url_tx.take()
            {
                let _ = tx.send(url.trim().to_owned());
            }
            sink.lock().unwrap().push_str(&line);
            sink.lock().unwrap().push('\n');
        }
    });
    let sink = collected.clone();
    let read_out = tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let mut text = String::new();
        let mut stdout = stdout;
        let _ = stdout.read_to_string(&mut text).await;
        sink.lock().unwrap().push_str(&text);
    });
    let base = tokio::time::timeout(Duration::from_secs(30), url_rx)
        .await
        .expect("the server starts")
        .unwrap();
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{base}/auth"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let ws_base = base.replacen("http", "ws", 1);
    // In the query, in the header, and a bad one in the query.
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{ws_base}/ws?token={token}"))
        .await
        .unwrap();
    socket
        .send(Message::text(
            json!({"type": "subscribe", "topic": "tasks"}).to_string(),
        ))
        .await
        .unwrap();
    socket.next().await.unwrap().unwrap();
    socket.close(None).await.unwrap();
    let mut request = format!("{ws_base}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    drop(socket);
    let forged = format!("{token}x");
    assert!(
        tokio_tungstenite::connect_async(format!("{ws_base}/ws?token={forged}"))
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().await.unwrap();
    let _ = tokio::join!(read_err, read_out);
    let logs = collected.lock().unwrap().clone();
    assert!(
        logs.contains("/ws") || logs.contains("request"),
        "the server logged nothing?\n{logs}"
    );
    // Neither the token nor its signature (its last part) is anywhere.
    let signature = token.rsplit('.').next().unwrap();
    assert!(!logs.contains(&token), "the token is in the logs");
    assert!(
        !logs.contains(signature),
        "the token's signature is in the logs"
    );
}
