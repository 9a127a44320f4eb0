//! Appending to a recorded upload (tus `PATCH`, and the first bytes of a
//! `creation-with-upload`).
//!
//! An append first takes the upload's lease, so two requests cannot append
//! at once; then it streams the chunk to the blob store with the digests
//! running over it, checks the chunk if asked to, and records the new
//! offset (with the running SHA-256 of the whole file) in a second
//! conditional write, or rolls the chunk back. With the last byte the file
//! is finished. A chunk whose connection was cut keeps what arrived (unless
//! it was to be checked, which cannot be done on part of it), so the client
//! resumes from the recorded offset. Whatever the outcome, the lease is
//! given back (see `lease.rs`).

use taskgate_domain::file::{FileId, FileStatus, StoredFile, may_upload_to};
use taskgate_domain::permission::Actor;
use taskgate_domain::ports::{Appended, ByteStream};

use super::digest::{Seen, observed};
use super::lease::{Lease, NotRecorded};
use super::{UploadError, Uploads};

/// A check of a chunk's own bytes that the client asked for (tus's
/// `Upload-Checksum`): fed every byte of the chunk as it passes, then asked
/// whether they were the ones meant. The transport knows the algorithms.
pub trait ChunkCheck: Send + 'static {
    fn update(&mut self, bytes: &[u8]);
    fn matches(self: Box<Self>) -> bool;
}

/// Bytes to append to an upload.
pub struct Chunk {
    /// Where they go: the upload's offset.
    pub offset: u64,
    /// Their length, if the client said it beforehand (`Content-Length`):
    /// a chunk that cannot fit is refused before anything is taken.
    pub announced: Option<u64>,
    pub body: ByteStream,
    pub check: Option<Box<dyn ChunkCheck>>,
}

/// Whether a chunk at some offset has anything to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// The upload is complete and the chunk is at its end: a retry of the
    /// last chunk whose answer was lost. The file is as it is.
    Done,
    /// The chunk continues the upload.
    Append,
}

/// Counts an append's bytes arriving, for as long as it lives.
struct Counted(fn(f64));

impl Counted {
    fn new(gauge: fn(f64)) -> Self {
        gauge(1.0);
        Self(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.0)(-1.0);
    }
}

impl Uploads {
    /// Whether `actor` may append to `file` at `offset` (only the uploader
    /// appends; the offset must be the upload's) and whether there is
    /// anything to do. [`Uploads::append`] asks too; a transport asks
    /// first where this answer must come before its own checks of the
    /// request (tus: a `PATCH` at the end of a complete upload succeeds
    /// whatever its other headers say).
    pub fn resume(actor: &Actor, file: &StoredFile, offset: u64) -> Result<Resume, UploadError> {
        may_upload_to(actor, file)?;
        let mismatch = UploadError::OffsetMismatch {
            offset: file.offset,
            sent: offset,
        };
        if file.is_complete() {
            return if offset == file.size {
                Ok(Resume::Done)
            } else {
                Err(mismatch)
            };
        }
        if offset != file.offset {
            return Err(mismatch);
        }
        Ok(Resume::Append)
    }

    /// Appends `chunk` to `file` by `actor` (see the module documentation);
    /// the file as it is afterwards. The work runs as a task of its own, so
    /// a caller that goes away mid-chunk (a client disconnecting) does not
    /// cancel it half-way: what arrived is recorded and the lease given
    /// back.
    pub async fn append(
        &self,
        actor: &Actor,
        file: StoredFile,
        chunk: Chunk,
    ) -> Result<StoredFile, UploadError> {
        let (uploads, actor) = (self.clone(), actor.clone());
        tokio::spawn(async move { uploads.append_now(&actor, file, chunk).await })
            .await
            .map_err(|e| UploadError::Internal(format!("the append task failed: {e}")))?
    }

    async fn append_now(
        &self,
        actor: &Actor,
        file: StoredFile,
        chunk: Chunk,
    ) -> Result<StoredFile, UploadError> {
        let Chunk {
            offset,
            announced,
            body,
            check,
        } = chunk;
        if Self::resume(actor, &file, offset)? == Resume::Done {
            return Ok(file);
        }
        let remaining = file.size.saturating_sub(file.offset);
        let limit = self.limits.max_patch_bytes;
        if let Some(length) = announced {
            if length > remaining {
                return Err(UploadError::PastTheEnd {
                    announced: Some(length),
                    remaining,
                });
            }
            if let Some(limit) = limit.filter(|limit| length > *limit) {
                return Err(UploadError::ChunkTooLarge { limit });
            }
        }
        let lease = Lease::take(&self.store, &file, self.clock.now()).await?;
        let _counted = Counted::new(self.appending);
        let leased = lease.file().clone();
        let with_check = check.is_some();
        let max = limit.map_or(remaining, |limit| limit.min(remaining));
        let (body, digests) = observed(
            body,
            Seen {
                digest: leased.digest(),
                check,
            },
        );
        let appended = self
            .blobs
            .append(&leased.id, &leased.blob, offset, body, max)
            .await;
        // The stream is gone with the append: the digests have every frame.
        let seen = digests
            .await
            .map_err(|e| UploadError::Internal(format!("the digest task failed: {e}")));
        let (appended, Seen { digest, check }) = match (appended, seen) {
            (Ok(appended), Ok(seen)) => (appended, seen),
            // Nothing of a failed append counts (the port's promise).
            (Err(e), _) => {
                lease.release().await;
                return Err(e.into());
            }
            (Ok(appended), Err(e)) => {
                self.roll_back(&leased, &appended).await;
                lease.release().await;
                return Err(e);
            }
        };
        let refused = if appended.truncated {
            Some(if max < remaining {
                UploadError::ChunkTooLarge { limit: max }
            } else {
                UploadError::PastTheEnd {
                    announced: None,
                    remaining,
                }
            })
        } else if appended.cut && with_check {
            Some(UploadError::CutWithCheck)
        } else if let Some(check) = check {
            (!check.matches()).then_some(UploadError::ChecksumMismatch)
        } else {
            None
        };
        if let Some(refusal) = refused {
            self.roll_back(&leased, &appended).await;
            lease.release().await;
            return Err(refusal);
        }

        let mut next = leased.clone();
        next.offset = offset + appended.bytes;
        next.blob = appended.state.clone();
        next.lease_until = None;
        next.updated_at = self.clock.now();
        next.version += 1;
        let complete = next.offset == next.size;
        if complete && let Err(e) = self.blobs.finish(&next.id, &next.blob, next.size).await {
            // The last chunk does not count, and the lease goes back: the
            // client sends the chunk again (it was once left locked out,
            // 423, for the lease's fifteen minutes).
            tracing::error!(file = %next.id, error = %e, "could not finish an upload");
            self.roll_back(&leased, &appended).await;
            lease.release().await;
            return Err(e.into());
        }
        if complete {
            next.status = FileStatus::Complete;
            next.sha256 = Some(digest.finish());
            next.digest_state = None;
            next.expires_at = None;
        } else {
            next.digest_state = Some(digest.save());
        }
        match lease.record(&next).await {
            Ok(()) => {}
            // Deleted (terminated) meanwhile: what was appended does not
            // count.
            Err(NotRecorded::Gone) => {
                if complete {
                    self.forget_finished(&leased.id).await;
                } else {
                    self.roll_back(&leased, &appended).await;
                }
                return Err(UploadError::NoSuchFile(leased.id));
            }
            // Not recorded: the chunk is undone, then the lease goes back.
            Err(NotRecorded::Failed(e, lease)) => {
                if !complete {
                    self.roll_back(&leased, &appended).await;
                }
                lease.release().await;
                return Err(e.into());
            }
        }
        if let Err(e) = self
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

    /// Drops a pending append: the upload's bytes are as `leased` says.
    async fn roll_back(&self, leased: &StoredFile, appended: &Appended) {
        if let Err(e) = self
            .blobs
            .rollback(&leased.id, &leased.blob, &appended.state)
            .await
        {
            tracing::error!(file = %leased.id, error = %e, "could not roll an append back");
        }
    }

    /// The bytes of an upload that was finished just as its record was
    /// deleted (terminated mid-append): gone too, or they would stay
    /// outside every quota. Only if the record is really gone.
    async fn forget_finished(&self, id: &FileId) {
        match self.store.get_file(id).await {
            Ok(None) => {
                if let Err(e) = self.blobs.delete(id).await {
                    tracing::error!(file = %id, error = %e, "could not remove a terminated upload's finished bytes");
                }
            }
            Ok(Some(_)) => {
                tracing::error!(file = %id, "an upload changed while its last chunk was finished");
            }
            Err(e) => {
                tracing::error!(file = %id, error = %e, "could not read an upload whose last chunk was finished");
            }
        }
    }
}
