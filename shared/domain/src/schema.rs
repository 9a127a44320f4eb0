//! OpenAPI schemas of the value types (feature `openapi`), written beside
//! the rules they describe: the bounds and patterns come from the same
//! constants the `parse` functions check, so the document cannot promise
//! more or less than the code accepts.
//!
//! Only the HTTP layer enables this feature; nothing here changes behaviour.

use utoipa::openapi::schema::{
    AdditionalProperties, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::password::Password;
use crate::project::{
    Description, DueDate, ItemId, ItemStatus, ProjectId, ProjectName, ProjectRole, Title,
};
use crate::security::{SecurityEvent, SecurityKind};
use crate::task::{EventData, StatusKind, TaskError, TaskId, TaskKind, TaskSpec};
use crate::user::{Email, Level, Profile, Username};

/// The pattern of a UUID as this API writes it (lower-case hex).
pub const UUID_PATTERN: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn nullable_string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]))
}

/// A string schema whose values are exactly the domain's spellings.
fn one_of_strings<'a>(values: impl IntoIterator<Item = &'a str>) -> RefOr<Schema> {
    string()
        .enum_values(Some(values.into_iter().collect::<Vec<_>>()))
        .into()
}

macro_rules! schema {
    ($type:ty, $name:literal, $body:expr) => {
        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                $body
            }
        }
        impl ToSchema for $type {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($name)
            }
        }
    };
}

schema!(
    Username,
    "Username",
    string()
        .description(Some(
            "3–32 of `a-z 0-9 . _ -`, starting with a letter or digit; \
             case-insensitive (stored lower-case)",
        ))
        .min_length(Some(Username::MIN_LEN))
        .max_length(Some(Username::MAX_LEN))
        .pattern(Some(format!(
            "^[A-Za-z0-9][A-Za-z0-9._-]{{{},{}}}$",
            Username::MIN_LEN - 1,
            Username::MAX_LEN - 1
        )))
        .examples(["alice"])
        .into()
);

schema!(
    Password,
    "Password",
    string()
        .description(Some(format!(
            "{}–{} characters, not containing the username, not a common password",
            Password::MIN_CHARS,
            Password::MAX_CHARS
        )))
        .min_length(Some(Password::MIN_CHARS))
        .max_length(Some(Password::MAX_CHARS))
        .examples(["correct horse battery staple"])
        .into()
);

schema!(
    Email,
    "Email",
    string()
        .description(Some("A bare e-mail address"))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
        .max_length(Some(Email::MAX_LEN))
        .examples(["alice@example.com"])
        .into()
);

schema!(
    Profile,
    "Profile",
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Free-form JSON object, at most `TASKGATE_MAX_PROFILE_BYTES` (default 16384) \
             bytes as compact JSON and `TASKGATE_MAX_PROFILE_DEPTH` (default 16) levels \
             deep, counting the profile object itself",
        ))
        .examples([serde_json::json!({"team": "blue", "languages": ["rust", "js"]})])
        .into()
);

schema!(
    Level,
    "Level",
    one_of_strings(Level::ALL.map(Level::as_str))
);
schema!(
    TaskKind,
    "TaskType",
    one_of_strings(TaskKind::ALL.map(TaskKind::as_str))
);
schema!(
    StatusKind,
    "TaskStatus",
    one_of_strings(StatusKind::ALL.map(StatusKind::as_str))
);
schema!(
    SecurityKind,
    "SecurityKind",
    one_of_strings(SecurityKind::ALL.iter().map(|k| k.as_str()))
);
schema!(
    TaskId,
    "TaskId",
    string().pattern(Some(UUID_PATTERN)).into()
);

/// A task body: `{"type": "delay", "seconds"}`, `{"type": "js", "code"}`, or
/// an export's first field (`project` or `files`; `format` is added).
fn task_body(kind: TaskKind, field: &str, schema: impl Into<RefOr<Schema>>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .title(Some(format!("{}Task", capitalised(kind.as_str()))))
        .property("type", one_of_strings([kind.as_str()]))
        .required("type")
        .property(field, schema)
        .required(field)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

schema!(
    TaskSpec,
    "NewTask",
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(
            task_body(
                TaskKind::Delay,
                "seconds",
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .description(Some("0 up to `TASKGATE_MAX_DELAY_SECONDS` (default 86400)",))
                    .minimum(Some(0))
                    .examples([5]),
            )
            .description(Some(
                "Start a delay: succeeds with result 0 after `seconds`"
            )),
        )
        .item(
            task_body(
                TaskKind::Js,
                "code",
                string()
                    .description(Some(
                        "JavaScript, not blank, at most `TASKGATE_MAX_CODE_BYTES` (default \
                         32768) bytes of UTF-8",
                    ))
                    .min_length(Some(1))
                    .pattern(Some(r"\S"))
                    .examples(["[1, 2, 3].map(x => x * 2)"]),
            )
            .description(Some(
                "Start a script (admins only): succeeds with the script's value",
            )),
        )
        .item(
            task_body(
                TaskKind::Export,
                "project",
                string()
                    .pattern(Some(UUID_PATTERN))
                    .description(Some("A project the caller is a member of",)),
            )
            .title(Some("ProjectExportTask"))
            .property("format", one_of_strings(["csv", "ndjson"]))
            .required("format")
            .description(Some(
                "Export a project's items (members): succeeds with \
                 `{\"file\", \"size\", \"sha256\"}`, a new file of the caller's",
            )),
        )
        .item(
            task_body(
                TaskKind::Export,
                "files",
                utoipa::openapi::schema::ArrayBuilder::new()
                    .items(string().pattern(Some(UUID_PATTERN)))
                    .min_items(Some(1))
                    .max_items(Some(crate::task::Export::MAX_FILES))
                    .unique_items(true)
                    .description(Some("Complete files of the caller's own")),
            )
            .title(Some("FilesExportTask"))
            .property("format", one_of_strings(["zip"]))
            .required("format")
            .description(Some(
                "Zip some of the caller's files: succeeds with \
                 `{\"file\", \"size\", \"sha256\"}`, a new file of the caller's",
            )),
        )
        .into()
);

schema!(
    TaskError,
    "TaskError",
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("Why a task failed"))
        .property(
            "code",
            string()
                .description(Some(
                    "`timeout`, `cpu-limit`, `memory-limit`, `value-too-large`, \
                     `nesting-too-deep`, `recursion-limit`, `syntax-error`, `script-error`, \
                     `promise-never-settled`, `result-too-large`, `interrupted`, \
                     `workflow-unavailable`, `workflow-error`; exports: `not-found`, \
                     `file-incomplete`, `too-large`, `quota-exceeded`, `export-failed`",
                ))
                .examples(["script-error"]),
        )
        .required("code")
        .property(
            "message",
            string().examples(["ReferenceError: nope is not defined"]),
        )
        .required("message")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
);

// `{"type": ..., "data": {...}}`, as the enum serialises (adjacently tagged).
schema!(
    EventData,
    "EventData",
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("type", one_of_strings(EventData::TYPE_NAMES))
        .required("type")
        .property(
            "data",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(
                    "What the event records: `created` the kind, seconds or code, owner, \
                 owner id and level, due time; `started` the execution; outcomes the \
                 result or error and logs; `cancelled` who",
                )),
        )
        .into()
);

schema!(
    SecurityEvent,
    "SecurityEvent",
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "One entry of the security audit log. Never holds a password or token.",
        ))
        .property(
            "id",
            string()
                .description(Some("UUID v7: ids sort by time"))
                .pattern(Some(UUID_PATTERN)),
        )
        .required("id")
        .property(
            "at",
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .required("at")
        .property("kind", SecurityKind::schema())
        .required("kind")
        .property(
            "actor",
            nullable_string()
                .description(Some(
                    "The caller; `null` for anonymous requests (logins, open sign-up)",
                )),
        )
        .property(
            "subject",
            string()
                .description(Some("The username concerned; for logins, as typed"))
                .examples(["alice"]),
        )
        .required("subject")
        .property(
            "request_id",
            nullable_string(),
        )
        .property(
            "detail",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(
                    "`via` (`username`/`device`), `failures`, `locked_until`, \
                     `retry_after`, `jti`, `device`, `level`, `fields` (names of changed \
                     fields), `tokens_revoked`, as they apply",
                ))
                .examples([serde_json::json!({"via": "username", "failures": 6, "locked_until": "2026-11-21T18:25:04.053Z"})]),
        )
        .required("detail")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
);

schema!(
    ProjectId,
    "ProjectId",
    string().pattern(Some(UUID_PATTERN)).into()
);
schema!(
    ItemId,
    "ItemId",
    string().pattern(Some(UUID_PATTERN)).into()
);
schema!(
    ProjectRole,
    "ProjectRole",
    one_of_strings(ProjectRole::ALL.map(ProjectRole::as_str))
);
schema!(
    ItemStatus,
    "ItemStatus",
    one_of_strings(ItemStatus::ALL.map(ItemStatus::as_str))
);
schema!(
    ProjectName,
    "ProjectName",
    string()
        .description(Some("1–200 characters, not blank"))
        .min_length(Some(1))
        .max_length(Some(ProjectName::MAX_CHARS))
        .pattern(Some(r"\S"))
        .examples(["Launch"])
        .into()
);
schema!(
    Title,
    "Title",
    string()
        .description(Some("1–200 characters, not blank"))
        .min_length(Some(1))
        .max_length(Some(Title::MAX_CHARS))
        .pattern(Some(r"\S"))
        .examples(["Write the report"])
        .into()
);
schema!(
    Description,
    "Description",
    string().max_length(Some(Description::MAX_CHARS)).into()
);
schema!(
    DueDate,
    "DueDate",
    string()
        .description(Some("A calendar date that exists, YYYY-MM-DD"))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
        .pattern(Some(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))
        .examples(["2026-12-01"])
        .into()
);
