//! The lease guard on the embedded store: every way out of an append gives
//! the upload's lease back (a refused chunk, a failed append, a failed
//! finish, a failed record, a guard dropped unconsumed), once and only
//! once; and an append that meets another's lease is refused as busy (the
//! tus routes' 423), not let in.
//!
//! The file store is counted: each test says how many conditional writes
//! the append made (taking the lease, then recording or releasing it), so
//! a release made twice, or not at all, shows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use taskgate_domain::clock::SystemClock;
use taskgate_domain::file::{BlobState, ContentType, FileId, FileName, StoredFile};
use taskgate_domain::permission::Actor;
use taskgate_domain::ports::{
    Appended, BlobError, BlobStore, ByteStream, FileStore, Page, StoreError, StoreResult,
};
use taskgate_domain::user::{User, UserId};
use taskgate_embedded::EmbeddedStore;
use taskgate_embedded::blobs::DiskBlobs;
use time::OffsetDateTime;

use super::lease::Lease;
use super::removal_races::owner;
use super::{Chunk, ChunkCheck, UploadError, Uploads};
use crate::settings::FileLimits;

/// The embedded store's files, with `update_file` counted and, on demand,
/// failing.
struct CountedStore {
    inner: EmbeddedStore,
    updates: AtomicUsize,
    /// The update (counted from 1) that fails as if the store were down; 0
    /// for none.
    failing_update: AtomicUsize,
}

#[async_trait]
impl FileStore for CountedStore {
    async fn insert_file(&self, file: &StoredFile, quota: u64, max_files: u64) -> StoreResult<()> {
        self.inner.insert_file(file, quota, max_files).await
    }
    async fn get_file(&self, id: &FileId) -> StoreResult<Option<StoredFile>> {
        self.inner.get_file(id).await
    }
    async fn update_file(&self, current: &StoredFile, next: &StoredFile) -> StoreResult<()> {
        let n = self.updates.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.failing_update.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("the store is down"));
        }
        self.inner.update_file(current, next).await
    }
    async fn delete_file(&self, file: &StoredFile) -> StoreResult<()> {
        self.inner.delete_file(file).await
    }
    async fn owner_files(
        &self,
        owner: &UserId,
        after: Option<&FileId>,
        limit: usize,
    ) -> StoreResult<Page<StoredFile, FileId>> {
        self.inner.owner_files(owner, after, limit).await
    }
    async fn expired_uploads(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreResult<Vec<StoredFile>> {
        self.inner.expired_uploads(now, limit).await
    }
    async fn used_bytes(&self, owner: &UserId) -> StoreResult<u64> {
        self.inner.used_bytes(owner).await
    }
}

/// Disk blobs whose `append` or `finish` fails while told to.
struct FaultyBlobs {
    inner: DiskBlobs,
    failing_append: AtomicBool,
    failing_finish: AtomicBool,
}

fn down() -> BlobError {
    BlobError::Unavailable("the store is down".into())
}

#[async_trait]
impl BlobStore for FaultyBlobs {
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
        if self.failing_append.load(Ordering::SeqCst) {
            return Err(down());
        }
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
        if self.failing_finish.load(Ordering::SeqCst) {
            return Err(down());
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

struct World {
    store: Arc<CountedStore>,
    blobs: Arc<FaultyBlobs>,
    owner: User,
    _dir: tempfile::TempDir,
}

fn limits(max_patch_bytes: Option<u64>) -> FileLimits {
    FileLimits {
        max_file_bytes: 1 << 20,
        user_quota_bytes: 1 << 30,
        max_files: 100,
        upload_expiry: Duration::from_secs(3600),
        max_patch_bytes,
    }
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    World {
        store: Arc::new(CountedStore {
            inner: EmbeddedStore::in_memory().unwrap(),
            updates: AtomicUsize::new(0),
            failing_update: AtomicUsize::new(0),
        }),
        blobs: Arc::new(FaultyBlobs {
            inner: DiskBlobs::open(dir.path()).unwrap(),
            failing_append: false.into(),
            failing_finish: false.into(),
        }),
        owner: owner(),
        _dir: dir,
    }
}

impl World {
    fn uploads(&self, max_patch_bytes: Option<u64>) -> Uploads {
        Uploads::new(
            self.store.clone(),
            self.blobs.clone(),
            Arc::new(SystemClock),
            limits(max_patch_bytes),
        )
    }

    fn actor(&self) -> Actor {
        Actor::from(&self.owner)
    }

    /// A new upload of `size` bytes; the update count starts from here.
    async fn upload(&self, size: u64) -> StoredFile {
        let file = self
            .uploads(None)
            .create(
                &self.owner,
                FileName::parse("last.txt").unwrap(),
                ContentType::octet_stream(),
                size,
            )
            .await
            .unwrap();
        self.store.updates.store(0, Ordering::SeqCst);
        file
    }

    async fn stored(&self, file: &StoredFile) -> StoredFile {
        self.store.get_file(&file.id).await.unwrap().unwrap()
    }

    fn updates(&self) -> usize {
        self.store.updates.load(Ordering::SeqCst)
    }

    /// Lets whatever a dropped guard spawned run, then counts again.
    async fn updates_once_settled(&self) -> usize {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.updates()
    }
}

fn body(pieces: &[&'static [u8]]) -> ByteStream {
    let pieces: Vec<_> = pieces
        .iter()
        .map(|piece| Ok(Bytes::from_static(piece)))
        .collect();
    Box::pin(futures_util::stream::iter(pieces))
}

fn chunk(offset: u64, bytes: &'static [u8]) -> Chunk {
    Chunk {
        offset,
        announced: Some(bytes.len() as u64),
        body: body(&[bytes]),
        check: None,
    }
}

/// A chunk check that says what it is told to.
struct Says(bool);

impl ChunkCheck for Says {
    fn update(&mut self, _: &[u8]) {}
    fn matches(self: Box<Self>) -> bool {
        self.0
    }
}

/// A PATCH whose last chunk cannot be turned into a file (the blob store
/// fails to finish it) gives its lease back: the client retries at once,
/// not after the lease's fifteen minutes of 423.
#[tokio::test]
async fn a_failed_finish_gives_the_lease_back() {
    let world = world();
    let file = world.upload(5).await;
    world.blobs.failing_finish.store(true, Ordering::SeqCst);
    let uploads = world.uploads(None);
    let failed = uploads
        .append(&world.actor(), file.clone(), chunk(0, b"hello"))
        .await;
    assert!(matches!(failed, Err(UploadError::Blob(_))), "{failed:?}");
    let after = world.stored(&file).await;
    assert_eq!(after.lease_until, None, "the lease was kept");
    assert_eq!(after.offset, 0);
    assert_eq!(world.updates_once_settled().await, 2, "taken, given back");
    // The retry, once the store works again, lands.
    world.blobs.failing_finish.store(false, Ordering::SeqCst);
    let done = uploads
        .append(&world.actor(), after, chunk(0, b"hello"))
        .await
        .unwrap();
    assert!(done.is_complete());
}

/// A step that fails: the append the blob store refuses (nothing of it
/// counts), or the write that would record the chunk (it is rolled back).
/// Either way the lease is given back, once, and the client may send the
/// chunk again.
#[tokio::test]
async fn a_failed_step_gives_the_lease_back() {
    struct Case {
        why: &'static str,
        fail: fn(&World),
        failed: fn(&UploadError) -> bool,
        /// Conditional writes made: the lease taken, then given back (with
        /// a failed record between them).
        updates: usize,
    }
    let cases = [
        Case {
            why: "the blob store refuses the append",
            fail: |world| world.blobs.failing_append.store(true, Ordering::SeqCst),
            failed: |e| matches!(e, UploadError::Blob(_)),
            updates: 2,
        },
        Case {
            why: "the store fails to record the chunk",
            fail: |world| world.store.failing_update.store(2, Ordering::SeqCst),
            failed: |e| matches!(e, UploadError::Store(_)),
            updates: 3,
        },
    ];
    for case in cases {
        let world = world();
        let file = world.upload(5).await;
        (case.fail)(&world);
        let failed = world
            .uploads(None)
            .append(&world.actor(), file.clone(), chunk(0, b"hel"))
            .await;
        assert!(
            failed.as_ref().is_err_and(case.failed),
            "{}: {failed:?}",
            case.why
        );
        let after = world.stored(&file).await;
        assert_eq!((after.lease_until, after.offset), (None, 0), "{}", case.why);
        assert_eq!(
            world.updates_once_settled().await,
            case.updates,
            "{}",
            case.why
        );
        world.blobs.failing_append.store(false, Ordering::SeqCst);
        let next = world
            .uploads(None)
            .append(&world.actor(), after, chunk(0, b"hel"))
            .await
            .unwrap();
        assert_eq!(next.offset, 3, "{}", case.why);
    }
}

/// Each way a chunk is refused for what it is: rolled back, and the lease
/// given back once.
#[tokio::test]
async fn a_refused_chunk_gives_the_lease_back() {
    struct Case {
        why: &'static str,
        max_patch_bytes: Option<u64>,
        chunk: Chunk,
        refused: fn(&UploadError) -> bool,
    }
    let cases = [
        Case {
            why: "the checksum does not match",
            max_patch_bytes: None,
            chunk: Chunk {
                check: Some(Box::new(Says(false))),
                ..chunk(0, b"hel")
            },
            refused: |e| matches!(e, UploadError::ChecksumMismatch),
        },
        Case {
            why: "a checked chunk was cut",
            max_patch_bytes: None,
            chunk: Chunk {
                offset: 0,
                announced: None,
                body: Box::pin(futures_util::stream::iter([
                    Ok(Bytes::from_static(b"he")),
                    Err(std::io::Error::other("the connection broke")),
                ])),
                check: Some(Box::new(Says(true))),
            },
            refused: |e| matches!(e, UploadError::CutWithCheck),
        },
        Case {
            why: "unannounced bytes past the upload's length",
            max_patch_bytes: None,
            chunk: Chunk {
                announced: None,
                ..chunk(0, b"hello, world")
            },
            refused: |e| {
                matches!(
                    e,
                    UploadError::PastTheEnd {
                        announced: None,
                        remaining: 5
                    }
                )
            },
        },
        Case {
            why: "unannounced bytes past the append bound",
            max_patch_bytes: Some(2),
            chunk: Chunk {
                announced: None,
                ..chunk(0, b"hel")
            },
            refused: |e| matches!(e, UploadError::ChunkTooLarge { limit: 2 }),
        },
    ];
    for case in cases {
        let world = world();
        let file = world.upload(5).await;
        let refused = world
            .uploads(case.max_patch_bytes)
            .append(&world.actor(), file.clone(), case.chunk)
            .await;
        assert!(
            refused.as_ref().is_err_and(case.refused),
            "{}: {refused:?}",
            case.why
        );
        let after = world.stored(&file).await;
        assert_eq!(after.lease_until, None, "{}: the lease was kept", case.why);
        assert_eq!(after.offset, 0, "{}", case.why);
        assert_eq!(world.updates_once_settled().await, 2, "{}", case.why);
        // Nothing of the refused chunk is left to spoil the next one.
        let done = world
            .uploads(None)
            .append(&world.actor(), after, chunk(0, b"hello"))
            .await
            .unwrap();
        assert!(done.is_complete(), "{}", case.why);
    }
}

/// A recorded append ends its lease in the recording write: nothing is
/// given back after it (which would be a second, stale write).
#[tokio::test]
async fn a_recorded_append_gives_nothing_back_after() {
    let world = world();
    let file = world.upload(5).await;
    let next = world
        .uploads(None)
        .append(&world.actor(), file.clone(), chunk(0, b"hel"))
        .await
        .unwrap();
    assert_eq!((next.offset, next.lease_until), (3, None));
    assert_eq!(world.updates_once_settled().await, 2, "taken, recorded");
    assert_eq!(world.stored(&file).await, next);
}

/// The safety net: a guard dropped unconsumed (an early return, a panic, a
/// cancelled task) gives the lease back by a task of its own, once; one
/// released by hand is not released again by its drop.
#[tokio::test]
async fn a_dropped_lease_is_given_back_once() {
    let world = world();
    let file = world.upload(5).await;
    let store: Arc<dyn FileStore> = world.store.clone();
    let lease = Lease::take(&store, &file, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(world.stored(&file).await.lease_until.is_some());
    drop(lease);
    assert_eq!(world.updates_once_settled().await, 2, "taken, given back");
    let after = world.stored(&file).await;
    assert_eq!(after.lease_until, None);

    let lease = Lease::take(&store, &after, OffsetDateTime::now_utc())
        .await
        .unwrap();
    lease.release().await;
    assert_eq!(world.updates_once_settled().await, 4, "taken, given back");
    assert_eq!(world.stored(&file).await.lease_until, None);
}

/// While one append holds the lease, another is refused (423 on the tus
/// routes): whether it read the record before the lease was taken or
/// after. The holder's chunk lands whole.
#[tokio::test]
async fn a_concurrent_append_meets_the_lease() {
    let world = world();
    let file = world.upload(10).await;
    let uploads = world.uploads(None);
    let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
    let held: ByteStream = Box::pin(futures_util::stream::unfold(
        Some(wait),
        |wait| async move {
            let wait = wait?;
            let _ = wait.await;
            Some((Ok(Bytes::from_static(b"hello")), None))
        },
    ));
    let holder = {
        let (uploads, actor, file) = (uploads.clone(), world.actor(), file.clone());
        tokio::spawn(async move {
            let chunk = Chunk {
                offset: 0,
                announced: Some(5),
                body: held,
                check: None,
            };
            uploads.append(&actor, file, chunk).await
        })
    };
    let mut leased = world.stored(&file).await;
    for _ in 0..100 {
        if leased.lease_until.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        leased = world.stored(&file).await;
    }
    assert!(
        leased.lease_until.is_some(),
        "the first append took no lease"
    );

    let busy = uploads
        .append(&world.actor(), leased.clone(), chunk(0, b"HELLO"))
        .await;
    assert!(matches!(busy, Err(UploadError::Busy)), "{busy:?}");
    let stale = uploads
        .append(&world.actor(), file.clone(), chunk(0, b"HELLO"))
        .await;
    assert!(
        matches!(stale, Err(UploadError::ChangedMeanwhile)),
        "{stale:?}"
    );
    assert_eq!(
        world.stored(&file).await,
        leased,
        "a refused append changed the record"
    );

    go_on.send(()).unwrap();
    let done = holder.await.unwrap().unwrap();
    assert_eq!((done.offset, done.lease_until), (5, None));
    let next = uploads
        .append(&world.actor(), done, chunk(5, b"world"))
        .await
        .unwrap();
    assert!(next.is_complete());
    assert_eq!(
        next.sha256.as_deref(),
        Some("936a185caaa266bb9cbe981e9e05cb78cd732b0b3280eb944412bb6f8f8f07af"),
        "sha256(\"helloworld\")"
    );
}
