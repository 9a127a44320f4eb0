//! The Users rows of the permission matrix (docs/ARCHITECTURE.md), walked
//! cell by cell on each store. Every row runs against fresh accounts: an
//! actor, a plain user and an admin it may act on. A refused request must
//! leave every stored user exactly as it was.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskgate_app::settings::Settings;
use taskgate_domain::permission::Registration;
use taskgate_e2e::{Backend, PASSWORD, TestApp, on_each_backend, status_and_json};

on_each_backend!(
    users_rows_with_registration_closed,
    users_rows_with_registration_open
);

#[derive(Clone, Copy, Debug)]
enum Who {
    Anonymous,
    User,
    Admin,
}

/// Whom the request is about.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// `/users` itself.
    Collection,
    Itself,
    OtherUser,
    OtherAdmin,
    Missing,
}

struct Row {
    what: &'static str,
    who: Who,
    method: Method,
    target: Target,
    body: Option<Value>,
    expected: StatusCode,
}

fn row(
    what: &'static str,
    who: Who,
    method: Method,
    target: Target,
    body: Option<Value>,
    expected: u16,
) -> Row {
    Row {
        what,
        who,
        method,
        target,
        body,
        expected: StatusCode::from_u16(expected).unwrap(),
    }
}

fn new_user(level: &str) -> Option<Value> {
    Some(json!({"username": "newcomer", "password": PASSWORD, "level": level}))
}

/// The rows that hold whatever the registration setting.
fn common_rows() -> Vec<Row> {
    use Method as M;
    use Target::*;
    use Who::*;
    let own = Some(
        json!({"password": "a brand new passphrase", "email": "me@example.com", "profile": {"k": 1}}),
    );
    let email = Some(json!({"email": "changed@example.com"}));
    vec![
        row(
            "admin creates a user",
            Admin,
            M::POST,
            Collection,
            new_user("user"),
            201,
        ),
        row(
            "admin creates an admin",
            Admin,
            M::POST,
            Collection,
            new_user("admin"),
            201,
        ),
        row(
            "anonymous lists users",
            Anonymous,
            M::GET,
            Collection,
            None,
            401,
        ),
        row("user lists users", User, M::GET, Collection, None, 403),
        row("admin lists users", Admin, M::GET, Collection, None, 200),
        row("user reads self", User, M::GET, Itself, None, 200),
        row("admin reads self", Admin, M::GET, Itself, None, 200),
        row(
            "user reads another user",
            User,
            M::GET,
            OtherUser,
            None,
            403,
        ),
        row("user reads an admin", User, M::GET, OtherAdmin, None, 403),
        row(
            "user reads a missing user",
            User,
            M::GET,
            Missing,
            None,
            403,
        ),
        row("admin reads a user", Admin, M::GET, OtherUser, None, 200),
        row(
            "admin reads another admin",
            Admin,
            M::GET,
            OtherAdmin,
            None,
            200,
        ),
        row(
            "admin reads a missing user",
            Admin,
            M::GET,
            Missing,
            None,
            404,
        ),
        row(
            "anonymous reads a user",
            Anonymous,
            M::GET,
            OtherUser,
            None,
            401,
        ),
        row(
            "user edits self (password, email, profile)",
            User,
            M::PATCH,
            Itself,
            own.clone(),
            200,
        ),
        row(
            "admin edits self (password, email, profile)",
            Admin,
            M::PATCH,
            Itself,
            own,
            200,
        ),
        row(
            "user changes own level",
            User,
            M::PATCH,
            Itself,
            Some(json!({"level": "admin"})),
            403,
        ),
        row(
            "admin changes own level",
            Admin,
            M::PATCH,
            Itself,
            Some(json!({"level": "user"})),
            403,
        ),
        row(
            "user edits another user",
            User,
            M::PATCH,
            OtherUser,
            email.clone(),
            403,
        ),
        row(
            "user edits an admin",
            User,
            M::PATCH,
            OtherAdmin,
            email.clone(),
            403,
        ),
        row(
            "user promotes another user",
            User,
            M::PATCH,
            OtherUser,
            Some(json!({"level": "admin"})),
            403,
        ),
        row(
            "admin edits a user",
            Admin,
            M::PATCH,
            OtherUser,
            email.clone(),
            200,
        ),
        row(
            "admin promotes a user",
            Admin,
            M::PATCH,
            OtherUser,
            Some(json!({"level": "admin"})),
            200,
        ),
        row(
            "admin demotes another admin",
            Admin,
            M::PATCH,
            OtherAdmin,
            Some(json!({"level": "user"})),
            200,
        ),
        row(
            "admin edits a missing user",
            Admin,
            M::PATCH,
            Missing,
            email.clone(),
            404,
        ),
        row(
            "anonymous edits a user",
            Anonymous,
            M::PATCH,
            OtherUser,
            email,
            401,
        ),
        row(
            "user deletes another user",
            User,
            M::DELETE,
            OtherUser,
            None,
            403,
        ),
        row(
            "user deletes an admin",
            User,
            M::DELETE,
            OtherAdmin,
            None,
            403,
        ),
        row(
            "admin deletes a user",
            Admin,
            M::DELETE,
            OtherUser,
            None,
            204,
        ),
        row(
            "admin deletes another admin",
            Admin,
            M::DELETE,
            OtherAdmin,
            None,
            204,
        ),
        row(
            "admin deletes a missing user",
            Admin,
            M::DELETE,
            Missing,
            None,
            404,
        ),
        row(
            "anonymous deletes a user",
            Anonymous,
            M::DELETE,
            OtherUser,
            None,
            401,
        ),
    ]
}

async fn users_rows_with_registration_closed(backend: Backend) {
    use Method as M;
    use Target::*;
    use Who::*;
    let mut rows = common_rows();
    rows.extend([
        row(
            "anonymous creates a user (sign-up closed)",
            Anonymous,
            M::POST,
            Collection,
            new_user("user"),
            401,
        ),
        row(
            "user creates a user (sign-up closed)",
            User,
            M::POST,
            Collection,
            new_user("user"),
            403,
        ),
        row(
            "user creates an admin",
            User,
            M::POST,
            Collection,
            new_user("admin"),
            403,
        ),
        row(
            "user deletes self (sign-up closed)",
            User,
            M::DELETE,
            Itself,
            None,
            403,
        ),
    ]);
    walk(TestApp::spawn(backend).await, rows).await;
}

async fn users_rows_with_registration_open(backend: Backend) {
    use Method as M;
    use Target::*;
    use Who::*;
    let mut rows = common_rows();
    rows.extend([
        row(
            "anonymous signs up as a user",
            Anonymous,
            M::POST,
            Collection,
            new_user("user"),
            201,
        ),
        row(
            "anonymous signs up as an admin",
            Anonymous,
            M::POST,
            Collection,
            new_user("admin"),
            403,
        ),
        row(
            "user creates a user (sign-up open)",
            User,
            M::POST,
            Collection,
            new_user("user"),
            201,
        ),
        row(
            "user creates an admin (sign-up open)",
            User,
            M::POST,
            Collection,
            new_user("admin"),
            403,
        ),
        row(
            "user deletes self (sign-up open)",
            User,
            M::DELETE,
            Itself,
            None,
            204,
        ),
    ]);
    let app = TestApp::spawn_with(backend, |config| {
        config.api = Settings {
            registration: Registration::Open,
            ..config.api.clone()
        };
    })
    .await;
    walk(app, rows).await;
}

async fn walk(app: TestApp, rows: Vec<Row>) {
    let admin = app.admin_token().await;
    for (i, row) in rows.iter().enumerate() {
        // Fresh accounts for every row, so rows cannot affect each other.
        let (actor, user, other_admin) =
            (format!("actor{i}"), format!("user{i}"), format!("admin{i}"));
        let level = match row.who {
            Who::Admin => "admin",
            _ => "user",
        };
        app.create_user(&admin, &actor, level).await;
        app.create_user(&admin, &user, "user").await;
        app.create_user(&admin, &other_admin, "admin").await;
        let token = match row.who {
            Who::Anonymous => None,
            _ => Some(app.login(&actor, PASSWORD).await),
        };
        let path = match row.target {
            Target::Collection => "/users".to_owned(),
            Target::Itself => format!("/users/{actor}"),
            Target::OtherUser => format!("/users/{user}"),
            Target::OtherAdmin => format!("/users/{other_admin}"),
            Target::Missing => format!("/users/missing{i}"),
        };
        let body = row.body.clone().map(|mut body| {
            if let Some(name) = body.get_mut("username") {
                *name = json!(format!("newcomer{i}"));
            }
            // Addresses are unique too: each row uses its own.
            if let Some(email) = body.get_mut("email") {
                *email = json!(format!("row{i}-{}", email.as_str().unwrap()));
            }
            body
        });

        let before = app.all_users(&admin).await;
        let mut request = app.request(row.method.clone(), &path, token.as_deref());
        if let Some(body) = &body {
            request = request.json(body);
        }
        let (status, answer) = status_and_json(request.send().await.unwrap()).await;
        assert_eq!(
            status, row.expected,
            "row {i} \"{}\" ({:?} {} {path}): {answer}",
            row.what, row.who, row.method
        );
        if !status.is_success() {
            assert_eq!(
                app.all_users(&admin).await,
                before,
                "row {i} \"{}\" was refused but changed stored users",
                row.what
            );
        }
    }
}
