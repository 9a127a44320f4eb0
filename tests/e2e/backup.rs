//! `taskgate backup PATH` while the server runs and writes: the copy is
//! whole (`taskgate audit verify` passes on it), holds what was there before
//! the backup began, and serves as a data directory (restore = point
//! TASKGATE_DATA_DIR at it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::files::ServerProcess;

const PASSWORD: &str = "operator of the backup test";

async fn post(client: &reqwest::Client, url: String, token: &str, body: Value) -> Value {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_whole() {
    let server = ServerProcess::start(PASSWORD).await;
    let token = server.login(PASSWORD).await;
    let client = reqwest::Client::new();
    let base = server.base.clone();

    // Before: a project with items, tasks, and a file.
    let project = post(
        &client,
        format!("{base}/projects"),
        &token,
        json!({"name": "Kept"}),
    )
    .await;
    let project = project["id"].as_str().unwrap().to_owned();
    for n in 0..20 {
        post(
            &client,
            format!("{base}/projects/{project}/items"),
            &token,
            json!({"title": format!("before {n}")}),
        )
        .await;
    }
    let task = post(
        &client,
        format!("{base}/tasks"),
        &token,
        json!({"type": "delay", "seconds": 0}),
    )
    .await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let created = client
        .post(format!("{base}/files"))
        .bearer_auth(&token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", data.len().to_string())
        .header("upload-metadata", "filename a2VwdC5iaW4=")
        .header("content-type", "application/offset+octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let file = created.headers()["location"].to_str().unwrap().to_owned();

    // Writers keep going while the backup runs.
    let writing = Arc::new(AtomicBool::new(true));
    let written = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, base, token, project) =
                (client.clone(), base.clone(), token.clone(), project.clone());
            let (writing, written) = (writing.clone(), written.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while writing.load(Ordering::SeqCst) {
                    post(
                        &client,
                        format!("{base}/projects/{project}/items"),
                        &token,
                        json!({"title": format!("during {w}-{n}")}),
                    )
                    .await;
                    post(
                        &client,
                        format!("{base}/tasks"),
                        &token,
                        json!({"type": "delay", "seconds": 0}),
                    )
                    .await;
                    n += 1;
                    written.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    while written.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let backup = tempfile::tempdir().unwrap();
    let into = backup.path().join("copy");
    let output = tokio::process::Command::new(ServerProcess::binary())
        .arg("backup")
        .arg(&into)
        .env("TASKGATE_DATA_DIR", server.data_dir())
        .output()
        .await
        .unwrap();
    let during = written.load(Ordering::SeqCst);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("1 files"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Writes went on during the backup.
    while written.load(Ordering::SeqCst) < during + 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writing.store(false, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }

    // The copy is whole: every log verifies, every row is its log's fold.
    let audit = tokio::process::Command::new(ServerProcess::binary())
        .args(["audit", "verify"])
        .env("TASKGATE_DATA_DIR", &into)
        .output()
        .await
        .unwrap();
    assert!(
        audit.status.success(),
        "audit verify on the copy: {}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );
    // A backup never overwrites.
    let again = tokio::process::Command::new(ServerProcess::binary())
        .arg("backup")
        .arg(&into)
        .env("TASKGATE_DATA_DIR", server.data_dir())
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());

    // Restored: a server on the copy has everything from before the backup.
    drop(server);
    let copy = tempfile::tempdir().unwrap();
    for entry in walk(&into) {
        let relative = entry.strip_prefix(&into).unwrap();
        let target = copy.path().join(relative);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    let restored = ServerProcess::start_in(PASSWORD, copy).await;
    let token = restored.login(PASSWORD).await;
    let items: Value = client
        .get(format!(
            "{}/projects/{project}/items?limit=100",
            restored.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let titles: Vec<&str> = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    for n in 0..20 {
        assert!(
            titles.contains(&format!("before {n}").as_str()),
            "before {n} is missing"
        );
    }
    let restored_task = client
        .get(format!(
            "{}/tasks/{}",
            restored.base,
            task["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(restored_task.status(), StatusCode::OK);
    let content = client
        .get(format!("{}{file}/content", restored.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(content.status(), StatusCode::OK);
    let bytes = content.bytes().await.unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        hex::encode(Sha256::digest(&data))
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
