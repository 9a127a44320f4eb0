//! `GET /audit`: the security audit log, newest first, for admins.

use http::StatusCode;
use serde::Serialize;
use taskgate_domain::permission;
use taskgate_domain::security::SecurityEvent;

use crate::auth::require_session;
use crate::problem::ApiError;
use crate::request::{cursor, next_cursor, page_size, query};
use crate::response::json;
use crate::state::AppState;
use crate::{Request, Response};

#[derive(Serialize)]
struct EventList {
    items: Vec<SecurityEvent>,
    next: Option<String>,
}

pub(crate) async fn list(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let session = require_session(state, request).await?;
    permission::may_read_security_log(&session.actor())?;

    let params = query(request, &["limit", "cursor"])?;
    let limit = page_size(&params)?;
    // The cursor is the id of the previous page's last event (a UUID).
    let after = cursor(&params, |id| {
        uuid::Uuid::parse_str(id).ok().map(|id| id.to_string())
    })?;
    let page = state.store.security_events(after.as_deref(), limit).await?;
    Ok(json(
        StatusCode::OK,
        &EventList {
            items: page.items,
            next: page.next.map(next_cursor),
        },
    ))
}
