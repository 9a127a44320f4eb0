//! Building responses, and the JSON shapes of resources.

use http::{StatusCode, header};
use serde::Serialize;
use taskgate_domain::user::User;
use time::OffsetDateTime;

use crate::Response;

pub use taskgate_domain::timestamp::format as timestamp;

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(
            serde_json::to_vec(body)
                .expect("response bodies always serialise")
                .into(),
        )
        .expect("a JSON response is always valid")
}

/// 201 with a `Location` header.
pub fn created<T: Serialize>(location: &str, body: &T) -> Response {
    created_with_status(StatusCode::CREATED, location, body)
}

/// `status` (201, or 202 for work that continues) with a `Location` header.
pub fn created_with_status<T: Serialize>(status: StatusCode, location: &str, body: &T) -> Response {
    let mut response = json(status, body);
    if let Ok(value) = http::HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

pub fn no_content() -> Response {
    http::Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Default::default())
        .expect("an empty response is always valid")
}

/// A user as clients see it: never the password hash, never the internal id.
#[derive(Debug, Serialize)]
pub struct UserView<'a> {
    pub username: &'a str,
    pub level: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(serialize_with = "taskgate_domain::timestamp::serialize")]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "taskgate_domain::timestamp::serialize")]
    pub updated_at: OffsetDateTime,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(user: &'a User) -> Self {
        Self {
            username: user.username.as_str(),
            level: user.level.as_str(),
            email: user.email.as_ref().map(|e| e.as_str()),
            profile: user.profile.as_ref().map(|p| p.as_map()),
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}
