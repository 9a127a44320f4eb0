//! The tus 1.0.0 protocol over the upload use case: `OPTIONS`, `POST`
//! (creation, with upload), `HEAD`, `PATCH` and `DELETE` (termination) of
//! `/files`. Only the protocol lives here: its headers read (each a domain
//! value or a 400/412/415 before anything is done) and written, and the
//! order in which the protocol wants its checks answered. What a request
//! does is one call of [`Uploads`]: a `PATCH` is appended under the
//! upload's lease, its bytes streamed and never held whole, checked against
//! `Upload-Checksum` when one was sent (this module knows the algorithms;
//! the use case feeds them the bytes).

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha1::Digest as _;
use taskgate_app::uploads::{self, Resume, Uploads};
use taskgate_domain::file::{ContentType, FileId, FileName, StoredFile, parse_upload_metadata};
use taskgate_domain::permission::Actor;
use time::OffsetDateTime;

use super::{Chunk, FilePath, header_value};
use crate::auth::Session;
use crate::extract::SharedState;
use crate::problem::ApiError;
use crate::state::AppState;

pub(crate) const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration,checksum";
const TUS_CHECKSUMS: &str = "sha1,sha256";
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

fn http_date(at: OffsetDateTime) -> HeaderValue {
    let seconds = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    let system = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
    header_value(httpdate::fmt_http_date(system))
}

/// Every tus response says which protocol version it speaks; a 412 also
/// lists the versions it would.
fn tus(result: Result<Response, ApiError>) -> Response {
    let mut response = match result {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    if response.status() == StatusCode::PRECONDITION_FAILED {
        response
            .headers_mut()
            .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    }
    response
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::Malformed(format!("the {name} header is not text")))
        })
        .transpose()
}

fn require_tus(headers: &HeaderMap) -> Result<(), ApiError> {
    match header_str(headers, "tus-resumable")? {
        Some(TUS_VERSION) => Ok(()),
        Some(other) => Err(ApiError::PreconditionFailed(format!(
            "this server speaks tus {TUS_VERSION}, not {other:?} (Tus-Resumable)"
        ))),
        None => Err(ApiError::PreconditionFailed(format!(
            "send Tus-Resumable: {TUS_VERSION}"
        ))),
    }
}

/// A tus byte count: digits only (no sign, no spaces), at most 2^63 - 1.
fn byte_count(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(raw) = header_str(headers, name)? else {
        return Ok(None);
    };
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) || raw.len() > 19 {
        return Err(ApiError::Malformed(format!(
            "{name} must be a whole number of bytes, not {raw:?}"
        )));
    }
    raw.parse::<u64>()
        .ok()
        .filter(|n| *n <= i64::MAX.unsigned_abs())
        .map(Some)
        .ok_or_else(|| ApiError::Malformed(format!("{name} is out of range")))
}

/// `Upload-Checksum: <algorithm> <base64 digest>`: the check the use case
/// runs over a chunk.
enum UploadChecksum {
    Sha1(sha1::Sha1, Vec<u8>),
    Sha256(sha2::Sha256, Vec<u8>),
}

impl UploadChecksum {
    fn parse(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let Some(raw) = header_str(headers, "upload-checksum")? else {
            return Ok(None);
        };
        let bad = || {
            ApiError::Malformed(format!(
                "Upload-Checksum must be \"<algorithm> <base64 digest>\" with one of {TUS_CHECKSUMS}"
            ))
        };
        let (algorithm, digest) = raw.trim().split_once(' ').ok_or_else(bad)?;
        let digest = base64::engine::general_purpose::STANDARD
            .decode(digest.trim())
            .map_err(|_| bad())?;
        match algorithm {
            "sha1" if digest.len() == 20 => Ok(Some(Self::Sha1(sha1::Sha1::new(), digest))),
            "sha256" if digest.len() == 32 => Ok(Some(Self::Sha256(sha2::Sha256::new(), digest))),
            "sha1" | "sha256" => Err(bad()),
            other => Err(ApiError::Malformed(format!(
                "the checksum algorithm {other:?} is not supported; use one of {TUS_CHECKSUMS}"
            ))),
        }
    }
}

impl uploads::ChunkCheck for UploadChecksum {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha1(hasher, _) => hasher.update(bytes),
            Self::Sha256(hasher, _) => hasher.update(bytes),
        }
    }

    fn matches(self: Box<Self>) -> bool {
        match *self {
            Self::Sha1(hasher, expected) => hasher.finalize().as_slice() == expected.as_slice(),
            Self::Sha256(hasher, expected) => hasher.finalize().as_slice() == expected.as_slice(),
        }
    }
}

#[utoipa::path(
    options, path = "/files", tag = "files", operation_id = "files-options",
    summary = "What this tus server supports",
    description = "tus 1.0.0 discovery: the version, the extensions, the largest file and the \
        checksum algorithms. Needs no token (a bad one is still refused).",
    security((), ("bearer" = [])),
    responses(
        (status = 204, description = "The server's tus capabilities",
            headers(
                ("Tus-Resumable" = String, description = "`1.0.0`"),
                ("Tus-Version" = String, description = "`1.0.0`"),
                ("Tus-Extension" = String, description = "`creation,creation-with-upload,termination,expiration,checksum`"),
                ("Tus-Max-Size" = u64, description = "`TASKGATE_MAX_FILE_BYTES`"),
                ("Tus-Checksum-Algorithm" = String, description = "`sha1,sha256`"),
            )),
    )
)]
pub(crate) async fn capabilities(State(state): State<SharedState>, _: Option<Session>) -> Response {
    options_with_size(&state).await
}

async fn options() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    headers.insert("tus-extension", HeaderValue::from_static(TUS_EXTENSIONS));
    headers.insert(
        "tus-checksum-algorithm",
        HeaderValue::from_static(TUS_CHECKSUMS),
    );
    response
}

/// `OPTIONS /files`, with `Tus-Max-Size` from the settings.
async fn options_with_size(state: &AppState) -> Response {
    let mut response = options().await;
    response.headers_mut().insert(
        "tus-max-size",
        header_value(state.settings.files.max_file_bytes),
    );
    response
}

#[utoipa::path(
    post, path = "/files", tag = "files", operation_id = "files-create",
    summary = "Start an upload (tus creation, creation-with-upload)",
    description = "Creates an upload of `Upload-Length` bytes, kept until `Upload-Expires` unless \
        finished; its bytes follow with `PATCH` (or some of them in this request's body, \
        `creation-with-upload`). The owner's files together stay within \
        `TASKGATE_USER_QUOTA_BYTES`.",
    security(("bearer" = [])),
    params(
        ("Tus-Resumable" = String, Header, description = "The tus version, `1.0.0` (412 otherwise)", pattern = "^1\\.0\\.0$"),
        ("Upload-Length" = u64, Header, description = "The file's size in bytes, at most `TASKGATE_MAX_FILE_BYTES`", minimum = 0),
        ("Upload-Metadata" = Option<String>, Header, description = "Comma-separated `key base64(value)` pairs (tus); `filename` (1 to 255 bytes of UTF-8, no `/`, `\\` or control characters) and `filetype` (a media type) are kept. 400 if malformed"),
        ("Upload-Checksum" = Option<String>, Header, description = "Of the body's bytes: `sha1` or `sha256`, then the base64 digest", pattern = "^(sha1 [A-Za-z0-9+/]{26}[AEIMQUYcgkosw048]=|sha256 [A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)$"),
    ),
    request_body(content = Chunk, content_type = "application/offset+octet-stream",
        description = "Optional: the first bytes of the file"),
    responses(
        (status = 201, description = "Created",
            headers(
                ("Location" = String, description = "`/files/{id}`"),
                ("Upload-Expires" = String, description = "When the unfinished upload is removed (HTTP date)"),
                ("Upload-Offset" = u64, description = "With a body: the bytes kept of it"),
                ("Tus-Resumable" = String, description = "`1.0.0`"),
            )),
        (status = 400, description = "`malformed-request`: a missing or malformed tus header"),
        (status = 412, description = "`precondition-failed`: no or another `Tus-Resumable`"),
        (status = 413, description = "`file-too-large`: over `TASKGATE_MAX_FILE_BYTES`; `storage-quota-exceeded`: over the owner's quota"),
        (status = 415, description = "`unsupported-media-type`: a body that is not `application/offset+octet-stream`"),
        (status = 460, description = "`checksum-mismatch`: the body's bytes do not match `Upload-Checksum` (the upload is created, the bytes dropped)"),
    )
)]
pub(crate) async fn create(
    State(state): State<SharedState>,
    session: Session,
    headers: HeaderMap,
    body: Body,
) -> Response {
    tus(create_upload(&state, &session, &headers, body).await)
}

async fn create_upload(
    state: &SharedState,
    session: &Session,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_tus(headers)?;
    let uploads = state.uploads();
    let size = match byte_count(headers, "upload-length")? {
        Some(size) => size,
        None if headers.contains_key("upload-defer-length") => {
            return Err(ApiError::Malformed(
                "Upload-Defer-Length is not supported: send Upload-Length".into(),
            ));
        }
        None => return Err(ApiError::Malformed("send Upload-Length".into())),
    };
    // Before the metadata: a file too large is 413 whatever its name.
    uploads.check_size(size)?;
    let metadata = header_str(headers, "upload-metadata")?
        .map(parse_upload_metadata)
        .transpose()
        .map_err(|e| ApiError::Malformed(format!("Upload-Metadata: {e}")))?
        .unwrap_or_default();
    let value = |key: &str| {
        metadata
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.clone())
    };
    let name = match value("filename").or_else(|| value("name")) {
        Some(raw) => {
            FileName::parse(&raw).map_err(|e| ApiError::Malformed(format!("the filename {e}")))?
        }
        None => FileName::parse("upload").expect("a valid name"),
    };
    let content_type = match value("filetype").or_else(|| value("type")) {
        Some(raw) => ContentType::parse(&raw)
            .map_err(|e| ApiError::Malformed(format!("the filetype {e}")))?,
        None => ContentType::octet_stream(),
    };
    // creation-with-upload: the first chunk comes with the creation.
    let with_upload = match header_str(headers, "content-type")? {
        Some(OFFSET_OCTET_STREAM) => true,
        None => false,
        Some(other) if byte_count(headers, "content-length")? == Some(0) => {
            let _ = other;
            false
        }
        Some(other) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "a creation with data must be {OFFSET_OCTET_STREAM}, not {other:?}"
            )));
        }
    };

    // A malformed Upload-Checksum is refused before anything is created
    // (the chunk's own failures come later and leave the upload in place).
    if with_upload {
        UploadChecksum::parse(headers)?;
    }
    let file = uploads
        .create(&session.user, name, content_type, size)
        .await?;
    let mut offset = None;
    if with_upload {
        match append(&uploads, &session.actor(), file.clone(), headers, body, 0).await {
            Ok(done) => offset = Some(done.offset),
            // The upload exists; its first chunk did not make it. The
            // client learns the offset (0) and may send it again.
            Err(e) if matches!(e, ApiError::ChecksumMismatch(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(file = %file.id, error = %e, "the creation's data was not kept");
                offset = Some(0);
            }
        }
    }
    let mut response = StatusCode::CREATED.into_response();
    let out = response.headers_mut();
    out.insert(
        header::LOCATION,
        header_value(format!("/files/{}", file.id)),
    );
    if let Some(expires) = file.expires_at {
        out.insert("upload-expires", http_date(expires));
    }
    if let Some(offset) = offset {
        out.insert("upload-offset", header_value(offset));
    }
    Ok(response)
}

#[utoipa::path(
    head, path = "/files/{id}", tag = "files", operation_id = "files-head",
    summary = "Where an upload stands (tus)",
    security(("bearer" = [])),
    params(FilePath),
    responses(
        (status = 200, description = "The offset to resume from",
            headers(
                ("Upload-Offset" = u64, description = "Bytes received"),
                ("Upload-Length" = u64, description = "The file's size"),
                ("Upload-Metadata" = String, description = "`filename` and `filetype`"),
                ("Upload-Expires" = String, description = "Unfinished uploads: when it is removed"),
                ("Cache-Control" = String, description = "`no-store`"),
                ("Tus-Resumable" = String, description = "`1.0.0`"),
            )),
        (status = 403, description = "`forbidden`: someone else's file"),
        (status = 404, description = "`not-found`: no such file (or it expired, or was terminated)"),
    )
)]
pub(crate) async fn head_upload(
    State(state): State<SharedState>,
    session: Session,
    FilePath { id }: FilePath,
) -> Response {
    tus(head_of(&state, &session, &id).await)
}

async fn head_of(state: &AppState, session: &Session, id: &FileId) -> Result<Response, ApiError> {
    let file = state.uploads().find(&session.actor(), id).await?;
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert("upload-offset", header_value(file.offset));
    headers.insert("upload-length", header_value(file.size));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    headers.insert(
        "upload-metadata",
        header_value(format!(
            "filename {},filetype {}",
            encode(file.name.as_str()),
            encode(file.content_type.as_str())
        )),
    );
    if let Some(expires) = file.expires_at.filter(|_| !file.is_complete()) {
        headers.insert("upload-expires", http_date(expires));
    }
    Ok(response)
}

#[utoipa::path(
    patch, path = "/files/{id}", tag = "files", operation_id = "files-patch",
    summary = "Send an upload's next bytes (tus)",
    description = "Appends the body at `Upload-Offset`, which must be the offset `HEAD` gives. \
        A connection cut mid-chunk keeps what arrived (unless `Upload-Checksum` was sent). \
        On Lambda a body is at most `TASKGATE_MAX_PATCH_BYTES` (4 MiB).",
    security(("bearer" = [])),
    params(
        FilePath,
        ("Tus-Resumable" = String, Header, description = "The tus version, `1.0.0` (412 otherwise)", pattern = "^1\\.0\\.0$"),
        ("Upload-Offset" = u64, Header, description = "Where these bytes go: the upload's current offset", minimum = 0),
        ("Upload-Checksum" = Option<String>, Header, description = "Of this chunk: `sha1` or `sha256`, then the base64 digest", pattern = "^(sha1 [A-Za-z0-9+/]{26}[AEIMQUYcgkosw048]=|sha256 [A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)$"),
    ),
    request_body(content = Chunk, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Stored",
            headers(
                ("Upload-Offset" = u64, description = "The new offset"),
                ("Upload-Expires" = String, description = "Unfinished uploads: when it is removed"),
                ("Tus-Resumable" = String, description = "`1.0.0`"),
            )),
        (status = 400, description = "`malformed-request`: a missing or malformed tus header"),
        (status = 403, description = "`forbidden`: not the uploader"),
        (status = 404, description = "`not-found`: no such upload (or it expired, or was terminated)"),
        (status = 409, description = "`offset-mismatch`: `Upload-Offset` is not the upload's offset (a PATCH at the end of a complete upload is 204)"),
        (status = 412, description = "`precondition-failed`: no or another `Tus-Resumable`"),
        (status = 413, description = "`file-too-large`: more bytes than the upload has room for, or a body over `TASKGATE_MAX_PATCH_BYTES`"),
        (status = 415, description = "`unsupported-media-type`: not `application/offset+octet-stream`"),
        (status = 423, description = "`upload-busy`: another request is appending to it"),
        (status = 460, description = "`checksum-mismatch`: the chunk does not match `Upload-Checksum`; it was dropped"),
    )
)]
pub(crate) async fn patch(
    State(state): State<SharedState>,
    session: Session,
    FilePath { id }: FilePath,
    headers: HeaderMap,
    body: Body,
) -> Response {
    tus(patch_upload(&state, &session, &id, &headers, body).await)
}

async fn patch_upload(
    state: &SharedState,
    session: &Session,
    id: &FileId,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_tus(headers)?;
    match header_str(headers, "content-type")? {
        Some(OFFSET_OCTET_STREAM) => {}
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "a PATCH must be {OFFSET_OCTET_STREAM}, not {}",
                other.map_or("without a Content-Type".to_owned(), |o| format!("{o:?}"))
            )));
        }
    }
    let offset = byte_count(headers, "upload-offset")?
        .ok_or_else(|| ApiError::Malformed("send Upload-Offset".into()))?;
    let actor = session.actor();
    let uploads = state.uploads();
    let file = uploads.find(&actor, id).await?;
    let done = append(&uploads, &actor, file, headers, body, offset).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert("upload-offset", header_value(done.offset));
    if let Some(expires) = done.expires_at.filter(|_| !done.is_complete()) {
        out.insert("upload-expires", http_date(expires));
    }
    Ok(response)
}

#[utoipa::path(
    delete, path = "/files/{id}", tag = "files", operation_id = "files-delete",
    summary = "Abort an upload or delete a file (tus termination)",
    description = "An unfinished upload is aborted: nothing of it remains. A finished file is \
        deleted. Afterwards the id is 404.",
    security(("bearer" = [])),
    params(FilePath),
    responses(
        (status = 204, description = "Gone",
            headers(("Tus-Resumable" = String, description = "`1.0.0`"))),
        (status = 403, description = "`forbidden`: someone else's file"),
        (status = 404, description = "`not-found`"),
    )
)]
pub(crate) async fn delete(
    State(state): State<SharedState>,
    session: Session,
    FilePath { id }: FilePath,
) -> Response {
    tus(delete_file(&state, &session, &id).await)
}

async fn delete_file(
    state: &AppState,
    session: &Session,
    id: &FileId,
) -> Result<Response, ApiError> {
    let uploads = state.uploads();
    let file = uploads.find(&session.actor(), id).await?;
    uploads.remove(&file).await?;
    tracing::info!(file = %file.id, by = %session.user.username, "file deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Appends the request's body at `offset` to `file` by `actor`
/// ([`Uploads::append`]). The protocol's order of answers first: who may
/// append and whether the offset is right (a `PATCH` at the end of a
/// complete upload is answered as done whatever else it says), then this
/// request's `Upload-Checksum` and `Content-Length`.
async fn append(
    uploads: &Uploads,
    actor: &Actor,
    file: StoredFile,
    headers: &HeaderMap,
    body: Body,
    offset: u64,
) -> Result<StoredFile, ApiError> {
    if Uploads::resume(actor, &file, offset)? == Resume::Done {
        return Ok(file);
    }
    let check: Option<Box<dyn uploads::ChunkCheck>> = match UploadChecksum::parse(headers)? {
        Some(check) => Some(Box::new(check)),
        None => None,
    };
    let announced = byte_count(headers, "content-length")?;
    let body = Box::pin(
        body.into_data_stream()
            .map(|frame| frame.map_err(std::io::Error::other)),
    );
    let chunk = uploads::Chunk {
        offset,
        announced,
        body,
        check,
    };
    Ok(uploads.append(actor, file, chunk).await?)
}
