//! Files recorded last: [`NewFile`], for the compatibility `POST /upload`
//! (a multipart body of unknown size) and exports (written a part at a
//! time, on S3 as a multipart upload).
//!
//! The bytes come first, appended and committed as they arrive with the
//! SHA-256 running over them; the record is written once they are
//! complete, with the owner's quota and file count checked in that write
//! (race-safe). So nothing of the file is listed, or counted, until it is
//! whole, and whatever stops it takes its bytes with it: a refused or
//! failed step, [`NewFile::abort`], or dropping it unfinished (a request
//! whose client went away), which spawns the abort.

use taskgate_domain::file::{
    BlobState, ContentType, FileId, FileName, FileStatus, RunningDigest, StoredFile,
};
use taskgate_domain::permission::Actor;
use taskgate_domain::ports::{Appended, ByteStream};

use super::digest::{Seen, observed};
use super::{UploadError, Uploads};

/// When a file recorded last learns that it passes its owner's quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaCheck {
    /// When it is recorded, in the write itself: the file is refused
    /// whole, its size known (the compatibility upload).
    AtRecord,
    /// Also before each announced append, against what the quota left when
    /// the file began: a file that could never be kept stops early, not
    /// after writing every byte (exports, which may be large and slow). The
    /// record's own check stays the race-safe one.
    AsWritten,
}

/// A file whose bytes are being written before its record (see the module
/// documentation).
pub struct NewFile {
    uploads: Uploads,
    owner: Actor,
    id: FileId,
    /// The blob store's state of the committed bytes.
    state: BlobState,
    size: u64,
    digest: RunningDigest,
    /// [`QuotaCheck::AsWritten`]: the bytes the quota left at the start.
    room: Option<u64>,
    /// Until its record is being written or its bytes removed: dropping it
    /// then removes its bytes.
    open: bool,
}

impl Uploads {
    /// Starts `owner`'s file `id`, to be written by [`NewFile::append`] and
    /// recorded by [`NewFile::finish`].
    pub async fn new_file(
        &self,
        owner: Actor,
        id: FileId,
        quota: QuotaCheck,
    ) -> Result<NewFile, UploadError> {
        let room = match quota {
            QuotaCheck::AtRecord => None,
            QuotaCheck::AsWritten => {
                let used = self.store.used_bytes(&owner.user_id).await?;
                Some(self.limits.user_quota_bytes.saturating_sub(used))
            }
        };
        let state = self.blobs.start(&id).await?;
        Ok(NewFile {
            uploads: self.clone(),
            owner,
            id,
            state,
            size: 0,
            digest: RunningDigest::new(),
            room,
            open: true,
        })
    }
}

impl NewFile {
    /// Appends `body`: `announced` bytes exactly when the length is known
    /// beforehand (then a file that would pass the quota's room or the
    /// largest file's size is refused before any byte is taken), or
    /// whatever the body holds up to the largest file's size. How many
    /// bytes it appended. A refused append is rolled back: the file is as
    /// it was, to abort (or to go on with, if the caller can).
    pub async fn append(
        &mut self,
        body: ByteStream,
        announced: Option<u64>,
    ) -> Result<u64, UploadError> {
        let largest = self.uploads.limits.max_file_bytes;
        if let Some(length) = announced {
            let total = self.size.saturating_add(length);
            if let Some(room) = self.room.filter(|room| total > *room) {
                return Err(UploadError::NoRoom { room });
            }
            if total > largest {
                return Err(UploadError::FileTooLarge {
                    max: largest,
                    size: Some(total),
                });
            }
        }
        let max = announced.unwrap_or_else(|| largest.saturating_sub(self.size));
        let (body, digests) = observed(
            body,
            Seen {
                digest: self.digest.clone(),
                check: None,
            },
        );
        let blobs = &self.uploads.blobs;
        let appended = blobs
            .append(&self.id, &self.state, self.size, body, max)
            .await;
        let seen = digests
            .await
            .map_err(|e| UploadError::Internal(format!("the digest task failed: {e}")));
        let (appended, seen) = match (appended, seen) {
            (Ok(appended), Ok(seen)) => (appended, seen),
            // Nothing of a failed append counts (the port's promise).
            (Err(e), _) => return Err(e.into()),
            (Ok(appended), Err(e)) => {
                self.roll_back(&appended).await;
                return Err(e);
            }
        };
        let refused = if appended.cut {
            // Nobody can resume a file without a record.
            Some(UploadError::Cut)
        } else if let Some(announced) = announced {
            (appended.truncated || appended.bytes != announced).then_some(
                UploadError::NotAsAnnounced {
                    announced,
                    stored: appended.bytes,
                },
            )
        } else {
            appended.truncated.then_some(UploadError::FileTooLarge {
                max: largest,
                size: None,
            })
        };
        if let Some(refusal) = refused {
            self.roll_back(&appended).await;
            return Err(refusal);
        }
        blobs.commit(&self.id, &self.state, &appended.state).await?;
        self.state = appended.state;
        self.size += appended.bytes;
        self.digest = seen.digest;
        Ok(appended.bytes)
    }

    /// Finishes the bytes into a file and records it, named `name`, within
    /// the owner's quota and file count. Refused or failed, nothing of it
    /// remains.
    pub async fn finish(
        mut self,
        name: FileName,
        content_type: ContentType,
    ) -> Result<StoredFile, UploadError> {
        let uploads = self.uploads.clone();
        if let Err(e) = uploads.blobs.finish(&self.id, &self.state, self.size).await {
            self.abort().await;
            return Err(e.into());
        }
        // From here the bytes are a whole file, and stay whatever happens
        // to this call: a record without its bytes (an insert that landed
        // before the call was dropped) would be worse than bytes without a
        // record. A refused record removes them itself.
        self.open = false;
        let now = uploads.clock.now();
        let file = StoredFile {
            id: self.id,
            owner: self.owner.username.clone(),
            owner_id: self.owner.user_id,
            owner_level: self.owner.level,
            name,
            content_type,
            size: self.size,
            offset: self.size,
            status: FileStatus::Complete,
            sha256: Some(self.digest.clone().finish()),
            created_at: now,
            updated_at: now,
            expires_at: None,
            blob: self.state.clone(),
            lease_until: None,
            digest_state: None,
            version: 1,
        };
        uploads.record(&file).await?;
        Ok(file)
    }

    /// Removes everything written: nothing of the file remains.
    pub async fn abort(mut self) {
        self.open = false;
        abort(&self.uploads, &self.id, &self.state).await;
    }

    async fn roll_back(&self, appended: &Appended) {
        if let Err(e) = self
            .uploads
            .blobs
            .rollback(&self.id, &self.state, &appended.state)
            .await
        {
            tracing::error!(file = %self.id, error = %e, "could not roll an append back");
        }
    }
}

impl Drop for NewFile {
    /// Neither finished nor aborted (an early return, a caller that went
    /// away): the abort is spawned, there being no waiting in a drop.
    fn drop(&mut self) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        let (uploads, id, state) = (self.uploads.clone(), self.id, self.state.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { abort(&uploads, &id, &state).await });
            }
            Err(_) => tracing::error!(
                file = %id,
                "an unfinished file was dropped outside a runtime; its bytes remain"
            ),
        }
    }
}

async fn abort(uploads: &Uploads, id: &FileId, state: &BlobState) {
    if let Err(e) = uploads.blobs.abort(id, state).await {
        tracing::error!(file = %id, error = %e, "could not remove an unfinished file's bytes");
    }
}
