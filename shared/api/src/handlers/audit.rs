//! `GET /audit`: the security audit log, newest first, for admins.

use axum::Json;
use axum::extract::State;
use taskgate_domain::permission;
use taskgate_domain::security::SecurityEvent;

use crate::auth::Session;
use crate::extract::{Params, SharedState};
use crate::handlers::PageQuery;
use crate::problem::ApiError;
use crate::request::next_cursor;
use crate::response::Page;

#[utoipa::path(
    get, path = "/audit", tag = "audit", operation_id = "audit-list",
    summary = "The security audit log, newest first (admins)",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of events", body = Page<SecurityEvent>),
        (status = 403, description = "`forbidden`: not an admin"),
        (status = 422, description = "`invalid-field`"),
    )
)]
pub(crate) async fn list(
    State(state): State<SharedState>,
    session: Session,
    query: Result<Params<PageQuery>, ApiError>,
) -> Result<Json<Page<SecurityEvent>>, ApiError> {
    permission::may_read_security_log(&session.actor())?;
    let Params(query) = query?;
    // The cursor is the id of the previous page's last event (a UUID).
    let after = query.cursor(|id| uuid::Uuid::parse_str(id).ok().map(|id| id.to_string()))?;
    let page = state
        .store
        .security_events(after.as_deref(), query.limit)
        .await?;
    Ok(Json(Page {
        items: page.items,
        next: page.next.map(next_cursor),
    }))
}
