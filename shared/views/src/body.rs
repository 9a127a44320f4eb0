//! # The JSON bodies clients send
//!
//! One type per request body, written once: the server reads it, the
//! command-line client writes it, and the OpenAPI document describes it
//! from the same definition. Each field is the domain type that validates
//! it on its own (a [`Username`], a [`Title`], a [`DueDate`] …), with the
//! domain's own message when it does not; enums whose derived spelling of
//! an error differs from their `parse` are read through `parse`.
//!
//! What a field cannot judge alone stays raw here and is checked when the
//! body becomes the use case's input: a task's `seconds` and `code`
//! against the configured limits, a profile against the profile limits, a
//! new password against the username it is for, and which fields go with
//! which (a task's kind, a login's username or e-mail address). So every
//! field is first judged on its own, and the rules across fields and
//! settings once every field is valid.
//!
//! Absent and `null` mean the same for an optional field; a field that can
//! be cleared is an `Option<Option<T>>`: absent leaves it alone (`None`),
//! `null` clears it (`Some(None)`).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use taskgate_domain::file::{FileId, FileName};
use taskgate_domain::password::Password;
use taskgate_domain::project::commands::NewItem as NewItemInput;
use taskgate_domain::project::log::{ItemChanges, ProjectChanges};
use taskgate_domain::project::{
    Description, DueDate, ItemStatus, ProjectId, ProjectName, ProjectRole, Title,
};
use taskgate_domain::task::{TaskKind, TaskSpec};
use taskgate_domain::user::{Email, InvalidValue, Level, Username};
use utoipa::ToSchema;

/// An enum read through its `parse`, so a client sees the domain's words
/// (`must be "admin" or "user"`), not serde's list of variants.
pub trait Parse: Sized {
    fn parse(raw: &str) -> Result<Self, InvalidValue>;
}

macro_rules! parse_via_domain {
    ($($type:ty),*) => {$(
        impl Parse for $type {
            fn parse(raw: &str) -> Result<Self, InvalidValue> {
                <$type>::parse(raw)
            }
        }
    )*};
}

parse_via_domain!(Level, ItemStatus, ProjectRole, TaskKind);

/// `deserialize_with` for a [`Parse`] field.
pub fn parsed<'de, D: Deserializer<'de>, T: Parse>(deserializer: D) -> Result<T, D::Error> {
    let raw = String::deserialize(deserializer)?;
    T::parse(&raw).map_err(D::Error::custom)
}

/// `deserialize_with` for an optional [`Parse`] field (with
/// `#[serde(default)]`): absent or `null` is `None`.
pub fn parsed_option<'de, D: Deserializer<'de>, T: Parse>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|raw| T::parse(&raw).map_err(D::Error::custom))
        .transpose()
}

/// `deserialize_with` for a field that can be cleared (with
/// `#[serde(default)]`): absent is `None`, `null` is `Some(None)`.
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A secret as sent (a login's password): any string. It is written out
/// for the server, and never shown by `Debug`.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(SecretString::from(raw.into()))
    }

    pub fn into_inner(self) -> SecretString {
        self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.expose_secret())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// A new password as sent, that meets the password policy on its own
/// (length, not a common choice). Whether it contains the username is
/// checked once the username is known ([`NewPassword::for_user`]).
#[derive(Clone)]
pub struct NewPassword(SecretString);

impl NewPassword {
    /// `raw`, if the policy allows it for some account.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Password::parse(raw, None)?;
        Ok(Self(SecretString::from(raw)))
    }

    /// The password for `username`'s account: the whole policy, the
    /// username included.
    pub fn for_user(&self, username: Option<&Username>) -> Result<Password, InvalidValue> {
        Password::parse(self.0.expose_secret(), username)
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword([redacted])")
    }
}

impl Serialize for NewPassword {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.expose_secret())
    }
}

impl<'de> Deserialize<'de> for NewPassword {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(D::Error::custom)
    }
}

/// A JSON object as sent (a profile: its size and depth are settings,
/// checked when the body becomes the use case's input).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct JsonObject(pub serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Object(map) => Ok(Self(map)),
            _ => Err(D::Error::custom("must be a JSON object")),
        }
    }
}

/// `deserialize_with` for a task's `files`: an array of file ids, each
/// refusal naming the value refused.
fn file_ids<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<FileId>>, D::Error> {
    let Some(value) = Option::<serde_json::Value>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let serde_json::Value::Array(ids) = value else {
        return Err(D::Error::custom("must be an array of file ids"));
    };
    ids.iter()
        .map(|id| {
            id.as_str()
                .and_then(|raw| FileId::parse(raw).ok())
                .ok_or_else(|| D::Error::custom(format!("{id} is not a file id")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `POST /auth` body (JSON or `application/x-www-form-urlencoded`): the
/// username or the e-mail address (one of them), and the password.
///
/// Any strings: a name that cannot exist is refused like a wrong password.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub password: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

/// The two shapes of a login body, by username or by e-mail address.
impl utoipa::PartialSchema for Login {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ObjectBuilder, OneOfBuilder, SchemaType, Type,
        };
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let by = |field: &str, description: &str, example: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    field,
                    string().description(Some(description)).examples([example]),
                )
                .required(field)
                .property(
                    "password",
                    string().examples(["correct horse battery staple"]),
                )
                .required("password")
                .property(
                    "device_token",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                        .description(Some(
                            "The `device_token` of an earlier successful login as this user: \
                         failed logins then count against this device only, so others' \
                         failures cannot lock it out",
                        )),
                )
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOfBuilder::new()
            .item(by("username", "The username, any case", "alice"))
            .item(by(
                "email",
                "The account's e-mail address, any case",
                "alice@example.com",
            ))
            .into()
    }
}

impl ToSchema for Login {}

/// `POST /users` body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: Username,
    #[schema(value_type = Password)]
    pub password: NewPassword,
    /// Default `user`. Only admins may create admins; open sign-up creates `user` only.
    #[serde(
        default,
        deserialize_with = "parsed_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub level: Option<Level>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<taskgate_domain::user::Profile>)]
    pub profile: Option<JsonObject>,
}

/// `PATCH /users/{username}` body: any of the fields; `null` clears `email`
/// or `profile`. A user may not change their own level.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserEdit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Password>)]
    pub password: Option<NewPassword>,
    #[serde(
        default,
        deserialize_with = "parsed_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub level: Option<Level>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable)]
    pub email: Option<Option<Email>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable, value_type = Option<Option<taskgate_domain::user::Profile>>)]
    pub profile: Option<Option<JsonObject>>,
}

/// `POST /projects` body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: ProjectName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
}

/// `PATCH /projects/{id}` body: any of the fields; `null` clears the
/// description; `owner` names a project admin.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectEdit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ProjectName>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable)]
    pub description: Option<Option<Description>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Username>,
}

impl From<ProjectEdit> for ProjectChanges {
    fn from(edit: ProjectEdit) -> Self {
        Self {
            name: edit.name,
            description: edit.description,
            owner: edit.owner,
        }
    }
}

/// `PUT /projects/{id}/members/{username}` body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRole {
    #[serde(deserialize_with = "parsed")]
    pub role: ProjectRole,
}

impl From<MemberRole> for ProjectRole {
    fn from(body: MemberRole) -> Self {
        body.role
    }
}

/// `POST /projects/{id}/items` body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = NewItemBody)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    pub title: Title,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
    /// Default `pending`.
    #[serde(
        default,
        deserialize_with = "parsed_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<ItemStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<DueDate>,
    /// A member of the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<Username>,
}

impl From<NewItem> for NewItemInput {
    fn from(body: NewItem) -> Self {
        Self {
            title: body.title,
            description: body.description,
            status: body.status,
            due_date: body.due_date,
            assignee: body.assignee,
        }
    }
}

/// `PATCH /projects/{id}/items/{item_id}` body: any of the fields; `null`
/// clears `description`, `due_date` or `assignee`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemEdit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Title>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable)]
    pub description: Option<Option<Description>>,
    #[serde(
        default,
        deserialize_with = "parsed_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<ItemStatus>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable)]
    pub due_date: Option<Option<DueDate>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable)]
    pub assignee: Option<Option<Username>>,
}

impl From<ItemEdit> for ItemChanges {
    fn from(edit: ItemEdit) -> Self {
        Self {
            title: edit.title,
            description: edit.description,
            status: edit.status,
            due_date: edit.due_date,
            assignee: edit.assignee,
        }
    }
}

/// `POST /tasks` body, flat: the `type`, and the fields of that kind of
/// task (`seconds` for a delay, `code` for a script, `project` or `files`
/// and `format` for an export). Which fields go with which kind, and the
/// configured limits, are checked when it becomes a [`TaskSpec`]; its
/// schema is the [`TaskSpec`]'s, one shape per kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartTask {
    #[serde(rename = "type", deserialize_with = "parsed")]
    pub kind: TaskKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<ProjectId>,
    #[serde(
        default,
        deserialize_with = "file_ids",
        skip_serializing_if = "Option::is_none"
    )]
    pub files: Option<Vec<FileId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

impl StartTask {
    /// A body of `kind` with none of its fields yet.
    pub fn of(kind: TaskKind) -> Self {
        Self {
            kind,
            seconds: None,
            code: None,
            project: None,
            files: None,
            format: None,
        }
    }
}

impl utoipa::PartialSchema for StartTask {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <TaskSpec as utoipa::PartialSchema>::schema()
    }
}

impl ToSchema for StartTask {
    fn name() -> std::borrow::Cow<'static, str> {
        <TaskSpec as ToSchema>::name()
    }
}

/// `POST /export` body (the compatibility route): the name of one of the
/// caller's files.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportFile {
    #[schema(value_type = String)]
    pub filename: FileName,
}

impl From<ExportFile> for FileName {
    fn from(body: ExportFile) -> Self {
        body.filename
    }
}
