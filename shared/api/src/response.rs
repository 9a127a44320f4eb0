//! Building responses, and the JSON shapes of resources.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

pub use taskgate_views::{EventView, List, Page, TaskView, UserView, timestamp};

/// 201 (or 202 for work that goes on) with a `Location` header and a JSON
/// body: what creating handlers return.
pub struct Created<T> {
    pub status: StatusCode,
    pub location: String,
    pub body: T,
}

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Ok(value) = HeaderValue::from_str(&self.location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
    }
}
