//! `GET /`: a greeting, and the caller's own account when a token is sent.

use http::StatusCode;
use serde::Serialize;

use crate::auth::optional_session;
use crate::problem::ApiError;
use crate::response::{UserView, json};
use crate::state::AppState;
use crate::{Request, Response};

#[derive(Serialize)]
struct Hello<'a> {
    message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserView<'a>>,
}

pub(crate) async fn hello(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = optional_session(state, request).await?;
    Ok(json(
        StatusCode::OK,
        &Hello {
            message: "Hello World",
            user: session.as_ref().map(|s| UserView::from(&s.user)),
        },
    ))
}
