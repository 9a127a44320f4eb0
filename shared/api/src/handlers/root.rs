//! `GET /`: a greeting, and the caller's own account when a token is sent.

use axum::Json;
use axum::response::{IntoResponse, Response};
use taskgate_views::Hello;

use crate::auth::Session;
use crate::response::UserView;

#[utoipa::path(
    get, path = "/", tag = "general", operation_id = "root",
    summary = "Greeting, and the caller's account when a token is sent",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Hello, with `user` when a token was sent", body = Hello,
            example = json!({"message": "Hello World", "user": {"username": "alice", "level": "user", "created_at": "2026-11-21T18:25:03.053Z", "updated_at": "2026-11-21T18:25:03.053Z"}})),
    )
)]
pub(crate) async fn hello(session: Option<Session>) -> Response {
    Json(Hello {
        message: "Hello World".into(),
        user: session.as_ref().map(|s| UserView::from(&s.user)),
    })
    .into_response()
}
