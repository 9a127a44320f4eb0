//! `GET /files/{id}/content`: a finished file's bytes, read from the blob
//! store as they are sent, with one `Range` (206) and the SHA-256 as
//! `ETag` (`If-None-Match`, `If-Range`); where the store hands out URLs
//! (S3), a 307 to a short-lived one instead.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{Chunk, FilePath, header_value};
use crate::auth::Session;
use crate::extract::SharedState;
use crate::problem::ApiError;

/// How long a download URL the store hands out (S3's presigned) lasts.
const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(300);

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
        (status = 403, description = "`forbidden`: someone else's file"),
        (status = 404, description = "`not-found`"),
        (status = 409, description = "`upload-unfinished`: the upload is not complete"),
        (status = 416, description = "`range-not-satisfiable`: the range is outside the file"),
    )
)]
pub(crate) async fn content(
    State(state): State<SharedState>,
    session: Session,
    FilePath { id }: FilePath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let file = state.uploads().find(&session.actor(), &id).await?;
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
