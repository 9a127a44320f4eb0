//! `AppState`: what every handler needs, built once per process (or Lambda
//! cold start) and shared by every request.
//!
//! Handlers change projects, items and accounts through the use cases of
//! `taskgate-app`, given [`AppState::ports`] (never the store's methods
//! directly), so that every change reaches real-time subscribers: the hub
//! is the use cases' [`Publisher`].

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use taskgate_domain::clock::{Clock, SystemClock};
use taskgate_domain::file::{BlobState, FileId};
use taskgate_domain::password::{Password, PasswordHash, PasswordHasher};
use taskgate_domain::ports::{
    Appended, BlobError, BlobStore, ByteStream, Store, Workflow, WorkflowError,
};
use taskgate_domain::project::log::{Item, ItemEntry, Project, ProjectEntry};
use taskgate_domain::recorder::Recorder;
use taskgate_domain::security::SecurityEvent;
use taskgate_domain::task::{Task, TaskId};
use taskgate_domain::token::TokenKeys;
use tokio::sync::Semaphore;

use crate::extract::RequestId;
use crate::problem::ApiError;
use crate::realtime::hub::Hub;
use taskgate_app::ports::{Ports, Publisher};
pub use taskgate_app::settings::{ConfigError, Settings};
use taskgate_app::users::Hashing;

/// What handlers share: the stores, the task recorder and workflow engine,
/// the token keys, the password hasher and the settings.
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Where stored changes are published for real-time subscribers.
    pub hub: Arc<Hub>,
    /// The bytes of files (the data directory locally, S3 on AWS).
    pub blobs: Arc<dyn BlobStore>,
    /// Uploads and downloads in progress on the compatibility routes.
    pub transfers: Arc<crate::handlers::compat::Transfers>,
    /// Cancelled when the server begins to shut down: open WebSockets close
    /// with 1001.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Where "now" comes from for token expiry, login locks and task times.
    pub clock: Arc<dyn Clock>,
    pub recorder: Recorder,
    pub workflow: Arc<dyn Workflow>,
    pub keys: TokenKeys,
    pub settings: Settings,
    hashing: HashPool,
    /// Item pages answered lately, kept while their project is unchanged.
    pub(crate) pages: crate::pages::PageCache,
}

/// The password hasher behind a bound: at most `slots` hashes at a time, each
/// on a blocking thread (a hash takes 19 MiB and a core for tens of
/// milliseconds). Callers beyond the bound wait their turn, so a burst of
/// logins queues rather than exhausting memory or starving the async threads.
struct HashPool {
    hasher: Arc<PasswordHasher>,
    slots: Semaphore,
}

impl HashPool {
    fn new(hasher: PasswordHasher, slots: usize) -> Self {
        // Without this, every hash's 19 MiB would stay in the process.
        if !crate::memory::return_large_blocks_when_freed() {
            tracing::debug!("not glibc: the allocator is left as it is");
        }
        Self {
            hasher: Arc::new(hasher),
            slots: Semaphore::new(slots),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&PasswordHasher) -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let hasher = Arc::clone(&self.hasher);
        tokio::task::spawn_blocking(move || work(&hasher)).await
    }
}

/// The blob store of a process that serves no files.
struct NoBlobs;

fn no_blobs() -> BlobError {
    BlobError::Unavailable("no blob store is configured here".into())
}

#[async_trait]
impl BlobStore for NoBlobs {
    async fn start(&self, _: &FileId) -> Result<BlobState, BlobError> {
        Err(no_blobs())
    }
    async fn append(
        &self,
        _: &FileId,
        _: &BlobState,
        _: u64,
        _: ByteStream,
        _: u64,
    ) -> Result<Appended, BlobError> {
        Err(no_blobs())
    }
    async fn commit(&self, _: &FileId, _: &BlobState, _: &BlobState) -> Result<(), BlobError> {
        Err(no_blobs())
    }
    async fn rollback(&self, _: &FileId, _: &BlobState, _: &BlobState) -> Result<(), BlobError> {
        Err(no_blobs())
    }
    async fn finish(&self, _: &FileId, _: &BlobState, _: u64) -> Result<(), BlobError> {
        Err(no_blobs())
    }
    async fn abort(&self, _: &FileId, _: &BlobState) -> Result<(), BlobError> {
        Err(no_blobs())
    }
    async fn read(
        &self,
        _: &FileId,
        _: std::ops::Range<u64>,
        _: u64,
    ) -> Result<ByteStream, BlobError> {
        Err(no_blobs())
    }
    async fn delete(&self, _: &FileId) -> Result<(), BlobError> {
        Err(no_blobs())
    }
}

/// The workflow of a process that runs no tasks (e.g. the users functions).
struct NoWorkflow;

#[async_trait]
impl Workflow for NoWorkflow {
    async fn start(&self, _task: &Task) -> Result<Task, WorkflowError> {
        Err(WorkflowError::Other(
            "no workflow engine is configured here".into(),
        ))
    }

    async fn stop(&self, _task: &TaskId) -> Result<(), WorkflowError> {
        Err(WorkflowError::Other(
            "no workflow engine is configured here".into(),
        ))
    }
}

impl AppState {
    /// Builds the state (cheap: no password is hashed until one is checked).
    pub fn new(
        store: Arc<dyn Store>,
        jwt_secret: &SecretSlice<u8>,
        settings: Settings,
    ) -> Result<Self, ConfigError> {
        let keys = TokenKeys::new(jwt_secret)
            .map_err(|e| ConfigError::new("JWT signing secret", e.to_string()))?;
        let hasher = PasswordHasher::new()
            .map_err(|e| ConfigError::new("password hasher", e.to_string()))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let hub = Arc::new(Hub::new(settings.realtime.buffer_events));
        Ok(Self {
            recorder: Recorder::with_clock(store.clone(), clock.clone())
                .observed_by(hub.clone())
                .with_max_active_exports(settings.max_active_tasks.exports),
            hub,
            blobs: Arc::new(NoBlobs),
            transfers: Arc::default(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            workflow: Arc::new(NoWorkflow),
            clock,
            store,
            keys,
            hashing: HashPool::new(hasher, settings.max_concurrent_hashes),
            pages: crate::pages::PageCache::new(settings.page_cache_bytes),
            settings,
        })
    }

    /// Tells the time by `clock` (tests pass a manual one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.recorder = Recorder::with_clock(self.store.clone(), clock.clone())
            .observed_by(self.hub.clone())
            .with_max_active_exports(self.settings.max_active_tasks.exports);
        self.clock = clock;
        self
    }

    /// A recorder like the API's own, for an engine that runs tasks in this
    /// process: what it records is published to the same hub.
    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }

    /// What the use cases work through: the store, the clock, and the hub
    /// that publishes every stored project and item change.
    pub fn ports(&self) -> Ports<'_> {
        Ports {
            store: &*self.store,
            clock: &*self.clock,
            publisher: &*self.hub,
        }
    }

    /// Files and uploads over this state's stores, clock and file limits
    /// (cheap: the ports are shared), counted by the uploads gauge.
    pub fn uploads(&self) -> taskgate_app::uploads::Uploads {
        taskgate_app::uploads::Uploads::new(
            self.store.clone(),
            self.blobs.clone(),
            self.clock.clone(),
            self.settings.files.clone(),
        )
        .with_append_gauge(crate::metrics::upload)
    }

    /// Where file bytes go (without it, file routes answer 503).
    pub fn with_blobs(mut self, blobs: Arc<dyn BlobStore>) -> Self {
        self.blobs = blobs;
        self
    }

    /// The engine that runs tasks (without one, starting a task fails it).
    pub fn with_workflow(mut self, workflow: Arc<dyn Workflow>) -> Self {
        self.recorder = self.recorder.with_engine(workflow.engine());
        self.workflow = workflow;
        self
    }

    /// Hashes a new password (at most `max_concurrent_hashes` at a time):
    /// [`Hashing::hash`], for callers outside the use cases (the first
    /// admin's creation).
    pub async fn hash_password(&self, password: Password) -> Result<PasswordHash, ApiError> {
        Ok(Hashing::hash(self, password).await?)
    }

    /// Checks a login password; with no hash (unknown user) does the same
    /// work and returns `false`.
    pub async fn verify_password(
        &self,
        candidate: SecretString,
        hash: Option<PasswordHash>,
    ) -> Result<bool, ApiError> {
        self.hashing
            .run(move |hasher| hasher.verify(candidate.expose_secret(), hash.as_ref()))
            .await
            .map_err(|e| ApiError::internal(format!("hashing task failed: {e}")))
    }

    /// Appends `event` to the security log, tagged with the request's id.
    /// The change it records has happened already, so a store failure here
    /// does not fail the request: the event goes to the error log whole
    /// (events hold no secrets), to be recovered from there.
    pub async fn audit(&self, request_id: &RequestId, event: SecurityEvent) {
        taskgate_app::audit::record(&*self.store, &request_id.0, event).await;
    }
}

/// New passwords are hashed in the pool, at most `max_concurrent_hashes`
/// at a time.
#[async_trait]
impl Hashing for AppState {
    async fn hash(&self, password: Password) -> Result<PasswordHash, taskgate_app::Error> {
        self.hashing
            .run(move |hasher| hasher.hash(&password))
            .await
            .map_err(|e| taskgate_app::Error::internal(format!("hashing task failed: {e}")))?
            .map_err(taskgate_app::Error::internal)
    }
}

/// The hub hears of every project and item change the use cases store.
impl Publisher for Hub {
    fn project_appended(
        &self,
        position: u64,
        entry: &ProjectEntry,
        before: Option<&Project>,
        after: &Project,
    ) {
        // The hub's own method (inherent methods come first).
        Hub::project_appended(self, position, entry, before, after);
    }

    fn item_appended(&self, position: u64, entry: &ItemEntry, item: &Item) {
        Hub::item_appended(self, position, entry, item);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Eight hashes at once through a pool of two: every one is computed, and
    /// never more than two at the same moment.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_beyond_the_limit_wait_their_turn() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = Arc::new(HashPool::new(PasswordHasher::new().unwrap(), 2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut hashes = tokio::task::JoinSet::new();
        for n in 0..8 {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            hashes.spawn(async move {
                pool.run(move |hasher| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let password = Password::parse(&format!("passphrase number {n}"), None);
                    let hash = hasher.hash(&password.unwrap());
                    // Long enough that all eight callers are waiting meanwhile.
                    std::thread::sleep(Duration::from_millis(50));
                    running.fetch_sub(1, Ordering::SeqCst);
                    hash.is_ok()
                })
                .await
                .unwrap()
            });
        }
        let hashed = hashes.join_all().await;
        assert_eq!(hashed, vec![true; 8]);
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }
}
