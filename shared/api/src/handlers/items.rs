//! Work items: `/projects/{id}/items…` and `GET /items`.
//!
//! Members create, list, read and edit items; project admins and an item's
//! creator delete it ([`taskgate_app::items`] decides and changes). An
//! edit with `If-Match: "N"` applies only to version N (412 otherwise);
//! without it, concurrent edits are applied one after the other and the
//! history shows each. Listings filter and sort as the contract says; a
//! bad parameter is 400 naming it; a page answered lately is answered
//! again while its project is unchanged.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use taskgate_app::items;
use taskgate_domain::permission::Actor;
use taskgate_domain::ports::{ItemQuery, ItemScope};
use taskgate_domain::project::commands::NewItem;
use taskgate_domain::project::listing::{
    Assignee, Due, ItemFilter, Position, Sort, SortKey, Value, Zone, parse_statuses,
};
use taskgate_domain::project::log::{Item, ItemChanges};
use taskgate_domain::project::{DueDate, ItemId, ItemStatus, ProjectId};
use utoipa::IntoParams;

use taskgate_views::{ItemView, body};

use crate::auth::Session;
use crate::extract::{Body, FromQuery, Params, SharedState, context_free, path_values};
use crate::handlers::projects::{ProjectPath, project_id};
use crate::problem::{ApiError, FieldError};
use crate::response::{List, Page, timestamp};
use crate::state::AppState;

fn no_such_item() -> ApiError {
    ApiError::NotFound("there is no such item".into())
}

/// `{id}` and `{item_id}` of an item path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ItemPath {
    /// The project id.
    #[param(value_type = String)]
    id: ProjectId,
    /// The item id.
    #[param(value_type = String)]
    item_id: ItemId,
}

impl<S: Send + Sync> FromRequestParts<S> for ItemPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let values = path_values(parts).await?;
        let id = project_id(&values)?;
        let item_id = values
            .get("item_id")
            .and_then(|raw| ItemId::parse(raw).ok())
            .ok_or_else(no_such_item)?;
        Ok(Self { id, item_id })
    }
}

/// The item as JSON, with its version as the `ETag`.
fn with_etag(status: StatusCode, item: &Item) -> Response {
    let mut response = (status, Json(ItemView::from(item))).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", item.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

context_free!(
    body::NewItem => NewItem,
    body::ItemEdit => ItemChanges,
);

#[utoipa::path(
    post, path = "/projects/{id}/items", tag = "projects", operation_id = "items-create",
    summary = "Create a work item (members)",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The project id")),
    request_body(content = body::NewItem, content_type = "application/json",
        example = json!({"title": "Write the report", "due_date": "2026-12-01", "assignee": "mia"})),
    responses(
        (status = 201, description = "Created", body = ItemView,
            headers(("Location" = String, description = "`/projects/{id}/items/{item_id}`"),
                    ("ETag" = String, description = "`\"1\"`"))),
        (status = 403, description = "`forbidden`: not a member"),
        (status = 404, description = "`not-found`"),
        (status = 422, description = "`invalid-field`: e.g. an assignee who is not a member"),
    )
)]
pub(crate) async fn create(
    State(state): State<SharedState>,
    session: Session,
    ProjectPath { id }: ProjectPath,
    body: Result<Body<body::NewItem>, ApiError>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    let project = items::project(state.ports(), &actor, &id).await?;
    let Body(new) = body?;
    let item = items::create(state.ports(), &actor, &project, new).await?;
    let mut response = with_etag(StatusCode::CREATED, &item);
    if let Ok(location) = HeaderValue::from_str(&format!("/projects/{id}/items/{}", item.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Listing parameters (`GET /projects/{id}/items`, `GET /items`), parsed;
/// `assignee=me` is resolved once the caller is known.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ItemListing {
    /// One or more of `pending`, `in_progress`, `completed`, comma-separated.
    #[param(value_type = Option<String>, pattern = "^(pending|in_progress|completed)(,(pending|in_progress|completed))*$")]
    status: Option<String>,
    /// `overdue`, `today` or `future`, relative to today in `tz`.
    #[param(value_type = Option<String>, pattern = "^(overdue|today|future)$")]
    due: Option<Due>,
    /// An IANA time zone such as `Europe/Paris` (default `UTC`).
    #[param(value_type = Option<String>, pattern = "^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$")]
    tz: Zone,
    /// A username, `me` or `none`.
    #[param(value_type = Option<String>, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$")]
    assignee: Option<String>,
    /// `due_date`, `status` or `created_at`, with `-` for descending
    /// (default `-created_at`).
    #[param(value_type = Option<String>, pattern = "^-?(due_date|status|created_at)$")]
    sort: Sort,
    /// Page size, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: usize,
    /// `next` of the previous page.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::BadQuery(vec![FieldError {
        field: field.to_owned(),
        message: message.into(),
    }])
}

impl FromQuery for ItemListing {
    const NAMES: &'static [&'static str] =
        &["status", "due", "tz", "assignee", "sort", "limit", "cursor"];

    fn from_params(params: HashMap<String, String>) -> Result<Self, ApiError> {
        let status = params.get("status").cloned();
        if let Some(raw) = &status {
            parse_statuses(raw).map_err(|e| bad("status", e.0))?;
        }
        let due = params
            .get("due")
            .map(|raw| Due::parse(raw).map_err(|e| bad("due", e.0)))
            .transpose()?;
        let tz = params
            .get("tz")
            .map(|raw| Zone::parse(raw).map_err(|e| bad("tz", e.0)))
            .transpose()?
            .unwrap_or_default();
        let sort = params
            .get("sort")
            .map(|raw| Sort::parse(raw).map_err(|e| bad("sort", e.0)))
            .transpose()?
            .unwrap_or_default();
        let limit = match params.get("limit") {
            None => 50,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| bad("limit", "must be a whole number from 1 to 100"))?,
        };
        Ok(Self {
            status,
            due,
            tz,
            assignee: params.get("assignee").cloned(),
            sort,
            limit,
            cursor: params.get("cursor").cloned(),
        })
    }
}

/// A cursor: the sort it belongs to and the position after which the next
/// page starts, base64url.
fn encode_cursor(position: &Position) -> String {
    let value = match position.value {
        Value::CreatedAt(at) => format!("c:{}", timestamp(at)),
        Value::Status(status) => format!("s:{}", status.as_str()),
        Value::Due(Some(date)) => format!("d:{date}"),
        Value::Due(None) => "d:".to_owned(),
    };
    let direction = if position.descending { "-" } else { "+" };
    URL_SAFE_NO_PAD.encode(format!("{direction}{value}|{}", position.id))
}

fn decode_cursor(raw: &str, sort: Sort) -> Option<Position> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let (head, id) = text.rsplit_once('|')?;
    let (direction, value) = head.split_at_checked(1)?;
    if (direction == "-") != sort.descending {
        return None;
    }
    let (kind, value) = value.split_once(':')?;
    let value = match (kind, sort.key) {
        ("c", SortKey::CreatedAt) => {
            Value::CreatedAt(taskgate_domain::timestamp::parse(value).ok()?)
        }
        ("s", SortKey::Status) => Value::Status(ItemStatus::parse(value).ok()?),
        ("d", SortKey::DueDate) if value.is_empty() => Value::Due(None),
        ("d", SortKey::DueDate) => Value::Due(Some(DueDate::parse(value).ok()?)),
        _ => return None,
    };
    Some(Position {
        descending: sort.descending,
        value,
        id: ItemId::parse(id).ok()?,
    })
}

/// One page of the items `scope` holds, as the listing asks.
async fn list_page(
    state: &AppState,
    actor: &Actor,
    scope: ItemScope,
    listing: ItemListing,
) -> Result<Response, ApiError> {
    let filter = ItemFilter {
        statuses: listing
            .status
            .as_deref()
            .map(parse_statuses)
            .transpose()
            .map_err(|e| bad("status", e.0))?,
        due: listing.due,
        assignee: listing
            .assignee
            .as_deref()
            .map(|raw| Assignee::parse(raw, &actor.username))
            .transpose()
            .map_err(|e| bad("assignee", e.0))?,
    };
    let after = listing
        .cursor
        .as_deref()
        .map(|raw| {
            decode_cursor(raw, listing.sort)
                .ok_or_else(|| bad("cursor", "is not a cursor this API returned for this sort"))
        })
        .transpose()?;
    let query = ItemQuery {
        scope,
        filter,
        sort: listing.sort,
        today: listing.tz.today(state.clock.now()),
        after,
        limit: listing.limit,
    };
    // Taken before the page is read: a change after it gives a new version,
    // so a page kept at this one is never older than what it claims.
    let version = match &query.scope {
        ItemScope::Project(project) => state.store.project_version(project),
        // Membership of many projects is not one project's version.
        ItemScope::MemberOf(_) => None,
    };
    if let Some(version) = version
        && let Some(body) = state.pages.get(&query, version)
    {
        crate::metrics::item_page(true);
        return Ok(json_body(body));
    }
    crate::metrics::item_page(false);
    let page = state.store.list_items(&query).await?;
    let body = Bytes::from(
        serde_json::to_vec(&Page {
            items: page.items.iter().map(ItemView::from).collect(),
            next: page.next.as_ref().map(encode_cursor),
        })
        .map_err(|e| ApiError::internal(format!("an item page did not serialise: {e}")))?,
    );
    if let Some(version) = version {
        state.pages.keep(query, version, body.clone());
    }
    Ok(json_body(body))
}

fn json_body(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[utoipa::path(
    get, path = "/projects/{id}/items", tag = "projects", operation_id = "items-list",
    summary = "A project's items, filtered and sorted (members)",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The project id"), ItemListing),
    responses(
        (status = 200, description = "A page of items", body = Page<ItemView>),
        (status = 400, description = "`invalid-query`: a bad parameter, named in `errors`"),
        (status = 403, description = "`forbidden`: not a member"),
        (status = 404, description = "`not-found`"),
    )
)]
pub(crate) async fn list(
    State(state): State<SharedState>,
    session: Session,
    ProjectPath { id }: ProjectPath,
    query: Result<Params<ItemListing>, ApiError>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    items::project(state.ports(), &actor, &id).await?;
    let Params(listing) = query.map_err(as_bad_query)?;
    list_page(&state, &actor, ItemScope::Project(id), listing).await
}

#[utoipa::path(
    get, path = "/items", tag = "projects", operation_id = "items-mine",
    summary = "Items across every project you are a member of, filtered and sorted",
    security(("bearer" = [])),
    params(ItemListing),
    responses(
        (status = 200, description = "A page of items", body = Page<ItemView>),
        (status = 400, description = "`invalid-query`: a bad parameter, named in `errors`"),
    )
)]
pub(crate) async fn mine(
    State(state): State<SharedState>,
    session: Session,
    query: Result<Params<ItemListing>, ApiError>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    let Params(listing) = query.map_err(as_bad_query)?;
    list_page(&state, &actor, ItemScope::MemberOf(actor.user_id), listing).await
}

/// The contract answers every bad listing parameter with 400, unknown
/// ones included (the shared query parser says 422 for those).
fn as_bad_query(error: ApiError) -> ApiError {
    match error {
        ApiError::Invalid(errors) => ApiError::BadQuery(errors),
        other => other,
    }
}

#[utoipa::path(
    get, path = "/projects/{id}/items/{item_id}", tag = "projects", operation_id = "items-get",
    summary = "An item (members), with its version as the ETag",
    security(("bearer" = [])),
    params(ItemPath),
    responses(
        (status = 200, description = "The item", body = ItemView,
            headers(("ETag" = String, description = "`\"N\"`, N the item's version"))),
        (status = 403, description = "`forbidden`: not a member"),
        (status = 404, description = "`not-found`"),
    )
)]
pub(crate) async fn get(
    State(state): State<SharedState>,
    session: Session,
    path: ItemPath,
) -> Result<Response, ApiError> {
    let item = items::get(state.ports(), &session.actor(), &path.id, &path.item_id).await?;
    Ok(with_etag(StatusCode::OK, &item))
}

/// `If-Match: "N"` (or `W/"N"`): the version the edit was made against.
/// Anything else is not an ETag this API sends: 400.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = value.to_str().unwrap_or("").trim();
    let raw = raw.strip_prefix("W/").unwrap_or(raw);
    raw.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .and_then(|n| n.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::Malformed(format!(
                "If-Match {raw:?} is not an ETag this API sends; send the item's ETag, e.g. \"3\""
            ))
        })
}

#[utoipa::path(
    patch, path = "/projects/{id}/items/{item_id}", tag = "projects", operation_id = "items-update",
    summary = "Edit an item (members); with If-Match only if it is still that version",
    security(("bearer" = [])),
    params(ItemPath,
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(W/)?"[0-9]+"$"#, description = "The item's ETag (`\"N\"`): apply only to version N")),
    request_body(content = body::ItemEdit, content_type = "application/json",
        example = json!({"status": "in_progress", "assignee": null})),
    responses(
        (status = 200, description = "The item as it now is", body = ItemView,
            headers(("ETag" = String, description = "`\"N\"`"))),
        (status = 403, description = "`forbidden`: not a member"),
        (status = 404, description = "`not-found`"),
        (status = 409, description = "`edit-conflict`"),
        (status = 412, description = "`precondition-failed`: the item changed since that version; nothing was changed"),
        (status = 422, description = "`invalid-field`"),
    )
)]
pub(crate) async fn update(
    State(state): State<SharedState>,
    session: Session,
    path: ItemPath,
    headers: HeaderMap,
    body: Result<Body<body::ItemEdit>, ApiError>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    let ItemPath { id, item_id } = &path;
    let checked = items::check(state.ports(), &actor, id, item_id).await?;
    let Body(changes) = body?;
    let edit = items::Edit {
        changes,
        expected: if_match(&headers)?,
    };
    let item = items::edit(state.ports(), &actor, checked, edit).await?;
    Ok(with_etag(StatusCode::OK, &item))
}

#[utoipa::path(
    delete, path = "/projects/{id}/items/{item_id}", tag = "projects", operation_id = "items-delete",
    summary = "Delete an item (project admins; its creator)",
    security(("bearer" = [])),
    params(ItemPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`"),
        (status = 404, description = "`not-found`"),
        (status = 409, description = "`edit-conflict`"),
    )
)]
pub(crate) async fn delete(
    State(state): State<SharedState>,
    session: Session,
    path: ItemPath,
) -> Result<StatusCode, ApiError> {
    items::delete(state.ports(), &session.actor(), &path.id, &path.item_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/projects/{id}/items/{item_id}/events", tag = "projects", operation_id = "items-events",
    summary = "An item's history, in order, hash-chained (members)",
    security(("bearer" = [])),
    params(ItemPath),
    responses(
        (status = 200, description = "Every event", body = List<taskgate_views::ItemEventView>),
        (status = 403, description = "`forbidden`: not a member"),
        (status = 404, description = "`not-found`"),
    )
)]
pub(crate) async fn events(
    State(state): State<SharedState>,
    session: Session,
    path: ItemPath,
) -> Result<Response, ApiError> {
    let log = items::history(state.ports(), &session.actor(), &path.id, &path.item_id).await?;
    Ok(Json(List {
        items: log
            .iter()
            .map(taskgate_views::ItemEventView::from)
            .collect(),
    })
    .into_response())
}

/// The listing's parsers over any input: cursors (any text, and every
/// cursor this API hands out read back exactly), and the query parameters
/// (`limit` only from 1 to 100, whatever the number sent).
#[cfg(test)]
mod listing_fuzz {
    use proptest::prelude::*;

    use super::*;

    const SORTS: [&str; 6] = [
        "due_date",
        "-due_date",
        "status",
        "-status",
        "created_at",
        "-created_at",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_cursor_text_is_a_position_or_refused(raw in "\\PC{0,96}", sort in 0usize..6) {
            let _ = decode_cursor(&raw, Sort::parse(SORTS[sort]).unwrap());
            // Base64 of anything, too.
            let encoded = URL_SAFE_NO_PAD.encode(raw.as_bytes());
            let _ = decode_cursor(&encoded, Sort::parse(SORTS[sort]).unwrap());
        }

        #[test]
        fn every_cursor_handed_out_reads_back(
            seconds in 0i64..4_000_000_000, status in 0usize..3, day in 0i64..3650, sort in 0usize..6,
        ) {
            let sort = Sort::parse(SORTS[sort]).unwrap();
            let value = match sort.key {
                SortKey::CreatedAt => Value::CreatedAt(
                    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap(),
                ),
                SortKey::Status => Value::Status(
                    ItemStatus::parse(["pending", "in_progress", "completed"][status]).unwrap(),
                ),
                SortKey::DueDate if day % 7 == 0 => Value::Due(None),
                SortKey::DueDate => Value::Due(Some(
                    DueDate::parse(&format!("{}-{:02}-{:02}", 2020 + day / 336, 1 + day % 12, 1 + day % 28))
                        .unwrap(),
                )),
            };
            let position = Position { descending: sort.descending, value, id: ItemId::new() };
            let back = decode_cursor(&encode_cursor(&position), sort);
            prop_assert_eq!(back, Some(position));
        }

        #[test]
        fn any_query_parameters_are_a_listing_or_a_400(
            names in proptest::collection::vec(
                prop_oneof![Just("status"), Just("due"), Just("tz"), Just("assignee"), Just("sort"), Just("limit"), Just("cursor")],
                0..5,
            ),
            values in proptest::collection::vec(prop_oneof![
                "\\PC{0,24}".boxed(),
                any::<i128>().prop_map(|n| n.to_string()).boxed(),
                Just(u64::MAX.to_string()).boxed(),
                Just("18446744073709551616".to_owned()).boxed(),
                Just("0".to_owned()).boxed(),
                Just("101".to_owned()).boxed(),
            ], 5),
        ) {
            let params: HashMap<String, String> = names
                .iter()
                .zip(&values)
                .map(|(n, v)| ((*n).to_owned(), v.clone()))
                .collect();
            if let Ok(listing) = ItemListing::from_params(params) {
                prop_assert!((1..=100).contains(&listing.limit));
            }
        }
    }
}
