//! `/files`: uploads by the tus 1.0.0 protocol (extensions `creation`,
//! `creation-with-upload`, `termination`, `expiration`, `checksum`), and the
//! files they become: listed, read, downloaded (with `Range`), deleted.
//!
//! The bytes stream through ([`BlobStore`](taskgate_domain::ports::BlobStore)): a PATCH is written as it
//! arrives and never held whole, and a download is read as it is sent. A
//! PATCH first takes the upload's lease (a conditional write), so two
//! requests cannot append at once; then it appends, checks the chunk's
//! checksum if one was sent, and records the new offset (with the running
//! SHA-256 of the whole file) in a second conditional write, or rolls the
//! append back. A connection cut mid-chunk keeps what arrived (unless a
//! checksum was asked for, which cannot be checked on part of a chunk), so
//! the client resumes from `HEAD`'s offset.
//!
//! Who: the owner; an admin for a plain user's file, except that only the
//! uploader appends. Missing: 404; not yours: 403 (as for tasks).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::StreamExt as _;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;
use sha1::Digest as _;
use taskgate_domain::file::{
    ContentType, FileId, FileName, FileStatus, RunningDigest, StoredFile, may_see_file,
    may_upload_to, parse_upload_metadata,
};
use taskgate_domain::permission::Actor;
use taskgate_domain::ports::{ByteStream, StoreError};
use taskgate_domain::user::Username;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Session;
use crate::extract::{FromQuery, Params, SharedState, path_value};
use crate::handlers::PageQuery;
use crate::problem::{ApiError, Problem};
use crate::request::next_cursor;
use crate::response::{Page, timestamp};
use crate::state::AppState;

pub(crate) const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration,checksum";
const TUS_CHECKSUMS: &str = "sha1,sha256";
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
/// How long a download URL the store hands out (S3's presigned) lasts.
const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(300);
/// How long a PATCH holds its upload. Longer than any PATCH should take; a
/// server that died mid-PATCH frees the upload after it.
const LEASE: Duration = Duration::from_secs(15 * 60);

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

/// A file, finished or still uploading.
#[derive(Serialize, ToSchema)]
#[schema(as = File)]
pub(crate) struct FileView<'a> {
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    id: String,
    /// As the uploader named it (`Upload-Metadata` `filename`).
    name: &'a str,
    /// As the uploader typed it (`filetype`); `application/octet-stream` if not.
    content_type: &'a str,
    /// The length announced at creation (`Upload-Length`).
    size: u64,
    /// How many bytes have arrived.
    offset: u64,
    #[schema(value_type = String, pattern = "^(uploading|complete)$")]
    status: FileStatus,
    /// Hex SHA-256 of the content, once complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{64}$")]
    sha256: Option<&'a str>,
    #[schema(value_type = Username)]
    owner: &'a str,
    #[schema(format = DateTime)]
    created_at: String,
    /// When an unfinished upload is removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

/// The bytes of a tus request (`application/offset+octet-stream`).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // documentation only
pub(crate) struct Chunk(Vec<u8>);

impl<'a> From<&'a StoredFile> for FileView<'a> {
    fn from(file: &'a StoredFile) -> Self {
        Self {
            id: file.id.to_string(),
            name: file.name.as_str(),
            content_type: file.content_type.as_str(),
            size: file.size,
            offset: file.offset,
            status: file.status,
            sha256: file.sha256.as_deref(),
            owner: file.owner.as_str(),
            created_at: timestamp(file.created_at),
            expires_at: file
                .expires_at
                .filter(|_| !file.is_complete())
                .map(timestamp),
        }
    }
}

fn header_value(value: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&value.to_string()).expect("numbers and dates are valid header values")
}

fn http_date(at: OffsetDateTime) -> HeaderValue {
    let system = SystemTime::UNIX_EPOCH + Duration::from_secs(at.unix_timestamp().max(0) as u64);
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
        .filter(|n| *n <= i64::MAX as u64)
        .map(Some)
        .ok_or_else(|| ApiError::Malformed(format!("{name} is out of range")))
}

/// `Upload-Checksum: <algorithm> <base64 digest>`.
enum ChunkCheck {
    Sha1(sha1::Sha1, Vec<u8>),
    Sha256(sha2::Sha256, Vec<u8>),
}

impl ChunkCheck {
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

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha1(hasher, _) => hasher.update(bytes),
            Self::Sha256(hasher, _) => hasher.update(bytes),
        }
    }

    fn matches(self) -> bool {
        match self {
            Self::Sha1(hasher, expected) => hasher.finalize().as_slice() == expected.as_slice(),
            Self::Sha256(hasher, expected) => hasher.finalize().as_slice() == expected.as_slice(),
        }
    }
}

/// What the body stream saw: the file's running digest and the chunk's
/// checksum, fed as bytes pass to the blob store.
struct Seen {
    digest: RunningDigest,
    check: Option<ChunkCheck>,
}

/// Frames on their way to the digests, at most (each a reference to bytes
/// already received, not a copy): the body waits when the digests lag.
const DIGEST_BACKLOG: usize = 16;

/// `body` as the blob port's stream; every frame that passes is also fed to
/// `seen` by a task of its own, so hashing and storing overlap on two
/// workers instead of taking turns (SHA-256 was half of an upload's time).
/// An async task, not a blocking thread: a slow upload must not hold one of
/// the blocking pool's threads, which the store's calls need. The handle
/// gives `seen` back once the stream is dropped and every frame is digested.
fn observed(body: Body, mut seen: Seen) -> (ByteStream, tokio::task::JoinHandle<Seen>) {
    let (frames, mut backlog) = tokio::sync::mpsc::channel::<bytes::Bytes>(DIGEST_BACKLOG);
    let digests = tokio::spawn(async move {
        while let Some(bytes) = backlog.recv().await {
            seen.digest.update(&bytes);
            if let Some(check) = seen.check.as_mut() {
                check.update(&bytes);
            }
        }
        seen
    });
    let stream = body.into_data_stream().then(move |chunk| {
        let frames = frames.clone();
        async move {
            let bytes = chunk.map_err(std::io::Error::other)?;
            frames
                .send(bytes.clone())
                .await
                .map_err(|_| std::io::Error::other("the digest task stopped"))?;
            Ok(bytes)
        }
    });
    (Box::pin(stream), digests)
}

/// The file `id` if `actor` may see it (404 if missing, 403 if not theirs).
async fn visible_file(
    state: &AppState,
    id: &FileId,
    actor: &Actor,
) -> Result<StoredFile, ApiError> {
    let file = state
        .store
        .get_file(id)
        .await?
        .filter(|f| !is_expired(state, f))
        .ok_or_else(|| no_such_file(&id.to_string()))?;
    may_see_file(actor, &file)?;
    Ok(file)
}

fn is_expired(state: &AppState, file: &StoredFile) -> bool {
    !file.is_complete() && file.expires_at.is_some_and(|at| at <= state.clock.now())
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
        (status = 400, description = "`malformed-request`: a missing or malformed tus header", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition-failed`: no or another `Tus-Resumable`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`file-too-large`: over `TASKGATE_MAX_FILE_BYTES`; `storage-quota-exceeded`: over the owner's quota", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: a body that is not `application/offset+octet-stream`", body = Problem, content_type = "application/problem+json"),
        (status = 460, description = "`checksum-mismatch`: the body's bytes do not match `Upload-Checksum` (the upload is created, the bytes dropped)", body = Problem, content_type = "application/problem+json"),
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
    let limits = &state.settings.files;
    let size = match byte_count(headers, "upload-length")? {
        Some(size) => size,
        None if headers.contains_key("upload-defer-length") => {
            return Err(ApiError::Malformed(
                "Upload-Defer-Length is not supported: send Upload-Length".into(),
            ));
        }
        None => return Err(ApiError::Malformed("send Upload-Length".into())),
    };
    if size > limits.max_file_bytes {
        return Err(ApiError::TooLarge(format!(
            "the largest file is {} bytes (TASKGATE_MAX_FILE_BYTES); this one would be {size}",
            limits.max_file_bytes
        )));
    }
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
        ChunkCheck::parse(headers)?;
    }
    let now = state.clock.now();
    let mut file = StoredFile::new_upload(
        &session.user,
        name,
        content_type,
        size,
        now,
        now + limits.upload_expiry,
        serde_json::Value::Null,
    );
    file.blob = state.blobs.start(&file.id).await?;
    if let Err(e) = state
        .store
        .insert_file(&file, limits.user_quota_bytes, limits.max_files)
        .await
    {
        let _ = state.blobs.abort(&file.id, &file.blob).await;
        return Err(match e {
            StoreError::TooManyFiles => too_many_files(limits.max_files),
            StoreError::OverQuota => {
                let used = state
                    .store
                    .used_bytes(&session.user.user_id)
                    .await
                    .unwrap_or(0);
                ApiError::FileQuota(format!(
                    "your files take {used} of your {} bytes (TASKGATE_USER_QUOTA_BYTES); this one needs {size}",
                    limits.user_quota_bytes
                ))
            }
            other => other.into(),
        });
    }
    tracing::info!(file = %file.id, owner = %file.owner, size, "upload created");
    let mut offset = None;
    if with_upload {
        match append(state, &session.actor(), file.clone(), headers, body, 0).await {
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
    let file = visible_file(state, id, &session.actor()).await?;
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
        (status = 400, description = "`malformed-request`: a missing or malformed tus header", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not the uploader", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such upload (or it expired, or was terminated)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`offset-mismatch`: `Upload-Offset` is not the upload's offset (a PATCH at the end of a complete upload is 204)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition-failed`: no or another `Tus-Resumable`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`file-too-large`: more bytes than the upload has room for, or a body over `TASKGATE_MAX_PATCH_BYTES`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: not `application/offset+octet-stream`", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "`upload-busy`: another request is appending to it", body = Problem, content_type = "application/problem+json"),
        (status = 460, description = "`checksum-mismatch`: the chunk does not match `Upload-Checksum`; it was dropped", body = Problem, content_type = "application/problem+json"),
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
    let file = visible_file(state, id, &actor).await?;
    may_upload_to(&actor, &file)?;
    let done = append(state, &actor, file, headers, body, offset).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert("upload-offset", header_value(done.offset));
    if let Some(expires) = done.expires_at.filter(|_| !done.is_complete()) {
        out.insert("upload-expires", http_date(expires));
    }
    Ok(response)
}

/// Appends `body` at `offset` to `file` (see the module documentation);
/// the file as it is afterwards. The work runs as a task of its own, so a
/// client that disconnects mid-chunk does not cancel it half-way: what
/// arrived is recorded and the lease given back.
async fn append(
    state: &SharedState,
    actor: &Actor,
    file: StoredFile,
    headers: &HeaderMap,
    body: Body,
    offset: u64,
) -> Result<StoredFile, ApiError> {
    let (state, actor, headers) = (state.clone(), actor.clone(), headers.clone());
    tokio::spawn(async move { append_now(&state, &actor, file, &headers, body, offset).await })
        .await
        .map_err(|e| ApiError::internal(format!("the append task failed: {e}")))?
}

async fn append_now(
    state: &AppState,
    actor: &Actor,
    file: StoredFile,
    headers: &HeaderMap,
    body: Body,
    offset: u64,
) -> Result<StoredFile, ApiError> {
    if file.is_complete() {
        return if offset == file.size {
            Ok(file)
        } else {
            Err(offset_mismatch(&file, offset))
        };
    }
    if offset != file.offset {
        return Err(offset_mismatch(&file, offset));
    }
    let check = ChunkCheck::parse(headers)?;
    let remaining = file.size - file.offset;
    let limit = state.settings.files.max_patch_bytes;
    if let Some(length) = byte_count(headers, "content-length")? {
        if length > remaining {
            return Err(ApiError::TooLarge(format!(
                "this chunk of {length} bytes goes past the upload's length ({remaining} bytes remain)"
            )));
        }
        if let Some(limit) = limit.filter(|limit| length > *limit) {
            return Err(ApiError::TooLarge(format!(
                "a PATCH may carry at most {limit} bytes here (TASKGATE_MAX_PATCH_BYTES); send smaller chunks"
            )));
        }
    }
    // Take the lease: nobody else appends meanwhile.
    let now = state.clock.now();
    if file.lease_until.is_some_and(|until| until > now) {
        return Err(ApiError::UploadBusy(
            "another request is appending to this upload; try again when it is done".into(),
        ));
    }
    let mut leased = file.clone();
    leased.lease_until = Some(now + LEASE);
    leased.version += 1;
    match state.store.update_file(&file, &leased).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::UploadBusy(
                "another request changed this upload just now; ask HEAD for its offset".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    }

    let _counted = UploadInProgress::new();
    let with_check = check.is_some();
    let max = limit.map_or(remaining, |limit| limit.min(remaining));
    let (body, digests) = observed(
        body,
        Seen {
            digest: leased.digest(),
            check,
        },
    );
    let appended = state
        .blobs
        .append(&leased.id, &leased.blob, offset, body, max)
        .await;
    // The stream is gone with the append: the digests have every frame.
    let seen = digests
        .await
        .map_err(|e| ApiError::internal(format!("the digest task failed: {e}")));
    let (appended, seen) = match (appended, seen) {
        (Ok(appended), Ok(seen)) => (appended, seen),
        (Err(e), _) => {
            release(state, &leased).await;
            return Err(e.into());
        }
        (Ok(appended), Err(e)) => {
            let _ = state
                .blobs
                .rollback(&leased.id, &leased.blob, &appended.state)
                .await;
            release(state, &leased).await;
            return Err(e);
        }
    };
    let refused = if appended.truncated {
        Some(if max < remaining {
            ApiError::TooLarge(format!(
                "a PATCH may carry at most {max} bytes here (TASKGATE_MAX_PATCH_BYTES); send smaller chunks"
            ))
        } else {
            ApiError::TooLarge(format!(
                "the chunk goes past the upload's length ({remaining} bytes remained); nothing of it was kept"
            ))
        })
    } else if appended.cut && with_check {
        Some(ApiError::Malformed(
            "the chunk did not arrive whole, so its checksum cannot be checked; nothing of it was kept"
                .into(),
        ))
    } else if let Some(check) = seen.check {
        (!check.matches()).then(|| {
            ApiError::ChecksumMismatch(
                "the chunk's checksum does not match Upload-Checksum; it was dropped".into(),
            )
        })
    } else {
        None
    };
    if let Some(refusal) = refused {
        if let Err(e) = state
            .blobs
            .rollback(&leased.id, &leased.blob, &appended.state)
            .await
        {
            tracing::error!(file = %leased.id, error = %e, "could not roll an append back");
        }
        release(state, &leased).await;
        return Err(refusal);
    }

    let mut next = leased.clone();
    next.offset = offset + appended.bytes;
    next.blob = appended.state.clone();
    next.lease_until = None;
    next.updated_at = state.clock.now();
    next.version += 1;
    let complete = next.offset == next.size;
    if complete && let Err(e) = state.blobs.finish(&next.id, &next.blob, next.size).await {
        // The last chunk does not count, and the lease goes back: the
        // client sends the chunk again (it was once left locked out, 423,
        // for the lease's fifteen minutes).
        tracing::error!(file = %next.id, error = %e, "could not finish an upload");
        let _ = state
            .blobs
            .rollback(&leased.id, &leased.blob, &appended.state)
            .await;
        release(state, &leased).await;
        return Err(e.into());
    }
    if complete {
        next.status = FileStatus::Complete;
        next.sha256 = Some(seen.digest.finish());
        next.digest_state = None;
        next.expires_at = None;
    } else {
        next.digest_state = Some(seen.digest.save());
    }
    match state.store.update_file(&leased, &next).await {
        Ok(()) => {}
        Err(e) => {
            // Deleted (terminated) or changed meanwhile: what was appended
            // does not count.
            if !complete {
                let _ = state
                    .blobs
                    .rollback(&leased.id, &leased.blob, &appended.state)
                    .await;
            }
            return Err(match e {
                StoreError::Conflict => no_such_file(&leased.id.to_string()),
                other => {
                    // Not recorded: the lease goes back too.
                    release(state, &leased).await;
                    other.into()
                }
            });
        }
    }
    if let Err(e) = state
        .blobs
        .commit(&next.id, &leased.blob, &appended.state)
        .await
    {
        tracing::warn!(file = %next.id, error = %e, "could not tidy up after an append");
    }
    if complete {
        tracing::info!(file = %next.id, size = next.size, by = %actor.username, "upload complete");
    }
    Ok(next)
}

/// Counts an upload's bytes arriving, for as long as it lives.
pub(crate) struct UploadInProgress;

impl UploadInProgress {
    pub(crate) fn new() -> Self {
        crate::metrics::upload(1.0);
        Self
    }
}

impl Drop for UploadInProgress {
    fn drop(&mut self) {
        crate::metrics::upload(-1.0);
    }
}

/// Gives the lease back after a refused append.
async fn release(state: &AppState, leased: &StoredFile) {
    let mut released = leased.clone();
    released.lease_until = None;
    released.version += 1;
    if let Err(e) = state.store.update_file(leased, &released).await {
        tracing::warn!(file = %leased.id, error = %e, "could not release an upload's lease");
    }
}

fn offset_mismatch(file: &StoredFile, offset: u64) -> ApiError {
    ApiError::Conflict {
        kind: "offset-mismatch",
        detail: format!(
            "Upload-Offset is {offset} but the upload is at {}; ask HEAD and send from there",
            file.offset
        ),
    }
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
        (status = 403, description = "`forbidden`: someone else's file", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
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
    let file = visible_file(state, id, &session.actor()).await?;
    remove(state, &file).await?;
    tracing::info!(file = %file.id, by = %session.user.username, "file deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes a file or unfinished upload: its record, then its bytes.
pub(crate) async fn remove(state: &AppState, file: &StoredFile) -> Result<(), ApiError> {
    // Whatever the file has become meanwhile (say its upload just
    // finished), the caller asked for it gone.
    taskgate_app::uploads::remove_from(state.store.as_ref(), state.blobs.as_ref(), file, |_| true)
        .await?;
    Ok(())
}

/// Removes the unfinished uploads whose `Upload-Expires` has passed (the
/// local server every minute). How many it removed.
pub async fn reap_expired(state: &AppState) -> Result<usize, ApiError> {
    Ok(taskgate_app::uploads::reap_expired(
        state.store.as_ref(),
        state.blobs.as_ref(),
        state.clock.now(),
    )
    .await?)
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
        (status = 403, description = "`forbidden`: another owner, and not allowed to see their files", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such owner", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-field`", body = Problem, content_type = "application/problem+json"),
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
        (status = 403, description = "`forbidden`: someone else's file", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_file(
    State(state): State<SharedState>,
    session: Session,
    FilePath { id }: FilePath,
) -> Result<Response, ApiError> {
    let file = visible_file(&state, &id, &session.actor()).await?;
    Ok(Json(FileView::from(&file)).into_response())
}

/// 413 for a user who keeps `max` files already.
pub(crate) fn too_many_files(max: u64) -> ApiError {
    ApiError::FileQuota(format!(
        "you have {max} files, as many as an account may keep (TASKGATE_MAX_FILES_PER_USER); \
         delete some first"
    ))
}

/// A single `Range: bytes=…` of a `size`-byte file: `None` for the whole
/// file (no header, or a form this server does not serve, which RFC 9110
/// lets it ignore); `Err` when it cannot be satisfied (416).
fn byte_range(headers: &HeaderMap, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(raw) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = raw.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let range = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n = number(suffix).ok_or(())?;
            if n == 0 || size == 0 {
                return Err(());
            }
            size - n.min(size)..size
        }
        (start, "") => {
            let start = number(start).ok_or(())?;
            start..size
        }
        (start, end) => {
            let (start, end) = (number(start).ok_or(())?, number(end).ok_or(())?);
            if end < start {
                return Ok(None);
            }
            // `end` may be 2^64 - 1: never past the file, never wrapped.
            start..end.saturating_add(1).min(size)
        }
    };
    if range.start >= size {
        return Err(());
    }
    Ok(Some(range))
}

/// `attachment; filename="…"; filename*=UTF-8''…`: an ASCII fallback and
/// the exact name (RFC 6266).
fn content_disposition(name: &str) -> HeaderValue {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    header_value(format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"
    ))
}

#[utoipa::path(
    get, path = "/files/{id}/content", tag = "files", operation_id = "files-content",
    summary = "Download a file",
    description = "The bytes, with `Range` (one range; 206) and `ETag` (the SHA-256; \
        `If-None-Match`, `If-Range`). On AWS the answer is a 307 to a short-lived S3 URL.",
    security(("bearer" = [])),
    params(
        FilePath,
        ("Range" = Option<String>, Header, description = "`bytes=first-last`, `bytes=first-` or `bytes=-suffix`"),
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` you have: 304 if unchanged"),
        ("If-Range" = Option<String>, Header, description = "The `ETag` the range is of"),
    ),
    responses(
        (status = 200, description = "The whole file", content_type = "application/octet-stream", body = Chunk,
            headers(
                ("ETag" = String, description = "The content's SHA-256, quoted"),
                ("Accept-Ranges" = String, description = "`bytes`"),
                ("Content-Disposition" = String, description = "`attachment` with the file's name"),
            )),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = Chunk,
            headers(
                ("Content-Range" = String, description = "`bytes first-last/size`"),
                ("ETag" = String, description = "The content's SHA-256, quoted"),
            )),
        (status = 304, description = "Unchanged (`If-None-Match`)"),
        (status = 307, description = "AWS: fetch it from `Location`, a short-lived S3 URL",
            headers(("Location" = String, description = "A presigned S3 URL"))),
        (status = 403, description = "`forbidden`: someone else's file", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`upload-unfinished`: the upload is not complete", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "`range-not-satisfiable`: the range is outside the file", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn content(
    State(state): State<SharedState>,
    session: Session,
    FilePath { id }: FilePath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let file = visible_file(&state, &id, &session.actor()).await?;
    if !file.is_complete() {
        return Err(ApiError::Conflict {
            kind: "upload-unfinished",
            detail: format!(
                "the upload has {} of its {} bytes; its content is served once complete",
                file.offset, file.size
            ),
        });
    }
    let etag = format!(
        "\"{}\"",
        file.sha256.clone().unwrap_or_else(|| file.id.to_string())
    );
    // Where the bytes can be fetched directly (S3 on AWS), send the client
    // there: a Lambda response could not stream a large file.
    if let Some(url) = state
        .blobs
        .download_url(
            &file.id,
            DOWNLOAD_URL_TTL,
            file.name.as_str(),
            file.content_type.as_str(),
        )
        .await?
    {
        let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
        let out = response.headers_mut();
        out.insert(header::LOCATION, header_value(url));
        out.insert(header::ETAG, header_value(&etag));
        return Ok(response);
    }
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response
            .headers_mut()
            .insert(header::ETAG, header_value(&etag));
        return Ok(response);
    }
    // If-Range: only a matching validator keeps the range.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let range = if if_range_ok {
        match byte_range(&headers, file.size) {
            Ok(range) => range,
            Err(()) => {
                let mut response = ApiError::RangeNotSatisfiable(format!(
                    "the file has {} bytes; that range is outside it",
                    file.size
                ))
                .into_response();
                response.headers_mut().insert(
                    header::CONTENT_RANGE,
                    header_value(format!("bytes */{}", file.size)),
                );
                return Ok(response);
            }
        }
    } else {
        None
    };
    let (status, span) = match range {
        Some(range) => (StatusCode::PARTIAL_CONTENT, range),
        None => (StatusCode::OK, 0..file.size),
    };
    let stream = state.blobs.read(&file.id, span.clone(), file.size).await?;
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        header_value(file.content_type.as_str()),
    );
    out.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(file.name.as_str()),
    );
    out.insert(header::ETAG, header_value(&etag));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(header::CONTENT_LENGTH, header_value(span.end - span.start));
    if status == StatusCode::PARTIAL_CONTENT {
        out.insert(
            header::CONTENT_RANGE,
            header_value(format!(
                "bytes {}-{}/{}",
                span.start,
                span.end - 1,
                file.size
            )),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(raw: &str, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(raw).unwrap());
        byte_range(&headers, size)
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(range("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(range("bytes=-5", 100), Ok(Some(95..100)));
        assert_eq!(range("bytes=-500", 100), Ok(Some(0..100)));
        assert_eq!(range("bytes=50-500", 100), Ok(Some(50..100)));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=-0", 100), Err(()));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(range("bytes=x-1", 100), Err(()));
    }

    #[test]
    fn names_are_safe_in_content_disposition() {
        let value = content_disposition("naïve \"plan\".pdf");
        assert_eq!(
            value.to_str().unwrap(),
            "attachment; filename=\"na_ve _plan_.pdf\"; filename*=UTF-8''na%C3%AFve%20%22plan%22%2Epdf"
        );
    }
}

/// The `Range` parser over any input, and numbers from the edges of their
/// range (0, 1, 2^53, 2^63, 2^64 - 1 and their neighbours): it never
/// panics, and a range it serves lies inside the file.
#[cfg(test)]
mod range_fuzz {
    use proptest::prelude::*;

    use super::*;

    fn edge() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just(1),
            Just((1u64 << 53) - 1),
            Just(1u64 << 53),
            Just((1u64 << 63) - 1),
            Just(1u64 << 63),
            Just(u64::MAX - 1),
            Just(u64::MAX),
            0u64..10_000,
            any::<u64>(),
        ]
    }

    fn header(raw: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(raw) {
            headers.insert(header::RANGE, value);
        }
        headers
    }

    fn check(raw: &str, size: u64) {
        if let Ok(Some(range)) = byte_range(&header(raw), size) {
            assert!(range.start < range.end, "{raw:?} of {size}: {range:?}");
            assert!(range.end <= size, "{raw:?} of {size}: {range:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_text_is_answered_without_panicking(raw in "\\PC{0,64}", size in edge()) {
            check(&raw, size);
        }

        #[test]
        fn numbers_from_the_edges_give_ranges_inside_the_file(
            first in edge(), last in edge(), size in edge(), form in 0u8..4,
        ) {
            let raw = match form {
                0 => format!("bytes={first}-{last}"),
                1 => format!("bytes={first}-"),
                2 => format!("bytes=-{last}"),
                _ => format!("bytes= {first} - {last} "),
            };
            check(&raw, size);
        }
    }

    #[test]
    fn the_largest_last_byte_is_the_files_end() {
        assert_eq!(
            byte_range(&header(&format!("bytes=2-{}", u64::MAX)), 10),
            Ok(Some(2..10))
        );
        assert_eq!(byte_range(&header("bytes=0-0"), 10), Ok(Some(0..1)));
        assert_eq!(byte_range(&header("bytes=10-"), 10), Err(()));
        assert_eq!(byte_range(&header("bytes=-0"), 10), Err(()));
    }
}

/// A PATCH whose last chunk cannot be turned into a file (the blob store
/// fails to finish it) gives its lease back: the client retries at once,
/// not after the lease's fifteen minutes of 423.
#[cfg(test)]
mod lease_release {
    use std::sync::Arc;

    use async_trait::async_trait;
    use secrecy::SecretSlice;
    use taskgate_domain::file::{BlobState, ContentType, FileId, FileName, StoredFile};
    use taskgate_domain::permission::Actor;
    use taskgate_domain::ports::{Appended, BlobError, BlobStore, ByteStream, FileStore};
    use taskgate_embedded::EmbeddedStore;
    use taskgate_embedded::blobs::DiskBlobs;

    use super::append_now;
    use crate::AppState;
    use taskgate_app::settings::Settings;

    /// Disk blobs whose `finish` fails while `failing` holds.
    struct FinishFails {
        inner: DiskBlobs,
        failing: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl BlobStore for FinishFails {
        async fn start(&self, id: &FileId) -> Result<BlobState, BlobError> {
            self.inner.start(id).await
        }
        async fn append(
            &self,
            id: &FileId,
            state: &BlobState,
            offset: u64,
            body: ByteStream,
            max: u64,
        ) -> Result<Appended, BlobError> {
            self.inner.append(id, state, offset, body, max).await
        }
        async fn commit(
            &self,
            id: &FileId,
            before: &BlobState,
            after: &BlobState,
        ) -> Result<(), BlobError> {
            self.inner.commit(id, before, after).await
        }
        async fn rollback(
            &self,
            id: &FileId,
            before: &BlobState,
            pending: &BlobState,
        ) -> Result<(), BlobError> {
            self.inner.rollback(id, before, pending).await
        }
        async fn finish(&self, id: &FileId, state: &BlobState, size: u64) -> Result<(), BlobError> {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(BlobError::Unavailable("the store is down".into()));
            }
            self.inner.finish(id, state, size).await
        }
        async fn abort(&self, id: &FileId, state: &BlobState) -> Result<(), BlobError> {
            self.inner.abort(id, state).await
        }
        async fn read(
            &self,
            id: &FileId,
            range: std::ops::Range<u64>,
            size: u64,
        ) -> Result<ByteStream, BlobError> {
            self.inner.read(id, range, size).await
        }
        async fn delete(&self, id: &FileId) -> Result<(), BlobError> {
            self.inner.delete(id).await
        }
    }

    #[tokio::test]
    async fn a_failed_finish_gives_the_lease_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::in_memory().unwrap());
        let blobs = Arc::new(FinishFails {
            inner: DiskBlobs::open(dir.path()).unwrap(),
            failing: true.into(),
        });
        let state = AppState::new(
            store.clone(),
            &SecretSlice::from(vec![7u8; 64]),
            Settings::default(),
        )
        .unwrap()
        .with_blobs(blobs.clone());
        let hash = taskgate_domain::password::PasswordHash::parse(
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3V7s8wPDxVyEkXmz4jtoTrhpgXT4x3rKxhWFSmsHCGc",
        )
        .unwrap();
        let owner = taskgate_domain::user::User::new(
            taskgate_domain::user::Username::parse("ann").unwrap(),
            hash,
            taskgate_domain::user::Level::User,
            None,
            None,
        );
        let actor = Actor {
            username: owner.username.clone(),
            user_id: owner.user_id,
            level: owner.level,
        };
        let now = time::OffsetDateTime::now_utc();
        let mut file = StoredFile::new_upload(
            &owner,
            FileName::parse("last.txt").unwrap(),
            ContentType::octet_stream(),
            5,
            now,
            now + time::Duration::hours(1),
            serde_json::Value::Null,
        );
        file.blob = blobs.start(&file.id).await.unwrap();
        store.insert_file(&file, u64::MAX, u64::MAX).await.unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("content-length", http::HeaderValue::from_static("5"));
        let chunk = || axum::body::Body::from("hello");
        assert!(
            append_now(&state, &actor, file.clone(), &headers, chunk(), 0)
                .await
                .is_err()
        );
        let after = store.get_file(&file.id).await.unwrap().unwrap();
        assert_eq!(after.lease_until, None, "the lease was kept");
        assert_eq!(after.offset, 0);
        // The retry, once the store works again, lands.
        blobs
            .failing
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let done = append_now(&state, &actor, after, &headers, chunk(), 0)
            .await
            .unwrap();
        assert!(done.is_complete());
    }
}
