//! `BlobStore` on S3 (aws-sdk-s3), after tusd's S3 store: an upload is an
//! S3 multipart upload on the key its finished file will have,
//! `files/<id>`, and finishing it completes that multipart upload.
//!
//! S3 parts are at least 5 MiB (all but the last), but a request through
//! API Gateway and Lambda carries about 4 MiB, so most appends do not fill a
//! part. An append therefore joins the bytes staged by the previous one
//! with what its body yields, uploads a part each time 5 MiB are together
//! (memory stays at about one part), and stores what is left over as a new
//! staged object, `uploads/<id>/staged-<end offset>-<random>`. The staged
//! object is new for every append (never overwritten), so the state before
//! a pending append still names intact bytes: a rollback just deletes the
//! pending append's staged object, and a commit the previous one. Parts
//! uploaded by a dropped append are simply not in the earlier state's part
//! list; the next append uploads its part under the same number, which
//! replaces them, and parts a completion does not list are discarded.
//!
//! The state (JSON, opaque to the rest of the system) holds the multipart
//! upload's id, the parts so far (`number`, `etag`, `size`), the staged
//! object (`key`, `size`) if any, and the `offset`. Finishing uploads the
//! staged bytes as the last part, completes the multipart upload with the
//! state's parts and deletes the staged object; an empty file has no part,
//! so its multipart upload is aborted and an empty object put instead.
//! Aborting aborts the multipart upload and deletes everything under
//! `uploads/<id>/`, so nothing of the upload remains. Downloads are ranged
//! GetObjects streamed through, never collected, or presigned GetObject
//! URLs ([`S3Blobs::presigned_get`]) a client is redirected to.
//!
//! Two appends racing from the same state (the caller's conditional record
//! lets only one win) upload the same part number; when both send the same
//! bytes (a client retrying a chunk) the part is the same, and when they do
//! not, the loser's part may replace the winner's, and the completion then
//! fails (the ETag no longer matches) rather than assemble wrong bytes.

use std::fmt::Write as _;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Bytes;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use taskgate_domain::file::{BlobState, FileId};
use taskgate_domain::ports::{Appended, BlobError, BlobStore, BodyReader, ByteStream, Taken};

/// The size of every part but the last: S3's minimum.
const PART: usize = 5 * 1024 * 1024;
/// S3's highest part number (so an upload holds at most about 48 GiB).
const MAX_PARTS: i32 = 10_000;
/// Bytes per chunk of a download stream.
const READ_CHUNK: usize = 64 * 1024;
/// Error codes that mean "try again later", not "your request is wrong".
const RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
];

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
}

/// What the adapter keeps between appends (the port's `BlobState`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct State {
    /// The multipart upload's id.
    upload: String,
    /// The parts uploaded so far, in order.
    parts: Vec<Part>,
    /// The bytes after the parts, if any (fewer than a part).
    staged: Option<Staged>,
    /// How many bytes the upload holds: the parts' and the staged ones.
    offset: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Part {
    number: i32,
    etag: String,
    size: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Staged {
    key: String,
    size: u64,
}

impl State {
    fn parse(state: &BlobState) -> Result<Self, BlobError> {
        let parsed: Self = serde_json::from_value(state.clone())
            .map_err(|e| other(format!("an S3 upload state does not parse: {e}")))?;
        let held = parsed.parts.iter().map(|p| p.size).sum::<u64>()
            + parsed.staged.as_ref().map_or(0, |s| s.size);
        if held != parsed.offset {
            return Err(other(format!(
                "an S3 upload state holds {held} bytes but says {}",
                parsed.offset
            )));
        }
        Ok(parsed)
    }

    fn to_value(&self) -> BlobState {
        serde_json::to_value(self).expect("the state serializes")
    }

    fn staged_key(&self) -> Option<&str> {
        self.staged.as_ref().map(|s| s.key.as_str())
    }
}

fn other(cause: impl Into<String>) -> BlobError {
    BlobError::Other(cause.into().into())
}

/// Transport failures, timeouts and throttling are `Unavailable`, anything
/// else `Other`, with the SDK's full context for the log.
fn s3_error<E, R>(err: SdkError<E, R>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(&err).to_string();
    if crate::errors::is_transient(&err, RETRYABLE_CODES) {
        BlobError::Unavailable(detail.into())
    } else {
        BlobError::Other(detail.into())
    }
}

/// The error's S3 code, if the service answered with one.
fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    err.as_service_error().and_then(ProvideErrorMetadata::code)
}

/// `Missing` when S3 says the multipart upload or object is gone.
fn gone_or<E, R>(err: SdkError<E, R>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match code(&err) {
        Some("NoSuchUpload" | "NoSuchKey" | "NotFound") => BlobError::Missing,
        _ => s3_error(err),
    }
}

fn file_key(id: &FileId) -> String {
    format!("files/{id}")
}

fn upload_prefix(id: &FileId) -> String {
    format!("uploads/{id}/")
}

/// `attachment` with the name both as an ASCII fallback and, exactly, as
/// RFC 8187 UTF-8 (`filename*`).
fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(filename.len());
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            let _ = write!(encoded, "%{b:02X}");
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

impl S3Blobs {
    /// Blobs in `bucket` (which must exist).
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// A URL that downloads the finished file `id` for `ttl` without
    /// credentials, as an attachment named `filename` of `content_type`.
    /// (It stops working sooner if the credentials that signed it expire,
    /// as a Lambda role's session credentials do after some hours.)
    pub async fn presigned_get(
        &self,
        id: &FileId,
        ttl: Duration,
        filename: &str,
        content_type: &str,
    ) -> Result<String, BlobError> {
        let config = PresigningConfig::expires_in(ttl)
            .map_err(|e| other(format!("invalid presigning duration: {e}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(file_key(id))
            .response_content_disposition(content_disposition(filename))
            .response_content_type(content_type)
            .presigned(config)
            .await
            .map_err(s3_error)?;
        Ok(request.uri().to_string())
    }

    /// The origin (`scheme://host[:port]`) of the URLs
    /// [`presigned_get`](Self::presigned_get) hands out, which a browser
    /// must be allowed to fetch from: on AWS the bucket's own host
    /// (`https://<bucket>.s3.<region>.amazonaws.com`), on a local S3
    /// stand-in its address. Worked out by presigning a probe (signing is
    /// local: nothing is sent), so it is what the SDK really does.
    pub async fn download_origin(&self) -> Result<String, BlobError> {
        let config = PresigningConfig::expires_in(Duration::from_secs(60))
            .map_err(|e| other(format!("invalid presigning duration: {e}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key("files/origin-probe")
            .presigned(config)
            .await
            .map_err(s3_error)?;
        origin_of(request.uri()).ok_or_else(|| {
            other(format!(
                "a presigned URL without an origin: {}",
                request.uri()
            ))
        })
    }

    /// The bytes of a staged object, which must be `staged.size` long.
    async fn staged_bytes(&self, staged: &Staged) -> Result<Bytes, BlobError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&staged.key)
            .send()
            .await
            .map_err(gone_or)?;
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| BlobError::Unavailable(Box::new(e)))?
            .into_bytes();
        if bytes.len() as u64 != staged.size {
            return Err(other(format!(
                "staged object {} has {} bytes, its state says {}",
                staged.key,
                bytes.len(),
                staged.size
            )));
        }
        Ok(bytes)
    }

    /// Uploads `bytes` as the part after `state`'s last, and lists it there.
    async fn upload_part(
        &self,
        id: &FileId,
        state: &mut State,
        bytes: Bytes,
    ) -> Result<(), BlobError> {
        let number = state.parts.last().map_or(1, |p| p.number + 1);
        if number > MAX_PARTS {
            return Err(other(format!(
                "an S3 upload holds at most {MAX_PARTS} parts"
            )));
        }
        let size = bytes.len() as u64;
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(file_key(id))
            .upload_id(&state.upload)
            .part_number(number)
            .content_length(size as i64)
            .body(S3Bytes::from(bytes))
            .send()
            .await
            .map_err(gone_or)?;
        let etag = output
            .e_tag()
            .ok_or_else(|| other("UploadPart answered without an ETag"))?;
        state.parts.push(Part {
            number,
            etag: etag.to_owned(),
            size,
        });
        Ok(())
    }

    async fn delete_object(&self, key: &str) -> Result<(), BlobError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(s3_error)?;
        Ok(())
    }

    /// Deletes every object under `prefix`.
    async fn delete_under(&self, prefix: &str) -> Result<(), BlobError> {
        loop {
            let listing = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .send()
                .await
                .map_err(s3_error)?;
            let objects = listing
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| other(e.to_string()))?;
            if objects.is_empty() {
                return Ok(());
            }
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| other(e.to_string()))?;
            let output = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(s3_error)?;
            if let Some(error) = output.errors().first() {
                return Err(other(format!(
                    "DeleteObjects failed for {}: {} {}",
                    error.key().unwrap_or("?"),
                    error.code().unwrap_or("?"),
                    error.message().unwrap_or("")
                )));
            }
            // Deleted objects leave the listing: list from the start again
            // until it is empty.
        }
    }

    /// The size of the finished file `id`, if there is one.
    async fn finished_size(&self, id: &FileId) -> Result<Option<u64>, BlobError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(file_key(id))
            .send()
            .await
        {
            Ok(output) => Ok(Some(output.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(s3_error(e)),
        }
    }

    /// Finishes the upload; `Missing` if its multipart upload or staged
    /// object is gone (as after an earlier finish that got this far).
    /// Aborts the multipart upload `upload` of `id`; one already gone
    /// (aborted or completed before) is not an error.
    async fn abort_multipart(&self, id: &FileId, upload: &str) -> Result<(), BlobError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(file_key(id))
            .upload_id(upload)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn complete(&self, id: &FileId, state: &State) -> Result<(), BlobError> {
        let mut done = state.clone();
        if let Some(staged) = &state.staged {
            let bytes = self.staged_bytes(staged).await?;
            self.upload_part(id, &mut done, bytes).await?;
        }
        if done.parts.is_empty() {
            // S3 completes no multipart upload without parts.
            self.abort_multipart(id, &state.upload).await?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(file_key(id))
                .body(S3Bytes::from_static(b""))
                .send()
                .await
                .map_err(s3_error)?;
            return Ok(());
        }
        let parts = done
            .parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number)
                    .e_tag(&p.etag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(file_key(id))
            .upload_id(&state.upload)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(gone_or)?;
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn download_url(
        &self,
        id: &FileId,
        ttl: Duration,
        name: &str,
        content_type: &str,
    ) -> Result<Option<String>, BlobError> {
        self.presigned_get(id, ttl, name, content_type)
            .await
            .map(Some)
    }

    async fn start(&self, id: &FileId) -> Result<BlobState, BlobError> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(file_key(id))
            .send()
            .await
            .map_err(s3_error)?;
        let upload = output
            .upload_id()
            .ok_or_else(|| other("CreateMultipartUpload answered without an upload id"))?;
        Ok(State {
            upload: upload.to_owned(),
            parts: Vec::new(),
            staged: None,
            offset: 0,
        }
        .to_value())
    }

    async fn append(
        &self,
        id: &FileId,
        state: &BlobState,
        offset: u64,
        body: ByteStream,
        max: u64,
    ) -> Result<Appended, BlobError> {
        let before = State::parse(state)?;
        if offset != before.offset {
            return Err(other(format!(
                "append at {offset} to an S3 upload holding {} bytes",
                before.offset
            )));
        }
        let mut next = State {
            staged: None,
            ..before.clone()
        };
        // The bytes not yet in a part: the staged ones, then the body's.
        // Loaded at the first byte, so an empty append costs no request.
        let mut buffer: Option<BytesMut> = None;
        let mut body = BodyReader::new(body, max);
        while let Some(piece) = body.next().await {
            if buffer.is_none() {
                let mut buf = BytesMut::with_capacity(PART);
                if let Some(staged) = &before.staged {
                    buf.extend_from_slice(&self.staged_bytes(staged).await?);
                }
                buffer = Some(buf);
            }
            let buf = buffer.as_mut().expect("loaded above");
            let mut rest = &piece[..];
            while !rest.is_empty() {
                let n = (PART - buf.len()).min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if buf.len() >= PART {
                    let part = buf.split().freeze();
                    self.upload_part(id, &mut next, part).await?;
                }
            }
        }
        let Taken {
            bytes: written,
            cut,
            truncated,
        } = body.taken;
        let Some(buf) = buffer else {
            // Nothing arrived: the upload is as it was.
            return Ok(Appended {
                state: state.clone(),
                bytes: 0,
                cut,
                truncated,
            });
        };
        next.offset = offset + written;
        if !buf.is_empty() {
            let key = format!(
                "{}staged-{}-{}",
                upload_prefix(id),
                next.offset,
                uuid::Uuid::new_v4().simple()
            );
            let size = buf.len() as u64;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_length(size as i64)
                .body(S3Bytes::from(buf.freeze()))
                .send()
                .await
                .map_err(s3_error)?;
            next.staged = Some(Staged { key, size });
        }
        Ok(Appended {
            state: next.to_value(),
            bytes: written,
            cut,
            truncated,
        })
    }

    async fn commit(
        &self,
        _id: &FileId,
        before: &BlobState,
        after: &BlobState,
    ) -> Result<(), BlobError> {
        let (before, after) = (State::parse(before)?, State::parse(after)?);
        match before.staged_key() {
            Some(key) if after.staged_key() != Some(key) => self.delete_object(key).await,
            _ => Ok(()),
        }
    }

    async fn rollback(
        &self,
        _id: &FileId,
        before: &BlobState,
        pending: &BlobState,
    ) -> Result<(), BlobError> {
        let (before, pending) = (State::parse(before)?, State::parse(pending)?);
        match pending.staged_key() {
            Some(key) if before.staged_key() != Some(key) => self.delete_object(key).await,
            _ => Ok(()),
        }
    }

    async fn finish(&self, id: &FileId, state: &BlobState, size: u64) -> Result<(), BlobError> {
        let state = State::parse(state)?;
        if state.offset != size {
            return Err(other(format!(
                "finishing a file of {size} bytes whose upload holds {}",
                state.offset
            )));
        }
        match self.complete(id, &state).await {
            Ok(()) => {}
            // A finish that was retried after it completed the upload.
            Err(BlobError::Missing) if self.finished_size(id).await? == Some(size) => {}
            Err(e) => return Err(e),
        }
        if let Some(staged) = &state.staged {
            self.delete_object(&staged.key).await?;
        }
        Ok(())
    }

    async fn abort(&self, id: &FileId, state: &BlobState) -> Result<(), BlobError> {
        let state = State::parse(state)?;
        self.abort_multipart(id, &state.upload).await?;
        self.delete_under(&upload_prefix(id)).await
    }

    async fn read(
        &self,
        id: &FileId,
        range: Range<u64>,
        _size: u64,
    ) -> Result<ByteStream, BlobError> {
        if range.start >= range.end {
            // No byte to ask for (S3 has no empty range), but the file must
            // exist.
            return match self.finished_size(id).await? {
                Some(_) => Ok(Box::pin(futures_util::stream::empty())),
                None => Err(BlobError::Missing),
            };
        }
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(file_key(id))
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(gone_or)?;
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            output.body.into_async_read(),
            READ_CHUNK,
        )))
    }

    async fn delete(&self, id: &FileId) -> Result<(), BlobError> {
        self.delete_object(&file_key(id)).await
    }
}

/// `scheme://authority` of an absolute URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    (!scheme.is_empty() && !authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disposition_names_the_file_in_ascii_and_exactly() {
        assert_eq!(
            content_disposition("plan \"v2\".pdf"),
            "attachment; filename=\"plan _v2_.pdf\"; filename*=UTF-8''plan%20%22v2%22.pdf"
        );
        assert_eq!(
            content_disposition("Menü.txt"),
            "attachment; filename=\"Men_.txt\"; filename*=UTF-8''Men%C3%BC.txt"
        );
    }

    #[test]
    fn a_state_must_add_up() {
        let state = serde_json::json!({
            "upload": "u", "parts": [{"number": 1, "etag": "e", "size": 5}],
            "staged": {"key": "k", "size": 2}, "offset": 7,
        });
        assert!(State::parse(&state).is_ok());
        let wrong = serde_json::json!({"upload": "u", "parts": [], "staged": null, "offset": 1});
        assert!(State::parse(&wrong).is_err());
    }

    fn client(region: &str, endpoint: Option<&str>) -> Client {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ));
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        Client::from_conf(config.build())
    }

    #[tokio::test]
    async fn downloads_come_from_the_bucket_host_on_aws_and_the_endpoint_locally() {
        for region in ["eu-west-1", "us-east-1"] {
            let blobs = S3Blobs::new(client(region, None), "taskgate-files-1a2b");
            assert_eq!(
                blobs.download_origin().await.unwrap(),
                format!("https://taskgate-files-1a2b.s3.{region}.amazonaws.com")
            );
        }
        let local = S3Blobs::new(client("us-east-1", Some("http://127.0.0.1:5000")), "files");
        assert_eq!(
            local.download_origin().await.unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            origin_of("https://h:1/p?q#f").as_deref(),
            Some("https://h:1")
        );
        assert_eq!(origin_of("https://h?q").as_deref(), Some("https://h"));
        assert_eq!(origin_of("no-scheme"), None);
        assert_eq!(origin_of("https:///path"), None);
    }
}
