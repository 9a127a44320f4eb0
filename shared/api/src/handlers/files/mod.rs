//! `/files`: files and the uploads they come from, over the upload use case
//! ([`taskgate_app::uploads::Uploads`]). This module is only HTTP:
//!
//! - here: the path's id, the `File` resource, listing, reading and the
//!   wording of the use case's errors as problems;
//! - [`tus`]: uploads by the tus 1.0.0 protocol (extensions `creation`,
//!   `creation-with-upload`, `termination`, `expiration`, `checksum`): its
//!   headers read and written, each request one call of the use case;
//! - [`download`]: a finished file's bytes, with `Range` and `ETag`.
//!
//! Who: the owner; an admin for a plain user's file, except that only the
//! uploader appends. Missing: 404; not yours: 403 (as for tasks).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::request::Parts;
use taskgate_app::uploads::UploadError;
use taskgate_domain::file::FileId;
use taskgate_domain::user::Username;
pub(crate) use taskgate_views::FileView;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Session;
use crate::extract::{FromQuery, Params, SharedState, path_value};
use crate::handlers::PageQuery;
use crate::problem::ApiError;
use crate::request::next_cursor;
use crate::response::Page;
use crate::state::AppState;

pub(crate) mod download;
pub(crate) mod tus;

fn no_such_file(raw: &str) -> ApiError {
    ApiError::NotFound(format!("there is no file {raw:?}"))
}

/// The `{id}` of the path. An id that cannot be valid cannot exist: 404.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct FilePath {
    /// The file id.
    #[param(value_type = String)]
    id: FileId,
}

impl<S: Send + Sync> FromRequestParts<S> for FilePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = path_value(parts).await?;
        let id = FileId::parse(&raw).map_err(|_| no_such_file(&raw))?;
        Ok(Self { id })
    }
}

/// The bytes of a tus request (`application/offset+octet-stream`).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // documentation only
pub(crate) struct Chunk(Vec<u8>);

fn header_value(value: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&value.to_string()).expect("numbers and dates are valid header values")
}

impl From<UploadError> for ApiError {
    /// The use case's refusals as the `/files` routes word them (tus's
    /// headers by name); the compatibility route words a few its own way
    /// first.
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::NoSuchFile(id) => no_such_file(&id.to_string()),
            UploadError::Denied(denied) => denied.into(),
            UploadError::FileTooLarge {
                max,
                size: Some(size),
            } => ApiError::TooLarge(format!(
                "the largest file is {max} bytes (TASKGATE_MAX_FILE_BYTES); this one would be {size}"
            )),
            UploadError::FileTooLarge { max, size: None } => ApiError::TooLarge(format!(
                "the largest file is {max} bytes (TASKGATE_MAX_FILE_BYTES)"
            )),
            UploadError::OverQuota { used, quota, size } => ApiError::FileQuota(format!(
                "your files take {used} of your {quota} bytes (TASKGATE_USER_QUOTA_BYTES); this one needs {size}"
            )),
            UploadError::TooManyFiles { max } => ApiError::FileQuota(format!(
                "you have {max} files, as many as an account may keep (TASKGATE_MAX_FILES_PER_USER); \
                 delete some first"
            )),
            UploadError::NoRoom { room } => ApiError::FileQuota(format!(
                "your files would pass your quota: {room} bytes were left (TASKGATE_USER_QUOTA_BYTES)"
            )),
            UploadError::OffsetMismatch { offset, sent } => ApiError::Conflict {
                kind: "offset-mismatch",
                detail: format!(
                    "Upload-Offset is {sent} but the upload is at {offset}; ask HEAD and send from there"
                ),
            },
            UploadError::PastTheEnd {
                announced: Some(length),
                remaining,
            } => ApiError::TooLarge(format!(
                "this chunk of {length} bytes goes past the upload's length ({remaining} bytes remain)"
            )),
            UploadError::PastTheEnd {
                announced: None,
                remaining,
            } => ApiError::TooLarge(format!(
                "the chunk goes past the upload's length ({remaining} bytes remained); nothing of it was kept"
            )),
            UploadError::ChunkTooLarge { limit } => ApiError::TooLarge(format!(
                "a PATCH may carry at most {limit} bytes here (TASKGATE_MAX_PATCH_BYTES); send smaller chunks"
            )),
            UploadError::Busy => ApiError::UploadBusy(
                "another request is appending to this upload; try again when it is done".into(),
            ),
            UploadError::ChangedMeanwhile => ApiError::UploadBusy(
                "another request changed this upload just now; ask HEAD for its offset".into(),
            ),
            UploadError::CutWithCheck => ApiError::Malformed(
                "the chunk did not arrive whole, so its checksum cannot be checked; nothing of it was kept"
                    .into(),
            ),
            UploadError::ChecksumMismatch => ApiError::ChecksumMismatch(
                "the chunk's checksum does not match Upload-Checksum; it was dropped".into(),
            ),
            UploadError::Cut => {
                ApiError::Malformed("the upload broke off; nothing of it was kept".into())
            }
            UploadError::Store(e) => e.into(),
            UploadError::Blob(e) => e.into(),
            e @ (UploadError::NotAsAnnounced { .. } | UploadError::Internal(_)) => {
                ApiError::internal(e)
            }
        }
    }
}

/// Removes the unfinished uploads whose `Upload-Expires` has passed (the
/// local server every minute). How many it removed.
pub async fn reap_expired(state: &AppState) -> Result<usize, ApiError> {
    Ok(state.uploads().reap_expired().await?)
}

/// `GET /files` query: `owner` besides the page.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FileQuery {
    /// Admins: a plain user's files (default: your own).
    #[param(value_type = Option<Username>)]
    owner: Option<Username>,
    /// `limit` and `cursor`, documented by [`PageQuery`] itself.
    #[param(ignore)]
    page: PageQuery,
}

impl FromQuery for FileQuery {
    const NAMES: &'static [&'static str] = &["owner", "limit", "cursor"];

    fn from_params(params: HashMap<String, String>) -> Result<Self, ApiError> {
        let page = PageQuery::from_map(&params)?;
        let owner = params
            .get("owner")
            .map(|raw| Username::parse(raw).map_err(|e| ApiError::invalid("owner", e.0)))
            .transpose()?;
        Ok(Self { owner, page })
    }
}

#[utoipa::path(
    get, path = "/files", tag = "files", operation_id = "files-list",
    summary = "List files and uploads, newest first",
    security(("bearer" = [])),
    params(FileQuery, PageQuery),
    responses(
        (status = 200, description = "A page of files", body = Page<FileView>),
        (status = 403, description = "`forbidden`: another owner, and not allowed to see their files"),
        (status = 404, description = "`not-found`: no such owner"),
        (status = 422, description = "`invalid-field`"),
    )
)]
pub(crate) async fn list(
    State(state): State<SharedState>,
    session: Session,
    Params(query): Params<FileQuery>,
) -> Result<Response, ApiError> {
    let actor = session.actor();
    let owner = match query.owner {
        None => session.user.clone(),
        Some(name) if name == session.user.username => session.user.clone(),
        Some(name) => {
            if !actor.is_admin() {
                return Err(ApiError::Forbidden(
                    "you can only list your own files".into(),
                ));
            }
            let owner = state.store.get_user(&name).await?.ok_or_else(|| {
                ApiError::NotFound(format!("there is no user named {:?}", name.as_str()))
            })?;
            if owner.level == taskgate_domain::user::Level::Admin {
                return Err(ApiError::Forbidden(
                    "admins cannot list other admins' files".into(),
                ));
            }
            owner
        }
    };
    let after = query.page.cursor(|raw| FileId::parse(raw).ok())?;
    let page = state
        .store
        .owner_files(&owner.user_id, after.as_ref(), query.page.limit)
        .await?;
    Ok(Json(Page {
        items: page.items.iter().map(FileView::from).collect(),
        next: page.next.map(next_cursor),
    })
    .into_response())
}

#[utoipa::path(
    get, path = "/files/{id}", tag = "files", operation_id = "files-get",
    summary = "A file's record",
    security(("bearer" = [])),
    params(FilePath),
    responses(
        (status = 200, description = "The file", body = FileView),
        (status = 403, description = "`forbidden`: someone else's file"),
        (status = 404, description = "`not-found`"),
    )
)]
pub(crate) async fn get_file(
    State(state): State<SharedState>,
    session: Session,
    FilePath { id }: FilePath,
) -> Result<Response, ApiError> {
    let file = state.uploads().find(&session.actor(), &id).await?;
    Ok(Json(FileView::from(&file)).into_response())
}
