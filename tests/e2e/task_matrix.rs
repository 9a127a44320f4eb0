//! The Tasks rows of the permission matrix (docs/ARCHITECTURE.md), walked
//! cell by cell on each store: status, cancel and events of a task by who
//! owns it; starting each kind; listing another owner's tasks. A refused
//! request must leave the task's log exactly as it was.

use reqwest::Method;
use serde_json::json;
use taskgate_e2e::{Backend, TestApp, on_each_backend, status_and_json};

on_each_backend!(tasks_rows);

#[derive(Clone, Copy, Debug)]
enum Who {
    Anonymous,
    User,
    Admin,
}

/// Whose task a row acts on.
#[derive(Clone, Copy, Debug)]
enum Owner {
    Own,
    AUser,
    AnotherAdmin,
    Nobody,
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Status,
    Cancel,
    Events,
}

async fn tasks_rows(backend: Backend) {
    use Action::*;
    use Owner::*;
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let user = app.user_with_token(&admin, "member", "user").await;
    let plain = app.user_with_token(&admin, "plain", "user").await;
    let other_admin = app.user_with_token(&admin, "boss", "admin").await;
    let token = |who: Who| match who {
        Who::Anonymous => None,
        Who::User => Some(user.clone()),
        Who::Admin => Some(admin.clone()),
    };

    let mut rows = Vec::new();
    for action in [Status, Cancel, Events] {
        rows.extend([
            (Who::User, action, Own, 200),
            (Who::User, action, AUser, 403),
            (Who::User, action, AnotherAdmin, 403),
            (Who::User, action, Nobody, 404),
            (Who::Admin, action, Own, 200),
            (Who::Admin, action, AUser, 200),
            (Who::Admin, action, AnotherAdmin, 403),
            (Who::Admin, action, Nobody, 404),
            (Who::Anonymous, action, AUser, 401),
        ]);
    }
    for (i, (who, action, owner, expected)) in rows.into_iter().enumerate() {
        // A fresh, long-running task per row, so a cancel cannot affect another row.
        let owner_token = match (owner, who) {
            (Own, Who::User) => Some(user.clone()),
            (Own, _) => Some(admin.clone()),
            (AUser, Who::User) => Some(plain.clone()),
            (AUser, _) => Some(user.clone()),
            (AnotherAdmin, _) => Some(other_admin.clone()),
            (Nobody, _) => None,
        };
        let (id, before) = match &owner_token {
            Some(owner_token) => {
                let task = app
                    .start_task(owner_token, json!({"type": "delay", "seconds": 3600}))
                    .await;
                let id = task["id"].as_str().unwrap().to_owned();
                let before = app.task_events(owner_token, &id).await;
                (id, Some(before))
            }
            None => (uuid::Uuid::now_v7().to_string(), None),
        };
        let (method, path) = match action {
            Status => (Method::GET, format!("/tasks/{id}")),
            Cancel => (Method::POST, format!("/tasks/{id}/cancel")),
            Events => (Method::GET, format!("/tasks/{id}/events")),
        };
        let response = app
            .request(method, &path, token(who).as_deref())
            .send()
            .await
            .unwrap();
        let (status, body) = status_and_json(response).await;
        assert_eq!(
            status.as_u16(),
            expected,
            "row {i}: {who:?} {action:?} on a task owned by {owner:?}: {body}"
        );
        if let (Some(before), Some(owner_token)) = (before, &owner_token)
            && !status.is_success()
        {
            assert_eq!(
                app.task_events(owner_token, &id).await,
                before,
                "row {i} was refused but changed the task"
            );
        }
    }

    // Starting: delays for everyone signed in, scripts for admins only.
    for (who, kind, expected) in [
        (Who::User, "delay", 202),
        (Who::User, "js", 403),
        (Who::Admin, "delay", 202),
        (Who::Admin, "js", 202),
        (Who::Anonymous, "delay", 401),
    ] {
        let body = match kind {
            "delay" => json!({"type": "delay", "seconds": 1}),
            _ => json!({"type": "js", "code": "1"}),
        };
        let response = app
            .send_json(Method::POST, "/tasks", token(who).as_deref(), &body)
            .await;
        let (status, answer) = status_and_json(response).await;
        assert_eq!(
            status.as_u16(),
            expected,
            "{who:?} starts a {kind} task: {answer}"
        );
    }

    // Listing another owner's tasks with ?owner=.
    for (who, owner, expected) in [
        (Who::User, "member", 200),
        (Who::User, "plain", 403),
        (Who::Admin, "plain", 200),
        (Who::Admin, "boss", 403),
        (Who::Admin, "nobody", 404),
        (Who::Anonymous, "plain", 401),
    ] {
        let path = format!("/tasks?owner={owner}");
        let (status, answer) = status_and_json(app.get(&path, token(who).as_deref()).await).await;
        assert_eq!(
            status.as_u16(),
            expected,
            "{who:?} lists {owner}'s tasks: {answer}"
        );
        if status.is_success() {
            let owners: Vec<&str> = answer["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["owner"].as_str().unwrap())
                .collect();
            assert!(
                !owners.is_empty() && owners.iter().all(|o| *o == owner),
                "{answer}"
            );
        }
    }
}
