//! The local server's compatibility routes, for clients of the seed's upload
//! service:
//!
//! - `POST /upload`: a `multipart/form-data` body whose `file` field is
//!   streamed into a new file (201 File).
//! - `DELETE /upload/kill`: aborts the caller's uploads in progress (200
//!   `{"aborted": N}`); nothing of them is stored.
//! - `POST /export` `{"filename"}`: streams the caller's newest complete
//!   file of that name.
//! - `POST /export/kill`: ends the caller's downloads in progress (200
//!   `{"aborted": N}`); their connections end short.
//!
//! Transfers in progress are registered per user ([`Transfers`]) with a
//! cancellation token the kill routes trigger. An upload is a file of the
//! upload use case recorded last ([`taskgate_app::uploads::NewFile`]): its
//! size is learnt from the body, its record written once it is whole.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::{Multipart, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use taskgate_app::uploads::{QuotaCheck, UploadError};
use taskgate_domain::file::{ContentType, FileId, FileName};
use taskgate_domain::ports::ByteStream;
use taskgate_domain::user::UserId;
use taskgate_views::body;
use tokio_util::sync::CancellationToken;

use crate::auth::Session;
use crate::extract::{Body as JsonBody, SharedState, context_free};
use crate::handlers::files::FileView;
use crate::problem::ApiError;

/// What kind of transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Upload,
    Download,
}

/// The transfers in progress, per user, with what stops each.
#[derive(Default)]
pub struct Transfers {
    next: AtomicU64,
    running: Mutex<HashMap<u64, (UserId, Direction, CancellationToken)>>,
}

/// A registered transfer; unregistered when dropped.
pub struct Transfer {
    transfers: Arc<Transfers>,
    id: u64,
    pub token: CancellationToken,
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.transfers
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Transfers {
    /// Registers a transfer of `user`'s until the returned guard drops.
    pub fn begin(self: &Arc<Self>, user: UserId, direction: Direction) -> Transfer {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (user, direction, token.clone()));
        Transfer {
            transfers: Arc::clone(self),
            id,
            token,
        }
    }

    /// Stops `user`'s transfers in `direction`; how many.
    pub fn kill(&self, user: UserId, direction: Direction) -> usize {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut killed = 0;
        for (owner, kind, token) in running.values() {
            if *owner == user && *kind == direction && !token.is_cancelled() {
                token.cancel();
                killed += 1;
            }
        }
        killed
    }
}

pub fn routes() -> axum::Router<SharedState> {
    use axum::routing::{delete, post};
    axum::Router::new()
        // The file part is streamed to the blob store, which stops it at
        // TASKGATE_MAX_FILE_BYTES (413) and the quota: axum's default
        // 2 MiB limit on a multipart body is not the file limit.
        .route(
            "/upload",
            post(upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/upload/kill", delete(kill_uploads))
        .route("/export", post(export))
        .route("/export/kill", post(kill_downloads))
}

fn aborted() -> ApiError {
    ApiError::Conflict {
        kind: "transfer-aborted",
        detail: "the transfer was aborted (DELETE /upload/kill or POST /export/kill); nothing of it was kept".into(),
    }
}

async fn upload(
    State(state): State<SharedState>,
    session: Session,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut multipart = multipart.map_err(|e| {
        ApiError::UnsupportedMediaType(format!("send multipart/form-data with a file field ({e})"))
    })?;
    let uploads = state.uploads();
    let transfer = state
        .transfers
        .begin(session.user.user_id, Direction::Upload);
    loop {
        let field = tokio::select! {
            field = multipart.next_field() => field.map_err(|e| ApiError::Malformed(format!("the multipart body does not parse: {e}")))?,
            () = transfer.token.cancelled() => return Err(aborted()),
        };
        let Some(field) = field else {
            return Err(ApiError::invalid(
                "file",
                "send the file in a field named file",
            ));
        };
        if field.name() != Some("file") {
            continue;
        }
        let name = field
            .file_name()
            .map(FileName::parse)
            .transpose()
            .map_err(|e| ApiError::invalid("file", format!("the file name {e}")))?
            .unwrap_or_else(|| FileName::parse("upload").expect("a valid name"));
        let content_type = field
            .content_type()
            .and_then(|t| ContentType::parse(t).ok())
            .unwrap_or_else(ContentType::octet_stream);
        // Written before it is recorded: nothing of it is listed, or
        // counted against the quota, until it is whole.
        let mut file = uploads
            .new_file(session.actor(), FileId::new(), QuotaCheck::AtRecord)
            .await?;
        // The field borrows the request; its bytes go to the blob store
        // through a small channel, so the two run side by side.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
        let mut field = field;
        let pump = async {
            loop {
                // The store may stop reading first (a kill, the size limit):
                // then stop waiting for the client's next bytes.
                let chunk = tokio::select! {
                    chunk = field.chunk() => chunk,
                    () = tx.closed() => break,
                };
                match chunk {
                    Ok(Some(bytes)) => {
                        if tx.send(Ok(bytes)).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::other(e))).await;
                        break;
                    }
                }
            }
            drop(tx);
        };
        let token = transfer.token.clone();
        let stream: ByteStream = Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx)
                .take_until(async move { token.cancelled().await }),
        );
        let (_, appended) = tokio::join!(pump, file.append(stream, None));
        // A kill outranks what it did to the body (cut short, or not).
        let refusal = match appended {
            Ok(_) if transfer.token.is_cancelled() => Some(aborted()),
            Ok(_) => None,
            Err(e) if e.is_refusal() && transfer.token.is_cancelled() => Some(aborted()),
            Err(e) => Some(e.into()),
        };
        if let Some(refusal) = refusal {
            file.abort().await;
            return Err(refusal);
        }
        let file = file
            .finish(name, content_type)
            .await
            .map_err(|e| match e {
                UploadError::OverQuota { quota, size, .. } => ApiError::FileQuota(format!(
                    "this file of {size} bytes would take your files past your quota of {quota} bytes (TASKGATE_USER_QUOTA_BYTES)"
                )),
                other => other.into(),
            })?;
        let mut response = (StatusCode::CREATED, Json(FileView::from(&file))).into_response();
        if let Ok(location) = HeaderValue::from_str(&format!("/files/{}", file.id)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        return Ok(response);
    }
}

async fn kill_uploads(
    State(state): State<SharedState>,
    session: Session,
) -> Json<serde_json::Value> {
    let aborted = state
        .transfers
        .kill(session.user.user_id, Direction::Upload);
    tracing::info!(user = %session.user.username, aborted, "uploads aborted");
    Json(json!({ "aborted": aborted }))
}

async fn kill_downloads(
    State(state): State<SharedState>,
    session: Session,
) -> Json<serde_json::Value> {
    let aborted = state
        .transfers
        .kill(session.user.user_id, Direction::Download);
    tracing::info!(user = %session.user.username, aborted, "downloads aborted");
    Json(json!({ "aborted": aborted }))
}

context_free!(body::ExportFile => FileName);

async fn export(
    State(state): State<SharedState>,
    session: Session,
    JsonBody(filename): JsonBody<body::ExportFile>,
) -> Result<Response, ApiError> {
    // The newest complete file of that name among the caller's.
    let mut after = None;
    let file = 'search: loop {
        let page = state
            .store
            .owner_files(&session.user.user_id, after.as_ref(), 100)
            .await?;
        for file in page.items {
            if file.is_complete() && file.name == filename {
                break 'search file;
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => {
                return Err(ApiError::NotFound(format!(
                    "you have no file named {:?}",
                    filename.as_str()
                )));
            }
        }
    };
    let stream = state.blobs.read(&file.id, 0..file.size, file.size).await?;
    // Registered for as long as the body is being sent; killed, the body
    // fails, so the connection ends short of its Content-Length.
    let transfer = state
        .transfers
        .begin(session.user.user_id, Direction::Download);
    let body = futures_util::stream::unfold(
        (stream, Some(transfer)),
        |(mut stream, transfer)| async move {
            let transfer = transfer?;
            tokio::select! {
                () = transfer.token.cancelled() => Some((
                    Err(std::io::Error::other("the download was aborted (POST /export/kill)")),
                    (stream, None),
                )),
                next = stream.next() => next.map(|item| (item, (stream, Some(transfer)))),
            }
        },
    );
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(file.content_type.as_str()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&file.size.to_string()) {
        headers.insert(header::CONTENT_LENGTH, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!(
        "\"{}\"",
        file.sha256.as_deref().unwrap_or_default()
    )) {
        headers.insert(header::ETAG, value);
    }
    Ok(response)
}
