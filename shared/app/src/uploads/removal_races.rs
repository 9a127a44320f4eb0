//! A removal racing an upload that just finished (the reaper, or a user's
//! DELETE, read the file while it was still uploading): the reaper leaves
//! the finished file alone; a DELETE removes it, bytes and all, leaving no
//! object behind outside every quota.
use std::sync::Arc;

use taskgate_domain::file::{ContentType, FileName, FileStatus, StoredFile};
use taskgate_domain::ports::{BlobStore, FileStore};
use taskgate_domain::user::{Level, User, Username};
use taskgate_embedded::EmbeddedStore;
use taskgate_embedded::blobs::DiskBlobs;
use time::OffsetDateTime;

use super::{reap_expired, remove_from};

struct World {
    store: Arc<EmbeddedStore>,
    blobs: DiskBlobs,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    World {
        store: Arc::new(EmbeddedStore::in_memory().unwrap()),
        blobs: DiskBlobs::open(dir.path()).unwrap(),
        _dir: dir,
    }
}

/// A plain user, the owner of every file in these tests.
pub(super) fn owner() -> User {
    let hash = taskgate_domain::password::PasswordHash::parse(
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3V7s8wPDxVyEkXmz4jtoTrhpgXT4x3rKxhWFSmsHCGc",
    )
    .unwrap();
    User::new(
        Username::parse("ann").unwrap(),
        hash,
        Level::User,
        None,
        None,
    )
}

/// An upload of 5 bytes that expired; the copy read before it finished,
/// and the finished record.
async fn finished_after_being_read(world: &World, now: OffsetDateTime) -> (StoredFile, StoredFile) {
    let mut file = StoredFile::new_upload(
        &owner(),
        FileName::parse("late.txt").unwrap(),
        ContentType::octet_stream(),
        5,
        now - time::Duration::hours(2),
        now - time::Duration::hours(1),
        serde_json::Value::Null,
    );
    file.blob = world.blobs.start(&file.id).await.unwrap();
    world
        .store
        .insert_file(&file, u64::MAX, u64::MAX)
        .await
        .unwrap();
    let stale = file.clone();
    let body = Box::pin(futures_util::stream::iter([Ok::<_, std::io::Error>(
        bytes::Bytes::from_static(b"hello"),
    )]));
    let appended = world
        .blobs
        .append(&file.id, &file.blob, 0, body, 5)
        .await
        .unwrap();
    world
        .blobs
        .commit(&file.id, &file.blob, &appended.state)
        .await
        .unwrap();
    world
        .blobs
        .finish(&file.id, &appended.state, 5)
        .await
        .unwrap();
    let mut done = file.clone();
    done.offset = 5;
    done.blob = appended.state;
    done.status = FileStatus::Complete;
    done.expires_at = None;
    done.version += 1;
    world.store.update_file(&file, &done).await.unwrap();
    (stale, done)
}

async fn bytes_of(world: &World, file: &StoredFile) -> Option<Vec<u8>> {
    use futures_util::StreamExt as _;
    let mut stream = world
        .blobs
        .read(&file.id, 0..file.size, file.size)
        .await
        .ok()?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.ok()?);
    }
    Some(bytes)
}

#[tokio::test]
async fn the_reaper_leaves_an_upload_that_finished_meanwhile() {
    let world = world();
    let now = OffsetDateTime::now_utc();
    let (stale, done) = finished_after_being_read(&world, now).await;
    let still_expired = |fresh: &StoredFile| !fresh.is_complete();
    let removed = remove_from(world.store.as_ref(), &world.blobs, &stale, still_expired)
        .await
        .unwrap();
    assert!(!removed);
    let kept = world
        .store
        .get_file(&done.id)
        .await
        .unwrap()
        .expect("the finished file stays");
    assert_eq!(
        (kept.status, kept.version),
        (FileStatus::Complete, done.version)
    );
    assert_eq!(
        bytes_of(&world, &done).await.as_deref(),
        Some(&b"hello"[..])
    );
    // And a whole reaping round finds nothing to take.
    assert_eq!(
        reap_expired(world.store.as_ref(), &world.blobs, now)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_delete_read_before_the_upload_finished_removes_the_finished_bytes() {
    let world = world();
    let now = OffsetDateTime::now_utc();
    let (stale, done) = finished_after_being_read(&world, now).await;
    assert!(
        remove_from(world.store.as_ref(), &world.blobs, &stale, |_| true)
            .await
            .unwrap()
    );
    assert_eq!(world.store.get_file(&done.id).await.unwrap(), None);
    assert_eq!(
        bytes_of(&world, &done).await,
        None,
        "the finished object was orphaned"
    );
    assert_eq!(world.store.used_bytes(&done.owner_id).await.unwrap(), 0);
}
