//! Uploads that outlive their use: removing a file or an unfinished upload
//! (its record, then its bytes) and reaping the uploads past their expiry.

use taskgate_domain::file::StoredFile;
use taskgate_domain::ports::{BlobStore, Store, StoreError};
use time::OffsetDateTime;

/// Deletes `file`'s record, then its bytes. If the record changed since it
/// was read, it is read again and removed only if `still` holds for what
/// it is now; and then the bytes removed are those of what it is now (an
/// upload that finished meanwhile has a whole object, not a multipart
/// upload: removing the stale state's would orphan the object, outside
/// any quota). Whether it removed anything.
pub async fn remove_from(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    file: &StoredFile,
    still: impl Fn(&StoredFile) -> bool,
) -> Result<bool, StoreError> {
    let removed_record = match store.delete_file(file).await {
        Ok(()) => file.clone(),
        // Changed meanwhile (e.g. a PATCH took its lease, or finished it):
        // read it again.
        Err(StoreError::Conflict) => {
            let Some(fresh) = store.get_file(&file.id).await? else {
                return Ok(false);
            };
            if !still(&fresh) {
                return Ok(false);
            }
            store.delete_file(&fresh).await?;
            fresh
        }
        Err(e) => return Err(e),
    };
    let file = &removed_record;
    let removed = if file.is_complete() {
        blobs.delete(&file.id).await
    } else {
        blobs.abort(&file.id, &file.blob).await
    };
    if let Err(e) = removed {
        tracing::error!(file = %file.id, error = %e, "the file's record is gone but its bytes could not be removed");
    }
    Ok(true)
}

/// Removes the unfinished uploads whose `Upload-Expires` has passed, as of
/// `now` (the local server every minute, the scheduled upload reaper on
/// AWS). An upload whose lease a PATCH still holds waits for the next
/// round. How many it removed.
pub async fn reap_expired(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    loop {
        let expired = store.expired_uploads(now, 100).await?;
        let mut this_round = 0;
        for file in &expired {
            if file.lease_until.is_some_and(|until| until > now) {
                continue;
            }
            // Only while it is still an unfinished upload past its expiry
            // that no PATCH holds: one that finished meanwhile stays.
            let still_expired = |fresh: &StoredFile| {
                !fresh.is_complete()
                    && fresh.expires_at.is_some_and(|at| at <= now)
                    && fresh.lease_until.is_none_or(|until| until <= now)
            };
            if remove_from(store, blobs, file, still_expired).await? {
                this_round += 1;
            }
        }
        removed += this_round;
        // A short page was the last; a page of leased uploads only would
        // come back the same.
        if expired.len() < 100 || this_round == 0 {
            return Ok(removed);
        }
    }
}

/// A removal racing an upload that just finished (the reaper, or a user's
/// DELETE, read the file while it was still uploading): the reaper leaves
/// the finished file alone; a DELETE removes it, bytes and all, leaving no
/// object behind outside every quota.
#[cfg(test)]
mod removal_races {
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

    fn owner() -> User {
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
    async fn finished_after_being_read(
        world: &World,
        now: OffsetDateTime,
    ) -> (StoredFile, StoredFile) {
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
}
