//! Work items through the API, on both stores: their life and history,
//! `If-Match` and concurrent edits, assignees and what removing a member
//! does, listings with filters, sorts and time zones, bad parameters, and
//! the permission matrix for items walked cell by cell.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskgate_e2e::{Backend, assert_problem, on_each_backend, status_and_json};

use taskgate_e2e::TestApp;

use crate::projects::{Team, team, team_on};

on_each_backend!(
    an_item_lives_and_its_history_shows_every_change,
    if_match_lets_one_of_two_concurrent_edits_win,
    six_edits_at_once_without_if_match_all_land,
    assignees_are_members_and_leaving_unassigns,
    listings_filter_sort_and_refuse_bad_parameters,
    the_item_matrix_cell_by_cell,
    deleting_a_user_needs_their_projects_handed_over_and_unassigns_them,
    today_follows_the_time_zone_across_the_date_line,
    a_page_asked_again_shows_every_change_at_once,
);

/// With the server's clock at 2026-12-01T12:00:00Z it is already 2 December
/// in Kiritimati (UTC+14) and still 1 December in Pago Pago (UTC-11): an
/// item due on 1 December is due today in one and overdue in the other.
async fn today_follows_the_time_zone_across_the_date_line(backend: Backend) {
    // Noon UTC today (not a fixed day: the embedded store purges tokens a
    // day after they expire by the system's clock, so a token issued on a
    // fixed day in the past stops working once that day is long enough ago).
    let noon = time::OffsetDateTime::now_utc().replace_time(time::macros::time!(12:00));
    let today = noon.date().to_string();
    let clock = std::sync::Arc::new(taskgate_domain::clock::ManualClock::new(noon));
    let app = TestApp::spawn_with(backend, |config| {
        config.clock = clock.clone();
        // Tokens outlive the day the clock moves on.
        config.api.token_ttl = std::time::Duration::from_secs(3 * 24 * 3600);
    })
    .await;
    let team = team_on(app).await;
    let project = team.project().await;
    team.item(
        &team.olga,
        &project,
        json!({"title": "Due today", "due_date": today}),
    )
    .await;
    let count = |query: &'static str| {
        let path = format!("/projects/{project}/items?{query}");
        let app = &team.app;
        let token = team.mia.clone();
        async move {
            let (status, page) = status_and_json(app.get(&path, Some(&token)).await).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            page["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("due=today&tz=Pacific/Pago_Pago").await, 1);
    assert_eq!(count("due=overdue&tz=Pacific/Pago_Pago").await, 0);
    assert_eq!(count("due=today&tz=Pacific/Kiritimati").await, 0);
    assert_eq!(count("due=overdue&tz=Pacific/Kiritimati").await, 1);
    assert_eq!(count("due=today").await, 1);
    // A day later it is overdue everywhere.
    clock.advance(std::time::Duration::from_secs(24 * 3600));
    assert_eq!(count("due=overdue&tz=Pacific/Pago_Pago").await, 1);
}

async fn deleting_a_user_needs_their_projects_handed_over_and_unassigns_them(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let project = team.project().await;
    let (path, _) = team
        .item(
            &team.olga,
            &project,
            json!({"title": "For mia", "assignee": "mia"}),
        )
        .await;
    let problem = assert_problem(
        app.delete("/users/olga", Some(&team.admin)).await,
        StatusCode::CONFLICT,
        "owns-projects",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains(&project),
        "{problem}"
    );

    assert_eq!(
        app.delete("/users/mia", Some(&team.admin)).await.status(),
        StatusCode::NO_CONTENT
    );
    let (_, members) = status_and_json(
        app.get(&format!("/projects/{project}/members"), Some(&team.olga))
            .await,
    )
    .await;
    let names: Vec<&str> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["adam", "olga"]);
    let (_, item) = status_and_json(app.get(&path, Some(&team.olga)).await).await;
    assert!(item.get("assignee").is_none(), "{item}");
    let (_, history) =
        status_and_json(app.get(&format!("{path}/events"), Some(&team.olga)).await).await;
    let last = history["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["type"].as_str(), last["actor"].as_str()),
        (Some("updated"), Some("admin"))
    );

    // Once olga hands the project over, she can go.
    let response = app
        .send_json(
            Method::PATCH,
            &format!("/projects/{project}"),
            Some(&team.olga),
            &json!({"owner": "adam"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.delete("/users/olga", Some(&team.admin)).await.status(),
        StatusCode::NO_CONTENT
    );
}

impl Team {
    /// Creates an item as `token`; returns its path and body.
    async fn item(&self, token: &str, project: &str, body: Value) -> (String, Value) {
        let response = self
            .app
            .send_json(
                Method::POST,
                &format!("/projects/{project}/items"),
                Some(token),
                &body,
            )
            .await;
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        let (status, item) = status_and_json(response).await;
        assert_eq!(status, StatusCode::CREATED, "{item}");
        (location.expect("a Location"), item)
    }
}

fn etag(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

async fn an_item_lives_and_its_history_shows_every_change(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let project = team.project().await;
    let (path, item) = team
        .item(
            &team.mia,
            &project,
            json!({"title": "Write the report", "due_date": "2026-12-01"}),
        )
        .await;
    assert_eq!(item["status"], "pending");
    assert_eq!(item["version"], 1);
    assert_eq!(item["created_by"], "mia");
    assert_eq!(
        path,
        format!("/projects/{project}/items/{}", item["id"].as_str().unwrap())
    );

    let read = app.get(&path, Some(&team.olga)).await;
    assert_eq!(etag(&read), "\"1\"");
    let edit = app
        .request(Method::PATCH, &path, Some(&team.olga))
        .header("if-match", "\"1\"")
        .json(&json!({"status": "in_progress", "due_date": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(etag(&edit), "\"2\"");
    let (status, edited) = status_and_json(edit).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["status"], "in_progress");
    assert!(edited.get("due_date").is_none());

    // A stale If-Match changes nothing.
    let stale = app
        .request(Method::PATCH, &path, Some(&team.mia))
        .header("if-match", "\"1\"")
        .json(&json!({"title": "Too late"}))
        .send()
        .await
        .unwrap();
    assert_problem(
        stale,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
    )
    .await;
    // Bad input changes nothing either.
    for body in [
        json!({"due_date": "2026-02-30"}),
        json!({"status": "done"}),
        json!({"title": ""}),
        json!({"priority": 1}),
    ] {
        assert_problem(
            app.send_json(Method::PATCH, &path, Some(&team.mia), &body)
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
        )
        .await;
    }
    let (_, now) = status_and_json(app.get(&path, Some(&team.mia)).await).await;
    assert_eq!(now, edited);

    let (status, history) =
        status_and_json(app.get(&format!("{path}/events"), Some(&team.mia)).await).await;
    assert_eq!(status, StatusCode::OK);
    let events = history["items"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "updated"]);
    assert_eq!(
        events[1]["data"],
        json!({"status": "in_progress", "due_date": null})
    );
    assert_eq!(events[1]["actor"], "olga");
    assert_eq!(events[1]["prev_hash"], events[0]["hash"]);

    assert_eq!(
        app.delete(&path, Some(&team.mia)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.get(&path, Some(&team.mia)).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}

async fn if_match_lets_one_of_two_concurrent_edits_win(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let project = team.project().await;
    let (path, _) = team
        .item(&team.mia, &project, json!({"title": "Shared"}))
        .await;
    let edit = |title: &'static str, token: &str, if_match: Option<&'static str>| {
        let mut request = app
            .request(Method::PATCH, &path, Some(token))
            .json(&json!({"title": title}));
        if let Some(version) = if_match {
            request = request.header("if-match", version);
        }
        request.send()
    };
    // Both made against version 1: exactly one lands.
    let (a, b) = tokio::join!(
        edit("from mia", &team.mia, Some("\"1\"")),
        edit("from olga", &team.olga, Some("\"1\""))
    );
    let mut statuses = vec![a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 412]);
    // Without If-Match both apply, in some order, and the history has both.
    let (a, b) = tokio::join!(
        edit("first", &team.mia, None),
        edit("second", &team.olga, None)
    );
    assert_eq!(
        (a.unwrap().status(), b.unwrap().status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let (_, history) =
        status_and_json(app.get(&format!("{path}/events"), Some(&team.mia)).await).await;
    let titles: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["data"]["title"].as_str())
        .collect();
    assert_eq!(titles.len(), 4, "{history}");
    let (_, item) = status_and_json(app.get(&path, Some(&team.mia)).await).await;
    assert_eq!(item["version"], 4);
    assert_eq!(item["title"], *titles.last().unwrap());
}

/// An edit without `If-Match` asks for no version: it lands however busy
/// the item is (it once gave up after three lost races: of six at once,
/// one or two were 409 `edit-conflict`). Each lands once, in some order.
async fn six_edits_at_once_without_if_match_all_land(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let project = team.project().await;
    let (path, _) = team
        .item(&team.mia, &project, json!({"title": "Busy"}))
        .await;
    let writers = ["mia", "olga", "adam", "mia", "olga", "adam"];
    let edits = writers.iter().enumerate().map(|(i, who)| {
        let token = match *who {
            "mia" => &team.mia,
            "olga" => &team.olga,
            _ => &team.adam,
        };
        app.request(Method::PATCH, &path, Some(token))
            .json(&json!({"title": format!("edit {i}")}))
            .send()
    });
    let answers = futures_util::future::join_all(edits).await;
    let statuses: Vec<u16> = answers
        .into_iter()
        .map(|a| a.unwrap().status().as_u16())
        .collect();
    assert_eq!(statuses, [200; 6]);
    let (_, item) = status_and_json(app.get(&path, Some(&team.mia)).await).await;
    assert_eq!(item["version"], 7, "{item}");
}

async fn assignees_are_members_and_leaving_unassigns(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let project = team.project().await;
    let problem = assert_problem(
        app.send_json(
            Method::POST,
            &format!("/projects/{project}/items"),
            Some(&team.olga),
            &json!({"title": "For nina", "assignee": "nina"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-field",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "assignee");
    // Nor anyone who is no user at all.
    assert_problem(
        app.send_json(
            Method::POST,
            &format!("/projects/{project}/items"),
            Some(&team.olga),
            &json!({"title": "For a ghost", "assignee": "ghost"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-field",
    )
    .await;
    let (path, _) = team
        .item(
            &team.olga,
            &project,
            json!({"title": "For mia", "assignee": "mia"}),
        )
        .await;
    assert_eq!(
        app.delete(
            &format!("/projects/{project}/members/mia"),
            Some(&team.olga)
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    let (_, item) = status_and_json(app.get(&path, Some(&team.olga)).await).await;
    assert!(item.get("assignee").is_none(), "{item}");
    let (_, history) =
        status_and_json(app.get(&format!("{path}/events"), Some(&team.olga)).await).await;
    let last = history["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "updated");
    assert_eq!(last["data"], json!({"assignee": null}));
    assert_eq!(last["actor"], "olga");
}

/// A page asked again is the same page until something in its project
/// changes, and the changed one as soon as the change is answered (the
/// embedded store answers repeated pages from memory): an edit, a new item,
/// a deletion; `assignee=me` is each
/// caller's own page; a member removed no longer sees the page they read.
async fn a_page_asked_again_shows_every_change_at_once(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let project = team.project().await;
    let (first, _) = team
        .item(
            &team.olga,
            &project,
            json!({"title": "first", "assignee": "mia"}),
        )
        .await;
    let (second, _) = team
        .item(
            &team.olga,
            &project,
            json!({"title": "second", "assignee": "adam"}),
        )
        .await;
    let base = format!("/projects/{project}/items");
    let page = |query: &'static str, token: String| {
        let path = format!("{base}?{query}");
        async move {
            let response = app.get(&path, Some(&token)).await;
            assert_eq!(
                response.headers()["content-type"],
                "application/json",
                "{path}"
            );
            let (status, page) = status_and_json(response).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    format!(
                        "{} {}",
                        i["title"].as_str().unwrap(),
                        i["status"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let all = "sort=created_at";
    assert_eq!(
        page(all, team.mia.clone()).await,
        ["first pending", "second pending"]
    );
    assert_eq!(
        page(all, team.mia.clone()).await,
        ["first pending", "second pending"]
    );
    // Each caller's `me`, on the same address.
    assert_eq!(
        page("assignee=me", team.mia.clone()).await,
        ["first pending"]
    );
    assert_eq!(
        page("assignee=me", team.adam.clone()).await,
        ["second pending"]
    );

    let edit = app
        .send_json(
            Method::PATCH,
            &first,
            Some(&team.mia),
            &json!({"status": "completed"}),
        )
        .await;
    assert_eq!(edit.status(), StatusCode::OK);
    assert_eq!(
        page(all, team.mia.clone()).await,
        ["first completed", "second pending"]
    );
    team.item(&team.mia, &project, json!({"title": "third"}))
        .await;
    assert_eq!(
        page(all, team.mia.clone()).await,
        ["first completed", "second pending", "third pending"]
    );
    let deleted = app
        .request(Method::DELETE, &second, Some(&team.olga))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        page(all, team.mia.clone()).await,
        ["first completed", "third pending"]
    );
    assert_eq!(
        page("assignee=me", team.adam.clone()).await,
        Vec::<String>::new()
    );

    // Someone who is no longer a member no longer sees the project.
    let removed = app
        .request(
            Method::DELETE,
            &format!("/projects/{project}/members/mia"),
            Some(&team.olga),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get(&format!("{base}?{all}"), Some(&team.mia)).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}

async fn listings_filter_sort_and_refuse_bad_parameters(backend: Backend) {
    let team = team(backend).await;
    let app = &team.app;
    let project = team.project().await;
    let other = team.project().await;
    for (title, status, due, assignee) in [
        ("late, mine", "pending", Some("2000-01-01"), Some("mia")),
        ("late, done", "completed", Some("2000-01-02"), Some("mia")),
        ("later", "in_progress", Some("2999-12-31"), None),
        ("someday", "pending", None, Some("adam")),
    ] {
        let mut body = json!({"title": title, "status": status});
        if let Some(due) = due {
            body["due_date"] = json!(due);
        }
        if let Some(assignee) = assignee {
            body["assignee"] = json!(assignee);
        }
        team.item(&team.olga, &project, body).await;
    }
    team.item(
        &team.olga,
        &other,
        json!({"title": "elsewhere", "assignee": "mia", "due_date": "2000-01-03"}),
    )
    .await;
    let titles = |path: String, token: String| async move {
        let (status, page) = status_and_json(app.get(&path, Some(&token)).await).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["title"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let base = format!("/projects/{project}/items");
    assert_eq!(
        titles(
            format!("{base}?due=overdue&assignee=me&sort=due_date&tz=Pacific/Kiritimati"),
            team.mia.clone()
        )
        .await,
        ["late, mine"]
    );
    assert_eq!(
        titles(format!("{base}?sort=due_date"), team.mia.clone()).await,
        ["late, mine", "late, done", "later", "someday"]
    );
    assert_eq!(
        titles(format!("{base}?sort=-due_date"), team.mia.clone()).await,
        ["later", "late, done", "late, mine", "someday"]
    );
    assert_eq!(
        titles(
            format!("{base}?status=pending,in_progress&sort=status"),
            team.mia.clone()
        )
        .await,
        ["late, mine", "someday", "later"]
    );
    assert_eq!(
        titles(format!("{base}?assignee=none"), team.mia.clone()).await,
        ["later"]
    );
    // Across every project mia is in, overdue first.
    assert_eq!(
        titles(
            "/items?assignee=me&due=overdue&sort=due_date".into(),
            team.mia.clone()
        )
        .await,
        ["late, mine", "elsewhere"]
    );
    // Pages of one: every item once.
    let mut seen = Vec::new();
    let mut path = format!("{base}?limit=1&sort=status");
    loop {
        let (_, page) = status_and_json(app.get(&path, Some(&team.mia)).await).await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["title"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(cursor) => path = format!("{base}?limit=1&sort=status&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    // A bad value of any parameter is 400 naming it.
    for (query, parameter) in [
        ("status=done", "status"),
        ("due=yesterday", "due"),
        ("tz=Mars/Olympus", "tz"),
        ("assignee=not%20a%20name", "assignee"),
        ("sort=title", "sort"),
        ("limit=0", "limit"),
        ("cursor=bm9wZQ", "cursor"),
        ("colour=red", "colour"),
    ] {
        let problem = assert_problem(
            app.get(&format!("{base}?{query}"), Some(&team.mia)).await,
            StatusCode::BAD_REQUEST,
            "invalid-query",
        )
        .await;
        assert_eq!(
            problem["errors"][0]["field"], parameter,
            "{query}: {problem}"
        );
    }
}

/// Each row: an item request (on a fresh project and item, the item created
/// by mia) and the status per column: owner, project admin, member (mia),
/// non-member, global admin, anonymous.
async fn the_item_matrix_cell_by_cell(backend: Backend) {
    let team = team(backend).await;
    type Request = (Method, &'static str, Option<Value>);
    let rows: [(&str, Request, [u16; 6]); 7] = [
        (
            "create",
            (Method::POST, "/items", Some(json!({"title": "t"}))),
            [201, 201, 201, 404, 403, 401],
        ),
        (
            "list",
            (Method::GET, "/items", None),
            [200, 200, 200, 404, 403, 401],
        ),
        (
            "read",
            (Method::GET, "/items/{item}", None),
            [200, 200, 200, 404, 403, 401],
        ),
        (
            "history",
            (Method::GET, "/items/{item}/events", None),
            [200, 200, 200, 404, 403, 401],
        ),
        (
            "edit",
            (
                Method::PATCH,
                "/items/{item}",
                Some(json!({"status": "completed"})),
            ),
            [200, 200, 200, 404, 403, 401],
        ),
        (
            "delete mia's item",
            (Method::DELETE, "/items/{item}", None),
            [204, 204, 204, 404, 403, 401],
        ),
        (
            "delete adam's item",
            (Method::DELETE, "/items/{adams}", None),
            [204, 204, 403, 404, 403, 401],
        ),
    ];
    for (what, (method, suffix, body), expected) in &rows {
        for (column, (who, token)) in team.callers().into_iter().enumerate() {
            let project = team.project().await;
            let (_, item) = team
                .item(&team.mia, &project, json!({"title": "mia's"}))
                .await;
            let (_, adams) = team
                .item(&team.adam, &project, json!({"title": "adam's"}))
                .await;
            let path = format!(
                "/projects/{project}{}",
                suffix
                    .replace("{item}", item["id"].as_str().unwrap())
                    .replace("{adams}", adams["id"].as_str().unwrap())
            );
            let cell = format!("{what} by {who}");
            team.expect(method, &path, token, body.as_ref(), expected[column], &cell)
                .await;
        }
    }
}
