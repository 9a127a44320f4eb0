//! Logging in and out, and the root greeting.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use taskgate_e2e::{
    ADMIN_PASSWORD, Backend, PASSWORD, TestApp, assert_problem, on_each_backend, status_and_json,
};

use taskgate_domain::clock::ManualClock;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

on_each_backend!(
    root_says_hello_without_a_token,
    root_shows_the_callers_own_user_with_a_token,
    login_accepts_json_and_returns_a_bearer_token,
    login_accepts_a_form_encoded_body,
    unknown_user_and_wrong_password_get_the_same_401,
    usernames_log_in_case_insensitively,
    logout_revokes_only_the_token_used,
    logout_needs_a_token,
    a_token_stops_working_when_its_lifetime_has_passed,
);

/// With the server's clock under the test's control: a token works through
/// its last second and is refused as expired after it, with no sleeping.
async fn a_token_stops_working_when_its_lifetime_has_passed(backend: Backend) {
    let clock = Arc::new(ManualClock::new(taskgate_domain::now()));
    let app = TestApp::spawn_with(backend, |config| {
        config.api.token_ttl = Duration::from_secs(120);
        config.clock = clock.clone();
    })
    .await;
    let token = app.admin_token().await;
    clock.advance(Duration::from_secs(119));
    assert_eq!(app.get("/", Some(&token)).await.status(), StatusCode::OK);
    clock.advance(Duration::from_secs(2));
    let problem = assert_problem(
        app.get("/", Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert_eq!(problem["detail"], "the token has expired; log in again");
    // A new login starts a new lifetime.
    let fresh = app.admin_token().await;
    assert_eq!(app.get("/", Some(&fresh)).await.status(), StatusCode::OK);
}

async fn root_says_hello_without_a_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = status_and_json(app.get("/", None).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"message": "Hello World"}));
}

async fn root_shows_the_callers_own_user_with_a_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let (status, body) = status_and_json(app.get("/", Some(&alice)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["message"], "Hello World");
    assert_eq!(body["user"]["username"], "alice");
    assert_eq!(body["user"]["level"], "user");
    let fields: Vec<&String> = body["user"].as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        ["created_at", "level", "updated_at", "username"],
        "{body}"
    );
}

async fn login_accepts_json_and_returns_a_bearer_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let before = OffsetDateTime::now_utc();
    let response = app.try_login("admin", ADMIN_PASSWORD).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let expires_at = OffsetDateTime::parse(body["expires_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let lifetime = (expires_at - before).whole_seconds();
    assert!(
        (3598..=3601).contains(&lifetime),
        "expires_at {expires_at} is not an hour away"
    );
    assert!(
        body["expires_at"].as_str().unwrap().ends_with('Z'),
        "not UTC: {body}"
    );
    let token = body["token"].as_str().unwrap();
    let (status, _) = status_and_json(app.get("/users", Some(token)).await).await;
    assert_eq!(status, StatusCode::OK);
}

async fn login_accepts_a_form_encoded_body(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .request(Method::POST, "/auth", None)
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["token"].is_string());
}

async fn unknown_user_and_wrong_password_get_the_same_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut bodies = Vec::new();
    for (username, password) in [
        ("admin", "not the admin password at all"),
        ("nobody", PASSWORD),
        ("not a valid name!", PASSWORD),
    ] {
        let response = app.try_login(username, password).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer realm="taskgate""#
        );
        let mut body = assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        body.as_object_mut().unwrap().remove("request_id");
        bodies.push(body);
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[0], bodies[2]);
    let text = bodies[0].to_string();
    assert!(
        !text.contains("nobody") && !text.contains("admin"),
        "{text}"
    );
}

async fn usernames_log_in_case_insensitively(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.login("ADMIN", ADMIN_PASSWORD).await;
    let (_, body) = status_and_json(app.get("/", Some(&token)).await).await;
    assert_eq!(body["user"]["username"], "admin");
}

async fn logout_revokes_only_the_token_used(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = app.admin_token().await;
    let second = app.admin_token().await;
    let response = app.delete("/auth", Some(&first)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.text().await.unwrap().is_empty());
    let body = assert_problem(
        app.get("/", Some(&first)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    let (status, _) = status_and_json(app.get("/", Some(&second)).await).await;
    assert_eq!(status, StatusCode::OK);
    // Logging out twice with the same token is refused like any revoked token.
    assert_problem(
        app.delete("/auth", Some(&first)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
}

async fn logout_needs_a_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body: Value = assert_problem(
        app.delete("/auth", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("Bearer"),
        "{body}"
    );
}
