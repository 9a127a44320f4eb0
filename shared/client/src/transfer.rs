//! Uploads (tus) and downloads (`Range`), each resumable: an upload that
//! was cut off resumes from the offset the server has when the same file is
//! uploaded again; a download resumes its `.part` file.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, StatusCode};
use sha2::Digest as _;
use taskgate_views::owned::File;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use super::Failure;
use super::api::{Answer, Api, problem};
use super::config::PendingUpload;

const TUS: &str = "1.0.0";

/// A byte-counting bar on a terminal; nothing otherwise (the caller prints
/// a line at the end).
fn bar(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure::Other(format!("cannot {what} {}: {e}", path.display()))
}

/// What identifies "the same upload" between runs: the server, the file's
/// absolute path, its size and modification time.
fn upload_key(api: &Api, path: &Path, metadata: &std::fs::Metadata) -> String {
    let modified = metadata
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!(
        "{} {} {} {modified}",
        api.base,
        path.display(),
        metadata.len()
    )
}

pub struct Upload<'a> {
    pub path: &'a Path,
    pub name: Option<String>,
    pub content_type: Option<String>,
    pub chunk: u64,
    /// Bytes per second, at most (`--limit-rate`).
    pub limit_rate: Option<u64>,
}

/// The upload's offset on the server, or `None` if it is gone.
async fn server_offset(api: &Api, location: &str) -> Result<Option<u64>, Failure> {
    let response = api
        .request(Method::HEAD, location)?
        .header("tus-resumable", TUS)
        .send()
        .await
        .map_err(|e| api.unreachable(e))?;
    match response.status() {
        StatusCode::OK => Ok(response
            .headers()
            .get("upload-offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())),
        StatusCode::NOT_FOUND | StatusCode::GONE => Ok(None),
        _ => Err(problem(response).await),
    }
}

/// Uploads the file (or resumes its unfinished upload); the file's record.
pub async fn upload(api: &Api, upload: Upload<'_>) -> Result<Answer<File>, Failure> {
    let path = std::fs::canonicalize(upload.path).map_err(|e| io("read", upload.path, e))?;
    let metadata = std::fs::metadata(&path).map_err(|e| io("read", &path, e))?;
    if !metadata.is_file() {
        return Err(Failure::Usage(format!("{} is not a file", path.display())));
    }
    let size = metadata.len();
    let key = upload_key(api, &path, &metadata);
    let name = upload.name.clone().unwrap_or_else(|| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "upload".into())
    });
    let mut offset = 0;
    let mut location = None;
    if let Some(pending) = api.store.pending_upload(&key)? {
        match server_offset(api, &pending.location).await? {
            Some(at) => {
                eprintln!(
                    "resuming the upload of {} at {at} of {size} bytes",
                    path.display()
                );
                offset = at;
                location = Some(pending.location);
            }
            None => api.store.set_pending_upload(&key, None)?,
        }
    }
    let location = match location {
        Some(location) => location,
        None => {
            let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            let mut metadata = format!("filename {}", encode(&name));
            if let Some(kind) = &upload.content_type {
                metadata.push_str(&format!(",filetype {}", encode(kind)));
            }
            let response = api
                .send(
                    api.request(Method::POST, "/files")?
                        .header("tus-resumable", TUS)
                        .header("upload-length", size.to_string())
                        .header("upload-metadata", metadata),
                )
                .await?;
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Failure::Other("the server gave the upload no Location".into()))?
                .to_owned();
            api.store.set_pending_upload(
                &key,
                Some(PendingUpload {
                    location: location.clone(),
                    size,
                }),
            )?;
            location
        }
    };

    let progress = bar(size, &name);
    progress.set_position(offset);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| io("read", &path, e))?;
    let started = Instant::now();
    let first_offset = offset;
    let chunk = upload.chunk.max(1);
    while offset < size {
        let length = chunk.min(size - offset);
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| io("read", &path, e))?;
        let mut bytes = vec![0u8; length as usize];
        file.read_exact(&mut bytes)
            .await
            .map_err(|e| io("read", &path, e))?;
        let checksum =
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&bytes));
        let response = api
            .request(Method::PATCH, &location)?
            .header("tus-resumable", TUS)
            .header("upload-offset", offset.to_string())
            .header("upload-checksum", format!("sha256 {checksum}"))
            .header("content-type", "application/offset+octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| api.unreachable(e))?;
        match response.status() {
            StatusCode::NO_CONTENT => {
                offset = response
                    .headers()
                    .get("upload-offset")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(offset + length);
            }
            // Someone (an earlier run) got further: carry on from there.
            StatusCode::CONFLICT => {
                offset = server_offset(api, &location)
                    .await?
                    .ok_or_else(|| Failure::Missing(format!("the upload {location} is gone")))?;
            }
            _ => return Err(problem(response).await),
        }
        progress.set_position(offset);
        if let Some(rate) = upload.limit_rate.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64((offset - first_offset) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    progress.finish_and_clear();
    api.store.set_pending_upload(&key, None)?;
    api.json(api.request(Method::GET, &location)?).await
}

/// Aborts the unfinished upload of `path` (what the server has of it is
/// removed).
pub async fn abort(api: &Api, path: &Path) -> Result<String, Failure> {
    let path = std::fs::canonicalize(path).map_err(|e| io("read", path, e))?;
    let metadata = std::fs::metadata(&path).map_err(|e| io("read", &path, e))?;
    let key = upload_key(api, &path, &metadata);
    let pending = api.store.pending_upload(&key)?.ok_or_else(|| {
        Failure::Missing(format!(
            "there is no unfinished upload of {} (to delete a finished file: taskgate files rm ID)",
            path.display()
        ))
    })?;
    let response = api
        .request(Method::DELETE, &pending.location)?
        .header("tus-resumable", TUS)
        .send()
        .await
        .map_err(|e| api.unreachable(e))?;
    if !(response.status().is_success() || response.status() == StatusCode::NOT_FOUND) {
        return Err(problem(response).await);
    }
    api.store.set_pending_upload(&key, None)?;
    Ok(pending.location)
}

/// Downloads file `id` to `output` (default: its name, here), resuming a
/// `.part` file left by an interrupted download; the path written.
pub async fn download(api: &Api, id: &str, output: Option<PathBuf>) -> Result<PathBuf, Failure> {
    let file: File = api
        .json(api.request(Method::GET, &format!("/files/{id}"))?)
        .await?
        .value;
    let name = file.name.into_owned();
    let size = file.size;
    let expected = file.sha256.map(|sha| sha.into_owned());
    let target = match output {
        Some(path) if path.is_dir() => path.join(&name),
        Some(path) => path,
        None => PathBuf::from(&name),
    };
    let part = PathBuf::from(format!("{}.part", target.display()));
    let mut have = match tokio::fs::metadata(&part).await {
        Ok(m) if m.len() <= size => m.len(),
        _ => 0,
    };
    let mut request = api.request(Method::GET, &format!("/files/{id}/content"))?;
    if have > 0 {
        request = request.header("range", format!("bytes={have}-"));
        if let Some(sha) = &expected {
            request = request.header("if-range", format!("\"{sha}\""));
        }
    }
    let response = if have == size && size > 0 {
        None
    } else {
        Some(api.send(request).await?)
    };
    let mut digest = sha2::Sha256::new();
    let mut out = if response
        .as_ref()
        .is_some_and(|r| r.status() == StatusCode::PARTIAL_CONTENT)
        || response.is_none()
    {
        // Resuming: the part so far counts towards the digest.
        let mut existing = tokio::fs::File::open(&part)
            .await
            .map_err(|e| io("read", &part, e))?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = existing
                .read(&mut buffer)
                .await
                .map_err(|e| io("read", &part, e))?;
            if n == 0 {
                break;
            }
            digest.update(&buffer[..n]);
        }
        eprintln!("resuming the download of {name} at {have} of {size} bytes");
        tokio::fs::OpenOptions::new()
            .append(true)
            .open(&part)
            .await
            .map_err(|e| io("write", &part, e))?
    } else {
        have = 0;
        tokio::fs::File::create(&part)
            .await
            .map_err(|e| io("write", &part, e))?
    };
    let progress = bar(size, &name);
    progress.set_position(have);
    if let Some(response) = response {
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                Failure::Other(format!(
                    "the download broke off at {have} bytes ({e}); run the same command again to resume"
                ))
            })?;
            digest.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| io("write", &part, e))?;
            have += chunk.len() as u64;
            progress.set_position(have);
        }
    }
    out.flush().await.map_err(|e| io("write", &part, e))?;
    drop(out);
    progress.finish_and_clear();
    let got = hex::encode(digest.finalize());
    if let Some(sha) = expected
        && sha != got
    {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(Failure::Other(format!(
            "the downloaded bytes' SHA-256 is {got}, not the file's {sha}; removed them, try again"
        )));
    }
    tokio::fs::rename(&part, &target)
        .await
        .map_err(|e| io("write", &target, e))?;
    Ok(target)
}
