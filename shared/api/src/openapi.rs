//! The OpenAPI 3.1 document of the API, generated from this code with
//! utoipa: [`document`].
//!
//! Request bodies are parsed by hand ([`crate::request::Fields`]) so that one
//! 422 can name every bad field; the schemas here describe what those
//! parsers accept, and the response schemas what the views serialise. Three
//! checks keep them honest: a test that the document has exactly the routes
//! of [`ROUTES`], a test that `docs/openapi.json` equals [`document`], and
//! schemathesis, which fuzzes the running server from the document and fails
//! on any response the document does not describe (tests/schemathesis.sh).
//!
//! The compatibility routes under `/user` are copies of their `/users`
//! operations, marked deprecated.

use http::Method;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::openapi::{Deprecated, OpenApi as Document};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes::{Endpoint, ROUTES};

// --- Schemas ---------------------------------------------------------------

/// `POST /auth` body (JSON or `application/x-www-form-urlencoded`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct LoginRequest {
    /// The username, any case.
    #[schema(example = "alice")]
    username: String,
    #[schema(example = "correct horse battery staple")]
    password: String,
    /// The `device_token` of an earlier successful login as this user: failed
    /// logins then count against this device only, so others' failures
    /// cannot lock it out.
    device_token: Option<String>,
}

/// A successful login.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    #[schema(pattern = "^Bearer$", example = "Bearer")]
    token_type: String,
    #[schema(format = DateTime)]
    expires_at: String,
    /// Seconds until `expires_at`.
    #[schema(minimum = 60)]
    expires_in: u64,
    /// Keep it and send it with later logins (see `LoginRequest`).
    device_token: String,
}

/// A string schema whose values are exactly the domain's spellings, so the
/// document cannot drift from the code.
macro_rules! domain_enum {
    ($(#[doc = $doc:literal])* $name:ident = $values:expr) => {
        $(#[doc = $doc])*
        struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some($values))
                    .into()
            }
        }

        impl ToSchema for $name {}
    };
}

domain_enum!(Level = taskgate_domain::user::Level::ALL.map(|l| l.as_str()));
domain_enum!(TaskType = taskgate_domain::task::TaskKind::ALL.map(|k| k.as_str()));
domain_enum!(TaskStatus = taskgate_domain::task::Status::ALL.map(|s| s.as_str()));
domain_enum!(EventType = taskgate_domain::task::EventData::TYPE_NAMES);
domain_enum!(
    SecurityKind = taskgate_domain::security::SecurityKind::ALL
        .iter()
        .map(|k| k.as_str())
);

/// A username: 3–32 of `a-z 0-9 . _ -`, starting with a letter or digit;
/// case-insensitive (stored lower-case).
#[derive(ToSchema)]
#[schema(
    value_type = String,
    pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$",
    example = "alice"
)]
#[allow(dead_code)]
struct Username(String);

/// A password: 15–128 characters, not containing the username.
#[derive(ToSchema)]
#[schema(
    value_type = String,
    min_length = 15,
    max_length = 128,
    example = "correct horse battery staple"
)]
#[allow(dead_code)]
struct Password(String);

/// A bare e-mail address, at most 254 characters.
#[derive(ToSchema)]
#[schema(value_type = String, format = Email, max_length = 254, example = "alice@example.com")]
#[allow(dead_code)]
struct Email(String);

/// Free-form JSON object, at most `TASKGATE_MAX_PROFILE_BYTES` (default
/// 16384) bytes as compact JSON and `TASKGATE_MAX_PROFILE_DEPTH` (default 16)
/// levels deep, counting the profile object itself.
#[derive(ToSchema)]
#[schema(value_type = Object, example = json!({"team": "blue", "languages": ["rust", "js"]}))]
#[allow(dead_code)]
struct Profile(serde_json::Map<String, serde_json::Value>);

/// `POST /users` body.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct NewUser {
    username: Username,
    password: Password,
    /// Default `user`. Only admins may create admins; open sign-up creates `user` only.
    level: Option<Level>,
    email: Option<Email>,
    profile: Option<Profile>,
}

/// `PATCH /users/{username}` body: any of the fields; `null` clears `email`
/// or `profile`. A user may not change their own level.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct UserChanges {
    password: Option<Password>,
    level: Option<Level>,
    email: Option<Option<Email>>,
    profile: Option<Option<Profile>>,
}

/// A user as the API shows it (never the password hash).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct User {
    #[schema(example = "alice")]
    username: String,
    level: Level,
    #[schema(example = "alice@example.com")]
    email: Option<String>,
    profile: Option<Profile>,
    #[schema(format = DateTime, example = "2026-11-21T18:25:03.053Z")]
    created_at: String,
    #[schema(format = DateTime, example = "2026-11-21T18:25:03.053Z")]
    updated_at: String,
}

/// A page of users in username order.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct UserPage {
    items: Vec<User>,
    /// Pass as `?cursor=` for the next page; `null` on the last.
    next: Option<String>,
}

/// `GET /` answer.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Hello {
    #[schema(pattern = "^Hello World$", example = "Hello World")]
    message: String,
    /// The caller, when a token was sent.
    user: Option<User>,
}

/// Start a delay: succeeds with result 0 after `seconds`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct DelayTask {
    #[schema(pattern = "^delay$", example = "delay")]
    r#type: String,
    /// 0 up to `TASKGATE_MAX_DELAY_SECONDS` (default 86400).
    #[schema(minimum = 0, example = 5)]
    seconds: f64,
}

/// Start a script (admins only): succeeds with the script's value.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct JsTask {
    #[schema(pattern = "^js$", example = "js")]
    r#type: String,
    /// JavaScript, at most `TASKGATE_MAX_CODE_BYTES` (default 32768) bytes.
    #[schema(min_length = 1, example = "[1, 2, 3].map(x => x * 2)")]
    code: String,
}

/// `POST /tasks` body.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum NewTask {
    Delay(DelayTask),
    Js(JsTask),
}

/// Why a task failed.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TaskError {
    /// `timeout`, `cpu-limit`, `memory-limit`, `value-too-large`,
    /// `nesting-too-deep`, `recursion-limit`, `syntax-error`, `script-error`,
    /// `promise-never-settled`, `result-too-large`, `interrupted`,
    /// `workflow-unavailable`, `workflow-error`.
    #[schema(example = "script-error")]
    code: String,
    #[schema(example = "ReferenceError: nope is not defined")]
    message: String,
}

/// A task as it stands.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Task {
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    id: String,
    r#type: TaskType,
    status: TaskStatus,
    #[schema(example = "alice")]
    owner: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// The outcome, once `succeeded` (0 for delays; any JSON for scripts).
    result: Option<serde_json::Value>,
    error: Option<TaskError>,
    /// Who cancelled it.
    cancelled_by: Option<String>,
    /// Delays only: 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    progress: Option<f64>,
    /// Finished scripts: what they printed with `console.log`.
    logs: Option<Vec<String>>,
    /// Delays only.
    seconds: Option<f64>,
    /// Delays only: when it is due.
    #[schema(format = DateTime)]
    due_at: Option<String>,
}

/// A page of tasks, newest first.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TaskPage {
    items: Vec<Task>,
    next: Option<String>,
}

/// One event of a task's append-only, hash-chained log.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TaskEvent {
    #[schema(minimum = 1)]
    seq: u64,
    #[schema(format = DateTime)]
    at: String,
    /// Who caused it (a user), when a user did.
    actor: Option<String>,
    r#type: EventType,
    /// What the event records: `created` the kind, seconds or code, owner,
    /// owner id and level, due time; `started` the execution; outcomes the
    /// result or error and logs; `cancelled` who.
    data: serde_json::Value,
    /// SHA-256 of this event and `prev_hash`, hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    hash: String,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    prev_hash: String,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TaskEventList {
    items: Vec<TaskEvent>,
}

/// One entry of the security audit log. Never holds a password or token.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SecurityEvent {
    /// UUID v7: ids sort by time.
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    id: String,
    #[schema(format = DateTime)]
    at: String,
    kind: SecurityKind,
    /// The caller; `null` for anonymous requests (logins, open sign-up).
    actor: Option<String>,
    /// The username concerned; for logins, as typed.
    #[schema(example = "alice")]
    subject: String,
    request_id: Option<String>,
    /// `via` (`username`/`device`), `failures`, `locked_until`,
    /// `retry_after`, `jti`, `device`, `level`, `fields` (names of changed
    /// fields), `tokens_revoked`, as they apply.
    #[schema(example = json!({"via": "username", "failures": 6, "locked_until": "2026-11-21T18:25:04.053Z"}))]
    detail: serde_json::Map<String, serde_json::Value>,
}

/// A page of the security log, newest first.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SecurityEventPage {
    items: Vec<SecurityEvent>,
    next: Option<String>,
}

/// One invalid field of a 422.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct FieldError {
    #[schema(example = "password")]
    field: String,
    #[schema(example = "must be at least 15 characters long")]
    message: String,
}

/// Every error: RFC 9457 problem details.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Problem {
    /// `urn:taskgate:problem:<slug>`, stable: match on it.
    #[schema(
        pattern = "^urn:taskgate:problem:[a-z-]+$",
        example = "urn:taskgate:problem:invalid-field"
    )]
    r#type: String,
    #[schema(example = "Invalid fields")]
    title: String,
    #[schema(minimum = 400, maximum = 599, example = 422)]
    status: u16,
    #[schema(example = "invalid value for: password")]
    detail: String,
    /// 422 only: every invalid field.
    errors: Option<Vec<FieldError>>,
    /// Quote it when reporting a problem: it finds the request's log lines.
    #[schema(example = "3f1c0c7e2b8a4e0f9d6a5b4c3d2e1f00")]
    request_id: String,
}

// --- Operations ------------------------------------------------------------
//
// One function per endpoint, named as the endpoint's Lambda function. The
// responses name the problem `type`s each status can carry.

#[utoipa::path(
    get, path = "/", tag = "general", operation_id = "root",
    summary = "Greeting, and the caller's account when a token is sent",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Hello, with `user` when a token was sent", body = Hello,
            example = json!({"message": "Hello World", "user": {"username": "alice", "level": "user", "created_at": "2026-11-21T18:25:03.053Z", "updated_at": "2026-11-21T18:25:03.053Z"}})),
    )
)]
#[allow(dead_code)]
fn root() {}

#[utoipa::path(
    post, path = "/auth", tag = "auth", operation_id = "auth-login",
    summary = "Log in",
    description = "Checks the username and password and returns a bearer token. After \
        `TASKGATE_LOGIN_FREE_FAILURES` failures in a row, each further failure locks the \
        username (or device) for 1 s, 2 s, 4 s … up to `TASKGATE_LOGIN_MAX_LOCK_SECONDS`: \
        429 until then, whatever the password and whether or not the user exists.",
    security(()),
    request_body(content(
        (LoginRequest = "application/json", example = json!({"username": "alice", "password": "correct horse battery staple"})),
        (LoginRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Logged in", body = LoginResponse,
            example = json!({"token": "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ0YXNrZ2F0ZSJ9.c2ln", "token_type": "Bearer", "expires_at": "2026-11-21T19:25:03.000Z", "expires_in": 3600, "device_token": "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ0YXNrZ2F0ZS9kZXZpY2UifQ.c2ln"})),
        (status = 400, description = "`malformed-request`: the body is not a JSON object or form", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`: the username or password is wrong (the same answer for both)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:taskgate:problem:unauthenticated", "title": "Authentication required", "status": 401, "detail": "the username or password is wrong", "request_id": "3f1c0c7e2b8a4e0f9d6a5b4c3d2e1f00"})),
        (status = 422, description = "`invalid-field`: a field is missing, unknown or not a string", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`login-locked`: too many failed logins; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until the lock ends")),
            example = json!({"type": "urn:taskgate:problem:login-locked", "title": "Too many failed logins", "status": 429, "detail": "too many failed logins; try again in 4 s", "request_id": "3f1c0c7e2b8a4e0f9d6a5b4c3d2e1f00"})),
    )
)]
#[allow(dead_code)]
fn auth_login() {}

#[utoipa::path(
    delete, path = "/auth", tag = "auth", operation_id = "auth-logout",
    summary = "Log out: revoke the token used",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The token no longer works"),
    )
)]
#[allow(dead_code)]
fn auth_logout() {}

#[utoipa::path(
    post, path = "/users", tag = "users", operation_id = "users-create",
    summary = "Create a user",
    description = "Admins create users of any level. With `TASKGATE_REGISTRATION=open`, anyone \
        may sign up without a token, as level `user` only.",
    security(("bearer" = []), ()),
    request_body(content = NewUser, content_type = "application/json",
        example = json!({"username": "alice", "password": "correct horse battery staple", "email": "alice@example.com", "profile": {"team": "blue"}})),
    responses(
        (status = 201, description = "Created", body = User,
            headers(("Location" = String, description = "`/users/{username}`"))),
        (status = 403, description = "`forbidden`: not an admin (and registration closed), or a non-admin asking for `admin`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`username-taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-field`: every bad field is listed", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:taskgate:problem:invalid-field", "title": "Invalid fields", "status": 422, "detail": "invalid value for: password", "errors": [{"field": "password", "message": "must be at least 15 characters long"}], "request_id": "3f1c0c7e2b8a4e0f9d6a5b4c3d2e1f00"})),
    )
)]
#[allow(dead_code)]
fn users_create() {}

#[utoipa::path(
    get, path = "/users", tag = "users", operation_id = "users-list",
    summary = "List users (admins)",
    security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, default 50"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 403, description = "`forbidden`: not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-field`: a bad `limit` or `cursor`, or an unknown parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn users_list() {}

#[utoipa::path(
    get, path = "/users/{username}", tag = "users", operation_id = "users-get",
    summary = "Read a user (yourself, or anyone as an admin)",
    security(("bearer" = [])),
    params(("username" = String, Path)),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 403, description = "`forbidden`: another user, and not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn users_get() {}

#[utoipa::path(
    patch, path = "/users/{username}", tag = "users", operation_id = "users-update",
    summary = "Edit a user (yourself, or anyone as an admin; never your own level)",
    description = "A password change revokes the user's other tokens.",
    security(("bearer" = [])),
    params(("username" = String, Path)),
    request_body(content = UserChanges, content_type = "application/json",
        example = json!({"email": null, "profile": {"team": "red"}})),
    responses(
        (status = 200, description = "The user as it now is", body = User),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last-admin` (demoting the last admin) or `edit-conflict`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-field`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn users_update() {}

#[utoipa::path(
    delete, path = "/users/{username}", tag = "users", operation_id = "users-delete",
    summary = "Delete a user (admins; yourself when registration is open)",
    description = "Every token of the user stops working at once.",
    security(("bearer" = [])),
    params(("username" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last-admin` or `edit-conflict`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn users_delete() {}

#[utoipa::path(
    post, path = "/tasks", tag = "tasks", operation_id = "tasks-start",
    summary = "Start a task",
    description = "Any user may start a `delay`; only admins a `js` script. Answers at once; \
        poll `GET /tasks/{id}` until the status is `succeeded`, `failed` or `cancelled`.",
    security(("bearer" = [])),
    request_body(content = NewTask, content_type = "application/json",
        examples(
            ("delay" = (value = json!({"type": "delay", "seconds": 5}))),
            ("js" = (value = json!({"type": "js", "code": "console.log('hi'); [1, 2, 3].map(x => x * 2)"}))),
        )),
    responses(
        (status = 202, description = "Started (or, if the workflow engine is down, already failed with `workflow-unavailable`)", body = Task,
            headers(("Location" = String, description = "`/tasks/{id}`")),
            example = json!({"id": "019a8f3c-5d2e-7b41-9c0a-3e5f7a9b1c2d", "type": "delay", "status": "running", "owner": "alice", "created_at": "2026-11-21T18:25:03.053Z", "updated_at": "2026-11-21T18:25:03.061Z", "progress": 0.0, "seconds": 5.0, "due_at": "2026-11-21T18:25:08.053Z"})),
        (status = 403, description = "`forbidden`: a script, and not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-field`: unknown type, seconds out of range, code too large…", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn tasks_start() {}

#[utoipa::path(
    get, path = "/tasks", tag = "tasks", operation_id = "tasks-list",
    summary = "List tasks, newest first",
    security(("bearer" = [])),
    params(
        ("status" = Option<TaskStatus>, Query, description = "Only tasks with this status"),
        ("owner" = Option<String>, Query, description = "Admins: a plain user's tasks (default: your own)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, default 50"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of tasks", body = TaskPage),
        (status = 403, description = "`forbidden`: another owner, and not allowed to see their tasks", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such owner", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-field`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn tasks_list() {}

#[utoipa::path(
    get, path = "/tasks/{id}", tag = "tasks", operation_id = "tasks-get",
    summary = "A task's status, and its result once done",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "The task", body = Task,
            example = json!({"id": "019a8f3c-5d2e-7b41-9c0a-3e5f7a9b1c2d", "type": "js", "status": "succeeded", "owner": "admin", "created_at": "2026-11-21T18:25:03.053Z", "updated_at": "2026-11-21T18:25:03.180Z", "result": [2, 4, 6], "logs": ["hi"]})),
        (status = 403, description = "`forbidden`: the task exists and is not yours to see", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such task", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn tasks_get() {}

#[utoipa::path(
    post, path = "/tasks/{id}/cancel", tag = "tasks", operation_id = "tasks-cancel",
    summary = "Cancel a task",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "Cancelled", body = Task),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`task-finished`: it had already ended", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn tasks_cancel() {}

#[utoipa::path(
    get, path = "/tasks/{id}/events", tag = "tasks", operation_id = "tasks-events",
    summary = "A task's event log, in order",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "Every event", body = TaskEventList),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn tasks_events() {}

#[utoipa::path(
    get, path = "/audit", tag = "audit", operation_id = "audit-list",
    summary = "The security audit log, newest first (admins)",
    security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, default 50"),
        ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of events", body = SecurityEventPage),
        (status = 403, description = "`forbidden`: not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-field`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(dead_code)]
fn audit_list() {}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Taskgate",
        description = "Authenticated users run long-running tasks by permission level. Every \
            error is `application/problem+json` with a stable `type`; every response carries \
            `X-Request-Id`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        root, auth_login, auth_logout, users_create, users_list, users_get, users_update,
        users_delete, tasks_start, tasks_list, tasks_get, tasks_cancel, tasks_events, audit_list
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "general"),
        (name = "auth", description = "Log in and out"),
        (name = "users", description = "Accounts; `/user…` are deprecated aliases"),
        (name = "tasks", description = "Delays and scripts"),
        (name = "audit", description = "The security audit log"),
    )
)]
struct ApiDoc;

fn operation_mut<'i>(item: &'i mut PathItem, method: &Method) -> &'i mut Option<Operation> {
    match *method {
        Method::GET => &mut item.get,
        Method::POST => &mut item.post,
        Method::PUT => &mut item.put,
        Method::PATCH => &mut item.patch,
        Method::DELETE => &mut item.delete,
        _ => unreachable!("the route table uses no other methods"),
    }
}

/// The operation documented for `method` `path`, if any.
pub fn operation<'d>(doc: &'d Document, method: &Method, path: &str) -> Option<&'d Operation> {
    let item = doc.paths.paths.get(path)?;
    match *method {
        Method::GET => item.get.as_ref(),
        Method::POST => item.post.as_ref(),
        Method::PUT => item.put.as_ref(),
        Method::PATCH => item.patch.as_ref(),
        Method::DELETE => item.delete.as_ref(),
        _ => None,
    }
}

/// A problem+json response.
fn problem(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

/// Adds the problems that come from the shared request path rather than
/// from one handler ([`crate::routes::handle`], [`crate::request`],
/// [`crate::auth`]), unless the operation describes them itself: 401 (any
/// route refuses a bad token), 503 (any route needs the store), and for
/// operations with a body or query parameters, 400, and with a body, 408,
/// 413 and 415.
fn add_shared_problems(op: &mut Operation) {
    let has_query = op
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query));
    let has_body = op.request_body.is_some();
    let mut shared = vec![
        (
            "401",
            "`unauthenticated`: no valid token where one is needed, or any invalid token",
        ),
        (
            "503",
            "`service-unavailable`: the store is down or throttling; `server-busy`: the local server is already handling `TASKGATE_MAX_REQUESTS_IN_FLIGHT` requests (both with `Retry-After: 1`)",
        ),
    ];
    if has_body {
        shared.extend([
            ("400", "`malformed-request`: the body is empty, not JSON or not an object, nested deeper than `TASKGATE_MAX_JSON_DEPTH` (default 32) levels, or a field is given twice"),
            ("408", "`request-timeout` (local server): the body did not arrive within `TASKGATE_BODY_TIMEOUT_SECONDS`"),
            ("413", "`payload-too-large`: the body is over `TASKGATE_MAX_BODY_BYTES`"),
            ("415", "`unsupported-media-type`: no JSON content type"),
        ]);
    } else if has_query {
        shared.push((
            "400",
            "`malformed-request`: a query parameter is given twice",
        ));
    }
    for (status, description) in shared {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| problem(description));
    }
}

/// The document: the annotated operations with the problems every request
/// path shares, plus a deprecated copy for each compatibility route, taken
/// from the canonical route of its endpoint.
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    for item in doc.paths.paths.values_mut() {
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            if let Some(op) = operation_mut(item, &method) {
                add_shared_problems(op);
            }
        }
    }
    for route in ROUTES {
        if operation(&doc, &route.method, route.path).is_some() {
            continue;
        }
        let canonical = canonical_route(route.endpoint);
        let mut copy = operation(&doc, &canonical.method, canonical.path)
            .cloned()
            .unwrap_or_else(|| panic!("{:?} has no documented route", route.endpoint));
        copy.deprecated = Some(Deprecated::True);
        copy.operation_id = copy
            .operation_id
            .map(|id| format!("{id}-{}", route.method.as_str().to_lowercase()));
        copy.summary = copy.summary.map(|s| {
            format!(
                "{s} (deprecated alias of {} {})",
                canonical.method, canonical.path
            )
        });
        let item = doc.paths.paths.entry(route.path.to_owned()).or_default();
        *operation_mut(item, &route.method) = Some(copy);
    }
    doc
}

/// The document as served at `/openapi.json` and kept in `docs/openapi.json`.
pub fn document_json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serialises");
    text.push('\n');
    text
}

/// The first route of `endpoint` in the table: the one the annotations use.
fn canonical_route(endpoint: Endpoint) -> &'static crate::routes::Route {
    endpoint
        .routes()
        .next()
        .expect("every endpoint has a route")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_has_exactly_the_routes_of_the_route_table() {
        let doc = document();
        let mut documented = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ] {
                if op.is_some() {
                    documented.push((method, path.clone()));
                }
            }
        }
        let mut routes: Vec<(Method, String)> = ROUTES
            .iter()
            .map(|r| (r.method.clone(), r.path.to_owned()))
            .collect();
        let key = |(m, p): &(Method, String)| (p.clone(), m.to_string());
        documented.sort_by_key(key);
        routes.sort_by_key(key);
        assert_eq!(documented, routes);
        for endpoint in Endpoint::ALL {
            let route = canonical_route(*endpoint);
            let op = operation(&doc, &route.method, route.path).unwrap();
            assert_eq!(
                op.operation_id.as_deref(),
                Some(endpoint.function_name()),
                "the canonical route of {endpoint:?} is the annotated one"
            );
            assert!(op.deprecated.is_none());
        }
    }

    #[test]
    fn every_operation_documents_its_errors_as_problems() {
        let json: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("503"), "{method} {path}");
                for (status, response) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert!(
                            response["content"]["application/problem+json"]["schema"].is_object(),
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}
