//! Projects and their members through the API, on both stores: the life of
//! a project, membership, hand-over, and the permission matrix walked cell
//! by cell (every action × owner, project admin, member, non-member,
//! global admin, anonymous) over real HTTP.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskgate_e2e::{Backend, TestApp, assert_problem, on_each_backend, status_and_json};

on_each_backend!(
    a_project_is_created_read_edited_and_deleted,
    members_are_added_changed_and_removed,
    ownership_goes_only_to_a_project_admin,
    the_project_matrix_cell_by_cell,
    no_one_can_change_the_owners_role,
);

/// A server with olga (owner), adam (project admin), mia (member), nina
/// (no member) and the global admin, and their tokens. Shared with the
/// items tests.
pub(crate) struct Team {
    pub app: TestApp,
    pub admin: String,
    pub olga: String,
    pub adam: String,
    pub mia: String,
    pub nina: String,
}

pub(crate) async fn team(backend: Backend) -> Team {
    team_on(TestApp::spawn(backend).await).await
}

/// [`team`] on a server the caller started (e.g. with a manual clock).
pub(crate) async fn team_on(app: TestApp) -> Team {
    let admin = app.admin_token().await;
    let olga = app.user_with_token(&admin, "olga", "user").await;
    let adam = app.user_with_token(&admin, "adam", "user").await;
    let mia = app.user_with_token(&admin, "mia", "user").await;
    let nina = app.user_with_token(&admin, "nina", "user").await;
    Team {
        app,
        admin,
        olga,
        adam,
        mia,
        nina,
    }
}

impl Team {
    /// The columns of the permission matrices: owner, project admin,
    /// member, non-member, global admin, anonymous.
    pub(crate) fn callers(&self) -> [(&'static str, Option<&str>); 6] {
        [
            ("olga", Some(self.olga.as_str())),
            ("adam", Some(self.adam.as_str())),
            ("mia", Some(self.mia.as_str())),
            ("nina", Some(self.nina.as_str())),
            ("admin", Some(self.admin.as_str())),
            ("anonymous", None),
        ]
    }

    /// Sends one matrix cell's request and checks its status.
    pub(crate) async fn expect(
        &self,
        method: &Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        status: u16,
        cell: &str,
    ) {
        let mut request = self.app.request(method.clone(), path, token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status().as_u16(),
            status,
            "{cell}: {}",
            response.text().await.unwrap()
        );
    }

    /// A project of olga's with adam as an admin and mia as a member.
    pub(crate) async fn project(&self) -> String {
        let (status, project) = status_and_json(
            self.app
                .send_json(
                    Method::POST,
                    "/projects",
                    Some(&self.olga),
                    &json!({"name": "Launch"}),
                )
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{project}");
        let id = project["id"].as_str().unwrap().to_owned();
        for (who, role) in [("adam", "admin"), ("mia", "member")] {
            let response = self
                .app
                .send_json(
                    Method::PUT,
                    &format!("/projects/{id}/members/{who}"),
                    Some(&self.olga),
                    &json!({"role": role}),
                )
                .await;
            assert_eq!(response.status(), StatusCode::CREATED);
        }
        id
    }
}

async fn a_project_is_created_read_edited_and_deleted(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let response = app
        .send_json(
            Method::POST,
            "/projects",
            Some(&team.olga),
            &json!({"name": "Launch", "description": "Everything for the launch"}),
        )
        .await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (status, project) = status_and_json(response).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = project["id"].as_str().unwrap();
    assert_eq!(location, format!("/projects/{id}"));
    assert_eq!(project["owner"], "olga");
    assert_eq!(project["role"], "admin");
    assert_eq!(project["description"], "Everything for the launch");

    let (status, read) = status_and_json(app.get(&location, Some(&team.olga)).await).await;
    assert_eq!((status, &read), (StatusCode::OK, &project));
    let (_, mine) = status_and_json(app.get("/projects", Some(&team.olga)).await).await;
    assert_eq!(mine["items"], json!([project]));
    let (_, ninas) = status_and_json(app.get("/projects", Some(&team.nina)).await).await;
    assert_eq!(ninas["items"], json!([]));
    // Every project, for global admins only.
    let (status, all) =
        status_and_json(app.get("/projects?all=true", Some(&team.admin)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["items"][0]["id"], id);
    assert_problem(
        app.get("/projects?all=true", Some(&team.nina)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    let (status, edited) = status_and_json(
        app.send_json(
            Method::PATCH,
            &location,
            Some(&team.olga),
            &json!({"name": "Launch, phase 2", "description": null}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["name"], "Launch, phase 2");
    assert!(edited.get("description").is_none(), "{edited}");

    // Bad input changes nothing.
    for body in [
        json!({"name": "   "}),
        json!({"name": "x".repeat(201)}),
        json!({"colour": "red"}),
    ] {
        let problem = assert_problem(
            app.send_json(Method::PATCH, &location, Some(&team.olga), &body)
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        )
        .await;
        assert!(problem["errors"].is_array(), "{problem}");
    }
    let (_, unchanged) = status_and_json(app.get(&location, Some(&team.olga)).await).await;
    assert_eq!(unchanged, edited);

    assert_eq!(
        app.delete(&location, Some(&team.olga)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.get(&location, Some(&team.olga)).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    let (_, mine) = status_and_json(app.get("/projects", Some(&team.olga)).await).await;
    assert_eq!(mine["items"], json!([]));
    // An id that cannot exist is as missing as one that does not.
    assert_problem(
        app.get("/projects/nope", Some(&team.olga)).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}

async fn members_are_added_changed_and_removed(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let id = team.project().await;
    let members = |token: String| {
        let path = format!("/projects/{id}/members");
        async move {
            let (status, list) = status_and_json(app.get(&path, Some(&token)).await).await;
            assert_eq!(status, StatusCode::OK, "{list}");
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["username"].as_str().unwrap().to_owned(),
                        m["role"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let pairs = |names: &[(&str, &str)]| {
        names
            .iter()
            .map(|(u, r)| (u.to_string(), r.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        members(team.mia.clone()).await,
        pairs(&[("adam", "admin"), ("mia", "member"), ("olga", "admin")])
    );
    // The same role again: 200, nothing changes; another role: 200.
    let put = |who: &'static str, role: &'static str| {
        let (path, token) = (format!("/projects/{id}/members/{who}"), team.olga.clone());
        async move {
            app.send_json(Method::PUT, &path, Some(&token), &json!({"role": role}))
                .await
        }
    };
    let (status, member) = status_and_json(put("mia", "member").await).await;
    assert_eq!(
        (status, member["role"].as_str()),
        (StatusCode::OK, Some("member"))
    );
    let (status, member) = status_and_json(put("mia", "admin").await).await;
    assert_eq!(
        (status, member["role"].as_str()),
        (StatusCode::OK, Some("admin"))
    );
    assert_problem(
        put("nobody", "member").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_problem(
        put("nina", "owner").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-field",
    )
    .await;

    // The owner cannot leave; a member can.
    assert_problem(
        app.delete(&format!("/projects/{id}/members/olga"), Some(&team.olga))
            .await,
        StatusCode::CONFLICT,
        "owner-cannot-leave",
    )
    .await;
    assert_eq!(
        app.delete(&format!("/projects/{id}/members/mia"), Some(&team.mia))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.get(&format!("/projects/{id}"), Some(&team.mia)).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_eq!(
        members(team.adam.clone()).await,
        pairs(&[("adam", "admin"), ("olga", "admin")])
    );
}

/// A project admin who could make the owner a plain member would lock the
/// owner out of their own project: the owner's role is fixed (409
/// `owner-role`), for anyone, until ownership is transferred.
async fn no_one_can_change_the_owners_role(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let id = team.project().await;
    for (who, token) in [
        ("adam", &team.adam),
        ("olga", &team.olga),
        ("admin", &team.admin),
    ] {
        let problem = assert_problem(
            app.send_json(
                Method::PUT,
                &format!("/projects/{id}/members/olga"),
                Some(token),
                &json!({"role": "member"}),
            )
            .await,
            StatusCode::CONFLICT,
            "owner-role",
        )
        .await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("transfer ownership"),
            "{who}: {problem}"
        );
    }
    // Asking for what already is stays fine; the owner keeps every right.
    let (status, _) = status_and_json(
        app.send_json(
            Method::PUT,
            &format!("/projects/{id}/members/olga"),
            Some(&team.adam),
            &json!({"role": "admin"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, project) = status_and_json(
        app.send_json(
            Method::PATCH,
            &format!("/projects/{id}"),
            Some(&team.olga),
            &json!({"name": "Still mine"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, project["role"].as_str()),
        (StatusCode::OK, Some("admin")),
        "{project}"
    );
    // After a hand-over, the former owner's role is an ordinary one.
    let (status, _) = status_and_json(
        app.send_json(
            Method::PATCH,
            &format!("/projects/{id}"),
            Some(&team.olga),
            &json!({"owner": "adam"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, member) = status_and_json(
        app.send_json(
            Method::PUT,
            &format!("/projects/{id}/members/olga"),
            Some(&team.adam),
            &json!({"role": "member"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, member["role"].as_str()),
        (StatusCode::OK, Some("member"))
    );
}

async fn ownership_goes_only_to_a_project_admin(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let id = team.project().await;
    let path = format!("/projects/{id}");
    let problem = assert_problem(
        app.send_json(
            Method::PATCH,
            &path,
            Some(&team.olga),
            &json!({"owner": "mia"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-field",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "owner");
    let (status, project) = status_and_json(
        app.send_json(
            Method::PATCH,
            &path,
            Some(&team.olga),
            &json!({"owner": "adam"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, project["owner"].as_str()),
        (StatusCode::OK, Some("adam"))
    );
    // Only the owner deletes: olga no longer, adam now.
    assert_problem(
        app.delete(&path, Some(&team.olga)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.delete(&path, Some(&team.adam)).await.status(),
        StatusCode::NO_CONTENT
    );
}

/// One row per action: the request (made on a fresh project, built for the
/// caller where it names them) and the status per column: owner, project
/// admin, member, non-member, global admin, anonymous.
async fn the_project_matrix_cell_by_cell(backend: Backend) {
    let team = team(backend).await;
    type Request = (Method, &'static str, Option<Value>);
    let rows: [(&str, Request, [u16; 6]); 9] = [
        (
            "view",
            (Method::GET, "", None),
            [200, 200, 200, 404, 200, 401],
        ),
        (
            "list members",
            (Method::GET, "/members", None),
            [200, 200, 200, 404, 200, 401],
        ),
        (
            "edit",
            (Method::PATCH, "", Some(json!({"description": "x"}))),
            [200, 200, 403, 404, 200, 401],
        ),
        (
            "hand over",
            (Method::PATCH, "", Some(json!({"owner": "adam"}))),
            [200, 403, 403, 404, 200, 401],
        ),
        (
            "delete",
            (Method::DELETE, "", None),
            [204, 403, 403, 404, 403, 401],
        ),
        (
            "add a member",
            (
                Method::PUT,
                "/members/nina",
                Some(json!({"role": "member"})),
            ),
            [201, 201, 403, 404, 201, 401],
        ),
        (
            "remove adam",
            (Method::DELETE, "/members/adam", None),
            [204, 204, 403, 404, 204, 401],
        ),
        (
            "remove mia",
            (Method::DELETE, "/members/mia", None),
            [204, 204, 204, 404, 204, 401],
        ),
        // Leaving: the owner cannot (409); the global admin is no member (404).
        (
            "leave",
            (Method::DELETE, "/members/{me}", None),
            [409, 204, 204, 404, 404, 401],
        ),
    ];
    for (what, (method, suffix, body), expected) in &rows {
        for (column, (who, token)) in team.callers().into_iter().enumerate() {
            let id = team.project().await;
            let path = format!("/projects/{id}{}", suffix.replace("{me}", who));
            let cell = format!("{what} by {who}");
            team.expect(method, &path, token, body.as_ref(), expected[column], &cell)
                .await;
        }
    }
}
