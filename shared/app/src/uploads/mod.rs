//! # Uploads: files whose bytes arrive over time
//!
//! The one place that turns bytes into files, for every transport: the tus
//! routes (`/files`), the compatibility `POST /upload`, and the exporter.
//! Each of them creates a file's record within its owner's quotas, appends
//! bytes through the [`BlobStore`] with the file's SHA-256 running over them,
//! and finishes the file; here is how, once.
//!
//! Two shapes of upload share those steps:
//!
//! - **Recorded first** (tus, resumable): [`Uploads::create`] writes the
//!   record of an upload of a known size, within the quotas, before any
//!   byte; [`Uploads::append`] adds a chunk under the upload's lease,
//!   records the new offset, and finishes the file with its last byte. A
//!   chunk that cannot be kept is rolled back, and the lease is given back
//!   on every exit: the lease is a guard that owns it (`lease.rs` says how
//!   and why).
//! - **Recorded last** ([`NewFile`]: the compatibility upload, exports):
//!   the bytes are written first, of a size learnt as they come; the record
//!   is written once they are complete, with the quotas checked in that
//!   write. Until then nothing of the file is listed, and whatever stops it
//!   removes its bytes.
//!
//! Besides: [`Uploads::find`] (a file a caller may see, expired uploads
//! hidden), [`Uploads::remove`] (and [`Uploads::remove_id`]) and
//! [`Uploads::reap_expired`].
//!
//! No transport's vocabulary here: errors are [`UploadError`]s, which each
//! transport words as it must (a problem+json body, a task's error).
//!
//! [`BlobStore`]: taskgate_domain::ports::BlobStore

use std::sync::Arc;

use taskgate_domain::clock::Clock;
use taskgate_domain::file::{ContentType, FileId, FileName, StoredFile, may_see_file};
use taskgate_domain::permission::{Actor, Denied};
use taskgate_domain::ports::{BlobError, BlobStore, FileStore, StoreError};
use taskgate_domain::user::User;
use time::OffsetDateTime;

use crate::settings::FileLimits;

mod append;
mod digest;
mod lease;
#[cfg(test)]
mod lease_tests;
mod new_file;
#[cfg(test)]
mod removal_races;

pub use append::{Chunk, ChunkCheck, Resume};
pub use new_file::{NewFile, QuotaCheck};

/// Files and uploads over a file store and a blob store, within
/// [`FileLimits`] (see the module documentation). Cheap to clone: the
/// ports are shared.
#[derive(Clone)]
pub struct Uploads {
    store: Arc<dyn FileStore>,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    limits: FileLimits,
    /// Told +1 when an append's bytes begin to arrive and -1 when they
    /// stop (the API's `taskgate_uploads_in_progress` gauge).
    appending: fn(f64),
}

/// Why an upload operation did not do what was asked. Each transport words
/// these its own way; the variants carry what the wording needs.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// No such file (or an unfinished upload past its expiry).
    #[error("there is no file {0}")]
    NoSuchFile(FileId),
    /// The caller may not see, or append to, the file.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// Larger than `TASKGATE_MAX_FILE_BYTES`: `size` when it was announced,
    /// `None` when the bytes themselves went past it.
    #[error("the largest file is {max} bytes")]
    FileTooLarge { max: u64, size: Option<u64> },
    /// The owner's files would pass `TASKGATE_USER_QUOTA_BYTES`: they take
    /// `used` bytes, this one `size`.
    #[error("over the owner's quota of {quota} bytes")]
    OverQuota { used: u64, quota: u64, size: u64 },
    /// The owner keeps `max` files already (`TASKGATE_MAX_FILES_PER_USER`).
    #[error("the owner has {max} files already")]
    TooManyFiles { max: u64 },
    /// A [`QuotaCheck::AsWritten`] file would pass what the quota left
    /// (`room` bytes) when it began.
    #[error("only {room} bytes of the quota were left")]
    NoRoom { room: u64 },
    /// A chunk was sent for `sent` but the upload is at `offset`.
    #[error("the chunk is for {sent} but the upload is at {offset}")]
    OffsetMismatch { offset: u64, sent: u64 },
    /// A chunk goes past the upload's length, which has `remaining` bytes
    /// left: `announced` when its length said so before any byte was taken.
    #[error("the chunk goes past the upload's length")]
    PastTheEnd {
        announced: Option<u64>,
        remaining: u64,
    },
    /// A chunk larger than an append may carry here
    /// (`TASKGATE_MAX_PATCH_BYTES`).
    #[error("a chunk may carry at most {limit} bytes")]
    ChunkTooLarge { limit: u64 },
    /// Another request holds the upload's lease.
    #[error("another request is appending to this upload")]
    Busy,
    /// Another request changed the upload between reading it and taking
    /// its lease.
    #[error("another request changed this upload just now")]
    ChangedMeanwhile,
    /// A checked chunk did not arrive whole, so it could not be checked.
    #[error("the chunk did not arrive whole, so it could not be checked")]
    CutWithCheck,
    /// The chunk does not match its checksum.
    #[error("the chunk does not match its checksum")]
    ChecksumMismatch,
    /// The body of a [`NewFile`] broke off: it cannot be resumed.
    #[error("the body broke off")]
    Cut,
    /// A [`NewFile`]'s store kept another number of bytes than announced.
    #[error("{announced} bytes were announced but {stored} were stored")]
    NotAsAnnounced { announced: u64, stored: u64 },
    /// The file store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A bug: a task of the operation's own failed.
    #[error("{0}")]
    Internal(String),
}

impl UploadError {
    /// The bytes were refused for what they are (past a bound, cut, not as
    /// checked), as opposed to a store failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::FileTooLarge { .. }
                | Self::NoRoom { .. }
                | Self::PastTheEnd { .. }
                | Self::ChunkTooLarge { .. }
                | Self::CutWithCheck
                | Self::ChecksumMismatch
                | Self::Cut
                | Self::NotAsAnnounced { .. }
        )
    }
}

impl Uploads {
    /// Files in `store` with their bytes in `blobs`, within `limits`.
    pub fn new(
        store: Arc<dyn FileStore>,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
        limits: FileLimits,
    ) -> Self {
        Self {
            store,
            blobs,
            clock,
            limits,
            appending: |_| {},
        }
    }

    /// Tells `gauge` +1 when an append's bytes begin to arrive and -1 when
    /// they stop.
    pub fn with_append_gauge(mut self, gauge: fn(f64)) -> Self {
        self.appending = gauge;
        self
    }

    /// Whether a file of `size` bytes may exist at all
    /// (`TASKGATE_MAX_FILE_BYTES`). [`Uploads::create`] asks too; a
    /// transport asks first where this answer must come before its own
    /// checks of the request.
    pub fn check_size(&self, size: u64) -> Result<(), UploadError> {
        if size > self.limits.max_file_bytes {
            return Err(UploadError::FileTooLarge {
                max: self.limits.max_file_bytes,
                size: Some(size),
            });
        }
        Ok(())
    }

    /// Creates `owner`'s upload of `size` bytes, kept until the upload
    /// expiry unless finished: its bytes' storage, then its record, within
    /// the owner's quota and file count (race-safe: the store checks them
    /// in the write). Refused, nothing of it remains.
    pub async fn create(
        &self,
        owner: &User,
        name: FileName,
        content_type: ContentType,
        size: u64,
    ) -> Result<StoredFile, UploadError> {
        self.check_size(size)?;
        let now = self.clock.now();
        let mut file = StoredFile::new_upload(
            owner,
            name,
            content_type,
            size,
            now,
            now + self.limits.upload_expiry,
            serde_json::Value::Null,
        );
        file.blob = self.blobs.start(&file.id).await?;
        self.record(&file).await?;
        tracing::info!(file = %file.id, owner = %file.owner, size, "upload created");
        Ok(file)
    }

    /// The file `id` if `actor` may see it: `NoSuchFile` if it is missing
    /// or an unfinished upload past its expiry, `Denied` if not theirs.
    pub async fn find(&self, actor: &Actor, id: &FileId) -> Result<StoredFile, UploadError> {
        let now = self.clock.now();
        let file = self
            .store
            .get_file(id)
            .await?
            .filter(|file| !is_expired(file, now))
            .ok_or(UploadError::NoSuchFile(*id))?;
        may_see_file(actor, &file)?;
        Ok(file)
    }

    /// Removes a file or unfinished upload: its record, then its bytes.
    /// Whatever the file has become meanwhile (say its upload just
    /// finished), the caller asked for it gone.
    pub async fn remove(&self, file: &StoredFile) -> Result<(), UploadError> {
        remove_from(self.store.as_ref(), self.blobs.as_ref(), file, |_| true).await?;
        Ok(())
    }

    /// Removes the file `id`, if it exists (record, then bytes).
    pub async fn remove_id(&self, id: &FileId) -> Result<(), UploadError> {
        if let Some(file) = self.store.get_file(id).await? {
            self.remove(&file).await?;
        }
        Ok(())
    }

    /// Removes the unfinished uploads past their expiry (see
    /// [`reap_expired`]). How many it removed.
    pub async fn reap_expired(&self) -> Result<usize, UploadError> {
        Ok(reap_expired(self.store.as_ref(), self.blobs.as_ref(), self.clock.now()).await?)
    }

    /// Writes `file`'s record within its owner's quota and file count
    /// (race-safe: the store checks them in the write). Refused, its bytes
    /// are removed too: nothing of it remains, outside any quota.
    async fn record(&self, file: &StoredFile) -> Result<(), UploadError> {
        let limits = &self.limits;
        let Err(e) = self
            .store
            .insert_file(file, limits.user_quota_bytes, limits.max_files)
            .await
        else {
            return Ok(());
        };
        if let Err(gone) = discard_bytes(self.blobs.as_ref(), file).await {
            tracing::error!(file = %file.id, error = %gone, "a file was not recorded and its bytes could not be removed");
        }
        Err(match e {
            StoreError::TooManyFiles => UploadError::TooManyFiles {
                max: limits.max_files,
            },
            StoreError::OverQuota => UploadError::OverQuota {
                // For the message only: a failure to read it says 0.
                used: self.store.used_bytes(&file.owner_id).await.unwrap_or(0),
                quota: limits.user_quota_bytes,
                size: file.size,
            },
            other => other.into(),
        })
    }
}

/// An unfinished upload past its expiry, as of `now`: as good as gone.
fn is_expired(file: &StoredFile, now: OffsetDateTime) -> bool {
    !file.is_complete() && file.expires_at.is_some_and(|at| at <= now)
}

/// Removes `file`'s bytes: a finished file's object, or everything of an
/// unfinished upload.
async fn discard_bytes(blobs: &dyn BlobStore, file: &StoredFile) -> Result<(), BlobError> {
    if file.is_complete() {
        blobs.delete(&file.id).await
    } else {
        blobs.abort(&file.id, &file.blob).await
    }
}

/// Deletes `file`'s record, then its bytes. If the record changed since it
/// was read, it is read again and removed only if `still` holds for what
/// it is now; and then the bytes removed are those of what it is now (an
/// upload that finished meanwhile has a whole object, not a multipart
/// upload: removing the stale state's would orphan the object, outside
/// any quota). Whether it removed anything.
pub async fn remove_from(
    store: &dyn FileStore,
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
    if let Err(e) = discard_bytes(blobs, file).await {
        tracing::error!(file = %file.id, error = %e, "the file's record is gone but its bytes could not be removed");
    }
    Ok(true)
}

/// Removes the unfinished uploads whose `Upload-Expires` has passed, as of
/// `now` (the local server every minute, the scheduled upload reaper on
/// AWS). An upload whose lease a PATCH still holds waits for the next
/// round. How many it removed.
pub async fn reap_expired(
    store: &dyn FileStore,
    blobs: &dyn BlobStore,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    loop {
        let expired = store.expired_uploads(now, 100).await?;
        let mut this_round = 0;
        for file in &expired {
            if file.is_leased(now) {
                continue;
            }
            // Only while it is still an unfinished upload past its expiry
            // that no PATCH holds: one that finished meanwhile stays.
            let still_expired =
                |fresh: &StoredFile| is_expired(fresh, now) && !fresh.is_leased(now);
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
