//! Brute-force protection on `POST /auth` and the security audit log.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskgate_domain::clock::{Clock, ManualClock, SystemClock};
use taskgate_domain::security::LoginThrottle;
use taskgate_e2e::{
    ADMIN_PASSWORD, Backend, PASSWORD, TestApp, assert_problem, on_each_backend, status_and_json,
};

on_each_backend!(
    repeated_failures_lock_a_username_whether_or_not_it_exists,
    a_lock_ends_and_grows_with_each_further_failure,
    a_known_device_logs_in_while_its_username_is_locked,
    parallel_guesses_are_each_counted,
    a_success_clears_the_failures,
    the_security_log_records_logins_and_account_changes,
    only_admins_read_the_security_log,
    an_admin_may_reset_another_admins_password_and_it_is_on_record,
);

/// A server whose logins lock after `free` failures, for `backoff` at first.
async fn app_with_throttle(backend: Backend, free: u32, backoff: Duration) -> TestApp {
    app_with_throttle_and_clock(backend, free, backoff, Arc::new(SystemClock)).await
}

/// The same, telling the time by `clock`.
async fn app_with_throttle_and_clock(
    backend: Backend,
    free: u32,
    backoff: Duration,
    clock: Arc<dyn Clock>,
) -> TestApp {
    TestApp::spawn_with(backend, |config| {
        config.api.login = LoginThrottle {
            free_failures: free,
            backoff,
            max_lock: Duration::from_secs(3600),
            ..LoginThrottle::default()
        };
        config.clock = clock;
    })
    .await
}

async fn login_body(app: &TestApp, body: Value) -> reqwest::Response {
    app.send_json(Method::POST, "/auth", None, &body).await
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A 429 `login-locked`; returns its Retry-After and body without the request id.
async fn assert_locked(response: reqwest::Response) -> (u64, Value) {
    let wait = retry_after(&response);
    let mut body = assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "login-locked").await;
    body.as_object_mut().unwrap().remove("request_id");
    (wait, body)
}

async fn repeated_failures_lock_a_username_whether_or_not_it_exists(backend: Backend) {
    let app = app_with_throttle(backend, 3, Duration::from_secs(600)).await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "alice", "user").await;

    let mut answers = Vec::new();
    for name in ["alice", "nobody"] {
        for _ in 0..3 {
            let response = app.try_login(name, "not the password at all").await;
            assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        }
        let (wait, body) =
            assert_locked(app.try_login(name, "not the password at all").await).await;
        assert!((590..=600).contains(&wait), "Retry-After {wait}");
        // Locked means locked: the right password is not even checked.
        let (_, same) = assert_locked(app.try_login(name, PASSWORD).await).await;
        assert_eq!(same, body);
        answers.push(body);
    }
    assert_eq!(
        answers[0], answers[1],
        "a locked account and a locked unknown name answer alike"
    );
    // Other usernames are not affected.
    app.login("admin", ADMIN_PASSWORD).await;
}

/// Time is the server's manual clock here: the test moves it on instead of
/// sleeping through the locks.
async fn a_lock_ends_and_grows_with_each_further_failure(backend: Backend) {
    let clock = Arc::new(ManualClock::new(taskgate_domain::now()));
    let app = app_with_throttle_and_clock(backend, 2, Duration::from_secs(1), clock.clone()).await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "alice", "user").await;
    for _ in 0..2 {
        app.try_login("alice", "wrong password, twice over").await;
    }
    let (first, _) = assert_locked(app.try_login("alice", PASSWORD).await).await;
    assert_eq!(first, 1);
    // Not yet: a lock holds until its end.
    clock.advance(Duration::from_millis(900));
    assert_locked(app.try_login("alice", PASSWORD).await).await;
    clock.advance(Duration::from_millis(200));
    // The lock has ended; this failure locks for twice as long.
    let response = app.try_login("alice", "wrong password, third time").await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let (second, _) = assert_locked(app.try_login("alice", PASSWORD).await).await;
    assert_eq!(second, 2);
    clock.advance(Duration::from_millis(2100));
    app.login("alice", PASSWORD).await;
}

async fn a_known_device_logs_in_while_its_username_is_locked(backend: Backend) {
    let app = app_with_throttle(backend, 3, Duration::from_secs(600)).await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "alice", "user").await;
    let (status, first) = status_and_json(app.try_login("alice", PASSWORD).await).await;
    assert_eq!(status, StatusCode::OK);
    let device = first["device_token"].as_str().expect("a device token");
    assert_ne!(device, first["token"].as_str().unwrap());
    // A device token is no bearer token.
    assert_problem(
        app.get("/", Some(device)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;

    // An attacker locks alice out for everyone unknown...
    for _ in 0..4 {
        app.try_login("alice", "attacker guess number n").await;
    }
    assert_locked(app.try_login("alice", PASSWORD).await).await;
    // ...but not alice on her device,
    let response = login_body(
        &app,
        json!({"username": "alice", "password": PASSWORD, "device_token": device}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    // and a device token for another user gives no way around the lock.
    let (_, admin_login) = status_and_json(app.try_login("admin", ADMIN_PASSWORD).await).await;
    let response = login_body(
        &app,
        json!({"username": "alice", "password": PASSWORD, "device_token": admin_login["device_token"]}),
    )
    .await;
    assert_locked(response).await;
    // Guessing on a device locks that device alone.
    for _ in 0..3 {
        let response = login_body(
            &app,
            json!({"username": "alice", "password": "guess on device", "device_token": device}),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = login_body(
        &app,
        json!({"username": "alice", "password": PASSWORD, "device_token": device}),
    )
    .await;
    assert_locked(response).await;
}

async fn parallel_guesses_are_each_counted(backend: Backend) {
    let app = app_with_throttle(backend, 5, Duration::from_secs(600)).await;
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (client, url) = (app.client.clone(), app.url("/auth"));
        guesses.spawn(async move {
            let body =
                json!({"username": "alice", "password": format!("parallel guess {i:02} xx")});
            client.post(url).json(&body).send().await.unwrap().status()
        });
    }
    let statuses = guesses.join_all().await;
    let heard = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((heard, refused), (5, 15), "{statuses:?}");
}

async fn a_success_clears_the_failures(backend: Backend) {
    let app = app_with_throttle(backend, 3, Duration::from_secs(600)).await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "alice", "user").await;
    for _ in 0..2 {
        app.try_login("alice", "a wrong password here").await;
    }
    app.login("alice", PASSWORD).await;
    for _ in 0..2 {
        app.try_login("alice", "a wrong password here").await;
    }
    // Four failures in all, but never three in a row.
    app.login("alice", PASSWORD).await;
}

/// The rule for admin-on-admin actions (docs/adr/0017): admins administer
/// every account, other admins' included (a password reset, a level
/// change, a deletion), as the contract's matrix says; what guards it is the
/// record, not a refusal. The reset is in the security log (actor, subject,
/// the field, never its value) and ends every session of the admin whose
/// password it was.
async fn an_admin_may_reset_another_admins_password_and_it_is_on_record(backend: Backend) {
    let app = app_with_throttle(backend, 5, Duration::from_secs(60)).await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "root2", "admin").await;
    let other = app.login("root2", PASSWORD).await;
    let new_password = "another admin's fresh passphrase";
    let response = app
        .send_json(
            Method::PATCH,
            "/users/root2",
            Some(&admin),
            &json!({"password": new_password}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.get("/", Some(&other)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.login("root2", new_password).await;
    let events = security_log(&app, &admin).await;
    let reset = events
        .iter()
        .find(|e| e["kind"] == "user-updated" && e["subject"] == "root2")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(reset["actor"], "admin");
    assert!(!reset.to_string().contains(new_password));
}

/// Every event of the security log, newest first, through the API.
async fn security_log(app: &TestApp, admin: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut path = "/audit?limit=3".to_owned();
    loop {
        let (status, page) = status_and_json(app.get(&path, Some(admin)).await).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        events.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => path = format!("/audit?limit=3&cursor={next}"),
            None => return events,
        }
    }
}

async fn the_security_log_records_logins_and_account_changes(backend: Backend) {
    let app = app_with_throttle(backend, 1, Duration::from_secs(600)).await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "alice", "user").await;
    let alice = app.login("alice", PASSWORD).await;
    let new_password = "a brand new passphrase, not hers";
    let response = app
        .send_json(
            Method::PATCH,
            "/users/alice",
            Some(&admin),
            &json!({"password": new_password, "profile": {"team": "blue"}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.try_login("alice", "a guess that is wrong").await;
    app.try_login("alice", "another wrong guess").await;
    let bob = app.user_with_token(&admin, "bob", "user").await;
    assert_eq!(app.delete("/auth", Some(&bob)).await.status(), 204);
    assert_eq!(app.delete("/users/alice", Some(&admin)).await.status(), 204);

    let events = security_log(&app, &admin).await;
    let text = serde_json::to_string(&events).unwrap();
    for secret in [
        PASSWORD,
        ADMIN_PASSWORD,
        new_password,
        &admin,
        &alice,
        &bob,
        "a guess that is wrong",
    ] {
        assert!(!text.contains(secret), "the log holds a secret: {text}");
    }
    let summary: Vec<(String, Value, String)> = events
        .iter()
        .rev()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["actor"].clone(),
                e["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("login-succeeded", Value::Null, "admin"),
        ("user-created", json!("admin"), "alice"),
        ("login-succeeded", Value::Null, "alice"),
        ("user-updated", json!("admin"), "alice"),
        ("login-failed", Value::Null, "alice"),
        ("login-locked", Value::Null, "alice"),
        ("user-created", json!("admin"), "bob"),
        ("login-succeeded", Value::Null, "bob"),
        ("token-revoked", json!("bob"), "bob"),
        ("user-deleted", json!("admin"), "alice"),
    ];
    let expected: Vec<(String, Value, String)> = expected
        .into_iter()
        .map(|(k, a, s)| (k.to_owned(), a, s.to_owned()))
        .collect();
    assert_eq!(summary, expected);

    let updated = events.iter().find(|e| e["kind"] == "user-updated").unwrap();
    assert_eq!(updated["detail"]["fields"], json!(["password", "profile"]));
    assert_eq!(updated["detail"]["tokens_revoked"], 1);
    let failed = events.iter().find(|e| e["kind"] == "login-failed").unwrap();
    assert_eq!(failed["detail"]["failures"], 1);
    assert!(failed["detail"]["locked_until"].is_string(), "{failed}");
    let deleted = events.iter().find(|e| e["kind"] == "user-deleted").unwrap();
    assert_eq!(deleted["detail"]["tokens_revoked"], 0);
    for event in &events {
        assert!(event["request_id"].is_string(), "{event}");
        assert!(event["at"].is_string(), "{event}");
    }
}

async fn only_admins_read_the_security_log(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    assert_problem(
        app.get("/audit", Some(&alice)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.get("/audit", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert_problem(
        app.get("/audit?cursor=nope", Some(&admin)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-field",
    )
    .await;
}
