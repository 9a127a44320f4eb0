//! Every function as Lambda runs it: API Gateway HTTP API (v2) events, one
//! per route (tests/fixtures/apigw-v2), through the same `lambda_http`
//! adapter `lambda_http::run` uses, into the service every HTTP function's
//! `main` serves, and the API Gateway response that comes out.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};
use secrecy::{ExposeSecret, SecretSlice};
use serde_json::Value;
use taskgate_api::AppState;
use taskgate_api::routes::routes;
use taskgate_app::settings::Settings;
use taskgate_domain::password::Password;
use taskgate_domain::recorder::Recorder;
use taskgate_domain::task::JsLimits;
use taskgate_domain::user::{Level, User, Username};
use taskgate_e2e::{ADMIN_PASSWORD, PASSWORD};
use taskgate_embedded::engine::{LocalEngine, SystemClock};
use taskgate_js::ProcessRunner;

/// The fixtures in the order they run (later ones rely on earlier effects),
/// with the status each must get.
pub(crate) const FIXTURES: &[(&str, u16)] = &[
    ("root", 200),
    ("console", 200),
    ("console-asset", 200),
    ("auth-login", 200),
    ("auth-login-form", 200),
    ("users-list", 200),
    ("users-create", 201),
    ("users-get", 200),
    ("users-update", 200),
    ("users-delete", 204),
    ("user-create", 201),
    ("user-get", 200),
    ("user-put", 200),
    ("user-delete", 204),
    ("tasks-start", 202),
    ("tasks-list", 200),
    ("tasks-get", 200),
    ("tasks-events", 200),
    ("tasks-cancel", 200),
    ("projects-create", 201),
    ("projects-list", 200),
    ("projects-get", 200),
    ("projects-update", 200),
    ("members-put", 201),
    ("members-list", 200),
    ("members-delete", 204),
    ("items-create", 201),
    ("items-list", 200),
    ("items-mine", 200),
    ("items-get", 200),
    ("items-update", 200),
    ("items-events", 200),
    ("items-delete", 204),
    ("projects-delete", 204),
    ("files-options", 204),
    ("files-create", 201),
    ("files-head", 200),
    ("files-patch", 204),
    ("files-list", 200),
    ("files-get", 200),
    ("files-content", 307),
    ("files-delete", 204),
    ("audit-list", 200),
    ("auth-logout", 204),
];

/// The served name of the console's entry module, from its page (the
/// `console-asset` fixture asks for it: names change with the files).
pub(crate) fn console_entry(page: &str) -> String {
    let at = page
        .find("/app/assets/app.")
        .unwrap_or_else(|| panic!("the console page names no entry module: {page}"))
        + "/app/assets/".len();
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

pub(crate) struct Placeholders(pub(crate) Vec<(&'static str, String)>);

impl Placeholders {
    pub(crate) fn set(&mut self, name: &'static str, value: String) {
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, value));
    }
}

impl Placeholders {
    /// The fixture `name` with every placeholder filled, in a base64 body
    /// too.
    pub(crate) fn event(&self, name: &str) -> Value {
        let mut event: Value =
            serde_json::from_str(&self.fill(&std::fs::read_to_string(fixture_path(name)).unwrap()))
                .unwrap();
        if event["isBase64Encoded"] == Value::Bool(true) {
            let decoded =
                String::from_utf8(STANDARD.decode(event["body"].as_str().unwrap()).unwrap())
                    .unwrap();
            event["body"] = Value::String(STANDARD.encode(self.fill(&decoded)));
        }
        event
    }

    pub(crate) fn fill(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{{{name}}}}}"), value)
        })
    }
}

async fn add_user(state: &AppState, name: &str, password: &str, level: Level) -> User {
    let username = Username::parse(name).unwrap();
    let hash = state
        .hash_password(Password::parse(password, Some(&username)).unwrap())
        .await
        .unwrap();
    let user = User::new(username, hash, level, None, None);
    state.store.insert_user(&user).await.unwrap();
    user
}

async fn token_for(state: &AppState, user: &User) -> String {
    let issued = state
        .keys
        .issue(user, std::time::Duration::from_secs(600), state.clock.now());
    state.store.insert_token(&issued.record).await.unwrap();
    issued.token.expose_secret().to_owned()
}

fn fixture_path(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/apigw-v2")
        .join(format!("{name}.json"))
}

#[test]
fn the_fixtures_cover_every_route() {
    let covered: BTreeSet<String> = FIXTURES
        .iter()
        .map(|(name, _)| {
            let event: Value =
                serde_json::from_str(&std::fs::read_to_string(fixture_path(name)).unwrap())
                    .unwrap();
            event["routeKey"].as_str().unwrap().to_owned()
        })
        .collect();
    let routes: BTreeSet<String> = routes()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(covered, routes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_function_answers_its_api_gateway_events() {
    let blobs = crate::blob_store::s3().await;
    let store = Arc::new(taskgate_embedded::EmbeddedStore::in_memory().unwrap());
    // Tasks run in the local engine here; on AWS the same handlers start Step
    // Functions executions (the adapter is tested against a Step Functions API).
    let engine = LocalEngine::new(
        Recorder::new(store.clone()),
        Arc::new(ProcessRunner::new(
            taskgate_e2e::js_worker(),
            JsLimits::default(),
            1,
        )),
        Arc::new(SystemClock),
        "lambda-test",
    )
    .with_exclusive_store();
    let state = Arc::new(
        AppState::new(
            store,
            &SecretSlice::from(vec![9u8; 64]),
            Settings::default(),
        )
        .unwrap()
        .with_workflow(Arc::new(engine.clone()))
        // Files' bytes in S3 (moto), as on AWS: downloads answer 307.
        .with_blobs(blobs.blobs.clone()),
    );
    let admin = add_user(&state, "admin", ADMIN_PASSWORD, Level::Admin).await;
    let alice = add_user(&state, "alice", PASSWORD, Level::User).await;
    add_user(&state, "bob", PASSWORD, Level::User).await;
    let mut placeholders = Placeholders(vec![
        ("admin_password", ADMIN_PASSWORD.to_owned()),
        ("admin_token", token_for(&state, &admin).await),
        ("user_token", token_for(&state, &alice).await),
        ("logout_token", token_for(&state, &alice).await),
    ]);

    for (i, (name, expected)) in FIXTURES.iter().enumerate() {
        let event = placeholders.event(name);
        let route_key = event["routeKey"].as_str().unwrap().to_owned();
        assert!(
            routes()
                .iter()
                .any(|r| format!("{} {}", r.method, r.path) == route_key),
            "{name}: {route_key} is not a route of the API"
        );

        let payload: LambdaRequest = serde_json::from_value(event).unwrap();
        let mut context = Context::default();
        context.request_id = format!("lambda-request-{i}");
        let mut function =
            Adapter::from(taskgate_lambda_http::service(Arc::clone(&state)).unwrap());
        let response = function
            .call(LambdaEvent::new(payload, context))
            .await
            .unwrap();
        let response = serde_json::to_value(&response).unwrap();

        assert_eq!(
            response["statusCode"], *expected,
            "{name} ({route_key}): {response}"
        );
        let headers = &response["headers"];
        assert_eq!(
            headers["x-request-id"],
            format!("lambda-request-{i}"),
            "{name}: the Lambda request id is not used"
        );
        if name.starts_with("console") {
            // The console: the page revalidated, its files kept a year, both
            // under the console's policy.
            let expected_cache = if *name == "console" {
                "no-cache"
            } else {
                "public, max-age=31536000, immutable"
            };
            assert_eq!(headers["cache-control"], expected_cache, "{name}");
            assert!(
                headers["content-security-policy"]
                    .as_str()
                    .is_some_and(|csp| csp.contains("script-src 'self'")),
                "{name}: {headers}"
            );
            let body = response["body"].as_str().unwrap();
            if *name == "console" {
                assert_eq!(headers["content-type"], "text/html; charset=utf-8");
                placeholders.set("console_asset", console_entry(body));
            } else {
                assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
                assert!(body.contains("import "), "{name}: {body}");
            }
            continue;
        }
        assert_eq!(headers["cache-control"], "no-store", "{name}");
        if *name == "files-create" {
            let location = headers["location"].as_str().unwrap();
            placeholders.set("file_id", location.trim_start_matches("/files/").to_owned());
        }
        if *name == "files-head" {
            assert_eq!(headers["upload-offset"], "0", "{response}");
            assert_eq!(headers["upload-length"], "11", "{response}");
        }
        if *name == "files-content" {
            // A presigned S3 URL, which serves the bytes to anyone holding it.
            let url = headers["location"].as_str().unwrap();
            assert!(url.contains("X-Amz-Signature="), "{url}");
            let bytes = reqwest::get(url).await.unwrap().bytes().await.unwrap();
            assert_eq!(&bytes[..], b"hello world");
        }
        // tus answers and redirects have no body.
        if *expected != 204 && !["files-create", "files-head", "files-content"].contains(name) {
            assert_eq!(
                headers["content-type"], "application/json",
                "{name}: {response}"
            );
            let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
            assert!(body.is_object(), "{name}: {body}");
            match *name {
                "tasks-start" => {
                    placeholders.set("task_id", body["id"].as_str().unwrap().to_owned())
                }
                "projects-create" => {
                    placeholders.set("project_id", body["id"].as_str().unwrap().to_owned())
                }
                "items-create" => {
                    placeholders.set("item_id", body["id"].as_str().unwrap().to_owned())
                }
                _ => {}
            }
        }
    }
    let task_id = taskgate_domain::task::TaskId::parse(&placeholders.fill("{{task_id}}")).unwrap();
    let (task, events) = state.recorder.load(&task_id).await.unwrap().unwrap();
    assert_eq!(
        task.status.kind(),
        taskgate_domain::task::StatusKind::Cancelled,
        "{events:#?}"
    );
    engine.shutdown().await;

    // The effects happened: carol created, bob and dave gone, alice edited.
    let carol = state
        .store
        .get_user(&Username::parse("carol").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        carol.email.as_ref().map(|e| e.as_str()),
        Some("carol@example.com")
    );
    for gone in ["bob", "dave"] {
        assert!(
            state
                .store
                .get_user(&Username::parse(gone).unwrap())
                .await
                .unwrap()
                .is_none()
        );
    }
    let alice = state
        .store
        .get_user(&alice.username)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.profile.unwrap().as_map()["theme"], "dark");
    assert_eq!(alice.email.unwrap().as_str(), "alice@example.com");
}
