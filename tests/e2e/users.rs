//! Managing users through the API: the flows a client goes through.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::json;
use taskgate_app::settings::Settings;
use taskgate_domain::permission::Registration;
use taskgate_e2e::{Backend, PASSWORD, TestApp, assert_problem, on_each_backend, status_and_json};

on_each_backend!(
    admins_create_read_edit_and_delete_users,
    compatibility_routes_behave_like_the_main_ones,
    a_taken_username_is_409_in_any_case,
    the_last_admin_cannot_delete_itself,
    deleting_a_user_ends_all_their_sessions_at_once,
    changing_a_password_ends_the_other_sessions,
    a_level_change_takes_effect_on_the_next_request,
    listing_pages_through_every_user_once,
    open_registration_lets_anyone_sign_up_as_a_user,
    closed_registration_refuses_anonymous_sign_up,
    emails_are_unique_in_any_case_and_log_in,
);

/// E-mail addresses are unique regardless of case, on create and on edit;
/// a user logs in with theirs (JSON or form) as with the username; an
/// address is free again once its user changed it or is gone.
async fn emails_are_unique_in_any_case_and_log_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let create = |name: &'static str, email: &'static str| {
        let (app, admin) = (&app, admin.clone());
        async move {
            app.send_json(
                Method::POST,
                "/users",
                Some(&admin),
                &json!({"username": name, "password": PASSWORD, "email": email}),
            )
            .await
        }
    };
    assert_eq!(
        create("alice", "Alice@Example.com").await.status(),
        StatusCode::CREATED
    );
    assert_problem(
        create("bob", "alice@example.COM").await,
        StatusCode::CONFLICT,
        "email-taken",
    )
    .await;
    assert_eq!(
        create("bob", "bob@example.com").await.status(),
        StatusCode::CREATED
    );
    let edit = |name: &'static str, email: &'static str| {
        let (app, admin) = (&app, admin.clone());
        async move {
            app.send_json(
                Method::PATCH,
                &format!("/users/{name}"),
                Some(&admin),
                &json!({"email": email}),
            )
            .await
        }
    };
    assert_problem(
        edit("bob", "ALICE@example.com").await,
        StatusCode::CONFLICT,
        "email-taken",
    )
    .await;
    let (_, bob) = status_and_json(app.get("/users/bob", Some(&admin)).await).await;
    assert_eq!(
        bob["email"], "bob@example.com",
        "a refused edit changes nothing"
    );
    // Another spelling of one's own address is fine.
    assert_eq!(
        edit("alice", "alice@EXAMPLE.com").await.status(),
        StatusCode::OK
    );

    // Logging in with the address, in any case, JSON or form.
    let login = app
        .send_json(
            Method::POST,
            "/auth",
            None,
            &json!({"email": "ALICE@example.com", "password": PASSWORD}),
        )
        .await;
    let (status, body) = status_and_json(login).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, me) = status_and_json(app.get("/", Some(body["token"].as_str().unwrap())).await).await;
    assert_eq!(me["user"]["username"], "alice");
    let form = app
        .request(Method::POST, "/auth", None)
        .form(&[("email", "bob@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    // An unknown address and a wrong password answer alike.
    let unknown = app
        .send_json(
            Method::POST,
            "/auth",
            None,
            &json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;
    let (_, unknown) = status_and_json(unknown).await;
    let wrong = app
        .send_json(
            Method::POST,
            "/auth",
            None,
            &json!({"email": "bob@example.com", "password": "not the right passphrase"}),
        )
        .await;
    let (_, mut wrong) = status_and_json(wrong).await;
    let mut unknown = unknown;
    unknown.as_object_mut().unwrap().remove("request_id");
    wrong.as_object_mut().unwrap().remove("request_id");
    assert_eq!(unknown, wrong);
    assert_problem(
        app.send_json(
            Method::POST,
            "/auth",
            None,
            &json!({"username": "bob", "email": "bob@example.com", "password": PASSWORD}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-field",
    )
    .await;

    // Released addresses are free again: changed away, or their user gone.
    assert_eq!(
        edit("bob", "robert@example.com").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        create("carol", "BOB@example.com").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.delete("/users/alice", Some(&admin)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        create("dave", "alice@example.com").await.status(),
        StatusCode::CREATED
    );
}

async fn admins_create_read_edit_and_delete_users(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let response = app
        .send_json(
            Method::POST,
            "/users",
            Some(&admin),
            &json!({"username": "Alice", "password": PASSWORD, "email": "alice@example.com",
                    "profile": {"team": "blue", "langs": ["rust", "sql"]}}),
        )
        .await;
    assert_eq!(response.headers()["location"], "/users/alice");
    let (status, created) = status_and_json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["username"], "alice");
    assert_eq!(created["level"], "user");
    assert_eq!(created["email"], "alice@example.com");
    assert_eq!(
        created["profile"],
        json!({"team": "blue", "langs": ["rust", "sql"]})
    );
    assert!(created.get("password").is_none() && created.get("password_hash").is_none());

    let (status, read) = status_and_json(app.get("/users/alice", Some(&admin)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, created);

    let (status, edited) = status_and_json(
        app.send_json(
            Method::PATCH,
            "/users/alice",
            Some(&admin),
            &json!({"email": null, "profile": {"team": "red"}, "level": "admin"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert!(edited.get("email").is_none(), "{edited}");
    assert_eq!(edited["profile"], json!({"team": "red"}));
    assert_eq!(edited["level"], "admin");
    assert_eq!(edited["created_at"], created["created_at"]);
    let time = |v: &serde_json::Value| {
        let text = v.as_str().unwrap();
        assert_eq!(
            text.len(),
            "2026-01-01T00:00:00.000Z".len(),
            "not the API's timestamp format: {text}"
        );
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    };
    assert!(
        time(&edited["updated_at"]) >= time(&created["updated_at"]),
        "{created} then {edited}"
    );

    let response = app.delete("/users/alice", Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get("/users/alice", Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_problem(
        app.delete("/users/alice", Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}

async fn compatibility_routes_behave_like_the_main_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let response = app
        .send_json(
            Method::POST,
            "/user",
            Some(&admin),
            &json!({"username": "bob", "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let (status, bob) = status_and_json(app.get("/user/bob", Some(&admin)).await).await;
    assert_eq!(
        (status, bob["username"].clone()),
        (StatusCode::OK, json!("bob"))
    );
    let (status, bob) = status_and_json(
        app.send_json(
            Method::PUT,
            "/user/bob",
            Some(&admin),
            &json!({"email": "bob@example.com"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // PUT is a partial update, like PATCH: the level is untouched.
    assert_eq!(
        (bob["email"].clone(), bob["level"].clone()),
        (json!("bob@example.com"), json!("user"))
    );
    let bob_token = app.login("bob", PASSWORD).await;
    assert_problem(
        app.get("/user/admin", Some(&bob_token)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.delete("/user/bob", Some(&admin)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.get("/user/bob", Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}

async fn a_taken_username_is_409_in_any_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "carol", "user").await;
    let response = app
        .send_json(
            Method::POST,
            "/users",
            Some(&admin),
            &json!({"username": "CAROL", "password": PASSWORD, "level": "admin"}),
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT, "username-taken").await;
    let (_, carol) = status_and_json(app.get("/users/carol", Some(&admin)).await).await;
    assert_eq!(
        carol["level"], "user",
        "the failed create changed the stored user"
    );
}

async fn the_last_admin_cannot_delete_itself(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    assert_problem(
        app.delete("/users/admin", Some(&admin)).await,
        StatusCode::CONFLICT,
        "last-admin",
    )
    .await;
    // With a second admin, the first may go.
    let second = app.user_with_token(&admin, "second", "admin").await;
    assert_eq!(
        app.delete("/users/admin", Some(&admin)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.delete("/users/second", Some(&second)).await,
        StatusCode::CONFLICT,
        "last-admin",
    )
    .await;
    let (status, _) = status_and_json(app.get("/users/second", Some(&second)).await).await;
    assert_eq!(status, StatusCode::OK);
}

async fn deleting_a_user_ends_all_their_sessions_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let first = app.user_with_token(&admin, "dave", "user").await;
    let second = app.login("dave", PASSWORD).await;
    assert_eq!(
        app.delete("/users/dave", Some(&admin)).await.status(),
        StatusCode::NO_CONTENT
    );
    for token in [&first, &second] {
        assert_problem(
            app.get("/", Some(token)).await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        )
        .await;
    }
    assert_problem(
        app.try_login("dave", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
}

async fn changing_a_password_ends_the_other_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let current = app.user_with_token(&admin, "erin", "user").await;
    let other = app.login("erin", PASSWORD).await;
    let new_password = "a completely new passphrase";
    let response = app
        .send_json(
            Method::PATCH,
            "/users/erin",
            Some(&current),
            &json!({"password": new_password}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.get("/", Some(&current)).await.status(),
        StatusCode::OK,
        "the session that changed it survives"
    );
    assert_problem(
        app.get("/", Some(&other)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert_problem(
        app.try_login("erin", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    let fresh = app.login("erin", new_password).await;
    // An admin resetting the password ends every session of the user.
    let response = app
        .send_json(
            Method::PATCH,
            "/users/erin",
            Some(&admin),
            &json!({"password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    for token in [&current, &fresh] {
        assert_problem(
            app.get("/", Some(token)).await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        )
        .await;
    }
    app.login("erin", PASSWORD).await;
}

async fn a_level_change_takes_effect_on_the_next_request(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let frank = app.user_with_token(&admin, "frank", "user").await;
    assert_problem(
        app.get("/users", Some(&frank)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let promote = app
        .send_json(
            Method::PATCH,
            "/users/frank",
            Some(&admin),
            &json!({"level": "admin"}),
        )
        .await;
    assert_eq!(promote.status(), StatusCode::OK);
    assert_eq!(
        app.get("/users", Some(&frank)).await.status(),
        StatusCode::OK,
        "same token, new level"
    );
    let demote = app
        .send_json(
            Method::PATCH,
            "/users/frank",
            Some(&admin),
            &json!({"level": "user"}),
        )
        .await;
    assert_eq!(demote.status(), StatusCode::OK);
    assert_problem(
        app.get("/users", Some(&frank)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

async fn listing_pages_through_every_user_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let mut expected = BTreeSet::from(["admin".to_owned()]);
    for i in 0..6 {
        let name = format!("member{i}");
        app.create_user(&admin, &name, "user").await;
        expected.insert(name);
    }
    let mut seen = Vec::new();
    let mut path = "/users?limit=3".to_owned();
    for _ in 0..10 {
        let (status, page) = status_and_json(app.get(&path, Some(&admin)).await).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(
            items
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(cursor) => path = format!("/users?limit=3&cursor={cursor}"),
            None => {
                assert!(page["next"].is_null());
                break;
            }
        }
    }
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);
}

async fn open_registration_lets_anyone_sign_up_as_a_user(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.api = Settings {
            registration: Registration::Open,
            ..config.api.clone()
        };
    })
    .await;
    let response = app
        .send_json(
            Method::POST,
            "/users",
            None,
            &json!({"username": "grace", "password": PASSWORD, "profile": {"bio": "hi"}, "email": "g@example.com"}),
        )
        .await;
    let (status, grace) = status_and_json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{grace}");
    assert_eq!(
        (grace["level"].clone(), grace["profile"].clone()),
        (json!("user"), json!({"bio": "hi"}))
    );
    let no_email = app
        .send_json(
            Method::POST,
            "/users",
            None,
            &json!({"username": "heidi", "password": PASSWORD}),
        )
        .await;
    assert_eq!(no_email.status(), StatusCode::CREATED);
    let as_admin = app
        .send_json(
            Method::POST,
            "/users",
            None,
            &json!({"username": "ivan", "password": PASSWORD, "level": "admin"}),
        )
        .await;
    assert_problem(as_admin, StatusCode::FORBIDDEN, "forbidden").await;
    let admin = app.admin_token().await;
    assert_problem(
        app.get("/users/ivan", Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;

    let token = app.login("grace", PASSWORD).await;
    assert_problem(
        app.delete("/users/heidi", Some(&token)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.delete("/users/grace", Some(&token)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.get("/", Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert_problem(
        app.try_login("grace", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
}

async fn closed_registration_refuses_anonymous_sign_up(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .send_json(
            Method::POST,
            "/users",
            None,
            &json!({"username": "judy", "password": PASSWORD}),
        )
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let admin = app.admin_token().await;
    let users = app.all_users(&admin).await;
    assert_eq!(users.len(), 1, "{users:?}");
}
