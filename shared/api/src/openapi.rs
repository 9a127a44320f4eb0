//! The OpenAPI 3.1 document of the API: [`document`].
//!
//! Nothing here lists endpoints or describes bodies: the paths come from the
//! router ([`crate::app::api`]), each operation from its handler's
//! `#[utoipa::path]` annotation, and the schemas from the real request and
//! response types (and the domain's value types, whose schemas sit beside
//! their rules). This module only adds what every operation shares (the
//! bearer scheme, the problems the common request path can answer) and the
//! deprecated `/user…` aliases, copied from their canonical operations.
//!
//! Two checks keep the document honest: a test that `docs/openapi.json`
//! equals [`document`], and schemathesis, which fuzzes the running server
//! from the document and fails on any answer it does not describe
//! (tests/schemathesis.sh).

use http::Method;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::openapi::{Deprecated, OpenApi as Document};
use utoipa::{Modify, OpenApi};

use crate::app::{ALIASES, api};
use taskgate_app::settings::Settings;

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
    modifiers(&BearerAuth),
    tags(
        (name = "general"),
        (name = "auth", description = "Log in and out"),
        (name = "users", description = "Accounts; `/user…` are deprecated aliases"),
        (name = "tasks", description = "Delays and scripts"),
        (name = "audit", description = "The security audit log"),
        (name = "projects", description = "Projects, their members and work items"),
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
        Method::HEAD => &mut item.head,
        Method::OPTIONS => &mut item.options,
        _ => unreachable!("the API uses no other methods"),
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
        Method::HEAD => item.head.as_ref(),
        Method::OPTIONS => item.options.as_ref(),
        _ => None,
    }
}

/// The body of every error answer.
fn problem_content() -> Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build()
}

/// A problem+json response.
fn problem(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", problem_content())
        .build()
        .into()
}

/// Adds the problems that come from the shared request path rather than
/// from one handler ([`crate::app`], [`crate::extract`], [`crate::auth`]), unless the operation describes them itself: 401 (any
/// route refuses a bad token), 503 (any route needs the store), and for
/// operations with a body or query parameters, 400, and with a body, 408,
/// 413 and 415.
fn add_shared_problems(op: &mut Operation, method: &Method) {
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
            .or_insert_with(|| {
                if *method == Method::HEAD {
                    // The same answer, without its body.
                    ResponseBuilder::new()
                        .description(description)
                        .build()
                        .into()
                } else {
                    problem(description)
                }
            });
    }
}

/// Every error answer is problem+json (the [`crate::problem`] body), so a
/// handler declares an error response by its status and description only;
/// this gives each one without content its `Problem` body (HEAD answers
/// carry none). A response that shows an example declares its body itself.
fn problem_bodies(op: &mut Operation, method: &Method) {
    if *method == Method::HEAD {
        return;
    }
    for (status, response) in &mut op.responses.responses {
        if let RefOr::T(response) = response
            && (status.starts_with('4') || status.starts_with('5'))
            && response.content.is_empty()
        {
            response.content.insert(
                "application/problem+json".to_owned(),
                problem_content().into(),
            );
        }
    }
}

/// An optional header is absent or a value, never `null` (utoipa writes an
/// `Option` as nullable, and a header has no null to send).
fn headers_not_nullable(op: &mut Operation) {
    use utoipa::openapi::schema::{SchemaType, Type};
    for parameter in op.parameters.iter_mut().flatten() {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        if parameter.parameter_in != ParameterIn::Header {
            continue;
        }
        if let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut()
            && let SchemaType::Array(types) = &schema.schema_type
        {
            let kept: Vec<Type> = types
                .iter()
                .filter(|t| **t != Type::Null)
                .cloned()
                .collect();
            if let [only] = kept.as_slice() {
                schema.schema_type = SchemaType::Type(only.clone());
            }
        }
    }
}

/// The creating operations that take an `Idempotency-Key`
/// ([`crate::idempotency`]).
const IDEMPOTENT: [&str; 3] = ["tasks-start", "projects-create", "items-create"];

/// Documents `Idempotency-Key` and what it answers on `op`.
fn add_idempotency(op: &mut Operation) {
    if !op
        .operation_id
        .as_deref()
        .is_some_and(|id| IDEMPOTENT.contains(&id))
    {
        return;
    }
    let schema = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(1))
        .max_length(Some(255))
        .pattern(Some("^[!-~]+$"))
        .build();
    let parameter = utoipa::openapi::path::ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(utoipa::openapi::Required::False)
        .description(Some(
            "Retry safely: within 24 h the same key with the same request answers the first \
             answer again (with `Idempotency-Replayed: true`) and creates nothing.",
        ))
        .schema(Some(schema))
        .build();
    op.parameters
        .get_or_insert_with(Vec::new)
        .push(RefOr::T(parameter));
    let responses = &mut op.responses.responses;
    responses.entry("409".to_owned()).or_insert_with(|| {
        problem("`idempotency-key-in-use`: a request with this key is being handled")
    });
    if let Some(RefOr::T(invalid)) = responses.get_mut("422") {
        invalid
            .description
            .push_str("; `idempotency-key-reused`: the key was used with another request");
    }
    responses
        .entry("400".to_owned())
        .or_insert_with(|| problem("`malformed-request`: a malformed `Idempotency-Key`"));
}

/// The document: the router's operations with the problems every request
/// path shares, plus a deprecated copy of the canonical operation for each
/// compatibility route.
pub fn document() -> Document {
    let (_, paths) = api().split_for_parts();
    let mut doc = ApiDoc::openapi().merge_from(paths);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    for item in doc.paths.paths.values_mut() {
        for method in METHODS {
            if let Some(op) = operation_mut(item, &method) {
                add_idempotency(op);
                problem_bodies(op, &method);
                add_shared_problems(op, &method);
                headers_not_nullable(op);
            }
        }
    }
    for alias in &ALIASES {
        let mut copy = operation(&doc, &alias.canonical_method, alias.canonical_path)
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "the alias {} {} has no canonical operation",
                    alias.method, alias.path
                )
            });
        copy.deprecated = Some(Deprecated::True);
        copy.operation_id = copy
            .operation_id
            .map(|id| format!("{id}-{}", alias.method.as_str().to_lowercase()));
        copy.summary = copy.summary.map(|s| {
            format!(
                "{s} (deprecated alias of {} {})",
                alias.canonical_method, alias.canonical_path
            )
        });
        let item = doc.paths.paths.entry(alias.path.to_owned()).or_default();
        *operation_mut(item, &alias.method) = Some(copy);
    }
    doc
}

/// The methods the API uses.
pub const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
];

/// The document with the default settings, as kept in `docs/openapi.json`.
pub fn document_json() -> String {
    document_json_for(&Settings::default())
}

/// The document as a server with `settings` serves it at `/openapi.json`:
/// the bounds that are settings (the longest delay) are this server's.
pub fn document_json_for(settings: &Settings) -> String {
    let mut document = document();
    let seconds = document
        .components
        .as_mut()
        .and_then(|components| components.schemas.get_mut("NewTask"))
        .and_then(|task| match task {
            RefOr::T(Schema::OneOf(kinds)) => kinds.items.first_mut(),
            _ => None,
        })
        .and_then(|delay| match delay {
            RefOr::T(Schema::Object(delay)) => delay.properties.get_mut("seconds"),
            _ => None,
        });
    let Some(RefOr::T(Schema::Object(seconds))) = seconds else {
        panic!("the delay body has its seconds");
    };
    let max = settings.tasks.max_delay_seconds;
    seconds.maximum = Some(utoipa::Number::Float(max));
    seconds.description = Some(format!(
        "0 up to `TASKGATE_MAX_DELAY_SECONDS`: {max} on this server (default {})",
        Settings::default().tasks.max_delay_seconds
    ));
    // The largest file, likewise.
    let length = document
        .paths
        .paths
        .get_mut("/files")
        .and_then(|item| item.post.as_mut())
        .and_then(|op| op.parameters.as_mut())
        .and_then(|parameters| {
            parameters.iter_mut().find_map(|p| match p {
                RefOr::T(p) if p.name == "Upload-Length" => p.schema.as_mut(),
                _ => None,
            })
        });
    let Some(RefOr::T(Schema::Object(length))) = length else {
        panic!("POST /files has its Upload-Length");
    };
    length.maximum = Some(utoipa::Number::UInt(settings.files.max_file_bytes as usize));
    let mut text = serde_json::to_string_pretty(&document).expect("the document serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_document_states_the_servers_own_limits() {
        let mut settings = Settings::default();
        settings.tasks.max_delay_seconds = 600.0;
        let json: serde_json::Value = serde_json::from_str(&document_json_for(&settings)).unwrap();
        let seconds =
            &json["components"]["schemas"]["NewTask"]["oneOf"][0]["properties"]["seconds"];
        assert_eq!(seconds["maximum"], 600.0);
        assert_eq!(seconds["minimum"], 0);
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
                    // A HEAD answer has no body, problems included.
                    if (status.starts_with('4') || status.starts_with('5')) && method != "head" {
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
