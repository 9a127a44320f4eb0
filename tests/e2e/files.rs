//! Files over HTTP, on both stores: uploads by tuspy (a stock tus client,
//! run as its users run it) including a resume after the connection is cut
//! mid-chunk and an abort; the protocol's rules answered as the contract
//! says, with raw requests; downloads with `Range` and `ETag`; permissions;
//! the quota; unfinished uploads expiring.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use taskgate_e2e::{Backend, TestApp, assert_problem, on_each_backend, status_and_json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

on_each_backend!(
    a_stock_tus_client_uploads_resumes_after_a_cut_and_aborts,
    the_protocol_rules_answer_as_the_contract_says,
    downloads_serve_ranges_and_etags_to_whom_may_see_them,
    quotas_sizes_and_expiry_are_enforced,
    the_compatibility_routes_upload_export_and_abort,
    a_compatibility_upload_takes_files_up_to_the_file_limit,
    a_user_keeps_at_most_max_files,
);

const MIB: usize = 1024 * 1024;

pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed))
        .collect()
}

/// The tools' Python (infra/local/install-tools.sh installs tuspy there).
fn python() -> PathBuf {
    let tools = std::env::var_os("TASKGATE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/taskgate-tools")
        });
    let python = tools.join("venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: infra/local/install-tools.sh installs tuspy (tests/run.sh runs it)",
        python.display()
    );
    python
}

/// Runs tuspy against `endpoint` (…/files); its JSON line and exit status.
async fn tuspy(endpoint: &str, token: &str, file: &Path, extra: &[&str]) -> (Value, i32) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tus/tus_client.py");
    let output = tokio::process::Command::new(python())
        .arg(script)
        .arg(endpoint)
        .arg(token)
        .arg(file)
        .args(extra)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let value: Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "tuspy printed {stdout:?}; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (value, output.status.code().unwrap_or(-1))
}

/// A TCP proxy in front of the server that cuts the connection carrying
/// the `cut_at`-th byte sent by clients (once), as a network failure would.
struct CutProxy {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
}

impl CutProxy {
    async fn start(target: std::net::SocketAddr, cut_at: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let done = cut.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (sent, cut) = (sent.clone(), done.clone());
                tokio::spawn(async move {
                    let server = tokio::net::TcpStream::connect(target).await.unwrap();
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async {
                        let mut buffer = vec![0u8; 16 * 1024];
                        loop {
                            let n = match client_read.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let before = sent.fetch_add(n as u64, Ordering::SeqCst);
                            if !cut.load(Ordering::SeqCst) && before + n as u64 >= cut_at {
                                // Forward up to the cut, then drop both sides.
                                let keep = cut_at.saturating_sub(before) as usize;
                                let _ = server_write.write_all(&buffer[..keep]).await;
                                cut.store(true, Ordering::SeqCst);
                                return;
                            }
                            if server_write.write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
                    tokio::select! {
                        _ = upstream => {}
                        _ = downstream => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }
}

/// A tus request to `path` with the protocol header.
pub(crate) fn tus_request(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    app.request(method, path, Some(token))
        .header("tus-resumable", "1.0.0")
}

/// Creates an upload of `size` bytes; its path.
pub(crate) async fn create(app: &TestApp, token: &str, size: u64) -> String {
    let response = tus_request(app, Method::POST, "/files", token)
        .header("upload-length", size.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.headers()["location"].to_str().unwrap().to_owned()
}

pub(crate) async fn patch(
    app: &TestApp,
    token: &str,
    path: &str,
    offset: u64,
    bytes: Vec<u8>,
) -> reqwest::Response {
    tus_request(app, Method::PATCH, path, token)
        .header("upload-offset", offset.to_string())
        .header("content-type", "application/offset+octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

async fn offset_of(app: &TestApp, token: &str, path: &str) -> u64 {
    let response = tus_request(app, Method::HEAD, path, token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "HEAD {path}");
    response.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Every upload and file the server keeps on disk.
pub(crate) fn kept(app: &TestApp) -> Vec<String> {
    let root = app.data_dir.path().join(taskgate_server::server::FILES_DIR);
    let mut names = Vec::new();
    for dir in ["uploads", "done"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for entry in entries {
                names.push(format!(
                    "{dir}/{}",
                    entry.unwrap().file_name().to_string_lossy()
                ));
            }
        }
    }
    names.sort();
    names
}

async fn a_stock_tus_client_uploads_resumes_after_a_cut_and_aborts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(3 * MIB + 123, 1);
    let path = dir.path().join("report.bin");
    std::fs::write(&path, &data).unwrap();

    // Through a proxy that cuts the connection 1.5 MiB in: mid second chunk.
    let proxy = CutProxy::start(app.server().local_addr(), (3 * MIB / 2) as u64).await;
    let endpoint = format!("http://{}/files", proxy.addr);
    let (broken, status) = tuspy(&endpoint, &alice, &path, &["--chunk", &MIB.to_string()]).await;
    assert_eq!(status, 3, "the cut must break the upload: {broken}");
    assert!(proxy.cut.load(Ordering::SeqCst));
    let url = broken["url"].as_str().unwrap().to_owned();
    let location = format!("/files/{}", url.rsplit('/').next().unwrap());
    // The server kept what arrived of the cut chunk: the offset is past the
    // first chunk and short of the second.
    let mut offset = 0;
    for _ in 0..50 {
        offset = offset_of(&app, &alice, &location).await;
        if offset > MIB as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        offset > MIB as u64 && offset < 2 * MIB as u64,
        "offset {offset}"
    );

    // tuspy resumes the same upload, directly, from that offset.
    let resumed_url = app.url(&location);
    let (done, status) = tuspy(
        &app.url("/files"),
        &alice,
        &path,
        &["--chunk", &MIB.to_string(), "--url", &resumed_url],
    )
    .await;
    assert_eq!(status, 0, "{done}");
    assert_eq!(done["offset"], data.len());
    let (status, file) = status_and_json(app.get(&location, Some(&alice)).await).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    assert_eq!(file["status"], "complete");
    assert_eq!(file["name"], "report.bin");
    assert_eq!(file["size"], data.len());
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&data)));
    let content = app.get(&format!("{location}/content"), Some(&alice)).await;
    assert_eq!(content.status(), StatusCode::OK);
    assert!(content.bytes().await.unwrap() == data);

    // With checksums (tuspy's sha1 per chunk) as well.
    let (checked, status) = tuspy(
        &app.url("/files"),
        &alice,
        &path,
        &["--chunk", "700000", "--checksum"],
    )
    .await;
    assert_eq!(status, 0, "{checked}");

    // An abort: an upload broken off, then terminated with DELETE.
    let before = kept(&app);
    let proxy = CutProxy::start(app.server().local_addr(), MIB as u64).await;
    let (broken, status) = tuspy(
        &format!("http://{}/files", proxy.addr),
        &alice,
        &path,
        &["--chunk", &(2 * MIB).to_string()],
    )
    .await;
    assert_eq!(status, 3, "{broken}");
    let location = format!(
        "/files/{}",
        broken["url"].as_str().unwrap().rsplit('/').next().unwrap()
    );
    for _ in 0..50 {
        if offset_of(&app, &alice, &location).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        kept(&app).len() > before.len(),
        "the broken upload's bytes are kept for a resume"
    );
    let response = tus_request(&app, Method::DELETE, &location, &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = tus_request(&app, Method::HEAD, &location, &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = patch(&app, &alice, &location, 0, vec![1, 2, 3]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(kept(&app), before, "nothing of the aborted upload remains");
}

async fn the_protocol_rules_answer_as_the_contract_says(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let bob = app.user_with_token(&admin, "bob", "user").await;

    let response = app
        .request(Method::OPTIONS, "/files", None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let headers = response.headers();
    assert_eq!(headers["tus-version"], "1.0.0");
    let extensions = headers["tus-extension"].to_str().unwrap();
    for extension in [
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
    ] {
        assert!(
            extensions.split(',').any(|e| e == extension),
            "{extensions}"
        );
    }
    assert!(
        headers["tus-checksum-algorithm"]
            .to_str()
            .unwrap()
            .contains("sha1")
    );
    assert!(
        headers["tus-max-size"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );

    // Tus-Resumable missing or wrong: 412 with the versions spoken.
    for version in [None, Some("0.2.2")] {
        let mut request = app
            .request(Method::POST, "/files", Some(&alice))
            .header("upload-length", "10");
        if let Some(version) = version {
            request = request.header("tus-resumable", version);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["tus-version"], "1.0.0");
        assert_problem(
            response,
            StatusCode::PRECONDITION_FAILED,
            "precondition-failed",
        )
        .await;
    }
    // Bad lengths and metadata: 400; nothing created.
    for (name, value) in [
        ("upload-length", "-1"),
        ("upload-length", "ten"),
        ("upload-length", "99999999999999999999999"),
        ("upload-defer-length", "1"),
    ] {
        let response = tus_request(&app, Method::POST, "/files", &alice)
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    }
    for metadata in ["filename !!!", "filename Lw==", "filetype dGV4dA=="] {
        let response = tus_request(&app, Method::POST, "/files", &alice)
            .header("upload-length", "10")
            .header("upload-metadata", metadata)
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    }
    let (_, listed) = status_and_json(app.get("/files", Some(&alice)).await).await;
    assert_eq!(listed["items"], json!([]));

    // creation-with-upload: the first bytes come with the creation.
    let response = tus_request(&app, Method::POST, "/files", &alice)
        .header("upload-length", "10")
        .header(
            "upload-metadata",
            "filename bm90ZXMudHh0,filetype dGV4dC9wbGFpbg==",
        )
        .header("content-type", "application/offset+octet-stream")
        .body(b"hello".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["upload-offset"], "5");
    assert!(response.headers().contains_key("upload-expires"));
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/files/"));

    // PATCH: wrong content type 415; wrong offset 409; past the length 413;
    // a checksum that does not match 460; none of them changes the offset.
    let response = tus_request(&app, Method::PATCH, &location, &alice)
        .header("upload-offset", "5")
        .header("content-type", "application/octet-stream")
        .body(b"world".to_vec())
        .send()
        .await
        .unwrap();
    assert_problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;
    let response = patch(&app, &alice, &location, 3, b"world".to_vec()).await;
    assert_problem(response, StatusCode::CONFLICT, "offset-mismatch").await;
    let response = patch(&app, &alice, &location, 5, b"world and more".to_vec()).await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "file-too-large").await;
    let response = tus_request(&app, Method::PATCH, &location, &alice)
        .header("upload-offset", "5")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-checksum", "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=")
        .body(b"world".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 460);
    let response = tus_request(&app, Method::PATCH, &location, &alice)
        .header("upload-offset", "5")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-checksum", "md5 XrY7u+Ae7tCTyyK7j1rNww==")
        .body(b"world".to_vec())
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed-request").await;
    assert_eq!(offset_of(&app, &alice, &location).await, 5);
    // Someone else's upload: 403; an admin may look, not write.
    let response = patch(&app, &bob, &location, 5, b"world".to_vec()).await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(offset_of(&app, &admin, &location).await, 5);
    let response = patch(&app, &admin, &location, 5, b"world".to_vec()).await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    // The right chunk, with its checksum: complete.
    let sha1 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        sha1_of(b"world"),
    );
    let response = tus_request(&app, Method::PATCH, &location, &alice)
        .header("upload-offset", "5")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-checksum", format!("sha1 {sha1}"))
        .body(b"world".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()["upload-offset"], "10");
    assert_eq!(response.headers()["tus-resumable"], "1.0.0");
    let (_, file) = status_and_json(app.get(&location, Some(&alice)).await).await;
    assert_eq!(
        (
            file["status"].as_str(),
            file["name"].as_str(),
            file["content_type"].as_str()
        ),
        (Some("complete"), Some("notes.txt"), Some("text/plain"))
    );
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(b"helloworld")));
    // Unknown ids are 404, whatever their form.
    for missing in ["/files/nope", &format!("/files/{}", uuid::Uuid::now_v7())] {
        let response = tus_request(&app, Method::HEAD, missing, &alice)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    // No token: 401.
    let response = app
        .request(Method::POST, "/files", None)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "1")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    // Termination of a finished file deletes it.
    let response = tus_request(&app, Method::DELETE, &location, &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&location, Some(&alice)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(kept(&app).is_empty(), "{:?}", kept(&app));
}

fn sha1_of(bytes: &[u8]) -> Vec<u8> {
    use sha1::Digest as _;
    sha1::Sha1::digest(bytes).to_vec()
}

async fn downloads_serve_ranges_and_etags_to_whom_may_see_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let bob = app.user_with_token(&admin, "bob", "user").await;
    let data = pattern(MIB + 17, 5);
    let location = create(&app, &alice, data.len() as u64).await;
    let content = format!("{location}/content");
    // Not downloadable while uploading.
    let response = app.get(&content, Some(&alice)).await;
    assert_problem(response, StatusCode::CONFLICT, "upload-unfinished").await;
    let response = patch(&app, &alice, &location, 0, data.clone()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let whole = app.get(&content, Some(&alice)).await;
    assert_eq!(whole.status(), StatusCode::OK);
    let etag = whole.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", hex::encode(Sha256::digest(&data))));
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert!(
        whole.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert!(whole.bytes().await.unwrap() == data);
    for (range, span) in [
        ("bytes=0-99", 0..100),
        ("bytes=1000-", 1000..data.len()),
        ("bytes=-17", data.len() - 17..data.len()),
    ] {
        let response = app
            .request(Method::GET, &content, Some(&alice))
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            response.headers()["content-range"].to_str().unwrap(),
            format!("bytes {}-{}/{}", span.start, span.end - 1, data.len())
        );
        assert!(response.bytes().await.unwrap() == data[span], "{range}");
    }
    let response = app
        .request(Method::GET, &content, Some(&alice))
        .header("range", format!("bytes={}-", data.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        response.headers()["content-range"].to_str().unwrap(),
        format!("bytes */{}", data.len())
    );
    let response = app
        .request(Method::GET, &content, Some(&alice))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    // Who may see it: the owner, an admin (alice is a plain user), not bob.
    assert_eq!(
        app.get(&content, Some(&admin)).await.status(),
        StatusCode::OK
    );
    let response = app.get(&content, Some(&bob)).await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.get("/files?owner=alice", Some(&bob)).await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let (status, listed) = status_and_json(app.get("/files?owner=alice", Some(&admin)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let (_, own) = status_and_json(app.get("/files", Some(&bob)).await).await;
    assert_eq!(own["items"], json!([]));
    // A client that stops reading mid-download does not hold the server.
    let mut partial = app.get(&content, Some(&alice)).await;
    let _ = partial.chunk().await.unwrap();
    drop(partial);
    assert_eq!(app.get("/", None).await.status(), StatusCode::OK);
}

async fn quotas_sizes_and_expiry_are_enforced(backend: Backend) {
    let start = time::OffsetDateTime::now_utc();
    let clock = Arc::new(taskgate_domain::clock::ManualClock::new(start));
    let app = TestApp::spawn_with(backend, |config| {
        config.clock = clock.clone();
        config.api.token_ttl = Duration::from_secs(7 * 24 * 3600);
        config.api.files.max_file_bytes = 1000;
        config.api.files.user_quota_bytes = 1500;
        config.api.files.upload_expiry = Duration::from_secs(3600);
    })
    .await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let response = tus_request(&app, Method::POST, "/files", &alice)
        .header("upload-length", "1001")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "file-too-large").await;
    assert!(problem["detail"].as_str().unwrap().contains("1000"));
    let first = create(&app, &alice, 1000).await;
    let response = tus_request(&app, Method::POST, "/files", &alice)
        .header("upload-length", "600")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        "storage-quota-exceeded",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("1500"),
        "{problem}"
    );
    let second = create(&app, &alice, 500).await;
    let response = patch(&app, &alice, &second, 0, vec![7; 100]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // Past Upload-Expires, an unfinished upload is gone, bytes and all, and
    // its bytes no longer count against the quota.
    clock.advance(Duration::from_secs(3601));
    let response = tus_request(&app, Method::HEAD, &second, &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.server().reap_expired_uploads().await.unwrap(), 2);
    assert!(kept(&app).is_empty(), "{:?}", kept(&app));
    let _ = first;
    create(&app, &alice, 1000).await;
    create(&app, &alice, 500).await;
}

/// `taskgate serve` as its own process (so its memory is its own), plain
/// HTTP on a free port, with `password` for the first admin.
pub(crate) struct ServerProcess {
    pub child: tokio::process::Child,
    pub base: String,
    data: tempfile::TempDir,
}

impl ServerProcess {
    pub async fn start(password: &str) -> Self {
        let data = tempfile::tempdir().unwrap();
        Self::start_in(password, data).await
    }

    /// A server on the data directory `data` (e.g. a restored backup).
    pub async fn start_in(password: &str, data: tempfile::TempDir) -> Self {
        let binary = Self::binary();
        let mut child = tokio::process::Command::new(&binary)
            .arg("serve")
            .env("TASKGATE_ADDR", "127.0.0.1:0")
            .env("TASKGATE_TLS", "off")
            .env("TASKGATE_DATA_DIR", data.path())
            .env("TASKGATE_ADMIN_PASSWORD", password)
            .env("TASKGATE_LOG", "warn")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt as _;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("Taskgate is listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let base = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("the server starts")
            .unwrap();
        Self { child, base, data }
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Sends SIGTERM, as an operator or an orchestrator stops it.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the server runs").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to end; its exit status and its data
    /// directory (to start another server on).
    pub async fn exited(
        mut self,
        within: Duration,
    ) -> (std::process::ExitStatus, tempfile::TempDir) {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the server stops in time")
            .unwrap();
        (status, self.data)
    }

    /// The `taskgate` binary this server runs.
    pub fn binary() -> PathBuf {
        taskgate_e2e::workspace_binary("taskgate")
    }

    /// An admin token.
    pub async fn login(&self, password: &str) -> String {
        let login: Value = reqwest::Client::new()
            .post(format!("{}/auth", self.base))
            .json(&json!({"username": "admin", "password": password}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        login["token"].as_str().unwrap().to_owned()
    }

    fn status(&self, field: &str) -> u64 {
        let pid = self.child.id().unwrap();
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = text.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    }

    /// Bytes the process has read (files and sockets), from /proc.
    fn read_bytes(&self) -> u64 {
        let pid = self.child.id().unwrap();
        let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
        let line = text.lines().find(|l| l.starts_with("rchar:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// 2 GiB up and down through the local server: its resident memory grows
/// by less than 64 MiB (the bytes stream, never held), the content comes
/// back whole, and a client that leaves mid-download stops the reading.
/// Embedded store only: the store keeps the record, the bytes never pass
/// through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gib_stream_through_in_bounded_memory() {
    const SIZE: u64 = 2 << 30;
    const PIECE: usize = MIB;
    let password = "operator of the stream test";
    let server = ServerProcess::start(password).await;
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{}/auth", server.base))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let created = client
        .post(format!("{}/files", server.base))
        .bearer_auth(&token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", SIZE.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();

    // Memory, sampled every 50 ms while the bytes go up and down.
    let baseline = server.status("VmRSS:");
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let pid = server.child.id().unwrap();
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::SeqCst) {
                if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(line) = text.lines().find(|l| l.starts_with("VmRSS:"))
                {
                    let rss = line
                        .split_whitespace()
                        .nth(1)
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                        * 1024;
                    peak.fetch_max(rss, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let piece = Bytes::from(pattern(PIECE, 11));
    let mut expected = Sha256::new();
    for _ in 0..SIZE / PIECE as u64 {
        expected.update(&piece);
    }
    let expected = hex::encode(expected.finalize());
    let body = futures_util::stream::iter((0..SIZE / PIECE as u64).map({
        let piece = piece.clone();
        move |_| Ok::<_, std::io::Error>(piece.clone())
    }));
    let patched = client
        .patch(format!("{}{location}", server.base))
        .bearer_auth(&token)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::NO_CONTENT);
    let after_upload = peak.load(Ordering::SeqCst);

    let mut download = client
        .get(format!("{}{location}/content", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    let (mut hash, mut received) = (Sha256::new(), 0u64);
    while let Some(chunk) = download.chunk().await.unwrap() {
        received += chunk.len() as u64;
        hash.update(&chunk);
    }
    assert_eq!(received, SIZE);
    assert_eq!(hex::encode(hash.finalize()), expected);
    sampling.store(false, Ordering::SeqCst);
    sampler.await.unwrap();
    let peak = peak.load(Ordering::SeqCst);
    eprintln!(
        "RSS: {} MiB at start, {} MiB at most while uploading, {} MiB at most overall",
        baseline >> 20,
        after_upload >> 20,
        peak >> 20
    );
    assert!(
        peak - baseline < 64 * MIB as u64,
        "the server grew by {} MiB moving 2 GiB",
        (peak - baseline) >> 20
    );

    // A client that leaves after 8 MiB: the server stops reading the file.
    let before = server.read_bytes();
    let mut partial = client
        .get(format!("{}{location}/content", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mut got = 0;
    while got < 8 * MIB {
        got += partial.chunk().await.unwrap().unwrap().len();
    }
    drop(partial);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let read = server.read_bytes() - before;
    assert!(
        read < 256 * MIB as u64,
        "the server read {} MiB of a 2 GiB file for a client that took 8 MiB and left",
        read >> 20
    );
}

/// `TASKGATE_MAX_FILES_PER_USER`: empty files count as much as any (each
/// is a record and an object): past the bound, 413 saying so; deleting
/// one makes room.
async fn a_user_keeps_at_most_max_files(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.api.files.max_files = 3;
    })
    .await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let create = || async {
        tus_request(&app, Method::POST, "/files", &alice)
            .header("upload-length", "0")
            .send()
            .await
            .unwrap()
    };
    let mut made = Vec::new();
    for _ in 0..3 {
        let response = create().await;
        assert_eq!(response.status(), StatusCode::CREATED);
        made.push(response.headers()["location"].to_str().unwrap().to_owned());
    }
    let problem = assert_problem(
        create().await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "storage-quota-exceeded",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("TASKGATE_MAX_FILES_PER_USER"),
        "{problem}"
    );
    let deleted = tus_request(&app, Method::DELETE, &made[0], &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(create().await.status(), StatusCode::CREATED);
}

/// `POST /upload` takes files up to `TASKGATE_MAX_FILE_BYTES`, streamed:
/// it once refused anything over axum's default 2 MiB body limit with "the
/// upload broke off". Past the file limit it is 413, and nothing is kept.
async fn a_compatibility_upload_takes_files_up_to_the_file_limit(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.api.files.max_file_bytes = 8 * MIB as u64;
    })
    .await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let form = |data: Vec<u8>| {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(data)
                .file_name("big.bin")
                .mime_str("application/octet-stream")
                .unwrap(),
        )
    };
    let data = pattern(5 * MIB, 3);
    let response = app
        .request(Method::POST, "/upload", Some(&alice))
        .multipart(form(data.clone()))
        .send()
        .await
        .unwrap();
    let (status, file) = status_and_json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    assert_eq!(file["size"], 5 * MIB);
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&data)));
    let response = app
        .request(Method::POST, "/upload", Some(&alice))
        .multipart(form(pattern(9 * MIB, 4)))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "file-too-large").await;
    let (_, files) = status_and_json(app.get("/files", Some(&alice)).await).await;
    assert_eq!(files["items"].as_array().unwrap().len(), 1, "{files}");
    // POST /export answers with the stored, uploader-chosen content type:
    // never sniffed, never cached.
    let response = app
        .send_json(
            Method::POST,
            "/export",
            Some(&alice),
            &json!({"filename": "big.bin"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(response.bytes().await.unwrap().len(), 5 * MIB);
}

async fn the_compatibility_routes_upload_export_and_abort(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token().await;
    let alice = app.user_with_token(&admin, "alice", "user").await;
    let bob = app.user_with_token(&admin, "bob", "user").await;

    // POST /upload: multipart/form-data, field `file`.
    let data = pattern(300_000, 9);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(data.clone())
            .file_name("notes.bin")
            .mime_str("application/octet-stream")
            .unwrap(),
    );
    let response = app
        .request(Method::POST, "/upload", Some(&alice))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, file) = status_and_json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    assert_eq!(
        (file["name"].as_str(), file["status"].as_str()),
        (Some("notes.bin"), Some("complete"))
    );
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&data)));
    let stored = kept(&app);
    assert_eq!(stored.len(), 1);

    // POST /export streams it back.
    let response = app
        .send_json(
            Method::POST,
            "/export",
            Some(&alice),
            &json!({"filename": "notes.bin"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap() == data);
    let response = app
        .send_json(
            Method::POST,
            "/export",
            Some(&bob),
            &json!({"filename": "notes.bin"}),
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;

    // An upload in progress, aborted from another request: the uploader
    // is told, and nothing of it is stored.
    let (release, hold) = tokio::sync::oneshot::channel::<()>();
    let first = Bytes::from(pattern(MIB, 3));
    let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(
        futures_util::stream::once(async move {
            let _ = hold.await;
            Ok::<_, std::io::Error>(Bytes::from_static(b"never"))
        }),
    );
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(body)).file_name("big.bin"),
    );
    let upload = {
        // A client of its own: the server closes this connection mid-body,
        // which must not leave a dead connection in the shared pool.
        let request = reqwest::Client::new()
            .post(app.url("/upload"))
            .bearer_auth(&alice)
            .multipart(form);
        tokio::spawn(async move { request.send().await })
    };
    // It is under way once a kill finds it.
    let mut aborted = 0;
    for _ in 0..100 {
        let (_, killed) = status_and_json(app.delete("/upload/kill", Some(&bob)).await).await;
        assert_eq!(killed, json!({"aborted": 0}), "bob has no uploads");
        let (status, killed) =
            status_and_json(app.delete("/upload/kill", Some(&alice)).await).await;
        assert_eq!(status, StatusCode::OK);
        aborted = killed["aborted"].as_u64().unwrap();
        if aborted > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(aborted, 1);
    let answered = upload.await.unwrap();
    drop(release);
    if let Ok(response) = answered {
        assert_problem(response, StatusCode::CONFLICT, "transfer-aborted").await;
    }
    let (_, files) = status_and_json(app.get("/files", Some(&alice)).await).await;
    assert_eq!(files["items"].as_array().unwrap().len(), 1, "{files}");
    for _ in 0..50 {
        if kept(&app) == stored {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(kept(&app), stored, "nothing of the aborted upload is kept");

    // A download in progress, ended from another request.
    let big = pattern(32 * MIB, 4);
    let location = create(&app, &alice, big.len() as u64).await;
    assert_eq!(
        patch(&app, &alice, &location, 0, big.clone())
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let (_, file) = status_and_json(app.get(&location, Some(&alice)).await).await;
    let name = file["name"].as_str().unwrap().to_owned();
    let mut download = app
        .send_json(
            Method::POST,
            "/export",
            Some(&alice),
            &json!({"filename": name}),
        )
        .await;
    assert_eq!(download.status(), StatusCode::OK);
    let mut received = download.chunk().await.unwrap().unwrap().len();
    let (_, killed) = status_and_json(
        app.request(Method::POST, "/export/kill", Some(&alice))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(killed, json!({"aborted": 1}));
    let ended = loop {
        match download.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break "the body ended",
            Err(_) => break "the connection broke",
        }
    };
    assert!(
        received < big.len(),
        "the whole file came after the kill ({ended})"
    );
}

/// Where the store can hand out a direct URL (S3, here moto's), a download
/// answers 307 to a short-lived presigned URL that serves the bytes, with
/// the file's name and type, and ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_a_download_redirects_to_a_short_lived_url() {
    let moto = std::env::var("TASKGATE_TEST_SFN_ENDPOINT")
        .expect("tests/run.sh starts moto and sets TASKGATE_TEST_SFN_ENDPOINT");
    let sdk = taskgate_aws::load_sdk_config(Some(&moto)).await;
    let s3 = taskgate_aws::s3_client(&sdk, Some(&moto));
    let bucket = format!(
        "tg-redirect-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let store = Arc::new(taskgate_embedded::EmbeddedStore::in_memory().unwrap());
    let state = Arc::new(
        taskgate_api::AppState::new(
            store,
            &secrecy::SecretSlice::from(vec![7u8; 64]),
            taskgate_app::settings::Settings::default(),
        )
        .unwrap()
        .with_blobs(Arc::new(taskgate_aws::blobs::S3Blobs::new(s3, bucket))),
    );
    let alice = taskgate_e2e::fixture_user("alice", taskgate_domain::user::Level::User);
    state.store.insert_user(&alice).await.unwrap();
    let issued = state
        .keys
        .issue(&alice, Duration::from_secs(600), state.clock.now());
    state.store.insert_token(&issued.record).await.unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&issued.token).to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, taskgate_api::app(state.clone())).into_future());

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let data = pattern(100_000, 21);
    let created = client
        .post(format!("{base}/files"))
        .bearer_auth(&token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", data.len().to_string())
        .header(
            "upload-metadata",
            "filename cmVwb3J0LmNzdg==,filetype dGV4dC9jc3Y=",
        )
        .header("content-type", "application/offset+octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["upload-offset"], data.len().to_string());
    let location = created.headers()["location"].to_str().unwrap().to_owned();

    let redirect = client
        .get(format!("{base}{location}/content"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        redirect.headers()["etag"].to_str().unwrap(),
        format!("\"{}\"", hex::encode(Sha256::digest(&data)))
    );
    let url = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        url.starts_with(&moto) && url.contains("X-Amz-Expires=300"),
        "{url}"
    );
    // The URL alone (no token) serves the bytes, named and typed.
    let direct = reqwest::get(&url).await.unwrap();
    assert_eq!(direct.status(), StatusCode::OK);
    assert_eq!(direct.headers()["content-type"], "text/csv");
    assert!(
        direct.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("report.csv")
    );
    assert!(direct.bytes().await.unwrap() == data);
    let ranged = client
        .get(&url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert!(ranged.bytes().await.unwrap() == data[10..20]);
    // Who may not see the file is refused before any URL is made.
    let response = client
        .get(format!("{base}{location}/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
