//! An upload's lease, held as a value: [`Lease`].
//!
//! Appending takes the upload's lease (a conditional write of
//! `lease_until`), so two requests cannot append at once. The lease must
//! be given back whatever happens next, or the upload answers "busy" to
//! its own client's retry until the lease runs out ([`LEASE`], fifteen
//! minutes). So the lease is a guard that owns the leased record, and
//! every way out of an append ends it:
//!
//! - [`Lease::record`]: the append is recorded, in the same write that
//!   clears the lease (nothing left to give back);
//! - [`Lease::release`]: given back, awaited, after a refused or failed
//!   append (after its bytes were rolled back, so the next holder never
//!   has them cut from under it);
//! - dropped unconsumed (an early `?`, a panic, a cancelled task): the
//!   release is spawned on the runtime, as a safety net.
//!
//! Chosen over a closure-scoped API because the append's exits differ in
//! what they undo before the lease goes back (a rollback, or nothing), and
//! an async closure over a borrowed guard cannot promise its future is
//! `Send`. Both consuming methods take the guard by value and the drop
//! finds nothing left to release, so a lease is given back at most once;
//! each release is a conditional write on the leased version besides, so
//! one that came late could not free a lease taken since.

use std::sync::Arc;
use std::time::Duration;

use taskgate_domain::file::StoredFile;
use taskgate_domain::ports::{FileStore, StoreError};
use time::OffsetDateTime;

use super::UploadError;

/// How long an append holds its upload. Longer than any append should
/// take; a server that died mid-append frees the upload after it.
pub(crate) const LEASE: Duration = Duration::from_secs(15 * 60);

/// An upload's lease, held (see the module documentation).
pub(crate) struct Lease {
    store: Arc<dyn FileStore>,
    /// The record as the lease wrote it; `None` once recorded or given back.
    /// Boxed: the guard is moved about, and handed back in [`NotRecorded`].
    leased: Option<Box<StoredFile>>,
}

/// Why [`Lease::record`] did not record.
pub(crate) enum NotRecorded {
    /// The record was deleted or changed meanwhile (an upload terminated
    /// mid-append): the lease went with it, nothing to give back.
    Gone,
    /// The write failed: the lease is still held, to be given back once
    /// what the append left is undone.
    Failed(StoreError, Lease),
}

impl Lease {
    /// Takes `file`'s lease as of `now`: `Busy` if another request holds
    /// it, `ChangedMeanwhile` if the record changed since `file` was read.
    pub(crate) async fn take(
        store: &Arc<dyn FileStore>,
        file: &StoredFile,
        now: OffsetDateTime,
    ) -> Result<Self, UploadError> {
        if file.is_leased(now) {
            return Err(UploadError::Busy);
        }
        let mut leased = file.clone();
        leased.lease_until = Some(now + LEASE);
        leased.version += 1;
        match store.update_file(file, &leased).await {
            Ok(()) => Ok(Self {
                store: Arc::clone(store),
                leased: Some(Box::new(leased)),
            }),
            Err(StoreError::Conflict) => Err(UploadError::ChangedMeanwhile),
            Err(e) => Err(e.into()),
        }
    }

    /// The record as the lease wrote it.
    pub(crate) fn file(&self) -> &StoredFile {
        self.leased
            .as_deref()
            .expect("a lease is held until it is consumed")
    }

    /// Writes `next` (the leased record's successor, its lease cleared) in
    /// place of the leased record: the lease ends with that write.
    ///
    /// The guard keeps the lease until the write has answered: if this
    /// future is dropped mid-write, the drop still gives the lease back
    /// (conditionally, so a write that did land is left as it is).
    pub(crate) async fn record(mut self, next: &StoredFile) -> Result<(), NotRecorded> {
        debug_assert!(
            next.lease_until.is_none(),
            "a recorded append keeps no lease"
        );
        match self.store.update_file(self.file(), next).await {
            Ok(()) => {
                self.leased = None;
                Ok(())
            }
            Err(StoreError::Conflict) => {
                self.leased = None;
                Err(NotRecorded::Gone)
            }
            Err(e) => Err(NotRecorded::Failed(e, self)),
        }
    }

    /// Gives the lease back. A failure is logged: the lease then runs out
    /// by itself. Held until the write has answered, as in [`Self::record`].
    pub(crate) async fn release(mut self) {
        release(self.store.as_ref(), self.file()).await;
        self.leased = None;
    }
}

impl Drop for Lease {
    /// The safety net: a lease neither recorded nor released is given back
    /// by a task of its own (there is no waiting in a drop).
    fn drop(&mut self) {
        let Some(leased) = self.leased.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let store = Arc::clone(&self.store);
                runtime.spawn(async move { release(store.as_ref(), &leased).await });
            }
            Err(_) => tracing::warn!(
                file = %leased.id,
                "an upload's lease was dropped outside a runtime; it runs out by itself"
            ),
        }
    }
}

/// Clears `leased`'s lease, if the record is still as the lease wrote it.
async fn release(store: &dyn FileStore, leased: &StoredFile) {
    let mut released = leased.clone();
    released.lease_until = None;
    released.version += 1;
    if let Err(e) = store.update_file(leased, &released).await {
        tracing::warn!(file = %leased.id, error = %e, "could not release an upload's lease");
    }
}
