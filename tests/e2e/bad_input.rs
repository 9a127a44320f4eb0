//! Bad input of every kind gets the right 4xx problem (never a 500), names
//! the offending field where there is one, and leaves stored data unchanged.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskgate_e2e::{ADMIN_PASSWORD, Backend, PASSWORD, TestApp, assert_problem, on_each_backend};

on_each_backend!(bad_input_is_refused_with_the_right_problem_and_changes_nothing);

/// Who sends the request.
#[derive(Clone, Copy)]
enum As {
    Nobody,
    Admin,
}

/// Who sends which request.
struct Target {
    who: As,
    method: Method,
    path: &'static str,
}

fn at(who: As, method: Method, path: &'static str) -> Target {
    Target { who, method, path }
}

struct Case {
    what: &'static str,
    target: Target,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    slug: &'static str,
    /// The field a 422 must name.
    field: Option<&'static str>,
}

fn raw_case(
    what: &'static str,
    target: Target,
    content_type: Option<&'static str>,
    body: impl Into<Vec<u8>>,
    status: u16,
    slug: &'static str,
) -> Case {
    Case {
        what,
        target,
        content_type,
        body: body.into(),
        status,
        slug,
        field: None,
    }
}

/// A well-formed JSON request with one invalid field: 422 naming it.
fn invalid(what: &'static str, target: Target, body: Value, field: &'static str) -> Case {
    Case {
        field: Some(field),
        ..raw_case(
            what,
            target,
            Some("application/json"),
            serde_json::to_vec(&body).unwrap(),
            422,
            "invalid-field",
        )
    }
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn cases() -> Vec<Case> {
    use As::*;
    use Method as M;
    let json = Some("application/json");
    let user = |extra: Value| {
        let mut body = json!({"username": "newbie", "password": PASSWORD});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let mut deep_profile = json!(1);
    for _ in 0..20 {
        deep_profile = json!({ "d": deep_profile });
    }
    vec![
        // Malformed bodies: 400.
        raw_case(
            "truncated JSON",
            at(Admin, M::POST, "/users"),
            json,
            "{\"username\":",
            400,
            "malformed-request",
        ),
        raw_case(
            "JSON array instead of object",
            at(Admin, M::POST, "/users"),
            json,
            "[]",
            400,
            "malformed-request",
        ),
        raw_case(
            "JSON string instead of object",
            at(Admin, M::POST, "/users"),
            json,
            "\"alice\"",
            400,
            "malformed-request",
        ),
        raw_case(
            "empty body",
            at(Admin, M::POST, "/users"),
            json,
            "",
            400,
            "malformed-request",
        ),
        raw_case(
            "whitespace body",
            at(Admin, M::POST, "/users"),
            json,
            "  \n ",
            400,
            "malformed-request",
        ),
        raw_case(
            "invalid UTF-8",
            at(Admin, M::POST, "/users"),
            json,
            b"{\"username\": \"\xff\xfe\"}".to_vec(),
            400,
            "malformed-request",
        ),
        raw_case(
            "JSON nested 200 deep",
            at(Admin, M::POST, "/users"),
            json,
            nested(200),
            400,
            "malformed-request",
        ),
        raw_case(
            "trailing garbage after JSON",
            at(Admin, M::POST, "/users"),
            json,
            "{} {}",
            400,
            "malformed-request",
        ),
        raw_case(
            "malformed JSON on PATCH",
            at(Admin, M::PATCH, "/users/admin"),
            json,
            "{email:1}",
            400,
            "malformed-request",
        ),
        raw_case(
            "malformed JSON on login",
            at(Nobody, M::POST, "/auth"),
            json,
            "{",
            400,
            "malformed-request",
        ),
        raw_case(
            "a form field given twice",
            at(Nobody, M::POST, "/auth"),
            Some("application/x-www-form-urlencoded"),
            "username=admin&username=x&password=p",
            400,
            "malformed-request",
        ),
        // Wrong or missing content type: 415.
        raw_case(
            "no content type",
            at(Admin, M::POST, "/users"),
            None,
            "{}",
            415,
            "unsupported-media-type",
        ),
        raw_case(
            "text/plain",
            at(Admin, M::POST, "/users"),
            Some("text/plain"),
            "{}",
            415,
            "unsupported-media-type",
        ),
        raw_case(
            "form body where only JSON is taken",
            at(Admin, M::POST, "/users"),
            Some("application/x-www-form-urlencoded"),
            "username=x",
            415,
            "unsupported-media-type",
        ),
        raw_case(
            "text/plain login",
            at(Nobody, M::POST, "/auth"),
            Some("text/plain"),
            "username=admin",
            415,
            "unsupported-media-type",
        ),
        raw_case(
            "no content type on PATCH",
            at(Admin, M::PATCH, "/users/admin"),
            None,
            "{}",
            415,
            "unsupported-media-type",
        ),
        // Too large: 413.
        raw_case(
            "body over 64 KiB",
            at(Admin, M::POST, "/users"),
            json,
            format!("{{\"username\":\"{}\"}}", "a".repeat(70_000)),
            413,
            "payload-too-large",
        ),
        raw_case(
            "login body over 64 KiB",
            at(Nobody, M::POST, "/auth"),
            json,
            format!("{{\"password\":\"{}\"}}", "a".repeat(70_000)),
            413,
            "payload-too-large",
        ),
        // Well-formed, but a field is wrong: 422 naming it.
        invalid(
            "missing username",
            at(Admin, M::POST, "/users"),
            json!({"password": PASSWORD}),
            "username",
        ),
        invalid(
            "missing password",
            at(Admin, M::POST, "/users"),
            json!({"username": "newbie"}),
            "password",
        ),
        invalid(
            "null username",
            at(Admin, M::POST, "/users"),
            json!({"username": null, "password": PASSWORD}),
            "username",
        ),
        invalid(
            "username as a number",
            at(Admin, M::POST, "/users"),
            json!({"username": 42, "password": PASSWORD}),
            "username",
        ),
        invalid(
            "password as an array",
            at(Admin, M::POST, "/users"),
            json!({"username": "newbie", "password": ["x"]}),
            "password",
        ),
        invalid(
            "unknown field",
            at(Admin, M::POST, "/users"),
            user(json!({"is_admin": true})),
            "is_admin",
        ),
        invalid(
            "username with a space",
            at(Admin, M::POST, "/users"),
            json!({"username": "new bie", "password": PASSWORD}),
            "username",
        ),
        invalid(
            "username with a slash",
            at(Admin, M::POST, "/users"),
            json!({"username": "new/bie", "password": PASSWORD}),
            "username",
        ),
        invalid(
            "username too long",
            at(Admin, M::POST, "/users"),
            json!({"username": "n".repeat(33), "password": PASSWORD}),
            "username",
        ),
        invalid(
            "username too short",
            at(Admin, M::POST, "/users"),
            json!({"username": "nb", "password": PASSWORD}),
            "username",
        ),
        invalid(
            "too-short password",
            at(Admin, M::POST, "/users"),
            json!({"username": "newbie", "password": "short1"}),
            "password",
        ),
        invalid(
            "password containing the username",
            at(Admin, M::POST, "/users"),
            json!({"username": "newbie", "password": "i am newbie, trust me"}),
            "password",
        ),
        invalid(
            "password over 128 characters",
            at(Admin, M::POST, "/users"),
            json!({"username": "newbie", "password": "x1".repeat(80)}),
            "password",
        ),
        invalid(
            "unknown level",
            at(Admin, M::POST, "/users"),
            user(json!({"level": "root"})),
            "level",
        ),
        invalid(
            "level as a boolean",
            at(Admin, M::POST, "/users"),
            user(json!({"level": true})),
            "level",
        ),
        invalid(
            "invalid e-mail",
            at(Admin, M::POST, "/users"),
            user(json!({"email": "not-an-address"})),
            "email",
        ),
        invalid(
            "profile that is not an object",
            at(Admin, M::POST, "/users"),
            user(json!({"profile": [1, 2]})),
            "profile",
        ),
        invalid(
            "oversized profile",
            at(Admin, M::POST, "/users"),
            user(json!({"profile": {"bio": "x".repeat(20_000)}})),
            "profile",
        ),
        invalid(
            "profile nested too deep",
            at(Admin, M::POST, "/users"),
            user(json!({"profile": deep_profile})),
            "profile",
        ),
        invalid(
            "unknown field on PATCH",
            at(Admin, M::PATCH, "/users/admin"),
            json!({"username": "renamed"}),
            "username",
        ),
        invalid(
            "too-short password on PATCH",
            at(Admin, M::PATCH, "/users/admin"),
            json!({"password": "short"}),
            "password",
        ),
        invalid(
            "unknown level on PATCH",
            at(Admin, M::PATCH, "/users/admin"),
            json!({"level": "superuser"}),
            "level",
        ),
        invalid(
            "profile as a string on PATCH",
            at(Admin, M::PATCH, "/users/admin"),
            json!({"profile": "{}"}),
            "profile",
        ),
        invalid(
            "login without a password",
            at(Nobody, M::POST, "/auth"),
            json!({"username": "admin"}),
            "password",
        ),
        invalid(
            "login with a numeric username",
            at(Nobody, M::POST, "/auth"),
            json!({"username": 1, "password": "x"}),
            "username",
        ),
        invalid(
            "login with an unknown field",
            at(Nobody, M::POST, "/auth"),
            json!({"username": "admin", "password": ADMIN_PASSWORD, "otp": "1"}),
            "otp",
        ),
        invalid(
            "page size zero",
            at(Admin, M::GET, "/users?limit=0"),
            Value::Null,
            "limit",
        ),
        invalid(
            "page size not a number",
            at(Admin, M::GET, "/users?limit=ten"),
            Value::Null,
            "limit",
        ),
        invalid(
            "page size over 100",
            at(Admin, M::GET, "/users?limit=101"),
            Value::Null,
            "limit",
        ),
        invalid(
            "a cursor we never issued",
            at(Admin, M::GET, "/users?cursor=%21%21%21"),
            Value::Null,
            "cursor",
        ),
        invalid(
            "an unknown query parameter",
            at(Admin, M::GET, "/users?limt=5"),
            Value::Null,
            "limt",
        ),
        // Tasks.
        raw_case(
            "empty task body",
            at(Admin, M::POST, "/tasks"),
            json,
            "",
            400,
            "malformed-request",
        ),
        raw_case(
            "a task as text/plain",
            at(Admin, M::POST, "/tasks"),
            Some("text/plain"),
            "{}",
            415,
            "unsupported-media-type",
        ),
        raw_case(
            "seconds beyond any number",
            at(Admin, M::POST, "/tasks"),
            json,
            r#"{"type":"delay","seconds":1e400}"#,
            400,
            "malformed-request",
        ),
        invalid(
            "a task without a type",
            at(Admin, M::POST, "/tasks"),
            json!({"seconds": 1}),
            "type",
        ),
        invalid(
            "an unknown task type",
            at(Admin, M::POST, "/tasks"),
            json!({"type": "sleep", "seconds": 1}),
            "type",
        ),
        invalid(
            "a delay without seconds",
            at(Admin, M::POST, "/tasks"),
            json!({"type": "delay"}),
            "seconds",
        ),
        invalid(
            "seconds as a string",
            at(Admin, M::POST, "/tasks"),
            json!({"type": "delay", "seconds": "5"}),
            "seconds",
        ),
        invalid(
            "negative seconds",
            at(Admin, M::POST, "/tasks"),
            json!({"type": "delay", "seconds": -1}),
            "seconds",
        ),
        invalid(
            "seconds over the limit",
            at(Admin, M::POST, "/tasks"),
            json!({"type": "delay", "seconds": 86_401}),
            "seconds",
        ),
        invalid(
            "code on a delay",
            at(Admin, M::POST, "/tasks"),
            json!({"type": "delay", "seconds": 1, "code": "1"}),
            "code",
        ),
        invalid(
            "a script without code",
            at(Admin, M::POST, "/tasks"),
            json!({"type": "js"}),
            "code",
        ),
        invalid(
            "empty code",
            at(Admin, M::POST, "/tasks"),
            json!({"type": "js", "code": "  "}),
            "code",
        ),
        invalid(
            "code as a number",
            at(Admin, M::POST, "/tasks"),
            json!({"type": "js", "code": 1}),
            "code",
        ),
        invalid(
            "code over the limit",
            at(Admin, M::POST, "/tasks"),
            json!({"type": "js", "code": "1;".repeat(20_000)}),
            "code",
        ),
        invalid(
            "seconds on a script",
            at(Admin, M::POST, "/tasks"),
            json!({"type": "js", "code": "1", "seconds": 1}),
            "seconds",
        ),
        invalid(
            "an unknown task field",
            at(Admin, M::POST, "/tasks"),
            json!({"type": "delay", "seconds": 1, "priority": 9}),
            "priority",
        ),
        invalid(
            "an unknown status filter",
            at(Admin, M::GET, "/tasks?status=done"),
            Value::Null,
            "status",
        ),
        invalid(
            "a task page size of zero",
            at(Admin, M::GET, "/tasks?limit=0"),
            Value::Null,
            "limit",
        ),
        invalid(
            "a task cursor we never issued",
            at(Admin, M::GET, "/tasks?cursor=abc"),
            Value::Null,
            "cursor",
        ),
        invalid(
            "an owner name that cannot exist",
            at(Admin, M::GET, "/tasks?owner=a%20b"),
            Value::Null,
            "owner",
        ),
        raw_case(
            "a task id that cannot exist",
            at(Admin, M::GET, "/tasks/not-a-task"),
            None,
            "",
            404,
            "not-found",
        ),
        raw_case(
            "cancelling a task id that cannot exist",
            at(Admin, M::POST, "/tasks/123/cancel"),
            None,
            "",
            404,
            "not-found",
        ),
    ]
}

async fn bad_input_is_refused_with_the_right_problem_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "bystander", "user").await;
    let before = app.all_users(&admin).await;

    for case in cases() {
        let token = match case.target.who {
            As::Nobody => None,
            As::Admin => Some(admin.as_str()),
        };
        let mut request = app.request(case.target.method.clone(), case.target.path, token);
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        if case.target.method != Method::GET {
            request = request.body(case.body.clone());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        assert_eq!(status.as_u16(), case.status, "{}: got {status}", case.what);
        let problem = assert_problem(
            response,
            StatusCode::from_u16(case.status).unwrap(),
            case.slug,
        )
        .await;
        if let Some(field) = case.field {
            let fields: Vec<&str> = problem["errors"]
                .as_array()
                .unwrap_or_else(|| panic!("{}: a 422 without errors: {problem}", case.what))
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(
                fields.contains(&field),
                "{}: errors name {fields:?}, not {field}",
                case.what
            );
        }
        let text = problem.to_string();
        assert!(
            !text.contains(PASSWORD) && !text.contains(ADMIN_PASSWORD),
            "{}: a password leaked: {text}",
            case.what
        );
    }

    // Several problems at once are reported together.
    let response = app
        .send_json(
            Method::POST,
            "/users",
            Some(&admin),
            &json!({"username": "x y", "password": "p", "level": "god", "extra": 1}),
        )
        .await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-field").await;
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["extra", "level", "password", "username"],
        "{problem}"
    );

    assert_eq!(
        app.all_users(&admin).await,
        before,
        "bad input changed stored users"
    );
    let (_, tasks) = taskgate_e2e::status_and_json(app.get("/tasks", Some(&admin)).await).await;
    assert_eq!(tasks["items"], json!([]), "bad input created a task");
    app.login("admin", ADMIN_PASSWORD).await;
    app.login("bystander", PASSWORD).await;
}
